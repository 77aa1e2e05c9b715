//! `hooksmith send`: sign a payload exactly as the provider would and POST it.

use std::io::Read as _;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use hooksmith::Encoding;
use hooksmith::testing::{Params, SignInput, sign};
use http::{HeaderName, HeaderValue, Method};

use crate::client;
use crate::output::Style;

/// Sign a payload for any scheme and POST it; exits non-zero unless the answer is 2xx.
///
/// Example: `hooksmith send --sig github --secret "$GITHUB_WEBHOOK_SECRET" --event ping
/// --url http://127.0.0.1:3000/hooks/github payload.json`
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The signature scheme: github, stripe, standard, slack, shopify, gitlab, linear, twilio,
    /// discord, hmac-sha256, hmac-sha1, jwt, none.
    #[arg(long)]
    sig: String,
    /// The signing secret (for discord, the hex ed25519 private key; for a Standard Webhooks v1a
    /// signature, the `whsk_` key). Read from HOOKSMITH_SEND_SECRET when not given.
    #[arg(long, env = "HOOKSMITH_SEND_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Where to POST.
    #[arg(long, default_value = "http://127.0.0.1:3000/hooks/github")]
    url: String,
    /// The event name, sent in the scheme's event header (GitHub's X-GitHub-Event, ...).
    #[arg(long)]
    event: Option<String>,
    /// The delivery id (default: a fresh one), sent in the scheme's id header.
    #[arg(long)]
    id: Option<String>,
    /// The timestamp to sign, seconds since the Unix epoch (default: now).
    #[arg(long)]
    timestamp: Option<i64>,
    /// The body's content type.
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// Generic schemes: the signature header.
    #[arg(long)]
    sig_header: Option<String>,
    /// Generic schemes: the text before the digest, such as `sha256=`.
    #[arg(long)]
    prefix: Option<String>,
    /// Generic schemes: `hex` or `base64`.
    #[arg(long)]
    encoding: Option<String>,
    /// Extra headers, `Name: value`, repeatable.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The payload file, or `-` for standard input.
    payload: String,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let scheme = hooksmith::scheme::lookup(&args.sig).map_err(anyhow::Error::msg)?;
    let body = read_payload(&args.payload)?;
    let secret = match (&args.secret, scheme.needs_secret) {
        (Some(secret), _) => secret.clone(),
        (None, false) => String::new(),
        (None, true) => bail!(
            "`{}` needs a secret: pass --secret or set HOOKSMITH_SEND_SECRET",
            args.sig
        ),
    };
    let encoding = match args.encoding.as_deref() {
        None => None,
        Some("hex") => Some(Encoding::Hex),
        Some("base64") => Some(Encoding::Base64),
        Some(other) => bail!("unknown --encoding `{other}`: expected hex or base64"),
    };
    let params = Params {
        header: args.sig_header.as_deref(),
        prefix: args.prefix.as_deref(),
        encoding,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let id = args.id.clone().unwrap_or_else(|| fresh_id(now));
    let input = SignInput {
        body: &body,
        timestamp: args
            .timestamp
            .unwrap_or(i64::try_from(now).unwrap_or(i64::MAX)),
        id: &id,
        url: &args.url,
        content_type: Some(&args.content_type),
    };
    let mut headers = sign(&args.sig, &params, &secret, &input).map_err(anyhow::Error::msg)?;
    let mut add = |name: &str, value: &str| -> anyhow::Result<()> {
        let name =
            HeaderName::try_from(name).with_context(|| format!("invalid header name `{name}`"))?;
        if !headers.iter().any(|(n, _)| *n == name) {
            headers.push((
                name,
                HeaderValue::try_from(value)
                    .with_context(|| format!("invalid header value `{value}`"))?,
            ));
        }
        Ok(())
    };
    add("content-type", &args.content_type)?;
    if let (Some(event), Some(header)) = (&args.event, scheme.defaults.event_header.first()) {
        add(header, event)?;
    }
    if let Some(header) = scheme.defaults.id_header.first() {
        add(header, &id)?;
    }
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("--header `{header}`: write `Name: value`"))?;
        add(name.trim(), value.trim())?;
    }

    let reply = client::request(Method::POST, &args.url, &headers, Bytes::from(body)).await?;
    let style = Style::stdout();
    let status = reply.status.to_string();
    let status = if reply.status.is_success() {
        style.green(&status)
    } else {
        style.red(&status)
    };
    println!(
        "POST {} → {status} in {:.1} ms",
        args.url,
        reply.took.as_secs_f64() * 1e3
    );
    println!("{}", style.dim(&format!("delivery id {id}")));
    if !reply.body.is_empty() {
        println!("{}", String::from_utf8_lossy(&reply.body).trim_end());
    }
    Ok(if reply.status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read_payload(source: &str) -> anyhow::Result<Vec<u8>> {
    if source == "-" {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .context("reading the payload from standard input")?;
        return Ok(body);
    }
    std::fs::read(source).with_context(|| format!("reading the payload file `{source}`"))
}

fn fresh_id(now: u64) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("cli-{now:x}-{nanos:08x}-{:x}", std::process::id())
}
