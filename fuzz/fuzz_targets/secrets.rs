//! Every scheme's secret decoder (`whsec_`, `whpk_`, hex ed25519 keys, PEM keys, ...).
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| hooksmith::internals::secrets(text));
