//! Delivery transitions, published to observers after they are stored (seed 002's
//! `WEBHOOK_RECEIPT_STATUS_TRANSITIONED`), so dashboards can chart delivery health.
//!
//! ```no_run
//! # async fn demo(app: &hooksmith::App) {
//! let mut transitions = app.subscribe();
//! while let Ok(t) = transitions.recv().await {
//!     println!("{} {} {:?}", t.endpoint, t.delivery_id, t.kind);
//! }
//! # }
//! ```

use serde::Serialize;

/// What happened to a delivery or one of its handler jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransitionKind {
    /// Stored with its jobs (and answered 2xx).
    Received,
    /// Stored, but no handler matched.
    Unhandled,
    /// A duplicate of a stored delivery: acknowledged, nothing re-run.
    Duplicate,
    /// Refused before anything was stored (bad signature, too large, ...).
    Rejected {
        /// The reason, as logs and metrics name it.
        reason: String,
    },
    /// A handler run succeeded.
    Succeeded {
        /// The handler.
        handler: String,
    },
    /// A handler run failed and will be retried.
    Retrying {
        /// The handler.
        handler: String,
        /// Its attempt number.
        attempt: u32,
    },
    /// A handler run failed for good.
    Dead {
        /// The handler.
        handler: String,
    },
}

/// One transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// The endpoint path.
    pub endpoint: String,
    /// The provider's delivery id (empty for a rejected request).
    pub delivery_id: String,
    /// The store's id of the delivery, once stored.
    pub record_id: Option<i64>,
    /// What happened.
    #[serde(flatten)]
    pub kind: TransitionKind,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// How many transitions a slow observer may fall behind before it misses some.
pub(crate) const CAPACITY: usize = 4096;
