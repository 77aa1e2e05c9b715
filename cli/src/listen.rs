//! `hooksmith listen`: a local receiver that prints every delivery as it arrives (seed 004's
//! tester) — time, event, delivery id, the signature verdict and why, and the pretty JSON body.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use hooksmith::axum::body::Body;
use hooksmith::axum::response::{IntoResponse, Response};
use hooksmith::scheme::{Params, Secret, SignedRequest, Verifier};
use http::StatusCode;
use http_body_util::BodyExt;

use crate::output::Style;

/// Receive webhooks locally and print each one with its signature verdict; Ctrl+C stops.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The port to listen on.
    #[arg(long, default_value_t = 9876)]
    port: u16,
    /// The address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The signature scheme to verify with.
    #[arg(long)]
    sig: String,
    /// The secret (or public key) to verify with. Read from HOOKSMITH_LISTEN_SECRET when not given.
    #[arg(long, env = "HOOKSMITH_LISTEN_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Generic schemes: the signature header.
    #[arg(long)]
    sig_header: Option<String>,
    /// Generic schemes: the text before the digest.
    #[arg(long)]
    prefix: Option<String>,
    /// Answer 401 to a bad signature (default: always 200, so the sender records success).
    #[arg(long)]
    strict: bool,
}

struct Listener {
    verifier: Arc<dyn Verifier>,
    scheme: &'static hooksmith::scheme::Scheme,
    strict: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let scheme = hooksmith::scheme::lookup(&args.sig).map_err(anyhow::Error::msg)?;
    let secret = match (&args.secret, scheme.needs_secret) {
        (Some(secret), _) => secret.clone(),
        (None, false) => String::new(),
        (None, true) => bail!(
            "`{}` needs a secret: pass --secret or set HOOKSMITH_LISTEN_SECRET",
            args.sig
        ),
    };
    (scheme.check_secret)(&secret)
        .map_err(|problem| anyhow::anyhow!("the secret is not valid: {problem}"))?;
    let params = Params {
        header: args.sig_header.as_deref(),
        prefix: args.prefix.as_deref(),
        encoding: None,
    };
    let verifier = (scheme.build)(&params, &[Secret::new(secret)]).map_err(anyhow::Error::msg)?;
    let listener = Arc::new(Listener {
        verifier,
        scheme,
        strict: args.strict,
    });
    let addr = format!("{}:{}", args.host, args.port);
    let socket = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let style = Style::stdout();
    println!(
        "{} {}",
        style.green("✓"),
        style.bold(&format!(
            "listening on http://{addr} ({} signatures)",
            args.sig
        ))
    );
    println!(
        "{}",
        style.dim("Waiting for deliveries. Press Ctrl+C to stop.")
    );
    let app = hooksmith::axum::Router::new().fallback(move |request: http::Request<Body>| {
        let listener = listener.clone();
        async move { receive(&listener, request).await }
    });
    hooksmith::axum::serve(socket, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")?;
    println!("\n{}", style.yellow("⚠ stopped"));
    Ok(ExitCode::SUCCESS)
}

async fn receive(listener: &Listener, request: http::Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let body = match http_body_util::Limited::new(body, 25 * 1024 * 1024)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "too large\n").into_response(),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let verdict = listener.verifier.verify(&SignedRequest {
        headers: &parts.headers,
        body: &body,
        uri: &parts.uri,
        public_url: None,
        now_secs: i64::try_from(now).unwrap_or(i64::MAX),
    });
    let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let header = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| parts.headers.get(*n))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let field = |path: Option<&str>| {
        let pointer = format!("/{}", path?.replace('.', "/"));
        json.as_ref()?
            .pointer(&pointer)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
    };
    let defaults = listener.scheme.defaults;
    let event = header(defaults.event_header)
        .or_else(|| field(defaults.event_field))
        .unwrap_or_else(|| "<unknown>".into());
    let id = header(defaults.id_header)
        .or_else(|| field(defaults.id_field))
        .unwrap_or_else(|| "<none>".into());

    let style = Style::stdout();
    let mut out = format!("\n{}\n", style.dim(&"─".repeat(60)));
    out.push_str(&format!(
        " {}  {}\n",
        style.bold("Delivery received"),
        style.dim(&clock(now))
    ));
    out.push_str(&format!(
        " {} {} {}\n",
        style.dim("Request:"),
        parts.method,
        parts.uri
    ));
    out.push_str(&format!(
        " {}   {}\n",
        style.dim("Event:"),
        style.bold(&event)
    ));
    out.push_str(&format!(" {}      {id}\n", style.dim("Id:")));
    match &verdict {
        Ok(_) => out.push_str(&format!(
            " {}     {}\n",
            style.dim("Sig:"),
            style.green("✓ verified")
        )),
        Err(error) => out.push_str(&format!(
            " {}     {}\n",
            style.dim("Sig:"),
            style.red(&format!("✗ {error}"))
        )),
    }
    let pretty = json
        .as_ref()
        .and_then(|v| serde_json::to_string_pretty(v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    for line in pretty.lines() {
        out.push_str(&format!("   {}\n", style.dim(line)));
    }
    print!("{out}");
    if verdict.is_err() && listener.strict {
        return (StatusCode::UNAUTHORIZED, "invalid signature\n").into_response();
    }
    (StatusCode::OK, "OK").into_response()
}

/// `HH:MM:SS` UTC.
fn clock(secs: u64) -> String {
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        day / 3600,
        day % 3600 / 60,
        day % 60
    )
}
