//! `sig = "none"`: no verification. It must be written explicitly; hooksmith never falls back to it.

use std::sync::Arc;

use super::{Defaults, Scheme, SignatureError, SignedRequest, Verified, Verifier};

pub(super) const SCHEME: Scheme = Scheme {
    name: "none",
    defaults: Defaults::NONE,
    needs_secret: false,
    build: |_, _| Ok(Arc::new(Unverified)),
    sign: |_, _, _| Ok(Vec::new()),
    check_secret: |_| Ok(()),
};

#[derive(Debug)]
struct Unverified;

impl Verifier for Unverified {
    fn verify(&self, _: &SignedRequest<'_>) -> Result<Verified, SignatureError> {
        Ok(Verified::default())
    }
}
