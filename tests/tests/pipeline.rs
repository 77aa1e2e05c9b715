//! The pipeline and the workers with handlers written for the purpose: retries, dead letters,
//! panics, sync handlers, `ack = "handled"`, state, filters, extractors.

use std::sync::Arc;
use std::time::Duration;

use hooksmith::axum::Json as AxumJson;
use hooksmith::axum::body::Body;
use hooksmith::{
    Delivery, Endpoint, HandlerError, Headers, Json, Raw, SecretSource, State, webhook,
};
use hooksmith_tests::{ADMIN_TOKEN, Harness, handler};
use serde::Deserialize;

const SECRET: &str = "pipeline secret";

/// Counts runs per handler, given to the app as state.
#[derive(Clone, Default)]
struct Runs(Arc<std::sync::Mutex<Vec<String>>>);

impl Runs {
    fn record(&self, what: impl Into<String>) {
        self.0.lock().unwrap().push(what.into());
    }
    fn count(&self, what: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|w| *w == what).count()
    }
}

const HOOKS: Endpoint = Endpoint::new("/t/hooks")
    .sig("hmac-sha256")
    .header("X-Signature")
    .prefix("sha256=")
    .event_field("type")
    .id_field("id")
    .secrets(&[
        SecretSource::env("PIPELINE_SECRET"),
        SecretSource::env("PIPELINE_OLD_SECRET").optional(),
    ]);

#[webhook(endpoint = HOOKS, event = "fail", retry(max = 2, backoff = "5ms", factor = 2))]
async fn always_fails(runs: State<Runs>) -> Result<(), std::io::Error> {
    runs.record("always_fails");
    Err(std::io::Error::other("the database is down"))
}

#[webhook(endpoint = HOOKS, event = "permanent", retry(max = 5, backoff = "5ms"))]
async fn refuses(runs: State<Runs>) -> hooksmith::Result {
    runs.record("refuses");
    Err(HandlerError::permanent("customer deleted"))
}

#[webhook(endpoint = HOOKS, event = "flaky", retry(max = 3, backoff = "5ms"))]
async fn flaky(runs: State<Runs>, delivery: Delivery) -> hooksmith::Result {
    runs.record("flaky");
    if delivery.attempt() < 3 {
        return Err(HandlerError::new(format!(
            "attempt {} failed",
            delivery.attempt()
        )));
    }
    Ok(())
}

#[webhook(endpoint = HOOKS, event = "boom", retry(max = 0))]
async fn panics() {
    panic!("handler exploded");
}

#[webhook(endpoint = HOOKS, event = "boom")]
async fn panic_sibling(runs: State<Runs>) {
    runs.record("panic_sibling");
}

#[webhook(endpoint = HOOKS, event = "sync")]
fn sync_handler(runs: State<Runs>, raw: Raw) {
    // Blocking is allowed here: sync handlers run on the blocking pool.
    std::thread::sleep(Duration::from_millis(1));
    // `block_on` panics on a runtime worker thread and is allowed on the blocking pool.
    tokio::runtime::Handle::current().block_on(async {});
    runs.record(format!("sync_handler:{}", raw.len()));
}

#[derive(Deserialize)]
struct Order {
    id: String,
    amount: u64,
}

#[webhook(endpoint = HOOKS, event = "order.*", filter(any(amount = 100, "meta.priority" = true), not(header("X-Test") = "skip")))]
async fn big_orders(order: Json<Order>, runs: State<Runs>, headers: Headers) {
    assert_eq!(headers.get("x-signature"), Some("[redacted]"));
    runs.record(format!("big_orders:{}:{}", order.id, order.amount));
}

#[webhook(endpoint = HOOKS, event = "order.created", filter("customer.email" = regex("@example\\.com$")))]
async fn example_customers(value: serde_json::Value, runs: State<Runs>) {
    runs.record(format!(
        "example_customers:{}",
        value["id"].as_str().unwrap_or("")
    ));
}

#[webhook(
    path = "/t/handled",
    sig = "none",
    ack = "handled",
    event_field = "type"
)]
async fn answers(body: serde_json::Value) -> hooksmith::Result<AxumJson<serde_json::Value>> {
    if body["type"] == "fail" {
        return Err(HandlerError::new("cannot answer"));
    }
    Ok(AxumJson(
        serde_json::json!({"challenge": body["challenge"]}),
    ))
}

#[webhook(path = "/t/open", sig = "none", methods = ["POST", "PUT"])]
async fn open_endpoint(runs: State<Runs>, delivery: Delivery) {
    runs.record(format!("open:{}", delivery.event()));
}

/// Holds its worker slot for 100 ms, recording when it starts and ends.
#[webhook(endpoint = HOOKS, event = "gate")]
async fn gated(runs: State<Runs>) -> hooksmith::Result {
    runs.record("gate+");
    tokio::time::sleep(Duration::from_millis(100)).await;
    runs.record("gate-");
    Ok(())
}

#[webhook(endpoint = HOOKS, event = "slow", timeout = "50ms", retry(max = 0))]
async fn too_slow(runs: State<Runs>) {
    runs.record("too_slow started");
    tokio::time::sleep(Duration::from_secs(30)).await;
    runs.record("too_slow finished");
}

/// The mission's own example, verbatim.
#[webhook(path = "/hooks/github", sig = "hmac-sha256", filter(action = "opened"))]
async fn mission_example(runs: State<Runs>, delivery: Delivery) {
    runs.record(format!("mission:{}", delivery.id()));
}

fn app(runs: &Runs) -> Harness {
    app_with(runs, |b| b)
}

fn app_with(
    runs: &Runs,
    f: impl FnOnce(hooksmith::AppBuilder) -> hooksmith::AppBuilder,
) -> Harness {
    let builder = hooksmith::App::builder()
        .ignore_env()
        .var("PIPELINE_SECRET", SECRET)
        .var("HOOKSMITH_SECRET_HOOKS_GITHUB", SECRET)
        .state(runs.clone())
        .admin_token(ADMIN_TOKEN);
    Harness::new(f(builder).build().expect("app builds"))
}

async fn send(h: &Harness, body: serde_json::Value) -> u16 {
    h.post_signed("/t/hooks", &[], body.to_string().as_bytes())
        .await
        .status
}

#[tokio::test]
async fn a_failing_handler_is_retried_with_backoff_then_dead() {
    let runs = Runs::default();
    let h = app(&runs);
    assert_eq!(
        send(&h, serde_json::json!({"type": "fail", "id": "f-1"})).await,
        204
    );
    let delivery = h.wait_for_status("/t/hooks", "f-1", "dead").await;
    let job = handler(&delivery, "always_fails");
    assert_eq!(job["status"], "dead");
    assert_eq!(job["attempts"], 3, "the first run and two retries");
    assert_eq!(job["last_error"], "the database is down");
    assert_eq!(runs.count("always_fails"), 3);
}

#[tokio::test]
async fn a_permanent_error_is_not_retried() {
    let runs = Runs::default();
    let h = app(&runs);
    assert_eq!(
        send(&h, serde_json::json!({"type": "permanent", "id": "p-1"})).await,
        204
    );
    let delivery = h.wait_for_status("/t/hooks", "p-1", "dead").await;
    assert_eq!(handler(&delivery, "refuses")["attempts"], 1);
    assert_eq!(runs.count("refuses"), 1);
}

#[tokio::test]
async fn a_flaky_handler_succeeds_on_a_retry() {
    let runs = Runs::default();
    let h = app(&runs);
    assert_eq!(
        send(&h, serde_json::json!({"type": "flaky", "id": "fl-1"})).await,
        204
    );
    let delivery = h.wait_for_status("/t/hooks", "fl-1", "acknowledged").await;
    let job = handler(&delivery, "flaky");
    assert_eq!(job["attempts"], 3);
    assert_eq!(
        job["last_error"], "attempt 2 failed",
        "the last failure stays on record"
    );
    assert_eq!(runs.count("flaky"), 3);
}

#[tokio::test]
async fn a_panicking_handler_does_not_disturb_its_sibling() {
    let runs = Runs::default();
    let h = app(&runs);
    assert_eq!(
        send(&h, serde_json::json!({"type": "boom", "id": "b-1"})).await,
        204
    );
    let delivery = h.wait_for_status("/t/hooks", "b-1", "dead").await;
    let panicked = handler(&delivery, "panics");
    assert_eq!(panicked["status"], "dead");
    assert!(
        panicked["last_error"]
            .as_str()
            .unwrap()
            .contains("handler exploded")
    );
    assert_eq!(handler(&delivery, "panic_sibling")["status"], "succeeded");
    assert_eq!(runs.count("panic_sibling"), 1);
    // The app keeps serving.
    assert_eq!(
        send(&h, serde_json::json!({"type": "flaky", "id": "b-2"})).await,
        204
    );
}

#[tokio::test]
async fn sync_handlers_run_on_the_blocking_pool() {
    let runs = Runs::default();
    let h = app(&runs);
    let body = serde_json::json!({"type": "sync", "id": "s-1"});
    assert_eq!(send(&h, body.clone()).await, 204);
    let delivery = h.wait_for_status("/t/hooks", "s-1", "acknowledged").await;
    assert_eq!(
        handler(&delivery, "sync_handler")["status"],
        "succeeded",
        "{delivery}"
    );
    assert_eq!(
        runs.count(&format!("sync_handler:{}", body.to_string().len())),
        1
    );
}

#[tokio::test]
async fn globs_and_filters_route_each_delivery() {
    let runs = Runs::default();
    let h = app(&runs);
    let cases = [
        (
            serde_json::json!({"type": "order.created", "id": "o-1", "amount": 100, "customer": {"email": "a@example.com"}}),
            vec!["big_orders", "example_customers"],
        ),
        (
            serde_json::json!({"type": "order.paid", "id": "o-2", "amount": 5, "meta": {"priority": true}}),
            vec!["big_orders"],
        ),
        (
            serde_json::json!({"type": "order.paid", "id": "o-3", "amount": 5}),
            vec![],
        ),
        (
            serde_json::json!({"type": "order.created", "id": "o-4", "amount": 5, "customer": {"email": "a@example.org"}}),
            vec![],
        ),
        (
            serde_json::json!({"type": "orders", "id": "o-5", "amount": 100}),
            vec![],
        ),
    ];
    for (body, expected) in &cases {
        assert_eq!(send(&h, body.clone()).await, 204);
        let id = body["id"].as_str().unwrap();
        let status = if expected.is_empty() {
            "unhandled"
        } else {
            "acknowledged"
        };
        let delivery = h.wait_for_status("/t/hooks", id, status).await;
        let mut names: Vec<&str> = delivery["handlers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["name"].as_str().unwrap())
            .collect();
        names.sort_unstable();
        assert_eq!(&names, expected, "{body}");
    }
    assert_eq!(runs.count("big_orders:o-1:100"), 1);
    assert_eq!(runs.count("example_customers:o-1"), 1);
    // A header filter excludes.
    let body = serde_json::json!({"type": "order.paid", "id": "o-6", "amount": 100});
    let reply = h
        .post_signed(
            "/t/hooks",
            &[("x-test", "skip".into())],
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 204);
    h.wait_for_status("/t/hooks", "o-6", "unhandled").await;
}

/// Stored headers read as they were sent, text beyond ASCII included, with credentials and the
/// endpoint's signature header redacted.
#[tokio::test]
async fn header_values_are_stored_as_sent_with_secrets_redacted() {
    let runs = Runs::default();
    let h = app(&runs);
    let body = serde_json::json!({"type": "order.paid", "id": "o-h", "amount": 1});
    let reply = h
        .post_signed(
            "/t/hooks",
            &[
                ("x-note", "café ☕\tok".into()),
                ("authorization", "Bearer s3cret".into()),
            ],
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 204);
    let delivery = h.wait_for_status("/t/hooks", "o-h", "unhandled").await;
    let detail = h
        .admin(&format!("/admin/deliveries/{}", delivery["id"]))
        .await;
    let headers = detail["headers"].as_array().unwrap();
    let value = |name: &str| {
        headers
            .iter()
            .find(|h| h[0] == name)
            .and_then(|h| h[1].as_str())
    };
    assert_eq!(value("x-note"), Some("café ☕\tok"), "{detail}");
    assert_eq!(value("content-type"), Some("application/json"));
    assert_eq!(value("authorization"), Some("[redacted]"));
    assert_eq!(value("x-signature"), Some("[redacted]"));
    assert!(!detail.to_string().contains("s3cret"));
}

#[tokio::test]
async fn the_previous_secret_still_verifies_during_a_rotation() {
    let runs = Runs::default();
    let old = app_with(&runs, |b| b.var("PIPELINE_SECRET", "old secret"));
    let body = serde_json::json!({"type": "order.paid", "id": "r-1", "amount": 1}).to_string();
    let signed_with_old = old.app.sign("/t/hooks", body.as_bytes()).unwrap();
    let header = signed_with_old[0].1.to_str().unwrap().to_owned();
    let rotated = app_with(&runs, |b| b.var("PIPELINE_OLD_SECRET", "old secret"));
    let reply = rotated
        .request(
            "POST",
            "/t/hooks",
            &[("x-signature", header.clone())],
            body.clone(),
        )
        .await;
    assert_eq!(reply.status, 204);
    let not_rotated = app(&runs);
    let reply = not_rotated
        .request("POST", "/t/hooks", &[("x-signature", header)], body)
        .await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn an_ack_handled_handler_answers_the_request() {
    let runs = Runs::default();
    let h = app(&runs);
    let reply = h
        .request(
            "POST",
            "/t/handled",
            &[],
            serde_json::json!({"type": "url_verification", "challenge": "c-42"}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap(),
        serde_json::json!({"challenge": "c-42"})
    );
    let reply = h
        .request(
            "POST",
            "/t/handled",
            &[],
            serde_json::json!({"type": "fail"}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.body, "handler failed\n",
        "the error stays out of the response"
    );
    let list = h.deliveries("/t/handled").await;
    let failed = list
        .iter()
        .find(|d| d["status"] != "acknowledged")
        .expect("the failed one");
    let job = handler(failed, "answers");
    assert_eq!(job["last_error"], "cannot answer");
    assert_eq!(
        job["status"], "retrying",
        "a failed in-request run is retried from the queue"
    );
    let ok = list
        .iter()
        .find(|d| d["status"] == "acknowledged")
        .expect("the answered one");
    assert_eq!(handler(ok, "answers")["attempts"], 1);
}

#[tokio::test]
async fn fifty_identical_deliveries_in_parallel_are_stored_and_handled_once() {
    let runs = Runs::default();
    let h = Arc::new(app(&runs));
    let body = serde_json::json!({"type": "order.paid", "id": "same", "amount": 100}).to_string();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (h, body) = (h.clone(), body.clone());
            tokio::spawn(
                async move { h.post_signed("/t/hooks", &[], body.as_bytes()).await.status },
            )
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 204);
    }
    h.wait_for_status("/t/hooks", "same", "acknowledged").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(runs.count("big_orders:same:100"), 1);
    assert_eq!(
        h.admin("/admin/deliveries?delivery_id=same")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn unsigned_endpoints_exist_only_when_written_and_take_their_methods() {
    let runs = Runs::default();
    let h = app(&runs);
    assert_eq!(h.request("PUT", "/t/open", &[], "{}").await.status, 204);
    let reply = h.request("DELETE", "/t/open", &[], "{}").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers["allow"], "POST, PUT");
}

#[tokio::test]
async fn a_disabled_endpoint_answers_404() {
    let runs = Runs::default();
    let h = app_with(&runs, |b| b.disable("/t/open"));
    assert_eq!(h.request("POST", "/t/open", &[], "{}").await.status, 404);
    assert_eq!(
        send(&h, serde_json::json!({"type": "order.paid", "id": "d-1"})).await,
        204
    );
}

#[tokio::test]
async fn a_missing_state_stops_the_app_at_startup() {
    let error = hooksmith::App::builder()
        .ignore_env()
        .var("PIPELINE_SECRET", SECRET)
        .build()
        .expect_err("State<Runs> is missing");
    let message = error.to_string();
    assert!(
        message.contains("`always_fails`") && message.contains("State<pipeline::Runs>"),
        "{message}"
    );
    assert!(message.contains(".state(value)"), "{message}");
}

#[tokio::test]
async fn nothing_is_stored_for_a_rejected_request() {
    let runs = Runs::default();
    let h = app(&runs);
    let reply = h
        .request(
            "POST",
            "/t/hooks",
            &[("x-signature", "sha256=00".into())],
            Body::from("{}"),
        )
        .await;
    assert_eq!(reply.status, 401);
    assert!(h.deliveries("/t/hooks").await.is_empty());
}

#[tokio::test]
async fn the_mission_example_verifies_github_format_and_filters() {
    let runs = Runs::default();
    let h = app(&runs);
    let opened = br#"{"action":"opened","number":1}"#;
    let signature = h.app.sign("/hooks/github", opened).unwrap();
    assert_eq!(signature[0].0.as_str(), "x-hub-signature-256");
    assert!(signature[0].1.to_str().unwrap().starts_with("sha256="));
    assert_eq!(
        h.post_signed("/hooks/github", &[], opened).await.status,
        204
    );
    let closed = br#"{"action":"closed","number":1}"#;
    assert_eq!(
        h.post_signed("/hooks/github", &[], closed).await.status,
        204
    );
    let list = h.deliveries("/hooks/github").await;
    assert_eq!(list.len(), 2);
    let (closed, opened) = (&list[0], &list[1]);
    let opened = h
        .wait_for_status(
            "/hooks/github",
            opened["delivery_id"].as_str().unwrap(),
            "acknowledged",
        )
        .await;
    assert_eq!(handler(&opened, "mission_example")["attempts"], 1);
    assert_eq!(closed["status"], "unhandled");
    assert_eq!(
        runs.count(&format!(
            "mission:{}",
            opened["delivery_id"].as_str().unwrap()
        )),
        1
    );
    let reply = h
        .request(
            "POST",
            "/hooks/github",
            &[("x-hub-signature-256", "sha256=00".into())],
            "{}",
        )
        .await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn the_router_merges_into_an_existing_app_with_its_own_routes_and_layers() {
    use hooksmith::axum::{Router, middleware, response::Response, routing::get};
    use tower::ServiceExt;

    let runs = Runs::default();
    let h = app(&runs);
    let tagged = |mut response: Response| async move {
        response
            .headers_mut()
            .insert("x-app", "mine".parse().unwrap());
        response
    };
    let router = Router::new()
        .route("/mine", get(|| async { "mine" }))
        .merge(h.app.router())
        .layer(middleware::map_response(tagged));
    let call = |method: &str, uri: &str| {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from("{}"))
            .unwrap()
    };
    let mine = router.clone().oneshot(call("GET", "/mine")).await.unwrap();
    assert_eq!(
        (mine.status().as_u16(), &mine.headers()["x-app"]),
        (200, &"mine".parse::<http::HeaderValue>().unwrap())
    );
    let hook = router.oneshot(call("POST", "/t/open")).await.unwrap();
    assert_eq!(hook.status(), 204);
    assert_eq!(hook.headers()["x-app"], "mine");
    let delivery = h.deliveries("/t/open").await;
    assert_eq!(delivery.len(), 1);
}

#[tokio::test]
async fn a_handler_past_its_timeout_is_abandoned_and_frees_its_worker() {
    let runs = Runs::default();
    let h = app_with(&runs, |b| b.concurrency(1));
    assert_eq!(
        send(&h, serde_json::json!({"type": "slow", "id": "t-1"})).await,
        204
    );
    let delivery = h.wait_for_status("/t/hooks", "t-1", "dead").await;
    assert_eq!(
        handler(&delivery, "too_slow")["last_error"],
        "handler timed out after 50 ms"
    );
    // With one worker slot, the next delivery runs only if the slot was freed.
    assert_eq!(
        send(&h, serde_json::json!({"type": "flaky", "id": "t-2"})).await,
        204
    );
    h.wait_for_status("/t/hooks", "t-2", "acknowledged").await;
    assert_eq!(runs.count("too_slow finished"), 0);
}

/// A job received while a worker slot is free goes straight to it; beyond the free slots, jobs
/// wait for a worker's claim. Either way each runs once, never more at a time than the
/// concurrency allows.
#[tokio::test]
async fn jobs_beyond_the_free_worker_slots_wait_and_all_run_once() {
    let runs = Runs::default();
    let h = app_with(&runs, |b| b.concurrency(2));
    for i in 0..6 {
        let body = serde_json::json!({"type": "gate", "id": format!("g-{i}")});
        assert_eq!(send(&h, body).await, 204);
    }
    for i in 0..6 {
        let delivery = h
            .wait_for_status("/t/hooks", &format!("g-{i}"), "acknowledged")
            .await;
        assert_eq!(handler(&delivery, "gated")["attempts"], 1);
    }
    let marks = runs.0.lock().unwrap().clone();
    let (mut running, mut most) = (0_i32, 0_i32);
    for mark in &marks {
        match mark.as_str() {
            "gate+" => running += 1,
            "gate-" => running -= 1,
            _ => continue,
        }
        most = most.max(running);
    }
    assert_eq!(runs.count("gate+"), 6, "{marks:?}");
    assert_eq!(most, 2, "two slots, both used, never more: {marks:?}");
}

#[tokio::test]
async fn finished_history_is_purged_on_schedule_and_keys_outlive_it() {
    let runs = Runs::default();
    let h = app_with(&runs, |b| {
        b.history(Duration::ZERO)
            .dedup_ttl(Duration::from_secs(3600))
            .purge_every(Duration::from_millis(20))
    });
    let reply = h.request("POST", "/t/open", &[], r#"{"n":1}"#).await;
    assert_eq!(reply.status, 204);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !h.deliveries("/t/open").await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the finished delivery was never purged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(runs.count("open:"), 1);
    // The same body again is still a duplicate: de-duplication outlives the history.
    assert_eq!(
        h.request("POST", "/t/open", &[], r#"{"n":1}"#).await.status,
        204
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(runs.count("open:"), 1);
}

#[tokio::test]
async fn a_dedup_window_shorter_than_the_history_is_refused() {
    let runs = Runs::default();
    let error = hooksmith::App::builder()
        .ignore_env()
        .var("PIPELINE_SECRET", SECRET)
        .var("HOOKSMITH_SECRET_HOOKS_GITHUB", SECRET)
        .state(runs)
        .history(Duration::from_secs(7200))
        .dedup_ttl(Duration::from_secs(3600))
        .build()
        .expect_err("refused");
    assert!(
        error.to_string().contains("HOOKSMITH_DEDUP_SECS"),
        "{error}"
    );
}

#[tokio::test]
async fn transitions_are_published_after_they_are_stored() {
    use hooksmith::TransitionKind;
    let runs = Runs::default();
    let h = app(&runs);
    let mut transitions = h.app.subscribe();
    let body = serde_json::json!({"type": "flaky", "id": "obs-1"});
    assert_eq!(send(&h, body.clone()).await, 204);
    assert_eq!(send(&h, body).await, 204);
    assert_eq!(
        h.request(
            "POST",
            "/t/hooks",
            &[("x-signature", "sha256=00".into())],
            "{}"
        )
        .await
        .status,
        401
    );
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let t = tokio::time::timeout(Duration::from_secs(10), transitions.recv())
            .await
            .expect("in time")
            .unwrap();
        if let TransitionKind::Succeeded { .. } | TransitionKind::Retrying { .. } = &t.kind {
            // Stored before it was published: the admin API already shows it.
            let stored = h
                .admin(&format!("/admin/deliveries/{}", t.record_id.unwrap()))
                .await;
            let attempts = handler(&stored, "flaky")["attempts"].as_u64().unwrap();
            if let TransitionKind::Retrying { attempt, .. } = &t.kind {
                assert!(attempts >= u64::from(*attempt));
            } else {
                assert_eq!(handler(&stored, "flaky")["status"], "succeeded");
            }
        }
        seen.push(t.kind);
    }
    let flaky = |attempt| TransitionKind::Retrying {
        handler: "flaky".into(),
        attempt,
    };
    assert_eq!(seen[0], TransitionKind::Received);
    assert!(seen.contains(&TransitionKind::Duplicate));
    assert!(seen.contains(&TransitionKind::Rejected {
        reason: "signature_malformed".into()
    }));
    assert!(seen.contains(&flaky(1)) && seen.contains(&flaky(2)));
    assert!(seen.contains(&TransitionKind::Succeeded {
        handler: "flaky".into()
    }));
}

fn toml_file(text: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "hooksmith-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn hooksmith_toml_changes_limits_retries_and_secrets_without_a_rebuild() {
    let runs = Runs::default();
    let file = toml_file(
        r#"
        [endpoints."/t/hooks"]
        max_body = 64
        secrets = ["TOML_SECRET", "TOML_OLD_SECRET?"]

        [endpoints."/t/open"]
        enabled = false

        [handlers.always_fails]
        retry = { max = 0 }
        "#,
    );
    let h = app_with(&runs, |b| {
        b.config_file(&file).var("TOML_SECRET", "from the file")
    });
    let small = serde_json::json!({"type": "fail", "id": "toml-1"}).to_string();
    let signature = h.app.sign("/t/hooks", small.as_bytes()).unwrap();
    let reply = h
        .request(
            "POST",
            "/t/hooks",
            &[("x-signature", signature[0].1.to_str().unwrap().to_owned())],
            small.clone(),
        )
        .await;
    assert_eq!(reply.status, 204);
    let delivery = h.wait_for_status("/t/hooks", "toml-1", "dead").await;
    assert_eq!(
        handler(&delivery, "always_fails")["attempts"],
        1,
        "retry.max = 0 from the file"
    );
    let big =
        serde_json::json!({"type": "fail", "id": "toml-2", "pad": "x".repeat(100)}).to_string();
    assert_eq!(
        h.post_signed("/t/hooks", &[], big.as_bytes()).await.status,
        413
    );
    assert_eq!(
        h.request("POST", "/t/open", &[], "{}").await.status,
        404,
        "disabled in the file"
    );
    // The secret came from the file's variable: the pipeline secret no longer verifies.
    let other = hooksmith::testing::sign(
        "hmac-sha256",
        &hooksmith::testing::Params {
            header: Some("X-Signature"),
            prefix: Some("sha256="),
            encoding: None,
        },
        SECRET,
        &hooksmith::testing::SignInput {
            body: small.as_bytes(),
            timestamp: 0,
            id: "",
            url: "",
            content_type: None,
        },
    )
    .unwrap();
    let reply = h
        .request(
            "POST",
            "/t/hooks",
            &[("x-signature", other[0].1.to_str().unwrap().to_owned())],
            small,
        )
        .await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn a_hooksmith_toml_with_a_typo_stops_the_app() {
    for (text, expected) in [
        (
            "[endpoints.\"/t/hookz\"]\nmax_body = 1",
            "`/t/hookz`, which this app does not have",
        ),
        (
            "[handlers.always_fail]\ntimeout = \"1s\"",
            "`always_fail`, which this app does not have",
        ),
        ("[endpoints.\"/t/hooks\"]\nmax_bdy = 1", "max_bdy"),
        (
            "[handlers.always_fails]\nretry = { backoff = \"soon\" }",
            "invalid duration",
        ),
    ] {
        let file = toml_file(text);
        let error = hooksmith::App::builder()
            .ignore_env()
            .var("PIPELINE_SECRET", SECRET)
            .var("HOOKSMITH_SECRET_HOOKS_GITHUB", SECRET)
            .state(Runs::default())
            .config_file(&file)
            .build()
            .expect_err(text)
            .to_string();
        assert!(error.contains(expected), "{text}: {error}");
    }
    let missing = hooksmith::App::builder()
        .ignore_env()
        .config_file("/no/such/hooksmith.toml")
        .build()
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("cannot read /no/such/hooksmith.toml"),
        "{missing}"
    );
}
