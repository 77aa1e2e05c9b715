//! Filters compiled at startup from the const [`Filter`] records, evaluated at ingest against the
//! routing fields and the headers.

use http::{HeaderMap, HeaderName};
use regex::Regex;

use crate::routing::{FieldPlan, Scalar};
use crate::spec::{Filter, Target, Value};

/// A filter ready to evaluate.
#[derive(Debug, Clone)]
pub(crate) enum Compiled {
    Eq(Probe, Value),
    Regex(Probe, Regex),
    All(Vec<Compiled>),
    Any(Vec<Compiled>),
    Not(Box<Compiled>),
}

#[derive(Debug, Clone)]
pub(crate) enum Probe {
    Slot(usize),
    Header(HeaderName),
}

impl Compiled {
    /// Compiles a filter, registering its JSON paths in `plan`.
    pub(crate) fn new(filter: &Filter, plan: &mut FieldPlan) -> Result<Self, String> {
        Ok(match filter {
            Filter::Eq(target, value) => Compiled::Eq(probe(target, plan)?, *value),
            Filter::Regex(target, pattern) => Compiled::Regex(
                probe(target, plan)?,
                Regex::new(pattern)
                    .map_err(|e| format!("invalid filter regex `{pattern}`: {e}"))?,
            ),
            Filter::All(items) => Compiled::All(compile_all(items, plan)?),
            Filter::Any(items) => Compiled::Any(compile_all(items, plan)?),
            Filter::Not(inner) => Compiled::Not(Box::new(Compiled::new(inner, plan)?)),
        })
    }

    /// Whether the filter holds for these fields and headers.
    pub(crate) fn matches(&self, fields: &[Option<Scalar<'_>>], headers: &HeaderMap) -> bool {
        match self {
            Compiled::Eq(Probe::Slot(slot), value) => json_equals(fields[*slot].as_ref(), value),
            Compiled::Eq(Probe::Header(name), value) => headers.get_all(name).iter().any(
                |v| matches!(value, Value::Str(expected) if v.as_bytes() == expected.as_bytes()),
            ),
            Compiled::Regex(Probe::Slot(slot), re) => {
                matches!(&fields[*slot], Some(Scalar::Str(s)) if re.is_match(s))
            }
            Compiled::Regex(Probe::Header(name), re) => headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| re.is_match(v))),
            Compiled::All(items) => items.iter().all(|f| f.matches(fields, headers)),
            Compiled::Any(items) => items.iter().any(|f| f.matches(fields, headers)),
            Compiled::Not(inner) => !inner.matches(fields, headers),
        }
    }
}

fn compile_all(items: &[Filter], plan: &mut FieldPlan) -> Result<Vec<Compiled>, String> {
    items.iter().map(|f| Compiled::new(f, plan)).collect()
}

fn probe(target: &Target, plan: &mut FieldPlan) -> Result<Probe, String> {
    match target {
        Target::Json(path) => {
            let segments = hooksmith_grammar::parse_json_path(path).map_err(|e| e.message)?;
            Ok(Probe::Slot(plan.add(&segments)))
        }
        Target::Header(name) => HeaderName::try_from(*name)
            .map(Probe::Header)
            .map_err(|_| format!("`{name}` is not a valid header name")),
    }
}

fn json_equals(found: Option<&Scalar<'_>>, expected: &Value) -> bool {
    match (found, expected) {
        (None | Some(Scalar::Null), Value::Null) => true,
        (Some(Scalar::Str(s)), Value::Str(e)) => s == e,
        (Some(Scalar::Bool(b)), Value::Bool(e)) => b == e,
        (Some(Scalar::Int(n)), Value::Int(e)) => n == e,
        (Some(Scalar::UInt(n)), Value::Int(e)) => i64::try_from(*n).is_ok_and(|n| n == *e),
        #[allow(clippy::cast_precision_loss)]
        (Some(Scalar::Int(n)), Value::Float(e)) => (*n as f64) == *e,
        #[allow(clippy::cast_precision_loss)]
        (Some(Scalar::UInt(n)), Value::Float(e)) => (*n as f64) == *e,
        (Some(Scalar::Float(n)), Value::Float(e)) => n == e,
        #[allow(clippy::cast_precision_loss)]
        (Some(Scalar::Float(n)), Value::Int(e)) => *n == (*e as f64),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::extract;

    fn check(
        filter: &'static Filter,
        json: &str,
        headers: &[(&'static str, &'static str)],
    ) -> bool {
        let mut plan = FieldPlan::default();
        let compiled = Compiled::new(filter, &mut plan).unwrap();
        let fields = extract(json.as_bytes(), &plan).unwrap();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(*k, v.parse().unwrap());
        }
        compiled.matches(&fields, &map)
    }

    #[test]
    fn equality_compares_json_types() {
        const OPENED: Filter = Filter::Eq(Target::Json("action"), Value::Str("opened"));
        assert!(check(&OPENED, r#"{"action":"opened"}"#, &[]));
        assert!(!check(&OPENED, r#"{"action":"closed"}"#, &[]));
        assert!(!check(&OPENED, r#"{"other":"opened"}"#, &[]));
        assert!(!check(
            &Filter::Eq(Target::Json("n"), Value::Str("7")),
            r#"{"n":7}"#,
            &[]
        ));
        assert!(check(
            &Filter::Eq(Target::Json("n"), Value::Int(7)),
            r#"{"n":7}"#,
            &[]
        ));
        assert!(check(
            &Filter::Eq(Target::Json("n"), Value::Int(-7)),
            r#"{"n":-7.0}"#,
            &[]
        ));
        assert!(check(
            &Filter::Eq(Target::Json("b"), Value::Bool(true)),
            r#"{"b":true}"#,
            &[]
        ));
        assert!(check(
            &Filter::Eq(Target::Json("gone"), Value::Null),
            r#"{}"#,
            &[]
        ));
        assert!(check(
            &Filter::Eq(Target::Json("a.b"), Value::Str("x")),
            r#"{"a":{"b":"x"}}"#,
            &[]
        ));
    }

    #[test]
    fn combinators_and_regexes_and_headers() {
        const F: Filter = Filter::All(&[
            Filter::Regex(Target::Json("repository.name"), "^my-repo"),
            Filter::Any(&[
                Filter::Eq(Target::Header("x-github-event"), Value::Str("push")),
                Filter::Regex(Target::Header("x-github-event"), "^pull_"),
            ]),
            Filter::Not(&Filter::Eq(Target::Json("draft"), Value::Bool(true))),
        ]);
        let repo = r#"{"repository":{"name":"my-repo-2"},"draft":false}"#;
        assert!(check(&F, repo, &[("x-github-event", "push")]));
        assert!(check(&F, repo, &[("x-github-event", "pull_request")]));
        assert!(!check(&F, repo, &[("x-github-event", "issues")]));
        assert!(!check(&F, repo, &[]));
        assert!(!check(
            &F,
            r#"{"repository":{"name":"other"}}"#,
            &[("x-github-event", "push")]
        ));
        assert!(!check(
            &F,
            r#"{"repository":{"name":"my-repo"},"draft":true}"#,
            &[("x-github-event", "push")]
        ));
    }
}
