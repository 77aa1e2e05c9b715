//! The hooksmith quickstart: GitHub and connector webhooks, verified, stored and handled.
//!
//! Run with `cargo run` from the repository root. Secrets come from `GITHUB_WEBHOOK_SECRET`,
//! `STRIPE_WEBHOOK_SECRET`, `STANDARD_WEBHOOK_SECRET` (`whsec_...`), `SLACK_SIGNING_SECRET` and
//! `CONNECTOR_SECRET`; when one is unset the quickstart (and only the quickstart) generates it and
//! prints it once with a ready-to-paste `curl` command. Set `HOOKSMITH_ADMIN_TOKEN` to mount the
//! admin API.

use std::fmt::Write as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `HOOKSMITH_LOG=json` writes one JSON object per line; `RUST_LOG` filters as usual.
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("HOOKSMITH_LOG").is_ok_and(|v| v == "json") {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
    let app = quickstart::builder()?.dev_secrets(true).build()?;
    if !app.generated_secrets().is_empty() {
        eprintln!("{}", dev_banner(&app));
    }
    app.serve().await?;
    Ok(())
}

/// The loud development-mode notice: each generated secret once, and a signed request to try.
fn dev_banner(app: &hooksmith::App) -> String {
    let mut out = String::from(
        "\n!!! DEVELOPMENT MODE: these secrets were generated because their variables are unset.\n\
         !!! They change on every start. Set the variables for anything but a local try-out.\n",
    );
    for (var, value) in app.generated_secrets() {
        let _ = writeln!(out, "    {var}={value}");
    }
    let tries = [
        (
            "/hooks/github",
            "-H 'X-GitHub-Event: ping' -H \"X-GitHub-Delivery: $(date +%s%N)\" ",
            r#"{"zen":"Keep it logically awesome.","hook_id":1}"#,
        ),
        (
            "/hooks/stripe",
            "",
            r#"{"id":"evt_quickstart","type":"payment_intent.succeeded","data":{"object":{"amount":2000}}}"#,
        ),
    ];
    out.push_str("\nTry it (expect HTTP/1.1 204):\n");
    for (path, extra, body) in tries {
        let Some(headers) = app.sign(path, body.as_bytes()) else {
            continue;
        };
        let _ = write!(
            out,
            "    curl -i http://{}{path} -H 'Content-Type: application/json' {extra}",
            app.addr()
        );
        for (name, value) in headers {
            let _ = write!(
                out,
                "-H '{}: {}' ",
                name,
                value.to_str().unwrap_or_default()
            );
        }
        let _ = writeln!(out, "--data '{body}'");
    }
    out
}
