//! The optional `hooksmith.toml`: per-endpoint limits, tolerance, secrets by variable name and the
//! on/off switch, and per-handler retry policy and timeout, changed without a rebuild.
//!
//! ```toml
//! [endpoints."/hooks/github"]
//! max_body = 1048576
//! tolerance = 120
//! secrets = ["GITHUB_SECRET_NEW", "GITHUB_SECRET_OLD?"]   # `?`: optional, for rotation
//! enabled = true
//!
//! [handlers.pr_opened]
//! retry = { max = 3, backoff = "2s", factor = 2, max_delay = "10m" }
//! timeout = "30s"
//! ```
//!
//! A path or handler the app does not have, or a key hooksmith does not know, stops the app: a
//! typo never silently leaves a setting unapplied.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::spec::Retry;

/// The parsed file.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub(crate) endpoints: BTreeMap<String, EndpointOverride>,
    #[serde(default)]
    pub(crate) handlers: BTreeMap<String, HandlerOverride>,
}

/// Settings of one endpoint path.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointOverride {
    pub(crate) max_body: Option<u64>,
    pub(crate) tolerance: Option<u64>,
    pub(crate) secrets: Option<Vec<String>>,
    pub(crate) enabled: Option<bool>,
}

/// Settings of one handler.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct HandlerOverride {
    pub(crate) retry: Option<RetryOverride>,
    pub(crate) timeout: Option<String>,
}

/// A retry policy; unset fields keep the handler's own.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryOverride {
    pub(crate) max: Option<u32>,
    pub(crate) backoff: Option<String>,
    pub(crate) factor: Option<u32>,
    pub(crate) max_delay: Option<String>,
}

impl ConfigFile {
    /// Parses the file's text; the error names the file and the problem.
    pub(crate) fn parse(name: &str, text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| format!("{name}: {e}"))
    }
}

impl RetryOverride {
    /// The handler's policy with these fields replaced.
    pub(crate) fn apply(&self, mut retry: Retry) -> Result<Retry, String> {
        let ms = |text: &str| hooksmith_grammar::parse_duration_ms(text).map_err(|e| e.message);
        if let Some(max) = self.max {
            retry.max = max;
        }
        if let Some(backoff) = &self.backoff {
            retry.backoff_ms = ms(backoff)?;
        }
        if let Some(factor) = self.factor {
            if factor == 0 {
                return Err("retry factor must be at least 1".into());
            }
            retry.factor = factor;
        }
        if let Some(max_delay) = &self.max_delay {
            retry.max_delay_ms = ms(max_delay)?;
        }
        Ok(retry)
    }
}

/// A secret variable name as written: a trailing `?` makes it optional.
pub(crate) fn secret_name(name: &str) -> (&str, bool) {
    match name.strip_suffix('?') {
        Some(name) => (name, true),
        None => (name, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_unknown_keys() {
        let text = r#"
            [endpoints."/hooks/github"]
            max_body = 10
            secrets = ["A", "B?"]
            [handlers.pr_opened]
            retry = { max = 1, backoff = "2s" }
            timeout = "30s"
        "#;
        let file = ConfigFile::parse("hooksmith.toml", text).unwrap();
        assert_eq!(file.endpoints["/hooks/github"].max_body, Some(10));
        let retry = file.handlers["pr_opened"]
            .retry
            .as_ref()
            .unwrap()
            .apply(Retry::DEFAULT)
            .unwrap();
        assert_eq!((retry.max, retry.backoff_ms, retry.factor), (1, 2_000, 2));
        assert_eq!(secret_name("B?"), ("B", true));
        let error =
            ConfigFile::parse("hooksmith.toml", "[endpoints.\"/x\"]\nmax_bdy = 1").unwrap_err();
        assert!(
            error.contains("max_bdy") && error.contains("hooksmith.toml"),
            "{error}"
        );
    }
}
