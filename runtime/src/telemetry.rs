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

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{Counter, Histogram};
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
        // A histogram's samples wait in the recorder until they are folded into its buckets, at
        // a render or an upkeep. `/metrics` may never be scraped: without an upkeep, every
        // request's acknowledgement time would be kept for good (16 bytes a request).
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("hooksmith-metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            });
        Some(handle)
    });
}

/// How often histogram samples are folded into their buckets when nobody renders them.
const UPKEEP: Duration = Duration::from_secs(1);

/// The Prometheus text, or `None` when the application installed its own recorder.
pub(crate) fn render() -> Option<String> {
    HANDLE
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
}

/// Metric handles by their labels' identity, so the hot path neither allocates label sets nor
/// looks the series up in the recorder on every request. The labels are `'static` strings, and
/// their addresses stand for them: two copies of one string only make two handles of one series.
struct Handles<K, V>(Mutex<Vec<(K, V)>>);

impl<K: PartialEq, V> Handles<K, V> {
    const fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    fn with(&self, key: K, make: impl FnOnce() -> V, use_it: impl FnOnce(&V)) {
        let mut handles = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, value)) = handles.iter().find(|(k, _)| *k == key) {
            use_it(value);
            return;
        }
        let value = make();
        use_it(&value);
        handles.push((key, value));
    }
}

fn id(s: &'static str) -> usize {
    s.as_ptr() as usize
}

static REQUESTS: Handles<(usize, u16, usize), Counter> = Handles::new();
static ACK: Handles<usize, Histogram> = Handles::new();
static RUNS: Handles<(usize, usize), Counter> = Handles::new();

pub(crate) fn request(
    endpoint: &'static str,
    status: u16,
    outcome: &'static str,
    reason: Option<&str>,
    took: Duration,
) {
    REQUESTS.with(
        (id(endpoint), status, id(outcome)),
        || {
            metrics::counter!(
                "hooksmith_requests_total",
                "endpoint" => endpoint,
                "status" => status.to_string(),
                "outcome" => outcome
            )
        },
        |c| c.increment(1),
    );
    if let Some(reason) = reason {
        metrics::counter!("hooksmith_rejected_total", "endpoint" => endpoint, "reason" => reason.to_owned()).increment(1);
    } else {
        ACK.with(
            id(endpoint),
            || metrics::histogram!("hooksmith_ack_seconds", "endpoint" => endpoint),
            |h| h.record(took.as_secs_f64()),
        );
    }
}

pub(crate) fn queue_depth(jobs: u64) {
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!("hooksmith_queue_depth").set(jobs as f64);
}

pub(crate) fn handler_run(handler: &'static str, result: &'static str) {
    RUNS.with(
        (id(handler), id(result)),
        || metrics::counter!("hooksmith_handler_runs_total", "handler" => handler, "result" => result),
        |c| c.increment(1),
    );
    if result == "dead" {
        metrics::counter!("hooksmith_dead_total", "handler" => handler).increment(1);
    }
}
