//! Metrics through the `metrics` facade, served as Prometheus text on `GET /metrics`.
//!
//! hooksmith records through whatever recorder the process has. When none is installed when the
//! first app is built, it installs a Prometheus recorder and `/metrics` renders it; when the
//! application installed its own, the figures flow there and `/metrics` says so.
//!
//! | metric | labels |
//! |---|---|
//! | `hooksmith_requests_total` | `endpoint`, `status` (HTTP), `outcome` (`stored`, `duplicate`, `unhandled`, `handled`, `answered`, `rejected`) |
//! | `hooksmith_rejected_total` | `endpoint`, `reason` (`signature_mismatch`, `too_large`, ...) |
//! | `hooksmith_ack_seconds` | `endpoint` — time from request to acknowledgement |
//! | `hooksmith_handler_runs_total` | `handler`, `result` (`succeeded`, `retrying`, `dead`) |
//! | `hooksmith_dead_total` | `handler` |
//! | `hooksmith_queue_depth` | — jobs pending, running or retrying (sampled every second) |

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder unless the process has one; idempotent.
pub(crate) fn install() {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
            .ok()?
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).ok()?;
        Some(handle)
    });
}

/// The Prometheus text, or `None` when the application installed its own recorder.
pub(crate) fn render() -> Option<String> {
    HANDLE
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
}

pub(crate) fn request(
    endpoint: &'static str,
    status: u16,
    outcome: &'static str,
    reason: Option<&str>,
    took: Duration,
) {
    metrics::counter!(
        "hooksmith_requests_total",
        "endpoint" => endpoint,
        "status" => status.to_string(),
        "outcome" => outcome
    )
    .increment(1);
    if let Some(reason) = reason {
        metrics::counter!("hooksmith_rejected_total", "endpoint" => endpoint, "reason" => reason.to_owned()).increment(1);
    } else {
        metrics::histogram!("hooksmith_ack_seconds", "endpoint" => endpoint)
            .record(took.as_secs_f64());
    }
}

pub(crate) fn queue_depth(jobs: u64) {
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!("hooksmith_queue_depth").set(jobs as f64);
}

pub(crate) fn handler_run(handler: &'static str, result: &'static str) {
    metrics::counter!("hooksmith_handler_runs_total", "handler" => handler, "result" => result)
        .increment(1);
    if result == "dead" {
        metrics::counter!("hooksmith_dead_total", "handler" => handler).increment(1);
    }
}
