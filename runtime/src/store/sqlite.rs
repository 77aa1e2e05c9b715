//! The embedded durable store: one SQLite file in WAL mode.
//!
//! Durability: with `synchronous=FULL` (the default), a committed delivery survives a crash of
//! the process *and* of the machine (power loss): the WAL is fsynced at every commit, and the 2xx
//! is sent only after the commit. `sqlite:PATH?synchronous=normal` trades that for speed: a commit
//! then survives a crash of the process but the last transactions may be lost on power loss —
//! hooksmith would have answered 2xx for them, so that mode breaks the "2xx means stored" promise
//! across machine crashes and is opt-in.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::{OnceCell, mpsc, oneshot};

use super::Retention;
use super::sql::{self, JobRow, error};
use super::{
    ClaimedJob, Connection, DeliveryQuery, DeliverySummary, Ingest, JobResult, NewDelivery, NewJob,
    Store, StoreError, StoreFuture, StoreInfo, StoredDelivery,
};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS hooksmith_deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        idem_key TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        connection TEXT,
        event TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        received_at_ms INTEGER NOT NULL,
        status TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS hooksmith_deliveries_endpoint ON hooksmith_deliveries (endpoint, id)",
    "CREATE INDEX IF NOT EXISTS hooksmith_deliveries_status ON hooksmith_deliveries (status, id)",
    // Idempotency keys, ordered by the provider's delivery id first: the one B-tree a delivery
    // inserts into at a random place serves both the duplicate check (the whole key) and the
    // admin API's look-up by delivery id (its prefix). Keys outlive their deliveries.
    "CREATE TABLE IF NOT EXISTS hooksmith_delivery_keys (
        delivery_id TEXT NOT NULL,
        idem_key TEXT NOT NULL,
        delivery INTEGER NOT NULL,
        seen_at_ms INTEGER NOT NULL,
        PRIMARY KEY (delivery_id, idem_key)) WITHOUT ROWID",
    // Databases from before: the index the table above replaces (see `upgrade_keys`).
    "DROP INDEX IF EXISTS hooksmith_deliveries_delivery_id",
    "CREATE TABLE IF NOT EXISTS hooksmith_jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery INTEGER NOT NULL REFERENCES hooksmith_deliveries (id),
        handler TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        max_attempts INTEGER NOT NULL,
        last_error TEXT,
        next_at_ms INTEGER NOT NULL,
        lease_until_ms INTEGER NOT NULL,
        order_key TEXT)",
    // Each index on jobs holds only the jobs some query looks for: a finished job (nearly all
    // of them) is in none but `delivery`, so storing and finishing one touches few B-trees.
    // (Databases created before these indexes drop the full ones they replace.)
    "DROP INDEX IF EXISTS hooksmith_jobs_due",
    "DROP INDEX IF EXISTS hooksmith_jobs_lease",
    "DROP INDEX IF EXISTS hooksmith_jobs_order",
    "CREATE INDEX IF NOT EXISTS hooksmith_jobs_pending ON hooksmith_jobs (next_at_ms) WHERE status = 'pending'",
    "CREATE INDEX IF NOT EXISTS hooksmith_jobs_retrying ON hooksmith_jobs (next_at_ms) WHERE status = 'retrying'",
    "CREATE INDEX IF NOT EXISTS hooksmith_jobs_running ON hooksmith_jobs (lease_until_ms) WHERE status = 'running'",
    "CREATE INDEX IF NOT EXISTS hooksmith_jobs_dead ON hooksmith_jobs (id) WHERE status = 'dead'",
    "CREATE INDEX IF NOT EXISTS hooksmith_jobs_delivery ON hooksmith_jobs (delivery)",
    "CREATE INDEX IF NOT EXISTS hooksmith_jobs_ordered ON hooksmith_jobs (order_key, id) WHERE order_key IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS hooksmith_connections (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        secrets TEXT NOT NULL,
        signature_header TEXT,
        nonce_header TEXT)",
];

/// A [`Store`] in one SQLite file.
///
/// Writes on the hot path — storing deliveries, claiming jobs and recording handler results — go
/// through one writer task that commits them in groups: every write that arrived while the previous commit
/// was being synced joins the next transaction, so one sync serves many deliveries, and each
/// caller is answered only after the commit that holds its write. Should a group fail, each of
/// its writes is retried alone, so one bad write cannot fail the others.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    ready: OnceCell<mpsc::UnboundedSender<Write>>,
    synchronous_full: bool,
    /// Whether keys from before `hooksmith_delivery_keys` remain in `hooksmith_keys`, to be
    /// checked too (see `upgrade_keys`).
    legacy_keys: Arc<AtomicBool>,
}

/// The most writes one group commit takes.
const MAX_GROUP: usize = 256;
/// The most rows one multi-row `INSERT` carries.
const MAX_ROWS: usize = 64;

/// A write waiting for the next group commit, with where to send its result.
#[derive(Debug)]
enum Write {
    Ingest(NewDelivery, oneshot::Sender<Result<Ingest, StoreError>>),
    Finish(i64, JobResult, oneshot::Sender<Result<(), StoreError>>),
    Claim {
        limit: usize,
        lease_ms: i64,
        now_ms: i64,
        reply: oneshot::Sender<Result<Vec<ClaimedJob>, StoreError>>,
    },
}

impl SqliteStore {
    /// Opens (creating if needed) the database at a `sqlite:PATH[?synchronous=normal]` URL. The
    /// connection is made and the schema applied on first use, so the app starts even if the
    /// file cannot be opened yet; requests are answered 503 until it can.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let mut synchronous = SqliteSynchronous::Full;
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.to_ascii_lowercase().as_str() {
                "synchronous=full" => synchronous = SqliteSynchronous::Full,
                "synchronous=normal" => synchronous = SqliteSynchronous::Normal,
                other => {
                    return Err(StoreError(format!(
                        "unknown SQLite store option `{other}`: expected `synchronous=full` or `synchronous=normal`"
                    )));
                }
            }
        }
        let options = SqliteConnectOptions::from_str(base)
            .map_err(|e| StoreError(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // The writer's multi-row inserts come in up to `MAX_ROWS` sizes for each of three
            // tables: all of them stay prepared rather than being parsed again at each group.
            .statement_cache_capacity(256)
            // Pages are read through a memory map and a 16 MiB cache, not a `read` call per
            // page: the writer's group commits spend their time writing, not re-reading indexes.
            .pragma("cache_size", "-16384")
            .pragma("mmap_size", "268435456")
            // A statement of the writer's group that could fail halfway keeps the pages it
            // changes in a statement journal, to undo itself alone: in memory, not in a
            // temporary file (a `pwrite` per page once it passes 64 KiB).
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            ready: OnceCell::new(),
            synchronous_full: matches!(synchronous, SqliteSynchronous::Full),
            legacy_keys: Arc::default(),
        })
    }

    /// Applies the schema and starts the writer, once; returns the writer's queue.
    async fn ready(&self) -> Result<&mpsc::UnboundedSender<Write>, StoreError> {
        self.ready
            .get_or_try_init(|| async {
                let mut tx = self
                    .pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(error("opening the SQLite store"))?;
                for statement in SCHEMA {
                    sqlx::query(*statement)
                        .execute(&mut *tx)
                        .await
                        .map_err(error("creating the schema"))?;
                }
                let legacy = upgrade_keys(&mut tx)
                    .await
                    .map_err(error("upgrading the idempotency keys"))?;
                tx.commit().await.map_err(error("creating the schema"))?;
                self.legacy_keys.store(legacy, Ordering::Relaxed);
                let (queue, writes) = mpsc::unbounded_channel();
                // The writer ends when the store (the queue's only sender) is dropped.
                tokio::spawn(writer(self.pool.clone(), writes, self.legacy_keys.clone()));
                Ok(queue)
            })
            .await
    }

    async fn write<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.ready()
            .await?
            .send(make(reply))
            .map_err(|_| StoreError("the SQLite writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError("the SQLite writer has stopped".into()))?
    }

    async fn jobs_of(&self, ids: &[i64]) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, delivery, handler, status, attempts, last_error, next_at_ms FROM hooksmith_jobs
             WHERE delivery IN (SELECT value FROM json_each(?1)) ORDER BY id",
        )
        .bind(sql::ids_json(ids.iter().copied()))
        .fetch_all(&self.pool)
        .await
        .map_err(error("reading jobs"))?;
        rows.iter().map(job_row).collect()
    }
}

sql::row_readers!(sqlx::sqlite::SqliteRow);

/// Moves the keys of a database from before `hooksmith_delivery_keys` into it; returns whether
/// some remain in the old `hooksmith_keys` table.
///
/// A key is filed under its delivery's provider id, which only its delivery row holds: keys whose
/// delivery is still stored move; those of deliveries already purged (keys outlive their
/// deliveries) stay where they are, are checked as duplicates too, and leave with the retention
/// purge. The old table is dropped once empty, at the next start.
async fn upgrade_keys(connection: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    let old: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'hooksmith_keys')",
    )
    .fetch_one(&mut *connection)
    .await?;
    if !old {
        return Ok(false);
    }
    sqlx::query(
        "INSERT OR IGNORE INTO hooksmith_delivery_keys (delivery_id, idem_key, delivery, seen_at_ms)
         SELECT d.delivery_id, k.idem_key, k.delivery, k.seen_at_ms
         FROM hooksmith_keys k JOIN hooksmith_deliveries d ON d.id = k.delivery",
    )
    .execute(&mut *connection)
    .await?;
    sqlx::query(
        "DELETE FROM hooksmith_keys WHERE delivery IN (SELECT id FROM hooksmith_deliveries)",
    )
    .execute(&mut *connection)
    .await?;
    let remaining: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM hooksmith_keys)")
        .fetch_one(&mut *connection)
        .await?;
    if !remaining {
        sqlx::query("DROP TABLE hooksmith_keys")
            .execute(&mut *connection)
            .await?;
    }
    Ok(remaining)
}

impl Store for SqliteStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            kind: if self.synchronous_full {
                "sqlite"
            } else {
                "sqlite (synchronous=normal)"
            },
            durable: true,
        }
    }

    fn ingest(&self, new: NewDelivery) -> StoreFuture<'_, Ingest> {
        Box::pin(self.write(move |reply| Write::Ingest(new, reply)))
    }

    fn claim(&self, limit: usize, lease_ms: i64, now_ms: i64) -> StoreFuture<'_, Vec<ClaimedJob>> {
        Box::pin(self.write(move |reply| Write::Claim {
            limit,
            lease_ms,
            now_ms,
            reply,
        }))
    }

    fn next_due(&self) -> StoreFuture<'_, Option<i64>> {
        Box::pin(async move {
            self.ready().await?;
            sqlx::query_scalar(
                "SELECT MIN(t) FROM (
                    SELECT MIN(next_at_ms) AS t FROM hooksmith_jobs WHERE status = 'pending'
                    UNION ALL
                    SELECT MIN(next_at_ms) AS t FROM hooksmith_jobs WHERE status = 'retrying'
                    UNION ALL
                    SELECT MIN(lease_until_ms) AS t FROM hooksmith_jobs WHERE status = 'running')",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(error("reading the next due job"))
        })
    }

    fn finish(&self, job: i64, result: JobResult, _now_ms: i64) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |reply| Write::Finish(job, result, reply)))
    }

    fn replay(
        &self,
        delivery: i64,
        jobs: Vec<NewJob>,
        lease_ms: i64,
        now_ms: i64,
    ) -> StoreFuture<'_, Vec<i64>> {
        Box::pin(async move {
            self.ready().await?;
            let write = error("replaying a delivery");
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(&write)?;
            let mut ids = Vec::with_capacity(jobs.len());
            for job in &jobs {
                let existing: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM hooksmith_jobs WHERE delivery = ?1 AND handler = ?2",
                )
                .bind(delivery)
                .bind(&job.handler)
                .fetch_optional(&mut *tx)
                .await
                .map_err(&write)?;
                let id = match existing {
                    Some(id) => {
                        sqlx::query("UPDATE hooksmith_jobs SET status = 'running', attempts = 1, lease_until_ms = ?1 WHERE id = ?2")
                            .bind(now_ms.saturating_add(lease_ms))
                            .bind(id)
                            .execute(&mut *tx)
                            .await
                            .map_err(&write)?;
                        id
                    }
                    None => sqlx::query_scalar(
                        "INSERT INTO hooksmith_jobs (delivery, handler, status, attempts, max_attempts, next_at_ms, lease_until_ms)
                         VALUES (?1, ?2, 'running', 1, ?3, ?4, ?5) RETURNING id",
                    )
                    .bind(delivery)
                    .bind(&job.handler)
                    .bind(i64::from(job.max_attempts))
                    .bind(now_ms)
                    .bind(now_ms.saturating_add(lease_ms))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(&write)?,
                };
                ids.push(id);
            }
            let update = format!(
                "UPDATE hooksmith_deliveries SET status = ({}) WHERE id = ?1",
                sql::status_case("?1")
            );
            sqlx::query(sqlx::AssertSqlSafe(update))
                .bind(delivery)
                .execute(&mut *tx)
                .await
                .map_err(&write)?;
            tx.commit().await.map_err(&write)?;
            Ok(ids)
        })
    }

    fn purge(&self, policy: Retention) -> StoreFuture<'_, (u64, u64)> {
        Box::pin(async move {
            self.ready().await?;
            let write = error("purging history");
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(&write)?;
            // Finished deliveries older than the window, or beyond the newest `keep_at_most`.
            let doomed = "SELECT id FROM hooksmith_deliveries
                 WHERE status IN ('acknowledged', 'unhandled')
                   AND (received_at_ms < ?1 OR id < COALESCE((
                        SELECT id FROM hooksmith_deliveries WHERE status IN ('acknowledged', 'unhandled')
                        ORDER BY id DESC LIMIT 1 OFFSET ?2), 0))";
            let keep = policy.keep_at_most.map_or(i64::MAX, |n| {
                i64::try_from(n.max(1)).unwrap_or(i64::MAX) - 1
            });
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM hooksmith_jobs WHERE delivery IN ({doomed})"
            )))
            .bind(policy.history_before_ms)
            .bind(keep)
            .execute(&mut *tx)
            .await
            .map_err(&write)?;
            let deliveries = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM hooksmith_deliveries WHERE id IN ({doomed})"
            )))
            .bind(policy.history_before_ms)
            .bind(keep)
            .execute(&mut *tx)
            .await
            .map_err(&write)?
            .rows_affected();
            let mut keys = sqlx::query(
                "DELETE FROM hooksmith_delivery_keys WHERE seen_at_ms < ?1
                   AND NOT EXISTS (SELECT 1 FROM hooksmith_deliveries d WHERE d.id = hooksmith_delivery_keys.delivery)",
            )
            .bind(policy.keys_before_ms)
            .execute(&mut *tx)
            .await
            .map_err(&write)?
            .rows_affected();
            let legacy = self.legacy_keys.load(Ordering::Relaxed);
            if legacy {
                // Keys from before the upgrade belong to purged deliveries: only their age counts.
                keys += sqlx::query("DELETE FROM hooksmith_keys WHERE seen_at_ms < ?1")
                    .bind(policy.keys_before_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(&write)?
                    .rows_affected();
            }
            let emptied = legacy
                && !sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM hooksmith_keys)")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(&write)?;
            tx.commit().await.map_err(&write)?;
            if emptied {
                // None is ever added: the writer need not look there again.
                self.legacy_keys.store(false, Ordering::Relaxed);
            }
            Ok((deliveries, keys))
        })
    }

    fn release<'a>(&'a self, jobs: &'a [i64], now_ms: i64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.ready().await?;
            sqlx::query(
                "UPDATE hooksmith_jobs SET status = 'retrying', next_at_ms = ?1, lease_until_ms = 0
                 WHERE status = 'running' AND id IN (SELECT value FROM json_each(?2))",
            )
            .bind(now_ms)
            .bind(sql::ids_json(jobs.iter().copied()))
            .execute(&self.pool)
            .await
            .map_err(error("releasing jobs"))
            .map(drop)
        })
    }

    fn queue_depth(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            self.ready().await?;
            let depth: i64 = sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM hooksmith_jobs WHERE status = 'pending')
                      + (SELECT count(*) FROM hooksmith_jobs WHERE status = 'running')
                      + (SELECT count(*) FROM hooksmith_jobs WHERE status = 'retrying')",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(error("measuring the queue"))?;
            Ok(u64::try_from(depth).unwrap_or(0))
        })
    }

    fn put_connection(&self, connection: Connection) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.ready().await?;
            sqlx::query(
                "INSERT INTO hooksmith_connections (name, kind, secrets, signature_header, nonce_header)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, secrets = excluded.secrets,
                    signature_header = excluded.signature_header, nonce_header = excluded.nonce_header",
            )
            .bind(&connection.name)
            .bind(&connection.kind)
            .bind(serde_json::to_string(&connection.secrets).unwrap_or_else(|_| "[]".into()))
            .bind(&connection.signature_header)
            .bind(&connection.nonce_header)
            .execute(&self.pool)
            .await
            .map_err(error("storing a connection"))
            .map(drop)
        })
    }

    fn connection<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Connection>> {
        Box::pin(async move {
            self.ready().await?;
            let row = sqlx::query("SELECT * FROM hooksmith_connections WHERE name = ?1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(error("reading a connection"))?;
            row.as_ref().map(connection_row).transpose()
        })
    }

    fn connections(&self) -> StoreFuture<'_, Vec<Connection>> {
        Box::pin(async move {
            self.ready().await?;
            let rows = sqlx::query("SELECT * FROM hooksmith_connections ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(error("listing connections"))?;
            rows.iter().map(connection_row).collect()
        })
    }

    fn delete_connection<'a>(&'a self, name: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.ready().await?;
            let done = sqlx::query("DELETE FROM hooksmith_connections WHERE name = ?1")
                .bind(name)
                .execute(&self.pool)
                .await
                .map_err(error("deleting a connection"))?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn requeue_dead(&self, limit: usize, now_ms: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            self.ready().await?;
            let write = error("requeueing dead jobs");
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(&write)?;
            let deliveries: Vec<i64> = sqlx::query_scalar(
                "UPDATE hooksmith_jobs SET status = 'pending', attempts = 0, next_at_ms = ?1
                 WHERE id IN (SELECT id FROM hooksmith_jobs WHERE status = 'dead' ORDER BY id LIMIT ?2)
                 RETURNING delivery",
            )
            .bind(now_ms)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(&write)?;
            let update = format!(
                "UPDATE hooksmith_deliveries SET status = ({}) WHERE id IN (SELECT value FROM json_each(?2))",
                sql::status_case("hooksmith_deliveries.id")
            );
            sqlx::query(sqlx::AssertSqlSafe(update))
                .bind(0)
                .bind(sql::ids_json(deliveries.iter().copied()))
                .execute(&mut *tx)
                .await
                .map_err(&write)?;
            tx.commit().await.map_err(&write)?;
            Ok(deliveries.len() as u64)
        })
    }

    fn renew(&self, job: i64, lease_ms: i64, now_ms: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.ready().await?;
            sqlx::query("UPDATE hooksmith_jobs SET lease_until_ms = ?1 WHERE id = ?2 AND status = 'running'")
                .bind(now_ms.saturating_add(lease_ms))
                .bind(job)
                .execute(&self.pool)
                .await
                .map_err(error("renewing a lease"))
                .map(drop)
        })
    }

    fn list<'a>(&'a self, query: &'a DeliveryQuery) -> StoreFuture<'a, Vec<DeliverySummary>> {
        Box::pin(async move {
            self.ready().await?;
            let rows = sql::list_query(
                query,
                '?',
                "id IN (SELECT delivery FROM hooksmith_delivery_keys WHERE delivery_id = {})",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(error("listing deliveries"))?;
            let deliveries = rows
                .iter()
                .map(delivery_row)
                .collect::<Result<Vec<_>, _>>()?;
            let jobs = self
                .jobs_of(&deliveries.iter().map(|d| d.id).collect::<Vec<_>>())
                .await?;
            sql::assemble(deliveries, jobs)
        })
    }

    fn get(&self, id: i64) -> StoreFuture<'_, Option<(DeliverySummary, Arc<StoredDelivery>)>> {
        Box::pin(async move {
            self.ready().await?;
            let Some(row) = sqlx::query("SELECT * FROM hooksmith_deliveries WHERE id = ?1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(error("reading a delivery"))?
            else {
                return Ok(None);
            };
            let record = stored(&row)?;
            let summary = sql::assemble(vec![delivery_row(&row)?], self.jobs_of(&[id]).await?)?
                .pop()
                .ok_or_else(|| StoreError("delivery vanished".into()))?;
            Ok(Some((summary, Arc::new(record))))
        })
    }
}

/// What one write of a group came to.
enum Done {
    /// The delivery's id, and its jobs' ids unless it was a duplicate.
    Ingest(Result<(i64, Option<Vec<i64>>), StoreError>),
    Finish(Result<(), StoreError>),
    Claim(Result<Vec<ClaimedJob>, StoreError>),
}

/// The group committer: takes every write queued (up to [`MAX_GROUP`]), commits them in one
/// transaction, then answers each. A group that fails is committed again one write at a time.
async fn writer(
    pool: SqlitePool,
    mut writes: mpsc::UnboundedReceiver<Write>,
    legacy_keys: Arc<AtomicBool>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    // The writer keeps one connection; a connection that failed is replaced at the next group.
    let mut held: Option<sqlx::pool::PoolConnection<sqlx::Sqlite>> = None;
    while writes.recv_many(&mut group, MAX_GROUP).await > 0 {
        let batch: Vec<Write> = std::mem::take(&mut group);
        if batch.len() > 1 {
            match commit(&pool, &mut held, &batch, &legacy_keys).await {
                Ok(done) => {
                    answer(batch, done);
                    continue;
                }
                Err(error) => tracing::warn!(
                    target: "hooksmith::store",
                    %error,
                    writes = batch.len(),
                    "a group commit failed; committing its writes one at a time"
                ),
            }
        }
        for write in batch {
            match commit(&pool, &mut held, std::slice::from_ref(&write), &legacy_keys).await {
                Ok(done) => answer(vec![write], done),
                Err(error) => write.fail(error),
            }
        }
    }
}

fn answer(batch: Vec<Write>, done: Vec<Done>) {
    // A caller that went away (its request was cancelled) needs no answer.
    for (write, done) in batch.into_iter().zip(done) {
        match (write, done) {
            (Write::Ingest(new, reply), Done::Ingest(result)) => {
                let _ = reply.send(result.map(|(id, jobs)| match jobs {
                    Some(jobs) => new.stored(id, jobs),
                    None => Ingest::Duplicate { id },
                }));
            }
            (Write::Finish(_, _, reply), Done::Finish(result)) => {
                let _ = reply.send(result);
            }
            (Write::Claim { reply, .. }, Done::Claim(result)) => {
                let _ = reply.send(result);
            }
            (write, _) => write.fail(StoreError("internal: mismatched write".into())),
        }
    }
}

impl Write {
    /// Answers the caller with an error.
    fn fail(self, error: StoreError) {
        match self {
            Write::Ingest(_, reply) => drop(reply.send(Err(error))),
            Write::Finish(_, _, reply) => drop(reply.send(Err(error))),
            Write::Claim { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}

/// `(?, ?, ?), (?, ?, ?)` for `rows` rows of `columns` values.
fn placeholders(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

/// Commits a group of writes in one transaction; the result of each, in order.
async fn commit(
    pool: &SqlitePool,
    held: &mut Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>,
    batch: &[Write],
    legacy_keys: &AtomicBool,
) -> Result<Vec<Done>, StoreError> {
    let write = error("storing deliveries and results");
    let connection = match held {
        Some(connection) => connection,
        None => held.insert(pool.acquire().await.map_err(&write)?),
    };
    let committed = commit_on(connection, batch, legacy_keys.load(Ordering::Relaxed)).await;
    if committed.is_err() {
        *held = None;
    }
    committed
}

async fn commit_on(
    connection: &mut sqlx::SqliteConnection,
    batch: &[Write],
    legacy_keys: bool,
) -> Result<Vec<Done>, StoreError> {
    use sqlx::Connection as _;
    let write = error("storing deliveries and results");
    let mut tx = connection
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(&write)?;
    let ingests: Vec<&NewDelivery> = batch
        .iter()
        .filter_map(|w| match w {
            Write::Ingest(new, _) => Some(new),
            Write::Finish(..) | Write::Claim { .. } => None,
        })
        .collect();
    let mut ingested = Vec::with_capacity(ingests.len());
    if !ingests.is_empty() {
        // Keys already stored: those deliveries are duplicates.
        let keys = serde_json::to_string(
            &ingests
                .iter()
                .map(|n| (n.delivery_id.as_str(), n.key.as_str()))
                .collect::<Vec<_>>(),
        )
        .map_err(|e| StoreError(e.to_string()))?;
        let mut known: HashMap<String, i64> = sqlx::query(
            "SELECT k.idem_key, k.delivery FROM json_each(?1) AS j JOIN hooksmith_delivery_keys AS k
               ON k.delivery_id = json_extract(j.value, '$[0]') AND k.idem_key = json_extract(j.value, '$[1]')",
        )
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await
        .map_err(&write)?
        .iter()
        .map(|row| Ok((row.try_get("idem_key")?, row.try_get("delivery")?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(&write)?;
        if legacy_keys {
            let rows = sqlx::query(
                "SELECT idem_key, delivery FROM hooksmith_keys
                 WHERE idem_key IN (SELECT json_extract(value, '$[1]') FROM json_each(?1))",
            )
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await
            .map_err(&write)?;
            for row in &rows {
                known.insert(
                    row.try_get("idem_key").map_err(&write)?,
                    row.try_get("delivery").map_err(&write)?,
                );
            }
        }
        // The first of each new key is stored; a second in the same group is its duplicate.
        let mut seen = HashSet::new();
        let fresh: Vec<&NewDelivery> = ingests
            .iter()
            .copied()
            .filter(|n| !known.contains_key(&n.key) && seen.insert(n.key.as_str()))
            .collect();
        let mut ids: HashMap<String, i64> = HashMap::with_capacity(fresh.len());
        for chunk in fresh.chunks(MAX_ROWS) {
            let statement = format!(
                "INSERT INTO hooksmith_deliveries (idem_key, endpoint, connection, event, delivery_id, headers, body, received_at_ms, status)
                 VALUES {} RETURNING id, idem_key",
                placeholders(chunk.len(), 9)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
            for n in chunk {
                query = query
                    .bind(&n.key)
                    .bind(&n.endpoint)
                    .bind(&n.connection)
                    .bind(&n.event)
                    .bind(&n.delivery_id)
                    .bind(sql::encode_headers(&n.headers))
                    .bind(n.body.as_ref())
                    .bind(n.received_at_ms)
                    .bind(sql::initial_status(&n.jobs));
            }
            for row in query.fetch_all(&mut *tx).await.map_err(&write)? {
                ids.insert(
                    row.try_get("idem_key").map_err(&write)?,
                    row.try_get("id").map_err(&write)?,
                );
            }
        }
        for chunk in fresh.chunks(MAX_ROWS) {
            let statement = format!(
                "INSERT INTO hooksmith_delivery_keys (delivery_id, idem_key, delivery, seen_at_ms) VALUES {}",
                placeholders(chunk.len(), 4)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
            for n in chunk {
                query = query
                    .bind(&n.delivery_id)
                    .bind(&n.key)
                    .bind(ids.get(&n.key).copied())
                    .bind(n.received_at_ms);
            }
            query.execute(&mut *tx).await.map_err(&write)?;
        }
        let jobs: Vec<(i64, &NewDelivery, &NewJob)> = fresh
            .iter()
            .filter_map(|n| Some((*ids.get(&n.key)?, *n)))
            .flat_map(|(id, n)| n.jobs.iter().map(move |job| (id, n, job)))
            .collect();
        let mut job_ids: HashMap<(i64, String), i64> = HashMap::with_capacity(jobs.len());
        for chunk in jobs.chunks(MAX_ROWS) {
            let statement = format!(
                "INSERT INTO hooksmith_jobs (delivery, handler, status, attempts, max_attempts, next_at_ms, lease_until_ms, order_key)
                 VALUES {} RETURNING id, delivery, handler",
                placeholders(chunk.len(), 8)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
            for (delivery, n, job) in chunk {
                let (status, attempts, lease) = match job.claimed_for_ms {
                    Some(lease) => ("running", 1, n.received_at_ms.saturating_add(lease)),
                    None => ("pending", 0, 0),
                };
                query = query
                    .bind(*delivery)
                    .bind(&job.handler)
                    .bind(status)
                    .bind(attempts)
                    .bind(i64::from(job.max_attempts))
                    .bind(n.received_at_ms)
                    .bind(lease)
                    .bind(&job.order_key);
            }
            for row in query.fetch_all(&mut *tx).await.map_err(&write)? {
                job_ids.insert(
                    (
                        row.try_get("delivery").map_err(&write)?,
                        row.try_get("handler").map_err(&write)?,
                    ),
                    row.try_get("id").map_err(&write)?,
                );
            }
        }
        let mut stored = HashSet::new();
        for n in &ingests {
            let result = match (known.get(&n.key), ids.get(&n.key)) {
                (Some(&id), _) => Ok((id, None)),
                (None, Some(&id)) if stored.insert(id) => n
                    .jobs
                    .iter()
                    .map(|job| job_ids.get(&(id, job.handler.clone())).copied())
                    .collect::<Option<Vec<i64>>>()
                    .map(|jobs| (id, Some(jobs)))
                    .ok_or_else(|| StoreError("a stored job's id was not returned".into())),
                (None, Some(&id)) => Ok((id, None)),
                (None, None) => Err(StoreError("a stored delivery's id was not returned".into())),
            };
            ingested.push(result);
        }
    }

    // Handler results: successes in one statement, failures one by one.
    let succeeded: Vec<i64> = batch
        .iter()
        .filter_map(|w| match w {
            Write::Finish(job, JobResult::Succeeded, _) => Some(*job),
            _ => None,
        })
        .collect();
    let mut finished: HashMap<i64, i64> = HashMap::new();
    if !succeeded.is_empty() {
        let rows = sqlx::query(
            "UPDATE hooksmith_jobs SET status = 'succeeded', lease_until_ms = 0
             WHERE id IN (SELECT value FROM json_each(?1)) RETURNING id, delivery",
        )
        .bind(sql::ids_json(succeeded.iter().copied()))
        .fetch_all(&mut *tx)
        .await
        .map_err(&write)?;
        for row in rows {
            finished.insert(
                row.try_get("id").map_err(&write)?,
                row.try_get("delivery").map_err(&write)?,
            );
        }
    }
    for w in batch {
        let Write::Finish(job, JobResult::Failed { error, retry_at_ms }, _) = w else {
            continue;
        };
        let status = if retry_at_ms.is_some() {
            "retrying"
        } else {
            "dead"
        };
        let delivery: Option<i64> = sqlx::query_scalar(
            "UPDATE hooksmith_jobs SET status = ?1, last_error = ?2,
                next_at_ms = COALESCE(?3, next_at_ms), lease_until_ms = 0
             WHERE id = ?4 RETURNING delivery",
        )
        .bind(status)
        .bind(error)
        .bind(*retry_at_ms)
        .bind(*job)
        .fetch_optional(&mut *tx)
        .await
        .map_err(&write)?;
        if let Some(delivery) = delivery {
            finished.insert(*job, delivery);
        }
    }
    if !finished.is_empty() {
        let update = format!(
            "UPDATE hooksmith_deliveries SET status = ({})
             WHERE id IN (SELECT value FROM json_each(?1))",
            sql::status_case("hooksmith_deliveries.id")
        );
        sqlx::query(sqlx::AssertSqlSafe(update))
            .bind(sql::ids_json(finished.values().copied()))
            .execute(&mut *tx)
            .await
            .map_err(&write)?;
    }
    // Claims last, so they see the jobs this group stored and released.
    let mut claimed = Vec::new();
    for w in batch {
        if let Write::Claim {
            limit,
            lease_ms,
            now_ms,
            ..
        } = w
        {
            claimed.push(claim_in(&mut tx, *limit, *lease_ms, *now_ms).await?);
        }
    }
    tx.commit().await.map_err(&write)?;

    let mut ingested = ingested.into_iter();
    let mut claimed = claimed.into_iter();
    Ok(batch
        .iter()
        .map(|w| match w {
            Write::Ingest(..) => Done::Ingest(
                ingested
                    .next()
                    .unwrap_or_else(|| Err(StoreError("internal: missing result".into()))),
            ),
            Write::Finish(job, ..) => Done::Finish(if finished.contains_key(job) {
                Ok(())
            } else {
                Err(StoreError(format!("no job {job}")))
            }),
            Write::Claim { .. } => Done::Claim(Ok(claimed.next().unwrap_or_default())),
        })
        .collect())
}

/// Claims up to `limit` due jobs inside the group's transaction.
async fn claim_in(
    tx: &mut sqlx::SqliteConnection,
    limit: usize,
    lease_ms: i64,
    now_ms: i64,
) -> Result<Vec<ClaimedJob>, StoreError> {
    let write = error("claiming jobs");
    // Each kind of due job is read along its own index, in due order, stopping at `limit`:
    // the cost does not grow with the backlog.
    let free = "(order_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM hooksmith_jobs earlier
        WHERE earlier.order_key = j.order_key AND earlier.id < j.id
          AND earlier.status NOT IN ('succeeded', 'dead')))";
    let statement = format!(
        "UPDATE hooksmith_jobs SET status = 'running', attempts = attempts + 1, lease_until_ms = ?1 + ?2
         WHERE id IN (SELECT id FROM (
            SELECT * FROM (SELECT id, next_at_ms FROM hooksmith_jobs j
                WHERE status = 'pending' AND next_at_ms <= ?1 AND {free}
                ORDER BY next_at_ms, id LIMIT ?3)
            UNION ALL
            SELECT * FROM (SELECT id, next_at_ms FROM hooksmith_jobs j
                WHERE status = 'retrying' AND next_at_ms <= ?1 AND {free}
                ORDER BY next_at_ms, id LIMIT ?3)
            UNION ALL
            SELECT * FROM (SELECT id, next_at_ms FROM hooksmith_jobs j
                WHERE status = 'running' AND lease_until_ms <= ?1 AND {free}
                ORDER BY lease_until_ms, id LIMIT ?3))
            ORDER BY next_at_ms, id LIMIT ?3)
         RETURNING id, delivery, handler, attempts, max_attempts"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(now_ms)
        .bind(lease_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(&write)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut jobs = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.try_get("id").map_err(&write)?;
        let delivery: i64 = row.try_get("delivery").map_err(&write)?;
        let handler: String = row.try_get("handler").map_err(&write)?;
        let attempts: i64 = row.try_get("attempts").map_err(&write)?;
        let max_attempts: i64 = row.try_get("max_attempts").map_err(&write)?;
        jobs.push((id, delivery, handler, attempts, max_attempts));
    }
    let ids = sql::ids_json(jobs.iter().map(|j| j.1));
    sqlx::query(
        "UPDATE hooksmith_deliveries SET status = 'dispatched'
                 WHERE status = 'received' AND id IN (SELECT value FROM json_each(?1))",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await
    .map_err(&write)?;
    let records = sqlx::query(
        "SELECT * FROM hooksmith_deliveries WHERE id IN (SELECT value FROM json_each(?1))",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(&write)?;
    let records: Vec<Arc<StoredDelivery>> = records
        .iter()
        .map(stored)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(Arc::new)
        .collect();
    Ok(jobs
        .into_iter()
        .filter_map(|(id, delivery, handler, attempts, max_attempts)| {
            let record = records.iter().find(|r| r.id == delivery)?.clone();
            Some(ClaimedJob {
                id,
                delivery: record,
                handler,
                attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
                max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::SqliteStore;

    /// The writer's multi-row statements keep their statement journals in memory: on disk they
    /// cost a `pwrite` per page changed, about a third of all the store's writes.
    #[test]
    fn statement_journals_stay_in_memory() {
        let path = std::env::temp_dir().join(format!(
            "hooksmith-temp-store-{}-{:?}.db",
            std::process::id(),
            std::thread::current().id()
        ));
        let url = format!("sqlite:{}", path.display());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let temp_store: i64 = runtime.block_on(async {
            let store = SqliteStore::open(&url).expect("store");
            sqlx::query_scalar("PRAGMA temp_store")
                .fetch_one(&store.pool)
                .await
                .expect("pragma")
        });
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
        assert_eq!(temp_store, 2, "PRAGMA temp_store should be MEMORY (2)");
    }
}
