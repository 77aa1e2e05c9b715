//! Standard Webhooks (and Svix): `webhook-id`, `webhook-timestamp`, `webhook-signature` (or the
//! same with `svix-`), signed content `"{id}.{timestamp}.{body}"`.
//!
//! `v1,<base64>` entries are HMAC-SHA256 keyed with the base64 after `whsec_`; `v1a,<base64>`
//! entries are ed25519 signatures checked with a configured `whpk_` public key, and ignored when
//! only symmetric secrets are configured. Entries are space-separated; an entry that cannot be
//! read is skipped, and an empty or truncated one never verifies.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::hmac::{Algorithm, Keyed, any_matches};
use super::{
    Defaults, Params, Scheme, Secret, SignInput, SignatureError, SignedRequest, Verified, Verifier,
    header_name, header_value, parse_timestamp, single_header,
};

pub(super) const SCHEME: Scheme = Scheme {
    name: "standard",
    defaults: Defaults {
        secret_env: Some("STANDARD_WEBHOOK_SECRET"),
        event_field: Some("type"),
        id_header: &["webhook-id", "svix-id"],
        ..Defaults::NONE
    },
    needs_secret: true,
    build,
    sign,
    check_secret: |secret| decode_key(secret).map(drop),
};

/// A decoded Standard Webhooks key.
pub(crate) enum Key {
    /// `whsec_<base64>` (or bare base64): an HMAC key.
    Symmetric(Vec<u8>),
    /// `whpk_<base64>`: an ed25519 public key.
    Public(VerifyingKey),
    /// `whsk_<base64>`: an ed25519 private key (signing only).
    Private(SigningKey),
}

/// Decodes a configured key; the error names the expected form, never the value.
pub(crate) fn decode_key(secret: &str) -> Result<Key, String> {
    let decode = |b64: &str| BASE64.decode(b64).ok().filter(|bytes| !bytes.is_empty());
    if let Some(b64) = secret.strip_prefix("whpk_") {
        let bytes: [u8; 32] = decode(b64)
            .and_then(|b| b.try_into().ok())
            .ok_or("a `whpk_` key is the base64 of a 32-byte ed25519 public key")?;
        return VerifyingKey::from_bytes(&bytes)
            .map(Key::Public)
            .map_err(|_| "the `whpk_` key is not a valid ed25519 public key".into());
    }
    if let Some(b64) = secret.strip_prefix("whsk_") {
        let bytes: [u8; 32] = decode(b64)
            .and_then(|b| b.try_into().ok())
            .ok_or("a `whsk_` key is the base64 of a 32-byte ed25519 private key")?;
        return Ok(Key::Private(SigningKey::from_bytes(&bytes)));
    }
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    decode(b64).map(Key::Symmetric).ok_or_else(|| {
        "a Standard Webhooks secret is `whsec_` followed by base64 (as the provider shows it)"
            .into()
    })
}

#[derive(Debug)]
struct Standard {
    keys: Vec<Keyed>,
    public: Vec<VerifyingKey>,
}

fn build(_: &Params<'_>, secrets: &[Secret]) -> Result<Arc<dyn Verifier>, String> {
    let (mut keys, mut public) = (Vec::new(), Vec::new());
    for secret in secrets {
        match decode_key(secret.expose_str())? {
            Key::Symmetric(bytes) => keys.push(Keyed::new(Algorithm::Sha256, &bytes)),
            Key::Public(key) => public.push(key),
            Key::Private(_) => {
                return Err(
                    "a `whsk_` private key belongs to the sender; configure its `whpk_` public key"
                        .into(),
                );
            }
        }
    }
    if keys.is_empty() && public.is_empty() {
        return Err("no secret configured".into());
    }
    Ok(Arc::new(Standard { keys, public }))
}

/// The three headers, from the `webhook-` family if its signature header is present, else `svix-`.
fn headers(map: &HeaderMap) -> Result<(&str, &str, &str), SignatureError> {
    let family = if map.contains_key("webhook-signature") {
        "webhook"
    } else {
        "svix"
    };
    let get = |name: &str| single_header(map, &format!("{family}-{name}"));
    Ok((get("id")?, get("timestamp")?, get("signature")?))
}

/// The entries of a signature header: `(version, decoded bytes)`, unreadable ones skipped.
pub(crate) fn parse_signatures(value: &str) -> Vec<(&str, Vec<u8>)> {
    value
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter_map(|(version, b64)| {
            Some((version, BASE64.decode(b64).ok().filter(|b| !b.is_empty())?))
        })
        .collect()
}

impl Verifier for Standard {
    fn verify(&self, request: &SignedRequest<'_>) -> Result<Verified, SignatureError> {
        let (id, timestamp_text, signatures) = headers(request.headers)?;
        let timestamp = parse_timestamp(timestamp_text)?;
        let entries = parse_signatures(signatures);
        let v1: Vec<Vec<u8>> = entries
            .iter()
            .filter(|(v, tag)| *v == "v1" && tag.len() == 32)
            .map(|(_, tag)| tag.clone())
            .collect();
        let v1a: Vec<Signature> = entries
            .iter()
            .filter(|(v, _)| *v == "v1a")
            .filter_map(|(_, sig)| Signature::from_slice(sig).ok())
            .collect();
        let usable =
            !v1.is_empty() && !self.keys.is_empty() || !v1a.is_empty() && !self.public.is_empty();
        if !usable {
            return Err(if entries.is_empty() {
                SignatureError::Malformed
            } else {
                SignatureError::Mismatch
            });
        }
        let parts: [&[u8]; 5] = [
            id.as_bytes(),
            b".",
            timestamp_text.trim().as_bytes(),
            b".",
            request.body,
        ];
        let mut matched = any_matches(&self.keys, &parts, &v1);
        if !self.public.is_empty() && !v1a.is_empty() {
            let message = parts.concat();
            for key in &self.public {
                for signature in &v1a {
                    matched |= key.verify(&message, signature).is_ok();
                }
            }
        }
        if matched {
            Ok(Verified {
                timestamp: Some(timestamp),
            })
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

fn sign(
    _: &Params<'_>,
    secret: &str,
    input: &SignInput<'_>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let t = input.timestamp.to_string();
    let parts: [&[u8]; 5] = [input.id.as_bytes(), b".", t.as_bytes(), b".", input.body];
    let signature = match decode_key(secret)? {
        Key::Symmetric(bytes) => format!(
            "v1,{}",
            BASE64.encode(Keyed::new(Algorithm::Sha256, &bytes).compute(&parts))
        ),
        Key::Private(key) => format!(
            "v1a,{}",
            BASE64.encode(key.sign(&parts.concat()).to_bytes())
        ),
        Key::Public(_) => {
            return Err("a `whpk_` public key cannot sign; use the `whsk_` private key".into());
        }
    };
    Ok(vec![
        (
            header_name("webhook-id"),
            header_value(input.id.to_owned())?,
        ),
        (header_name("webhook-timestamp"), header_value(t)?),
        (header_name("webhook-signature"), header_value(signature)?),
    ])
}
