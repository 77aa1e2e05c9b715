//! The request pipeline of one endpoint:
//!
//! ```text
//! method (405) → size cap (413) → verify over raw bytes (401) → timestamp window (409)
//! → envelope and routing fields (400) → match handlers → persist delivery + jobs (503 on failure)
//! → duplicate (204) | ack = handled: run inline, answer its response | 204
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Instant;

use axum::body::{Body, HttpBody as _};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode, header, request::Parts};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use sha2::{Digest, Sha256};

use crate::app::Shared;
use crate::error::Rejection;
use crate::observe::TransitionKind;
use crate::registry::{EndpointRt, HandlerRt, Source, always_redacted};
use crate::routing::{self, Scalar};
use crate::scheme::SignedRequest;
use crate::spec::Ack;
use crate::store::{HeaderList, Ingest, NewDelivery, NewJob};
use crate::telemetry;
use crate::worker;

/// The longest idempotency key stored as is; longer keys are folded to their SHA-256.
pub(crate) const MAX_KEY_LEN: usize = 255;

/// Handles one request to an endpoint and logs one line about it.
pub(crate) async fn receive(
    shared: Arc<Shared>,
    endpoint: Arc<EndpointRt>,
    connection: Option<String>,
    request: http::Request<Body>,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let Some(_slot) = shared.in_flight.enter(shared.config.max_in_flight) else {
        telemetry::request(
            endpoint.path,
            503,
            "rejected",
            Some(Rejection::Overloaded.reason()),
            started.elapsed(),
        );
        return Rejection::Overloaded.into_response();
    };
    let span = tracing::info_span!(
        "hooksmith.request",
        endpoint = endpoint.path,
        connection = connection.as_deref()
    );
    // Request handling runs in the connection's task (no task of its own to create, schedule and
    // join per request), boxed so the connection's future stays small, with its panics caught.
    let handling = Box::pin(tracing::Instrument::instrument(
        accept(
            shared.clone(),
            endpoint.clone(),
            connection,
            parts,
            body,
            started,
        ),
        span,
    ));
    let result = match Finish(Some(handling)).await {
        Ok(result) => result,
        Err(()) => {
            tracing::error!(target: "hooksmith::request", endpoint = endpoint.path, panic = true, "request handling failed");
            Err(Rejection::Panicked)
        }
    };
    let took = started.elapsed();
    let micros = took.as_micros();
    match result {
        Ok(accepted) => {
            let status = accepted.response.status().as_u16();
            telemetry::request(endpoint.path, status, accepted.outcome, None, took);
            tracing::info!(
                target: "hooksmith::request",
                endpoint = endpoint.path,
                outcome = accepted.outcome,
                status = accepted.response.status().as_u16(),
                event = %accepted.event,
                delivery_id = %accepted.delivery_id,
                body_len = accepted.body_len,
                latency_us = micros,
            );
            accepted.response
        }
        Err(rejection) => {
            if !matches!(
                rejection,
                Rejection::NotFound | Rejection::MethodNotAllowed(_)
            ) {
                shared.publish(endpoint.path, "", None, || TransitionKind::Rejected {
                    reason: rejection.reason().to_owned(),
                });
            }
            tracing::warn!(
                target: "hooksmith::request",
                endpoint = endpoint.path,
                outcome = "rejected",
                reason = rejection.reason(),
                latency_us = micros,
            );
            let reason = rejection.reason().to_owned();
            let response = rejection.into_response();
            telemetry::request(
                endpoint.path,
                response.status().as_u16(),
                "rejected",
                Some(&reason),
                took,
            );
            response
        }
    }
}

/// Request handling polled in the connection's task, and never lost with it: a panic in it is
/// caught (the request is answered 500 and the process keeps serving), and if the connection
/// drops it unfinished — the client hung up while its delivery was being stored or its `ack =
/// "handled"` handler ran — the rest runs in a task of its own, so a delivery stored is never left
/// with jobs claimed and no one to run them until their lease runs out.
struct Finish<F: Future<Output: Send + 'static> + Send + 'static>(Option<Pin<Box<F>>>);

impl<F: Future<Output: Send + 'static> + Send + 'static> Future for Finish<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, task: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let Some(handling) = self.0.as_mut() else {
            return Poll::Ready(Err(()));
        };
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handling.as_mut().poll(task)
        }));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                self.0 = None;
                Poll::Ready(Ok(output))
            }
            Err(_panic) => {
                self.0 = None;
                Poll::Ready(Err(()))
            }
        }
    }
}

impl<F: Future<Output: Send + 'static> + Send + 'static> Drop for Finish<F> {
    fn drop(&mut self) {
        if let Some(handling) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(handling);
        }
    }
}

struct Accepted {
    response: Response,
    outcome: &'static str,
    event: String,
    delivery_id: String,
    body_len: usize,
}

/// Everything between the request's head and its answer. Not an `async fn`: one of those keeps
/// a second copy of its arguments (the request's 224-byte head among them) for the whole run, and
/// this future is boxed for every request.
#[expect(
    clippy::manual_async_fn,
    reason = "an `async fn` would hold its arguments twice"
)]
fn accept(
    shared: Arc<Shared>,
    ep: Arc<EndpointRt>,
    connection: Option<String>,
    parts: Parts,
    body: Body,
    started: Instant,
) -> impl Future<Output = Result<Accepted, Rejection>> + Send {
    async move {
        let (shared, ep) = (&shared, &*ep);
        if !ep.enabled.load(Ordering::Relaxed) {
            return Err(Rejection::NotFound);
        }
        if !ep.methods.contains(&parts.method) {
            return Err(Rejection::MethodNotAllowed(ep.allow.clone()));
        }
        // A per-tenant endpoint: an unknown connection is 404 before the body is read.
        let tenant = match &connection {
            Some(name) => Some(shared.tenants.resolve(&*shared.store, ep, name).await?),
            None => None,
        };
        let verifier = tenant.as_ref().map_or(&ep.verifier, |t| &t.verifier);
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > ep.max_body) {
            return Err(Rejection::TooLarge);
        }
        // Signatures cover the bytes as sent; decompressing first would verify something else, and
        // an unbounded decompression is a bomb. Compressed bodies are refused (415).
        if parts
            .headers
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
        {
            return Err(Rejection::Encoded);
        }
        let body = read_body(body, ep.max_body, declared, &shared.config, started).await?;

        let now_ms = shared.clock.now_ms();
        let now_secs = now_ms.div_euclid(1000);
        let verified = verifier
            .verify(&SignedRequest {
                headers: &parts.headers,
                body: &body,
                uri: &parts.uri,
                public_url: shared.config.public_url.as_deref(),
                now_secs,
            })
            .map_err(|e| Rejection::Signature(e.reason()))?;
        if let Some(timestamp) = verified.timestamp {
            let skew = i128::from(now_secs) - i128::from(timestamp);
            if skew.unsigned_abs() > u128::from(ep.tolerance_secs) {
                return Err(Rejection::StaleTimestamp);
            }
        }

        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let payload = routing::payload(&body, content_type);
        if let Some(response) = verifier.intercept(&payload) {
            return Ok(Accepted {
                response,
                outcome: "answered",
                event: String::new(),
                delivery_id: String::new(),
                body_len: body.len(),
            });
        }
        let fields = routing::extract(&payload, &ep.plan).map_err(Rejection::Malformed)?;

        let event = read(&ep.event, &fields, &parts.headers).unwrap_or_default();
        let nonce = tenant
            .as_ref()
            .and_then(|t| t.id_header.as_ref())
            .and_then(|h| parts.headers.get(h))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let delivery_id = nonce
            .or_else(|| read(&ep.id, &fields, &parts.headers))
            .unwrap_or_else(|| hex::encode(Sha256::digest(&body)));
        // The first matching `ack = "handled"` handler answers the request. The rest go straight to
        // a free worker slot of this instance, created already claimed (no claim round trip), unless
        // they keep an order or no slot is free: then they wait for a worker's claim.
        let lease_ms = shared.config.lease_ms;
        let mut inline = None;
        // Each matched handler, with the worker slot its job is handed to, if any.
        let mut matched: Vec<(&Arc<HandlerRt>, Option<worker::Reserved>)> = Vec::new();
        let mut jobs = Vec::new();
        for h in ep
            .handlers
            .iter()
            .filter(|h| handler_matches(h, &event, &fields, &parts.headers))
        {
            let order_key = h
                .order_slot
                .and_then(|slot| fields[slot].as_ref())
                .and_then(Scalar::to_text)
                .map(|value| format!("{}:{value}", h.name));
            let answers = inline.is_none() && h.ack == Ack::Handled;
            if answers {
                inline = Some(matched.len());
            }
            let slot = (!answers && order_key.is_none())
                .then(|| shared.slots.reserve())
                .flatten();
            jobs.push(NewJob {
                handler: h.name.to_owned(),
                max_attempts: h.retry.max.saturating_add(1),
                claimed_for_ms: (answers || slot.is_some()).then_some(lease_ms),
                order_key,
            });
            matched.push((h, slot));
        }
        drop(fields);
        // The body's only holder from here is the delivery, so a store may keep it without a copy.
        drop(payload);
        let key = idempotency_key(ep.path, connection.as_deref(), &event, &delivery_id);
        let body_len = body.len();
        let new = NewDelivery {
            key,
            endpoint: ep.path.to_owned(),
            connection,
            event: event.clone(),
            delivery_id: delivery_id.clone(),
            headers: redacted_headers(&parts.headers, ep),
            body,
            received_at_ms: now_ms,
            jobs,
        };
        let ingest = shared.store.ingest(new).await.map_err(|error| {
        tracing::error!(target: "hooksmith::store", endpoint = ep.path, %error, "delivery not stored; answering 503");
        Rejection::Unavailable
    })?;
        let (record, kind) = match &ingest {
            Ingest::Duplicate { id } => (*id, TransitionKind::Duplicate),
            Ingest::Stored { id, jobs, .. } if jobs.is_empty() => (*id, TransitionKind::Unhandled),
            Ingest::Stored { id, .. } => (*id, TransitionKind::Received),
        };
        shared.publish(ep.path, &delivery_id, Some(record), || kind);
        let accepted = |response: Response, outcome| Accepted {
            response,
            outcome,
            event,
            delivery_id,
            body_len,
        };
        let (record, job_ids) = match ingest {
            Ingest::Duplicate { .. } => {
                return Ok(accepted(
                    StatusCode::NO_CONTENT.into_response(),
                    "duplicate",
                ));
            }
            Ingest::Stored { jobs, record, .. } => (record, jobs),
        };
        if job_ids.is_empty() {
            return Ok(accepted(
                StatusCode::NO_CONTENT.into_response(),
                "unhandled",
            ));
        }
        let answering = inline.map(|i| (Arc::clone(matched[i].0), job_ids[i]));
        let mut waiting = false;
        for (i, ((handler, slot), &job)) in matched.into_iter().zip(&job_ids).enumerate() {
            match slot {
                Some(slot) => worker::start(shared, Arc::clone(handler), record.clone(), job, slot),
                None => waiting |= Some(i) != inline,
            }
        }
        if waiting {
            shared.wake_workers();
        }
        let Some((handler, job)) = answering else {
            return Ok(accepted(StatusCode::NO_CONTENT.into_response(), "stored"));
        };
        // Boxed: the request's future is sized for its largest state, and most requests run no
        // handler inline.
        let outcome = Box::pin(worker::run_once(shared, &handler, record, job, 1, None)).await;
        let response = outcome.response.map_or_else(
            || StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            |response| *response,
        );
        Ok(accepted(response, "handled"))
    }
}

/// Reads the body whole, at most `max` bytes, with no more than the idle timeout between chunks
/// and the deadline in all: a trickling client is cut off with 408. A body in one chunk is kept
/// as it came; several are gathered once into a buffer of the declared size (`Content-Length`,
/// already checked against `max`). The deadline counts from `started`, when the request came.
async fn read_body(
    body: Body,
    max: u64,
    declared: Option<u64>,
    config: &crate::app::Config,
    started: Instant,
) -> Result<Bytes, Rejection> {
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let mut body = Limited::new(body, limit);
    // Set at the first wait, on the runtime's clock (which tests may pause).
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut first: Option<Bytes> = None;
    let mut collected = bytes::BytesMut::new();
    loop {
        // A frame already received is taken without a timer or a look at the clock: most
        // bodies arrive with their headers, and their end is known at once.
        let next = match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx)))
            .await
        {
            Poll::Ready(next) => next,
            Poll::Pending => {
                let now = tokio::time::Instant::now();
                let deadline = *deadline.get_or_insert_with(|| {
                    now + config.body_deadline.saturating_sub(started.elapsed())
                });
                let wait = config
                    .body_idle_timeout
                    .min(deadline.saturating_duration_since(now));
                // Boxed: most bodies never wait, and the timer would size every request's future.
                Box::pin(tokio::time::timeout(wait, body.frame()))
                    .await
                    .map_err(|_| Rejection::SlowBody)?
            }
        };
        let frame = match next {
            // One chunk is kept as it came: a slice of the connection's read buffer. (A store
            // that keeps bodies in memory copies such a slice out, so as not to pin that buffer;
            // several chunks are gathered into a buffer of their own, which it keeps as it is.)
            None if collected.is_empty() => return Ok(first.unwrap_or_default()),
            None => return Ok(collected.freeze()),
            Some(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(Rejection::TooLarge);
            }
            Some(Err(_)) => {
                return Err(Rejection::Malformed("the body could not be read".into()));
            }
            Some(Ok(frame)) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        match first.take() {
            None if collected.is_empty() => first = Some(data),
            held => {
                if collected.is_empty() {
                    let hint = declared.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
                    collected.reserve(hint.min(limit).max(data.len() * 2));
                }
                if let Some(held) = held {
                    collected.extend_from_slice(&held);
                }
                collected.extend_from_slice(&data);
            }
        }
    }
}

pub(crate) fn read(
    source: &Source,
    fields: &[Option<Scalar<'_>>],
    headers: &HeaderMap,
) -> Option<String> {
    match source {
        Source::Header(names) => names
            .iter()
            .find_map(|name| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        Source::Field(slot) => fields[*slot].as_ref().and_then(Scalar::to_text),
        Source::Absent => None,
    }
}

pub(crate) fn handler_matches(
    h: &HandlerRt,
    event: &str,
    fields: &[Option<Scalar<'_>>],
    headers: &HeaderMap,
) -> bool {
    let event_ok = h.events.is_empty()
        || h.events.iter().any(|m| {
            hooksmith_grammar::glob_matches(&m.event, event)
            && m.action.as_deref().is_none_or(|action| {
                let found = h.action_slot.and_then(|slot| fields[slot].as_ref());
                matches!(found, Some(Scalar::Str(s)) if hooksmith_grammar::glob_matches(action, s))
            })
        });
    event_ok && h.filter.as_ref().is_none_or(|f| f.matches(fields, headers))
}

/// `endpoint[:connection]:event:delivery-id`, folded to its hex SHA-256 when longer than 255
/// characters (seed 002).
pub(crate) fn idempotency_key(
    endpoint: &str,
    connection: Option<&str>,
    event: &str,
    id: &str,
) -> String {
    // Built in one allocation of the right size (`format!` grows its string as it goes).
    let parts = [Some(endpoint), connection, Some(event), Some(id)];
    let len = parts.iter().flatten().map(|p| p.len() + 1).sum::<usize>() - 1;
    let mut key = String::with_capacity(len);
    for part in parts.into_iter().flatten() {
        if !key.is_empty() {
            key.push(':');
        }
        key.push_str(part);
    }
    if key.len() > MAX_KEY_LEN {
        hex::encode(Sha256::digest(key.as_bytes()))
    } else {
        key
    }
}

fn redacted_headers(headers: &HeaderMap, ep: &EndpointRt) -> HeaderList {
    const REDACTED: &str = "[redacted]";
    let redacted =
        |name: &HeaderName| always_redacted(name.as_str()) || ep.redact.as_ref() == Some(name);
    // The list is sized for what it will hold: the history keeps thousands of them, and a
    // signature is several times longer than its replacement.
    let bytes = headers
        .iter()
        .map(|(name, value)| {
            let value = if redacted(name) {
                REDACTED.len()
            } else {
                value.len()
            };
            name.as_str().len() + value
        })
        .sum();
    let mut list = HeaderList::with_capacity(headers.len(), bytes);
    for (name, value) in headers {
        if redacted(name) {
            list.push(name.as_str(), REDACTED);
        } else {
            // Nearly every value is visible ASCII, which `to_str` checks with a plain byte loop;
            // anything else is stored through the lossy conversion.
            match value.to_str() {
                Ok(text) => list.push(name.as_str(), text),
                Err(_) => list.push(name.as_str(), &String::from_utf8_lossy(value.as_bytes())),
            }
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_clamped_by_folding() {
        assert_eq!(idempotency_key("/h", None, "push", "abc"), "/h:push:abc");
        assert_eq!(
            idempotency_key("/h", Some("acme"), "push", "abc"),
            "/h:acme:push:abc"
        );
        let long = "x".repeat(300);
        let folded = idempotency_key("/h", None, "push", &long);
        assert_eq!(folded.len(), 64);
        assert_ne!(
            folded,
            idempotency_key("/h", None, "push", &"y".repeat(300))
        );
        let edge = "x".repeat(MAX_KEY_LEN - "/h:push:".len());
        assert_eq!(
            idempotency_key("/h", None, "push", &edge).len(),
            MAX_KEY_LEN
        );
    }
}
