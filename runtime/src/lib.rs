//! # hooksmith
//!
//! Receive webhooks in Rust. Annotate a function, and hooksmith mounts it on an axum router with
//! everything a careful engineer would otherwise hand-write per provider: signature verification
//! over the raw bytes, body limits, de-duplication, filters and routing, persist-then-ack,
//! retries with backoff, dead letters and delivery history.
//!
//! ```no_run
//! use hooksmith::{Delivery, Json, webhook};
//!
//! #[derive(serde::Deserialize)]
//! struct PullRequestEvent { number: u64 }
//!
//! #[webhook(path = "/hooks/github", sig = "github", event = "pull_request", filter(action = "opened"))]
//! async fn pr_opened(pr: Json<PullRequestEvent>, delivery: Delivery) -> hooksmith::Result {
//!     tracing::info!(number = pr.number, id = delivery.id(), "PR opened");
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), hooksmith::Error> {
//!     hooksmith::App::from_env()?.serve().await  // or: let router: axum::Router = hooksmith::router()?;
//! }
//! ```
//!
//! ## How a request is answered
//!
//! | status | when |
//! |---|---|
//! | 204 | stored (handlers run from the queue), a duplicate of a stored delivery, or no handler matched (`unhandled`) |
//! | 400 | the body is not a JSON object (or a form with a JSON `payload`) |
//! | 401 | the signature is missing, malformed or wrong (every failure answers the same) |
//! | 404 | no such endpoint, or it is disabled |
//! | 405 | a method the endpoint does not accept |
//! | 409 | a signed timestamp outside the tolerance window |
//! | 413 | the body is larger than the endpoint's limit |
//! | 503 | the store could not take the delivery (`Retry-After` is set): nothing was stored |
//!
//! A 2xx is sent only after the delivery and its jobs are in the store.
//!
//! ## Collecting handlers
//!
//! `#[webhook]` registers each handler with [`inventory`](https://docs.rs/inventory), which
//! collects every registration linked into the final binary. A handler in a library crate that the
//! binary never references may be dropped by the linker; reference the crate (any item of it), or
//! register handlers explicitly with [`AppBuilder::handler`]: `.handler::<pr_opened>()`.

mod admin;
mod app;
mod clock;
mod config_file;
mod error;
mod extract;
mod filter;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals;
mod observe;
mod outcome;
mod pipeline;
mod receiver;
mod registry;
mod routing;
pub mod scheme;
mod spec;
pub mod store;
mod telemetry;
mod tenants;
pub mod testing;
mod worker;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// The axum version hooksmith's router is built with, for `merge`/`nest` and `ack = "handled"`
/// responses.
pub use axum;

#[doc = include_str!("docs/webhook.md")]
pub use hooksmith_macros::webhook;

pub use admin::MAX_LIST_LIMIT;
pub use app::{
    App, AppBuilder, DEFAULT_ADDR, DEFAULT_DEDUP_TTL, DEFAULT_HISTORY, DEFAULT_STORE, router,
    shutdown_signal,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, HandlerError};
pub use extract::{Context, Delivery, Form, FromDelivery, Headers, Json, Raw, State, StateMap};
pub use observe::{Transition, TransitionKind};
pub use outcome::{IntoHandledOutcome, IntoOutcome, Outcome};
pub use receiver::{Event, Receiver, ReceiverError};
pub use spec::{Ack, Encoding, Endpoint, Filter, Retry, SecretSource, Target, Value};

/// What a handler returns: `hooksmith::Result` is `Result<(), HandlerError>`; an `ack = "handled"`
/// handler may return `hooksmith::Result<R>` for a response type `R`.
pub type Result<T = (), E = HandlerError> = std::result::Result<T, E>;
