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

/// The `type` of the request Slack sends to check an Events API URL.
const CHALLENGE_TYPE: &str = "url_verification";

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
        // Every delivery passes here, and only the rare challenge is answered. The probe borrows
        // `type` as the body spells it, so a body without these bytes is not a challenge: a
        // substring search turns it away without parsing it (the routing walk reads it once).
        memchr::memmem::find(payload, CHALLENGE_TYPE.as_bytes())?;
        let challenge = challenge(payload)?;
        Some(axum::Json(serde_json::json!({ "challenge": challenge })).into_response())
    }
}

/// The challenge of a `url_verification` request, from a parse of the whole body.
fn challenge(payload: &[u8]) -> Option<&str> {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<&'a str>,
        #[serde(borrow)]
        challenge: Option<&'a str>,
    }
    let probe: Probe<'_> = serde_json::from_slice(payload).ok()?;
    match (probe.kind, probe.challenge) {
        (Some(CHALLENGE_TYPE), Some(challenge)) => Some(challenge),
        _ => None,
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Slack, Verifier, challenge};

    /// The challenge `intercept` answers with, if it answers.
    fn answer(payload: &[u8]) -> Option<String> {
        let response = Slack { keys: Vec::new() }.intercept(payload)?;
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .expect("a body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        Some(json["challenge"].as_str().expect("a challenge").to_owned())
    }

    /// What a full parse of the body says, the substring search aside.
    fn parsed(payload: &[u8]) -> Option<String> {
        challenge(payload).map(str::to_owned)
    }

    #[test]
    fn the_challenge_is_answered_and_events_are_not() {
        let challenge = br#"{"token":"t","challenge":"3eZbrw1aBm2r","type":"url_verification"}"#;
        assert_eq!(answer(challenge).as_deref(), Some("3eZbrw1aBm2r"));
        // An event that mentions the word is still an event.
        let event =
            br#"{"type":"event_callback","event":{"text":"url_verification"},"challenge":"x"}"#;
        assert_eq!(answer(event), None);
        assert_eq!(
            answer(br#"{"type":"event_callback","event_id":"Ev1"}"#),
            None
        );
        assert_eq!(answer(b"not json url_verification"), None);
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("url_verification".to_owned()),
            Just("url\\u005fverification".to_owned()),
            Just("event_callback".to_owned()),
            "[a-z_\\\\\"]{0,12}",
        ]
    }

    proptest! {
        /// The substring search only ever turns away what the parse would turn away, whatever
        /// the fields, their order, their escapes and the bytes around them.
        #[test]
        fn the_search_agrees_with_a_full_parse(
            fields in proptest::collection::vec(
                (prop_oneof![Just("type"), Just("challenge"), Just("event"), Just("text")], text()),
                0..5,
            ),
            prefix in "[ {\"]{0,2}",
            suffix in "[ }]{0,2}",
        ) {
            let members: Vec<String> = fields
                .iter()
                .map(|(name, value)| format!("\"{name}\":\"{value}\""))
                .collect();
            let payload = format!("{prefix}{{{}}}{suffix}", members.join(","));
            prop_assert_eq!(answer(payload.as_bytes()), parsed(payload.as_bytes()), "{}", payload);
        }
    }
}
