//! GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`; event
//! `X-GitHub-Event`, id `X-GitHub-Delivery`; JSON or form-encoded (`payload=`) bodies.
//!
//! The legacy SHA-1 header `X-Hub-Signature` is never consulted: only the configured scheme
//! counts, so a request cannot downgrade verification by sending the weaker header. To accept it
//! on purpose, write `sig = "hmac-sha1"` with GitHub's `event_header` and `id_header`.

use std::sync::Arc;

use super::hmac::{Algorithm, HmacHeader};
use super::{Defaults, Params, Scheme};
use crate::spec::Encoding;

const PARAMS: Params<'static> = Params {
    header: Some("x-hub-signature-256"),
    prefix: Some("sha256="),
    encoding: Some(Encoding::Hex),
};

pub(super) const SCHEME: Scheme = Scheme {
    name: "github",
    defaults: Defaults {
        secret_env: Some("GITHUB_WEBHOOK_SECRET"),
        event_header: &["x-github-event"],
        id_header: &["x-github-delivery"],
        action_field: Some("action"),
        // GitHub caps payloads at 25 MB.
        max_body: Some(25 * 1024 * 1024),
        ..Defaults::NONE
    },
    needs_secret: true,
    build: |_, secrets| {
        Ok(Arc::new(HmacHeader::new(
            Algorithm::Sha256,
            "x-hub-signature-256",
            "sha256=",
            Encoding::Hex,
            secrets,
        )?))
    },
    sign: |_, secret, input| (super::hmac::HMAC_SHA256.sign)(&PARAMS, secret, input),
    check_secret: |_| Ok(()),
};
