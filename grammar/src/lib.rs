//! The grammars shared by `hooksmith-macros` (which checks them at compile time) and `hooksmith`
//! (which applies them at run time), so the two can never disagree.
//!
//! Nothing here depends on `syn` or on an async runtime: each function takes a string and answers
//! with a typed value or a [`GrammarError`] that says where in the string the problem is.

use std::fmt;

/// Every signature scheme name accepted by `sig = "..."`, in the order they are documented.
pub const SCHEMES: &[&str] = &[
    "github",
    "stripe",
    "standard",
    "slack",
    "shopify",
    "gitlab",
    "linear",
    "twilio",
    "discord",
    "hmac-sha256",
    "hmac-sha1",
    "jwt",
    "none",
];

/// The HTTP methods an endpoint may accept through `methods = [...]`.
pub const METHODS: &[&str] = &["POST", "PUT", "PATCH", "GET", "DELETE"];

/// The only route parameter an endpoint path may hold.
pub const CONNECTION_PARAM: &str = "{connection}";

/// A problem found in a string, with the byte offset it starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrammarError {
    /// Byte offset into the checked string where the problem starts.
    pub offset: usize,
    /// What is wrong and how to fix it (lowercase, code in backticks).
    pub message: String,
}

impl GrammarError {
    fn new(offset: usize, message: impl Into<String>) -> Self {
        Self {
            offset,
            message: message.into(),
        }
    }
}

impl fmt::Display for GrammarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GrammarError {}

/// Splits a dotted JSON path (`"repository.owner.login"`, `"commits.0.id"`) into its segments.
///
/// A segment is any non-empty run of characters other than `.`; a segment made of ASCII digits
/// also indexes arrays.
pub fn parse_json_path(path: &str) -> Result<Vec<&str>, GrammarError> {
    if path.is_empty() {
        return Err(GrammarError::new(
            0,
            "empty JSON path: name a field such as `action` or `repository.name`",
        ));
    }
    let mut segments = Vec::new();
    let mut start = 0;
    for (i, c) in path.char_indices() {
        if c == '.' {
            if i == start {
                return Err(empty_segment(path, i));
            }
            segments.push(&path[start..i]);
            start = i + 1;
        } else if c.is_whitespace() || c.is_control() {
            return Err(GrammarError::new(
                i,
                format!(
                    "JSON path `{path}` holds whitespace at byte {i}: a path is dot-separated field names such as `repository.name`"
                ),
            ));
        }
    }
    if start == path.len() {
        return Err(empty_segment(path, start.saturating_sub(1)));
    }
    segments.push(&path[start..]);
    Ok(segments)
}

fn empty_segment(path: &str, at: usize) -> GrammarError {
    GrammarError::new(
        at,
        format!(
            "JSON path `{path}` has an empty segment at byte {at}: write dot-separated field names such as `repository.name`"
        ),
    )
}

/// Checks an event pattern: a name (`pull_request`, GitLab's `Push Hook`), a dotted name
/// (`pull_request.opened`, `payment_intent.succeeded`) or a glob with `*` (`charge.*`, `*`).
pub fn check_event_pattern(pattern: &str) -> Result<(), GrammarError> {
    if pattern.is_empty() {
        return Err(GrammarError::new(
            0,
            "empty event name: write a name such as `pull_request`, `charge.*` or `*`",
        ));
    }
    if pattern.trim() != pattern {
        return Err(GrammarError::new(
            0,
            format!(
                "event `{pattern}` starts or ends with whitespace: list several events as `event = [\"a\", \"b\"]`"
            ),
        ));
    }
    if let Some((i, _)) = pattern.char_indices().find(|(_, c)| c.is_control()) {
        return Err(GrammarError::new(
            i,
            format!("event {pattern:?} holds a control character at byte {i}"),
        ));
    }
    Ok(())
}

/// Whether an event name matches a pattern, where `*` stands for any run of characters.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    // Greedy matching that backtracks only to the last `*`: O(pattern × name) at worst, never
    // exponential, whatever the pattern and the (attacker-chosen) name.
    // Bytes, not chars: a literal part is whole UTF-8 sequences, which can only match at char
    // boundaries of a `str` (UTF-8 is self-synchronising), so the result is the same, without
    // allocating.
    if !pattern.contains('*') {
        return pattern == name;
    }
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((star_pi, star_ni)) = star {
            pi = star_pi + 1;
            ni = star_ni + 1;
            star = Some((star_pi, star_ni + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// Checks an endpoint path: it starts with `/`, holds no query or fragment, and its only
/// parameter is `{connection}` as a whole segment.
pub fn check_route(path: &str) -> Result<(), GrammarError> {
    if !path.starts_with('/') {
        return Err(GrammarError::new(
            0,
            format!("endpoint path must start with `/`: write `\"/{path}\"`"),
        ));
    }
    for (i, c) in path.char_indices() {
        match c {
            '?' | '#' => {
                return Err(GrammarError::new(
                    i,
                    format!(
                        "endpoint path `{path}` holds `{c}` at byte {i}: a path has no query string or fragment"
                    ),
                ));
            }
            ':' | '*' => {
                return Err(GrammarError::new(
                    i,
                    format!(
                        "endpoint path `{path}` holds `{c}` at byte {i}: the only parameter an endpoint takes is `{CONNECTION_PARAM}`"
                    ),
                ));
            }
            c if c.is_whitespace() || c.is_control() => {
                return Err(GrammarError::new(
                    i,
                    format!("endpoint path `{path}` holds whitespace at byte {i}"),
                ));
            }
            _ => {}
        }
    }
    for (i, segment) in segments_with_offsets(path) {
        if segment.contains('{') || segment.contains('}') {
            if segment != CONNECTION_PARAM {
                return Err(GrammarError::new(
                    i,
                    format!(
                        "endpoint path `{path}` has the segment `{segment}`: the only parameter an endpoint takes is `{CONNECTION_PARAM}`, as a whole segment"
                    ),
                ));
            }
        } else if segment.is_empty() && i + 1 < path.len() {
            return Err(GrammarError::new(
                i,
                format!("endpoint path `{path}` has an empty segment (`//`) at byte {i}"),
            ));
        }
    }
    if path.matches(CONNECTION_PARAM).count() > 1 {
        return Err(GrammarError::new(
            0,
            format!("endpoint path `{path}` names `{CONNECTION_PARAM}` twice"),
        ));
    }
    Ok(())
}

fn segments_with_offsets(path: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 1;
    path[1..].split('/').map(move |segment| {
        let at = offset;
        offset += segment.len() + 1;
        (at, segment)
    })
}

/// Parses a duration such as `"250ms"`, `"1s"`, `"5m"`, `"2h"` or `"1d"` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, GrammarError> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let hint = "write a whole number and a unit: `250ms`, `1s`, `5m`, `2h` or `1d`";
    if number.is_empty() {
        return Err(GrammarError::new(
            0,
            format!("invalid duration `{text}`: {hint}"),
        ));
    }
    let value: u64 = number
        .parse()
        .map_err(|_| GrammarError::new(0, format!("duration `{text}` is too large")))?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(GrammarError::new(
                digits,
                format!("invalid duration unit in `{text}`: {hint}"),
            ));
        }
    };
    value
        .checked_mul(factor)
        .ok_or_else(|| GrammarError::new(0, format!("duration `{text}` is too large")))
}

/// Checks a regular expression with the same parser the run-time `regex` crate uses.
pub fn check_regex(pattern: &str) -> Result<(), GrammarError> {
    regex_syntax::Parser::new()
        .parse(pattern)
        .map(drop)
        .map_err(|error| {
            let (offset, kind) = match &error {
                regex_syntax::Error::Parse(e) => (e.span().start.offset, e.kind().to_string()),
                regex_syntax::Error::Translate(e) => (e.span().start.offset, e.kind().to_string()),
                other => (0, other.to_string()),
            };
            GrammarError::new(
                offset,
                format!(
                    "invalid regex: {kind} at byte {offset}\n    {pattern}\n    {caret:>width$}",
                    caret = "^",
                    width = offset + 1
                ),
            )
        })
}

/// Checks an HTTP header name (an RFC 9110 token).
pub fn check_header_name(name: &str) -> Result<(), GrammarError> {
    if name.is_empty() {
        return Err(GrammarError::new(
            0,
            "empty header name: write a name such as `X-Signature`",
        ));
    }
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    match name.char_indices().find(|&(_, c)| !token(c)) {
        Some((i, c)) => Err(GrammarError::new(
            i,
            format!(
                "header name `{name}` holds `{c}` at byte {i}: a header name is letters, digits and `-`"
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn json_paths_split_on_dots() {
        assert_eq!(parse_json_path("action").unwrap(), ["action"]);
        assert_eq!(
            parse_json_path("repository.owner.login").unwrap(),
            ["repository", "owner", "login"]
        );
        for bad in ["", ".a", "a.", "a..b", "a b"] {
            assert!(parse_json_path(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(parse_json_path("a..b").unwrap_err().offset, 2);
    }

    #[test]
    fn globs_match_like_shell_patterns_on_names() {
        assert!(glob_matches("charge.*", "charge.succeeded"));
        assert!(!glob_matches("charge.*", "payment_intent.succeeded"));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("*.created", "user.created"));
        assert!(glob_matches("a*c*e", "abcde"));
        assert!(!glob_matches("a*c*e", "abcdf"));
        assert!(glob_matches("push", "push"));
        assert!(glob_matches("é*ü", "éaßü"));
        assert!(glob_matches("*é", "aé"));
        assert!(!glob_matches("*é", "ae"));
        assert!(glob_matches("a*", "aé"));
        assert!(!glob_matches("é", "e"));
        assert!(!glob_matches("push", "pushed"));
        assert!(glob_matches("a**b", "ab"));
        assert!(!glob_matches("*a", "b"));
    }

    #[test]
    fn globs_are_linear_not_exponential() {
        let pattern = "*a".repeat(40) + "b";
        let name = "a".repeat(20_000);
        let started = std::time::Instant::now();
        assert!(!glob_matches(&pattern, &name));
        // Backtracking once per star, not once per combination: milliseconds, not ages.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn routes_take_only_a_connection_parameter() {
        check_route("/hooks/github").unwrap();
        check_route("/webhooks/github/{connection}").unwrap();
        check_route("/").unwrap();
        for bad in [
            "hooks",
            "/a?b",
            "/a/:id",
            "/a/{id}",
            "/a//b",
            "/a/*rest",
            "/{connection}/{connection}",
        ] {
            assert!(check_route(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn durations_have_units() {
        assert_eq!(parse_duration_ms("250ms").unwrap(), 250);
        assert_eq!(parse_duration_ms("1s").unwrap(), 1_000);
        assert_eq!(parse_duration_ms("5m").unwrap(), 300_000);
        assert_eq!(parse_duration_ms("1d").unwrap(), 86_400_000);
        for bad in [
            "",
            "s",
            "1",
            "1 s",
            "1.5s",
            "99999999999999999999s",
            "18446744073709551615d",
        ] {
            assert!(
                parse_duration_ms(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn regex_errors_point_into_the_pattern() {
        check_regex("push|pull_request").unwrap();
        let error = check_regex("ab(c").unwrap_err();
        assert_eq!(error.offset, 2);
        assert!(
            error.message.contains("unclosed group"),
            "{}",
            error.message
        );
    }

    #[test]
    fn header_names_are_tokens() {
        check_header_name("X-Hub-Signature-256").unwrap();
        assert!(check_header_name("X Sig").is_err());
        assert!(check_header_name("").is_err());
    }

    proptest! {
        #[test]
        fn json_path_parser_never_panics_and_round_trips(path in "\\PC{0,40}") {
            if let Ok(segments) = parse_json_path(&path) {
                prop_assert_eq!(segments.join("."), path.clone());
                prop_assert!(segments.iter().all(|s| !s.is_empty()));
            }
        }

        #[test]
        fn glob_without_star_is_equality(a in "[a-z._]{0,12}", b in "[a-z._]{0,12}") {
            prop_assert_eq!(glob_matches(&a, &b), a == b);
        }

        #[test]
        fn star_suffix_is_prefix_match(prefix in "[a-z.]{0,8}", name in "[a-z.]{0,16}") {
            let pattern = format!("{prefix}*");
            prop_assert_eq!(glob_matches(&pattern, &name), name.starts_with(&prefix));
        }

        #[test]
        fn other_parsers_never_panic(text in "\\PC{0,40}") {
            let _ = check_route(&text);
            let _ = parse_duration_ms(&text);
            let _ = check_regex(&text);
            let _ = check_header_name(&text);
            let _ = check_event_pattern(&text);
        }
    }
}
