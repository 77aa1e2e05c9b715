//! A full scenario with every log line captured at TRACE level: none of the secrets, signatures or
//! tokens it used appears in a log line, an error, a `Debug` rendering or an admin answer.

use std::io::Write;
use std::sync::{Arc, Mutex};

use hooksmith::testing::{Params, SignInput, sign};
use hooksmith::{Delivery, HandlerError, webhook};
use hooksmith_tests::{ADMIN_TOKEN, Harness};

const GITHUB_SECRET: &str = "gh-S3CRET-never-logged";
const STRIPE_SECRET: &str = "whsec_STRIPE-never-logged";
const TENANT_SECRET: &str = "tenant-S3CRET-never-logged";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[webhook(
    path = "/n/github",
    sig = "github",
    event = "push",
    retry(max = 1, backoff = "10ms")
)]
async fn n_push(d: Delivery) -> hooksmith::Result {
    if d.id() == "fail" {
        return Err(HandlerError::new("handler failed on purpose"));
    }
    Ok(())
}

#[webhook(path = "/n/stripe", sig = "stripe")]
async fn n_stripe() {}

#[webhook(path = "/n/tenants/{connection}", sig = "github", event = "push")]
async fn n_tenant() {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_logs_no_secret() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let app = hooksmith::App::builder()
        .ignore_env()
        .var("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET)
        .var("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET)
        .admin_token(ADMIN_TOKEN)
        .build()
        .unwrap();
    let debug = format!("{app:?}");
    let h = Harness::new(app);
    let mut used: Vec<String> = vec![
        GITHUB_SECRET.into(),
        STRIPE_SECRET.into(),
        TENANT_SECRET.into(),
        ADMIN_TOKEN.into(),
    ];

    // Signed, refused, failing, duplicate, and a tenant's deliveries.
    let body = br#"{"ref":"main"}"#;
    for id in ["ok", "fail", "ok"] {
        let reply = h
            .post_signed(
                "/n/github",
                &[
                    ("x-github-event", "push".into()),
                    ("x-github-delivery", id.into()),
                ],
                body,
            )
            .await;
        assert_eq!(reply.status, 204);
    }
    let signature = h.app.sign("/n/github", body).unwrap()[0]
        .1
        .to_str()
        .unwrap()
        .to_owned();
    used.push(signature.trim_start_matches("sha256=").to_owned());
    let stripe = br#"{"id":"evt_n","type":"charge.succeeded"}"#;
    let stripe_sig = h.app.sign("/n/stripe", stripe).unwrap()[0]
        .1
        .to_str()
        .unwrap()
        .to_owned();
    used.push(stripe_sig.split("v1=").nth(1).unwrap().to_owned());
    assert_eq!(
        h.request(
            "POST",
            "/n/stripe",
            &[("stripe-signature", stripe_sig)],
            stripe.to_vec()
        )
        .await
        .status,
        204
    );
    let forged = "sha256=0000000000000000000000000000000000000000000000000000000000000000";
    let reply = h
        .request(
            "POST",
            "/n/github",
            &[
                ("x-github-event", "push".into()),
                ("x-hub-signature-256", forged.into()),
            ],
            body.to_vec(),
        )
        .await;
    assert_eq!(reply.status, 401);
    used.push(forged[7..].to_owned());

    let auth = [
        ("authorization", format!("Bearer {ADMIN_TOKEN}")),
        ("content-type", "application/json".into()),
    ];
    let create = serde_json::json!({"name": "acme", "type": "github", "secret": TENANT_SECRET});
    let created = h
        .request("POST", "/admin/connections", &auth, create.to_string())
        .await;
    assert_eq!(created.status, 201);
    let input = SignInput {
        body,
        timestamp: 0,
        id: "t",
        url: "",
        content_type: None,
    };
    let tenant_sig = sign("github", &Params::default(), TENANT_SECRET, &input).unwrap()[0]
        .1
        .to_str()
        .unwrap()
        .to_owned();
    used.push(tenant_sig.trim_start_matches("sha256=").to_owned());
    let headers = [
        ("x-github-event", "push".to_owned()),
        ("x-github-delivery", "t".to_owned()),
        ("x-hub-signature-256", tenant_sig),
    ];
    assert_eq!(
        h.request("POST", "/n/tenants/acme/", &headers, body.to_vec())
            .await
            .status,
        404,
        "trailing slash is another path"
    );
    assert_eq!(
        h.request("POST", "/n/tenants/acme", &headers, body.to_vec())
            .await
            .status,
        204
    );
    let wrong_token = h
        .request(
            "GET",
            "/admin/deliveries",
            &[("authorization", "Bearer guess-the-token".into())],
            "",
        )
        .await;
    assert_eq!(wrong_token.status, 401);
    used.push("guess-the-token".into());

    h.wait_for_status("/n/github", "fail", "dead").await;
    let mut answers = String::new();
    for path in [
        "/admin/deliveries?limit=100",
        "/admin/connections",
        "/admin/dead",
    ] {
        answers.push_str(&h.admin(path).await.to_string());
    }
    for d in h.deliveries("/n/github").await {
        answers.push_str(
            &h.admin(&format!("/admin/deliveries/{}", d["id"]))
                .await
                .to_string(),
        );
    }
    let bad_secret = hooksmith::App::builder()
        .ignore_env()
        .var("GITHUB_WEBHOOK_SECRET", format!(" {GITHUB_SECRET} "))
        .build()
        .unwrap_err()
        .to_string();

    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.lines().count() > 10, "the run was logged:\n{logs}");
    assert!(
        logs.contains("handler failed on purpose"),
        "failures are logged"
    );
    for (what, text) in [
        ("logs", &logs),
        ("Debug of the app", &debug),
        ("admin answers", &answers),
        ("startup error", &bad_secret),
    ] {
        for secret in &used {
            assert!(
                !text.contains(secret.as_str()),
                "{what} contain `{secret}`:\n{text}"
            );
        }
    }
}
