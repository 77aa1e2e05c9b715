//! HMAC over the raw body, with the digest in one header: the generic `hmac-sha256` and
//! `hmac-sha1` schemes, and the keyed MACs every HMAC scheme shares.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{
    Defaults, Params, Scheme, Secret, SignInput, SignatureError, SignedRequest, Verified, Verifier,
    header_value, single_header,
};
use crate::spec::Encoding;

/// `sig = "hmac-sha256"`: `header`, `prefix` and `encoding` (hex) are optional; without `header`
/// the signature is read in GitHub's format, `X-Hub-Signature-256: sha256=<hex>` (seed 003's
/// default).
pub(super) const HMAC_SHA256: Scheme = Scheme {
    name: "hmac-sha256",
    defaults: Defaults::NONE,
    needs_secret: true,
    build: |params, secrets| build(Algorithm::Sha256, params, secrets),
    sign: |params, secret, input| sign(Algorithm::Sha256, params, secret, input),
    check_secret: |_| Ok(()),
};

/// `sig = "hmac-sha1"`: legacy providers; same parameters; without `header`, GitHub's legacy
/// format `X-Hub-Signature: sha1=<hex>`.
pub(super) const HMAC_SHA1: Scheme = Scheme {
    name: "hmac-sha1",
    build: |params, secrets| build(Algorithm::Sha1, params, secrets),
    sign: |params, secret, input| sign(Algorithm::Sha1, params, secret, input),
    ..HMAC_SHA256
};

/// The header, prefix and encoding an endpoint's params select.
fn format(algorithm: Algorithm, params: &Params<'_>) -> (String, String, Encoding) {
    // Without a header, GitHub's format (and its prefix) is the default; with one, no prefix
    // unless written.
    let (header, default_prefix) = match (params.header, algorithm) {
        (Some(header), _) => (header, ""),
        (None, Algorithm::Sha256) => ("x-hub-signature-256", "sha256="),
        (None, Algorithm::Sha1) => ("x-hub-signature", "sha1="),
    };
    (
        header.to_owned(),
        params.prefix.unwrap_or(default_prefix).to_owned(),
        params.encoding.unwrap_or(Encoding::Hex),
    )
}

fn build(
    algorithm: Algorithm,
    params: &Params<'_>,
    secrets: &[Secret],
) -> Result<Arc<dyn Verifier>, String> {
    let (header, prefix, encoding) = format(algorithm, params);
    Ok(Arc::new(HmacHeader::new(
        algorithm, &header, &prefix, encoding, secrets,
    )?))
}

fn sign(
    algorithm: Algorithm,
    params: &Params<'_>,
    secret: &str,
    input: &SignInput<'_>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let (header, prefix, encoding) = format(algorithm, params);
    let tag = Keyed::new(algorithm, secret.as_bytes()).compute(&[input.body]);
    let name = HeaderName::try_from(header).map_err(|e| e.to_string())?;
    Ok(vec![(
        name,
        header_value(format!("{prefix}{}", encode(encoding, &tag)))?,
    )])
}

/// Which hash the MAC uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Sha256,
    Sha1,
}

impl Algorithm {
    /// The MAC's length in bytes.
    pub(crate) fn len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha1 => 20,
        }
    }
}

/// A MAC keyed once at startup and cloned per request.
#[derive(Clone)]
pub(crate) enum Keyed {
    Sha256(Hmac<Sha256>),
    Sha1(Hmac<Sha1>),
}

impl Keyed {
    pub(crate) fn new(algorithm: Algorithm, key: &[u8]) -> Self {
        // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
        match algorithm {
            Algorithm::Sha256 => Keyed::Sha256(
                <Hmac<Sha256> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes any key")),
            ),
            Algorithm::Sha1 => Keyed::Sha1(
                <Hmac<Sha1> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes any key")),
            ),
        }
    }

    /// Keys one MAC per secret.
    pub(crate) fn all(algorithm: Algorithm, secrets: &[Secret]) -> Result<Vec<Keyed>, String> {
        if secrets.is_empty() {
            return Err("no secret configured".into());
        }
        Ok(secrets
            .iter()
            .map(|s| Keyed::new(algorithm, s.expose()))
            .collect())
    }

    /// The MAC of `parts`, concatenated.
    pub(crate) fn compute(&self, parts: &[&[u8]]) -> Vec<u8> {
        self.tag(parts).as_slice().to_vec()
    }

    /// The MAC of `parts`, concatenated, held inline: verifying allocates nothing.
    fn tag(&self, parts: &[&[u8]]) -> Tag {
        match self.clone() {
            Keyed::Sha256(mut mac) => {
                parts.iter().for_each(|p| mac.update(p));
                Tag::new(&mac.finalize().into_bytes())
            }
            Keyed::Sha1(mut mac) => {
                parts.iter().for_each(|p| mac.update(p));
                Tag::new(&mac.finalize().into_bytes())
            }
        }
    }
}

/// A MAC or a decoded signature of at most [`Tag::MAX`] bytes, held inline.
pub(crate) struct Tag {
    bytes: [u8; Tag::MAX],
    len: usize,
}

impl Tag {
    /// Room for any digest a scheme sends (SHA-256's is 32 bytes).
    const MAX: usize = 64;

    fn new(bytes: &[u8]) -> Self {
        let mut tag = Tag {
            bytes: [0; Tag::MAX],
            len: bytes.len(),
        };
        tag.bytes[..bytes.len()].copy_from_slice(bytes);
        tag
    }

    /// Decodes a digest of exactly `len` bytes; `None` when it is not valid in that encoding or
    /// not that long.
    fn decode(encoding: Encoding, text: &str, len: usize) -> Option<Self> {
        let mut tag = Tag {
            bytes: [0; Tag::MAX],
            len,
        };
        let out = tag.bytes.get_mut(..len)?;
        let decoded = match encoding {
            Encoding::Hex => {
                (text.len() == 2 * len && hex::decode_to_slice(text, out).is_ok()).then_some(len)
            }
            Encoding::Base64 => BASE64.decode_slice(text, &mut tag.bytes).ok(),
        };
        (decoded == Some(len)).then_some(tag)
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
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

/// Whether any key's MAC of `parts` equals any of `tags`. Every pair is compared, in constant
/// time and with an explicit length check, so timing reveals neither which key nor which tag.
pub(crate) fn any_matches<T: AsRef<[u8]>>(keys: &[Keyed], parts: &[&[u8]], tags: &[T]) -> bool {
    keys.iter().fold(false, |found, key| {
        let mac = key.tag(parts);
        let mac = mac.as_slice();
        tags.iter().fold(found, |found, tag| {
            let tag = tag.as_ref();
            found | (tag.len() == mac.len() && bool::from(mac.ct_eq(tag)))
        })
    })
}

/// `<header>: <prefix><digest>` with the digest over the raw body.
#[derive(Debug)]
pub(crate) struct HmacHeader {
    header: HeaderName,
    prefix: String,
    encoding: Encoding,
    len: usize,
    keys: Vec<Keyed>,
}

impl HmacHeader {
    pub(crate) fn new(
        algorithm: Algorithm,
        header: &str,
        prefix: &str,
        encoding: Encoding,
        secrets: &[Secret],
    ) -> Result<Self, String> {
        let header = HeaderName::try_from(header)
            .map_err(|_| format!("`{header}` is not a valid header name"))?;
        Ok(Self {
            header,
            prefix: prefix.to_owned(),
            encoding,
            len: algorithm.len(),
            keys: Keyed::all(algorithm, secrets)?,
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
        let tag = Tag::decode(self.encoding, digest, self.len).ok_or(SignatureError::Malformed)?;
        if any_matches(&self.keys, &[request.body], &[tag.as_slice()]) {
            Ok(Verified::default())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// Encodes a digest (lowercase hex, padded base64).
pub(crate) fn encode(encoding: Encoding, bytes: &[u8]) -> String {
    match encoding {
        Encoding::Hex => hex::encode(bytes),
        Encoding::Base64 => BASE64.encode(bytes),
    }
}
