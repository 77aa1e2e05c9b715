//! The whole request pipeline in-process: arbitrary method, path, headers and body against
//! endpoints of several schemes. Any answer is fine except a 500 (a panic caught in request
//! handling) or one outside the documented set.
#![no_main]

use std::sync::OnceLock;

use hooksmith::axum::body::Body;
use hooksmith::testing::TestClient;
use hooksmith::webhook;

#[webhook(path = "/f/github", sig = "github", event = "pull_request.opened", filter(any("repository.name" = regex("^a"), not(number = 1))))]
async fn fuzz_github() {}

#[webhook(path = "/f/stripe", sig = "stripe", event = "charge.*", order_by = "data.object.customer")]
async fn fuzz_stripe() {}

#[webhook(path = "/f/standard", sig = "standard")]
async fn fuzz_standard(_value: serde_json::Value) {}

#[webhook(path = "/f/open/{connection}", sig = "slack")]
async fn fuzz_tenant() {}

#[webhook(path = "/f/none", sig = "none", ack = "handled", id_field = "id", event_field = "type")]
async fn fuzz_handled() -> &'static str {
    "ok"
}

fn client() -> &'static (tokio::runtime::Runtime, TestClient) {
    static CLIENT: OnceLock<(tokio::runtime::Runtime, TestClient)> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let app = runtime.block_on(async {
            hooksmith::App::builder()
                .ignore_env()
                .var("GITHUB_WEBHOOK_SECRET", "fuzz")
                .var("STRIPE_WEBHOOK_SECRET", "whsec_fuzz")
                .var("STANDARD_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .admin_token("fuzz-token")
                .build()
                .unwrap()
        });
        (runtime, TestClient::new(app))
    })
}

const PATHS: &[&str] = &["/f/github", "/f/stripe", "/f/standard", "/f/open/acme", "/f/none", "/admin/deliveries", "/nowhere"];
const METHODS: &[&str] = &["POST", "GET", "PUT", "DELETE"];
const ALLOWED: &[u16] = &[200, 204, 400, 401, 404, 405, 408, 409, 413, 415, 503];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (runtime, client) = client();
    let mut parts = data.split(|b| *b == 0);
    let selector = parts.next().unwrap_or_default();
    let method = METHODS[usize::from(*selector.first().unwrap_or(&0)) % METHODS.len()];
    let path = PATHS[usize::from(*selector.get(1).unwrap_or(&0)) % PATHS.len()];
    let mut request = hooksmith::axum::http::Request::builder().method(method).uri(path);
    let mut body = Vec::new();
    for part in parts {
        match std::str::from_utf8(part).ok().and_then(|p| p.split_once(':')) {
            Some((name, value)) => request = request.header(name.trim(), value.trim()),
            None => body = part.to_vec(),
        }
    }
    let Ok(request) = request.body(Body::from(body)) else { return };
    let status = runtime.block_on(client.call(request)).status().as_u16();
    assert!(ALLOWED.contains(&status), "{method} {path} answered {status}");
});
