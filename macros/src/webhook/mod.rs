//! `#[webhook]`: parse the arguments and the function, validate both (collecting every error),
//! then expand; on any error, emit the user's function, the errors and a stub.

mod args;
mod expand;
mod fallback;
mod handler;
mod validate;

use proc_macro2::TokenStream;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let function: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => return fallback::not_a_function(item),
    };
    let parsed = args::Args::parse(args);
    let model = handler::Handler::from_fn(&function);
    match (parsed, model) {
        (Ok(args), Ok(handler)) => match validate::validate(&args, &handler) {
            Ok(valid) => expand::expand(&function, &valid),
            Err(error) => fallback::with_errors(&function, error),
        },
        (Err(a), Err(b)) => {
            let mut error = a;
            error.combine(b);
            fallback::with_errors(&function, error)
        }
        (Err(error), Ok(_)) | (Ok(_), Err(error)) => fallback::with_errors(&function, error),
    }
}
