//! Signature schemes: one file per scheme behind the [`Verifier`] trait, registered by one line
//! in [`SCHEMES`]. The pipeline never branches on a provider.

mod github;
mod hmac;
mod none;

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

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
    /// The signature header is absent or empty.
    #[error("signature header missing")]
    Missing,
    /// The signature header appears more than once.
    #[error("signature header repeated")]
    Repeated,
    /// The signature header cannot be read (bad prefix, bad encoding, wrong length).
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

/// Verifies (and, for tests and the CLI, produces) one scheme's signatures with an endpoint's
/// secrets.
pub trait Verifier: Send + Sync + fmt::Debug + 'static {
    /// Verifies a request against every configured secret.
    fn verify(&self, request: &SignedRequest<'_>) -> Result<Verified, SignatureError>;

    /// The headers that sign `body` at `now_secs` with the first secret.
    fn sign(&self, body: &[u8], now_secs: i64) -> Vec<(HeaderName, HeaderValue)>;
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
    /// The header holding the event name.
    pub event_header: Option<&'static str>,
    /// The body field holding the event name.
    pub event_field: Option<&'static str>,
    /// The header holding the delivery id.
    pub id_header: Option<&'static str>,
    /// The body field holding the delivery id.
    pub id_field: Option<&'static str>,
    /// The body field `event = "name.action"` filters on, for providers whose event names have
    /// no dot of their own.
    pub action_field: Option<&'static str>,
    /// The largest body the provider sends.
    pub max_body: Option<u64>,
    /// Whether the body may be form-encoded with the JSON in a `payload` field.
    pub form_payload: bool,
}

/// Builds a verifier from an endpoint's params and secrets, or says what is wrong.
pub type BuildFn = fn(&Params<'_>, Vec<Secret>) -> Result<Arc<dyn Verifier>, String>;

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
}

/// Every implemented scheme. Adding a provider is one file and one line here.
pub const SCHEMES: &[Scheme] = &[
    github::SCHEME,
    hmac::HMAC_SHA256,
    hmac::HMAC_SHA1,
    none::SCHEME,
];

/// Looks a scheme up by name. `Err` says whether the name is unknown or not implemented yet.
pub fn lookup(name: &str) -> Result<&'static Scheme, String> {
    if let Some(scheme) = SCHEMES.iter().find(|s| s.name == name) {
        return Ok(scheme);
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

/// A `<header>: <prefix><digest>` HMAC-SHA256 verifier, for the macro-free [`crate::Receiver`].
pub(crate) fn hmac_header(
    header: &str,
    prefix: &str,
    encoding: Encoding,
    secrets: Vec<Secret>,
) -> Result<Arc<dyn Verifier>, String> {
    Ok(Arc::new(hmac::HmacHeader::new(
        hmac::Algorithm::Sha256,
        header,
        prefix,
        encoding,
        secrets,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_implemented_scheme_is_a_name_the_macro_accepts() {
        for scheme in SCHEMES {
            assert!(
                hooksmith_grammar::SCHEMES.contains(&scheme.name),
                "{} is not in hooksmith_grammar::SCHEMES",
                scheme.name
            );
        }
    }

    #[test]
    fn lookup_tells_unknown_from_unimplemented() {
        assert!(lookup("github").is_ok());
        assert!(
            lookup("gihtub")
                .unwrap_err()
                .contains("unknown signature scheme `gihtub`")
        );
    }

    #[test]
    fn secrets_never_print() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret(<redacted>)"
        );
    }
}
