//! `ack = "handled"` takes any `IntoResponse`, and `hooksmith::Result<R>`.
use hooksmith::axum::Json as Reply;
use hooksmith::{HandlerError, webhook};

#[webhook(path = "/hooks/slack", sig = "none", ack = "handled")]
async fn challenge(body: serde_json::Value) -> hooksmith::Result<Reply<serde_json::Value>> {
    body.get("challenge")
        .cloned()
        .map(|c| Reply(serde_json::json!({ "challenge": c })))
        .ok_or_else(|| HandlerError::new("no challenge"))
}

#[webhook(path = "/hooks/command", sig = "none", ack = "handled")]
fn command() -> &'static str {
    "done"
}

#[webhook(path = "/hooks/unit", sig = "none", ack = "handled")]
async fn unit() {}

fn main() {}
