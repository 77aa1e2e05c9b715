//! `sig = "none"`: no verification. It must be written explicitly; hooksmith never falls back to it.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::{Defaults, Scheme, SignatureError, SignedRequest, Verified, Verifier};

pub(super) const SCHEME: Scheme = Scheme {
    name: "none",
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
    needs_secret: false,
    build: |_, _| Ok(Arc::new(Unverified)),
};

#[derive(Debug)]
struct Unverified;

impl Verifier for Unverified {
    fn verify(&self, _: &SignedRequest<'_>) -> Result<Verified, SignatureError> {
        Ok(Verified::default())
    }

    fn sign(&self, _: &[u8], _: i64) -> Vec<(HeaderName, HeaderValue)> {
        Vec::new()
    }
}
