//! The attribute's meaning: required keys, scheme names, routes, regexes, JSON paths, durations,
//! and what a handler's signature allows. Every problem is collected and reported at once, each
//! at the narrowest token.

use hooksmith_grammar as grammar;
use proc_macro2::Span;
use syn::LitStr;

use super::args::{Args, KeySpan, Predicate, SecretArg, TargetArg, ValueArg, kw};
use super::handler::Handler;

/// Endpoint settings, either written as keys or named as a const.
pub(crate) enum EndpointModel {
    Const(syn::Path),
    Keys(Box<EndpointKeys>),
}

pub(crate) struct EndpointKeys {
    pub(crate) path: String,
    pub(crate) sig: String,
    pub(crate) header: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) encoding: Option<&'static str>,
    pub(crate) secrets: Vec<(String, bool)>,
    pub(crate) event_header: Option<String>,
    pub(crate) event_field: Option<String>,
    pub(crate) id_header: Option<String>,
    pub(crate) id_field: Option<String>,
    pub(crate) max_body: Option<u64>,
    pub(crate) tolerance: Option<u64>,
    pub(crate) methods: Vec<String>,
    pub(crate) name: Option<String>,
    pub(crate) enabled: Option<bool>,
}

pub(crate) struct RetryModel {
    pub(crate) max: u32,
    pub(crate) backoff_ms: u64,
    pub(crate) factor: u32,
    pub(crate) max_delay_ms: u64,
}

/// Everything expansion needs, already checked.
pub(crate) struct Valid<'a> {
    pub(crate) handler: &'a Handler,
    pub(crate) endpoint: EndpointModel,
    pub(crate) events: Vec<String>,
    pub(crate) filter: Option<&'a [Predicate]>,
    pub(crate) handled: bool,
    pub(crate) retry: Option<RetryModel>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) order_by: Option<String>,
}

#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        let error = syn::Error::new(span, message);
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }
}

const GENERIC_SCHEMES: &[&str] = &["hmac-sha256", "hmac-sha1"];

pub(crate) fn validate<'a>(args: &'a Args, handler: &'a Handler) -> syn::Result<Valid<'a>> {
    let mut errors = Errors::default();
    let Args {
        keys,
        path,
        endpoint,
        sig,
        header,
        prefix,
        encoding,
        secrets,
        events,
        event_header,
        event_field,
        id_header,
        id_field,
        filter,
        ack,
        retry,
        timeout,
        order_by,
        max_body,
        tolerance,
        methods,
        name,
        enabled,
    } = args;

    let endpoint = match endpoint {
        Some(constant) => {
            for KeySpan { name: key, span } in
                keys.iter().filter(|k| kw::ENDPOINT_LEVEL.contains(&k.name))
            {
                let constant = quote::quote!(#constant).to_string().replace(' ', "");
                errors.at(
                    *span,
                    format!("`{key}` is an endpoint setting, and `endpoint = {constant}` already sets them: remove `{key}` here, or set it on the const `Endpoint`"),
                );
            }
            EndpointModel::Const(constant.clone())
        }
        None => EndpointModel::Keys(Box::new(endpoint_keys(
            &mut errors,
            EndpointArgs {
                path,
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
                tolerance,
                methods,
                name,
                enabled,
            },
        ))),
    };

    let mut event_names = Vec::new();
    if let Some((span, list)) = events {
        if list.is_empty() {
            errors.at(
                *span,
                "empty event list: name at least one event, or remove `event` to take them all",
            );
        }
        for lit in list {
            let value = lit.value();
            if let Err(e) = grammar::check_event_pattern(&value) {
                errors.at(lit.span(), e.message);
            }
            event_names.push(value);
        }
    }

    if let Some((_, predicates)) = filter {
        predicates
            .iter()
            .for_each(|p| check_predicate(&mut errors, p));
    }

    let handled = match ack {
        None => false,
        Some(lit) => match lit.value().as_str() {
            "stored" => false,
            "handled" => true,
            other => {
                errors.at(
                    lit.span(),
                    format!("unknown ack mode `{other}`: expected `\"stored\"` (persist, answer 204, run from the queue) or `\"handled\"` (run in the request and answer with its response)"),
                );
                false
            }
        },
    };

    let retry = retry.as_ref().map(|(_, r)| {
        let max = r.max.as_ref().map_or(Ok(5), |lit| lit.base10_parse::<u32>()).unwrap_or_else(|e| {
            errors.at(e.span(), "`max` is the number of retries, a whole number such as `5`");
            5
        });
        let backoff_ms = duration(&mut errors, r.backoff.as_ref(), 1_000);
        let max_delay_ms = duration(&mut errors, r.max_delay.as_ref(), 3_600_000);
        let factor = match &r.factor {
            None => 2,
            Some(lit) => match lit.base10_parse::<u32>() {
                Ok(0) | Err(_) => {
                    errors.at(lit.span(), "`factor` multiplies each delay: a whole number of at least 1, such as `2`");
                    2
                }
                Ok(f) => f,
            },
        };
        RetryModel {
            max,
            backoff_ms,
            factor,
            max_delay_ms,
        }
    });

    let timeout_ms = timeout
        .as_ref()
        .map(|lit| duration(&mut errors, Some(lit), 0))
        .filter(|ms| *ms > 0);
    if let Some(lit) = timeout
        && timeout_ms.is_none()
        && grammar::parse_duration_ms(&lit.value()).is_ok()
    {
        errors.at(lit.span(), "`timeout` must be longer than zero");
    }

    if let Some(lit) = order_by
        && let Err(e) = grammar::parse_json_path(&lit.value())
    {
        errors.at(lit.span(), e.message);
    }

    match errors.0 {
        Some(error) => Err(error),
        None => Ok(Valid {
            handler,
            endpoint,
            events: event_names,
            filter: filter.as_ref().map(|(_, p)| p.as_slice()),
            handled,
            retry,
            timeout_ms,
            order_by: order_by.as_ref().map(LitStr::value),
        }),
    }
}

struct EndpointArgs<'a> {
    path: &'a Option<LitStr>,
    sig: &'a Option<LitStr>,
    header: &'a Option<LitStr>,
    prefix: &'a Option<LitStr>,
    encoding: &'a Option<LitStr>,
    secrets: &'a Option<(Span, Vec<SecretArg>)>,
    event_header: &'a Option<LitStr>,
    event_field: &'a Option<LitStr>,
    id_header: &'a Option<LitStr>,
    id_field: &'a Option<LitStr>,
    max_body: &'a Option<syn::LitInt>,
    tolerance: &'a Option<syn::LitInt>,
    methods: &'a Option<(Span, Vec<LitStr>)>,
    name: &'a Option<LitStr>,
    enabled: &'a Option<syn::LitBool>,
}

fn endpoint_keys(errors: &mut Errors, a: EndpointArgs<'_>) -> EndpointKeys {
    let path = match a.path {
        None => {
            errors.at(
                Span::call_site(),
                "missing `path`: add `path = \"/hooks/github\"`, or `endpoint = NAME` for a const `hooksmith::Endpoint`",
            );
            String::new()
        }
        Some(lit) => {
            let value = lit.value();
            if let Err(e) = grammar::check_route(&value) {
                errors.at(lit.span(), e.message);
            }
            value
        }
    };
    let sig = match a.sig {
        None => {
            errors.at(
                Span::call_site(),
                "missing `sig`: name the provider's scheme (`sig = \"github\"`), or write `sig = \"none\"` to accept unsigned deliveries",
            );
            String::new()
        }
        Some(lit) => {
            let value = lit.value();
            if !grammar::SCHEMES.contains(&value.as_str()) {
                errors.at(
                    lit.span(),
                    format!(
                        "unknown signature scheme `{value}`: expected one of {}",
                        grammar::SCHEMES
                            .iter()
                            .map(|s| format!("`{s}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            value
        }
    };
    let generic = GENERIC_SCHEMES.contains(&sig.as_str());
    for (lit, key) in [
        (a.header, kw::HEADER),
        (a.prefix, kw::PREFIX),
        (a.encoding, kw::ENCODING),
    ] {
        if let (Some(lit), false, false) = (lit, generic, sig.is_empty()) {
            errors.at(
                lit.span(),
                format!("`{key}` applies to the generic `hmac-sha256` and `hmac-sha1` schemes only; `{sig}` knows its own format: remove `{key}`"),
            );
        }
    }
    if let Some(lit) = a.header
        && let Err(e) = grammar::check_header_name(&lit.value())
    {
        errors.at(lit.span(), e.message);
    }
    let encoding = a.encoding.as_ref().map(|lit| match lit.value().as_str() {
        "hex" => "Hex",
        "base64" => "Base64",
        other => {
            errors.at(
                lit.span(),
                format!("unknown encoding `{other}`: expected `\"hex\"` or `\"base64\"`"),
            );
            "Hex"
        }
    });

    let mut secrets = Vec::new();
    if let Some((span, list)) = a.secrets {
        if sig == "none" {
            errors.at(
                *span,
                "`sig = \"none\"` verifies nothing, so a secret would be ignored: remove `secret`, or choose the provider's scheme",
            );
        }
        if list.is_empty() {
            errors.at(*span, "empty secret list: `secret = env(\"NAME\")`");
        }
        for SecretArg { name, optional } in list {
            let value = name.value();
            if value.is_empty() || value.contains('=') || value.contains('\0') {
                errors.at(
                    name.span(),
                    "not an environment variable name: write one such as `GITHUB_WEBHOOK_SECRET`",
                );
            }
            secrets.push((value, *optional));
        }
    }

    let header_key = |errors: &mut Errors, lit: &Option<LitStr>| {
        lit.as_ref().map(|lit| {
            if let Err(e) = grammar::check_header_name(&lit.value()) {
                errors.at(lit.span(), e.message);
            }
            lit.value()
        })
    };
    let field_key = |errors: &mut Errors, lit: &Option<LitStr>| {
        lit.as_ref().map(|lit| {
            if let Err(e) = grammar::parse_json_path(&lit.value()) {
                errors.at(lit.span(), e.message);
            }
            lit.value()
        })
    };
    let event_header = header_key(errors, a.event_header);
    let event_field = field_key(errors, a.event_field);
    let id_header = header_key(errors, a.id_header);
    let id_field = field_key(errors, a.id_field);
    for (h, f, what) in [
        (a.event_header, a.event_field, "event"),
        (a.id_header, a.id_field, "id"),
    ] {
        if let (Some(_), Some(field)) = (h, f) {
            errors.at(
                field.span(),
                format!("set either `{what}_header` or `{what}_field`, not both"),
            );
        }
    }

    let positive = |errors: &mut Errors, lit: &Option<syn::LitInt>, what: &str| {
        lit.as_ref()
            .and_then(|lit| match lit.base10_parse::<u64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    errors.at(
                        lit.span(),
                        format!("`{what}` is a whole number greater than zero"),
                    );
                    None
                }
            })
    };
    let max_body = positive(errors, a.max_body, "max_body (bytes)");
    let tolerance = positive(errors, a.tolerance, "tolerance (seconds)");

    let mut methods = Vec::new();
    if let Some((_, list)) = a.methods {
        for lit in list {
            let value = lit.value().to_ascii_uppercase();
            if !grammar::METHODS.contains(&value.as_str()) {
                errors.at(
                    lit.span(),
                    format!(
                        "unsupported method `{}`: expected one of {}",
                        lit.value(),
                        grammar::METHODS.join(", ")
                    ),
                );
            }
            methods.push(value);
        }
    }

    EndpointKeys {
        path,
        sig,
        header: a.header.as_ref().map(LitStr::value),
        prefix: a.prefix.as_ref().map(LitStr::value),
        encoding,
        secrets,
        event_header,
        event_field,
        id_header,
        id_field,
        max_body,
        tolerance,
        methods,
        name: a.name.as_ref().map(LitStr::value),
        enabled: a.enabled.as_ref().map(|b| b.value),
    }
}

fn duration(errors: &mut Errors, lit: Option<&LitStr>, default: u64) -> u64 {
    let Some(lit) = lit else { return default };
    grammar::parse_duration_ms(&lit.value()).unwrap_or_else(|e| {
        errors.at(lit.span(), e.message);
        default
    })
}

fn check_predicate(errors: &mut Errors, predicate: &Predicate) {
    let check_target = |errors: &mut Errors, target: &TargetArg| match target {
        TargetArg::Json(path, span) => {
            if let Err(e) = grammar::parse_json_path(path) {
                errors.at(*span, e.message);
            }
        }
        TargetArg::Header(lit) => {
            if let Err(e) = grammar::check_header_name(&lit.value()) {
                errors.at(lit.span(), e.message);
            }
        }
    };
    match predicate {
        Predicate::Eq(target, value) => {
            check_target(errors, target);
            if let (
                TargetArg::Header(_),
                ValueArg::Int(_, span)
                | ValueArg::Float(_, span)
                | ValueArg::Bool(_, span)
                | ValueArg::Null(span),
            ) = (target, value)
            {
                errors.at(
                    *span,
                    "a header is compared with a string: write `header(\"X-Name\") = \"value\"`",
                );
            }
        }
        Predicate::Regex(target, pattern) => {
            check_target(errors, target);
            if let Err(e) = grammar::check_regex(&pattern.value()) {
                errors.at(pattern.span(), e.message);
            }
        }
        Predicate::All(items) | Predicate::Any(items) => {
            items.iter().for_each(|p| check_predicate(errors, p))
        }
        Predicate::Not(inner) => check_predicate(errors, inner),
    }
}
