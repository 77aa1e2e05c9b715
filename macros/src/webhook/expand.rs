//! Code generation from the validated model. Infallible: every check happened before.
//!
//! For `#[webhook(...)] async fn pr_opened(...)` this emits the function unchanged, a hidden
//! braced struct `pr_opened {}` (type namespace only, so it never clashes with the function) that
//! carries the registration for explicit use, and inside `const _: () = { ... };` the runner, the
//! startup check, the `Registered` impl and the `inventory` submission.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::args::{Predicate, TargetArg, ValueArg};
use super::validate::{EndpointKeys, EndpointModel, Valid};
use crate::paths;

pub(crate) fn expand(function: &syn::ItemFn, valid: &Valid<'_>) -> TokenStream {
    let p = paths::private();
    let handler = valid.handler;
    let ident = &handler.ident;
    let vis = &handler.vis;

    let arg_names: Vec<syn::Ident> = (0..handler.args.len())
        .map(|i| format_ident!("__hooksmith_arg{}", i))
        .collect();
    let extracts = handler.args.iter().zip(&arg_names).map(|(ty, name)| {
        quote_spanned! {ty.span()=>
            let #name = match <#ty as #p::FromDelivery>::from_delivery(&__hooksmith_cx) {
                #p::Ok(value) => value,
                #p::Err(error) => return #p::Outcome::failed(error),
            };
        }
    });
    let checks = handler.args.iter().map(|ty| {
        quote_spanned! {ty.span()=>
            <#ty as #p::FromDelivery>::check(__hooksmith_state)?;
        }
    });
    let reads_body = handler.args.iter().map(|ty| {
        quote_spanned! {ty.span()=> <#ty as #p::FromDelivery>::READS_BODY }
    });
    let twice = format!(
        "`{ident}` takes the body twice: `Json<T>`, `Raw` and `serde_json::Value` each read the whole body; keep one of them"
    );

    // `<Output as Trait>::method` spanned at the return type, so an unsupported one is reported
    // there.
    let output = handler
        .output
        .as_ref()
        .map_or_else(|| quote!(()), ToTokens::to_token_stream);
    let output_span = handler.output.as_ref().map_or(ident.span(), Spanned::span);
    let convert = if valid.handled {
        quote_spanned!(output_span=> <#output as #p::IntoHandledOutcome>::into_handled_outcome)
    } else {
        quote_spanned!(output_span=> <#output as #p::IntoOutcome>::into_outcome)
    };
    let call = quote!(#ident(#(#arg_names),*));
    let invoke = if handler.is_async {
        quote!(#convert(#call.await))
    } else {
        quote!(#p::run_blocking(move || #convert(#call)).await)
    };

    let endpoint = endpoint_tokens(&valid.endpoint);
    let events = &valid.events;
    let filter = match valid.filter {
        None => quote!(#p::None),
        Some([single]) => {
            let f = predicate(single);
            quote!(#p::Some({ const F: &#p::Filter = &#f; F }))
        }
        Some(many) => {
            let items = many.iter().map(predicate);
            quote!(#p::Some({ const F: &#p::Filter = &#p::Filter::All(&[#(#items),*]); F }))
        }
    };
    let ack = if valid.handled {
        quote!(#p::Ack::Handled)
    } else {
        quote!(#p::Ack::Stored)
    };
    let retry = match &valid.retry {
        None => quote!(#p::Retry::DEFAULT),
        Some(r) => {
            let (max, backoff, factor, max_delay) = (r.max, r.backoff_ms, r.factor, r.max_delay_ms);
            quote!(#p::Retry { max: #max, backoff_ms: #backoff, factor: #factor, max_delay_ms: #max_delay })
        }
    };
    let timeout = match valid.timeout_ms {
        Some(ms) => quote!(#p::Some(#ms)),
        None => quote!(#p::None),
    };
    let order_by = match &valid.order_by {
        Some(path) => quote!(#p::Some(#path)),
        None => quote!(#p::None),
    };
    let file = quote_spanned!(ident.span()=> #p::file!());
    let line = quote_spanned!(ident.span()=> #p::line!());
    let name = ident.to_string();

    let mut out = function.to_token_stream();
    out.extend(quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code, unreachable_pub)]
        #vis struct #ident {}

        #[allow(non_snake_case, clippy::all)]
        const _: () = {
            const _: () = #p::assert!(
                #p::body_readers(&[#(#reads_body),*]) <= 1,
                #twice
            );

            fn __hooksmith_run(__hooksmith_cx: #p::Context) -> #p::BoxFuture<#p::Outcome> {
                #p::Box::pin(async move {
                    #(#extracts)*
                    #invoke
                })
            }

            fn __hooksmith_check(__hooksmith_state: &#p::StateMap) -> #p::Result<(), #p::String> {
                #(#checks)*
                #p::Ok(())
            }

            impl #p::Registered for #ident {
                const REGISTRATION: #p::Registration = #p::Registration {
                    name: #name,
                    module: #p::module_path!(),
                    file: #file,
                    line: #line,
                    endpoint: #endpoint,
                    events: &[#(#events),*],
                    filter: #filter,
                    ack: #ack,
                    retry: #retry,
                    timeout_ms: #timeout,
                    order_by: #order_by,
                    run: __hooksmith_run,
                    check: __hooksmith_check,
                };
            }

            #p::inventory::submit! {
                <#ident as #p::Registered>::REGISTRATION
            }
        };
    });
    out
}

fn endpoint_tokens(model: &EndpointModel) -> TokenStream {
    let p = paths::private();
    let EndpointKeys {
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
    } = match model {
        EndpointModel::Const(constant) => return quote!(#constant),
        EndpointModel::Keys(keys) => &**keys,
    };
    let mut chain = quote!(#p::Endpoint::new(#path).sig(#sig));
    let mut push = |method: &str, value: TokenStream| {
        let method = syn::Ident::new(method, Span::call_site());
        chain.extend(quote!(.#method(#value)));
    };
    let strings = [
        ("header", header),
        ("prefix", prefix),
        ("event_header", event_header),
        ("event_field", event_field),
        ("id_header", id_header),
        ("id_field", id_field),
        ("name", name),
    ];
    for (method, value) in strings {
        if let Some(value) = value {
            push(method, quote!(#value));
        }
    }
    if let Some(encoding) = encoding {
        let variant = syn::Ident::new(encoding, Span::call_site());
        push("encoding", quote!(#p::Encoding::#variant));
    }
    if !secrets.is_empty() {
        let items = secrets.iter().map(|(name, optional)| {
            if *optional {
                quote!(#p::SecretSource::env(#name).optional())
            } else {
                quote!(#p::SecretSource::env(#name))
            }
        });
        push(
            "secrets",
            quote!({ const S: &[#p::SecretSource] = &[#(#items),*]; S }),
        );
    }
    if let Some(bytes) = max_body {
        push("max_body", quote!(#bytes));
    }
    if let Some(seconds) = tolerance {
        push("tolerance_secs", quote!(#seconds));
    }
    if !methods.is_empty() {
        push("methods", quote!(&[#(#methods),*]));
    }
    if let Some(enabled) = enabled {
        push("enabled", quote!(#enabled));
    }
    chain
}

fn predicate(predicate: &Predicate) -> TokenStream {
    let p = paths::private();
    match predicate {
        Predicate::Eq(target, value) => {
            let (t, v) = (target_tokens(target), value_tokens(value));
            quote!(#p::Filter::Eq(#t, #v))
        }
        Predicate::Regex(target, pattern) => {
            let t = target_tokens(target);
            quote!(#p::Filter::Regex(#t, #pattern))
        }
        Predicate::All(items) => {
            let items = items.iter().map(self::predicate);
            quote!(#p::Filter::All(&[#(#items),*]))
        }
        Predicate::Any(items) => {
            let items = items.iter().map(self::predicate);
            quote!(#p::Filter::Any(&[#(#items),*]))
        }
        Predicate::Not(inner) => {
            let inner = self::predicate(inner);
            quote!(#p::Filter::Not(&#inner))
        }
    }
}

fn target_tokens(target: &TargetArg) -> TokenStream {
    let p = paths::private();
    match target {
        TargetArg::Json(path, _) => quote!(#p::Target::Json(#path)),
        TargetArg::Header(name) => quote!(#p::Target::Header(#name)),
    }
}

fn value_tokens(value: &ValueArg) -> TokenStream {
    let p = paths::private();
    match value {
        ValueArg::Str(s) => quote!(#p::Value::Str(#s)),
        ValueArg::Int(n, _) => quote!(#p::Value::Int(#n)),
        ValueArg::Float(f, _) => quote!(#p::Value::Float(#f)),
        ValueArg::Bool(b, _) => quote!(#p::Value::Bool(#b)),
        ValueArg::Null(_) => quote!(#p::Value::Null),
    }
}
