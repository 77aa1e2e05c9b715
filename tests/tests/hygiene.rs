//! Generated code names nothing from the prelude: it compiles under `#![no_implicit_prelude]`,
//! beside user items that shadow common names.
#![no_implicit_prelude]

extern crate std;

// Items a generated expansion must not pick up by accident.
#[allow(dead_code)]
struct Result;
#[allow(dead_code)]
struct Ok;
#[allow(dead_code)]
struct Box;
#[allow(dead_code)]
mod inventory {}

#[::hooksmith::webhook(
    path = "/hygiene",
    sig = "hmac-sha256",
    header = "X-Sig",
    event_field = "type",
    filter(kind = "x"),
    retry(max = 1)
)]
async fn hygienic(
    _raw: ::hooksmith::Raw,
    _delivery: ::hooksmith::Delivery,
) -> ::std::result::Result<(), ::hooksmith::HandlerError> {
    ::std::result::Result::Ok(())
}

#[::hooksmith::webhook(path = "/hygiene/sync", sig = "none", ack = "handled")]
fn hygienic_sync(_value: ::serde_json::Value) -> &'static str {
    "ok"
}

#[test]
fn expands_without_the_prelude() {
    let registration = <hygienic as ::hooksmith::__private::Registered>::REGISTRATION;
    ::std::assert_eq!(registration.name, "hygienic");
    ::std::assert_eq!(registration.endpoint.path(), "/hygiene");
    ::std::assert!(registration.file.ends_with("hygiene.rs"));
    let sync = <hygienic_sync as ::hooksmith::__private::Registered>::REGISTRATION;
    ::std::assert_eq!(sync.ack, ::hooksmith::Ack::Handled);
}
