//! `hooksmith::testing::TestClient`: what users test their handlers with.

use hooksmith::store::JobStatus;
use hooksmith::testing::TestClient;
use hooksmith::{HandlerError, Json, webhook};

#[derive(serde::Deserialize)]
struct Charge {
    id: String,
}

#[webhook(
    path = "/kit/stripe",
    sig = "stripe",
    event = "charge.*",
    retry(max = 1, backoff = "1h")
)]
async fn kit_charge(charge: Json<Charge>) -> hooksmith::Result {
    if charge.id == "evt_bad" {
        return Err(HandlerError::new("card declined"));
    }
    Ok(())
}

#[webhook(path = "/kit/github", sig = "github", event = "push")]
async fn kit_push() {}

fn client() -> TestClient {
    let app = hooksmith::App::builder()
        .ignore_env()
        .var("STRIPE_WEBHOOK_SECRET", "whsec_kit")
        .var("GITHUB_WEBHOOK_SECRET", "kit")
        .build()
        .unwrap();
    TestClient::new(app)
}

#[tokio::test]
async fn a_handler_outcome_in_three_lines() {
    let client = client();
    let response = client
        .post("/kit/stripe")
        .json(&serde_json::json!({"id": "evt_ok", "type": "charge.succeeded"}))
        .send()
        .await;
    assert_eq!((response.status(), response.delivery_id()), (204, "evt_ok"));
    assert_eq!(
        response
            .outcome()
            .await
            .unwrap()
            .handler("kit_charge")
            .unwrap()
            .status,
        JobStatus::Succeeded
    );
}

#[tokio::test]
async fn failures_are_reported_with_their_error() {
    let client = client();
    let response = client
        .post("/kit/stripe")
        .json(&serde_json::json!({"id": "evt_bad", "type": "charge.failed"}))
        .send()
        .await;
    let outcome = response.outcome().await.unwrap();
    let job = outcome.handler("kit_charge").unwrap();
    assert_eq!(
        (job.status, job.attempts, job.last_error.as_deref()),
        (JobStatus::Retrying, 1, Some("card declined"))
    );
}

#[tokio::test]
async fn unsigned_requests_unmatched_events_and_headers() {
    let client = client();
    let refused = client
        .post("/kit/github")
        .event("push")
        .unsigned()
        .send()
        .await;
    assert_eq!(refused.status(), 401);
    assert!(refused.outcome().await.is_none());
    let other = client
        .post("/kit/github")
        .event("issues")
        .id("gh-9")
        .send()
        .await;
    assert_eq!(other.delivery_id(), "gh-9");
    assert!(
        other.outcome().await.unwrap().handlers.is_empty(),
        "unhandled"
    );
    let stale = client
        .post("/kit/stripe")
        .timestamp(1)
        .json(&serde_json::json!({"id": "evt_old", "type": "charge.x"}))
        .send()
        .await;
    assert_eq!(stale.status(), 409);
}
