use std::time::{Duration, SystemTime};

use super::{Context, FromDelivery};
use crate::HandlerError;

/// Facts about the delivery being handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    record_id: i64,
    id: String,
    endpoint: String,
    event: String,
    attempt: u32,
    received_at_ms: i64,
    connection: Option<String>,
}

impl Delivery {
    /// The provider's delivery id (`X-GitHub-Delivery`, ...; the body's SHA-256 when it has none).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The store's id of this delivery, as the admin API shows it.
    pub fn record_id(&self) -> i64 {
        self.record_id
    }

    /// The endpoint path it arrived at.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The provider's event name (`pull_request`, never with the action appended).
    pub fn event(&self) -> &str {
        &self.event
    }

    /// This run's attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// When hooksmith received it.
    pub fn received_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.received_at_ms.max(0).unsigned_abs())
    }

    /// The tenant connection it arrived for, on `{connection}` endpoints.
    pub fn connection(&self) -> Option<&str> {
        self.connection.as_deref()
    }
}

impl FromDelivery for Delivery {
    const READS_BODY: bool = false;

    fn from_delivery(cx: &Context) -> Result<Self, HandlerError> {
        let r = &cx.record;
        Ok(Delivery {
            record_id: r.id,
            id: r.delivery_id.clone(),
            endpoint: r.endpoint.clone(),
            event: r.event.clone(),
            attempt: cx.attempt,
            received_at_ms: r.received_at_ms,
            connection: r.connection.clone(),
        })
    }
}
