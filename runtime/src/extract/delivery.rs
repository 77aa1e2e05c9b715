use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Context, FromDelivery};
use crate::HandlerError;
use crate::store::StoredDelivery;

/// Facts about the delivery being handled.
///
/// It shares the stored record the handler runs on: taking it copies nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Delivery {
    record: Arc<StoredDelivery>,
    attempt: u32,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.record;
        f.debug_struct("Delivery")
            .field("record_id", &r.id)
            .field("id", &r.delivery_id)
            .field("endpoint", &r.endpoint)
            .field("event", &r.event)
            .field("attempt", &self.attempt)
            .field("received_at_ms", &r.received_at_ms)
            .field("connection", &r.connection)
            .finish()
    }
}

impl Delivery {
    /// The provider's delivery id (`X-GitHub-Delivery`, ...; the body's SHA-256 when it has none).
    pub fn id(&self) -> &str {
        &self.record.delivery_id
    }

    /// The store's id of this delivery, as the admin API shows it.
    pub fn record_id(&self) -> i64 {
        self.record.id
    }

    /// The endpoint path it arrived at.
    pub fn endpoint(&self) -> &str {
        &self.record.endpoint
    }

    /// The provider's event name (`pull_request`, never with the action appended).
    pub fn event(&self) -> &str {
        &self.record.event
    }

    /// This run's attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// When hooksmith received it.
    pub fn received_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH
            + Duration::from_millis(self.record.received_at_ms.max(0).unsigned_abs())
    }

    /// The tenant connection it arrived for, on `{connection}` endpoints.
    pub fn connection(&self) -> Option<&str> {
        self.record.connection.as_deref()
    }
}

impl FromDelivery for Delivery {
    const READS_BODY: bool = false;

    fn from_delivery(cx: &Context) -> Result<Self, HandlerError> {
        Ok(Delivery {
            record: cx.record.clone(),
            attempt: cx.attempt,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::Delivery;
    use crate::extract::{Context, FromDelivery};
    use crate::store::{HeaderList, StoredDelivery};

    /// Every accessor reads the stored record the handler runs on, and the attempt of this run.
    #[test]
    fn every_fact_comes_from_the_stored_record() {
        let record = Arc::new(StoredDelivery {
            id: 42,
            key: "/hooks/acme:acme:push:d-1".into(),
            endpoint: "/hooks/{connection}".into(),
            connection: Some("acme".into()),
            event: "push".into(),
            delivery_id: "d-1".into(),
            headers: HeaderList::new(),
            body: bytes::Bytes::from_static(b"{}"),
            received_at_ms: 1_700_000_000_123,
        });
        let cx = Context {
            record: record.clone(),
            payload: record.body.clone(),
            attempt: 3,
            handler: "h",
            state: Arc::default(),
        };
        let delivery = Delivery::from_delivery(&cx).unwrap();
        assert_eq!(delivery.id(), "d-1");
        assert_eq!(delivery.record_id(), 42);
        assert_eq!(delivery.endpoint(), "/hooks/{connection}");
        assert_eq!(delivery.event(), "push");
        assert_eq!(delivery.attempt(), 3);
        assert_eq!(delivery.connection(), Some("acme"));
        assert_eq!(
            delivery.received_at(),
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
        );
        let shown = format!("{delivery:?}");
        assert!(
            shown.contains("record_id: 42") && shown.contains("attempt: 3"),
            "{shown}"
        );
        assert!(!shown.contains("{}"), "the body is not shown: {shown}");
    }
}
