//! The admin API, mounted under `/admin` only when a token is configured, behind
//! `Authorization: Bearer <token>` compared in constant time.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::app::Shared;
use crate::store::{DeliveryQuery, DeliveryStatus, DeliverySummary};

/// The most deliveries one list request returns.
pub const MAX_LIST_LIMIT: usize = 10_000;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/admin/deliveries", get(list))
        .route("/admin/deliveries/{id}", get(show))
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
    let expected = shared.admin_token.as_deref().unwrap_or("");
    let ok: bool =
        !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()));
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
    headers: Vec<(String, String)>,
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
