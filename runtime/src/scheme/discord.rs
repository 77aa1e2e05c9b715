//! Discord interactions: `X-Signature-Ed25519` (hex) over `X-Signature-Timestamp` ‖ body, checked
//! with the application's public key (hex). `PING` (`type` 1) is answered `{"type":1}` by
//! hooksmith. Discord expects an answer to other interactions within three seconds: give their
//! handlers `ack = "handled"`.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::{
    Defaults, Params, Scheme, Secret, SignInput, SignatureError, SignedRequest, Verified, Verifier,
    header_name, header_value, parse_timestamp, single_header,
};

pub(super) const SCHEME: Scheme = Scheme {
    name: "discord",
    defaults: Defaults {
        secret_env: Some("DISCORD_PUBLIC_KEY"),
        event_field: Some("type"),
        id_field: Some("id"),
        ..Defaults::NONE
    },
    needs_secret: true,
    build,
    sign,
    check_secret: |key| public_key(key).map(drop),
};

fn key_bytes(hex_key: &str, what: &str) -> Result<[u8; 32], String> {
    hex::decode(hex_key.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| format!("the Discord {what} is 64 hexadecimal characters (32 bytes)"))
}

fn public_key(hex_key: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_bytes(&key_bytes(hex_key, "public key")?)
        .map_err(|_| "the Discord public key is not a valid ed25519 key".into())
}

#[derive(Debug)]
struct Discord {
    keys: Vec<VerifyingKey>,
}

fn build(_: &Params<'_>, secrets: &[Secret]) -> Result<Arc<dyn Verifier>, String> {
    if secrets.is_empty() {
        return Err("no public key configured".into());
    }
    let keys = secrets
        .iter()
        .map(|s| public_key(s.expose_str()))
        .collect::<Result<_, _>>()?;
    Ok(Arc::new(Discord { keys }))
}

impl Verifier for Discord {
    fn verify(&self, request: &SignedRequest<'_>) -> Result<Verified, SignatureError> {
        let timestamp_text = single_header(request.headers, "x-signature-timestamp")?.trim();
        let timestamp = parse_timestamp(timestamp_text)?;
        let signature = hex::decode(single_header(request.headers, "x-signature-ed25519")?.trim())
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or(SignatureError::Malformed)?;
        let message = [timestamp_text.as_bytes(), request.body].concat();
        let matched = self.keys.iter().fold(false, |found, key| {
            found | key.verify(&message, &signature).is_ok()
        });
        if matched {
            Ok(Verified {
                timestamp: Some(timestamp),
            })
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    fn intercept(&self, payload: &[u8]) -> Option<Response> {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(rename = "type")]
            kind: Option<u64>,
        }
        let probe: Probe = serde_json::from_slice(payload).ok()?;
        (probe.kind == Some(1))
            .then(|| axum::Json(serde_json::json!({ "type": 1 })).into_response())
    }
}

/// Signs with a hex ed25519 private key (the sender's side, for tests).
fn sign(
    _: &Params<'_>,
    secret: &str,
    input: &SignInput<'_>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let key = SigningKey::from_bytes(&key_bytes(secret, "private key")?);
    let t = input.timestamp.to_string();
    let signature = key.sign(&[t.as_bytes(), input.body].concat());
    Ok(vec![
        (header_name("x-signature-timestamp"), header_value(t)?),
        (
            header_name("x-signature-ed25519"),
            header_value(hex::encode(signature.to_bytes()))?,
        ),
    ])
}
