//! Linear: `Linear-Signature: <hex HMAC-SHA256(secret, body)>`; event `Linear-Event`, id
//! `Linear-Delivery`; freshness from the body's `webhookTimestamp` (milliseconds), checked against
//! the endpoint's tolerance like every signed timestamp.

use std::sync::Arc;

use serde::Deserialize;

use super::hmac::{Algorithm, HmacHeader};
use super::{Defaults, Params, Scheme, SignatureError, SignedRequest, Verified, Verifier};
use crate::spec::Encoding;

const PARAMS: Params<'static> = Params {
    header: Some("linear-signature"),
    prefix: Some(""),
    encoding: Some(Encoding::Hex),
};

pub(super) const SCHEME: Scheme = Scheme {
    name: "linear",
    defaults: Defaults {
        secret_env: Some("LINEAR_WEBHOOK_SECRET"),
        event_header: &["linear-event"],
        id_header: &["linear-delivery"],
        action_field: Some("action"),
        ..Defaults::NONE
    },
    needs_secret: true,
    build: |_, secrets| {
        Ok(Arc::new(Linear(HmacHeader::new(
            Algorithm::Sha256,
            "linear-signature",
            "",
            Encoding::Hex,
            secrets,
        )?)))
    },
    sign: |_, secret, input| (super::hmac::HMAC_SHA256.sign)(&PARAMS, secret, input),
    check_secret: |_| Ok(()),
};

#[derive(Debug)]
struct Linear(HmacHeader);

/// The body's `webhookTimestamp` in whole seconds; `None` when absent or not an integer.
///
/// Linear writes it as the last member of the document, so it is first looked for there, reading
/// backwards over a few bytes; only a body shaped otherwise is parsed whole.
pub(crate) fn body_timestamp(body: &[u8]) -> Option<i64> {
    tail_timestamp(body).or_else(|| parsed_timestamp(body))
}

/// `"webhookTimestamp": <digits>` as the last member of the root object, read from the end. The
/// shape is strict: the number is followed only by the root's closing brace, the key is opened
/// right after `{` or `,` (so it is a whole key, not the end of an escaped one), and nothing else
/// fits that shape in a well-formed document.
fn tail_timestamp(body: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"\"webhookTimestamp\"";
    let back = |mut i: usize| {
        while i > 0 && body[i - 1].is_ascii_whitespace() {
            i -= 1;
        }
        i
    };
    let close = back(body.len()).checked_sub(1)?;
    if body[close] != b'}' {
        return None;
    }
    let digits_end = back(close);
    let mut digits_start = digits_end;
    while digits_start > 0 && body[digits_start - 1].is_ascii_digit() {
        digits_start -= 1;
    }
    let colon = back(digits_start).checked_sub(1)?;
    if digits_start == digits_end || body[colon] != b':' {
        return None;
    }
    let key_end = back(colon);
    let key_start = key_end.checked_sub(KEY.len())?;
    let opener = back(key_start).checked_sub(1)?;
    if &body[key_start..key_end] != KEY || !matches!(body[opener], b'{' | b',') {
        return None;
    }
    let millis: i64 = std::str::from_utf8(&body[digits_start..digits_end])
        .ok()?
        .parse()
        .ok()?;
    Some(millis.div_euclid(1000))
}

fn parsed_timestamp(body: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        webhook_timestamp: Option<serde_json::Number>,
    }
    let probe: Probe = serde_json::from_slice(body).ok()?;
    let millis = probe.webhook_timestamp?.as_i64()?;
    Some(millis.div_euclid(1000))
}

impl Verifier for Linear {
    fn verify(&self, request: &SignedRequest<'_>) -> Result<Verified, SignatureError> {
        self.0.verify(request)?;
        let timestamp = body_timestamp(request.body).ok_or(SignatureError::Malformed)?;
        Ok(Verified {
            timestamp: Some(timestamp),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_timestamp_is_read_from_the_end_when_it_is_the_last_member() {
        let body = br#"{"action":"create","data":{"webhookTimestamp":1},"webhookTimestamp" : 1614265330123 }
"#;
        assert_eq!(tail_timestamp(body), Some(1_614_265_330));
        assert_eq!(body_timestamp(body), Some(1_614_265_330));
        // Shapes the backwards read does not vouch for go to the full parse.
        for (body, parsed) in [
            (&br#"{"a":{"webhookTimestamp":1000}}"#[..], None),
            (br#"{"webhookTimestamp":2000,"a":1}"#, Some(2)),
            (br#"{"x\"webhookTimestamp":3000}"#, None),
            (br#"{"webhookTimestamp":4.5e3}"#, None),
            (br#"["webhookTimestamp",5000]"#, None),
        ] {
            assert_eq!(
                tail_timestamp(body),
                None,
                "{}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(body_timestamp(body), parsed);
        }
    }

    proptest! {
        /// Whenever the backwards read answers, a full parse of the document answers the same.
        #[test]
        fn the_backwards_read_agrees_with_a_full_parse(
            members in proptest::collection::vec(("[a-zA-Z\"\\\\]{1,6}", "[0-9]{1,4}|\"[a-z\"\\\\{}:,]{0,6}\"|\\{\\}"), 0..4),
            nested in any::<bool>(),
            ws in "[ \n]{0,2}",
            millis in 0i64..4_000_000_000_000,
        ) {
            let mut body = String::from("{");
            for (key, value) in &members {
                body.push_str(&serde_json::to_string(key).unwrap());
                body.push(':');
                body.push_str(value);
                body.push(',');
            }
            if nested {
                body.push_str(&format!("\"n\":{{\"webhookTimestamp\"{ws}:{ws}{millis}}}}}"));
            } else {
                body.push_str(&format!("\"webhookTimestamp\"{ws}:{ws}{millis}{ws}}}"));
            }
            let fast = tail_timestamp(body.as_bytes());
            prop_assert_eq!(fast.is_some(), !nested);
            if serde_json::from_str::<serde_json::Value>(&body).is_ok() {
                prop_assert_eq!(fast.or(parsed_timestamp(body.as_bytes())), parsed_timestamp(body.as_bytes()));
            }
        }

        #[test]
        fn any_bytes_are_read_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = body_timestamp(&bytes);
        }
    }
}
