//! The `#[webhook]` attribute of [hooksmith](https://docs.rs/hooksmith).
//!
//! Depend on `hooksmith`, not on this crate: it re-exports the attribute with its full reference
//! (grammar, typing requirements, examples) and pins this crate's version exactly.

mod paths;
mod webhook;

use proc_macro::TokenStream;

/// Turns a function into a hooksmith webhook handler. See `hooksmith::webhook` for the reference.
#[proc_macro_attribute]
pub fn webhook(args: TokenStream, item: TokenStream) -> TokenStream {
    webhook::expand(args.into(), item.into()).into()
}
