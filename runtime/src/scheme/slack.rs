//! Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:{ts}:{body}")>` with
//! `X-Slack-Request-Timestamp`. The `url_verification` challenge is answered by hooksmith, after
//! verification, and not stored. Slash commands and interactivity arrive form-encoded; their
//! fields (or the JSON in `payload`) are what handlers read.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::hmac::{Algorithm, Keyed, any_matches};
use super::{
    Defaults, Params, Scheme, SignInput, SignatureError, SignedRequest, Verified, Verifier,
    header_name, header_value, parse_timestamp, single_header,
};

pub(super) const SCHEME: Scheme = Scheme {
    name: "slack",
    defaults: Defaults {
        secret_env: Some("SLACK_SIGNING_SECRET"),
        event_field: Some("type"),
        id_field: Some("event_id"),
        ..Defaults::NONE
    },
    needs_secret: true,
    build: |_, secrets| {
        Ok(Arc::new(Slack {
            keys: Keyed::all(Algorithm::Sha256, secrets)?,
        }))
    },
    sign,
    check_secret: |_| Ok(()),
};

#[derive(Debug)]
struct Slack {
    keys: Vec<Keyed>,
}

impl Verifier for Slack {
    fn verify(&self, request: &SignedRequest<'_>) -> Result<Verified, SignatureError> {
        let timestamp_text = single_header(request.headers, "x-slack-request-timestamp")?.trim();
        let timestamp = parse_timestamp(timestamp_text)?;
        let signature = single_header(request.headers, "x-slack-signature")?;
        let tag = signature
            .trim()
            .strip_prefix("v0=")
            .and_then(|hex| hex::decode(hex).ok())
            .filter(|tag| tag.len() == 32)
            .ok_or(SignatureError::Malformed)?;
        let parts: [&[u8]; 4] = [b"v0:", timestamp_text.as_bytes(), b":", request.body];
        if any_matches(&self.keys, &parts, &[tag]) {
            Ok(Verified {
                timestamp: Some(timestamp),
            })
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    fn intercept(&self, payload: &[u8]) -> Option<Response> {
        #[derive(Deserialize)]
        struct Probe<'a> {
            #[serde(rename = "type", borrow)]
            kind: Option<&'a str>,
            #[serde(borrow)]
            challenge: Option<&'a str>,
        }
        let probe: Probe<'_> = serde_json::from_slice(payload).ok()?;
        match (probe.kind, probe.challenge) {
            (Some("url_verification"), Some(challenge)) => {
                Some(axum::Json(serde_json::json!({ "challenge": challenge })).into_response())
            }
            _ => None,
        }
    }
}

fn sign(
    _: &Params<'_>,
    secret: &str,
    input: &SignInput<'_>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let t = input.timestamp.to_string();
    let tag = Keyed::new(Algorithm::Sha256, secret.as_bytes()).compute(&[
        b"v0:",
        t.as_bytes(),
        b":",
        input.body,
    ]);
    Ok(vec![
        (header_name("x-slack-request-timestamp"), header_value(t)?),
        (
            header_name("x-slack-signature"),
            header_value(format!("v0={}", hex::encode(tag)))?,
        ),
    ])
}
