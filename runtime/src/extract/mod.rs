//! Handler arguments: the [`FromDelivery`] trait and the extractors hooksmith ships.
//!
//! Each extractor reads from the stored delivery, so a handler sees the same thing on its first
//! run, on a retry after a restart, and on an operator's replay.

mod delivery;
mod form;
mod headers;
mod json;
mod raw;
mod state;

use std::sync::Arc;

use bytes::Bytes;

pub use delivery::Delivery;
pub use form::Form;
pub use headers::Headers;
pub use json::Json;
pub use raw::Raw;
pub use state::State;

use crate::HandlerError;
use crate::store::StoredDelivery;

/// Values given to [`crate::AppBuilder::state`], looked up by type by [`State<S>`].
pub type StateMap = http::Extensions;

/// What a handler run is given: the stored delivery and the app's state.
#[derive(Debug, Clone)]
pub struct Context {
    pub(crate) record: Arc<StoredDelivery>,
    pub(crate) payload: Bytes,
    pub(crate) attempt: u32,
    pub(crate) handler: &'static str,
    pub(crate) state: Arc<StateMap>,
}

impl Context {
    /// The stored delivery.
    pub fn record(&self) -> &StoredDelivery {
        &self.record
    }

    /// The JSON document of the delivery: the body itself, or the `payload` field of a
    /// form-encoded body.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// This run's attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The name of the handler being run.
    pub fn handler(&self) -> &'static str {
        self.handler
    }

    /// The app's state values.
    pub fn state(&self) -> &StateMap {
        &self.state
    }
}

/// A type a `#[webhook]` handler can take as an argument.
///
/// Implement it for your own types to extract something from every delivery:
///
/// ```
/// use hooksmith::{Context, FromDelivery, HandlerError};
///
/// /// The GitHub repository a delivery is about.
/// struct RepoName(String);
///
/// impl FromDelivery for RepoName {
///     fn from_delivery(cx: &Context) -> Result<Self, HandlerError> {
///         #[derive(serde::Deserialize)]
///         struct Envelope<'a> {
///             #[serde(borrow)]
///             repository: Repo<'a>,
///         }
///         #[derive(serde::Deserialize)]
///         struct Repo<'a> {
///             full_name: &'a str,
///         }
///         let envelope: Envelope<'_> = serde_json::from_slice(cx.payload())?;
///         Ok(RepoName(envelope.repository.full_name.to_owned()))
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an argument of a `#[webhook]` handler",
    label = "not a hooksmith extractor",
    note = "handler arguments are extractors: `Json<T>`, `Form<T>`, `Raw`, `serde_json::Value`, `Headers`, `Delivery` or `State<S>` (all in `hooksmith::`)",
    note = "to take your own type, implement `hooksmith::FromDelivery` for it"
)]
pub trait FromDelivery: Sized + Send + 'static {
    /// Whether this extractor takes the body as a whole (`Json<T>`, `Raw`, `Value`); a handler may
    /// take at most one such argument.
    const READS_BODY: bool = false;

    /// Extracts the value; an error is recorded as a failed (and retried) handler run.
    fn from_delivery(cx: &Context) -> Result<Self, HandlerError>;

    /// Checks at startup that the app provides what this extractor needs.
    fn check(state: &StateMap) -> Result<(), String> {
        let _ = state;
        Ok(())
    }
}

impl FromDelivery for serde_json::Value {
    const READS_BODY: bool = true;

    fn from_delivery(cx: &Context) -> Result<Self, HandlerError> {
        serde_json::from_slice(&cx.payload)
            .map_err(|e| HandlerError::new(format!("payload is not valid JSON: {e}")))
    }
}
