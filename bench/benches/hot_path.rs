//! Micro-benchmarks of each step of hooksmith's hot path, each beside what a hand-written receiver
//! would do for the same step.
//!
//! ```text
//! cargo bench -p hooksmith-bench                     # everything
//! cargo bench -p hooksmith-bench -- verify           # one group
//! ```
//!
//! * `verify/*`: every scheme's verification of a signed 20 KB body (throughput in bytes),
//!   beside `raw-hmac-sha256`: the hmac crate over the same bytes with a constant-time compare.
//! * `routing/*`: reading the routing fields — the head of the document only, or a field at its
//!   end — beside a borrowed typed parse and a `serde_json::Value` tree of the same body.
//! * `intercept/*`: a scheme's look for a request it answers itself (Slack's `url_verification`)
//!   in an ordinary event's body, which every delivery to such an endpoint pays.
//! * `filter/*`: the fields read and a filter evaluated, as at ingest.
//! * `json/*`: `Json<T>` extraction for a handler beside `serde_json::from_slice::<T>`.
//! * `memory-store/*`: the memory store's part of a delivery — stored with its one job, the job's
//!   success recorded, the oldest delivery dropped from a full history — from one thread and
//!   from two at once (time per delivery; two threads show what the store's lock serializes).

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hmac::Mac;
use hooksmith::internals::{Plan, Verifier, context};
use hooksmith::store::{HeaderList, Ingest, JobResult, MemoryStore, NewDelivery, NewJob, Store};
use hooksmith::testing::{Params, SignInput, sign};
use hooksmith::{Filter, FromDelivery, Json, Target, Value};
use http::{HeaderMap, Uri};
use serde::Deserialize;

const SMALL: &[u8] = include_bytes!("../../tests/fixtures/pull_request.opened.1k.json");
const LARGE: &[u8] = include_bytes!("../../tests/fixtures/pull_request.opened.20k.json");
const NOW: i64 = 1_700_000_000;

/// Each scheme with the secret it signs with and the one it verifies with, in the forms they
/// take. The HMAC schemes come first; then an ed25519 signature over the body (Discord), a shared
/// token (GitLab) and a bearer JWT, which do not hash the body with a MAC.
const SCHEMES: &[(&str, &str, &str)] = &[
    ("github", "bench secret", "bench secret"),
    ("hmac-sha256", "bench secret", "bench secret"),
    ("hmac-sha1", "bench secret", "bench secret"),
    ("stripe", "whsec_bench", "whsec_bench"),
    (
        "standard",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ),
    ("slack", "bench secret", "bench secret"),
    ("shopify", "bench secret", "bench secret"),
    ("linear", "bench secret", "bench secret"),
    (
        "discord",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    ),
    ("gitlab", "bench secret", "bench secret"),
    ("jwt", "bench secret", "bench secret"),
];

fn signed(scheme: &str, secret: &str, body: &[u8]) -> HeaderMap {
    let input = SignInput {
        body,
        timestamp: NOW,
        id: "msg_bench",
        url: "https://example.com/hooks",
        content_type: Some("application/json"),
    };
    sign(scheme, &Params::default(), secret, &input)
        .expect("every listed scheme signs")
        .into_iter()
        .collect()
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Bytes(LARGE.len() as u64));
    let uri = Uri::from_static("/hooks");
    // Linear signs a timestamp inside the body: give it a body that carries one.
    let linear_body = {
        let mut value: serde_json::Value = serde_json::from_slice(LARGE).expect("JSON");
        value["webhookTimestamp"] = (NOW * 1000).into();
        serde_json::to_vec(&value).expect("JSON")
    };
    for (scheme, signing, verifying) in SCHEMES {
        let body: &[u8] = if *scheme == "linear" {
            &linear_body
        } else {
            LARGE
        };
        let headers = signed(scheme, signing, body);
        let verifier = Verifier::new(scheme, verifying).expect("a verifier");
        assert!(
            verifier.verify(&headers, body, &uri, NOW),
            "{scheme} verifies its own signature"
        );
        group.bench_function(*scheme, |b| {
            b.iter(|| verifier.verify(black_box(&headers), black_box(body), &uri, NOW));
        });
    }
    // What a hand-written receiver does: HMAC-SHA256 over the bytes, hex decoded, compared in
    // constant time.
    let key = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"bench secret").expect("any key");
    let expected = {
        let mut mac = key.clone();
        mac.update(LARGE);
        hex::encode(mac.finalize().into_bytes())
    };
    group.bench_function("raw-hmac-sha256", |b| {
        b.iter(|| {
            let mut mac = key.clone();
            mac.update(black_box(LARGE));
            let tag = hex::decode(black_box(&expected)).expect("hex");
            mac.verify_slice(&tag).is_ok()
        });
    });
    group.finish();
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Borrowed<'a> {
    #[serde(borrow)]
    action: &'a str,
    number: u64,
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing");
    let head = Plan::new(&["action"]).expect("a plan");
    // `sender.login` is near the end of the document: the walk reads all of it.
    let tail = Plan::new(&["action", "sender.login"]).expect("a plan");
    for (name, body) in [("1k", SMALL), ("20k", LARGE)] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        assert_eq!(head.extract(body), Some(1));
        group.bench_function(format!("head/{name}"), |b| {
            b.iter(|| head.extract(black_box(body)));
        });
        group.bench_function(format!("whole-document/{name}"), |b| {
            b.iter(|| tail.extract(black_box(body)));
        });
        group.bench_function(format!("hand-written-typed/{name}"), |b| {
            b.iter(|| serde_json::from_slice::<Borrowed<'_>>(black_box(body)).is_ok());
        });
        group.bench_function(format!("value-tree/{name}"), |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(body)).is_ok());
        });
    }
    group.finish();
}

fn intercept(c: &mut Criterion) {
    let mut group = c.benchmark_group("intercept");
    let slack = Verifier::new("slack", "bench secret").expect("a verifier");
    for (name, body) in [("1k", SMALL), ("20k", LARGE)] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        assert!(!slack.intercepts(body));
        group.bench_function(format!("slack/{name}"), |b| {
            b.iter(|| slack.intercepts(black_box(body)));
        });
    }
    group.finish();
}

fn filter(c: &mut Criterion) {
    const OPENED: Filter = Filter::All(&[
        Filter::Eq(Target::Json("action"), Value::Str("opened")),
        Filter::Regex(Target::Json("pull_request.base.ref"), "^(main|master)$"),
        Filter::Not(&Filter::Eq(Target::Header("x-skip"), Value::Str("1"))),
    ]);
    let mut group = c.benchmark_group("filter");
    let mut plan = Plan::new(&[]).expect("a plan");
    let compiled = plan.filter(&OPENED).expect("a filter");
    let headers = HeaderMap::new();
    for (name, body) in [("1k", SMALL), ("20k", LARGE)] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        assert!(plan.matches(&compiled, body, &headers));
        group.bench_function(format!("fields-and-filter/{name}"), |b| {
            b.iter(|| plan.matches(&compiled, black_box(body), &headers));
        });
    }
    group.finish();
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct PullRequestEvent {
    number: u64,
    pull_request: PullRequest,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct PullRequest {
    title: String,
}

fn json(c: &mut Criterion) {
    let mut group = c.benchmark_group("json");
    for (name, body) in [("1k", SMALL), ("20k", LARGE)] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        let cx = context(body);
        group.bench_function(format!("Json<T>/{name}"), |b| {
            b.iter(|| Json::<PullRequestEvent>::from_delivery(black_box(&cx)).is_ok());
        });
        group.bench_function(format!("serde_json::from_slice/{name}"), |b| {
            b.iter(|| serde_json::from_slice::<PullRequestEvent>(black_box(body)).is_ok());
        });
    }
    group.finish();
}

/// A delivery as the pipeline hands it to the store: its body a slice of a larger buffer, as
/// one read from a connection is.
fn new_delivery(n: u64, read_buffer: &bytes::Bytes, len: usize) -> NewDelivery {
    let mut headers = HeaderList::new();
    headers.push("x-github-event", "pull_request");
    headers.push("content-type", "application/json");
    NewDelivery {
        key: format!("github:{n:032x}"),
        endpoint: "/hooks/github".to_owned(),
        connection: None,
        event: "pull_request".to_owned(),
        delivery_id: format!("{n:032x}"),
        headers,
        body: read_buffer.slice(..len),
        received_at_ms: NOW,
        jobs: vec![NewJob {
            handler: "pr_opened".to_owned(),
            max_attempts: 6,
            claimed_for_ms: Some(30_000),
            order_key: None,
        }],
    }
}

/// The value of a store call: the memory store's futures are ready at their first poll.
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => unreachable!("the memory store never waits"),
    }
}

/// Stores `deliveries` and records their jobs' success. (Drained, so that freeing the list,
/// which is the harness's cost, happens after the clock stops.)
fn store_all(store: &MemoryStore, deliveries: &mut Vec<NewDelivery>) {
    for new in deliveries.drain(..) {
        let Ok(Ingest::Stored { jobs, .. }) = ready(store.ingest(new)) else {
            panic!("a new key is stored");
        };
        for job in jobs {
            ready(store.finish(job, JobResult::Succeeded, NOW)).expect("finished");
        }
    }
}

fn memory_store(c: &mut Criterion) {
    const CHUNK: u64 = 4_096;
    let mut group = c.benchmark_group("memory-store");
    for (name, body) in [("1k", SMALL), ("20k", LARGE)] {
        let mut buffer = bytes::BytesMut::with_capacity(64 * 1024);
        buffer.extend_from_slice(body);
        let read_buffer = buffer.freeze();
        for threads in [1_u64, 2] {
            let store = MemoryStore::new();
            let next = std::sync::atomic::AtomicU64::new(0);
            let deliveries = |count: u64| -> Vec<NewDelivery> {
                let first = next.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
                (first..first + count)
                    .map(|n| new_delivery(n, &read_buffer, body.len()))
                    .collect()
            };
            // A full history first: every delivery stored then drops the oldest.
            store_all(
                &store,
                &mut deliveries(2 * MemoryStore::DEFAULT_KEEP as u64),
            );
            group.bench_function(format!("{name}/{threads}-thread"), |b| {
                b.iter_custom(|iters| {
                    let mut spent = std::time::Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let count = left.min(CHUNK);
                        left -= count;
                        // `count` in all, however it divides among the threads.
                        let mut batches: Vec<_> = (0..threads)
                            .map(|t| deliveries(count / threads + u64::from(t < count % threads)))
                            .collect();
                        let started = std::time::Instant::now();
                        std::thread::scope(|scope| {
                            for batch in &mut batches {
                                scope.spawn(|| store_all(&store, batch));
                            }
                        });
                        spent += started.elapsed();
                    }
                    spent
                });
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    verify,
    routing,
    intercept,
    filter,
    json,
    memory_store
);
criterion_main!(benches);
