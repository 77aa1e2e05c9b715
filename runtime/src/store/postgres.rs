//! The shared store: one PostgreSQL database behind several app instances.
//!
//! De-duplication is a unique key; jobs are claimed with `FOR UPDATE SKIP LOCKED` under a lease
//! measured in the database's clock (never an instance's), so a crashed instance's jobs become
//! claimable by another when their lease ends. The schema is applied under an advisory lock, so
//! instances starting together apply it once. Deliveries and handler results are committed in
//! groups (see [`dispatch`]): one statement stores many deliveries, one function call records
//! many results.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};
use tokio::sync::{OnceCell, Semaphore, mpsc, oneshot};

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

/// `hooksmith_finish(jobs, statuses, errors, delays_ms)`: records handlers' results (arrays,
/// one element per job) and their deliveries' new status; the jobs found, one row each.
///
/// The jobs' rows, then their deliveries', are locked until the transaction ends (deliveries in
/// id order): a result for another job of the same delivery waits, and the status, computed by a
/// statement that starts once the locks are held (each statement of a PL/pgSQL function takes
/// its own snapshot), sees every result committed before. (Computed under an `UPDATE` that
/// waited for the row, it would see the jobs as they were when that statement began: two results
/// arriving together left a delivery whose handlers had all succeeded `dispatched`, and never
/// purged.) Jobs, then deliveries: the order a claim locks them in. A function, so that this is
/// one round trip.
fn finish_function() -> String {
    format!(
        "CREATE OR REPLACE FUNCTION hooksmith_finish(
            p_jobs BIGINT[], p_statuses TEXT[], p_errors TEXT[], p_delays BIGINT[])
         RETURNS SETOF BIGINT LANGUAGE plpgsql AS $finish$
         DECLARE v_jobs BIGINT[]; v_deliveries BIGINT[];
         BEGIN
            WITH done AS (
                UPDATE hooksmith_jobs j SET status = r.status, last_error = COALESCE(r.error, j.last_error),
                    next_at_ms = COALESCE({DB_NOW} + r.delay, j.next_at_ms), lease_until_ms = 0
                FROM unnest(p_jobs, p_statuses, p_errors, p_delays) AS r(id, status, error, delay)
                WHERE j.id = r.id RETURNING j.id, j.delivery)
            SELECT array_agg(done.id), array_agg(DISTINCT done.delivery) INTO v_jobs, v_deliveries FROM done;
            PERFORM 1 FROM hooksmith_deliveries WHERE id = ANY(v_deliveries) ORDER BY id FOR UPDATE;
            UPDATE hooksmith_deliveries d SET status = ({}) WHERE d.id = ANY(v_deliveries);
            RETURN QUERY SELECT unnest(v_jobs);
         END $finish$",
        sql::status_case("d.id")
    )
}

/// A [`Store`] in a PostgreSQL database.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    ready: OnceCell<()>,
    /// The queue of the group committer (see [`dispatch`]), started by the first write and
    /// again should the runtime that ran it be gone.
    writes: Mutex<Option<mpsc::UnboundedSender<Write>>>,
}

/// The pool's connections.
const CONNECTIONS: u32 = 16;

/// The most writes one group statement takes, and the body bytes past which a group takes no
/// more deliveries.
const MAX_GROUP: usize = 128;
const MAX_GROUP_BYTES: usize = 8 << 20;

/// Groups being committed at once: while one statement waits for PostgreSQL to flush its log,
/// the next group gathers the writes that arrive. More groups in flight make smaller groups:
/// with the database on the same two cores, 1 and 2 served 3,800–4,500 deliveries a second,
/// 4 about 3,400 and 8 about 2,900.
const GROUPS: usize = 2;

/// A write waiting for the next group statement, with where to send its result.
#[derive(Debug)]
enum Write {
    Ingest(NewDelivery, oneshot::Sender<Result<Ingest, StoreError>>),
    Finish(Finished, oneshot::Sender<Result<(), StoreError>>),
}

/// A handler's result, as `hooksmith_finish` takes it.
#[derive(Debug, Clone)]
struct Finished {
    job: i64,
    status: &'static str,
    error: Option<String>,
    /// For a retry: milliseconds from now, in the database's clock.
    delay: Option<i64>,
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
            .max_connections(CONNECTIONS)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            ready: OnceCell::new(),
            writes: Mutex::new(None),
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
                sqlx::query(sqlx::AssertSqlSafe(finish_function()))
                    .execute(&mut *tx)
                    .await
                    .map_err(&create)?;
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

    /// Hands a write to the group committer and waits for its result.
    async fn write<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> Result<T, StoreError> {
        self.ready().await?;
        let (reply, result) = oneshot::channel();
        let mut write = make(reply);
        loop {
            let queue = {
                let mut writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
                match &*writes {
                    Some(queue) if !queue.is_closed() => queue.clone(),
                    _ => {
                        let (queue, receiver) = mpsc::unbounded_channel();
                        tokio::spawn(dispatch(self.pool.clone(), receiver));
                        writes.insert(queue).clone()
                    }
                }
            };
            // Closed only if the runtime that ran the committer has shut down since: start
            // another on this one.
            match queue.send(write) {
                Ok(()) => break,
                Err(mpsc::error::SendError(back)) => write = back,
            }
        }
        result
            .await
            .map_err(|_| StoreError("the PostgreSQL group committer stopped".into()))?
    }
}

/// Gathers writes into groups, each committed by one statement per kind on a connection of the
/// pool, [`GROUPS`] at a time: one statement and one log flush serve a group of deliveries, and
/// each caller is answered once the statement holding its write has committed.
async fn dispatch(pool: PgPool, mut writes: mpsc::UnboundedReceiver<Write>) {
    let slots = Arc::new(Semaphore::new(GROUPS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // `None`: the store is gone.
        let Some(first) = writes.recv().await else {
            return;
        };
        let mut group = Vec::with_capacity(MAX_GROUP.min(writes.len() + 1));
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(write) = next {
            if let Write::Ingest(new, _) = &write {
                bytes += new.body.len();
            }
            group.push(write);
            next = if group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
                writes.try_recv().ok()
            } else {
                None
            };
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            commit(&pool, group).await;
            drop(slot);
        });
    }
}

/// Commits a group: its deliveries in one statement, its results in another (both at once).
/// Should the database refuse a statement, each of its writes is committed alone (all at once),
/// so one bad write cannot fail the others. A connection that broke since the pool last used it
/// (the database restarted, or the runtime that opened it is gone) fails its statement and is
/// dropped: results are recorded again on the next, up to as many times as the pool has
/// connections. Otherwise every write of the group fails with the error at once, rather than
/// each waiting in turn for a connection.
async fn commit(pool: &PgPool, group: Vec<Write>) {
    let mut ingests = Vec::new();
    let mut finishes = Vec::new();
    for write in group {
        match write {
            Write::Ingest(new, reply) => ingests.push((new, reply)),
            Write::Finish(finished, reply) => finishes.push((finished, reply)),
        }
    }
    let ingested = async {
        if ingests.is_empty() {
            return;
        }
        let news: Vec<&NewDelivery> = ingests.iter().map(|(new, _)| new).collect();
        // Not tried again on a broken connection: the statement may have committed before the
        // connection broke, and would then find its own keys. The providers send again, and
        // are answered as for a duplicate.
        match ingest_group(pool, &news).await {
            Ok(results) => {
                for ((new, reply), result) in ingests.into_iter().zip(results) {
                    let _ = reply.send(Ok(result.into_ingest(new)));
                }
            }
            Err(failed) if ingests.len() == 1 || failed.kind != Failure::Refused => {
                for (_, reply) in ingests {
                    let _ = reply.send(Err(StoreError(failed.error.0.clone())));
                }
            }
            Err(failed) => {
                tracing::warn!(target: "hooksmith::store", error = %failed.error, writes = ingests.len(),
                    "a group of deliveries was refused; storing them one at a time");
                let mut alone = tokio::task::JoinSet::new();
                for (new, reply) in ingests {
                    let pool = pool.clone();
                    alone.spawn(async move {
                        let result = ingest_group(&pool, &[&new])
                            .await
                            .map(|mut results| results.remove(0).into_ingest(new))
                            .map_err(|failed| failed.error);
                        let _ = reply.send(result);
                    });
                }
                while alone.join_next().await.is_some() {}
            }
        }
    };
    let finished = async {
        if finishes.is_empty() {
            return;
        }
        let results: Vec<&Finished> = finishes.iter().map(|(finished, _)| finished).collect();
        // A result recorded twice is recorded once: on a broken connection, tried again.
        let mut outcome = finish_group(pool, &results).await;
        for _ in 0..CONNECTIONS {
            if !matches!(&outcome, Err(failed) if failed.kind == Failure::Broken) {
                break;
            }
            outcome = finish_group(pool, &results).await;
        }
        match outcome {
            Ok(found) => {
                for (finished, reply) in finishes {
                    let _ = reply.send(found_or_error(&found, &finished));
                }
            }
            Err(failed) if finishes.len() == 1 || failed.kind != Failure::Refused => {
                for (_, reply) in finishes {
                    let _ = reply.send(Err(StoreError(failed.error.0.clone())));
                }
            }
            Err(failed) => {
                tracing::warn!(target: "hooksmith::store", error = %failed.error, writes = finishes.len(),
                    "a group of results was refused; recording them one at a time");
                let mut alone = tokio::task::JoinSet::new();
                for (finished, reply) in finishes {
                    let pool = pool.clone();
                    alone.spawn(async move {
                        let result = match finish_group(&pool, &[&finished]).await {
                            Ok(found) => found_or_error(&found, &finished),
                            Err(failed) => Err(failed.error),
                        };
                        let _ = reply.send(result);
                    });
                }
                while alone.join_next().await.is_some() {}
            }
        }
    };
    tokio::join!(ingested, finished);
}

/// A group's statement that failed, and why.
struct Failed {
    error: StoreError,
    kind: Failure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The database refused the statement (a constraint, a trigger, a value it cannot take): one
    /// write of the group may be to blame, so each is tried alone.
    Refused,
    /// The connection failed (the pool drops it): the statement may succeed on another, or
    /// may have committed before the connection broke.
    Broken,
    /// No connection could be had (the writes alone would not get one either), or the answer
    /// made no sense.
    Unreachable,
}

/// [`error`] for a group's statements.
fn failed(what: &'static str) -> impl Fn(sqlx::Error) -> Failed {
    move |error| Failed {
        kind: match error {
            sqlx::Error::Database(_) => Failure::Refused,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => Failure::Unreachable,
            _ => Failure::Broken,
        },
        error: StoreError(format!("{what}: {error}")),
    }
}

fn found_or_error(found: &[i64], finished: &Finished) -> Result<(), StoreError> {
    if found.contains(&finished.job) {
        Ok(())
    } else {
        Err(StoreError(format!("no job {}", finished.job)))
    }
}

/// What one delivery of a group became.
enum Grouped {
    Stored { id: i64, jobs: Vec<i64> },
    Duplicate { id: i64 },
}

impl Grouped {
    fn into_ingest(self, new: NewDelivery) -> Ingest {
        match self {
            Grouped::Stored { id, jobs } => new.stored(id, jobs),
            Grouped::Duplicate { id } => Ingest::Duplicate { id },
        }
    }
}

/// Stores a group of deliveries in one statement (its own transaction): each key is claimed
/// with a delivery id drawn beforehand, and a delivery and its jobs are inserted only if its key
/// was new. A key another transaction is inserting makes this one wait for it, then skip that
/// delivery: a duplicate. Keys are claimed in their order, so two groups never wait for each
/// other's keys in a cycle; ids are drawn in the order the deliveries arrived.
async fn ingest_group(pool: &PgPool, group: &[&NewDelivery]) -> Result<Vec<Grouped>, Failed> {
    let write = failed("storing deliveries");
    // Each delivery's place among the group's distinct keys, and whether it is the first of its
    // key: a key twice in the group makes the second the first's duplicate.
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(group.len());
    let mut places = Vec::with_capacity(group.len());
    let mut unique = Vec::with_capacity(group.len());
    for new in group {
        match first.entry(new.key.as_str()) {
            Entry::Occupied(seen) => places.push((*seen.get(), false)),
            Entry::Vacant(slot) => {
                places.push((*slot.insert(unique.len()), true));
                unique.push(*new);
            }
        }
    }
    let column = |f: fn(&NewDelivery) -> &str| unique.iter().map(|n| f(n)).collect::<Vec<_>>();
    let headers: Vec<String> = unique
        .iter()
        .map(|n| sql::encode_headers(&n.headers))
        .collect();
    let bodies: Vec<&[u8]> = unique.iter().map(|n| n.body.as_ref()).collect();
    let received: Vec<i64> = unique.iter().map(|n| n.received_at_ms).collect();
    let statuses: Vec<&str> = unique
        .iter()
        .map(|n| sql::initial_status(&n.jobs))
        .collect();
    let connections: Vec<Option<&str>> = unique.iter().map(|n| n.connection.as_deref()).collect();
    // The jobs of every delivery, each with its delivery's place in the group (from 1).
    let jobs = || {
        unique
            .iter()
            .zip(1_i64..)
            .flat_map(|(new, n)| new.jobs.iter().map(move |job| (n, job)))
    };
    let job_deliveries: Vec<i64> = jobs().map(|(n, _)| n).collect();
    let handlers: Vec<&str> = jobs().map(|(_, j)| j.handler.as_str()).collect();
    let max_attempts: Vec<i32> = jobs()
        .map(|(_, j)| i32::try_from(j.max_attempts).unwrap_or(i32::MAX))
        .collect();
    let leases: Vec<Option<i64>> = jobs().map(|(_, j)| j.claimed_for_ms).collect();
    let order_keys: Vec<Option<&str>> = jobs().map(|(_, j)| j.order_key.as_deref()).collect();
    let statement = format!(
        "WITH input AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                 $6::text[], $7::bytea[], $8::bigint[], $9::text[])
            WITH ORDINALITY AS t(idem_key, endpoint, connection, event, delivery_id, headers, body, received_at_ms, status, n)),
         drawn AS (
            SELECT n, idem_key, received_at_ms,
                   nextval(pg_get_serial_sequence('hooksmith_deliveries', 'id')) AS id
            FROM (SELECT n, idem_key, received_at_ms FROM input ORDER BY n) arrived),
         claimed AS (
            INSERT INTO hooksmith_keys (idem_key, delivery, seen_at_ms)
            SELECT idem_key, id, received_at_ms FROM drawn ORDER BY idem_key
            ON CONFLICT DO NOTHING RETURNING delivery),
         stored AS (
            INSERT INTO hooksmith_deliveries (id, idem_key, endpoint, connection, event, delivery_id, headers, body, received_at_ms, status)
            SELECT d.id, i.idem_key, i.endpoint, i.connection, i.event, i.delivery_id, i.headers, i.body, i.received_at_ms, i.status
            FROM input i JOIN drawn d ON d.n = i.n JOIN claimed c ON c.delivery = d.id
            ORDER BY d.id RETURNING id),
         jobs AS (
            INSERT INTO hooksmith_jobs (delivery, handler, status, attempts, max_attempts, next_at_ms, lease_until_ms, order_key)
            SELECT s.id, j.h, CASE WHEN j.l IS NULL THEN 'pending' ELSE 'running' END,
                   CASE WHEN j.l IS NULL THEN 0 ELSE 1 END, j.m, {DB_NOW}, COALESCE({DB_NOW} + j.l, 0), j.o
            FROM unnest($10::bigint[], $11::text[], $12::int[], $13::bigint[], $14::text[])
                 WITH ORDINALITY AS j(n, h, m, l, o, k)
            JOIN drawn d ON d.n = j.n JOIN stored s ON s.id = d.id
            ORDER BY j.k RETURNING id, delivery)
         SELECT d.n, s.id, COALESCE((SELECT array_agg(jobs.id ORDER BY jobs.id) FROM jobs
                                     WHERE jobs.delivery = s.id), '{{}}') AS jobs
         FROM drawn d LEFT JOIN stored s ON s.id = d.id ORDER BY d.n"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(column(|n| &n.key))
        .bind(column(|n| &n.endpoint))
        .bind(&connections)
        .bind(column(|n| &n.event))
        .bind(column(|n| &n.delivery_id))
        .bind(&headers)
        .bind(&bodies)
        .bind(&received)
        .bind(&statuses)
        .bind(&job_deliveries)
        .bind(&handlers)
        .bind(&max_attempts)
        .bind(&leases)
        .bind(&order_keys)
        .fetch_all(pool)
        .await
        .map_err(&write)?;
    if rows.len() != unique.len() {
        // An answer this code does not expect: every write fails with it.
        return Err(Failed {
            error: StoreError(format!(
                "storing deliveries: {} rows for {} deliveries",
                rows.len(),
                unique.len()
            )),
            kind: Failure::Unreachable,
        });
    }
    // Per distinct key: the delivery's id, and its jobs if this statement stored it.
    let mut ids = Vec::with_capacity(rows.len());
    let mut stored = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: Option<i64> = row.try_get("id").map_err(&write)?;
        ids.push(id);
        stored.push(match id {
            Some(_) => Some(row.try_get::<Vec<i64>, _>("jobs").map_err(&write)?),
            None => None,
        });
    }
    let known: Vec<&str> = (0..unique.len())
        .filter(|&i| stored[i].is_none())
        .map(|i| unique[i].key.as_str())
        .collect();
    if !known.is_empty() {
        // Keys that were there: committed before this statement, or by a transaction it waited
        // for.
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT idem_key, delivery FROM hooksmith_keys WHERE idem_key = ANY($1)",
        )
        .bind(&known)
        .fetch_all(pool)
        .await
        .map_err(&write)?;
        for (key, id) in rows {
            ids[first[key.as_str()]] = Some(id);
        }
    }
    places
        .into_iter()
        .map(|(i, first)| {
            // Purged between the statement and the look-up: alone, the delivery is new again.
            let id = ids[i].ok_or_else(|| Failed {
                error: StoreError(format!(
                    "storing deliveries: key {} vanished",
                    unique[i].key
                )),
                kind: Failure::Refused,
            })?;
            // The first of a key takes its jobs, so a second finds none: a duplicate.
            Ok(match stored[i].take() {
                Some(jobs) if first => Grouped::Stored { id, jobs },
                _ => Grouped::Duplicate { id },
            })
        })
        .collect()
}

/// Records a group of handler results with `hooksmith_finish` (see [`finish_function`]): the
/// jobs that were found.
async fn finish_group(pool: &PgPool, group: &[&Finished]) -> Result<Vec<i64>, Failed> {
    // By job, so that groups lock jobs in one order; a job twice keeps its last result.
    let mut by_job: BTreeMap<i64, &Finished> = BTreeMap::new();
    for finished in group {
        by_job.insert(finished.job, finished);
    }
    let jobs: Vec<i64> = by_job.keys().copied().collect();
    let statuses: Vec<&str> = by_job.values().map(|f| f.status).collect();
    let errors: Vec<Option<&str>> = by_job.values().map(|f| f.error.as_deref()).collect();
    let delays: Vec<Option<i64>> = by_job.values().map(|f| f.delay).collect();
    sqlx::query_scalar("SELECT hooksmith_finish($1, $2, $3, $4)")
        .bind(&jobs)
        .bind(&statuses)
        .bind(&errors)
        .bind(&delays)
        .fetch_all(pool)
        .await
        .map_err(failed("recording results"))
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
        Box::pin(self.write(|reply| Write::Ingest(new, reply)))
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
        let (status, error, delay) = match result {
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
        let finished = Finished {
            job,
            status,
            error,
            delay,
        };
        Box::pin(self.write(|reply| Write::Finish(finished, reply)))
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
