//! The grammars the macro checks at compile time and the runtime applies at startup.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    use hooksmith_grammar as g;
    if let Ok(segments) = g::parse_json_path(text) {
        assert_eq!(segments.join("."), text);
    }
    let _ = g::check_route(text);
    let _ = g::check_event_pattern(text);
    let _ = g::parse_duration_ms(text);
    let _ = g::check_regex(text);
    let _ = g::check_header_name(text);
    if let Some((pattern, name)) = text.split_once('\n') {
        let _ = g::glob_matches(pattern, name);
    }
});
