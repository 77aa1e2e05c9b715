//! The quickstart's handlers, shared by its binary and by the black-box tests.
//!
//! Endpoints (see the README's "Quickstart contract"):
//!
//! * `POST /hooks/github` (`sig = "github"`): `pr_opened` (`pull_request.opened`), `issue_event`
//!   (`issues`), `ping`.
//! * `POST /hooks/stripe` (`sig = "stripe"`): `payment_succeeded` (`payment_intent.succeeded`),
//!   `charge_event` (`charge.*`).
//! * `POST /hooks/standard` (`sig = "standard"`, Standard Webhooks / Svix): `user_created`
//!   (`user.created`).
//! * `POST /hooks/slack` (`sig = "slack"`): `url_verification` is answered by hooksmith;
//!   `slack_event` (`event_callback`).
//! * `POST /events` (seed 001's connector: `X-Connector-Signature: sha256=<hex>`, event from the
//!   body's `type`): `on_actions` (`actions`), `on_summary` (`summary`).

use hooksmith::{AppBuilder, Delivery, Endpoint, Json, SecretSource, webhook};
use serde::Deserialize;

/// The parts of a GitHub `pull_request` delivery this app reads.
#[derive(Debug, Deserialize)]
pub struct PullRequestEvent {
    /// The pull request number.
    pub number: u64,
    /// The pull request.
    pub pull_request: PullRequest,
}

/// A pull request.
#[derive(Debug, Deserialize)]
pub struct PullRequest {
    /// Its title.
    pub title: String,
}

/// The parts of a GitHub `issues` delivery this app reads.
#[derive(Debug, Deserialize)]
pub struct IssuesEvent {
    /// `opened`, `closed`, ...
    pub action: String,
    /// The issue.
    pub issue: Issue,
}

/// An issue.
#[derive(Debug, Deserialize)]
pub struct Issue {
    /// The issue number.
    pub number: u64,
}

// ANCHOR: pr_opened
/// A GitHub pull request was opened.
#[webhook(path = "/hooks/github", sig = "github", event = "pull_request.opened")]
pub async fn pr_opened(pr: Json<PullRequestEvent>, delivery: Delivery) -> hooksmith::Result {
    tracing::info!(number = pr.number, title = %pr.pull_request.title, id = delivery.id(), "PR opened");
    Ok(())
}
// ANCHOR_END: pr_opened

/// Any GitHub `issues` event.
#[webhook(path = "/hooks/github", sig = "github", event = "issues")]
pub async fn issue_event(event: Json<IssuesEvent>) -> hooksmith::Result {
    tracing::info!(number = event.issue.number, action = %event.action, "issue event");
    Ok(())
}

/// GitHub's `ping`, sent when a webhook is created.
#[webhook(path = "/hooks/github", sig = "github", event = "ping")]
pub async fn ping(delivery: Delivery) {
    tracing::info!(id = delivery.id(), "GitHub says hello");
}

/// The parts of a Stripe event this app reads.
#[derive(Debug, Deserialize)]
pub struct StripeEvent {
    /// `evt_...`.
    pub id: String,
    /// `payment_intent.succeeded`, `charge.refunded`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's object.
    pub data: StripeData,
}

/// A Stripe event's `data`.
#[derive(Debug, Deserialize)]
pub struct StripeData {
    /// The object the event is about, as Stripe sends it.
    pub object: serde_json::Value,
}

/// A payment succeeded. Stripe retries until it gets a 2xx, and hooksmith de-duplicates by the
/// event id, so this runs once per payment.
#[webhook(
    path = "/hooks/stripe",
    sig = "stripe",
    event = "payment_intent.succeeded"
)]
pub async fn payment_succeeded(event: Json<StripeEvent>) -> hooksmith::Result {
    let amount = event
        .data
        .object
        .get("amount")
        .and_then(serde_json::Value::as_u64);
    tracing::info!(id = %event.id, amount, "payment succeeded");
    Ok(())
}

/// Every `charge.*` event.
#[webhook(path = "/hooks/stripe", sig = "stripe", event = "charge.*")]
pub async fn charge_event(event: Json<StripeEvent>) -> hooksmith::Result {
    tracing::info!(id = %event.id, kind = %event.kind, "charge event");
    Ok(())
}

/// A Standard Webhooks `user.created` event.
#[webhook(path = "/hooks/standard", sig = "standard", event = "user.created")]
pub async fn user_created(event: serde_json::Value, delivery: Delivery) -> hooksmith::Result {
    tracing::info!(id = delivery.id(), data = %event["data"], "user created");
    Ok(())
}

/// Slack Events API callbacks (the `url_verification` handshake never reaches a handler).
#[webhook(path = "/hooks/slack", sig = "slack", event = "event_callback")]
pub async fn slack_event(event: serde_json::Value, delivery: Delivery) -> hooksmith::Result {
    tracing::info!(id = delivery.id(), kind = %event["event"]["type"], "slack event");
    Ok(())
}

// ANCHOR: connector
/// Seed 001's connector, declared once and shared by its handlers.
pub const CONNECTOR: Endpoint = Endpoint::new("/events")
    .sig("hmac-sha256")
    .header("X-Connector-Signature")
    .prefix("sha256=")
    .event_field("type")
    .secrets(&[SecretSource::env("CONNECTOR_SECRET")]);
// ANCHOR_END: connector

/// One user action of an `actions` event.
#[derive(Debug, Deserialize)]
pub struct Action {
    /// A short title.
    pub title: String,
    /// What happened.
    #[serde(default)]
    pub description: String,
}

/// The connector's `actions` event.
#[derive(Debug, Deserialize)]
pub struct ActionsPayload {
    /// The session the actions belong to.
    pub session_id: String,
    /// The actions, oldest first.
    pub actions: Vec<Action>,
}

/// The connector's `summary` event.
#[derive(Debug, Deserialize)]
pub struct SummaryPayload {
    /// The session summarised.
    pub session_id: String,
    /// The summary text.
    pub summary: String,
}

/// The connector's `actions` events.
#[webhook(endpoint = CONNECTOR, event = "actions")]
pub async fn on_actions(payload: Json<ActionsPayload>) -> hooksmith::Result {
    for action in &payload.actions {
        tracing::info!(session = %payload.session_id, title = %action.title, description = %action.description, "action");
    }
    Ok(())
}

/// The connector's `summary` events.
#[webhook(endpoint = CONNECTOR, event = "summary")]
pub async fn on_summary(payload: Json<SummaryPayload>) -> hooksmith::Result {
    tracing::info!(session = %payload.session_id, summary = %payload.summary, "summary");
    Ok(())
}

/// The quickstart's app: its handlers registered explicitly (so they are there however the
/// binary is linked), configured from the environment.
pub fn builder() -> Result<AppBuilder, hooksmith::Error> {
    hooksmith::App::builder()
        .handler::<pr_opened>()
        .handler::<issue_event>()
        .handler::<ping>()
        .handler::<payment_succeeded>()
        .handler::<charge_event>()
        .handler::<user_created>()
        .handler::<slack_event>()
        .handler::<on_actions>()
        .handler::<on_summary>()
        .from_env()
}
