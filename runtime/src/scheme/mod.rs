//! Signature schemes: one file per scheme behind the [`Verifier`] trait, registered by one line
//! in [`SCHEMES`]. The pipeline never branches on a provider.
//!
//! Every scheme compares decoded bytes in constant time with an explicit length check, accepts
//! several secrets (rotation), reads only its own headers (no downgrade to a weaker one present in
//! the same request), and refuses empty or truncated digests.

mod discord;
mod github;
pub(crate) mod hmac;
#[cfg(feature = "jwt")]
mod jwt;
mod linear;
mod none;
mod shopify;
mod slack;
mod standard;
mod stripe;
mod token;
mod twilio;

use std::fmt;
use std::sync::Arc;

use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use crate::spec::Encoding;

/// A secret's bytes. Its `Debug` never shows them, and nothing in hooksmith prints them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<[u8]>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into().into_boxed_slice())
    }

    /// The bytes, for the code that keys a MAC with them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as text (secrets come from environment variables, so they are UTF-8).
    pub fn expose_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The parts of a request a scheme verifies.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The raw body, exactly as received.
    pub body: &'a [u8],
    /// The request's path and query.
    pub uri: &'a Uri,
    /// The public base URL the provider calls (`https://hooks.example.com`), for schemes that sign
    /// the URL (Twilio) behind a proxy; `None` rebuilds it from the `Host` header over https.
    pub public_url: Option<&'a str>,
    /// The current time, seconds since the Unix epoch (from the app's clock).
    pub now_secs: i64,
}

/// What verification learned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verified {
    /// The signed timestamp, seconds since the Unix epoch, for schemes that sign one; the pipeline
    /// checks it against the endpoint's tolerance (409 outside it).
    pub timestamp: Option<i64>,
}

/// Why a request's signature was refused. Logged and counted; the client only sees 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A required header is absent or empty.
    #[error("signature header missing")]
    Missing,
    /// A header that must appear once appears more than once.
    #[error("signature header repeated")]
    Repeated,
    /// A header cannot be read (bad prefix, bad encoding, wrong length, bad timestamp).
    #[error("signature header malformed")]
    Malformed,
    /// No configured secret produces the signature.
    #[error("signature mismatch")]
    Mismatch,
}

impl SignatureError {
    /// The label used in logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            SignatureError::Missing => "signature_missing",
            SignatureError::Repeated => "signature_repeated",
            SignatureError::Malformed => "signature_malformed",
            SignatureError::Mismatch => "signature_mismatch",
        }
    }
}

/// Verifies one scheme's signatures with an endpoint's secrets.
pub trait Verifier: Send + Sync + fmt::Debug + 'static {
    /// Verifies a request against every configured secret.
    fn verify(&self, request: &SignedRequest<'_>) -> Result<Verified, SignatureError>;

    /// The answer a provider expects instead of a delivery, after verification: Slack's
    /// `url_verification` challenge, Discord's `PING`. Such requests are answered, not stored.
    fn intercept(&self, payload: &[u8]) -> Option<Response> {
        let _ = payload;
        None
    }
}

/// What a signer signs (tests, the CLI and the quickstart's banner use it).
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    /// The raw body.
    pub body: &'a [u8],
    /// The timestamp to sign, seconds since the Unix epoch.
    pub timestamp: i64,
    /// The delivery id, for schemes that sign one (Standard Webhooks).
    pub id: &'a str,
    /// The full URL the request is sent to, for schemes that sign it (Twilio).
    pub url: &'a str,
    /// The body's content type (Twilio signs form parameters, not JSON bodies).
    pub content_type: Option<&'a str>,
}

/// An endpoint's settings a scheme is built from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Params<'a> {
    /// `header = "..."`.
    pub header: Option<&'a str>,
    /// `prefix = "..."`.
    pub prefix: Option<&'a str>,
    /// `encoding = "..."`.
    pub encoding: Option<Encoding>,
}

/// A scheme's preset sources and limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Defaults {
    /// The environment variable its secret is read from when the endpoint names none.
    pub secret_env: Option<&'static str>,
    /// The headers holding the event name, first present wins.
    pub event_header: &'static [&'static str],
    /// The body field holding the event name.
    pub event_field: Option<&'static str>,
    /// The headers holding the delivery id, first present wins.
    pub id_header: &'static [&'static str],
    /// The body field holding the delivery id.
    pub id_field: Option<&'static str>,
    /// The body field `event = "name.action"` filters on, for providers whose event names have
    /// no dot of their own.
    pub action_field: Option<&'static str>,
    /// The largest body the provider sends.
    pub max_body: Option<u64>,
}

impl Defaults {
    /// No presets.
    pub const NONE: Defaults = Defaults {
        secret_env: None,
        event_header: &[],
        event_field: None,
        id_header: &[],
        id_field: None,
        action_field: None,
        max_body: None,
    };
}

/// Builds a verifier from an endpoint's params and secrets, or says what is wrong.
pub type BuildFn = fn(&Params<'_>, &[Secret]) -> Result<Arc<dyn Verifier>, String>;

/// Produces the headers that sign a request, from one secret (for asymmetric schemes, the
/// private key), or says why it cannot.
pub type SignFn =
    fn(&Params<'_>, &str, &SignInput<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, String>;

/// Checks one secret's form at startup; the message never contains the secret.
pub type CheckFn = fn(&str) -> Result<(), String>;

/// One registered scheme.
#[derive(Debug, Clone, Copy)]
pub struct Scheme {
    /// The name written as `sig = "..."`.
    pub name: &'static str,
    /// Its presets.
    pub defaults: Defaults,
    /// Whether it verifies anything (`false` only for `none`).
    pub needs_secret: bool,
    /// Its constructor.
    pub build: BuildFn,
    /// Its signer.
    pub sign: SignFn,
    /// Its secret check.
    pub check_secret: CheckFn,
}

/// Every implemented scheme. Adding a provider is one file and one line here.
pub const SCHEMES: &[Scheme] = &[
    github::SCHEME,
    stripe::SCHEME,
    standard::SCHEME,
    slack::SCHEME,
    shopify::SCHEME,
    token::GITLAB,
    linear::SCHEME,
    twilio::SCHEME,
    discord::SCHEME,
    hmac::HMAC_SHA256,
    hmac::HMAC_SHA1,
    #[cfg(feature = "jwt")]
    jwt::SCHEME,
    none::SCHEME,
];

/// Looks a scheme up by name. `Err` says whether the name is unknown or not compiled in.
pub fn lookup(name: &str) -> Result<&'static Scheme, String> {
    if let Some(scheme) = SCHEMES.iter().find(|s| s.name == name) {
        return Ok(scheme);
    }
    if name == "jwt" {
        return Err(
            "signature scheme `jwt` needs hooksmith's `jwt` feature (on by default)".into(),
        );
    }
    if hooksmith_grammar::SCHEMES.contains(&name) {
        Err(format!(
            "signature scheme `{name}` is not yet supported by this version of hooksmith"
        ))
    } else {
        Err(format!(
            "unknown signature scheme `{name}`: expected one of {}",
            hooksmith_grammar::SCHEMES
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Signs a request for `scheme` with `secret` (for Discord a hex ed25519 private key, for a
/// Standard Webhooks `v1a` signature a `whsk_` key), as the provider would.
pub fn sign(
    scheme: &str,
    params: &Params<'_>,
    secret: &str,
    input: &SignInput<'_>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    (lookup(scheme)?.sign)(params, secret, input)
}

/// The single value of a header that must appear at most once.
pub(crate) fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<&'a str, SignatureError> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(SignatureError::Missing)?;
    if values.next().is_some() {
        return Err(SignatureError::Repeated);
    }
    let value = value.to_str().map_err(|_| SignatureError::Malformed)?;
    if value.trim().is_empty() {
        return Err(SignatureError::Missing);
    }
    Ok(value)
}

/// A Unix timestamp in seconds, as providers write it: ASCII digits only (no sign, no fraction,
/// no exponent), at most 12 of them, so no arithmetic on it can overflow.
pub(crate) fn parse_timestamp(text: &str) -> Result<i64, SignatureError> {
    let text = text.trim();
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed);
    }
    text.parse().map_err(|_| SignatureError::Malformed)
}

/// A header name from a static string.
pub(crate) fn header_name(name: &'static str) -> HeaderName {
    HeaderName::from_static(name)
}

/// A header value from text the signer produced (always visible ASCII).
pub(crate) fn header_value(value: String) -> Result<HeaderValue, String> {
    HeaderValue::try_from(value).map_err(|e| e.to_string())
}

/// The verifier of a per-tenant endpoint itself: every request is verified with its connection's
/// secrets instead, so this one refuses everything.
#[derive(Debug)]
pub(crate) struct NoConnection;

impl Verifier for NoConnection {
    fn verify(&self, _: &SignedRequest<'_>) -> Result<Verified, SignatureError> {
        Err(SignatureError::Mismatch)
    }
}

/// A `<header>: <prefix><digest>` HMAC-SHA256 verifier, for the macro-free [`crate::Receiver`].
pub(crate) fn hmac_header(
    header: &str,
    prefix: &str,
    encoding: Encoding,
    secrets: &[Secret],
) -> Result<Arc<dyn Verifier>, String> {
    Ok(Arc::new(hmac::HmacHeader::new(
        hmac::Algorithm::Sha256,
        header,
        prefix,
        encoding,
        secrets,
    )?))
}

#[cfg(feature = "internals")]
pub(crate) use standard::parse_signatures as standard_parse;
#[cfg(feature = "internals")]
pub(crate) use stripe::parse as stripe_parse;

#[cfg(test)]
mod tests;
