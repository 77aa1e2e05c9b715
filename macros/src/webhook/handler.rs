//! The user's function, as far as `#[webhook]` cares: name, asyncness, argument types, return type.

use syn::spanned::Spanned;

pub(crate) struct Handler {
    pub(crate) ident: syn::Ident,
    pub(crate) vis: syn::Visibility,
    pub(crate) is_async: bool,
    pub(crate) args: Vec<syn::Type>,
    pub(crate) output: Option<syn::Type>,
}

impl Handler {
    /// Models the function, refusing what a handler cannot be (all problems at once).
    pub(crate) fn from_fn(function: &syn::ItemFn) -> syn::Result<Handler> {
        let sig = &function.sig;
        let mut errors: Vec<syn::Error> = Vec::new();
        let mut refuse =
            |span: proc_macro2::Span, message: &str| errors.push(syn::Error::new(span, message));
        if let Some(receiver) = sig.receiver() {
            refuse(
                receiver.span(),
                "a `#[webhook]` handler cannot take `self`: make it a free function and pass what it needs with `State<S>`",
            );
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            refuse(
                sig.generics.span(),
                "a `#[webhook]` handler cannot be generic: write a concrete function (it may call a generic one)",
            );
        }
        if let Some(constness) = &sig.constness {
            refuse(
                constness.span,
                "a `#[webhook]` handler cannot be `const fn`",
            );
        }
        if let Some(unsafety) = &sig.unsafety {
            refuse(
                unsafety.span,
                "a `#[webhook]` handler cannot be `unsafe fn`",
            );
        }
        if let Some(abi) = &sig.abi {
            refuse(abi.span(), "a `#[webhook]` handler cannot declare an ABI");
        }
        if let Some(variadic) = &sig.variadic {
            refuse(variadic.span(), "a `#[webhook]` handler cannot be variadic");
        }
        let args = sig
            .inputs
            .iter()
            .filter_map(|arg| match arg {
                syn::FnArg::Typed(pat) => Some((*pat.ty).clone()),
                syn::FnArg::Receiver(_) => None,
            })
            .collect();
        let output = match &sig.output {
            syn::ReturnType::Default => None,
            syn::ReturnType::Type(_, ty) => Some((**ty).clone()),
        };
        let mut iter = errors.into_iter();
        if let Some(mut first) = iter.next() {
            iter.for_each(|e| first.combine(e));
            return Err(first);
        }
        Ok(Handler {
            ident: sig.ident.clone(),
            vis: function.vis.clone(),
            is_async: sig.asyncness.is_some(),
            args,
            output,
        })
    }
}
