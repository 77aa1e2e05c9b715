//! What a handler run produced, and the traits that turn a handler's return value into it.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::HandlerError;

/// The result of one handler run: success or a failure to record, and for `ack = "handled"`
/// handlers the response to send.
#[derive(Debug)]
pub struct Outcome {
    pub(crate) result: Result<(), HandlerError>,
    /// Boxed: only `ack = "handled"` handlers have one, and an outcome is held in every handler
    /// run's future, which is sized for it.
    pub(crate) response: Option<Box<Response>>,
}

impl Outcome {
    /// A successful run with no response.
    pub fn succeeded() -> Self {
        Self {
            result: Ok(()),
            response: None,
        }
    }

    /// A failed run.
    pub fn failed(error: HandlerError) -> Self {
        Self {
            result: Err(error),
            response: None,
        }
    }

    /// Whether the run succeeded.
    pub fn is_success(&self) -> bool {
        self.result.is_ok()
    }
}

/// A return type of an `ack = "stored"` handler.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a return type a `#[webhook]` handler can have",
    label = "this return type is not supported",
    note = "return `()`, `hooksmith::Result` or `Result<(), E>` where `E` converts into `hooksmith::HandlerError` (any `std::error::Error`, `anyhow::Error`, `String`)",
    note = "to answer the sender with a value, write `ack = \"handled\"` and return a type that implements `axum::response::IntoResponse`"
)]
pub trait IntoOutcome {
    /// Converts the return value.
    fn into_outcome(self) -> Outcome;
}

impl IntoOutcome for () {
    fn into_outcome(self) -> Outcome {
        Outcome::succeeded()
    }
}

impl<E: Into<HandlerError>> IntoOutcome for Result<(), E> {
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(()) => Outcome::succeeded(),
            Err(error) => Outcome::failed(error.into()),
        }
    }
}

/// A return type of an `ack = "handled"` handler: its response is sent to the provider.
///
/// A response with a 5xx status counts as a failed run; return `Err(HandlerError)` (which answers
/// 500 without revealing the error) to record why.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the response of an `ack = \"handled\"` handler",
    label = "this type does not implement `axum::response::IntoResponse`",
    note = "an `ack = \"handled\"` handler answers the sender with its return value: return a type that implements `axum::response::IntoResponse`, such as `()`, `String`, `axum::Json<T>` or `hooksmith::Result<axum::Json<T>>`",
    note = "or remove `ack = \"handled\"` to persist the delivery, answer 204 and run the handler from the queue"
)]
pub trait IntoHandledOutcome {
    /// Converts the return value.
    fn into_handled_outcome(self) -> Outcome;
}

impl<T: IntoResponse> IntoHandledOutcome for T {
    fn into_handled_outcome(self) -> Outcome {
        let mut response = self.into_response();
        let result = match response.extensions_mut().remove::<RecordedError>() {
            Some(RecordedError(error)) => Err(error),
            None if response.status().is_server_error() => Err(HandlerError::new(format!(
                "handler answered {}",
                response.status()
            ))),
            None => Ok(()),
        };
        Outcome {
            result,
            response: Some(Box::new(response)),
        }
    }
}

/// Carries a handler's error from its `IntoResponse` to the delivery record.
#[derive(Debug, Clone)]
pub(crate) struct RecordedError(pub(crate) HandlerError);

impl IntoResponse for HandlerError {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::INTERNAL_SERVER_ERROR, "handler failed\n").into_response();
        response.extensions_mut().insert(RecordedError(self));
        response
    }
}
