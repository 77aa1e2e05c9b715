//! Provider timestamps (`t=`, `webhook-timestamp`, `X-Slack-Request-Timestamp`, ...).
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| hooksmith::internals::timestamp(text));
