//! The macro-free `Receiver` (seed 001's `WebhookReceiver`) inside a plain axum handler: verify,
//! parse and dispatch to typed callbacks, and answer as the framework of your choice does.
//!
//! Run with `CONNECTOR_SECRET=… cargo run -p example-receiver`.

use std::sync::Arc;

use hooksmith::axum::{
    Router, body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post,
};
use hooksmith::{Receiver, ReceiverError};
use serde::Deserialize;

/// The connector's `actions` event.
#[derive(Debug, Deserialize)]
pub struct ActionsPayload {
    /// The session.
    pub session_id: String,
}

/// The connector's `summary` event.
#[derive(Debug, Deserialize)]
pub struct SummaryPayload {
    /// The summary.
    pub summary: String,
}

// ANCHOR: receiver
/// The receiver with its callbacks.
pub fn receiver(secret: &str) -> Result<Receiver, ReceiverError> {
    Ok(Receiver::new(secret)?
        .on("actions", |payload: ActionsPayload| async move {
            tracing::info!(session = %payload.session_id, "actions");
        })
        .on("summary", |payload: SummaryPayload| async move {
            tracing::info!(summary = %payload.summary, "summary");
        }))
}
// ANCHOR_END: receiver

async fn events(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature = headers
        .get("x-connector-signature")
        .and_then(|v| v.to_str().ok());
    match receiver.handle(&body, signature).await {
        Ok(_) => StatusCode::OK,
        Err(ReceiverError::InvalidSignature) => StatusCode::UNAUTHORIZED,
        Err(ReceiverError::Malformed(_)) => StatusCode::BAD_REQUEST,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A plain axum app with one route.
pub fn router(receiver: Receiver) -> Router {
    Router::new()
        .route("/events", post(events))
        .with_state(Arc::new(receiver))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().init();
    let secret =
        std::env::var("CONNECTOR_SECRET").map_err(|_| anyhow::anyhow!("set CONNECTOR_SECRET"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    hooksmith::axum::serve(listener, router(receiver(&secret)?)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use hooksmith::axum::body::Body;
    use hooksmith::axum::http::Request;
    use hooksmith::testing::{Params, SignInput, sign};
    use tower_service::Service;

    async fn post(body: &'static [u8], signature: Option<String>) -> u16 {
        let mut router = super::router(super::receiver("s3cret").unwrap());
        let mut request = Request::post("/events");
        if let Some(signature) = signature {
            request = request.header("x-connector-signature", signature);
        }
        std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut router, cx))
            .await
            .unwrap();
        router
            .call(request.body(Body::from(body)).unwrap())
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn signed(body: &[u8]) -> String {
        let params = Params {
            header: Some("X-Connector-Signature"),
            prefix: Some("sha256="),
            encoding: None,
        };
        let input = SignInput {
            body,
            timestamp: 0,
            id: "",
            url: "",
            content_type: None,
        };
        sign("hmac-sha256", &params, "s3cret", &input).unwrap()[0]
            .1
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[tokio::test]
    async fn verified_events_are_dispatched_and_the_rest_refused() {
        let actions = br#"{"type":"actions","session_id":"s-1"}"#;
        assert_eq!(post(actions, Some(signed(actions))).await, 200);
        assert_eq!(post(actions, Some(signed(b"other"))).await, 401);
        assert_eq!(post(actions, None).await, 401);
        assert_eq!(post(b"[1]", Some(signed(b"[1]"))).await, 400);
        let unknown = br#"{"type":"heartbeat"}"#;
        assert_eq!(
            post(unknown, Some(signed(unknown))).await,
            200,
            "an unknown event is not an error"
        );
    }
}
