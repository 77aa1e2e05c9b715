//! Every scheme's header parsing and verification: the input is split on NUL into header values
//! (in a fixed order of names), then the URI, then the body.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts: Vec<&[u8]> = data.split(|b| *b == 0).collect();
    let body = parts.pop().unwrap_or_default();
    let uri = parts.pop().and_then(|u| std::str::from_utf8(u).ok()).unwrap_or("/");
    let values: Vec<&str> = parts.iter().filter_map(|p| std::str::from_utf8(p).ok()).collect();
    hooksmith::internals::scheme_headers(&values, body, uri);
});
