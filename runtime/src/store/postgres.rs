//! The shared store: one PostgreSQL database behind several app instances.
//!
//! De-duplication is a unique key; jobs are claimed with `FOR UPDATE SKIP LOCKED` under a lease
//! measured in the database's clock (never an instance's), so a crashed instance's jobs become
//! claimable by another when their lease ends. The schema is applied under an advisory lock, so
//! instances starting together apply it once.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};
use tokio::sync::OnceCell;

use super::Retention;
use super::sql::{self, JobRow, error};
use super::{
    ClaimedJob, Connection, DeliveryQuery, DeliverySummary, Ingest, JobResult, NewDelivery, NewJob,
    Store, StoreError, StoreFuture, StoreInfo, StoredDelivery,
};

/// The database's clock in milliseconds since the Unix epoch.
const DB_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS hooksmith_deliveries (
        id BIGSERIAL PRIMARY KEY,
        idem_key TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        connection TEXT,
        event TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        headers TEXT NOT NULL,
        body BYTEA NOT NULL,
        received_at_ms BIGINT NOT NULL,
        status TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS hooksmith_deliveries_endpoint ON hooksmith_deliveries (endpoint, id)",
    "CREATE INDEX IF NOT EXISTS hooksmith_deliveries_delivery_id ON hooksmith_deliveries (delivery_id)",
    "CREATE INDEX IF NOT EXISTS hooksmith_deliveries_status ON hooksmith_deliveries (status, id)",
    "CREATE TABLE IF NOT EXISTS hooksmith_keys (
        idem_key TEXT PRIMARY KEY,
        delivery BIGINT NOT NULL,
        seen_at_ms BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS hooksmith_jobs (
        id BIGSERIAL PRIMARY KEY,
        delivery BIGINT NOT NULL REFERENCES hooksmith_deliveries (id),
        handler TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        max_attempts INTEGER NOT NULL,
        last_error TEXT,
        next_at_ms BIGINT NOT NULL,
        lease_until_ms BIGINT NOT NULL,
        order_key TEXT)",
    "CREATE INDEX IF NOT EXISTS hooksmith_jobs_due ON hooksmith_jobs (status, next_at_ms)",
    "CREATE INDEX IF NOT EXISTS hooksmith_jobs_lease ON hooksmith_jobs (status, lease_until_ms)",
    "CREATE INDEX IF NOT EXISTS hooksmith_jobs_delivery ON hooksmith_jobs (delivery)",
    "CREATE INDEX IF NOT EXISTS hooksmith_jobs_order ON hooksmith_jobs (order_key, id)",
    "CREATE TABLE IF NOT EXISTS hooksmith_connections (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        secrets TEXT NOT NULL,
        signature_header TEXT,
        nonce_header TEXT)",
];

/// A [`Store`] in a PostgreSQL database.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    ready: OnceCell<()>,
}

impl PostgresStore {
    /// Connects to a `postgres://` URL lazily: the app starts while the database is down, and
    /// requests are answered 503 until it is reachable. `schema` puts hooksmith's tables in that
    /// schema (created if missing) instead of the connection's default.
    pub fn open(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError(format!("invalid PostgreSQL URL: {e}")))?;
        if let Some(schema) = schema {
            if !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(StoreError(format!(
                    "schema `{schema}`: letters, digits and `_` only"
                )));
            }
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            ready: OnceCell::new(),
        })
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.ready
            .get_or_try_init(|| async {
                let create = error("creating the schema");
                let mut tx = self
                    .pool
                    .begin()
                    .await
                    .map_err(error("connecting to PostgreSQL"))?;
                // Serialises instances that start together; released at commit.
                sqlx::query("SELECT pg_advisory_xact_lock(7261626)")
                    .execute(&mut *tx)
                    .await
                    .map_err(&create)?;
                let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(&create)?;
                if schema.is_none() {
                    // `search_path` names a schema that does not exist yet.
                    let wanted: String = sqlx::query_scalar("SHOW search_path")
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(&create)?;
                    let name = wanted
                        .split(',')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .trim_matches('"')
                        .to_owned();
                    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        || name.is_empty()
                    {
                        return Err(StoreError(format!("cannot create schema `{name}`")));
                    }
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "CREATE SCHEMA IF NOT EXISTS {name}"
                    )))
                    .execute(&mut *tx)
                    .await
                    .map_err(&create)?;
                }
                for statement in SCHEMA {
                    sqlx::query(*statement)
                        .execute(&mut *tx)
                        .await
                        .map_err(&create)?;
                }
                tx.commit().await.map_err(&create)?;
                Ok(())
            })
            .await
            .copied()
    }

    async fn jobs_of(&self, ids: &[i64]) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, delivery, handler, status, attempts::bigint AS attempts, last_error, next_at_ms
             FROM hooksmith_jobs WHERE delivery = ANY($1) ORDER BY id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(error("reading jobs"))?;
        rows.iter().map(job_row).collect()
    }
}

sql::row_readers!(PgRow);

impl Store for PostgresStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            kind: "postgres",
            durable: true,
        }
    }

    fn ingest(&self, new: NewDelivery) -> StoreFuture<'_, Ingest> {
        Box::pin(async move {
            self.ready().await?;
            let write = error("storing a delivery");
            let handlers: Vec<&str> = new.jobs.iter().map(|j| j.handler.as_str()).collect();
            let max_attempts: Vec<i32> = new
                .jobs
                .iter()
                .map(|j| i32::try_from(j.max_attempts).unwrap_or(i32::MAX))
                .collect();
            let leases: Vec<Option<i64>> = new.jobs.iter().map(|j| j.claimed_for_ms).collect();
            let order_keys: Vec<Option<&str>> =
                new.jobs.iter().map(|j| j.order_key.as_deref()).collect();
            // One statement, so one round trip and its own transaction: the key is claimed with
            // the delivery's id drawn beforehand, and the delivery and its jobs are inserted only
            // if the key was new. A key another transaction is inserting makes this one wait for
            // it, then insert nothing: a duplicate.
            let ingest = format!(
                "WITH drawn AS (SELECT nextval(pg_get_serial_sequence('hooksmith_deliveries', 'id')) AS id),
                 claimed AS (
                    INSERT INTO hooksmith_keys (idem_key, delivery, seen_at_ms)
                    SELECT $1, id, $8 FROM drawn
                    ON CONFLICT DO NOTHING RETURNING delivery),
                 stored AS (
                    INSERT INTO hooksmith_deliveries (id, idem_key, endpoint, connection, event, delivery_id, headers, body, received_at_ms, status)
                    SELECT delivery, $1, $2, $3, $4, $5, $6, $7, $8, $9 FROM claimed RETURNING id),
                 jobs AS (
                    INSERT INTO hooksmith_jobs (delivery, handler, status, attempts, max_attempts, next_at_ms, lease_until_ms, order_key)
                    SELECT stored.id, h, CASE WHEN l IS NULL THEN 'pending' ELSE 'running' END,
                           CASE WHEN l IS NULL THEN 0 ELSE 1 END, m, {DB_NOW}, COALESCE({DB_NOW} + l, 0), o
                    FROM stored, unnest($10::text[], $11::int[], $12::bigint[], $13::text[]) WITH ORDINALITY AS t(h, m, l, o, n)
                    ORDER BY n RETURNING id)
                 SELECT (SELECT id FROM stored) AS id, ARRAY(SELECT id FROM jobs ORDER BY id) AS jobs"
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(ingest))
                .bind(&new.key)
                .bind(&new.endpoint)
                .bind(&new.connection)
                .bind(&new.event)
                .bind(&new.delivery_id)
                .bind(sql::encode_headers(&new.headers))
                .bind(new.body.as_ref())
                .bind(new.received_at_ms)
                .bind(sql::initial_status(&new.jobs))
                .bind(&handlers)
                .bind(&max_attempts)
                .bind(&leases)
                .bind(&order_keys)
                .fetch_one(&self.pool)
                .await
                .map_err(&write)?;
            let id: Option<i64> = row.try_get("id").map_err(&write)?;
            let Some(id) = id else {
                // The key was there: committed before this statement, or by the transaction it
                // waited for.
                let id: i64 =
                    sqlx::query_scalar("SELECT delivery FROM hooksmith_keys WHERE idem_key = $1")
                        .bind(&new.key)
                        .fetch_one(&self.pool)
                        .await
                        .map_err(&write)?;
                return Ok(Ingest::Duplicate { id });
            };
            let jobs: Vec<i64> = row.try_get("jobs").map_err(&write)?;
            Ok(new.stored(id, jobs))
        })
    }

    fn claim(&self, limit: usize, lease_ms: i64, _now_ms: i64) -> StoreFuture<'_, Vec<ClaimedJob>> {
        Box::pin(async move {
            self.ready().await?;
            let write = error("claiming jobs");
            let mut tx = self.pool.begin().await.map_err(&write)?;
            let claim = format!(
                "UPDATE hooksmith_jobs SET status = 'running', attempts = attempts + 1, lease_until_ms = {DB_NOW} + $1
                 WHERE id IN (
                    SELECT id FROM hooksmith_jobs
                    WHERE ((status IN ('pending', 'retrying') AND next_at_ms <= {DB_NOW})
                       OR (status = 'running' AND lease_until_ms <= {DB_NOW}))
                    AND (order_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM hooksmith_jobs earlier
                        WHERE earlier.order_key = hooksmith_jobs.order_key AND earlier.id < hooksmith_jobs.id
                          AND earlier.status NOT IN ('succeeded', 'dead')))
                    ORDER BY next_at_ms, id LIMIT $2
                    FOR UPDATE SKIP LOCKED)
                 RETURNING id, delivery, handler, attempts::bigint AS attempts, max_attempts::bigint AS max_attempts"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(claim))
                .bind(lease_ms)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await
                .map_err(&write)?;
            if rows.is_empty() {
                tx.commit().await.map_err(&write)?;
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
            let ids: Vec<i64> = jobs.iter().map(|j| j.1).collect();
            sqlx::query("UPDATE hooksmith_deliveries SET status = 'dispatched' WHERE status = 'received' AND id = ANY($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await
                .map_err(&write)?;
            let records = sqlx::query("SELECT * FROM hooksmith_deliveries WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await
                .map_err(&write)?;
            tx.commit().await.map_err(&write)?;
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
        })
    }

    fn next_due(&self) -> StoreFuture<'_, Option<i64>> {
        Box::pin(async move {
            self.ready().await?;
            // In the database's clock; translated to "how long from now" for the caller's clock.
            let query = format!(
                "SELECT MIN(t) - {DB_NOW} FROM (
                    SELECT MIN(next_at_ms) AS t FROM hooksmith_jobs WHERE status IN ('pending', 'retrying')
                    UNION ALL
                    SELECT MIN(lease_until_ms) AS t FROM hooksmith_jobs WHERE status = 'running') AS due"
            );
            let wait: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(query))
                .fetch_one(&self.pool)
                .await
                .map_err(error("reading the next due job"))?;
            Ok(wait
                .map(|w| crate::clock::Clock::now_ms(&crate::clock::SystemClock).saturating_add(w)))
        })
    }

    fn finish(&self, job: i64, result: JobResult, now_ms: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.ready().await?;
            let write = error("recording a job's result");
            let (status, last_error, delay) = match result {
                JobResult::Succeeded => ("succeeded", None, None),
                JobResult::Failed {
                    error,
                    retry_at_ms: Some(at),
                } => (
                    "retrying",
                    Some(error),
                    Some(at.saturating_sub(now_ms).max(0)),
                ),
                JobResult::Failed {
                    error,
                    retry_at_ms: None,
                } => ("dead", Some(error), None),
            };
            let mut tx = self.pool.begin().await.map_err(&write)?;
            // The job's row, then its delivery's, locked until the commit: a result for another
            // job of the same delivery waits here, and the status below, computed by a statement
            // that starts once the lock is held, sees every result committed before. (Computed
            // under an `UPDATE` that waited for the row, it would see the jobs as they were when
            // that statement began: two results arriving together left a delivery whose handlers
            // had all succeeded `dispatched`, and never purged.) Jobs, then deliveries: the order
            // a claim locks them in.
            let update = format!(
                "WITH job AS (
                    UPDATE hooksmith_jobs SET status = $1, last_error = COALESCE($2, last_error),
                        next_at_ms = COALESCE({DB_NOW} + $3, next_at_ms), lease_until_ms = 0
                    WHERE id = $4 RETURNING delivery)
                 SELECT d.id FROM hooksmith_deliveries d JOIN job ON d.id = job.delivery FOR UPDATE OF d"
            );
            let delivery: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(update))
                .bind(status)
                .bind(last_error)
                .bind(delay)
                .bind(job)
                .fetch_optional(&mut *tx)
                .await
                .map_err(&write)?;
            let delivery = delivery.ok_or_else(|| StoreError(format!("no job {job}")))?;
            let update = format!(
                "UPDATE hooksmith_deliveries SET status = ({}) WHERE id = $1",
                sql::status_case("$1")
            );
            sqlx::query(sqlx::AssertSqlSafe(update))
                .bind(delivery)
                .execute(&mut *tx)
                .await
                .map_err(&write)?;
            tx.commit().await.map_err(&write)
        })
    }

    fn replay(
        &self,
        delivery: i64,
        jobs: Vec<NewJob>,
        lease_ms: i64,
        _now_ms: i64,
    ) -> StoreFuture<'_, Vec<i64>> {
        Box::pin(async move {
            self.ready().await?;
            let write = error("replaying a delivery");
            let mut tx = self.pool.begin().await.map_err(&write)?;
            // Serialises replays of one delivery.
            sqlx::query("SELECT id FROM hooksmith_deliveries WHERE id = $1 FOR UPDATE")
                .bind(delivery)
                .execute(&mut *tx)
                .await
                .map_err(&write)?;
            let mut ids = Vec::with_capacity(jobs.len());
            for job in &jobs {
                let existing: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM hooksmith_jobs WHERE delivery = $1 AND handler = $2",
                )
                .bind(delivery)
                .bind(&job.handler)
                .fetch_optional(&mut *tx)
                .await
                .map_err(&write)?;
                let id = match existing {
                    Some(id) => {
                        let update = format!(
                            "UPDATE hooksmith_jobs SET status = 'running', attempts = 1, lease_until_ms = {DB_NOW} + $1 WHERE id = $2"
                        );
                        sqlx::query(sqlx::AssertSqlSafe(update))
                            .bind(lease_ms)
                            .bind(id)
                            .execute(&mut *tx)
                            .await
                            .map_err(&write)?;
                        id
                    }
                    None => {
                        let insert = format!(
                            "INSERT INTO hooksmith_jobs (delivery, handler, status, attempts, max_attempts, next_at_ms, lease_until_ms)
                             VALUES ($1, $2, 'running', 1, $3, {DB_NOW}, {DB_NOW} + $4) RETURNING id"
                        );
                        sqlx::query_scalar(sqlx::AssertSqlSafe(insert))
                            .bind(delivery)
                            .bind(&job.handler)
                            .bind(i32::try_from(job.max_attempts).unwrap_or(i32::MAX))
                            .bind(lease_ms)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(&write)?
                    }
                };
                ids.push(id);
            }
            let update = format!(
                "UPDATE hooksmith_deliveries SET status = ({}) WHERE id = $1",
                sql::status_case("$1")
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
            let mut tx = self.pool.begin().await.map_err(&write)?;
            // Finished deliveries older than the window, or beyond the newest `keep_at_most`.
            let doomed = "SELECT id FROM hooksmith_deliveries
                 WHERE status IN ('acknowledged', 'unhandled')
                   AND (received_at_ms < $1 OR id < COALESCE((
                        SELECT id FROM hooksmith_deliveries WHERE status IN ('acknowledged', 'unhandled')
                        ORDER BY id DESC LIMIT 1 OFFSET $2), 0))";
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
            let keys = sqlx::query(
                "DELETE FROM hooksmith_keys WHERE seen_at_ms < $1
                   AND NOT EXISTS (SELECT 1 FROM hooksmith_deliveries d WHERE d.id = hooksmith_keys.delivery)",
            )
            .bind(policy.keys_before_ms)
            .execute(&mut *tx)
            .await
            .map_err(&write)?
            .rows_affected();
            tx.commit().await.map_err(&write)?;
            Ok((deliveries, keys))
        })
    }

    fn release<'a>(&'a self, jobs: &'a [i64], _now_ms: i64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.ready().await?;
            let release = format!(
                "UPDATE hooksmith_jobs SET status = 'retrying', next_at_ms = {DB_NOW}, lease_until_ms = 0
                 WHERE status = 'running' AND id = ANY($1)"
            );
            sqlx::query(sqlx::AssertSqlSafe(release))
                .bind(jobs)
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
                "SELECT count(*) FROM hooksmith_jobs WHERE status IN ('pending', 'running', 'retrying')",
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
                 VALUES ($1, $2, $3, $4, $5)
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
            let row = sqlx::query("SELECT * FROM hooksmith_connections WHERE name = $1")
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
            let done = sqlx::query("DELETE FROM hooksmith_connections WHERE name = $1")
                .bind(name)
                .execute(&self.pool)
                .await
                .map_err(error("deleting a connection"))?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn requeue_dead(&self, limit: usize, _now_ms: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            self.ready().await?;
            let write = error("requeueing dead jobs");
            let mut tx = self.pool.begin().await.map_err(&write)?;
            let requeue = format!(
                "UPDATE hooksmith_jobs SET status = 'pending', attempts = 0, next_at_ms = {DB_NOW}
                 WHERE id IN (SELECT id FROM hooksmith_jobs WHERE status = 'dead' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
                 RETURNING delivery"
            );
            let deliveries: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(requeue))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await
                .map_err(&write)?;
            let update = format!(
                "UPDATE hooksmith_deliveries SET status = ({}) WHERE id = ANY($1)",
                sql::status_case("hooksmith_deliveries.id")
            );
            sqlx::query(sqlx::AssertSqlSafe(update))
                .bind(&deliveries)
                .execute(&mut *tx)
                .await
                .map_err(&write)?;
            tx.commit().await.map_err(&write)?;
            Ok(deliveries.len() as u64)
        })
    }

    fn renew(&self, job: i64, lease_ms: i64, _now_ms: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.ready().await?;
            let renew = format!(
                "UPDATE hooksmith_jobs SET lease_until_ms = {DB_NOW} + $1 WHERE id = $2 AND status = 'running'"
            );
            sqlx::query(sqlx::AssertSqlSafe(renew))
                .bind(lease_ms)
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
            let rows = sql::list_query(query, '$', "delivery_id = {}")
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
            let Some(row) = sqlx::query("SELECT * FROM hooksmith_deliveries WHERE id = $1")
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
