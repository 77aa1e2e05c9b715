//! What the SQL backends share: status names, header encoding, and assembling summaries from rows.

use std::collections::BTreeMap;

use super::{DeliveryQuery, DeliveryStatus, DeliverySummary, JobStatus, JobSummary, StoreError};

/// The delivery-status rule of [`DeliveryStatus::from_jobs`], in SQL, for `UPDATE ... SET
/// status = (...)` on delivery `?`/`$1`; both SQLite and PostgreSQL take it as written, with the
/// placeholder substituted.
pub(super) fn status_case(placeholder: &str) -> String {
    let jobs = format!("FROM hooksmith_jobs WHERE delivery = {placeholder}");
    format!(
        "CASE \
           WHEN NOT EXISTS (SELECT 1 {jobs}) THEN 'unhandled' \
           WHEN EXISTS (SELECT 1 {jobs} AND status = 'dead') THEN 'dead' \
           WHEN NOT EXISTS (SELECT 1 {jobs} AND status <> 'succeeded') THEN 'acknowledged' \
           WHEN NOT EXISTS (SELECT 1 {jobs} AND status <> 'pending') THEN 'received' \
           ELSE 'dispatched' END"
    )
}

/// The admin list's `SELECT` for the filters `query` gives, its values bound; `placeholder` is
/// `?` (SQLite) or `$` (PostgreSQL).
///
/// Only the filters given are written, so each combination is planned on its own along the index
/// one of them has; a single statement with `(? IS NULL OR column = ?)` for every filter is
/// planned once for all (PostgreSQL's generic plans, SQLite always) and scans every delivery to
/// find one by its id. `by_delivery_id` is the backend's clause for that filter, with `{}` where
/// its placeholder goes.
pub(super) fn list_query<'q, DB>(
    query: &'q DeliveryQuery,
    placeholder: char,
    by_delivery_id: &str,
) -> sqlx::query::Query<'q, DB, DB::Arguments>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut statement = format!(
        "SELECT id, delivery_id, endpoint, event, status, received_at_ms FROM hooksmith_deliveries
         WHERE id < {placeholder}1 AND received_at_ms >= {placeholder}2 AND received_at_ms < {placeholder}3"
    );
    let filters = [
        (query.endpoint.as_deref(), "endpoint = {}"),
        (query.status.map(status_name), "status = {}"),
        (query.event.as_deref(), "event = {}"),
        (query.delivery_id.as_deref(), by_delivery_id),
    ];
    let mut values = Vec::new();
    for (value, clause) in filters {
        if let Some(value) = value {
            values.push(value);
            let bound = format!("{placeholder}{}", values.len() + 3);
            statement.push_str(" AND ");
            statement.push_str(&clause.replace("{}", &bound));
        }
    }
    statement.push_str(&format!(
        " ORDER BY id DESC LIMIT {placeholder}{}",
        values.len() + 4
    ));
    let mut select = sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(query.before.unwrap_or(i64::MAX))
        .bind(query.received_since_ms.unwrap_or(i64::MIN))
        .bind(query.received_until_ms.unwrap_or(i64::MAX));
    for value in values {
        select = select.bind(value);
    }
    select.bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
}

pub(super) fn job_status(name: &str) -> Result<JobStatus, StoreError> {
    Ok(match name {
        "pending" => JobStatus::Pending,
        "running" => JobStatus::Running,
        "retrying" => JobStatus::Retrying,
        "succeeded" => JobStatus::Succeeded,
        "dead" => JobStatus::Dead,
        other => {
            return Err(StoreError(format!(
                "unknown job status `{other}` in the store"
            )));
        }
    })
}

pub(super) fn delivery_status(name: &str) -> Result<DeliveryStatus, StoreError> {
    DeliveryStatus::parse(name)
        .ok_or_else(|| StoreError(format!("unknown delivery status `{name}` in the store")))
}

pub(super) fn status_name(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Received => "received",
        DeliveryStatus::Dispatched => "dispatched",
        DeliveryStatus::Acknowledged => "acknowledged",
        DeliveryStatus::Unhandled => "unhandled",
        DeliveryStatus::Dead => "dead",
    }
}

/// The status a delivery is stored with, from its new jobs.
pub(super) fn initial_status(jobs: &[super::NewJob]) -> &'static str {
    if jobs.is_empty() {
        "unhandled"
    } else if jobs.iter().any(|j| j.claimed_for_ms.is_some()) {
        "dispatched"
    } else {
        "received"
    }
}

pub(super) fn encode_headers(headers: &super::HeaderList) -> String {
    serde_json::to_string(headers).unwrap_or_else(|_| "[]".into())
}

pub(super) fn decode_headers(text: &str) -> super::HeaderList {
    serde_json::from_str(text).unwrap_or_default()
}

#[cfg(feature = "sqlite")]
pub(super) fn ids_json(ids: impl IntoIterator<Item = i64>) -> String {
    serde_json::to_string(&ids.into_iter().collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into())
}

/// A delivery row without its body.
pub(super) struct DeliveryRow {
    pub(super) id: i64,
    pub(super) delivery_id: String,
    pub(super) endpoint: String,
    pub(super) event: String,
    pub(super) status: String,
    pub(super) received_at_ms: i64,
}

/// A job row.
pub(super) struct JobRow {
    pub(super) id: i64,
    pub(super) delivery: i64,
    pub(super) handler: String,
    pub(super) status: String,
    pub(super) attempts: i64,
    pub(super) last_error: Option<String>,
    pub(super) next_at_ms: i64,
}

/// Joins delivery rows (in the order given) with their jobs (in id order).
pub(super) fn assemble(
    deliveries: Vec<DeliveryRow>,
    jobs: Vec<JobRow>,
) -> Result<Vec<DeliverySummary>, StoreError> {
    let mut by_delivery: BTreeMap<i64, Vec<JobSummary>> = BTreeMap::new();
    for job in jobs {
        let status = job_status(&job.status)?;
        by_delivery
            .entry(job.delivery)
            .or_default()
            .push(JobSummary {
                id: job.id,
                name: job.handler,
                status,
                attempts: u32::try_from(job.attempts).unwrap_or(0),
                last_error: job.last_error,
                next_attempt_at_ms: (status == JobStatus::Retrying).then_some(job.next_at_ms),
            });
    }
    deliveries
        .into_iter()
        .map(|d| {
            let mut handlers = by_delivery.remove(&d.id).unwrap_or_default();
            handlers.sort_by_key(|h| h.id);
            Ok(DeliverySummary {
                id: d.id,
                delivery_id: d.delivery_id,
                endpoint: d.endpoint,
                event: d.event,
                status: delivery_status(&d.status)?,
                received_at_ms: d.received_at_ms,
                handlers,
            })
        })
        .collect()
}

/// A database error (sqlx's, or the SQLite group committer's) as a store error: the message
/// names the operation, never a value.
pub(super) fn error<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError(format!("{what}: {e}"))
}

/// The functions that read rows into the store's types, written once for both backends' row
/// types.
macro_rules! row_readers {
    ($row:ty) => {
        fn connection_row(
            row: &$row,
        ) -> Result<$crate::store::Connection, $crate::store::StoreError> {
            use ::sqlx::Row as _;
            let get = $crate::store::sql::error("reading a connection");
            let secrets: String = row.try_get("secrets").map_err(&get)?;
            Ok($crate::store::Connection {
                name: row.try_get("name").map_err(&get)?,
                kind: row.try_get("kind").map_err(&get)?,
                secrets: serde_json::from_str(&secrets)
                    .map_err(|e| $crate::store::StoreError(format!("reading a connection: {e}")))?,
                signature_header: row.try_get("signature_header").map_err(&get)?,
                nonce_header: row.try_get("nonce_header").map_err(&get)?,
            })
        }

        fn job_row(row: &$row) -> Result<$crate::store::sql::JobRow, $crate::store::StoreError> {
            use ::sqlx::Row as _;
            let get = $crate::store::sql::error("reading a job");
            Ok($crate::store::sql::JobRow {
                id: row.try_get("id").map_err(&get)?,
                delivery: row.try_get("delivery").map_err(&get)?,
                handler: row.try_get("handler").map_err(&get)?,
                status: row.try_get("status").map_err(&get)?,
                attempts: row.try_get("attempts").map_err(&get)?,
                last_error: row.try_get("last_error").map_err(&get)?,
                next_at_ms: row.try_get("next_at_ms").map_err(&get)?,
            })
        }

        fn delivery_row(
            row: &$row,
        ) -> Result<$crate::store::sql::DeliveryRow, $crate::store::StoreError> {
            use ::sqlx::Row as _;
            let get = $crate::store::sql::error("reading a delivery");
            Ok($crate::store::sql::DeliveryRow {
                id: row.try_get("id").map_err(&get)?,
                delivery_id: row.try_get("delivery_id").map_err(&get)?,
                endpoint: row.try_get("endpoint").map_err(&get)?,
                event: row.try_get("event").map_err(&get)?,
                status: row.try_get("status").map_err(&get)?,
                received_at_ms: row.try_get("received_at_ms").map_err(&get)?,
            })
        }

        fn stored(row: &$row) -> Result<$crate::store::StoredDelivery, $crate::store::StoreError> {
            use ::sqlx::Row as _;
            let get = $crate::store::sql::error("reading a delivery");
            let headers: String = row.try_get("headers").map_err(&get)?;
            let body: Vec<u8> = row.try_get("body").map_err(&get)?;
            Ok($crate::store::StoredDelivery {
                id: row.try_get("id").map_err(&get)?,
                key: row.try_get("idem_key").map_err(&get)?,
                endpoint: row.try_get("endpoint").map_err(&get)?,
                connection: row.try_get("connection").map_err(&get)?,
                event: row.try_get("event").map_err(&get)?,
                delivery_id: row.try_get("delivery_id").map_err(&get)?,
                headers: $crate::store::sql::decode_headers(&headers),
                body: ::bytes::Bytes::from(body),
                received_at_ms: row.try_get("received_at_ms").map_err(&get)?,
            })
        }
    };
}

pub(super) use row_readers;
