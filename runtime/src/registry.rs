//! Turns the registrations (collected by `inventory` or given explicitly) into validated
//! endpoints: grouped by path, conflicts and duplicates refused with both locations named,
//! secrets read, schemes built, filters compiled. Every problem is collected and reported at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use http::{HeaderName, HeaderValue, Method};

use crate::__private::{Registration, RunFn};
use crate::config_file::{self, ConfigFile};
use crate::extract::StateMap;
use crate::filter::Compiled;
use crate::routing::FieldPlan;
use crate::scheme::{self, Params, Secret, Verifier};
use crate::spec::{Ack, Endpoint, Retry};

/// The default body limit when neither the endpoint nor its scheme sets one.
pub(crate) const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
/// How long a handler run may take before it is abandoned and retried, in milliseconds.
pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 5 * 60 * 1000;
/// The default timestamp tolerance, in seconds.
pub(crate) const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Where an endpoint reads a routing value from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Header(Vec<HeaderName>),
    Field(usize),
    Absent,
}

/// One event pattern of a handler, with the action sugar split off.
#[derive(Debug, Clone)]
pub(crate) struct EventMatch {
    pub(crate) event: String,
    pub(crate) action: Option<String>,
}

/// A validated handler.
#[derive(Debug)]
pub(crate) struct HandlerRt {
    pub(crate) name: &'static str,
    pub(crate) events: Vec<EventMatch>,
    pub(crate) action_slot: Option<usize>,
    pub(crate) order_slot: Option<usize>,
    pub(crate) filter: Option<Compiled>,
    pub(crate) ack: Ack,
    pub(crate) retry: Retry,
    pub(crate) timeout_ms: u64,
    pub(crate) run: RunFn,
}

/// A validated endpoint.
#[derive(Debug)]
pub(crate) struct EndpointRt {
    pub(crate) path: &'static str,
    pub(crate) name: Option<&'static str>,
    pub(crate) scheme: &'static str,
    pub(crate) scheme_def: &'static crate::scheme::Scheme,
    pub(crate) params: Params<'static>,
    /// Whether the path holds `{connection}`: secrets come from the connection, not `verifier`.
    pub(crate) tenant: bool,
    pub(crate) verifier: Arc<dyn Verifier>,
    pub(crate) secret_names: Vec<&'static str>,
    pub(crate) methods: Vec<Method>,
    pub(crate) allow: HeaderValue,
    pub(crate) max_body: u64,
    pub(crate) tolerance_secs: u64,
    pub(crate) event: Source,
    pub(crate) id: Source,
    pub(crate) plan: FieldPlan,
    pub(crate) signing: Option<Signing>,
    /// The endpoint's own signature header (`header = "…"`), redacted beside the
    /// [`always_redacted`] ones.
    pub(crate) redact: Option<HeaderName>,
    pub(crate) handlers: Vec<Arc<HandlerRt>>,
    pub(crate) enabled: AtomicBool,
}

/// What `App::sign` needs to sign as the provider would: the scheme's signer, the endpoint's
/// params and its first secret.
#[derive(Debug)]
pub(crate) struct Signing {
    pub(crate) sign: crate::scheme::SignFn,
    pub(crate) header: Option<&'static str>,
    pub(crate) prefix: Option<&'static str>,
    pub(crate) encoding: Option<crate::spec::Encoding>,
    pub(crate) secret: Secret,
}

impl Signing {
    pub(crate) fn params(&self) -> Params<'static> {
        Params {
            header: self.header,
            prefix: self.prefix,
            encoding: self.encoding,
        }
    }
}

/// How secrets are found while building.
pub(crate) struct SecretLookup<'a> {
    pub(crate) var: &'a dyn Fn(&str) -> Option<String>,
    /// Generate a secret for an unset variable (the quickstart's development mode).
    pub(crate) generate_missing: bool,
}

/// A secret generated in development mode, to print once.
#[derive(Clone)]
pub(crate) struct GeneratedSecret {
    pub(crate) var: &'static str,
    pub(crate) value: String,
}

impl std::fmt::Debug for GeneratedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedSecret")
            .field("var", &self.var)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// The result of building.
pub(crate) struct Built {
    pub(crate) endpoints: Vec<Arc<EndpointRt>>,
    pub(crate) generated: Vec<GeneratedSecret>,
}

fn location(r: &Registration) -> String {
    format!("`{}` ({}:{})", r.name, r.file, r.line)
}

/// Sorts, de-duplicates and validates registrations.
pub(crate) fn build(
    registrations: Vec<Registration>,
    state: &StateMap,
    secrets: &SecretLookup<'_>,
    disabled: &[String],
    file: &ConfigFile,
) -> Result<Built, Vec<String>> {
    let mut errors = Vec::new();
    let mut regs = registrations;
    regs.sort_by(|a, b| (a.file, a.line, a.name).cmp(&(b.file, b.line, b.name)));
    // The same function registered twice (inventory and explicitly) counts once.
    regs.dedup_by(|a, b| (a.name, a.file, a.line, a.module) == (b.name, b.file, b.line, b.module));

    let mut by_name: BTreeMap<&str, &Registration> = BTreeMap::new();
    for r in &regs {
        if let Some(first) = by_name.insert(r.name, r) {
            errors.push(format!(
                "two handlers are named `{}`: {} and {}; handler names identify jobs in the store, so rename one",
                r.name,
                location(first),
                location(r)
            ));
        }
    }

    let mut groups: BTreeMap<&str, Vec<&Registration>> = BTreeMap::new();
    for r in &regs {
        groups.entry(r.endpoint.path).or_default().push(r);
    }

    for path in file.endpoints.keys() {
        if !groups.contains_key(path.as_str()) {
            errors.push(format!(
                "hooksmith.toml names the endpoint `{path}`, which this app does not have; mounted: {}",
                groups.keys().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for name in file.handlers.keys() {
        if !by_name.contains_key(name.as_str()) {
            errors.push(format!(
                "hooksmith.toml names the handler `{name}`, which this app does not have"
            ));
        }
    }
    let mut endpoints = Vec::new();
    let mut generated = Vec::new();
    for (path, group) in groups {
        let first = group[0];
        for other in &group[1..] {
            let fields = differing_fields(&first.endpoint, &other.endpoint);
            if !fields.is_empty() {
                errors.push(format!(
                    "handlers {} and {} share the endpoint `{path}` but set {} differently; endpoint settings must agree (share them with a `const` `hooksmith::Endpoint` and `endpoint = NAME`)",
                    location(first),
                    location(other),
                    fields.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "),
                ));
            }
        }
        match endpoint(first, &group, state, secrets, &mut generated, file) {
            Ok(ep) => {
                if disabled.iter().any(|d| d == path) {
                    ep.enabled
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                }
                endpoints.push(Arc::new(ep));
            }
            Err(mut problems) => errors.append(&mut problems),
        }
    }
    if errors.is_empty() {
        Ok(Built {
            endpoints,
            generated,
        })
    } else {
        Err(errors)
    }
}

fn differing_fields(a: &Endpoint, b: &Endpoint) -> Vec<&'static str> {
    let Endpoint {
        path: _,
        sig,
        header,
        prefix,
        encoding,
        secrets,
        event_header,
        event_field,
        id_header,
        id_field,
        max_body,
        tolerance_secs,
        methods,
        name,
        enabled,
    } = a;
    let mut out = Vec::new();
    let mut check = |same: bool, field: &'static str| {
        if !same {
            out.push(field);
        }
    };
    check(*sig == b.sig, "sig");
    check(*header == b.header, "header");
    check(*prefix == b.prefix, "prefix");
    check(*encoding == b.encoding, "encoding");
    check(*secrets == b.secrets, "secret");
    check(*event_header == b.event_header, "event_header");
    check(*event_field == b.event_field, "event_field");
    check(*id_header == b.id_header, "id_header");
    check(*id_field == b.id_field, "id_field");
    check(*max_body == b.max_body, "max_body");
    check(*tolerance_secs == b.tolerance_secs, "tolerance");
    check(*methods == b.methods, "methods");
    check(*name == b.name, "name");
    check(*enabled == b.enabled, "enabled");
    out
}

fn endpoint(
    first: &Registration,
    group: &[&Registration],
    state: &StateMap,
    lookup: &SecretLookup<'_>,
    generated: &mut Vec<GeneratedSecret>,
    file: &ConfigFile,
) -> Result<EndpointRt, Vec<String>> {
    let e = &first.endpoint;
    let at = location(first);
    let overrides = file.endpoints.get(e.path).cloned().unwrap_or_default();
    let path = e.path;
    let mut errors = Vec::new();

    if let Err(err) = hooksmith_grammar::check_route(path) {
        errors.push(format!("{at}: {}", err.message));
    }
    let tenant = path.contains(hooksmith_grammar::CONNECTION_PARAM);
    let scheme = match scheme::lookup(e.sig) {
        Ok(s) => s,
        Err(message) => {
            let hint = if e.sig.is_empty() {
                "no signature scheme: set `sig = \"...\"` (or `.sig(..)` on the const endpoint); write `sig = \"none\"` to accept unsigned deliveries".to_owned()
            } else {
                message
            };
            errors.push(format!("{at}: endpoint `{path}`: {hint}"));
            return Err(errors);
        }
    };
    let d = scheme.defaults;

    // Secrets. A per-tenant endpoint verifies with each connection's secrets, from the store.
    if tenant && !scheme.needs_secret {
        errors.push(format!(
            "{at}: `{path}` is a per-tenant endpoint, verified with each connection's secret: choose the providers' scheme instead of `sig = \"none\"`"
        ));
    }
    if tenant && !e.secrets.is_empty() {
        errors.push(format!(
            "{at}: `{path}` is a per-tenant endpoint: its secrets belong to its connections (admin API), remove `secret`"
        ));
    }
    let from_file: Option<Vec<(&'static str, bool)>> = overrides.secrets.as_ref().map(|names| {
        names
            .iter()
            .map(|n| {
                let (name, optional) = config_file::secret_name(n);
                // Read once at startup and kept for the life of the app.
                (&*Box::leak(name.to_owned().into_boxed_str()), optional)
            })
            .collect()
    });
    let sources: Vec<(&'static str, bool)> = if tenant {
        Vec::new()
    } else if let Some(names) = from_file.filter(|_| scheme.needs_secret) {
        names
    } else if !scheme.needs_secret {
        if !e.secrets.is_empty() {
            errors.push(format!(
                "{at}: endpoint `{path}` has `sig = \"none\"` and a secret; remove the secret or choose a scheme"
            ));
        }
        Vec::new()
    } else if e.secrets.is_empty() {
        vec![(
            d.secret_env.unwrap_or_else(|| default_secret_env(path)),
            false,
        )]
    } else {
        e.secrets.iter().map(|s| (s.env, s.optional)).collect()
    };
    let mut secret_values = Vec::new();
    for (var, optional) in &sources {
        match (lookup.var)(var) {
            Some(value) if value.is_empty() => errors.push(format!(
                "{at}: the secret in `{var}` for `{path}` is empty"
            )),
            Some(value) if value.trim() != value => errors.push(format!(
                "{at}: the secret in `{var}` for `{path}` starts or ends with whitespace; remove it (a copied newline is the usual cause)"
            )),
            Some(value) => match (scheme.check_secret)(&value) {
                Ok(()) => secret_values.push(Secret::new(value)),
                Err(problem) => errors.push(format!(
                    "{at}: the secret in `{var}` for `{path}` is not valid: {problem}"
                )),
            },
            None if *optional => {}
            None if lookup.generate_missing => {
                let value = random_secret();
                secret_values.push(Secret::new(value.clone()));
                generated.push(GeneratedSecret { var, value });
            }
            None => errors.push(format!(
                "{at}: endpoint `{path}` (sig = \"{}\") needs a secret: set the environment variable `{var}`; to accept unsigned deliveries write `sig = \"none\"`",
                scheme.name
            )),
        }
    }
    if scheme.needs_secret && !tenant && secret_values.is_empty() && errors.is_empty() {
        errors.push(format!("{at}: endpoint `{path}` has no secret set"));
    }

    let params = Params {
        header: e.header,
        prefix: e.prefix,
        encoding: e.encoding,
    };
    let signing = secret_values.first().map(|secret| Signing {
        sign: scheme.sign,
        header: e.header,
        prefix: e.prefix,
        encoding: e.encoding,
        secret: secret.clone(),
    });
    let verifier = if tenant {
        Some(Arc::new(crate::scheme::NoConnection) as Arc<dyn Verifier>)
    } else if errors.is_empty() {
        match (scheme.build)(&params, &secret_values) {
            Ok(v) => Some(v),
            Err(message) => {
                errors.push(format!("{at}: endpoint `{path}`: {message}"));
                None
            }
        }
    } else {
        None
    };

    // Methods.
    let method_names: &[&str] = if e.methods.is_empty() {
        &["POST"]
    } else {
        e.methods
    };
    let mut methods = Vec::new();
    for m in method_names {
        let upper = m.to_ascii_uppercase();
        if hooksmith_grammar::METHODS.contains(&upper.as_str()) {
            methods.extend(Method::from_bytes(upper.as_bytes()).ok());
        } else {
            errors.push(format!(
                "{at}: unsupported method `{m}`; expected one of {}",
                hooksmith_grammar::METHODS.join(", ")
            ));
        }
    }
    let allow = HeaderValue::from_str(
        &methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", "),
    )
    .unwrap_or_else(|_| HeaderValue::from_static("POST"));

    // Routing fields.
    let mut plan = FieldPlan::default();
    let mut source =
        |headers: &[&str], field: Option<&str>, what: &str, errors: &mut Vec<String>| {
            if !headers.is_empty() {
                match headers
                    .iter()
                    .map(|h| HeaderName::try_from(*h))
                    .collect::<Result<Vec<_>, _>>()
                {
                    Ok(names) => return Source::Header(names),
                    Err(_) => errors.push(format!(
                        "{at}: {headers:?} holds an invalid {what} header name"
                    )),
                }
            }
            if let Some(f) = field {
                match hooksmith_grammar::parse_json_path(f) {
                    Ok(segments) => return Source::Field(plan.add(&segments)),
                    Err(err) => errors.push(format!("{at}: {what} field: {}", err.message)),
                }
            }
            Source::Absent
        };
    // An endpoint's own setting replaces the scheme's preset as a whole.
    // An endpoint's own setting replaces the scheme's preset as a whole.
    let (event_header, event_field) = if e.event_header.is_some() || e.event_field.is_some() {
        (e.event_header.as_slice(), e.event_field)
    } else {
        (d.event_header, d.event_field)
    };
    let (id_header, id_field) = if e.id_header.is_some() || e.id_field.is_some() {
        (e.id_header.as_slice(), e.id_field)
    } else {
        (d.id_header, d.id_field)
    };
    let event = source(event_header, event_field, "event", &mut errors);
    let id = source(id_header, id_field, "delivery id", &mut errors);

    let mut handlers = Vec::new();
    for r in group {
        let at = location(r);
        let mut events = Vec::new();
        let mut wants_action = false;
        for pattern in r.events {
            if let Err(err) = hooksmith_grammar::check_event_pattern(pattern) {
                errors.push(format!("{at}: {}", err.message));
            }
            let split = d.action_field.and_then(|_| pattern.split_once('.'));
            events.push(match split {
                Some((event, action)) => {
                    wants_action = true;
                    EventMatch {
                        event: event.to_owned(),
                        action: Some(action.to_owned()),
                    }
                }
                None => EventMatch {
                    event: (*pattern).to_owned(),
                    action: None,
                },
            });
        }
        if !events.is_empty() && matches!(event, Source::Absent) {
            errors.push(format!(
                "{at}: takes `event = ...`, but endpoint `{path}` has no event source; set `event_header = \"...\"` or `event_field = \"...\"`"
            ));
        }
        let action_slot = match (wants_action, d.action_field) {
            (true, Some(field)) => Some(plan.add(&[field])),
            _ => None,
        };
        let order_slot = match r.order_by.map(hooksmith_grammar::parse_json_path) {
            Some(Ok(segments)) => Some(plan.add(&segments)),
            Some(Err(err)) => {
                errors.push(format!("{at}: order_by: {}", err.message));
                None
            }
            None => None,
        };
        let filter = match r.filter.map(|f| Compiled::new(f, &mut plan)).transpose() {
            Ok(f) => f,
            Err(message) => {
                errors.push(format!("{at}: {message}"));
                None
            }
        };
        if let Err(message) = (r.check)(state) {
            errors.push(format!("{at}: {message}"));
        }
        let handler_overrides = file.handlers.get(r.name);
        let retry = match handler_overrides
            .and_then(|o| o.retry.as_ref())
            .map(|o| o.apply(r.retry))
        {
            Some(Ok(retry)) => retry,
            Some(Err(message)) => {
                errors.push(format!(
                    "{at}: hooksmith.toml [handlers.{}] retry: {message}",
                    r.name
                ));
                r.retry
            }
            None => r.retry,
        };
        let timeout_ms = match handler_overrides
            .and_then(|o| o.timeout.as_deref())
            .map(hooksmith_grammar::parse_duration_ms)
        {
            Some(Ok(ms)) if ms > 0 => ms,
            Some(Ok(_)) => {
                errors.push(format!(
                    "{at}: hooksmith.toml [handlers.{}] timeout must be longer than zero",
                    r.name
                ));
                DEFAULT_TIMEOUT_MS
            }
            Some(Err(e)) => {
                errors.push(format!(
                    "{at}: hooksmith.toml [handlers.{}] timeout: {}",
                    r.name, e.message
                ));
                DEFAULT_TIMEOUT_MS
            }
            None => r.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
        };
        handlers.push(Arc::new(HandlerRt {
            name: r.name,
            events,
            action_slot,
            order_slot,
            filter,
            ack: r.ack,
            retry,
            timeout_ms,
            run: r.run,
        }));
    }

    let redact = e
        .header
        .and_then(|h| HeaderName::try_from(h).ok())
        .filter(|h| !always_redacted(h.as_str()));

    match verifier {
        Some(verifier) if errors.is_empty() => Ok(EndpointRt {
            path,
            name: e.name,
            scheme: scheme.name,
            scheme_def: scheme,
            params,
            tenant,
            verifier,
            secret_names: sources.iter().map(|(v, _)| *v).collect(),
            methods,
            allow,
            max_body: overrides
                .max_body
                .or(e.max_body)
                .or(d.max_body)
                .unwrap_or(DEFAULT_MAX_BODY),
            tolerance_secs: overrides
                .tolerance
                .or(e.tolerance_secs)
                .unwrap_or(DEFAULT_TOLERANCE_SECS),
            event,
            id,
            plan,
            signing,
            redact,
            handlers,
            enabled: AtomicBool::new(overrides.enabled.unwrap_or(e.enabled)),
        }),
        _ => Err(errors),
    }
}

/// Whether a header's value is never stored, logged or shown, on any endpoint: credentials and
/// every provider's signature header. Checked for every header of every delivery, so it is a
/// `match`, which compares lengths before bytes, not a walk over a list of names.
pub(crate) fn always_redacted(name: &str) -> bool {
    matches!(
        name,
        "authorization"
            | "proxy-authorization"
            | "cookie"
            | "x-hub-signature"
            | "x-hub-signature-256"
            | "stripe-signature"
            | "webhook-signature"
            | "svix-signature"
            | "x-slack-signature"
            | "x-shopify-hmac-sha256"
            | "x-gitlab-token"
            | "linear-signature"
            | "x-twilio-signature"
            | "x-signature-ed25519"
    )
}

/// `HOOKSMITH_SECRET_` and the path in upper case, `/` and other punctuation as `_`:
/// `/events` → `HOOKSMITH_SECRET_EVENTS`, `/hooks/acme-ci` → `HOOKSMITH_SECRET_HOOKS_ACME_CI`.
pub(crate) fn default_secret_env(path: &str) -> &'static str {
    let mut name = String::from("HOOKSMITH_SECRET");
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        name.push('_');
        name.extend(segment.chars().map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        }));
    }
    // Built once per endpoint at startup; kept for the life of the app.
    Box::leak(name.into_boxed_str())
}

/// 32 random bytes as hex, from the OS's generator.
pub(crate) fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes);
    hex::encode(bytes)
}

/// Fills `bytes` from the OS's generator.
pub(crate) fn fill_random(bytes: &mut [u8]) {
    if getrandom::fill(bytes).is_err() {
        // No OS randomness: fall back to a fresh fastrand seed mixed per byte.
        bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_secret_names_follow_the_path() {
        assert_eq!(default_secret_env("/events"), "HOOKSMITH_SECRET_EVENTS");
        assert_eq!(
            default_secret_env("/hooks/acme-ci"),
            "HOOKSMITH_SECRET_HOOKS_ACME_CI"
        );
    }

    /// Credentials and every provider's signature header are redacted on any endpoint; the
    /// headers that say what a delivery is stay readable.
    #[test]
    fn credentials_and_signatures_are_redacted_and_nothing_else() {
        for name in [
            "authorization",
            "proxy-authorization",
            "cookie",
            "x-hub-signature",
            "x-hub-signature-256",
            "stripe-signature",
            "webhook-signature",
            "svix-signature",
            "x-slack-signature",
            "x-shopify-hmac-sha256",
            "x-gitlab-token",
            "linear-signature",
            "x-twilio-signature",
            "x-signature-ed25519",
        ] {
            assert!(always_redacted(name), "{name}");
        }
        for name in [
            "content-type",
            "content-length",
            "x-github-event",
            "x-github-delivery",
            "x-hub-signature-2560",
            "webhook-timestamp",
            "x-signature-timestamp",
            "",
        ] {
            assert!(!always_redacted(name), "{name}");
        }
    }

    #[test]
    fn random_secrets_differ() {
        assert_ne!(random_secret(), random_secret());
        assert_eq!(random_secret().len(), 64);
    }
}
