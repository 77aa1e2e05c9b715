//! Test your handlers in a few lines: sign a delivery for any scheme exactly as the provider
//! would, send it through the app's router in-process, and read what the handlers did.
//!
//! ```
//! use hooksmith::store::JobStatus;
//! use hooksmith::testing::TestClient;
//!
//! #[hooksmith::webhook(path = "/hooks/github", sig = "github", event = "push")]
//! async fn on_push(push: hooksmith::Json<serde_json::Value>) -> hooksmith::Result {
//!     assert_eq!(push["ref"], "refs/heads/main");
//!     Ok(())
//! }
//!
//! # #[tokio::main] async fn main() {
//! let app = hooksmith::App::builder()
//!     .only_explicit_handlers()
//!     .handler::<on_push>()
//!     .var("GITHUB_WEBHOOK_SECRET", "test secret")
//!     .build()
//!     .unwrap();
//! let client = TestClient::new(app);
//! let response = client
//!     .post("/hooks/github")
//!     .event("push")
//!     .json(&serde_json::json!({"ref": "refs/heads/main"}))
//!     .send()
//!     .await;
//! assert_eq!(response.status(), 204);
//! let outcome = response.outcome().await.expect("stored");
//! assert_eq!(outcome.handler("on_push").unwrap().status, JobStatus::Succeeded);
//! # }
//! ```
//!
//! The lower-level pieces are here too: [`sign`] produces a provider's signature headers for any
//! scheme (the CLI's `send` uses it), and [`ManualClock`] moves time for timestamp windows and
//! retry delays.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;

use crate::App;
pub use crate::clock::ManualClock;
use crate::registry::Source;
pub use crate::scheme::{Params, SignInput, sign};
use crate::store::{DeliveryQuery, DeliverySummary, JobStatus, JobSummary};

/// Sends signed deliveries to an app in-process.
#[derive(Debug)]
pub struct TestClient {
    app: App,
    router: Router,
}

impl TestClient {
    /// Wraps a built app.
    pub fn new(app: App) -> Self {
        let router = app.router();
        Self { app, router }
    }

    /// The app.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Sends any request through the router (the admin API, `/healthz`, ...) and reads the whole
    /// answer.
    pub async fn call(&self, request: http::Request<Body>) -> http::Response<Bytes> {
        let mut router = self.router.clone();
        let response = match tower_service::Service::call(&mut router, request).await {
            Ok(response) => response,
            Err(infallible) => match infallible {},
        };
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        http::Response::from_parts(parts, body)
    }

    /// A delivery to `path`, signed with the endpoint's first secret.
    pub fn post(&self, path: &str) -> TestRequest<'_> {
        TestRequest {
            client: self,
            path: path.to_owned(),
            body: b"{}".to_vec(),
            content_type: "application/json".into(),
            event: None,
            id: None,
            headers: Vec::new(),
            signed: true,
            timestamp: None,
        }
    }
}

/// A delivery being built; [`TestRequest::send`] sends it.
#[derive(Debug)]
#[must_use]
pub struct TestRequest<'a> {
    client: &'a TestClient,
    path: String,
    body: Vec<u8>,
    content_type: String,
    event: Option<String>,
    id: Option<String>,
    headers: Vec<(String, String)>,
    signed: bool,
    timestamp: Option<i64>,
}

impl<'a> TestRequest<'a> {
    /// A JSON body.
    pub fn json(mut self, value: &impl serde::Serialize) -> Self {
        self.body = serde_json::to_vec(value).unwrap_or_default();
        self.content_type = "application/json".into();
        self
    }

    /// A raw body and its content type.
    pub fn body(mut self, body: impl Into<Vec<u8>>, content_type: &str) -> Self {
        self.body = body.into();
        self.content_type = content_type.to_owned();
        self
    }

    /// The event name, sent in the endpoint's event header (for schemes whose event is in the
    /// body, put it in the body instead).
    pub fn event(mut self, event: &str) -> Self {
        self.event = Some(event.to_owned());
        self
    }

    /// The delivery id (default: a fresh one), sent in the endpoint's id header.
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }

    /// Another header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The timestamp to sign, seconds since the Unix epoch (default: the app's clock).
    pub fn timestamp(mut self, secs: i64) -> Self {
        self.timestamp = Some(secs);
        self
    }

    /// Sends it without a signature.
    pub fn unsigned(mut self) -> Self {
        self.signed = false;
        self
    }

    /// Signs and sends the delivery through the router.
    pub async fn send(self) -> TestResponse<'a> {
        let client = self.client;
        let endpoint = client
            .app
            .shared
            .endpoints
            .iter()
            .find(|e| route_matches(e.path, &self.path));
        let id = self.id.clone().unwrap_or_else(fresh_id);
        let mut request =
            http::Request::post(&self.path).header(http::header::CONTENT_TYPE, &self.content_type);
        if let Some(Source::Header(names)) = endpoint.map(|e| &e.event)
            && let (Some(name), Some(event)) = (names.first(), &self.event)
        {
            request = request.header(name, event);
        }
        if let Some(Source::Header(names)) = endpoint.map(|e| &e.id)
            && let Some(name) = names.first()
        {
            request = request.header(name, &id);
        }
        if self.signed
            && let Some(endpoint) = endpoint
        {
            let url = format!(
                "{}{}",
                client
                    .app
                    .shared
                    .config
                    .public_url
                    .as_deref()
                    .unwrap_or("https://localhost"),
                self.path
            );
            let timestamp = self
                .timestamp
                .unwrap_or_else(|| client.app.shared.clock.now_ms().div_euclid(1000));
            let input = SignInput {
                body: &self.body,
                timestamp,
                id: &id,
                url: &url,
                content_type: Some(&self.content_type),
            };
            for (name, value) in client
                .app
                .sign_with(endpoint.path, &input)
                .unwrap_or_default()
            {
                request = request.header(name, value);
            }
        }
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                request = request.header(name, value);
            }
        }
        // The id the pipeline will store the delivery under: a header, a body field, or the body's
        // SHA-256.
        let stored_id = request
            .headers_ref()
            .and_then(|headers| {
                let endpoint = endpoint?;
                let payload = crate::routing::payload(
                    &Bytes::from(self.body.clone()),
                    Some(&self.content_type),
                );
                let fields = crate::routing::extract(&payload, &endpoint.plan).ok()?;
                crate::pipeline::read(&endpoint.id, &fields, headers)
            })
            .unwrap_or_else(|| {
                use sha2::Digest as _;
                hex::encode(sha2::Sha256::digest(&self.body))
            });
        let request = request.body(Body::from(self.body)).unwrap_or_default();
        let mut router = client.router.clone();
        let response = match tower_service::Service::call(&mut router, request).await {
            Ok(response) => response,
            Err(infallible) => match infallible {},
        };
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        TestResponse {
            client,
            path: self.path,
            status,
            body,
            id: stored_id,
        }
    }
}

/// What the app answered, and a way to wait for its handlers.
#[derive(Debug)]
pub struct TestResponse<'a> {
    client: &'a TestClient,
    path: String,
    status: StatusCode,
    body: Bytes,
    id: String,
}

impl TestResponse<'_> {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    /// The response body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The delivery id the app stores this delivery under (the id header sent, the body's id
    /// field, or the body's SHA-256, as the endpoint says).
    pub fn delivery_id(&self) -> &str {
        &self.id
    }

    /// The stored delivery once no handler job is pending or running (at most 10 s): succeeded,
    /// retrying and dead jobs are final enough to assert on. `None` when nothing was stored under
    /// this id (a refused request).
    pub async fn outcome(&self) -> Option<DeliverySummary> {
        let store = &self.client.app.shared.store;
        let query = DeliveryQuery {
            delivery_id: Some(self.id.clone()),
            limit: 10,
            ..DeliveryQuery::default()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = store
                .list(&query)
                .await
                .ok()?
                .into_iter()
                .find(|d| route_matches(&d.endpoint, &self.path))?;
            let busy = found
                .handlers
                .iter()
                .any(|h| matches!(h.status, JobStatus::Pending | JobStatus::Running));
            if !busy || Instant::now() >= deadline {
                return Some(found);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl DeliverySummary {
    /// The job of the handler called `name`.
    pub fn handler(&self, name: &str) -> Option<&JobSummary> {
        self.handlers.iter().find(|h| h.name == name)
    }
}

/// Whether a request path is served by an endpoint path (`{connection}` matches one segment).
fn route_matches(endpoint: &str, path: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (endpoint.split('/').collect(), path.split('/').collect());
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(e, p)| *e == hooksmith_grammar::CONNECTION_PARAM || e == p)
}

fn fresh_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("test-{nanos:x}")
}
