//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]`, HMAC-SHA256 of
//! `"{t}.{body}"` keyed with the whole secret string (`whsec_` included).
//!
//! Traps handled: any `v1` may match (Stripe sends one per active secret while you roll it); an
//! unreadable `v1` is skipped rather than failing the others; `v0` (test-mode legacy) never
//! counts, so a header with only `v0` is refused; `t` must appear exactly once.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::hmac::{Algorithm, Keyed, any_matches};
use super::{
    Defaults, Scheme, SignInput, SignatureError, SignedRequest, Verified, Verifier, header_name,
    header_value, parse_timestamp, single_header,
};

pub(super) const SCHEME: Scheme = Scheme {
    name: "stripe",
    defaults: Defaults {
        secret_env: Some("STRIPE_WEBHOOK_SECRET"),
        event_field: Some("type"),
        id_field: Some("id"),
        ..Defaults::NONE
    },
    needs_secret: true,
    build: |_, secrets| {
        Ok(Arc::new(Stripe {
            keys: Keyed::all(Algorithm::Sha256, secrets)?,
        }))
    },
    sign,
    check_secret: |_| Ok(()),
};

#[derive(Debug)]
struct Stripe {
    keys: Vec<Keyed>,
}

/// The parts of a `Stripe-Signature` header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    pub(crate) timestamp_text: &'a str,
    pub(crate) timestamp: i64,
    pub(crate) v1: Vec<Vec<u8>>,
}

/// Parses a `Stripe-Signature` value.
pub(crate) fn parse(value: &str) -> Result<Header<'_>, SignatureError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for part in value.split(',') {
        let (key, val) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" if timestamp.is_some() => return Err(SignatureError::Malformed),
            "t" => timestamp = Some((val, parse_timestamp(val)?)),
            "v1" => v1.extend(hex::decode(val).ok().filter(|tag| tag.len() == 32)),
            _ => {}
        }
    }
    let (timestamp_text, timestamp) = timestamp.ok_or(SignatureError::Malformed)?;
    if v1.is_empty() {
        return Err(SignatureError::Malformed);
    }
    Ok(Header {
        timestamp_text,
        timestamp,
        v1,
    })
}

impl Verifier for Stripe {
    fn verify(&self, request: &SignedRequest<'_>) -> Result<Verified, SignatureError> {
        let header = parse(single_header(request.headers, "stripe-signature")?)?;
        let parts: [&[u8]; 3] = [header.timestamp_text.as_bytes(), b".", request.body];
        if any_matches(&self.keys, &parts, &header.v1) {
            Ok(Verified {
                timestamp: Some(header.timestamp),
            })
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

fn sign(
    _: &super::Params<'_>,
    secret: &str,
    input: &SignInput<'_>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let t = input.timestamp.to_string();
    let tag =
        Keyed::new(Algorithm::Sha256, secret.as_bytes()).compute(&[t.as_bytes(), b".", input.body]);
    Ok(vec![(
        header_name("stripe-signature"),
        header_value(format!("t={t},v1={}", hex::encode(tag)))?,
    )])
}
