//! The quickstart, end to end: through the router in-process (`oneshot`) and over a real TCP
//! socket with a real HTTP client.

use std::sync::atomic::{AtomicU64, Ordering};

use hooksmith::axum::body::Body;
use hooksmith_tests::{ADMIN_TOKEN, Harness, handler};

const GITHUB_SECRET: &str = "quickstart github secret";
const CONNECTOR_SECRET: &str = "quickstart connector secret";
const STRIPE_SECRET: &str = "whsec_quickstart_stripe";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SLACK_SECRET: &str = "quickstart slack secret";
const PR_OPENED: &[u8] = include_bytes!("../fixtures/pull_request.opened.1k.json");

/// The quickstart's handlers on a memory store, with every secret set.
fn configured() -> hooksmith::AppBuilder {
    quickstart::builder()
        .expect("environment")
        .store(hooksmith::store::MemoryStore::new())
        .only_explicit_handlers()
        .var("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET)
        .var("CONNECTOR_SECRET", CONNECTOR_SECRET)
        .var("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET)
        .var("STANDARD_WEBHOOK_SECRET", STANDARD_SECRET)
        .var("SLACK_SIGNING_SECRET", SLACK_SECRET)
}

async fn harness() -> Harness {
    let app = configured()
        .admin_token(ADMIN_TOKEN)
        .build()
        .expect("quickstart builds");
    Harness::new(app)
}

fn fresh_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "delivery-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn github(event: &str, id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-github-event", event.to_owned()),
        ("x-github-delivery", id.to_owned()),
    ]
}

fn with_action(action: &str) -> Vec<u8> {
    String::from_utf8_lossy(PR_OPENED)
        .replacen(
            "\"action\":\"opened\"",
            &format!("\"action\":\"{action}\""),
            1,
        )
        .into_bytes()
}

#[tokio::test]
async fn a_signed_pull_request_is_stored_then_handled_once() {
    let h = harness().await;
    let id = fresh_id();
    let reply = h
        .post_signed("/hooks/github", &github("pull_request", &id), PR_OPENED)
        .await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
    let delivery = h
        .wait_for_status("/hooks/github", &id, "acknowledged")
        .await;
    assert_eq!(delivery["event"], "pull_request");
    assert_eq!(delivery["delivery_id"], id.as_str());
    let pr = handler(&delivery, "pr_opened");
    assert_eq!(pr["status"], "succeeded");
    assert_eq!(pr["attempts"], 1);
    assert_eq!(
        delivery["handlers"].as_array().unwrap().len(),
        1,
        "only pr_opened matches"
    );
}

#[tokio::test]
async fn filters_route_by_action() {
    let h = harness().await;
    let (opened, closed) = (fresh_id(), fresh_id());
    assert_eq!(
        h.post_signed("/hooks/github", &github("pull_request", &opened), PR_OPENED)
            .await
            .status,
        204
    );
    let body = with_action("closed");
    assert_eq!(
        h.post_signed("/hooks/github", &github("pull_request", &closed), &body)
            .await
            .status,
        204
    );
    let opened = h
        .wait_for_status("/hooks/github", &opened, "acknowledged")
        .await;
    assert_eq!(handler(&opened, "pr_opened")["status"], "succeeded");
    let closed = h
        .wait_for_status("/hooks/github", &closed, "unhandled")
        .await;
    assert_eq!(closed["handlers"], serde_json::json!([]));
}

#[tokio::test]
async fn other_events_reach_their_handlers() {
    let h = harness().await;
    let (ping, issue) = (fresh_id(), fresh_id());
    let zen = br#"{"zen":"Design for failure.","hook_id":1}"#;
    assert_eq!(
        h.post_signed("/hooks/github", &github("ping", &ping), zen)
            .await
            .status,
        204
    );
    let issue_body = br#"{"action":"closed","issue":{"number":9}}"#;
    assert_eq!(
        h.post_signed("/hooks/github", &github("issues", &issue), issue_body)
            .await
            .status,
        204
    );
    let ping = h
        .wait_for_status("/hooks/github", &ping, "acknowledged")
        .await;
    assert_eq!(handler(&ping, "ping")["attempts"], 1);
    let issue = h
        .wait_for_status("/hooks/github", &issue, "acknowledged")
        .await;
    assert_eq!(handler(&issue, "issue_event")["status"], "succeeded");
}

#[tokio::test]
async fn the_same_delivery_twice_is_stored_and_handled_once() {
    let h = harness().await;
    let id = fresh_id();
    for _ in 0..2 {
        let reply = h
            .post_signed("/hooks/github", &github("pull_request", &id), PR_OPENED)
            .await;
        assert_eq!(reply.status, 204);
    }
    let delivery = h
        .wait_for_status("/hooks/github", &id, "acknowledged")
        .await;
    assert_eq!(handler(&delivery, "pr_opened")["attempts"], 1);
    let all = h
        .admin(&format!("/admin/deliveries?delivery_id={id}"))
        .await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
}

#[tokio::test]
async fn bad_missing_empty_and_stale_signatures_are_401_and_store_nothing() {
    let h = harness().await;
    let id = fresh_id();
    let good = h.app.sign("/hooks/github", PR_OPENED).unwrap()[0]
        .1
        .to_str()
        .unwrap()
        .to_owned();
    let wrong = good.replace(&good[good.len() - 4..], "0000");
    let cases: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![("x-hub-signature-256", String::new())],
        vec![("x-hub-signature-256", "sha256=".into())],
        vec![("x-hub-signature-256", wrong)],
        vec![(
            "x-hub-signature-256",
            good.trim_start_matches("sha256=").to_owned(),
        )],
        vec![("x-hub-signature-256", "sha1=0123".into())],
    ];
    for signature in cases {
        let mut headers = github("pull_request", &id);
        headers.extend(signature.iter().cloned());
        let reply = h
            .request("POST", "/hooks/github", &headers, PR_OPENED.to_vec())
            .await;
        assert_eq!(reply.status, 401, "{signature:?}");
        assert_eq!(
            reply.body, "invalid signature\n",
            "every failure answers the same"
        );
    }
    // Signed, then changed in transit.
    let mut headers = github("pull_request", &id);
    headers.push(("x-hub-signature-256", good));
    let reply = h
        .request("POST", "/hooks/github", &headers, with_action("opened "))
        .await;
    assert_eq!(reply.status, 401);
    assert!(
        h.admin(&format!("/admin/deliveries?delivery_id={id}"))
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn githubs_published_vector_passes_verification() {
    // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
    // The body is not JSON, so once verified it is refused as malformed (400), not as unsigned.
    let app = configured()
        .var("GITHUB_WEBHOOK_SECRET", "It's a Secret to Everybody")
        .build()
        .unwrap();
    let h = Harness::new(app);
    let vector = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let mut headers = github("ping", &fresh_id());
    headers.push(("x-hub-signature-256", vector.into()));
    let reply = h
        .request("POST", "/hooks/github", &headers, "Hello, World!")
        .await;
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    let reply = h
        .request("POST", "/hooks/github", &headers, "Hello, World?")
        .await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn malformed_json_and_non_object_roots_are_400() {
    let h = harness().await;
    for body in [
        &b"{\"action\":"[..],
        b"[{\"action\":\"opened\"}]",
        b"\"opened\"",
        b"",
        b"{} {}",
    ] {
        let reply = h
            .post_signed("/hooks/github", &github("pull_request", &fresh_id()), body)
            .await;
        assert_eq!(reply.status, 400, "{:?}", String::from_utf8_lossy(body));
    }
}

#[tokio::test]
async fn form_encoded_github_deliveries_are_accepted() {
    let h = harness().await;
    let id = fresh_id();
    let encoded: String = form_encode(&String::from_utf8_lossy(PR_OPENED));
    let body = format!("payload={encoded}");
    let signature = h.app.sign("/hooks/github", body.as_bytes()).unwrap();
    let mut headers = github("pull_request", &id);
    headers.push((
        "x-hub-signature-256",
        signature[0].1.to_str().unwrap().to_owned(),
    ));
    headers.push(("content-type", "application/x-www-form-urlencoded".into()));
    let reply = h.request("POST", "/hooks/github", &headers, body).await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
    let delivery = h
        .wait_for_status("/hooks/github", &id, "acknowledged")
        .await;
    assert_eq!(handler(&delivery, "pr_opened")["status"], "succeeded");
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn wrong_methods_are_405_and_unknown_paths_404() {
    let h = harness().await;
    let reply = h.request("GET", "/hooks/github", &[], Body::empty()).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers["allow"], "POST");
    assert_eq!(
        h.request("POST", "/hooks/gitlab", &[], Body::empty())
            .await
            .status,
        404
    );
    assert_eq!(
        h.request("GET", "/healthz", &[], Body::empty())
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_declared_oversized_body_is_413_before_it_is_read() {
    let h = harness().await;
    // The connector's limit is 1 MiB; the declared length alone decides.
    let headers = vec![("content-length", (2 * 1024 * 1024).to_string())];
    let reply = h
        .request("POST", "/events", &headers, Body::from(vec![b' '; 10]))
        .await;
    assert_eq!(reply.status, 413);
}

#[tokio::test]
async fn a_payload_that_does_not_fit_the_type_is_a_recorded_retried_failure_not_a_401() {
    let h = harness().await;
    let id = fresh_id();
    let body = br#"{"action":"opened","number":"not a number","pull_request":{"title":"x"}}"#;
    let reply = h
        .post_signed("/hooks/github", &github("pull_request", &id), body)
        .await;
    assert_eq!(reply.status, 204);
    // Dispatched while the run is in flight; retrying once its failure is recorded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let delivery = loop {
        let delivery = h.wait_for_status("/hooks/github", &id, "dispatched").await;
        if handler(&delivery, "pr_opened")["status"] == "retrying" {
            break delivery;
        }
        assert!(std::time::Instant::now() < deadline, "{delivery}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let pr = handler(&delivery, "pr_opened");
    assert_eq!(pr["attempts"], 1);
    let error = pr["last_error"].as_str().unwrap();
    assert!(
        error.contains("does not fit") && error.contains("PullRequestEvent"),
        "{error}"
    );
}

#[tokio::test]
async fn the_connector_endpoint_reads_its_event_from_the_body() {
    let h = harness().await;
    let actions = br#"{"type":"actions","session_id":"s-1","actions":[{"title":"Clicked","description":"Buy"}]}"#;
    let signature = h.app.sign("/events", actions).unwrap();
    assert_eq!(signature[0].0.as_str(), "x-connector-signature");
    assert!(signature[0].1.to_str().unwrap().starts_with("sha256="));
    assert_eq!(h.post_signed("/events", &[], actions).await.status, 204);
    let summary = br#"{"type":"summary","session_id":"s-1","summary":"bought"}"#;
    assert_eq!(h.post_signed("/events", &[], summary).await.status, 204);
    let list = h.deliveries("/events").await;
    assert_eq!(list.len(), 2);
    // The connector has no delivery id: the body's SHA-256 stands in.
    for d in &list {
        assert_eq!(d["delivery_id"].as_str().unwrap().len(), 64);
    }
    let ids: Vec<String> = list
        .iter()
        .map(|d| d["delivery_id"].as_str().unwrap().to_owned())
        .collect();
    let actions = h.wait_for_status("/events", &ids[1], "acknowledged").await;
    assert_eq!(handler(&actions, "on_actions")["attempts"], 1);
    let summary = h.wait_for_status("/events", &ids[0], "acknowledged").await;
    assert_eq!(handler(&summary, "on_summary")["status"], "succeeded");
}

#[tokio::test]
async fn the_admin_api_needs_its_token_and_redacts_signatures() {
    let h = harness().await;
    let id = fresh_id();
    assert_eq!(
        h.post_signed("/hooks/github", &github("pull_request", &id), PR_OPENED)
            .await
            .status,
        204
    );
    for auth in [
        vec![],
        vec![("authorization", "Bearer wrong".to_owned())],
        vec![("authorization", ADMIN_TOKEN.to_owned())],
    ] {
        let reply = h
            .request("GET", "/admin/deliveries", &auth, Body::empty())
            .await;
        assert_eq!(reply.status, 401, "{auth:?}");
    }
    let delivery = h
        .wait_for_status("/hooks/github", &id, "acknowledged")
        .await;
    let detail = h
        .admin(&format!("/admin/deliveries/{}", delivery["id"]))
        .await;
    assert_eq!(detail["body"].as_str().unwrap().as_bytes(), PR_OPENED);
    assert!(!detail["body_base64"].as_str().unwrap().is_empty());
    let headers = detail["headers"].as_array().unwrap();
    let signature = headers
        .iter()
        .find(|h| h[0] == "x-hub-signature-256")
        .unwrap();
    assert_eq!(signature[1], "[redacted]");
    assert!(
        headers
            .iter()
            .any(|h| h[0] == "x-github-delivery" && h[1] == id.as_str())
    );
    assert_eq!(detail["received_at"].as_str().unwrap().len(), 24);
    let missing = h
        .request(
            "GET",
            "/admin/deliveries/999999",
            &[("authorization", format!("Bearer {ADMIN_TOKEN}"))],
            Body::empty(),
        )
        .await;
    assert_eq!(missing.status, 404);
    let bad = h
        .request(
            "GET",
            "/admin/deliveries?status=lost",
            &[("authorization", format!("Bearer {ADMIN_TOKEN}"))],
            Body::empty(),
        )
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn the_admin_api_is_not_mounted_without_a_token() {
    let app = configured().build().unwrap();
    let h = Harness::new(app);
    let reply = h
        .request(
            "GET",
            "/admin/deliveries",
            &[("authorization", format!("Bearer {ADMIN_TOKEN}"))],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn the_admin_list_filters_and_pages_newest_first() {
    let h = harness().await;
    let ids: Vec<String> = (0..5).map(|_| fresh_id()).collect();
    for id in &ids {
        assert_eq!(
            h.post_signed("/hooks/github", &github("pull_request", id), PR_OPENED)
                .await
                .status,
            204
        );
    }
    let page = h
        .admin("/admin/deliveries?endpoint=/hooks/github&limit=2")
        .await;
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["delivery_id"], ids[4].as_str());
    assert_eq!(page[1]["delivery_id"], ids[3].as_str());
    let next = h
        .admin(&format!(
            "/admin/deliveries?limit=2&before={}",
            page[1]["id"]
        ))
        .await;
    assert_eq!(next[0]["delivery_id"], ids[2].as_str());
    let future = h.admin("/admin/deliveries?since_ms=99999999999999").await;
    assert!(future.as_array().unwrap().is_empty());
    let none = h.admin("/admin/deliveries?event=issues").await;
    assert!(none.as_array().unwrap().is_empty());
}

mod over_tcp {
    use std::convert::Infallible;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Frame;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    use super::*;

    #[tokio::test]
    async fn a_real_client_gets_204_401_and_413() {
        let app = configured().admin_token(ADMIN_TOKEN).build().unwrap();
        let signature = app.sign("/hooks/github", PR_OPENED).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.serve_on(listener, async {
            let _ = stopped.await;
        }));
        let client = Client::builder(TokioExecutor::new())
            .build_http::<http_body_util::combinators::BoxBody<Bytes, Infallible>>();

        let id = fresh_id();
        let request = http::Request::post(format!("http://{addr}/hooks/github"))
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", &id)
            .header(signature[0].0.clone(), signature[0].1.clone())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(PR_OPENED)).boxed())
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 204);

        let request = http::Request::post(format!("http://{addr}/hooks/github"))
            .header("x-github-event", "pull_request")
            .header("x-hub-signature-256", "sha256=00")
            .body(Full::new(Bytes::from_static(PR_OPENED)).boxed())
            .unwrap();
        assert_eq!(client.request(request).await.unwrap().status(), 401);

        // No Content-Length: the limit is enforced while streaming.
        let chunks =
            (0..40).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b' '; 64 * 1024]))));
        let request = http::Request::post(format!("http://{addr}/events"))
            .body(IterStream(chunks).boxed())
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 413);

        // The handler ran: read it back through the admin API over the socket.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let request =
                http::Request::get(format!("http://{addr}/admin/deliveries?delivery_id={id}"))
                    .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                    .body(Full::new(Bytes::new()).boxed())
                    .unwrap();
            let body = client
                .request(request)
                .await
                .unwrap()
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes();
            let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if list[0]["status"] == "acknowledged" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{list}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    /// A body streamed from an iterator of frames, sent chunked (no `Content-Length`).
    struct IterStream<I>(I);

    impl<I> hyper::body::Body for IterStream<I>
    where
        I: Iterator<Item = Result<Frame<Bytes>, Infallible>> + Unpin,
    {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
}

#[tokio::test]
async fn stripe_events_reach_payment_succeeded_and_charge_event() {
    let h = harness().await;
    let paid =
        br#"{"id":"evt_paid","type":"payment_intent.succeeded","data":{"object":{"amount":2000}}}"#;
    let refunded = br#"{"id":"evt_refund","type":"charge.refunded","data":{"object":{}}}"#;
    let other = br#"{"id":"evt_other","type":"customer.created","data":{"object":{}}}"#;
    for body in [&paid[..], refunded, other] {
        assert_eq!(h.post_signed("/hooks/stripe", &[], body).await.status, 204);
    }
    let paid = h
        .wait_for_status("/hooks/stripe", "evt_paid", "acknowledged")
        .await;
    assert_eq!(handler(&paid, "payment_succeeded")["attempts"], 1);
    let refunded = h
        .wait_for_status("/hooks/stripe", "evt_refund", "acknowledged")
        .await;
    assert_eq!(handler(&refunded, "charge_event")["status"], "succeeded");
    h.wait_for_status("/hooks/stripe", "evt_other", "unhandled")
        .await;
    // Stripe retries a delivery with the same event id: it is handled once.
    let again =
        br#"{"id":"evt_paid","type":"payment_intent.succeeded","data":{"object":{"amount":2000}}}"#;
    assert_eq!(h.post_signed("/hooks/stripe", &[], again).await.status, 204);
    assert_eq!(
        h.admin("/admin/deliveries?delivery_id=evt_paid")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn standard_webhooks_reach_user_created() {
    let h = harness().await;
    let body = br#"{"type":"user.created","data":{"id":"u_1"}}"#;
    let reply = h.post_signed("/hooks/standard", &[], body).await;
    assert_eq!(reply.status, 204);
    let list = h.deliveries("/hooks/standard").await;
    let id = list[0]["delivery_id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("msg_"),
        "the webhook-id header is the delivery id: {id}"
    );
    let delivery = h
        .wait_for_status("/hooks/standard", &id, "acknowledged")
        .await;
    assert_eq!(handler(&delivery, "user_created")["attempts"], 1);
}

#[tokio::test]
async fn slack_answers_its_challenge_and_routes_event_callbacks() {
    let h = harness().await;
    let challenge = br#"{"type":"url_verification","challenge":"c-7"}"#;
    let reply = h.post_signed("/hooks/slack", &[], challenge).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap()["challenge"],
        "c-7"
    );
    let event = br#"{"type":"event_callback","event_id":"Ev42","event":{"type":"app_mention"}}"#;
    assert_eq!(h.post_signed("/hooks/slack", &[], event).await.status, 204);
    let delivery = h
        .wait_for_status("/hooks/slack", "Ev42", "acknowledged")
        .await;
    assert_eq!(handler(&delivery, "slack_event")["status"], "succeeded");
}

#[tokio::test]
async fn metrics_count_requests_by_endpoint_status_and_reason() {
    let h = harness().await;
    let id = fresh_id();
    assert_eq!(
        h.post_signed("/hooks/github", &github("pull_request", &id), PR_OPENED)
            .await
            .status,
        204
    );
    let mut bad = github("pull_request", &fresh_id());
    bad.push(("x-hub-signature-256", "sha256=00".into()));
    assert_eq!(
        h.request("POST", "/hooks/github", &bad, PR_OPENED.to_vec())
            .await
            .status,
        401
    );
    h.wait_for_status("/hooks/github", &id, "acknowledged")
        .await;
    let reply = h.request("GET", "/metrics", &[], Body::empty()).await;
    assert_eq!(reply.status, 200);
    let text = String::from_utf8_lossy(&reply.body);
    // Other tests in this binary share the process's recorder: look for the series, not totals.
    for series in [
        r#"hooksmith_requests_total{endpoint="/hooks/github",status="204",outcome="stored"}"#,
        r#"hooksmith_requests_total{endpoint="/hooks/github",status="401",outcome="rejected"}"#,
        r#"hooksmith_rejected_total{endpoint="/hooks/github",reason="signature_malformed"}"#,
        r#"hooksmith_handler_runs_total{handler="pr_opened",result="succeeded"}"#,
        r#"hooksmith_ack_seconds_bucket{endpoint="/hooks/github""#,
        "hooksmith_queue_depth",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
    assert!(!text.contains(GITHUB_SECRET));
}
