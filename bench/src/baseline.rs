//! The receiver a careful engineer writes by hand with axum: HMAC-SHA256 over the raw bytes with a
//! constant-time compare, the event header checked, the body deserialized into borrowed typed
//! structs (unknown fields skipped, nothing kept), the action checked, the delivery id remembered
//! so a retry is not handled twice, 204.
//!
//! It is what hooksmith is measured against: no persistence, no retries, no history — every
//! safety feature hooksmith adds is extra work this receiver does not do.
//!
//! [`history_router`] is that receiver keeping what hooksmith's memory store keeps of each
//! delivery for its history and replay — the delivery id, the event, when it came, its headers and
//! its body, copied out of the connection's buffers — for the last
//! [`MemoryStore::DEFAULT_KEEP`](hooksmith::store::MemoryStore::DEFAULT_KEEP) deliveries, within
//! [`MemoryStore::DEFAULT_KEEP_BYTES`](hooksmith::store::MemoryStore::DEFAULT_KEEP_BYTES) of
//! bodies, the oldest dropped first. It prices that history alone, without the rest of hooksmith.
//!
//! [`durable_router`] is the same receiver made durable the way a handler written against `sqlx`
//! is: each delivery inserted into SQLite (WAL, `synchronous=FULL`, as hooksmith's `sqlite`
//! store) in its own transaction before the 204, its delivery id the primary key, so a retry is
//! recognised after a restart too. It is the reference for what durability costs without group
//! commit. [`durable_router_postgres`] is that receiver on PostgreSQL: one `INSERT` per delivery,
//! committed on its own, from a pool of connections.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use hmac::{Hmac, Mac};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use sha2::Sha256;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The parts of a `pull_request` delivery the handler reads; everything else is skipped.
#[derive(Deserialize)]
struct PullRequestEvent<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
    number: u64,
    #[serde(borrow)]
    pull_request: PullRequest<'a>,
}

#[derive(Deserialize)]
struct PullRequest<'a> {
    #[serde(borrow)]
    title: Cow<'a, str>,
}

#[derive(Clone)]
struct Receiver {
    key: Arc<Hmac<Sha256>>,
    seen: Arc<Mutex<HashSet<Box<str>>>>,
    handled: Arc<AtomicU64>,
    /// The deliveries kept for replay, for the receiver that keeps them.
    history: Option<Arc<Mutex<History>>>,
}

/// The last deliveries received, oldest first, bounded in number and in bytes of bodies.
struct History {
    kept: VecDeque<Kept>,
    body_bytes: usize,
    max: usize,
    max_body_bytes: usize,
}

/// What a replay needs of one delivery.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "kept for a replay, which the bench never asks for"
    )
)]
struct Kept {
    delivery_id: Box<str>,
    event: Box<str>,
    received_at_ms: i64,
    /// `name: value` lines, in one buffer.
    headers: Box<[u8]>,
    body: Bytes,
}

/// The request's headers as `name: value` lines in one buffer, the signature left out.
fn header_lines(headers: &HeaderMap) -> Box<[u8]> {
    let kept = || {
        headers
            .iter()
            .filter(|(name, _)| name.as_str() != "x-hub-signature-256")
    };
    let len = kept()
        .map(|(name, value)| name.as_str().len() + value.len() + 3)
        .sum();
    let mut lines = Vec::with_capacity(len);
    for (name, value) in kept() {
        lines.extend_from_slice(name.as_str().as_bytes());
        lines.extend_from_slice(b": ");
        lines.extend_from_slice(value.as_bytes());
        lines.push(b'\n');
    }
    lines.into_boxed_slice()
}

impl History {
    fn new(max: usize, max_body_bytes: usize) -> Self {
        Self {
            kept: VecDeque::new(),
            body_bytes: 0,
            max,
            max_body_bytes,
        }
    }

    /// Keeps `delivery`, then drops the oldest deliveries until both bounds hold again.
    fn keep(&mut self, delivery: Kept) {
        self.body_bytes += delivery.body.len();
        self.kept.push_back(delivery);
        while self.kept.len() > self.max || self.body_bytes > self.max_body_bytes {
            let Some(oldest) = self.kept.pop_front() else {
                break;
            };
            self.body_bytes -= oldest.body.len();
        }
    }
}

/// The hand-written receiver's router: `POST /hooks/github`.
pub(crate) fn router(secret: &str) -> Router {
    receiver(secret, None).0
}

/// The hand-written receiver keeping a history as hooksmith's memory store does by default:
/// `POST /hooks/github`.
pub(crate) fn history_router(secret: &str) -> Router {
    let history = History::new(
        hooksmith::store::MemoryStore::DEFAULT_KEEP,
        hooksmith::store::MemoryStore::DEFAULT_KEEP_BYTES,
    );
    receiver(secret, Some(Arc::new(Mutex::new(history)))).0
}

/// The router and the count of pull requests it handled.
fn receiver(secret: &str, history: Option<Arc<Mutex<History>>>) -> (Router, Arc<AtomicU64>) {
    let key = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    let handled = Arc::new(AtomicU64::new(0));
    let router = Router::new()
        .route("/hooks/github", post(github))
        .with_state(Receiver {
            key: Arc::new(key),
            seen: Arc::default(),
            handled: handled.clone(),
            history,
        });
    (router, handled)
}

async fn github(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let (id, event) = match check(&receiver.key, &headers, &body) {
        Ok(Some(checked)) => checked,
        Ok(None) => return StatusCode::NO_CONTENT,
        Err(status) => return status,
    };
    if !receiver
        .seen
        .lock()
        .expect("not poisoned")
        .insert(id.into())
    {
        return StatusCode::NO_CONTENT;
    }
    if let Some(history) = &receiver.history {
        let kept = Kept {
            delivery_id: id.into(),
            event: "pull_request".into(),
            received_at_ms: now_ms(),
            // Copied: the values and a one-chunk body are slices of the connection's read buffer,
            // which a reference kept for minutes would hold on to.
            headers: header_lines(&headers),
            body: Bytes::copy_from_slice(&body),
        };
        history.lock().expect("not poisoned").keep(kept);
    }
    if event.action == "opened" {
        std::hint::black_box((event.number, &event.pull_request.title));
        receiver
            .handled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    StatusCode::NO_CONTENT
}

/// The signature verified over the raw bytes, the event checked, the body parsed: the delivery id
/// and the event, `None` for an event this receiver ignores, or the status to refuse with.
fn check<'a>(
    key: &Hmac<Sha256>,
    headers: &'a HeaderMap,
    body: &'a [u8],
) -> Result<Option<(&'a str, PullRequestEvent<'a>)>, StatusCode> {
    let Some(signature) = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.as_bytes().strip_prefix(b"sha256="))
        .and_then(|hex_sig| hex::decode(hex_sig).ok())
    else {
        return Err(StatusCode::UNAUTHORIZED);
    };
    let mut mac = key.clone();
    mac.update(body);
    // `verify_slice` compares in constant time.
    if mac.verify_slice(&signature).is_err() {
        return Err(StatusCode::UNAUTHORIZED);
    }
    if headers
        .get("x-github-event")
        .map(http::HeaderValue::as_bytes)
        != Some(b"pull_request")
    {
        return Ok(None);
    }
    let Some(id) = headers
        .get("x-github-delivery")
        .and_then(|v| v.to_str().ok())
    else {
        return Err(StatusCode::BAD_REQUEST);
    };
    let Ok(event) = serde_json::from_slice::<PullRequestEvent<'_>>(body) else {
        return Err(StatusCode::BAD_REQUEST);
    };
    Ok(Some((id, event)))
}

#[derive(Clone)]
struct DurableReceiver {
    key: Arc<Hmac<Sha256>>,
    db: Database,
}

#[derive(Clone)]
enum Database {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// The durable hand-written receiver's router on the PostgreSQL database at `url`, its table in
/// `schema` (which `url` puts first on the search path), from a pool of 16 connections as
/// hooksmith's store: `POST /hooks/github`.
pub(crate) async fn durable_router_postgres(
    secret: &str,
    url: &str,
    schema: &str,
) -> anyhow::Result<Router> {
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .connect(url)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS deliveries (
            delivery_id TEXT PRIMARY KEY,
            action TEXT NOT NULL,
            body BYTEA NOT NULL,
            received_at_ms BIGINT NOT NULL)"
    )))
    .execute(&db)
    .await?;
    Ok(durable(secret, Database::Postgres(db)))
}

/// The durable hand-written receiver's router on the SQLite file at `path`: `POST /hooks/github`.
pub(crate) async fn durable_router(secret: &str, path: &Path) -> anyhow::Result<Router> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    // SQLite has one writer at a time: one connection, requests queue for it.
    let db = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS deliveries (
            delivery_id TEXT PRIMARY KEY,
            action TEXT NOT NULL,
            body BLOB NOT NULL,
            received_at_ms INTEGER NOT NULL)",
    )
    .execute(&db)
    .await?;
    Ok(durable(secret, Database::Sqlite(db)))
}

/// The durable receiver's router on `db`.
fn durable(secret: &str, db: Database) -> Router {
    let key = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    Router::new()
        .route("/hooks/github", post(github_durable))
        .with_state(DurableReceiver {
            key: Arc::new(key),
            db,
        })
}

async fn github_durable(
    State(receiver): State<DurableReceiver>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (id, event) = match check(&receiver.key, &headers, &body) {
        Ok(Some(checked)) => checked,
        Ok(None) => return StatusCode::NO_CONTENT,
        Err(status) => return status,
    };
    let now_ms = now_ms();
    // SQLite numbers `$1`… by their order, as PostgreSQL does.
    const INSERT: &str = "INSERT INTO deliveries (delivery_id, action, body, received_at_ms)
        VALUES ($1, $2, $3, $4) ON CONFLICT (delivery_id) DO NOTHING";
    macro_rules! insert {
        ($db:expr) => {
            sqlx::query(INSERT)
                .bind(id)
                .bind(event.action.as_ref())
                .bind(&body[..])
                .bind(now_ms)
                .execute($db)
                .await
                .map(|done| done.rows_affected())
        };
    }
    let stored = match &receiver.db {
        Database::Sqlite(db) => insert!(db),
        Database::Postgres(db) => insert!(db),
    };
    match stored {
        // A retry of a delivery already stored: nothing more to do.
        Ok(0) => StatusCode::NO_CONTENT,
        Ok(_) => {
            if event.action == "opened" {
                std::hint::black_box((event.number, &event.pull_request.title));
            }
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use tower::ServiceExt as _;

    async fn send(router: &Router, signature: &str, id: &str, body: &'static [u8]) -> StatusCode {
        let request = http::Request::post("/hooks/github")
            .header("x-hub-signature-256", signature)
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", id)
            .body(axum::body::Body::from(body))
            .expect("a request");
        router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible")
            .status()
    }

    /// The comparison is fair only if the hand-written receiver does the work: it refuses a bad
    /// signature and a malformed body, and remembers delivery ids.
    #[tokio::test]
    async fn the_hand_written_receiver_verifies_parses_and_deduplicates() {
        let body: &'static [u8] = br#"{"action":"opened","number":1,"pull_request":{"title":"t"}}"#;
        let payload = crate::load::Payload::new(body, "s");
        let signature = payload.signature.to_str().expect("ascii").to_owned();
        let (router, handled) = receiver("s", None);
        assert_eq!(
            send(&router, &signature, "1", body).await,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            send(&router, &signature, "1", body).await,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            handled.load(Ordering::Relaxed),
            1,
            "a retry is not handled twice"
        );
        let wrong = format!("sha256={}", "0".repeat(64));
        assert_eq!(
            send(&router, &wrong, "2", body).await,
            StatusCode::UNAUTHORIZED
        );
        let bad: &'static [u8] = b"{\"action\":";
        let bad_signature = crate::load::Payload::new(bad, "s").signature;
        assert_eq!(
            send(&router, bad_signature.to_str().expect("ascii"), "3", bad).await,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(handled.load(Ordering::Relaxed), 1);
    }

    /// The history-keeping reference keeps each new delivery once — its own copy of the body, its
    /// headers without the signature — and drops the oldest past either bound.
    #[tokio::test]
    async fn the_history_receiver_keeps_the_last_deliveries() {
        let body: &'static [u8] = br#"{"action":"opened","number":1,"pull_request":{"title":"t"}}"#;
        let payload = crate::load::Payload::new(body, "s");
        let signature = payload.signature.to_str().expect("ascii").to_owned();
        let history = Arc::new(Mutex::new(History::new(2, usize::MAX)));
        let (router, handled) = receiver("s", Some(history.clone()));
        for id in ["1", "2", "2", "3"] {
            assert_eq!(
                send(&router, &signature, id, body).await,
                StatusCode::NO_CONTENT
            );
        }
        assert_eq!(handled.load(Ordering::Relaxed), 3);
        let history = history.lock().expect("not poisoned");
        let ids: Vec<&str> = history.kept.iter().map(|k| &*k.delivery_id).collect();
        assert_eq!(
            ids,
            ["2", "3"],
            "the oldest dropped, a retry not kept twice"
        );
        assert_eq!(history.body_bytes, 2 * body.len());
        for kept in &history.kept {
            assert_eq!(kept.body, body);
            assert_ne!(kept.body.as_ptr(), body.as_ptr(), "the body is copied out");
            assert_eq!(&*kept.event, "pull_request");
            assert!(kept.received_at_ms > 0);
            let headers = std::str::from_utf8(&kept.headers).expect("ASCII");
            let line = format!("x-github-delivery: {}\n", kept.delivery_id);
            assert!(headers.contains(&line), "{headers}");
            assert!(!headers.contains("x-hub-signature-256"), "{headers}");
        }
        drop(history);

        // The bound in bytes: bodies of 10 bytes within 25 keep two.
        let mut bounded = History::new(100, 25);
        for id in ["a", "b", "c"] {
            bounded.keep(Kept {
                delivery_id: id.into(),
                event: "e".into(),
                received_at_ms: 0,
                headers: Box::default(),
                body: Bytes::from_static(b"0123456789"),
            });
        }
        let ids: Vec<&str> = bounded.kept.iter().map(|k| &*k.delivery_id).collect();
        assert_eq!((ids, bounded.body_bytes), (vec!["b", "c"], 20));
    }

    /// The durable reference stores each delivery once, in the file, before answering; and
    /// refuses what the in-memory one refuses.
    #[tokio::test]
    async fn the_durable_receiver_commits_each_delivery_once() {
        let path = std::env::temp_dir().join(format!(
            "hooksmith-bench-durable-test-{}.db",
            std::process::id()
        ));
        let router = durable_router("s", &path).await.expect("router");
        let body = send_durable(&router).await;
        let reader = sqlx::SqlitePool::connect_with(SqliteConnectOptions::new().filename(&path))
            .await
            .expect("the file");
        let stored: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT delivery_id, body FROM deliveries ORDER BY delivery_id")
                .fetch_all(&reader)
                .await
                .expect("rows");
        reader.close().await;
        crate::remove_sqlite_files(&path);
        assert_stored_once(&stored, body);
    }

    /// The same on PostgreSQL, in a schema of its own (skipped, and said so, without
    /// `HOOKSMITH_TEST_POSTGRES_URL`).
    #[tokio::test]
    async fn the_durable_postgres_receiver_commits_each_delivery_once() {
        let Some(url) = std::env::var("HOOKSMITH_TEST_POSTGRES_URL")
            .ok()
            .filter(|url| !url.is_empty())
        else {
            eprintln!("skipped: HOOKSMITH_TEST_POSTGRES_URL is not set");
            return;
        };
        let schema = format!("hooksmith_bench_test_{}", std::process::id());
        let on_schema = format!(
            "{url}{}options=-c%20search_path%3D{schema}",
            if url.contains('?') { '&' } else { '?' }
        );
        let router = durable_router_postgres("s", &on_schema, &schema)
            .await
            .expect("router");
        let body = send_durable(&router).await;
        let reader = sqlx::PgPool::connect(&url).await.expect("the database");
        let stored: Vec<(String, Vec<u8>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT delivery_id, body FROM {schema}.deliveries ORDER BY delivery_id"
        )))
        .fetch_all(&reader)
        .await
        .expect("rows");
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&reader)
            .await
            .expect("dropped");
        assert_stored_once(&stored, body);
    }

    /// Sends deliveries 1, 1 again and 2, then 3 with a wrong signature, to a durable receiver;
    /// the body sent.
    async fn send_durable(router: &Router) -> &'static [u8] {
        let body: &'static [u8] = br#"{"action":"opened","number":1,"pull_request":{"title":"t"}}"#;
        let signature = crate::load::Payload::new(body, "s").signature;
        let signature = signature.to_str().expect("ascii").to_owned();
        for id in ["1", "1", "2"] {
            assert_eq!(
                send(router, &signature, id, body).await,
                StatusCode::NO_CONTENT
            );
        }
        let wrong = format!("sha256={}", "0".repeat(64));
        assert_eq!(
            send(router, &wrong, "3", body).await,
            StatusCode::UNAUTHORIZED
        );
        body
    }

    fn assert_stored_once(stored: &[(String, Vec<u8>)], body: &[u8]) {
        assert_eq!(
            stored,
            [
                ("1".to_owned(), body.to_vec()),
                ("2".to_owned(), body.to_vec())
            ],
            "each delivery stored once, as received"
        );
    }
}
