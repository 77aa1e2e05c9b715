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
//! * `filter/*`: the fields read and a filter evaluated, as at ingest.
//! * `json/*`: `Json<T>` extraction for a handler beside `serde_json::from_slice::<T>`.

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hmac::Mac;
use hooksmith::internals::{Plan, Verifier, context};
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

criterion_group!(benches, verify, routing, filter, json);
criterion_main!(benches);
