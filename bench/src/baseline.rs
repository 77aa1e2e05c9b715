//! The receiver a careful engineer writes by hand with axum: HMAC-SHA256 over the raw bytes with a
//! constant-time compare, the event header checked, the body deserialized into borrowed typed
//! structs (unknown fields skipped, nothing kept), the action checked, the delivery id remembered
//! so a retry is not handled twice, 204.
//!
//! It is what hooksmith is measured against: no persistence, no retries, no history — every
//! safety feature hooksmith adds is extra work this receiver does not do.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use hmac::{Hmac, Mac};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use sha2::Sha256;

/// The parts of a `pull_request` delivery the handler reads; everything else is skipped.
#[derive(Deserialize)]
struct PullRequestEvent<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
    number: u64,
    #[serde(borrow)]
    pull_request: PullRequest<'a>,
}

#[derive(Deserialize)]
struct PullRequest<'a> {
    #[serde(borrow)]
    title: Cow<'a, str>,
}

#[derive(Clone)]
struct Receiver {
    key: Arc<Hmac<Sha256>>,
    seen: Arc<Mutex<HashSet<Box<str>>>>,
    handled: Arc<AtomicU64>,
}

/// The hand-written receiver's router: `POST /hooks/github`.
pub(crate) fn router(secret: &str) -> Router {
    receiver(secret).0
}

/// The router and the count of pull requests it handled.
fn receiver(secret: &str) -> (Router, Arc<AtomicU64>) {
    let key = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    let handled = Arc::new(AtomicU64::new(0));
    let router = Router::new()
        .route("/hooks/github", post(github))
        .with_state(Receiver {
            key: Arc::new(key),
            seen: Arc::default(),
            handled: handled.clone(),
        });
    (router, handled)
}

async fn github(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Some(signature) = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.as_bytes().strip_prefix(b"sha256="))
        .and_then(|hex_sig| hex::decode(hex_sig).ok())
    else {
        return StatusCode::UNAUTHORIZED;
    };
    let mut mac = (*receiver.key).clone();
    mac.update(&body);
    // `verify_slice` compares in constant time.
    if mac.verify_slice(&signature).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    if headers
        .get("x-github-event")
        .map(http::HeaderValue::as_bytes)
        != Some(b"pull_request")
    {
        return StatusCode::NO_CONTENT;
    }
    let Some(id) = headers
        .get("x-github-delivery")
        .and_then(|v| v.to_str().ok())
    else {
        return StatusCode::BAD_REQUEST;
    };
    let Ok(event) = serde_json::from_slice::<PullRequestEvent<'_>>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if !receiver
        .seen
        .lock()
        .expect("not poisoned")
        .insert(id.into())
    {
        return StatusCode::NO_CONTENT;
    }
    if event.action == "opened" {
        std::hint::black_box((event.number, &event.pull_request.title));
        receiver
            .handled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use tower::ServiceExt as _;

    async fn send(router: &Router, signature: &str, id: &str, body: &'static [u8]) -> StatusCode {
        let request = http::Request::post("/hooks/github")
            .header("x-hub-signature-256", signature)
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", id)
            .body(axum::body::Body::from(body))
            .expect("a request");
        router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible")
            .status()
    }

    /// The comparison is fair only if the hand-written receiver does the work: it refuses a bad
    /// signature and a malformed body, and remembers delivery ids.
    #[tokio::test]
    async fn the_hand_written_receiver_verifies_parses_and_deduplicates() {
        let body: &'static [u8] = br#"{"action":"opened","number":1,"pull_request":{"title":"t"}}"#;
        let payload = crate::load::Payload::new(body, "s");
        let signature = payload.signature.to_str().expect("ascii").to_owned();
        let (router, handled) = receiver("s");
        assert_eq!(
            send(&router, &signature, "1", body).await,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            send(&router, &signature, "1", body).await,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            handled.load(Ordering::Relaxed),
            1,
            "a retry is not handled twice"
        );
        let wrong = format!("sha256={}", "0".repeat(64));
        assert_eq!(
            send(&router, &wrong, "2", body).await,
            StatusCode::UNAUTHORIZED
        );
        let bad: &'static [u8] = b"{\"action\":";
        let bad_signature = crate::load::Payload::new(bad, "s").signature;
        assert_eq!(
            send(&router, bad_signature.to_str().expect("ascii"), "3", bad).await,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(handled.load(Ordering::Relaxed), 1);
    }
}
