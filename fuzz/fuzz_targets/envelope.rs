//! The envelope and routing-field reader on arbitrary bodies, as JSON and as forms.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hooksmith::internals::envelope(data, Some("application/json"));
    hooksmith::internals::envelope(data, Some("application/x-www-form-urlencoded"));
});
