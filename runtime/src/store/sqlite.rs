//! The embedded durable store: one SQLite file in WAL mode.
//!
//! Durability: with `synchronous=FULL` (the default), a committed delivery survives a crash of
//! the process *and* of the machine (power loss): the WAL is fsynced at every commit, and the 2xx
//! is sent only after the commit. `sqlite:PATH?synchronous=normal` trades that for speed: a commit
//! then survives a crash of the process but the last transactions may be lost on power loss —
//! hooksmith would have answered 2xx for them, so that mode breaks the "2xx means stored" promise
//! across machine crashes and is opt-in.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::OptionalExtension as _;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
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
/// through one writer thread that commits them in groups: every write that arrived while the previous commit
/// was being synced joins the next transaction, so one sync serves many deliveries, and each
/// caller is answered only after the commit that holds its write. Should a group fail, each of
/// its writes is retried alone, so one bad write cannot fail the others.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The database file, which the group committer opens too.
    path: PathBuf,
    ready: OnceCell<mpsc::UnboundedSender<Write>>,
    synchronous_full: bool,
    /// Whether keys from before `hooksmith_delivery_keys` remain in `hooksmith_keys`, to be
    /// checked too (see `upgrade_keys`).
    legacy_keys: Arc<AtomicBool>,
}

/// The most writes one group commit takes.
const MAX_GROUP: usize = 256;

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
            // A page cache, a memory map and in-memory statement journals, as the group
            // committer's connection has (`writer_connection`), for the writes that do not go
            // through it (replay, purge) and the admin API's reads.
            .pragma("cache_size", "-16384")
            .pragma("mmap_size", "268435456")
            .pragma("temp_store", "memory");
        // The group committer opens the same file with a connection of its own: an in-memory
        // database would be a different one for each connection.
        let path = options.get_filename().to_path_buf();
        if base.contains(":memory:") {
            return Err(StoreError(
                "the SQLite store needs a file (`sqlite:PATH`); for a store in memory, use `memory`"
                    .into(),
            ));
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            path,
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
                let (opened, open) = oneshot::channel();
                let (path, full) = (self.path.clone(), self.synchronous_full);
                let legacy_keys = self.legacy_keys.clone();
                // A group's answers are handed back in one message and sent from the runtime: a
                // wake-up of the runtime's thread per answer, from the writer's, would switch
                // between the two threads once per delivery.
                let (answers, mut answered) = mpsc::unbounded_channel::<(Vec<Write>, Vec<Done>)>();
                tokio::spawn(async move {
                    while let Some((batch, done)) = answered.recv().await {
                        answer(batch, done);
                    }
                });
                std::thread::Builder::new()
                    .name("hooksmith-sqlite-writer".into())
                    .spawn(move || match writer_connection(&path, full) {
                        Ok(connection) => {
                            let _ = opened.send(Ok(()));
                            writer(connection, writes, &answers, &legacy_keys);
                        }
                        Err(e) => drop(
                            opened
                                .send(Err(error::<rusqlite::Error>("opening the SQLite store")(e))),
                        ),
                    })
                    .map_err(|e| StoreError(format!("starting the SQLite writer: {e}")))?;
                open.await
                    .map_err(|_| StoreError("the SQLite writer has stopped".into()))??;
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

/// The group committer, on a thread of its own with a connection of its own: takes every write
/// queued (up to [`MAX_GROUP`]), commits them in one transaction, then answers each. A group that
/// fails is committed again one write at a time.
///
/// The whole group runs on this thread, statement after statement: through sqlx's SQLite
/// driver, each statement of a group was a round trip to the connection's worker thread and back.
fn writer(
    mut connection: rusqlite::Connection,
    mut writes: mpsc::UnboundedReceiver<Write>,
    answers: &mpsc::UnboundedSender<(Vec<Write>, Vec<Done>)>,
    legacy_keys: &AtomicBool,
) {
    // Ends when the store, the queue's only sender, is dropped.
    while let Some(first) = writes.blocking_recv() {
        let mut batch = Vec::with_capacity(MAX_GROUP.min(writes.len() + 1));
        batch.push(first);
        while batch.len() < MAX_GROUP {
            match writes.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let legacy = legacy_keys.load(Ordering::Relaxed);
        if batch.len() > 1 {
            match commit(&mut connection, &batch, legacy) {
                Ok(done) => {
                    // Should the runtime that started the store be gone, the callers are
                    // answered from here.
                    if let Err(mpsc::error::SendError((batch, done))) = answers.send((batch, done))
                    {
                        answer(batch, done);
                    }
                    checkpoint_if_due(&connection);
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
            match commit(&mut connection, std::slice::from_ref(&write), legacy) {
                Ok(done) => answer(vec![write], done),
                Err(error) => write.fail(error),
            }
        }
        checkpoint_if_due(&connection);
    }
}

/// WAL frames past which the writer copies them back into the database: SQLite's own default.
const CHECKPOINT_FRAMES: i32 = 1000;

thread_local! {
    /// The frames in the writer connection's WAL after its last commit.
    static WAL_FRAMES: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

/// Copies the WAL back into the database once it holds [`CHECKPOINT_FRAMES`], after the group's
/// answers are sent: SQLite's automatic checkpoint (which the writer's WAL hook replaces) runs
/// inside the commit, so the group that crossed the mark waited for it.
fn checkpoint_if_due(connection: &rusqlite::Connection) {
    if WAL_FRAMES.get() < CHECKPOINT_FRAMES {
        return;
    }
    WAL_FRAMES.set(0);
    if let Err(error) = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!(target: "hooksmith::store", %error, "a checkpoint failed");
    }
}

/// Opens the group committer's connection to the file the pool uses, with the same settings.
fn writer_connection(
    path: &Path,
    synchronous_full: bool,
) -> rusqlite::Result<rusqlite::Connection> {
    let connection = rusqlite::Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
    connection.pragma_update(
        None,
        "synchronous",
        if synchronous_full { "FULL" } else { "NORMAL" },
    )?;
    connection.pragma_update(None, "foreign_keys", true)?;
    // Pages are read through a memory map, not a `read` call per page, and the cache holds
    // about a checkpoint's worth of WAL frames (4 MiB): the pages the group commits write and read
    // back before the checkpoint. A larger cache cost more than it saved: at every commit SQLite
    // walks the cache's whole hash table to drop pages past the end of the file (2% of the
    // store's time with 16 MiB).
    connection.pragma_update(None, "cache_size", -4_096)?;
    connection
        .pragma_update_and_check(None, "mmap_size", 268_435_456, |row| row.get::<_, i64>(0))?;
    // A statement that could fail halfway keeps the pages it changes in a statement journal, to
    // undo itself alone: in memory, not in a temporary file (a `pwrite` per page once it passes
    // 64 KiB).
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    connection.set_prepared_statement_cache_capacity(32);
    connection.wal_hook(Some(|_, frames| {
        WAL_FRAMES.set(frames);
        Ok(())
    }));
    Ok(connection)
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

/// Commits a group of writes in one transaction; the result of each, in order.
fn commit(
    connection: &mut rusqlite::Connection,
    batch: &[Write],
    legacy_keys: bool,
) -> Result<Vec<Done>, StoreError> {
    let write = error::<rusqlite::Error>("storing deliveries and results");
    // Rolled back when dropped, should any statement fail.
    let tx = connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(&write)?;
    let mut done = Vec::with_capacity(batch.len());
    // The deliveries this group stored, by key: a second of a key in the same group is its
    // duplicate.
    let mut stored: HashMap<&str, i64> = HashMap::new();
    for w in batch {
        if let Write::Ingest(new, _) = w {
            let result = match stored.get(new.key.as_str()) {
                Some(&id) => (id, None),
                None => {
                    let (id, jobs) = ingest(&tx, new, legacy_keys).map_err(&write)?;
                    if jobs.is_some() {
                        stored.insert(&new.key, id);
                    }
                    (id, jobs)
                }
            };
            done.push(Done::Ingest(Ok(result)));
        } else {
            // Results and claims are filled in below, in the same order.
            done.push(Done::Finish(Ok(())));
        }
    }

    // Handler results, and the status of the deliveries they finish.
    let mut finished = HashSet::new();
    for (w, done) in batch.iter().zip(&mut done) {
        let Write::Finish(job, result, _) = w else {
            continue;
        };
        let delivery: Option<i64> = match result {
            JobResult::Succeeded => tx
                .prepare_cached(
                    "UPDATE hooksmith_jobs SET status = 'succeeded', lease_until_ms = 0
                     WHERE id = ?1 RETURNING delivery",
                )
                .and_then(|mut update| update.query_row([job], |row| row.get(0)).optional()),
            JobResult::Failed { error, retry_at_ms } => tx
                .prepare_cached(
                    "UPDATE hooksmith_jobs SET status = ?1, last_error = ?2,
                        next_at_ms = COALESCE(?3, next_at_ms), lease_until_ms = 0
                     WHERE id = ?4 RETURNING delivery",
                )
                .and_then(|mut update| {
                    let status = if retry_at_ms.is_some() {
                        "retrying"
                    } else {
                        "dead"
                    };
                    update
                        .query_row(rusqlite::params![status, error, retry_at_ms, job], |row| {
                            row.get(0)
                        })
                        .optional()
                }),
        }
        .map_err(&write)?;
        *done = Done::Finish(match delivery {
            Some(delivery) => {
                finished.insert(delivery);
                Ok(())
            }
            None => Err(StoreError(format!("no job {job}"))),
        });
    }
    if !finished.is_empty() {
        let mut update = tx
            .prepare_cached(&format!(
                "UPDATE hooksmith_deliveries SET status = ({}) WHERE id = ?1",
                sql::status_case("?1")
            ))
            .map_err(&write)?;
        for delivery in finished {
            update.execute([delivery]).map_err(&write)?;
        }
    }

    // Claims last, so they see the jobs this group stored and released.
    for (w, done) in batch.iter().zip(&mut done) {
        if let Write::Claim {
            limit,
            lease_ms,
            now_ms,
            ..
        } = w
        {
            *done = Done::Claim(Ok(claim_in(&tx, *limit, *lease_ms, *now_ms)?));
        }
    }
    tx.commit().map_err(&write)?;
    Ok(done)
}

/// Stores one delivery with its key and jobs, unless its key is known: its id, and its jobs' ids
/// (`None` for a duplicate).
fn ingest(
    tx: &rusqlite::Transaction<'_>,
    new: &NewDelivery,
    legacy_keys: bool,
) -> rusqlite::Result<(i64, Option<Vec<i64>>)> {
    let known: Option<i64> = tx
        .prepare_cached(
            "SELECT delivery FROM hooksmith_delivery_keys WHERE delivery_id = ?1 AND idem_key = ?2",
        )?
        .query_row([&new.delivery_id, &new.key], |row| row.get(0))
        .optional()?;
    let known = match known {
        None if legacy_keys => tx
            .prepare_cached("SELECT delivery FROM hooksmith_keys WHERE idem_key = ?1")?
            .query_row([&new.key], |row| row.get(0))
            .optional()?,
        known => known,
    };
    if let Some(id) = known {
        return Ok((id, None));
    }
    tx.prepare_cached(
        "INSERT INTO hooksmith_deliveries (idem_key, endpoint, connection, event, delivery_id, headers, body, received_at_ms, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(rusqlite::params![
        new.key,
        new.endpoint,
        new.connection,
        new.event,
        new.delivery_id,
        sql::encode_headers(&new.headers),
        new.body.as_ref(),
        new.received_at_ms,
        sql::initial_status(&new.jobs),
    ])?;
    let id = tx.last_insert_rowid();
    tx.prepare_cached(
        "INSERT INTO hooksmith_delivery_keys (delivery_id, idem_key, delivery, seen_at_ms)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(rusqlite::params![
        new.delivery_id,
        new.key,
        id,
        new.received_at_ms
    ])?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO hooksmith_jobs (delivery, handler, status, attempts, max_attempts, next_at_ms, lease_until_ms, order_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut jobs = Vec::with_capacity(new.jobs.len());
    for job in &new.jobs {
        let (status, attempts, lease) = match job.claimed_for_ms {
            Some(lease) => ("running", 1, new.received_at_ms.saturating_add(lease)),
            None => ("pending", 0, 0),
        };
        insert.execute(rusqlite::params![
            id,
            job.handler,
            status,
            attempts,
            job.max_attempts,
            new.received_at_ms,
            lease,
            job.order_key,
        ])?;
        jobs.push(tx.last_insert_rowid());
    }
    Ok((id, Some(jobs)))
}

/// Claims up to `limit` due jobs inside the group's transaction.
fn claim_in(
    tx: &rusqlite::Transaction<'_>,
    limit: usize,
    lease_ms: i64,
    now_ms: i64,
) -> Result<Vec<ClaimedJob>, StoreError> {
    let write = error::<rusqlite::Error>("claiming jobs");
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
    let jobs = tx
        .prepare_cached(&statement)
        .and_then(|mut claim| {
            claim
                .query_map(
                    rusqlite::params![now_ms, lease_ms, i64::try_from(limit).unwrap_or(i64::MAX)],
                    |row| {
                        Ok((
                            row.get::<_, i64>("id")?,
                            row.get::<_, i64>("delivery")?,
                            row.get::<_, String>("handler")?,
                            row.get::<_, i64>("attempts")?,
                            row.get::<_, i64>("max_attempts")?,
                        ))
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(&write)?;
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let ids = sql::ids_json(jobs.iter().map(|j| j.1));
    tx.prepare_cached(
        "UPDATE hooksmith_deliveries SET status = 'dispatched'
         WHERE status = 'received' AND id IN (SELECT value FROM json_each(?1))",
    )
    .and_then(|mut update| update.execute([&ids]))
    .map_err(&write)?;
    let records: Vec<Arc<StoredDelivery>> = tx
        .prepare_cached(
            "SELECT * FROM hooksmith_deliveries WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .and_then(|mut select| {
            select
                .query_map([&ids], |row| stored_row(row).map(Arc::new))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(&write)?;
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

/// A delivery row read by the group committer.
fn stored_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredDelivery> {
    Ok(StoredDelivery {
        id: row.get("id")?,
        key: row.get("idem_key")?,
        endpoint: row.get("endpoint")?,
        connection: row.get("connection")?,
        event: row.get("event")?,
        delivery_id: row.get("delivery_id")?,
        headers: sql::decode_headers(&row.get::<_, String>("headers")?),
        body: bytes::Bytes::from(row.get::<_, Vec<u8>>("body")?),
        received_at_ms: row.get("received_at_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::{SqliteStore, writer_connection};

    fn scratch(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "hooksmith-{name}-{}-{:?}.db",
            std::process::id(),
            std::thread::current().id()
        ))
    }

    fn remove(path: &std::path::Path) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.to_path_buf().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }

    /// The group committer's connection is as durable as the store promises (WAL, a sync at every
    /// commit unless `synchronous=normal` was asked for), checks foreign keys, and keeps statement
    /// journals in memory: on disk they cost a `pwrite` per page changed.
    #[test]
    fn the_writers_connection_is_durable_and_journals_in_memory() {
        let path = scratch("writer-connection");
        let pragma = |connection: &rusqlite::Connection, name: &str| -> String {
            connection
                .query_row(&format!("PRAGMA {name}"), [], |row| {
                    row.get::<_, rusqlite::types::Value>(0)
                })
                .map(|value| match value {
                    rusqlite::types::Value::Integer(n) => n.to_string(),
                    rusqlite::types::Value::Text(text) => text,
                    other => format!("{other:?}"),
                })
                .expect("pragma")
        };
        let full = writer_connection(&path, true).expect("connection");
        let settings: Vec<String> = ["journal_mode", "synchronous", "foreign_keys", "temp_store"]
            .iter()
            .map(|name| pragma(&full, name))
            .collect();
        let normal = writer_connection(&path, false).expect("connection");
        let relaxed = pragma(&normal, "synchronous");
        drop((full, normal));
        remove(&path);
        // synchronous: FULL is 2, NORMAL 1; temp_store: MEMORY is 2.
        assert_eq!(settings, ["wal", "2", "1", "2"]);
        assert_eq!(relaxed, "1");
    }

    /// The pool's connections keep statement journals in memory too.
    #[test]
    fn statement_journals_stay_in_memory() {
        let path = scratch("temp-store");
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
        remove(&path);
        assert_eq!(temp_store, 2, "PRAGMA temp_store should be MEMORY (2)");
    }

    /// An in-memory database would be a different one for the group committer's connection: the
    /// store says to use a file, or the memory store.
    #[test]
    fn an_in_memory_database_is_refused_with_the_way_out() {
        let error = SqliteStore::open("sqlite::memory:").expect_err("refused");
        assert!(
            error.0.contains("sqlite:PATH") && error.0.contains("`memory`"),
            "{error}"
        );
    }
}
