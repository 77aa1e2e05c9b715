//! Standard Webhooks / Svix `webhook-signature` header values.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| hooksmith::internals::standard_signature(text));
