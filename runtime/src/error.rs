//! Error types: what a handler returns, what stops the app from starting, and why a request was
//! refused (mapped to an HTTP status in exactly one place).

use std::error::Error as StdError;
use std::fmt;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// A failed handler run. Any error converts into it with `?`; it is retried according to the
/// handler's policy unless made [`HandlerError::permanent`].
#[derive(Clone)]
pub struct HandlerError {
    message: String,
    permanent: bool,
}

impl HandlerError {
    /// A retryable failure with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure that retrying cannot fix: the job goes straight to `dead`.
    pub fn permanent(error: impl Into<HandlerError>) -> Self {
        Self {
            permanent: true,
            ..error.into()
        }
    }

    /// Whether retries are skipped.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The message recorded on the delivery (the error and its sources, `: `-separated).
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn from_join(error: tokio::task::JoinError) -> Self {
        if error.is_panic() {
            Self::from_panic(&*error.into_panic())
        } else {
            Self::new("handler was cancelled")
        }
    }

    pub(crate) fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string payload".to_owned());
        Self::new(format!("handler panicked: {text}"))
    }
}

impl<E: Into<Box<dyn StdError + Send + Sync>>> From<E> for HandlerError {
    fn from(error: E) -> Self {
        let error: Box<dyn StdError + Send + Sync> = error.into();
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::new(message)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("message", &self.message)
            .field("permanent", &self.permanent)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why the app could not be built or started. Messages name the handler (file:line), the route
/// and the environment variable involved, never a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration of one or more handlers is wrong; every problem found is listed.
    #[error("hooksmith configuration is invalid:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<String>),
    /// The listening address could not be parsed or bound.
    #[error("cannot listen on `{addr}`: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `router()` was called outside a Tokio runtime (workers cannot be started).
    #[error(
        "hooksmith needs a Tokio runtime: call `router()` or `serve()` from inside `#[tokio::main]`"
    )]
    NoRuntime,
    /// The server failed while running.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Why a request was refused, before any handler ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    NotFound,
    MethodNotAllowed(HeaderValue),
    TooLarge,
    /// The reason is logged and counted, never sent: every signature failure answers the same.
    Signature(&'static str),
    StaleTimestamp,
    Malformed(String),
    Unavailable,
    /// More requests in flight than the instance's cap: answered at once, never queued.
    Overloaded,
    /// The body did not arrive in time (idle between chunks, or in all).
    SlowBody,
    /// A `Content-Encoding` other than `identity`.
    Encoded,
    /// A panic in request handling.
    Panicked,
}

impl Rejection {
    /// A short stable label for logs and metrics.
    pub(crate) fn reason(&self) -> &str {
        match self {
            Rejection::NotFound => "not_found",
            Rejection::MethodNotAllowed(_) => "method",
            Rejection::TooLarge => "too_large",
            Rejection::Signature(reason) => reason,
            Rejection::StaleTimestamp => "timestamp_window",
            Rejection::Malformed(_) => "malformed",
            Rejection::Unavailable => "store_unavailable",
            Rejection::Overloaded => "overloaded",
            Rejection::SlowBody => "slow_body",
            Rejection::Encoded => "content_encoding",
            Rejection::Panicked => "panic",
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::NotFound => (StatusCode::NOT_FOUND, "not found\n").into_response(),
            Rejection::MethodNotAllowed(allow) => (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, allow)],
                "method not allowed\n",
            )
                .into_response(),
            Rejection::TooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "body too large\n").into_response()
            }
            Rejection::Signature(_) => {
                (StatusCode::UNAUTHORIZED, "invalid signature\n").into_response()
            }
            Rejection::StaleTimestamp => (
                StatusCode::CONFLICT,
                "timestamp outside the accepted window\n",
            )
                .into_response(),
            Rejection::Malformed(reason) => (
                StatusCode::BAD_REQUEST,
                format!("malformed body: {reason}\n"),
            )
                .into_response(),
            Rejection::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
                "too many requests in flight, retry shortly\n",
            )
                .into_response(),
            Rejection::SlowBody => (StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time\n").into_response(),
            Rejection::Encoded => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "compressed bodies are not accepted: send the body uncompressed (Content-Encoding: identity)\n",
            )
                .into_response(),
            Rejection::Panicked => (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response(),
            Rejection::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, HeaderValue::from_static("5"))],
                "temporarily unavailable, retry later\n",
            )
                .into_response(),
        }
    }
}
