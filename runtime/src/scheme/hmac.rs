//! HMAC over the raw body, with the digest in one header: the generic `hmac-sha256` and
//! `hmac-sha1` schemes, and the base of `github`.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderName, HeaderValue};
use sha1::Sha1;
use sha2::Sha256;

use super::{
    Defaults, Params, Scheme, Secret, SignatureError, SignedRequest, Verified, Verifier,
    single_header,
};
use crate::spec::Encoding;

/// `sig = "hmac-sha256"`: `header`, `prefix` and `encoding` (hex) are optional; without `header`
/// the signature is read in GitHub's format, `X-Hub-Signature-256: sha256=<hex>` (seed 003's
/// default).
pub(super) const HMAC_SHA256: Scheme = Scheme {
    name: "hmac-sha256",
    defaults: Defaults {
        secret_env: None,
        event_header: None,
        event_field: None,
        id_header: None,
        id_field: None,
        action_field: None,
        max_body: None,
        form_payload: false,
    },
    needs_secret: true,
    build: |params, secrets| build(Algorithm::Sha256, params, secrets),
};

/// `sig = "hmac-sha1"`: legacy providers; same parameters; without `header`, GitHub's legacy
/// format `X-Hub-Signature: sha1=<hex>`.
pub(super) const HMAC_SHA1: Scheme = Scheme {
    name: "hmac-sha1",
    build: |params, secrets| build(Algorithm::Sha1, params, secrets),
    ..HMAC_SHA256
};

fn build(
    algorithm: Algorithm,
    params: &Params<'_>,
    secrets: Vec<Secret>,
) -> Result<Arc<dyn Verifier>, String> {
    // Without a header, GitHub's format (and its prefix) is the default; with one, no prefix
    // unless written.
    let (header, default_prefix) = match (params.header, algorithm) {
        (Some(header), _) => (header, ""),
        (None, Algorithm::Sha256) => ("x-hub-signature-256", "sha256="),
        (None, Algorithm::Sha1) => ("x-hub-signature", "sha1="),
    };
    Ok(Arc::new(HmacHeader::new(
        algorithm,
        header,
        params.prefix.unwrap_or(default_prefix),
        params.encoding.unwrap_or(Encoding::Hex),
        secrets,
    )?))
}

/// Which hash the MAC uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Sha256,
    Sha1,
}

/// A MAC keyed once at startup and cloned per request.
#[derive(Clone)]
pub(crate) enum Keyed {
    Sha256(Hmac<Sha256>),
    Sha1(Hmac<Sha1>),
}

impl Keyed {
    pub(crate) fn new(algorithm: Algorithm, secret: &Secret) -> Self {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        match algorithm {
            Algorithm::Sha256 => Keyed::Sha256(
                <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose())
                    .unwrap_or_else(|_| unreachable!()),
            ),
            Algorithm::Sha1 => Keyed::Sha1(
                <Hmac<Sha1> as KeyInit>::new_from_slice(secret.expose())
                    .unwrap_or_else(|_| unreachable!()),
            ),
        }
    }

    /// Whether `tag` is the MAC of `parts` (concatenated), compared in constant time with an
    /// explicit length check.
    pub(crate) fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        match self.clone() {
            Keyed::Sha256(mut mac) => {
                parts.iter().for_each(|p| mac.update(p));
                mac.verify_slice(tag).is_ok()
            }
            Keyed::Sha1(mut mac) => {
                parts.iter().for_each(|p| mac.update(p));
                mac.verify_slice(tag).is_ok()
            }
        }
    }

    /// The MAC of `parts`.
    pub(crate) fn sign(&self, parts: &[&[u8]]) -> Vec<u8> {
        match self.clone() {
            Keyed::Sha256(mut mac) => {
                parts.iter().for_each(|p| mac.update(p));
                mac.finalize().into_bytes().to_vec()
            }
            Keyed::Sha1(mut mac) => {
                parts.iter().for_each(|p| mac.update(p));
                mac.finalize().into_bytes().to_vec()
            }
        }
    }
}

impl fmt::Debug for Keyed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Keyed::Sha256(_) => "HMAC-SHA256(<redacted>)",
            Keyed::Sha1(_) => "HMAC-SHA1(<redacted>)",
        })
    }
}

/// `<header>: <prefix><digest>` with the digest over the raw body.
#[derive(Debug)]
pub(crate) struct HmacHeader {
    header: HeaderName,
    prefix: String,
    encoding: Encoding,
    keys: Vec<Keyed>,
}

impl HmacHeader {
    pub(crate) fn new(
        algorithm: Algorithm,
        header: &str,
        prefix: &str,
        encoding: Encoding,
        secrets: Vec<Secret>,
    ) -> Result<Self, String> {
        let header = HeaderName::try_from(header)
            .map_err(|_| format!("`{header}` is not a valid header name"))?;
        if secrets.is_empty() {
            return Err("no secret configured".into());
        }
        Ok(Self {
            header,
            prefix: prefix.to_owned(),
            encoding,
            keys: secrets.iter().map(|s| Keyed::new(algorithm, s)).collect(),
        })
    }
}

impl Verifier for HmacHeader {
    fn verify(&self, request: &SignedRequest<'_>) -> Result<Verified, SignatureError> {
        let value = single_header(request.headers, self.header.as_str())?;
        let digest = value
            .trim()
            .strip_prefix(self.prefix.as_str())
            .ok_or(SignatureError::Malformed)?;
        let tag = decode(self.encoding, digest).ok_or(SignatureError::Malformed)?;
        if tag.is_empty() {
            return Err(SignatureError::Malformed);
        }
        let body = [request.body];
        // Every key is tried, so timing does not reveal which one matched.
        let matched = self
            .keys
            .iter()
            .fold(false, |found, key| key.verify(&body, &tag) | found);
        if matched {
            Ok(Verified::default())
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    fn sign(&self, body: &[u8], _now_secs: i64) -> Vec<(HeaderName, HeaderValue)> {
        let Some(key) = self.keys.first() else {
            return Vec::new();
        };
        let tag = key.sign(&[body]);
        let value = format!("{}{}", self.prefix, encode(self.encoding, &tag));
        HeaderValue::try_from(value)
            .map(|value| vec![(self.header.clone(), value)])
            .unwrap_or_default()
    }
}

/// Decodes a digest; `None` when it is not valid in that encoding.
pub(crate) fn decode(encoding: Encoding, text: &str) -> Option<Vec<u8>> {
    match encoding {
        Encoding::Hex => hex::decode(text).ok(),
        Encoding::Base64 => BASE64.decode(text).ok(),
    }
}

/// Encodes a digest (lowercase hex, padded base64).
pub(crate) fn encode(encoding: Encoding, bytes: &[u8]) -> String {
    match encoding {
        Encoding::Hex => hex::encode(bytes),
        Encoding::Base64 => BASE64.encode(bytes),
    }
}
