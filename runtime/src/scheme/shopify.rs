//! Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(secret, body)>`; topic
//! `X-Shopify-Topic`, id `X-Shopify-Webhook-Id`.

use std::sync::Arc;

use super::hmac::{Algorithm, HmacHeader};
use super::{Defaults, Params, Scheme};
use crate::spec::Encoding;

const PARAMS: Params<'static> = Params {
    header: Some("x-shopify-hmac-sha256"),
    prefix: Some(""),
    encoding: Some(Encoding::Base64),
};

pub(super) const SCHEME: Scheme = Scheme {
    name: "shopify",
    defaults: Defaults {
        secret_env: Some("SHOPIFY_WEBHOOK_SECRET"),
        event_header: &["x-shopify-topic"],
        id_header: &["x-shopify-webhook-id", "x-shopify-event-id"],
        ..Defaults::NONE
    },
    needs_secret: true,
    build: |_, secrets| {
        Ok(Arc::new(HmacHeader::new(
            Algorithm::Sha256,
            "x-shopify-hmac-sha256",
            "",
            Encoding::Base64,
            secrets,
        )?))
    },
    sign: |_, secret, input| (super::hmac::HMAC_SHA256.sign)(&PARAMS, secret, input),
    check_secret: |_| Ok(()),
};
