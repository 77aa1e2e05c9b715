//! Entry points for the fuzz targets in `fuzz/` (every parser of untrusted input) and the
//! micro-benchmarks in `bench/` (each step of the hot path), callable from outside the crate.
//! Compiled only with the `internals` feature; not an API.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use crate::routing::{self, FieldPlan};
use crate::scheme::{self, Params, Secret, SignedRequest};

/// The envelope and routing-field reader, with a plan that reaches into objects and arrays.
pub fn envelope(body: &[u8], content_type: Option<&str>) {
    let payload = routing::payload(&Bytes::copy_from_slice(body), content_type);
    let mut plan = FieldPlan::default();
    for path in [
        &["type"][..],
        &["action"],
        &["a", "b", "c"],
        &["items", "0", "id"],
        &["id"],
    ] {
        plan.add(path);
    }
    let _ = routing::extract(&payload, &plan);
}

/// Unix timestamps as providers write them.
pub fn timestamp(text: &str) {
    let _ = scheme::parse_timestamp(text);
}

/// `Stripe-Signature` values.
pub fn stripe_signature(value: &str) {
    let _ = scheme::stripe_parse(value);
}

/// `webhook-signature` values.
pub fn standard_signature(value: &str) {
    let _ = scheme::standard_parse(value);
}

/// Every scheme's secret check and constructor, with an arbitrary configured secret.
pub fn secrets(secret: &str) {
    for s in scheme::SCHEMES {
        if (s.check_secret)(secret).is_ok() {
            let _ = (s.build)(&Params::default(), &[Secret::new(secret)]);
        }
    }
}

/// Every scheme's verification with arbitrary values in every header any scheme reads.
pub fn scheme_headers(values: &[&str], body: &[u8], uri: &str) {
    const NAMES: &[&str] = &[
        "x-hub-signature-256",
        "stripe-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "svix-id",
        "svix-timestamp",
        "svix-signature",
        "x-slack-signature",
        "x-slack-request-timestamp",
        "x-shopify-hmac-sha256",
        "x-gitlab-token",
        "linear-signature",
        "x-twilio-signature",
        "host",
        "content-type",
        "x-signature-ed25519",
        "x-signature-timestamp",
        "authorization",
    ];
    let mut headers = HeaderMap::new();
    for (name, value) in NAMES.iter().zip(values) {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.append(HeaderName::from_static(name), value);
        }
    }
    let uri: Uri = uri.parse().unwrap_or_else(|_| Uri::from_static("/"));
    let secrets = [
        ("github", "s"),
        ("stripe", "whsec_s"),
        ("standard", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        (
            "standard",
            "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        ),
        ("slack", "s"),
        ("shopify", "s"),
        ("gitlab", "s"),
        ("linear", "s"),
        ("twilio", "s"),
        (
            "discord",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        ),
        ("hmac-sha256", "s"),
        ("hmac-sha1", "s"),
        ("jwt", "s"),
    ];
    for (name, secret) in secrets {
        let Ok(s) = scheme::lookup(name) else {
            continue;
        };
        let Ok(verifier) = (s.build)(&Params::default(), &[Secret::new(secret)]) else {
            continue;
        };
        let _ = verifier.verify(&SignedRequest {
            headers: &headers,
            body,
            uri: &uri,
            public_url: None,
            now_secs: 1_700_000_000,
        });
        let _ = verifier.intercept(body);
    }
}

/// A scheme's verifier as the pipeline builds it, for the micro-benchmarks.
pub struct Verifier(std::sync::Arc<dyn scheme::Verifier>);

impl Verifier {
    /// The verifier of `scheme` with one secret, with the scheme's default parameters.
    pub fn new(scheme: &str, secret: &str) -> Option<Self> {
        let s = scheme::lookup(scheme).ok()?;
        (s.build)(&Params::default(), &[Secret::new(secret)])
            .ok()
            .map(Self)
    }

    /// Whether the request verifies (signature and, where the scheme has one, its timestamp).
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], uri: &Uri, now_secs: i64) -> bool {
        self.0
            .verify(&SignedRequest {
                headers,
                body,
                uri,
                public_url: None,
                now_secs,
            })
            .is_ok()
    }

    /// Whether the scheme answers this verified payload itself (Slack's `url_verification`,
    /// Discord's `PING`) rather than storing it.
    pub fn intercepts(&self, payload: &[u8]) -> bool {
        self.0.intercept(payload).is_some()
    }
}

/// The routing-field reader with a plan of dotted paths, as an endpoint builds it.
pub struct Plan(FieldPlan);

impl Plan {
    /// A plan reading `paths` (dotted JSON paths, as in `event_field` or a filter).
    pub fn new(paths: &[&str]) -> Option<Self> {
        let mut plan = FieldPlan::default();
        for path in paths {
            plan.add(&hooksmith_grammar::parse_json_path(path).ok()?);
        }
        Some(Self(plan))
    }

    /// Reads the planned fields of a JSON body; how many were found, or `None` if refused.
    pub fn extract(&self, body: &[u8]) -> Option<usize> {
        routing::extract(body, &self.0)
            .ok()
            .map(|fields| fields.iter().filter(|f| f.is_some()).count())
    }

    /// Reads the planned fields and evaluates `filter` (compiled against this plan) on them.
    pub fn filter(&mut self, filter: &crate::Filter) -> Option<CompiledFilter> {
        crate::filter::Compiled::new(filter, &mut self.0)
            .ok()
            .map(CompiledFilter)
    }

    /// Reads the fields of `body` and evaluates `filter` against them and `headers`.
    pub fn matches(&self, filter: &CompiledFilter, body: &[u8], headers: &HeaderMap) -> bool {
        routing::extract(body, &self.0).is_ok_and(|fields| filter.0.matches(&fields, headers))
    }
}

/// A filter compiled as at startup.
pub struct CompiledFilter(crate::filter::Compiled);

/// A handler's context for a stored JSON body, to run extractors such as `Json<T>` on.
pub fn context(body: &'static [u8]) -> crate::Context {
    let body = Bytes::from_static(body);
    crate::Context {
        record: std::sync::Arc::new(crate::store::StoredDelivery {
            id: 1,
            key: String::new(),
            endpoint: "/bench".into(),
            connection: None,
            event: String::new(),
            delivery_id: String::new(),
            headers: crate::store::HeaderList::new(),
            body: body.clone(),
            received_at_ms: 0,
        }),
        payload: body,
        attempt: 1,
        handler: "bench",
        state: std::sync::Arc::new(crate::StateMap::default()),
    }
}
