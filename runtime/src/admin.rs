//! The admin API, mounted under `/admin` only when a token is configured, behind
//! `Authorization: Bearer <token>` compared in constant time.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::app::Shared;
use crate::store::{Connection, DeliveryQuery, DeliveryStatus, DeliverySummary, NewJob};
use crate::{pipeline, routing, worker};

/// The most deliveries one list request returns.
pub const MAX_LIST_LIMIT: usize = 10_000;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/admin/deliveries", get(list))
        .route("/admin/deliveries/{id}", get(show))
        .route("/admin/deliveries/{id}/replay", post(replay))
        .route("/admin/dead", get(dead))
        .route("/admin/dead/replay", post(requeue_dead))
        .route(
            "/admin/connections",
            get(list_connections).post(create_connection),
        )
        .route("/admin/connections/{name}", delete(delete_connection))
        .route("/admin/connections/{name}/rotate", post(rotate_connection))
        .route_layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .with_state(shared)
}

async fn authorize(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = shared
        .admin_token
        .as_ref()
        .map_or(&b""[..], crate::scheme::Secret::expose);
    let ok: bool = !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected));
    if ok {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong admin token\n",
        )
            .into_response()
    }
}

#[derive(Debug, Deserialize)]
struct ListParams {
    endpoint: Option<String>,
    status: Option<String>,
    event: Option<String>,
    delivery_id: Option<String>,
    limit: Option<usize>,
    before: Option<i64>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
}

/// A delivery as the admin API returns it.
#[derive(Debug, Serialize)]
struct DeliveryView {
    #[serde(flatten)]
    summary: DeliverySummary,
    received_at: String,
}

#[derive(Debug, Serialize)]
struct DeliveryDetail {
    #[serde(flatten)]
    view: DeliveryView,
    headers: crate::store::HeaderList,
    body: Option<String>,
    body_base64: String,
}

async fn list(State(shared): State<Arc<Shared>>, Query(params): Query<ListParams>) -> Response {
    let status = match params
        .status
        .as_deref()
        .map(|s| (s, DeliveryStatus::parse(s)))
    {
        Some((name, None)) => {
            return bad_request(format!(
                "unknown status `{name}`: expected received, dispatched, acknowledged, unhandled or dead"
            ));
        }
        Some((_, status)) => status,
        None => None,
    };
    let query = DeliveryQuery {
        endpoint: params.endpoint,
        status,
        event: params.event,
        delivery_id: params.delivery_id,
        before: params.before,
        received_since_ms: params.since_ms,
        received_until_ms: params.until_ms,
        limit: params.limit.unwrap_or(100).min(MAX_LIST_LIMIT),
    };
    match shared.store.list(&query).await {
        Ok(list) => axum::Json(list.into_iter().map(view).collect::<Vec<_>>()).into_response(),
        Err(error) => unavailable(&error),
    }
}

async fn show(State(shared): State<Arc<Shared>>, Path(id): Path<i64>) -> Response {
    match shared.store.get(id).await {
        Ok(Some((summary, record))) => axum::Json(DeliveryDetail {
            view: view(summary),
            headers: record.headers.clone(),
            body: std::str::from_utf8(&record.body).ok().map(str::to_owned),
            body_base64: base64::engine::general_purpose::STANDARD.encode(&record.body),
        })
        .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such delivery\n").into_response(),
        Err(error) => unavailable(&error),
    }
}

#[derive(Debug, Deserialize)]
struct ReplayParams {
    #[serde(default)]
    force: bool,
}

#[derive(Debug, Serialize)]
struct ReplayReport {
    success: bool,
    handlers: Vec<HandlerReport>,
}

#[derive(Debug, Serialize)]
struct HandlerReport {
    name: &'static str,
    success: bool,
    error: Option<String>,
}

/// Re-runs a delivery's handlers now, routing it again with today's handlers and filters, and
/// reports per handler (seed 003's `replay_event`). The idempotency key is not consulted: a
/// replay is deliberate.
async fn replay(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<i64>,
    Query(params): Query<ReplayParams>,
) -> Response {
    let (summary, record) = match shared.store.get(id).await {
        Ok(Some(found)) => found,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such delivery\n").into_response(),
        Err(error) => return unavailable(&error),
    };
    if summary.status == DeliveryStatus::Acknowledged && !params.force {
        return (
            StatusCode::CONFLICT,
            "this delivery was acknowledged by every handler; replay it again with `?force=true`\n",
        )
            .into_response();
    }
    let Some(endpoint) = shared.endpoints.iter().find(|e| e.path == record.endpoint) else {
        return (
            StatusCode::CONFLICT,
            "the delivery's endpoint is no longer mounted\n",
        )
            .into_response();
    };
    let headers = record.headers.to_header_map();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let payload = routing::payload(&record.body, content_type);
    let Ok(fields) = routing::extract(&payload, &endpoint.plan) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "the stored body no longer parses\n",
        )
            .into_response();
    };
    let matched: Vec<_> = endpoint
        .handlers
        .iter()
        .filter(|h| pipeline::handler_matches(h, &record.event, &fields, &headers))
        .cloned()
        .collect();
    drop(fields);
    let jobs = matched
        .iter()
        .map(|h| NewJob {
            handler: h.name.to_owned(),
            max_attempts: h.retry.max.saturating_add(1),
            claimed_for_ms: Some(shared.config.lease_ms),
            order_key: None,
        })
        .collect();
    let ids = match shared
        .store
        .replay(id, jobs, shared.config.lease_ms, shared.clock.now_ms())
        .await
    {
        Ok(ids) => ids,
        Err(error) => return unavailable(&error),
    };
    let mut handlers = Vec::with_capacity(matched.len());
    for (handler, job) in matched.iter().zip(ids) {
        let outcome = worker::run_once(&shared, handler, record.clone(), job, 1, None).await;
        handlers.push(HandlerReport {
            name: handler.name,
            success: outcome.result.is_ok(),
            error: outcome.result.err().map(|e| e.message().to_owned()),
        });
    }
    tracing::info!(target: "hooksmith::admin", delivery = id, handlers = handlers.len(), "replayed");
    axum::Json(ReplayReport {
        success: handlers.iter().all(|h| h.success),
        handlers,
    })
    .into_response()
}

#[derive(Debug, Deserialize)]
struct DeadParams {
    limit: Option<usize>,
    before: Option<i64>,
}

/// Deliveries with a dead handler job, newest first.
async fn dead(State(shared): State<Arc<Shared>>, Query(params): Query<DeadParams>) -> Response {
    let query = DeliveryQuery {
        status: Some(DeliveryStatus::Dead),
        before: params.before,
        limit: params.limit.unwrap_or(100).min(MAX_LIST_LIMIT),
        ..DeliveryQuery::default()
    };
    match shared.store.list(&query).await {
        Ok(list) => axum::Json(list.into_iter().map(view).collect::<Vec<_>>()).into_response(),
        Err(error) => unavailable(&error),
    }
}

#[derive(Debug, Serialize)]
struct Requeued {
    requeued: u64,
}

/// Puts dead jobs back in the queue with a fresh retry budget (at most `limit`, default all up to
/// 10,000); the workers run them.
async fn requeue_dead(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<DeadParams>,
) -> Response {
    let limit = params.limit.unwrap_or(MAX_LIST_LIMIT).min(MAX_LIST_LIMIT);
    match shared
        .store
        .requeue_dead(limit, shared.clock.now_ms())
        .await
    {
        Ok(requeued) => {
            shared.wake_workers();
            axum::Json(Requeued { requeued }).into_response()
        }
        Err(error) => unavailable(&error),
    }
}

/// A connection as the admin API shows it: never its secrets, only how many there are.
#[derive(Debug, Serialize)]
struct ConnectionView {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    secrets: usize,
    signature_header: Option<String>,
    nonce_header: Option<String>,
}

impl From<Connection> for ConnectionView {
    fn from(c: Connection) -> Self {
        ConnectionView {
            name: c.name,
            kind: c.kind,
            secrets: c.secrets.len(),
            signature_header: c.signature_header,
            nonce_header: c.nonce_header,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConnection {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secrets: Vec<String>,
    signature_header: Option<String>,
    nonce_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotation {
    secret: String,
}

/// Checks a connection's fields; the message never contains a secret.
fn check_connection(c: &Connection) -> Result<(), String> {
    let name_ok = !c.name.is_empty()
        && c.name.len() <= 64
        && c.name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
    if !name_ok {
        return Err("`name` is 1 to 64 letters, digits, `-`, `_` or `.`".into());
    }
    let scheme = crate::scheme::lookup(&c.kind)?;
    if !scheme.needs_secret {
        return Err(format!(
            "`{}` verifies nothing; a connection needs a signing scheme",
            c.kind
        ));
    }
    if c.secrets.is_empty() {
        return Err("give the connection's signing secret as `secret`".into());
    }
    for (i, secret) in c.secrets.iter().enumerate() {
        if secret.is_empty() || secret.trim() != secret {
            return Err(format!(
                "secret #{} is empty or padded with whitespace",
                i + 1
            ));
        }
        (scheme.check_secret)(secret)
            .map_err(|problem| format!("secret #{} is not valid: {problem}", i + 1))?;
    }
    for header in [&c.signature_header, &c.nonce_header].into_iter().flatten() {
        hooksmith_grammar::check_header_name(header).map_err(|e| e.message)?;
    }
    Ok(())
}

async fn list_connections(State(shared): State<Arc<Shared>>) -> Response {
    match shared.store.connections().await {
        Ok(list) => axum::Json(
            list.into_iter()
                .map(ConnectionView::from)
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(error) => unavailable(&error),
    }
}

async fn create_connection(
    State(shared): State<Arc<Shared>>,
    axum::Json(new): axum::Json<NewConnection>,
) -> Response {
    let connection = Connection {
        name: new.name,
        kind: new.kind,
        secrets: new.secret.into_iter().chain(new.secrets).collect(),
        signature_header: new.signature_header,
        nonce_header: new.nonce_header,
    };
    if let Err(problem) = check_connection(&connection) {
        return bad_request(problem);
    }
    match shared.store.connection(&connection.name).await {
        Ok(Some(_)) => {
            return (
                StatusCode::CONFLICT,
                "a connection with that name exists; rotate its secret or delete it first\n",
            )
                .into_response();
        }
        Ok(None) => {}
        Err(error) => return unavailable(&error),
    }
    let name = connection.name.clone();
    match shared.store.put_connection(connection.clone()).await {
        Ok(()) => {
            shared.tenants.forget(&name);
            tracing::info!(target: "hooksmith::admin", connection = %name, "connection created");
            (
                StatusCode::CREATED,
                axum::Json(ConnectionView::from(connection)),
            )
                .into_response()
        }
        Err(error) => unavailable(&error),
    }
}

/// Makes `secret` the connection's newest; the previous newest keeps verifying until the next
/// rotation, so senders can switch over without a gap.
async fn rotate_connection(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    axum::Json(rotation): axum::Json<Rotation>,
) -> Response {
    let mut connection = match shared.store.connection(&name).await {
        Ok(Some(c)) => c,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such connection\n").into_response(),
        Err(error) => return unavailable(&error),
    };
    let previous = connection.secrets.first().cloned();
    connection.secrets = std::iter::once(rotation.secret).chain(previous).collect();
    if let Err(problem) = check_connection(&connection) {
        return bad_request(problem);
    }
    match shared.store.put_connection(connection.clone()).await {
        Ok(()) => {
            shared.tenants.forget(&name);
            tracing::info!(target: "hooksmith::admin", connection = %name, "connection secret rotated");
            axum::Json(ConnectionView::from(connection)).into_response()
        }
        Err(error) => unavailable(&error),
    }
}

async fn delete_connection(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Response {
    match shared.store.delete_connection(&name).await {
        Ok(true) => {
            shared.tenants.forget(&name);
            tracing::info!(target: "hooksmith::admin", connection = %name, "connection deleted");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => (StatusCode::NOT_FOUND, "no such connection\n").into_response(),
        Err(error) => unavailable(&error),
    }
}

fn view(summary: DeliverySummary) -> DeliveryView {
    DeliveryView {
        received_at: rfc3339(summary.received_at_ms),
        summary,
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message + "\n").into_response()
}

fn unavailable(error: &crate::store::StoreError) -> Response {
    tracing::error!(target: "hooksmith::admin", %error);
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        "store unavailable\n",
    )
        .into_response()
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn rfc3339(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn timestamps_print_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_614_265_330_123), "2021-02-25T15:02:10.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
