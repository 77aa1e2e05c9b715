//! The `hooksmith` command against a real app on a loopback port.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hooksmith::{Delivery, webhook};

const SECRET: &str = "cli test secret";
const TOKEN: &str = "cli-admin";

#[webhook(path = "/hooks/github", sig = "github", event = ["push", "ping"])]
async fn on_push(_d: Delivery) {}

#[webhook(path = "/hooks/stripe", sig = "stripe", event = "charge.*")]
async fn on_charge(_d: Delivery) {}

#[webhook(path = "/tenants/{connection}", sig = "github", event = "push")]
async fn on_tenant(_d: Delivery) {}

fn hooksmith() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hooksmith"));
    command.env_clear().env("NO_COLOR", "1");
    command
}

async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("the CLI runs"))
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// An app on a free loopback port; returns its base URL.
async fn app() -> String {
    let app = hooksmith::App::builder()
        .ignore_env()
        .var("GITHUB_WEBHOOK_SECRET", SECRET)
        .var("STRIPE_WEBHOOK_SECRET", "whsec_cli")
        .admin_token(TOKEN)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(app.serve_on(listener, std::future::pending()));
    url
}

fn payload(json: &str) -> tempfile::TempPath {
    let path = std::env::temp_dir().join(format!(
        "hooksmith-cli-{}-{}.json",
        std::process::id(),
        fastrand()
    ));
    std::fs::write(&path, json).unwrap();
    tempfile::TempPath(path)
}

fn fastrand() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

mod tempfile {
    /// A file removed when dropped.
    pub(crate) struct TempPath(pub(crate) std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    impl TempPath {
        pub(crate) fn arg(&self) -> &std::path::Path {
            &self.0
        }
    }
}

#[tokio::test]
async fn help_names_every_command() {
    let output = run({
        let mut c = hooksmith();
        c.arg("--help");
        c
    })
    .await;
    assert!(output.status.success());
    let help = text(&output);
    for command in ["send", "listen", "deliveries", "dead", "connections"] {
        assert!(help.contains(command), "{help}");
    }
    let output = run({
        let mut c = hooksmith();
        c.args(["send", "--help"]);
        c
    })
    .await;
    assert!(text(&output).contains("--sig"), "{}", text(&output));
}

#[tokio::test]
async fn send_signs_for_the_scheme_and_reports_the_answer() {
    let url = app().await;
    let push = payload(r#"{"ref":"main"}"#);
    let send = |secret: &str, event: &str, id: &str| {
        let mut c = hooksmith();
        c.args([
            "send", "--sig", "github", "--secret", secret, "--event", event, "--id", id,
        ])
        .args(["--url", &format!("{url}/hooks/github")])
        .arg(push.arg());
        c
    };
    let ok = run(send(SECRET, "push", "cli-1")).await;
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("204 No Content"), "{}", text(&ok));
    let bad = run(send("wrong", "push", "cli-2")).await;
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("401"), "{}", text(&bad));

    // Stripe: the event is in the body, the signature header carries the timestamp.
    let charge = payload(r#"{"id":"evt_cli","type":"charge.refunded"}"#);
    let mut stripe = hooksmith();
    stripe
        .args([
            "send",
            "--sig",
            "stripe",
            "--url",
            &format!("{url}/hooks/stripe"),
        ])
        .env("HOOKSMITH_SEND_SECRET", "whsec_cli")
        .arg(charge.arg());
    let ok = run(stripe).await;
    assert!(ok.status.success(), "{}", text(&ok));

    // From standard input, and a clear error for a missing secret.
    let mut stdin = hooksmith();
    stdin.args([
        "send",
        "--sig",
        "github",
        "--event",
        "push",
        "--url",
        &format!("{url}/hooks/github"),
        "-",
    ]);
    let output = run(stdin).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).contains("HOOKSMITH_SEND_SECRET"),
        "{}",
        text(&output)
    );
}

#[tokio::test]
async fn listen_prints_each_delivery_with_its_verdict_and_stops_on_ctrl_c() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listener = hooksmith()
        .args([
            "listen",
            "--port",
            &port.to_string(),
            "--sig",
            "github",
            "--secret",
            SECRET,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/webhook");
    let push = payload(r#"{"ref":"main","pusher":{"name":"ada"}}"#);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut send = hooksmith();
        send.args([
            "send", "--sig", "github", "--secret", SECRET, "--event", "push", "--id", "l-1",
            "--url", &url,
        ])
        .arg(push.arg());
        if run(send).await.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the listener never came up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut wrong = hooksmith();
    wrong
        .args([
            "send", "--sig", "github", "--secret", "nope", "--event", "push", "--id", "l-2",
            "--url", &url,
        ])
        .arg(push.arg());
    assert!(
        run(wrong).await.status.success(),
        "the listener answers 200 unless --strict"
    );
    // Ctrl+C: a clean exit.
    let pid = listener.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let output = tokio::task::spawn_blocking(move || listener.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let printed = text(&output);
    assert!(
        printed.contains("listening on http://127.0.0.1:"),
        "{printed}"
    );
    assert!(printed.contains("Event:   push"), "{printed}");
    assert!(
        printed.contains("Id:      l-1") && printed.contains("✓ verified"),
        "{printed}"
    );
    assert!(
        printed.contains("Id:      l-2") && printed.contains("✗ signature mismatch"),
        "{printed}"
    );
    assert!(
        printed.contains("\"name\": \"ada\""),
        "pretty JSON: {printed}"
    );
    assert!(printed.contains("stopped"), "{printed}");
}

#[tokio::test]
async fn deliveries_dead_and_connections_through_the_admin_api() {
    let url = app().await;
    let push = payload(r#"{"ref":"main"}"#);
    let mut send = hooksmith();
    send.args([
        "send", "--sig", "github", "--secret", SECRET, "--event", "push", "--id", "adm-1",
    ])
    .args(["--url", &format!("{url}/hooks/github")])
    .arg(push.arg());
    assert!(run(send).await.status.success());
    tokio::time::sleep(Duration::from_millis(200)).await;

    let admin = |args: &[&str]| {
        let mut c = hooksmith();
        c.args(args)
            .env("HOOKSMITH_ADMIN_URL", &url)
            .env("HOOKSMITH_ADMIN_TOKEN", TOKEN);
        c
    };
    let list = run(admin(&["deliveries", "list", "--json"])).await;
    assert!(list.status.success(), "{}", text(&list));
    let json: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(json[0]["delivery_id"], "adm-1");
    let id = json[0]["id"].to_string();
    let table = text(
        &run(admin(&[
            "deliveries",
            "list",
            "--endpoint",
            "/hooks/github",
        ]))
        .await,
    );
    assert!(
        table.starts_with("ID") && table.contains("adm-1") && table.contains("on_push:succeeded/1"),
        "{table}"
    );
    let show = text(&run(admin(&["deliveries", "show", &id])).await);
    assert!(
        show.contains("x-hub-signature-256: [redacted]") && show.contains("\"ref\": \"main\""),
        "{show}"
    );
    let refused = run(admin(&["deliveries", "replay", &id])).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let forced = run(admin(&["deliveries", "replay", &id, "--force"])).await;
    assert!(
        forced.status.success() && text(&forced).contains("✓ on_push"),
        "{}",
        text(&forced)
    );
    assert!(text(&run(admin(&["dead", "list"])).await).contains("no deliveries"));
    assert!(text(&run(admin(&["dead", "replay"])).await).contains("0 dead jobs requeued"));

    let created = run(admin(&[
        "connections",
        "create",
        "--name",
        "acme",
        "--type",
        "github",
        "--secret",
        "tenant-s3cret",
    ]))
    .await;
    assert!(created.status.success(), "{}", text(&created));
    assert!(!text(&created).contains("tenant-s3cret"));
    let listed = text(&run(admin(&["connections", "list"])).await);
    assert!(
        listed.contains("acme") && listed.contains("github"),
        "{listed}"
    );
    assert!(
        run(admin(&[
            "connections",
            "rotate",
            "acme",
            "--secret",
            "tenant-2"
        ]))
        .await
        .status
        .success()
    );
    assert!(
        run(admin(&["connections", "delete", "acme"]))
            .await
            .status
            .success()
    );
    assert_eq!(
        run(admin(&["connections", "delete", "acme"]))
            .await
            .status
            .code(),
        Some(1)
    );

    // Without the token: a clear error, exit 2.
    let mut untokened = hooksmith();
    untokened
        .args(["deliveries", "list"])
        .env("HOOKSMITH_ADMIN_URL", &url);
    let output = run(untokened).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).contains("HOOKSMITH_ADMIN_TOKEN"),
        "{}",
        text(&output)
    );
}
