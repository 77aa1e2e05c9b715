//! The only place runtime paths are spelled: generated code names hooksmith through
//! `::hooksmith::__private` alone.

use proc_macro2::TokenStream;
use quote::quote;

pub(crate) fn private() -> TokenStream {
    quote!(::hooksmith::__private)
}
