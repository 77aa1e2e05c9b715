//! JWT: a bearer token in a header (seed 003), by default `Authorization: Bearer <token>`.
//!
//! The algorithm comes from an allow-list fixed by the configured key, never from the token
//! alone: a shared secret allows HS256/384/512; a PEM public key allows only its own family
//! (RS*/PS*, ES256/384 or EdDSA), so an HS token "signed" with the public key is refused; `none`
//! is never accepted. `exp` and `nbf` are checked, when present, against the app's clock with a
//! 30-second leeway. A token authenticates the sender, not the body: anyone holding a valid token
//! could send other bytes until it expires. Prefer a body-signing scheme where the provider has one.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{
    Defaults, Params, Scheme, Secret, SignInput, SignatureError, SignedRequest, Verified, Verifier,
    header_value, single_header,
};

/// The leeway on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: i64 = 30;

pub(super) const SCHEME: Scheme = Scheme {
    name: "jwt",
    defaults: Defaults::NONE,
    needs_secret: true,
    build,
    sign,
    check_secret: |secret| key(secret).map(drop),
};

#[derive(Debug, Clone, Copy)]
enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

impl Family {
    fn algorithms(self) -> &'static [Algorithm] {
        match self {
            Family::Hmac => &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            Family::Rsa => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            Family::Ec => &[Algorithm::ES256, Algorithm::ES384],
            Family::Ed => &[Algorithm::EdDSA],
        }
    }
}

fn key(secret: &str) -> Result<(DecodingKey, Family), String> {
    if !secret.trim_start().starts_with("-----BEGIN") {
        return Ok((DecodingKey::from_secret(secret.as_bytes()), Family::Hmac));
    }
    let pem = secret.as_bytes();
    DecodingKey::from_rsa_pem(pem)
        .map(|k| (k, Family::Rsa))
        .or_else(|_| DecodingKey::from_ec_pem(pem).map(|k| (k, Family::Ec)))
        .or_else(|_| DecodingKey::from_ed_pem(pem).map(|k| (k, Family::Ed)))
        .map_err(|_| "the JWT key is PEM but not an RSA, EC or Ed25519 public key".into())
}

struct Jwt {
    header: HeaderName,
    prefix: String,
    keys: Vec<(DecodingKey, Family)>,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("header", &self.header)
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn place(params: &Params<'_>) -> (String, String) {
    match params.header {
        Some(header) => (header.to_owned(), params.prefix.unwrap_or("").to_owned()),
        None => (
            "authorization".to_owned(),
            params.prefix.unwrap_or("Bearer ").to_owned(),
        ),
    }
}

fn build(params: &Params<'_>, secrets: &[Secret]) -> Result<Arc<dyn Verifier>, String> {
    if secrets.is_empty() {
        return Err("no key configured".into());
    }
    let (header, prefix) = place(params);
    Ok(Arc::new(Jwt {
        header: HeaderName::try_from(header).map_err(|e| e.to_string())?,
        prefix,
        keys: secrets
            .iter()
            .map(|s| key(s.expose_str()))
            .collect::<Result<_, _>>()?,
    }))
}

#[derive(Debug, Deserialize, Serialize)]
struct TimeClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
}

impl Verifier for Jwt {
    fn verify(&self, request: &SignedRequest<'_>) -> Result<Verified, SignatureError> {
        let value = single_header(request.headers, self.header.as_str())?.trim();
        let token = value
            .strip_prefix(self.prefix.as_str())
            .ok_or(SignatureError::Malformed)?
            .trim();
        let algorithm = jsonwebtoken::decode_header(token)
            .map_err(|_| SignatureError::Malformed)?
            .alg;
        let mut matched = None;
        for (key, family) in &self.keys {
            if !family.algorithms().contains(&algorithm) {
                continue;
            }
            let mut validation = Validation::new(algorithm);
            validation.algorithms = family.algorithms().to_vec();
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation.validate_aud = false;
            if let Ok(data) = jsonwebtoken::decode::<TimeClaims>(token, key, &validation) {
                matched = Some(data.claims);
            }
        }
        let claims = matched.ok_or(SignatureError::Mismatch)?;
        let now = request.now_secs;
        let expired = claims
            .exp
            .is_some_and(|exp| now > exp.saturating_add(LEEWAY_SECS));
        let early = claims
            .nbf
            .is_some_and(|nbf| now < nbf.saturating_sub(LEEWAY_SECS));
        if expired || early {
            return Err(SignatureError::Mismatch);
        }
        Ok(Verified::default())
    }
}

/// Signs an HS256 token valid for five minutes from the input's timestamp.
fn sign(
    params: &Params<'_>,
    secret: &str,
    input: &SignInput<'_>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let claims = TimeClaims {
        exp: Some(input.timestamp.saturating_add(300)),
        nbf: Some(input.timestamp),
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| e.to_string())?;
    let (header, prefix) = place(params);
    Ok(vec![(
        HeaderName::try_from(header).map_err(|e| e.to_string())?,
        header_value(format!("{prefix}{token}"))?,
    )])
}
