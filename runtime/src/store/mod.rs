//! Where deliveries and handler jobs live: the [`Store`] trait and its backends.
//!
//! A backend must keep three promises, which the pipeline and the workers rely on:
//!
//! 1. [`Store::ingest`] writes the delivery, its idempotency key and one job per matched handler
//!    in one transaction, and returns only once they are stored: the 2xx is sent after it.
//! 2. A job is run by whoever [`Store::claim`]ed it — or by the caller that created it already
//!    claimed ([`NewJob::claimed_for_ms`]) — under a lease; a lease that expires (the instance
//!    died) makes the job claimable again, so nothing is silently dropped.
//! 3. Each transition is stored before it is reported.

mod headers;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::future::Future;
use std::hash::Hasher;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

pub use headers::{HeaderList, Iter as HeaderIter};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// Hashing of a store's own ids (deliveries, jobs): Fibonacci hashing, one multiplication that
/// spreads consecutive ids over a table's positions and over the top bits its probes compare.
/// The ids are handed out in sequence by the store and never chosen by a sender, so SipHash's
/// defence against chosen keys buys nothing for them, and its cost would be paid at every look-up.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n.cast_unsigned());
    }
}

/// Opens the store a `HOOKSMITH_STORE` URL names: `memory`, `sqlite:PATH[?synchronous=normal]`
/// or `postgres://...` (`postgresql://` too). Connections are made on first use.
pub fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    let scheme = url.split(':').next().unwrap_or(url);
    match scheme {
        "memory" => Ok(std::sync::Arc::new(MemoryStore::new())),
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(std::sync::Arc::new(SqliteStore::open(url)?)),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(std::sync::Arc::new(PostgresStore::open(url, None)?)),
        #[allow(unreachable_patterns)]
        "sqlite" | "postgres" | "postgresql" => Err(StoreError(format!(
            "HOOKSMITH_STORE names `{scheme}`, but hooksmith was built without its `{}` feature",
            if scheme == "sqlite" {
                "sqlite"
            } else {
                "postgres"
            }
        ))),
        _ => Err(StoreError(format!(
            "HOOKSMITH_STORE=`{scheme}:…` is not a store: use `memory`, `sqlite:PATH` or `postgres://…`"
        ))),
    }
}

/// A boxed future borrowing the store.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A store operation failed; the request is answered 503 with `Retry-After`.
#[derive(Debug, thiserror::Error)]
#[error("store error: {0}")]
pub struct StoreError(pub String);

/// A delivery as stored: the raw body byte-exact, headers with secrets redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    /// The store's id.
    pub id: i64,
    /// The idempotency key.
    pub key: String,
    /// The endpoint path.
    pub endpoint: String,
    /// The tenant connection, on `{connection}` endpoints.
    pub connection: Option<String>,
    /// The provider's event name.
    pub event: String,
    /// The provider's delivery id.
    pub delivery_id: String,
    /// Header names (lowercase) and values, signature and authorization values redacted.
    pub headers: HeaderList,
    /// The body as received.
    pub body: Bytes,
    /// When it was received, in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
}

/// A delivery to store, with the jobs of the handlers it matched.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// The idempotency key (unique).
    pub key: String,
    /// The endpoint path.
    pub endpoint: String,
    /// The tenant connection.
    pub connection: Option<String>,
    /// The event name.
    pub event: String,
    /// The provider's delivery id.
    pub delivery_id: String,
    /// Redacted headers.
    pub headers: HeaderList,
    /// The raw body.
    pub body: Bytes,
    /// Reception time, in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// One job per matched handler; none makes the delivery `unhandled`.
    pub jobs: Vec<NewJob>,
}

impl NewDelivery {
    /// The record of this delivery once stored under `id`: what [`Ingest::Stored`] carries.
    pub fn into_record(self, id: i64) -> StoredDelivery {
        StoredDelivery {
            id,
            key: self.key,
            endpoint: self.endpoint,
            connection: self.connection,
            event: self.event,
            delivery_id: self.delivery_id,
            headers: self.headers,
            body: self.body,
            received_at_ms: self.received_at_ms,
        }
    }

    /// [`Ingest::Stored`] for this delivery stored under `id` with jobs `jobs`.
    pub fn stored(self, id: i64, jobs: Vec<i64>) -> Ingest {
        Ingest::Stored {
            id,
            jobs,
            record: Arc::new(self.into_record(id)),
        }
    }
}

/// A handler job to create with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The handler's name.
    pub handler: String,
    /// Attempts allowed in all (first run and retries).
    pub max_attempts: u32,
    /// `Some(lease)`: the job is created already claimed by the caller, leased for that many
    /// milliseconds: its first attempt runs inside the request (`ack = "handled"`) or is handed
    /// straight to a free worker slot of the instance that received it.
    pub claimed_for_ms: Option<i64>,
    /// Jobs with the same key run one at a time, in the order they were stored (a handler's
    /// `order_by`); `None` promises no order.
    pub order_key: Option<String>,
}

/// What [`Store::ingest`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingest {
    /// Stored as new; the ids of its jobs, in the order given.
    Stored {
        /// The delivery's id.
        id: i64,
        /// The jobs' ids.
        jobs: Vec<i64>,
        /// The delivery as stored ([`NewDelivery::into_record`]): jobs created already claimed
        /// run on it without reading it back.
        record: Arc<StoredDelivery>,
    },
    /// The key was already stored: nothing was written.
    Duplicate {
        /// The id of the delivery that holds the key.
        id: i64,
    },
}

/// A job handed to a worker, under a lease.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    /// The job's id.
    pub id: i64,
    /// Its delivery.
    pub delivery: Arc<StoredDelivery>,
    /// The handler to run.
    pub handler: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
}

/// How a job's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    /// The handler succeeded.
    Succeeded,
    /// The handler failed; `retry_at_ms: None` makes the job `dead`.
    Failed {
        /// The recorded error.
        error: String,
        /// When to try again, in milliseconds since the Unix epoch.
        retry_at_ms: Option<i64>,
    },
}

/// A delivery's state (seed 002's receipt states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Stored, no handler has run yet.
    Received,
    /// Handlers are running or retrying.
    Dispatched,
    /// Every matched handler succeeded.
    Acknowledged,
    /// No handler matched.
    Unhandled,
    /// A handler exhausted its retries.
    Dead,
}

/// A handler job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for its first run.
    Pending,
    /// Claimed by a worker.
    Running,
    /// Failed, waiting for its next attempt.
    Retrying,
    /// Succeeded.
    Succeeded,
    /// Failed for good.
    Dead,
}

impl DeliveryStatus {
    /// The delivery's state given its jobs' states.
    pub fn from_jobs(jobs: impl IntoIterator<Item = JobStatus>) -> Self {
        let (mut any, mut all_pending, mut all_succeeded, mut dead) = (false, true, true, false);
        for status in jobs {
            any = true;
            all_pending &= status == JobStatus::Pending;
            all_succeeded &= status == JobStatus::Succeeded;
            dead |= status == JobStatus::Dead;
        }
        match () {
            _ if !any => Self::Unhandled,
            _ if dead => Self::Dead,
            _ if all_succeeded => Self::Acknowledged,
            _ if all_pending => Self::Received,
            _ => Self::Dispatched,
        }
    }

    /// Parses the snake_case name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "received" => Self::Received,
            "dispatched" => Self::Dispatched,
            "acknowledged" => Self::Acknowledged,
            "unhandled" => Self::Unhandled,
            "dead" => Self::Dead,
            _ => return None,
        })
    }
}

/// One handler job of a delivery, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobSummary {
    /// The job's id.
    #[serde(skip)]
    pub id: i64,
    /// The handler's name.
    pub name: String,
    /// Its state.
    pub status: JobStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// When the next attempt is due, for retrying jobs.
    pub next_attempt_at_ms: Option<i64>,
}

/// A delivery and its jobs, as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliverySummary {
    /// The store's id.
    pub id: i64,
    /// The provider's delivery id.
    pub delivery_id: String,
    /// The endpoint path.
    pub endpoint: String,
    /// The event name.
    pub event: String,
    /// Its state.
    pub status: DeliveryStatus,
    /// Reception time, milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// Its handler jobs.
    pub handlers: Vec<JobSummary>,
}

/// Which deliveries to list, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryQuery {
    /// Only this endpoint path.
    pub endpoint: Option<String>,
    /// Only this state.
    pub status: Option<DeliveryStatus>,
    /// Only this event name.
    pub event: Option<String>,
    /// Only this provider delivery id.
    pub delivery_id: Option<String>,
    /// Only ids below this one (paging).
    pub before: Option<i64>,
    /// Only deliveries received at or after this time (ms since the epoch).
    pub received_since_ms: Option<i64>,
    /// Only deliveries received before this time (ms since the epoch).
    pub received_until_ms: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// A tenant connection (seed 002): the secrets and headers one customer's deliveries are verified
/// with, on endpoints whose path holds `{connection}`.
#[derive(Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Connection {
    /// The name in the path (`/webhooks/github/{connection}`).
    pub name: String,
    /// The signature scheme, which must be the endpoint's.
    #[serde(rename = "type")]
    pub kind: String,
    /// Secrets, newest first; any one verifies (rotation).
    pub secrets: Vec<String>,
    /// The signature header, for the generic HMAC schemes.
    pub signature_header: Option<String>,
    /// The header holding the delivery id (nonce), instead of the scheme's.
    pub nonce_header: Option<String>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field(
                "secrets",
                &format_args!("<{} redacted>", self.secrets.len()),
            )
            .field("signature_header", &self.signature_header)
            .field("nonce_header", &self.nonce_header)
            .finish()
    }
}

/// What [`Store::purge`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Finished deliveries received before this time (ms since the epoch) go.
    pub history_before_ms: i64,
    /// At most this many finished deliveries stay (seed 003's `event_history_size`).
    pub keep_at_most: Option<u64>,
    /// Idempotency keys first seen before this time go, once their delivery is gone.
    pub keys_before_ms: i64,
}

/// How a store describes itself in the startup banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreInfo {
    /// `memory`, `sqlite`, `postgres`.
    pub kind: &'static str,
    /// Whether a 2xx survives a restart of the process.
    pub durable: bool,
}

/// Storage for deliveries and handler jobs.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Describes the backend.
    fn info(&self) -> StoreInfo;

    /// Stores a delivery with its key and jobs in one transaction, unless the key is known; a
    /// stored delivery comes back as [`NewDelivery::stored`] makes it, record included.
    fn ingest(&self, delivery: NewDelivery) -> StoreFuture<'_, Ingest>;

    /// Claims up to `limit` due jobs (pending or retrying and due, or running with an expired
    /// lease) for `lease_ms`; each claim counts one attempt.
    fn claim(&self, limit: usize, lease_ms: i64, now_ms: i64) -> StoreFuture<'_, Vec<ClaimedJob>>;

    /// When the next unclaimed job becomes due, if any.
    fn next_due(&self) -> StoreFuture<'_, Option<i64>>;

    /// Records how a claimed job's run ended.
    fn finish(&self, job: i64, result: JobResult, now_ms: i64) -> StoreFuture<'_, ()>;

    /// Extends a running job's lease to `now + lease_ms`, for handlers that run long.
    fn renew(&self, job: i64, lease_ms: i64, now_ms: i64) -> StoreFuture<'_, ()>;

    /// An operator's replay: for each handler given, its job on `delivery` (created if the
    /// handler is new) is claimed by the caller for `lease_ms`, with a fresh retry budget
    /// (attempts start again at 1). Returns the job ids, in the order given.
    fn replay(
        &self,
        delivery: i64,
        jobs: Vec<NewJob>,
        lease_ms: i64,
        now_ms: i64,
    ) -> StoreFuture<'_, Vec<i64>>;

    /// Puts up to `limit` dead jobs back in the queue with a fresh retry budget; returns how many.
    fn requeue_dead(&self, limit: usize, now_ms: i64) -> StoreFuture<'_, u64>;

    /// Forgets finished history: deliveries received before `history_before_ms` whose status is
    /// `acknowledged` or `unhandled`, and beyond the newest `keep_at_most` such deliveries; never
    /// a delivery with pending, running, retrying or dead work. Then idempotency keys older than
    /// `keys_before_ms` whose delivery is gone. Returns `(deliveries, keys)` removed.
    fn purge(&self, policy: Retention) -> StoreFuture<'_, (u64, u64)>;

    /// Gives running jobs back (their instance is shutting down): each is due again now, its
    /// attempt counted.
    fn release<'a>(&'a self, jobs: &'a [i64], now_ms: i64) -> StoreFuture<'a, ()>;

    /// Jobs not finished yet (pending, running or retrying): the queue's depth.
    fn queue_depth(&self) -> StoreFuture<'_, u64>;

    /// Creates or replaces a tenant connection.
    fn put_connection(&self, connection: Connection) -> StoreFuture<'_, ()>;

    /// One connection by name.
    fn connection<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Connection>>;

    /// Every connection, by name.
    fn connections(&self) -> StoreFuture<'_, Vec<Connection>>;

    /// Deletes a connection; `false` when there was none.
    fn delete_connection<'a>(&'a self, name: &'a str) -> StoreFuture<'a, bool>;

    /// Lists deliveries, newest first.
    fn list<'a>(&'a self, query: &'a DeliveryQuery) -> StoreFuture<'a, Vec<DeliverySummary>>;

    /// One delivery with its record.
    fn get(&self, id: i64) -> StoreFuture<'_, Option<(DeliverySummary, Arc<StoredDelivery>)>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_status_follows_its_jobs() {
        use JobStatus::*;
        assert_eq!(DeliveryStatus::from_jobs([]), DeliveryStatus::Unhandled);
        assert_eq!(
            DeliveryStatus::from_jobs([Pending, Pending]),
            DeliveryStatus::Received
        );
        assert_eq!(
            DeliveryStatus::from_jobs([Succeeded, Pending]),
            DeliveryStatus::Dispatched
        );
        assert_eq!(
            DeliveryStatus::from_jobs([Running]),
            DeliveryStatus::Dispatched
        );
        assert_eq!(
            DeliveryStatus::from_jobs([Succeeded, Succeeded]),
            DeliveryStatus::Acknowledged
        );
        assert_eq!(
            DeliveryStatus::from_jobs([Succeeded, Dead]),
            DeliveryStatus::Dead
        );
        assert_eq!(
            DeliveryStatus::from_jobs([Retrying, Dead]),
            DeliveryStatus::Dead
        );
    }
}
