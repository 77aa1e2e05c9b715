//! What `#[webhook]` emits when something is wrong: the user's function unchanged (so the rest of
//! the crate and rust-analyzer keep working) plus the errors, and nothing that could cascade.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};

pub(crate) fn with_errors(function: &syn::ItemFn, error: syn::Error) -> TokenStream {
    let errors = error.to_compile_error();
    let mut out = function.to_token_stream();
    out.extend(quote! {
        #errors
    });
    out
}

pub(crate) fn not_a_function(item: TokenStream) -> TokenStream {
    let error = syn::Error::new(
        proc_macro2::Span::call_site(),
        "`#[webhook]` goes on a free function: `#[webhook(path = \"/hooks/github\", sig = \"github\")] async fn on_event(...)`",
    )
    .to_compile_error();
    quote! {
        #item
        #error
    }
}
