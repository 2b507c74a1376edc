//! The `#[handlers]` attribute of forkbridge: one definition of a command
//! makes the backend handler and the frontend method.
//!
//! Use it as `forkbridge::handlers` (feature `macros`); the documentation
//! with examples lives there.

mod expand;

use proc_macro::TokenStream;

/// Turns the methods of a backend's `impl` block into typed commands and
/// generates the frontend that calls them, with one `forkbridge::Command`
/// constant per command (`MY_STUFF` for `fn my_stuff`) for a
/// `forkbridge::Pool`. See `forkbridge::handlers`.
#[proc_macro_attribute]
pub fn handlers(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::handlers(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
