//! The macro-free [`Receiver`]: verify, parse and dispatch a webhook from inside any HTTP
//! framework (seed 001's `WebhookReceiver`, in Rust).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;

use crate::__private::BoxFuture;
use crate::HandlerError;
use crate::outcome::IntoOutcome;
use crate::routing::{self, FieldPlan, Scalar};
use crate::scheme::hmac_header;
use crate::scheme::{Secret, SignedRequest, Verifier};
use crate::spec::Encoding;

type Callback = Arc<dyn Fn(Bytes) -> BoxFuture<Result<(), ReceiverError>> + Send + Sync>;

/// Verifies, parses and dispatches webhook deliveries to typed callbacks, without the macro or a
/// router: hand it the raw body and the signature header from any framework.
///
/// ```
/// use hooksmith::Receiver;
///
/// #[derive(serde::Deserialize)]
/// struct ActionsPayload { session_id: String }
///
/// # async fn demo() -> Result<(), hooksmith::ReceiverError> {
/// let receiver = Receiver::new("connector secret")?
///     .on("actions", |payload: ActionsPayload| async move {
///         println!("session {}", payload.session_id);
///     });
/// # let (body, signature): (&[u8], Option<&str>) = (b"{}", None);
/// match receiver.handle(body, signature).await {
///     Ok(Some(event)) => println!("handled {}", event.name()),
///     Ok(None) => println!("an event nobody listens to"),
///     Err(hooksmith::ReceiverError::InvalidSignature) => { /* answer 401 */ }
///     Err(other) => { /* answer 400 or 500 */ }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Receiver {
    verifier: Option<Arc<dyn Verifier>>,
    signature_header: HeaderName,
    plan: FieldPlan,
    event_slot: usize,
    callbacks: HashMap<String, Callback>,
    runtime: Arc<OnceLock<tokio::runtime::Runtime>>,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("verified", &self.verifier.is_some())
            .field("signature_header", &self.signature_header)
            .field("events", &self.callbacks.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A delivery the [`Receiver`] recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    name: String,
    body: Bytes,
}

impl Event {
    /// The event name (the body's `type` field by default).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body deserialized as `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ReceiverError> {
        serde_json::from_slice(&self.body).map_err(|e| ReceiverError::Malformed(e.to_string()))
    }
}

/// Why the [`Receiver`] refused or failed a delivery.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReceiverError {
    /// The signature is missing, malformed or wrong: answer 401.
    #[error("invalid signature")]
    InvalidSignature,
    /// The body is not a JSON object, or does not fit the callback's type: answer 400.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// The callback failed: answer 500 so the sender retries.
    #[error("callback failed: {0}")]
    Handler(HandlerError),
    /// The receiver was set up wrong (an empty secret).
    #[error("{0}")]
    Config(String),
    /// `handle_blocking` was called from inside an async runtime; use `handle(..).await` there.
    #[error("`handle_blocking` cannot run inside an async runtime: use `handle(..).await`")]
    InsideRuntime,
}

impl Receiver {
    /// A receiver for seed 001's connector: `X-Connector-Signature: sha256=<hex HMAC-SHA256>`
    /// over the raw body, event name in the body's `type` field. An empty secret is refused: use
    /// [`Receiver::unverified`] to skip verification on purpose.
    pub fn new(secret: impl Into<String>) -> Result<Self, ReceiverError> {
        Self::hmac_sha256("X-Connector-Signature", "sha256=", secret)
    }

    /// A receiver for any `<header>: <prefix><hex HMAC-SHA256>` scheme.
    pub fn hmac_sha256(
        header: &str,
        prefix: &str,
        secret: impl Into<String>,
    ) -> Result<Self, ReceiverError> {
        let secret = secret.into();
        if secret.is_empty() {
            return Err(ReceiverError::Config(
                "empty secret: pass the signing secret, or use `Receiver::unverified()` to skip verification on purpose".into(),
            ));
        }
        let verifier = hmac_header(header, prefix, Encoding::Hex, &[Secret::new(secret)])
            .map_err(ReceiverError::Config)?;
        let signature_header =
            HeaderName::try_from(header).map_err(|e| ReceiverError::Config(e.to_string()))?;
        Ok(Self::with(Some(verifier), signature_header))
    }

    /// A receiver that checks no signature. For local development only.
    pub fn unverified() -> Self {
        Self::with(None, HeaderName::from_static("x-connector-signature"))
    }

    fn with(verifier: Option<Arc<dyn Verifier>>, signature_header: HeaderName) -> Self {
        let mut plan = FieldPlan::default();
        let event_slot = plan.add(&["type"]);
        Self {
            verifier,
            signature_header,
            plan,
            event_slot,
            callbacks: HashMap::new(),
            runtime: Arc::new(OnceLock::new()),
        }
    }

    /// Reads the event name from another dotted body field (default `type`).
    pub fn event_field(mut self, path: &str) -> Result<Self, ReceiverError> {
        let segments = hooksmith_grammar::parse_json_path(path)
            .map_err(|e| ReceiverError::Config(e.message))?;
        self.plan = FieldPlan::default();
        self.event_slot = self.plan.add(&segments);
        Ok(self)
    }

    /// Calls `callback` with the body deserialized as `T` for every `event`. Returns the receiver
    /// for chaining. The callback may return `()` or `Result<(), E>`.
    pub fn on<T, F, Fut, R>(mut self, event: &str, callback: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoOutcome,
    {
        let callback = Arc::new(callback);
        let run: Callback = Arc::new(move |body: Bytes| {
            let callback = callback.clone();
            Box::pin(async move {
                let payload: T = serde_json::from_slice(&body)
                    .map_err(|e| ReceiverError::Malformed(e.to_string()))?;
                callback(payload)
                    .await
                    .into_outcome()
                    .result
                    .map_err(ReceiverError::Handler)
            })
        });
        self.callbacks.insert(event.to_owned(), run);
        self
    }

    /// Checks the signature only.
    pub fn verify(&self, body: &[u8], signature: Option<&str>) -> bool {
        let Some(verifier) = &self.verifier else {
            return true;
        };
        let mut headers = HeaderMap::new();
        if let Some(value) = signature.and_then(|s| HeaderValue::from_str(s).ok()) {
            headers.insert(self.signature_header.clone(), value);
        }
        verifier
            .verify(&SignedRequest {
                headers: &headers,
                body,
                uri: &http::Uri::from_static("/"),
                public_url: None,
                now_secs: crate::clock::Clock::now_ms(&crate::clock::SystemClock) / 1000,
            })
            .is_ok()
    }

    /// Parses without verifying: `Some(event)` for an event with a callback, `None` otherwise.
    pub fn parse(&self, body: &[u8]) -> Result<Option<Event>, ReceiverError> {
        let fields = routing::extract(body, &self.plan).map_err(ReceiverError::Malformed)?;
        let name = match &fields[self.event_slot] {
            Some(Scalar::Str(s)) => s.to_string(),
            _ => return Ok(None),
        };
        Ok(self.callbacks.contains_key(&name).then(|| Event {
            name,
            body: Bytes::copy_from_slice(body),
        }))
    }

    /// Verifies, parses and runs the event's callback.
    pub async fn handle(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<Option<Event>, ReceiverError> {
        if !self.verify(body, signature) {
            return Err(ReceiverError::InvalidSignature);
        }
        let Some(event) = self.parse(body)? else {
            return Ok(None);
        };
        if let Some(callback) = self.callbacks.get(&event.name) {
            callback(event.body.clone()).await?;
        }
        Ok(Some(event))
    }

    /// [`Receiver::handle`] for synchronous frameworks: runs the callback to completion on a
    /// small private runtime. Must not be called from inside an async runtime.
    pub fn handle_blocking(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<Option<Event>, ReceiverError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(ReceiverError::InsideRuntime);
        }
        let runtime = match self.runtime.get() {
            Some(rt) => rt,
            None => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| ReceiverError::Config(e.to_string()))?;
                self.runtime.get_or_init(|| rt)
            }
        };
        runtime.block_on(self.handle(body, signature))
    }
}
