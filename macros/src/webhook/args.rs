//! The attribute's syntax: keys, literal kinds, unknown and repeated keys. Meaning is checked in
//! `validate.rs`.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::{LitBool, LitInt, LitStr, Token, bracketed, parenthesized};

pub(crate) mod kw {
    //! Key names, the one list used by parsing and by the "expected one of" message.
    pub(crate) const PATH: &str = "path";
    pub(crate) const ENDPOINT: &str = "endpoint";
    pub(crate) const SIG: &str = "sig";
    pub(crate) const HEADER: &str = "header";
    pub(crate) const PREFIX: &str = "prefix";
    pub(crate) const ENCODING: &str = "encoding";
    pub(crate) const SECRET: &str = "secret";
    pub(crate) const EVENT: &str = "event";
    pub(crate) const EVENT_HEADER: &str = "event_header";
    pub(crate) const EVENT_FIELD: &str = "event_field";
    pub(crate) const ID_HEADER: &str = "id_header";
    pub(crate) const ID_FIELD: &str = "id_field";
    pub(crate) const FILTER: &str = "filter";
    pub(crate) const ACK: &str = "ack";
    pub(crate) const RETRY: &str = "retry";
    pub(crate) const TIMEOUT: &str = "timeout";
    pub(crate) const ORDER_BY: &str = "order_by";
    pub(crate) const MAX_BODY: &str = "max_body";
    pub(crate) const TOLERANCE: &str = "tolerance";
    pub(crate) const METHODS: &str = "methods";
    pub(crate) const NAME: &str = "name";
    pub(crate) const ENABLED: &str = "enabled";

    pub(crate) const ALL: &[&str] = &[
        PATH,
        ENDPOINT,
        SIG,
        HEADER,
        PREFIX,
        ENCODING,
        SECRET,
        EVENT,
        EVENT_HEADER,
        EVENT_FIELD,
        ID_HEADER,
        ID_FIELD,
        FILTER,
        ACK,
        RETRY,
        TIMEOUT,
        ORDER_BY,
        MAX_BODY,
        TOLERANCE,
        METHODS,
        NAME,
        ENABLED,
    ];

    /// Keys that belong to the endpoint rather than the handler.
    pub(crate) const ENDPOINT_LEVEL: &[&str] = &[
        PATH,
        SIG,
        HEADER,
        PREFIX,
        ENCODING,
        SECRET,
        EVENT_HEADER,
        EVENT_FIELD,
        ID_HEADER,
        ID_FIELD,
        MAX_BODY,
        TOLERANCE,
        METHODS,
        NAME,
        ENABLED,
    ];

    pub(crate) const RETRY_MAX: &str = "max";
    pub(crate) const RETRY_BACKOFF: &str = "backoff";
    pub(crate) const RETRY_FACTOR: &str = "factor";
    pub(crate) const RETRY_MAX_DELAY: &str = "max_delay";
    pub(crate) const RETRY_ALL: &[&str] =
        &[RETRY_MAX, RETRY_BACKOFF, RETRY_FACTOR, RETRY_MAX_DELAY];
}

/// A key as written, for "remove it here" errors.
#[derive(Clone)]
pub(crate) struct KeySpan {
    pub(crate) name: &'static str,
    pub(crate) span: Span,
}

pub(crate) struct SecretArg {
    pub(crate) name: LitStr,
    pub(crate) optional: bool,
}

#[derive(Default)]
pub(crate) struct RetryArgs {
    pub(crate) max: Option<LitInt>,
    pub(crate) backoff: Option<LitStr>,
    pub(crate) factor: Option<LitInt>,
    pub(crate) max_delay: Option<LitStr>,
}

/// A filter predicate as written.
pub(crate) enum Predicate {
    Eq(TargetArg, ValueArg),
    Regex(TargetArg, LitStr),
    All(Vec<Predicate>),
    Any(Vec<Predicate>),
    Not(Box<Predicate>),
}

pub(crate) enum TargetArg {
    /// A dotted JSON path, from a string literal or dotted identifiers.
    Json(String, Span),
    Header(LitStr),
}

pub(crate) enum ValueArg {
    Str(LitStr),
    Int(i64, Span),
    Float(f64, Span),
    Bool(bool, Span),
    Null(Span),
}

/// The attribute's arguments, each with the span of its value.
#[derive(Default)]
pub(crate) struct Args {
    /// Every key written, in order, for the endpoint-level conflict check.
    pub(crate) keys: Vec<KeySpan>,
    pub(crate) path: Option<LitStr>,
    pub(crate) endpoint: Option<syn::Path>,
    pub(crate) sig: Option<LitStr>,
    pub(crate) header: Option<LitStr>,
    pub(crate) prefix: Option<LitStr>,
    pub(crate) encoding: Option<LitStr>,
    pub(crate) secrets: Option<(Span, Vec<SecretArg>)>,
    pub(crate) events: Option<(Span, Vec<LitStr>)>,
    pub(crate) event_header: Option<LitStr>,
    pub(crate) event_field: Option<LitStr>,
    pub(crate) id_header: Option<LitStr>,
    pub(crate) id_field: Option<LitStr>,
    pub(crate) filter: Option<(Span, Vec<Predicate>)>,
    pub(crate) ack: Option<LitStr>,
    pub(crate) retry: Option<(Span, RetryArgs)>,
    pub(crate) timeout: Option<LitStr>,
    pub(crate) order_by: Option<LitStr>,
    pub(crate) max_body: Option<LitInt>,
    pub(crate) tolerance: Option<LitInt>,
    pub(crate) methods: Option<(Span, Vec<LitStr>)>,
    pub(crate) name: Option<LitStr>,
    pub(crate) enabled: Option<LitBool>,
}

fn set<T>(
    slot: &mut Option<T>,
    value: T,
    meta: &ParseNestedMeta<'_>,
    key: &str,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(meta.error(format!("duplicate key `{key}`: remove one of the two")));
    }
    *slot = Some(value);
    Ok(())
}

impl Args {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Args> {
        let mut args = Args::default();
        let mut errors: Option<syn::Error> = None;
        let parser = syn::meta::parser(|meta| {
            if let Err(error) = args.parse_key(&meta) {
                skip_value(&meta);
                match &mut errors {
                    Some(all) => all.combine(error),
                    None => errors = Some(error),
                }
            }
            Ok(())
        });
        let parsed = parser.parse2(tokens);
        // A key that failed leaves tokens unread, which syn reports as "unexpected token"; the
        // key's own error says more, so it wins.
        match (errors, parsed) {
            (Some(error), _) => Err(error),
            (None, Err(error)) => Err(error),
            (None, Ok(())) => Ok(args),
        }
    }

    fn parse_key(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        let ident = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        let Some(&key) = kw::ALL.iter().find(|k| **k == ident) else {
            return Err(meta.error(format!(
                "unknown key `{}`: expected one of {}",
                ident_text(meta),
                kw::ALL
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let span = key_span(meta);
        match key {
            kw::PATH => set(&mut self.path, meta.value()?.parse()?, meta, key)?,
            kw::ENDPOINT => set(&mut self.endpoint, meta.value()?.parse()?, meta, key)?,
            kw::SIG => set(&mut self.sig, meta.value()?.parse()?, meta, key)?,
            kw::HEADER => set(&mut self.header, meta.value()?.parse()?, meta, key)?,
            kw::PREFIX => set(&mut self.prefix, meta.value()?.parse()?, meta, key)?,
            kw::ENCODING => set(&mut self.encoding, meta.value()?.parse()?, meta, key)?,
            kw::SECRET => set(
                &mut self.secrets,
                (span, parse_secrets(meta.value()?)?),
                meta,
                key,
            )?,
            kw::EVENT => set(
                &mut self.events,
                (span, parse_str_or_list(meta.value()?)?),
                meta,
                key,
            )?,
            kw::EVENT_HEADER => set(&mut self.event_header, meta.value()?.parse()?, meta, key)?,
            kw::EVENT_FIELD => set(&mut self.event_field, meta.value()?.parse()?, meta, key)?,
            kw::ID_HEADER => set(&mut self.id_header, meta.value()?.parse()?, meta, key)?,
            kw::ID_FIELD => set(&mut self.id_field, meta.value()?.parse()?, meta, key)?,
            kw::FILTER => {
                let content;
                parenthesized!(content in meta.input);
                let predicates = content.parse_terminated(parse_predicate, Token![,])?;
                if predicates.is_empty() {
                    return Err(meta.error("empty `filter()`: write predicates such as `filter(action = \"opened\")`, or remove it"));
                }
                set(
                    &mut self.filter,
                    (span, predicates.into_iter().collect()),
                    meta,
                    key,
                )?;
            }
            kw::ACK => set(&mut self.ack, meta.value()?.parse()?, meta, key)?,
            kw::RETRY => {
                let mut retry = RetryArgs::default();
                meta.parse_nested_meta(|inner| parse_retry_key(&mut retry, &inner))?;
                set(&mut self.retry, (span, retry), meta, key)?;
            }
            kw::TIMEOUT => set(&mut self.timeout, meta.value()?.parse()?, meta, key)?,
            kw::ORDER_BY => set(&mut self.order_by, meta.value()?.parse()?, meta, key)?,
            kw::MAX_BODY => set(&mut self.max_body, meta.value()?.parse()?, meta, key)?,
            kw::TOLERANCE => set(&mut self.tolerance, meta.value()?.parse()?, meta, key)?,
            kw::METHODS => set(
                &mut self.methods,
                (span, parse_str_or_list(meta.value()?)?),
                meta,
                key,
            )?,
            kw::NAME => set(&mut self.name, meta.value()?.parse()?, meta, key)?,
            kw::ENABLED => set(&mut self.enabled, meta.value()?.parse()?, meta, key)?,
            _ => unreachable!("every key in kw::ALL is handled"),
        }
        self.keys.push(KeySpan { name: key, span });
        Ok(())
    }
}

fn ident_text(meta: &ParseNestedMeta<'_>) -> String {
    let path = &meta.path;
    quote::quote!(#path).to_string().replace(' ', "")
}

fn key_span(meta: &ParseNestedMeta<'_>) -> Span {
    meta.path
        .segments
        .first()
        .map_or_else(Span::call_site, |s| s.ident.span())
}

/// After an error, consumes the rest of a `key = value` or `key(...)` so parsing can go on.
fn skip_value(meta: &ParseNestedMeta<'_>) {
    let input = meta.input;
    if input.peek(Token![=]) {
        let _ = input.parse::<Token![=]>();
        let _ = input.step(|cursor| {
            let mut rest = *cursor;
            while let Some((tt, next)) = rest.token_tree() {
                if matches!(&tt, proc_macro2::TokenTree::Punct(p) if p.as_char() == ',') {
                    return Ok(((), rest));
                }
                rest = next;
            }
            Ok(((), rest))
        });
    } else if input.peek(syn::token::Paren) {
        let _ = input.parse::<proc_macro2::Group>();
    }
}

fn parse_str_or_list(input: ParseStream<'_>) -> syn::Result<Vec<LitStr>> {
    if input.peek(syn::token::Bracket) {
        let content;
        bracketed!(content in input);
        let items =
            content.parse_terminated(|i: ParseStream<'_>| i.parse::<LitStr>(), Token![,])?;
        Ok(items.into_iter().collect())
    } else {
        Ok(vec![input.parse::<LitStr>()?])
    }
}

fn parse_secrets(input: ParseStream<'_>) -> syn::Result<Vec<SecretArg>> {
    if input.peek(syn::token::Bracket) {
        let content;
        bracketed!(content in input);
        let items = content.parse_terminated(parse_secret, Token![,])?;
        Ok(items.into_iter().collect())
    } else {
        Ok(vec![parse_secret(input)?])
    }
}

fn parse_secret(input: ParseStream<'_>) -> syn::Result<SecretArg> {
    let hint = "write `secret = env(\"NAME\")`, or several for rotation: `secret = [env(\"NEW\"), env(\"OLD\", optional)]`; a secret is never written in the source";
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Err(syn::Error::new(
            lit.span(),
            format!("a secret cannot be a literal: {hint}"),
        ));
    }
    let ident: syn::Ident = input.parse().map_err(|e| syn::Error::new(e.span(), hint))?;
    if ident != "env" {
        return Err(syn::Error::new(
            ident.span(),
            format!("unknown secret source `{ident}`: {hint}"),
        ));
    }
    let content;
    parenthesized!(content in input);
    let name: LitStr = content.parse()?;
    let mut optional = false;
    if content.peek(Token![,]) {
        content.parse::<Token![,]>()?;
        if !content.is_empty() {
            let flag: syn::Ident = content.parse()?;
            if flag != "optional" {
                return Err(syn::Error::new(
                    flag.span(),
                    "expected `optional`: `env(\"OLD_SECRET\", optional)`",
                ));
            }
            optional = true;
        }
    }
    if !content.is_empty() {
        return Err(
            content.error("unexpected tokens: `env(\"NAME\")` or `env(\"NAME\", optional)`")
        );
    }
    Ok(SecretArg { name, optional })
}

fn parse_retry_key(retry: &mut RetryArgs, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    let ident = meta
        .path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_default();
    match ident.as_str() {
        kw::RETRY_MAX => set(&mut retry.max, meta.value()?.parse()?, meta, kw::RETRY_MAX),
        kw::RETRY_BACKOFF => set(
            &mut retry.backoff,
            meta.value()?.parse()?,
            meta,
            kw::RETRY_BACKOFF,
        ),
        kw::RETRY_FACTOR => set(
            &mut retry.factor,
            meta.value()?.parse()?,
            meta,
            kw::RETRY_FACTOR,
        ),
        kw::RETRY_MAX_DELAY => set(
            &mut retry.max_delay,
            meta.value()?.parse()?,
            meta,
            kw::RETRY_MAX_DELAY,
        ),
        _ => Err(meta.error(format!(
            "unknown retry key `{}`: expected one of {}",
            ident_text(meta),
            kw::RETRY_ALL
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn parse_predicate(input: ParseStream<'_>) -> syn::Result<Predicate> {
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return parse_comparison(input, TargetArg::Json(lit.value(), lit.span()));
    }
    let ident: syn::Ident = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected a predicate: `action = \"opened\"`, `\"repository.name\" = regex(\"...\")`, `header(\"X-Name\") = \"...\"`, `all(..)`, `any(..)` or `not(..)`",
        )
    })?;
    let name = ident.to_string();
    if input.peek(syn::token::Paren) {
        let content;
        parenthesized!(content in input);
        return match name.as_str() {
            "all" | "any" => {
                let items: Vec<Predicate> = content
                    .parse_terminated(parse_predicate, Token![,])?
                    .into_iter()
                    .collect();
                if items.is_empty() {
                    return Err(syn::Error::new(
                        ident.span(),
                        format!("empty `{name}()`: give it at least one predicate"),
                    ));
                }
                Ok(if name == "all" {
                    Predicate::All(items)
                } else {
                    Predicate::Any(items)
                })
            }
            "not" => {
                let inner = parse_predicate(&content)?;
                if !content.is_empty() {
                    return Err(content.error(
                        "`not(..)` takes one predicate; combine several with `not(any(..))`",
                    ));
                }
                Ok(Predicate::Not(Box::new(inner)))
            }
            "header" => {
                let header: LitStr = content.parse()?;
                parse_comparison(input, TargetArg::Header(header))
            }
            _ => Err(syn::Error::new(
                ident.span(),
                format!(
                    "unknown filter function `{name}`: expected `all`, `any`, `not` or `header`"
                ),
            )),
        };
    }
    // Dotted identifiers: `repository.name = "x"`.
    let mut path = name;
    let span = ident.span();
    while input.peek(Token![.]) {
        input.parse::<Token![.]>()?;
        let segment: syn::Ident = input.parse()?;
        path.push('.');
        path.push_str(&segment.to_string());
    }
    parse_comparison(input, TargetArg::Json(path, span))
}

fn parse_comparison(input: ParseStream<'_>, target: TargetArg) -> syn::Result<Predicate> {
    input.parse::<Token![=]>().map_err(|e| {
        syn::Error::new(e.span(), "expected `=` and a value: `action = \"opened\"` or `\"repository.name\" = regex(\"^my-\")`")
    })?;
    if input.peek(syn::Ident) && input.peek2(syn::token::Paren) {
        let ident: syn::Ident = input.parse()?;
        if ident != "regex" {
            return Err(syn::Error::new(
                ident.span(),
                format!("unknown matcher `{ident}`: expected `regex(\"...\")` or a literal"),
            ));
        }
        let content;
        parenthesized!(content in input);
        let pattern: LitStr = content.parse()?;
        return Ok(Predicate::Regex(target, pattern));
    }
    Ok(Predicate::Eq(target, parse_value(input)?))
}

fn parse_value(input: ParseStream<'_>) -> syn::Result<ValueArg> {
    let negative = input.peek(Token![-]);
    if negative {
        input.parse::<Token![-]>()?;
    }
    let lit: syn::Lit = if input.peek(syn::Ident) {
        let ident: syn::Ident = input.parse()?;
        if ident == "null" && !negative {
            return Ok(ValueArg::Null(ident.span()));
        }
        return Err(syn::Error::new(
            ident.span(),
            "expected a literal: a string, a number, `true`, `false` or `null`",
        ));
    } else {
        input.parse()?
    };
    let sign: i32 = if negative { -1 } else { 1 };
    Ok(match lit {
        syn::Lit::Str(s) if !negative => ValueArg::Str(s),
        syn::Lit::Int(i) => {
            let value: i64 = i.base10_parse::<i64>()?;
            ValueArg::Int(value * i64::from(sign), i.span())
        }
        syn::Lit::Float(f) => ValueArg::Float(f.base10_parse::<f64>()? * f64::from(sign), f.span()),
        syn::Lit::Bool(b) if !negative => ValueArg::Bool(b.value, b.span),
        other => {
            return Err(syn::Error::new(
                other.span(),
                "expected a string, a number, `true`, `false` or `null`",
            ));
        }
    })
}
