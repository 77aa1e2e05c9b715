//! `Stripe-Signature` header values.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| hooksmith::fuzzing::stripe_signature(text));
