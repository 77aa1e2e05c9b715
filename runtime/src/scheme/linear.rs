//! Linear: `Linear-Signature: <hex HMAC-SHA256(secret, body)>`; event `Linear-Event`, id
//! `Linear-Delivery`; freshness from the body's `webhookTimestamp` (milliseconds), checked against
//! the endpoint's tolerance like every signed timestamp.

use std::sync::Arc;

use serde::Deserialize;

use super::hmac::{Algorithm, HmacHeader};
use super::{Defaults, Params, Scheme, SignatureError, SignedRequest, Verified, Verifier};
use crate::spec::Encoding;

const PARAMS: Params<'static> = Params {
    header: Some("linear-signature"),
    prefix: Some(""),
    encoding: Some(Encoding::Hex),
};

pub(super) const SCHEME: Scheme = Scheme {
    name: "linear",
    defaults: Defaults {
        secret_env: Some("LINEAR_WEBHOOK_SECRET"),
        event_header: &["linear-event"],
        id_header: &["linear-delivery"],
        action_field: Some("action"),
        ..Defaults::NONE
    },
    needs_secret: true,
    build: |_, secrets| {
        Ok(Arc::new(Linear(HmacHeader::new(
            Algorithm::Sha256,
            "linear-signature",
            "",
            Encoding::Hex,
            secrets,
        )?)))
    },
    sign: |_, secret, input| (super::hmac::HMAC_SHA256.sign)(&PARAMS, secret, input),
    check_secret: |_| Ok(()),
};

#[derive(Debug)]
struct Linear(HmacHeader);

/// The body's `webhookTimestamp` in whole seconds; `None` when absent or not an integer.
pub(crate) fn body_timestamp(body: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        webhook_timestamp: Option<serde_json::Number>,
    }
    let probe: Probe = serde_json::from_slice(body).ok()?;
    let millis = probe.webhook_timestamp?.as_i64()?;
    Some(millis.div_euclid(1000))
}

impl Verifier for Linear {
    fn verify(&self, request: &SignedRequest<'_>) -> Result<Verified, SignatureError> {
        self.0.verify(request)?;
        let timestamp = body_timestamp(request.body).ok_or(SignatureError::Malformed)?;
        Ok(Verified {
            timestamp: Some(timestamp),
        })
    }
}
