//! `Stripe-Signature` header values.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| hooksmith::internals::stripe_signature(text));
