//! Generated code raises no warning, even under `#![deny(warnings)]` and clippy's pedantic set,
//! for public and private handlers of every shape.
#![deny(warnings, missing_docs, unreachable_pub)]
#![deny(clippy::all, clippy::pedantic)]

use hooksmith::{Delivery, Json, webhook};

/// A payload.
#[derive(serde::Deserialize)]
pub struct Payload {
    /// A field.
    pub id: String,
}

/// Public handlers in a public module.
pub mod public {
    use super::{Delivery, Json, Payload, webhook};

    /// A documented public handler.
    ///
    /// # Errors
    ///
    /// Never; the signature is the usual one.
    #[webhook(
        path = "/lints",
        sig = "hmac-sha256",
        event_field = "type",
        event = "a"
    )]
    pub async fn documented(payload: Json<Payload>, delivery: Delivery) -> hooksmith::Result {
        let _ = (&payload.id, delivery.id());
        tokio::task::yield_now().await;
        Ok(())
    }
}

#[webhook(path = "/lints", sig = "hmac-sha256", event_field = "type", event = ["b", "c.*"], filter(not(n = 1)))]
fn private_sync() {}

#[test]
fn registrations_are_reachable() {
    assert_eq!(
        <public::documented as hooksmith::__private::Registered>::REGISTRATION.events,
        ["a"]
    );
    assert_eq!(
        <private_sync as hooksmith::__private::Registered>::REGISTRATION.events,
        ["b", "c.*"]
    );
}
