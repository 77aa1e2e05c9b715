//! Every key at once, on a generic scheme, and the handler-level keys on a const endpoint.
use hooksmith::{Delivery, Endpoint, Headers, Json, SecretSource, State, webhook};

#[derive(serde::Deserialize)]
struct Payload {
    id: String,
}

#[derive(Clone)]
struct Db;

#[webhook(
    path = "/hooks/acme",
    sig = "hmac-sha1",
    header = "X-Acme-Signature",
    prefix = "sha1=",
    encoding = "base64",
    secret = [env("ACME_SECRET"), env("ACME_SECRET_OLD", optional)],
    event = ["build.finished", "deploy.*"],
    event_header = "X-Acme-Event",
    id_field = "delivery.id",
    filter(
        "repository.name" = regex("^acme-"),
        any(status = "ok", not(retries = 0), "meta.score" = -1.5, draft = false, parent = null),
        header("X-Acme-Region") = "eu",
        header("User-Agent") = regex("^Acme/"),
        repository.private = true,
    ),
    ack = "stored",
    retry(max = 8, backoff = "250ms", factor = 3, max_delay = "10m"),
    max_body = 65536,
    tolerance = 60,
    methods = ["POST", "PUT"],
    name = "Acme CI",
    enabled = true,
)]
async fn acme(payload: Json<Payload>, delivery: Delivery, headers: Headers, db: State<Db>) -> hooksmith::Result {
    let _ = (&payload.id, delivery.id(), headers.get("x"), &db.0);
    Ok(())
}

const SHARED: Endpoint = Endpoint::new("/hooks/shared")
    .sig("hmac-sha256")
    .header("X-Signature")
    .secrets(&[SecretSource::env("SHARED_SECRET")]);

#[webhook(endpoint = SHARED, event = "a")]
fn sync_handler(raw: hooksmith::Raw) -> Result<(), std::io::Error> {
    let _ = raw.len();
    Ok(())
}

#[webhook(endpoint = SHARED, event = "b")]
async fn anyhow_style(value: serde_json::Value) -> Result<(), String> {
    Err(value.to_string())
}

fn main() {}
