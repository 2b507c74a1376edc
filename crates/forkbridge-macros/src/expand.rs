//! Expansion of `#[handlers]`.
//!
//! For `impl Backend { fn cmd(&mut self, [ctx: &mut Context,] a: A, b: B) -> R }`
//! it emits, next to the untouched methods:
//! - `register_typed(handlers)`, registering each method under its command
//!   name with `Handlers::typed` (or `AsyncHandlers::typed`), arguments as
//!   the tuple `(A, B)`;
//! - unless `custom_backend` is given, `impl Backend` / `impl AsyncBackend`
//!   whose `register` calls it;
//! - a frontend type (`<Type>Client`, or `frontend = Name`) with one method
//!   per command and the same parameters: a unit return type makes a
//!   one-way `cast`, any other a `call` that waits for the value;
//! - on the frontend, one `Command` constant per command (`CMD`, the
//!   method's name upper-cased), typed with the argument tuple and value the
//!   frontend method sends and returns, so a `Pool` call is checked as the
//!   method is;
//! - with the `tokio` feature, `<Frontend>Async` over `AsyncMessageProcess`,
//!   with the same methods as `async fn` and the same constants.
//!
//! `Self` in a handler's types means the backend; the frontend's methods
//! and constants live in the frontend's `impl`, where `Self` would mean the
//! frontend, so every type is read with `Self` replaced by the backend's
//! type. Generic backends are refused (a constant of a non-generic frontend
//! could not name their types), so every handler gets its constant.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, LitStr, Pat, ReturnType, Token, Type,
};

/// `#[handlers(frontend = Name, custom_backend)]`
#[derive(Default)]
struct Args {
    frontend: Option<Ident>,
    custom_backend: bool,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Args> {
        let mut args = Args::default();
        let items = Punctuated::<syn::Meta, Token![,]>::parse_terminated(input)?;
        for item in items {
            match &item {
                syn::Meta::NameValue(nv) if nv.path.is_ident("frontend") => {
                    let syn::Expr::Path(p) = &nv.value else {
                        return Err(syn::Error::new(nv.value.span(), "expected a type name"));
                    };
                    let ident = p
                        .path
                        .get_ident()
                        .ok_or_else(|| syn::Error::new(p.span(), "expected a plain type name"))?;
                    args.frontend = Some(ident.clone());
                }
                syn::Meta::Path(p) if p.is_ident("custom_backend") => args.custom_backend = true,
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        "unknown argument; expected `frontend = Name` or `custom_backend`",
                    ));
                }
            }
        }
        Ok(args)
    }
}

/// What the method returns, which decides call or cast.
enum Returns {
    /// No value: a one-way command.
    Unit,
    /// `Result<T, E>`: a call; `E: Into<BoxError>` becomes a remote error.
    Result(Type),
    /// Any other `T`: a call.
    Value(Type),
}

struct Command {
    method: Ident,
    /// The name of its `Command` constant on the frontend.
    constant: Ident,
    name: LitStr,
    is_async: bool,
    has_ctx: bool,
    params: Vec<(Ident, Type)>,
    returns: Returns,
    docs: Vec<Attribute>,
}

pub(crate) fn handlers(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let args: Args = syn::parse2(args)?;
    let mut item: ItemImpl = syn::parse2(item)?;
    if let Some((_, path, _)) = &item.trait_ {
        return Err(syn::Error::new(
            path.span(),
            "#[handlers] goes on an inherent `impl Type { ... }` block, not a trait impl",
        ));
    }
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new(
            item.generics.span(),
            "#[handlers] does not support generic backends",
        ));
    }
    let self_ty = (*item.self_ty).clone();
    let type_name = match &self_ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.clone()),
        _ => None,
    }
    .ok_or_else(|| syn::Error::new(self_ty.span(), "expected a named type"))?;

    let mut commands = Vec::new();
    let mut seen: HashMap<String, Span> = HashMap::new();
    let mut constants: HashMap<String, Ident> = HashMap::new();
    for impl_item in &mut item.items {
        let ImplItem::Fn(method) = impl_item else {
            continue;
        };
        let Some(command) = parse_method(method, &self_ty)? else {
            continue;
        };
        if let Some(first) = seen.insert(command.name.value(), command.name.span()) {
            let mut err = syn::Error::new(
                command.name.span(),
                format!("duplicate command name `{}`", command.name.value()),
            );
            err.combine(syn::Error::new(first, "first defined here"));
            return Err(err);
        }
        // `fooBar` and `foo_bar` (or `FOO`) would make one constant twice.
        if let Some(first) = constants.insert(command.constant.to_string(), command.method.clone())
        {
            return Err(syn::Error::new(
                command.method.span(),
                format!(
                    "handlers `{first}` and `{}` would both make the constant `{}`; \
                     rename one",
                    command.method, command.constant
                ),
            ));
        }
        commands.push(command);
    }
    if commands.is_empty() {
        return Err(syn::Error::new(
            item.self_ty.span(),
            "#[handlers] found no handler methods (methods taking `&mut self`)",
        ));
    }
    let is_async = commands[0].is_async;
    if let Some(odd) = commands.iter().find(|c| c.is_async != is_async) {
        return Err(syn::Error::new(
            odd.method.span(),
            "handlers of one backend are either all `async fn` (an AsyncBackend) or none",
        ));
    }

    let frontend = args
        .frontend
        .clone()
        .unwrap_or_else(|| format_ident!("{}Client", type_name));
    let register = register_fn(&commands, is_async);
    let backend_impl = (!args.custom_backend).then(|| backend_impl(&self_ty, is_async));
    let client = client(&frontend, &type_name, &commands, is_async);
    let async_client = cfg!(feature = "tokio").then(|| {
        let name = format_ident!("{}Async", frontend);
        client_async(&name, &frontend, &type_name, &commands)
    });

    Ok(quote! {
        #item

        impl #self_ty {
            #register
        }

        #backend_impl
        #client
        #async_client
    })
}

/// Reads one method; `None` for methods that are not handlers (no
/// receiver, or `#[forkbridge(skip)]`).
fn parse_method(method: &mut ImplItemFn, self_ty: &Type) -> syn::Result<Option<Command>> {
    let mut name = None;
    let mut skip = false;
    let mut error = None;
    method.attrs.retain(|attr| {
        if !attr.path().is_ident("forkbridge") {
            return true;
        }
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                skip = true;
                Ok(())
            } else if meta.path.is_ident("command") {
                name = Some(meta.value()?.parse::<LitStr>()?);
                Ok(())
            } else {
                Err(meta.error("expected `skip` or `command = \"name\"`"))
            }
        });
        if let Err(e) = parsed {
            error = Some(e);
        }
        false
    });
    if let Some(e) = error {
        return Err(e);
    }
    let sig = &method.sig;
    let Some(receiver) = sig.receiver() else {
        return Ok(None); // an associated function: not a handler
    };
    if skip {
        return Ok(None);
    }
    if receiver.reference.is_none() || receiver.mutability.is_none() {
        return Err(syn::Error::new(
            receiver.span(),
            format!(
                "handler `{}` must take `&mut self` (the backend's state lives in the child)",
                sig.ident
            ),
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "handlers cannot be generic: the frontend must know the argument types",
        ));
    }
    let mut has_ctx = false;
    let mut params = Vec::new();
    for (i, arg) in sig.inputs.iter().skip(1).enumerate() {
        let FnArg::Typed(pat_type) = arg else {
            continue;
        };
        let ty = replace_self(&pat_type.ty, self_ty);
        if i == 0 && is_context(&ty) {
            has_ctx = true;
            continue;
        }
        let Pat::Ident(pat) = &*pat_type.pat else {
            return Err(syn::Error::new(
                pat_type.pat.span(),
                "handler parameters must be plain names (`name: Type`)",
            ));
        };
        if let Type::Reference(r) = &ty {
            return Err(syn::Error::new(
                r.span(),
                "handler parameters must be owned serde types (`String`, not `&str`): \
                 they are decoded in the child",
            ));
        }
        params.push((pat.ident.clone(), ty));
    }
    let returns = match &sig.output {
        ReturnType::Default => Returns::Unit,
        ReturnType::Type(_, ty) => match replace_self(ty, self_ty) {
            Type::Tuple(t) if t.elems.is_empty() => Returns::Unit,
            Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Result") => {
                Returns::Result(Type::Path(p))
            }
            other => Returns::Value(other),
        },
    };
    let docs = method
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .cloned()
        .collect();
    Ok(Some(Command {
        method: sig.ident.clone(),
        constant: constant_name(&sig.ident),
        name: name.unwrap_or_else(|| LitStr::new(&sig.ident.to_string(), sig.ident.span())),
        is_async: sig.asyncness.is_some(),
        has_ctx,
        params,
        returns,
        docs,
    }))
}

/// `ty` with every `Self` replaced by `self_ty` (spanned at the `Self` it
/// replaces, so errors point at the handler's code).
fn replace_self(ty: &Type, self_ty: &Type) -> Type {
    fn walk(tokens: TokenStream, self_ty: &Type) -> TokenStream {
        let mut out = TokenStream::new();
        for tt in tokens {
            match tt {
                TokenTree::Ident(ident) if ident == "Self" => {
                    out.extend(respan(self_ty.to_token_stream(), ident.span()));
                }
                TokenTree::Group(group) => {
                    let mut new =
                        proc_macro2::Group::new(group.delimiter(), walk(group.stream(), self_ty));
                    new.set_span(group.span());
                    out.extend([TokenTree::Group(new)]);
                }
                other => out.extend([other]),
            }
        }
        out
    }
    fn respan(tokens: TokenStream, span: Span) -> TokenStream {
        tokens
            .into_iter()
            .map(|mut tt| {
                if let TokenTree::Group(group) = &tt {
                    let mut new =
                        proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                    new.set_span(span);
                    tt = TokenTree::Group(new);
                } else {
                    tt.set_span(span);
                }
                tt
            })
            .collect()
    }
    // A type that no longer parses (`Self` in a macro's tokens, say) is
    // kept as written: the compiler then reports it where it stands.
    syn::parse2(walk(ty.to_token_stream(), self_ty)).unwrap_or_else(|_| ty.clone())
}

/// `my_stuff` → `MY_STUFF` (and `myStuff` → `MY_STUFF`, `r#type` → `TYPE`).
fn constant_name(method: &Ident) -> Ident {
    let name = method.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name);
    let mut out = String::with_capacity(name.len() + 4);
    let mut previous_lower = false;
    for ch in name.chars() {
        if ch.is_uppercase() && previous_lower {
            out.push('_');
        }
        previous_lower = ch.is_lowercase() || ch.is_ascii_digit();
        out.extend(ch.to_uppercase());
    }
    Ident::new(&out, method.span())
}

/// `&mut BackendContext` / `&mut AsyncContext` (any path ending so).
fn is_context(ty: &Type) -> bool {
    let Type::Reference(r) = ty else {
        return false;
    };
    let Type::Path(p) = &*r.elem else {
        return false;
    };
    r.mutability.is_some()
        && p.path
            .segments
            .last()
            .is_some_and(|s| s.ident == "BackendContext" || s.ident == "AsyncContext")
}

fn register_fn(commands: &[Command], is_async: bool) -> TokenStream {
    let mut inline = Vec::new();
    let mut hidden = Vec::new();
    for c in commands {
        let method = &c.method;
        let name = &c.name;
        let names: Vec<&Ident> = c.params.iter().map(|(n, _)| n).collect();
        let types: Vec<&Type> = c.params.iter().map(|(_, t)| t).collect();
        let ctx_arg = c.has_ctx.then(|| quote!(ctx,));
        let adapt = |value: TokenStream| match &c.returns {
            Returns::Unit => quote! { #value; ::std::result::Result::Ok(()) },
            Returns::Result(_) => quote! { #value.map_err(::std::convert::Into::into) },
            Returns::Value(_) => quote! { ::std::result::Result::Ok(#value) },
        };
        let value_ty = value_type(c);
        // Each argument type must be serde-capable; say so at the type.
        let checks: Vec<TokenStream> = types
            .iter()
            .map(|ty| {
                quote_spanned! { ty.span() =>
                    ::forkbridge::__private::assert_argument::<#ty>();
                }
            })
            .collect();
        if is_async {
            let wrapper = format_ident!("__forkbridge_typed_{}", method);
            let call = adapt(quote! { self.#method(#ctx_arg #(#names),*).await });
            inline.push(quote! {
                #(#checks)*
                handlers.typed(#name, Self::#wrapper);
            });
            hidden.push(quote! {
                #[doc(hidden)]
                #[allow(non_snake_case)]
                async fn #wrapper(
                    &mut self,
                    ctx: &mut ::forkbridge::AsyncContext,
                    (#(#names,)*): (#(#types,)*),
                ) -> ::std::result::Result<#value_ty, ::forkbridge::BoxError> {
                    let _ = &ctx;
                    #call
                }
            });
        } else {
            let call = adapt(quote! { this.#method(#ctx_arg #(#names),*) });
            inline.push(quote! {
                #(#checks)*
                handlers.typed(
                    #name,
                    |this: &mut Self,
                     ctx: &mut ::forkbridge::BackendContext,
                     (#(#names,)*): (#(#types,)*)|
                     -> ::std::result::Result<#value_ty, ::forkbridge::BoxError> {
                        let _ = &ctx;
                        #call
                    },
                );
            });
        }
    }
    let handlers_ty = if is_async {
        quote!(::forkbridge::AsyncHandlers<Self>)
    } else {
        quote!(::forkbridge::Handlers<Self>)
    };
    quote! {
        /// Registers this backend's typed commands (generated by
        /// `#[forkbridge::handlers]`). Call it from `register` when the
        /// backend implements the trait by hand (`custom_backend`).
        pub fn register_typed(handlers: &mut #handlers_ty) {
            #(#inline)*
        }
        #(#hidden)*
    }
}

fn backend_impl(self_ty: &Type, is_async: bool) -> TokenStream {
    if is_async {
        quote! {
            impl ::forkbridge::AsyncBackend for #self_ty {
                fn register(handlers: &mut ::forkbridge::AsyncHandlers<Self>) {
                    Self::register_typed(handlers);
                }
            }
        }
    } else {
        quote! {
            impl ::forkbridge::Backend for #self_ty {
                fn register(handlers: &mut ::forkbridge::Handlers<Self>) {
                    Self::register_typed(handlers);
                }
            }
        }
    }
}

/// The value a call of the command returns (`()` for a one-way one): the
/// handler's return type, or the `T` of its `Result<T, E>`.
fn value_type(c: &Command) -> TokenStream {
    match &c.returns {
        Returns::Unit => quote!(()),
        Returns::Result(ty) => quote!(<#ty as ::forkbridge::__private::ResultOk>::Ok),
        Returns::Value(ty) => quote!(#ty),
    }
}

/// The frontend method's return type.
fn frontend_return(c: &Command) -> TokenStream {
    let value = value_type(c);
    quote!(::forkbridge::Result<#value>)
}

/// The command as a typed `Command` constant: arguments as the tuple the
/// frontend method sends (`(a,)` for one, `()` for none) and the value it
/// returns, so a pool's request carries the same type fingerprints as the
/// method's call and the backend's handler accepts it. On the async
/// frontend (`same_as` the blocking one) it repeats the blocking
/// frontend's constant.
fn constant(c: &Command, type_name: &Ident, same_as: Option<&Ident>) -> TokenStream {
    let constant = &c.constant;
    let types: Vec<&Type> = c.params.iter().map(|(_, t)| t).collect();
    let value = value_type(c);
    let method = &c.method;
    let head = format!(
        "`{}` as a [`Command`](::forkbridge::Command), for a [`Pool`](::forkbridge::Pool).",
        syn::ext::IdentExt::unraw(method)
    );
    let how = match c.returns {
        Returns::Unit => "[`Pool::cast`](::forkbridge::Pool::cast)",
        _ => "[`Pool::call`](::forkbridge::Pool::call)",
    };
    let body = format!(
        "`{constant}.with(args)`, the arguments as a tuple, is a request that runs \
         [`{type_name}::{method}`] (command `{}`) in one of the pool's workers: send it with \
         {how}. `{constant}.idempotent()` lets the pool send it again when its worker dies.",
        c.name.value()
    );
    let name = &c.name;
    let (doc, value_expr) = match same_as {
        None => (body, quote!(::forkbridge::Command::new(#name))),
        Some(frontend) => (
            format!("The same as [`{frontend}::{constant}`]."),
            quote!(#frontend::#constant),
        ),
    };
    quote! {
        #[doc = #head]
        ///
        #[doc = #doc]
        pub const #constant: ::forkbridge::Command<(#(#types,)*), #value> = #value_expr;
    }
}

fn method_doc(c: &Command, type_name: &Ident) -> TokenStream {
    let docs = &c.docs;
    let name = c.name.value();
    let how = match c.returns {
        Returns::Unit => format!(
            "Sends the command `{name}` to [`{type_name}::{}`] one way (no reply).",
            c.method
        ),
        _ => format!(
            "Calls [`{type_name}::{}`] (command `{name}`) in the backend and waits for its \
             value, at most the client's timeout.",
            c.method
        ),
    };
    quote! {
        #(#docs)*
        ///
        #[doc = #how]
    }
}

fn client(
    frontend: &Ident,
    type_name: &Ident,
    commands: &[Command],
    is_async: bool,
) -> TokenStream {
    let (build_portable, backend_trait) = if is_async {
        (
            quote!(build_async_portable),
            quote!(::forkbridge::AsyncBackend),
        )
    } else {
        (quote!(build_portable), quote!(::forkbridge::Backend))
    };
    let build = if is_async {
        quote!(build_async)
    } else {
        quote!(build)
    };
    let doc = format!(
        "The frontend of [`{type_name}`], generated by `#[forkbridge::handlers]`: one method \
         per command, with the handler's parameters, and one \
         [`Command`](::forkbridge::Command) constant per command for a \
         [`Pool`](::forkbridge::Pool). Dereferences to the \
         [`MessageProcess`](::forkbridge::MessageProcess) for `recv`, `stop` and the rest."
    );
    let methods = commands.iter().map(|c| {
        let method = &c.method;
        let name = &c.name;
        let names: Vec<&Ident> = c.params.iter().map(|(n, _)| n).collect();
        let types: Vec<&Type> = c.params.iter().map(|(_, t)| t).collect();
        let ret = frontend_return(c);
        let doc = method_doc(c, type_name);
        let body = match c.returns {
            Returns::Unit => quote! { self.process.cast(#name, &(#(#names,)*)) },
            _ => quote! { self.process.call(#name, &(#(#names,)*), self.timeout) },
        };
        quote! {
            #doc
            pub fn #method(&mut self, #(#names: #types),*) -> #ret {
                #body
            }
        }
    });
    let constants = commands.iter().map(|c| constant(c, type_name, None));
    quote! {
        #[doc = #doc]
        #[derive(Debug)]
        pub struct #frontend {
            process: ::forkbridge::MessageProcess,
            timeout: ::std::time::Duration,
        }

        impl #frontend {
            #(#constants)*

            /// Creates the backend process with default settings and starts it.
            pub fn start(
                name: impl ::std::convert::Into<::std::string::String>,
                backend: #type_name,
            ) -> ::forkbridge::Result<Self> {
                let mut process = ::forkbridge::MessageProcess::builder(name).#build(backend)?;
                process.start()?;
                ::std::result::Result::Ok(Self::new(process))
            }

            /// Builds the process with `builder` (its start method, its
            /// settings) from a backend that crosses as data (serde), and
            /// starts it: for `StartMethod::ForkServer` and `Spawn`.
            pub fn start_with<B>(
                builder: ::forkbridge::MessageProcessBuilder,
                backend: B,
            ) -> ::forkbridge::Result<Self>
            where
                B: ::forkbridge::__private::Is<#type_name>
                    + #backend_trait
                    + ::forkbridge::__private::Serialize
                    + ::forkbridge::__private::DeserializeOwned,
            {
                let mut process = builder.#build_portable(backend)?;
                process.start()?;
                ::std::result::Result::Ok(Self::new(process))
            }

            /// Wraps a process built for this backend (started or not).
            pub fn new(process: ::forkbridge::MessageProcess) -> Self {
                Self {
                    process,
                    timeout: ::forkbridge::__private::DEFAULT_CALL_TIMEOUT,
                }
            }

            /// How long calls wait for their reply (default 30 s).
            pub fn set_timeout(&mut self, timeout: ::std::time::Duration) {
                self.timeout = timeout;
            }

            /// The process handle.
            pub fn into_process(self) -> ::forkbridge::MessageProcess {
                self.process
            }

            #(#methods)*
        }

        impl ::std::ops::Deref for #frontend {
            type Target = ::forkbridge::MessageProcess;
            fn deref(&self) -> &::forkbridge::MessageProcess {
                &self.process
            }
        }

        impl ::std::ops::DerefMut for #frontend {
            fn deref_mut(&mut self) -> &mut ::forkbridge::MessageProcess {
                &mut self.process
            }
        }
    }
}

fn client_async(
    name: &Ident,
    frontend: &Ident,
    type_name: &Ident,
    commands: &[Command],
) -> TokenStream {
    let doc = format!(
        "The async frontend of [`{type_name}`] (over \
         [`AsyncMessageProcess`](::forkbridge::AsyncMessageProcess)), generated by \
         `#[forkbridge::handlers]`; see [`{frontend}`]."
    );
    let methods = commands.iter().map(|c| {
        let method = &c.method;
        let cmd = &c.name;
        let names: Vec<&Ident> = c.params.iter().map(|(n, _)| n).collect();
        let types: Vec<&Type> = c.params.iter().map(|(_, t)| t).collect();
        let ret = frontend_return(c);
        let doc = method_doc(c, type_name);
        let body = match c.returns {
            Returns::Unit => quote! { self.process.cast(#cmd, &(#(#names,)*)).await },
            _ => quote! { self.process.call(#cmd, &(#(#names,)*), self.timeout).await },
        };
        quote! {
            #doc
            pub async fn #method(&mut self, #(#names: #types),*) -> #ret {
                #body
            }
        }
    });
    let constants = commands
        .iter()
        .map(|c| constant(c, type_name, Some(frontend)));
    quote! {
        #[doc = #doc]
        #[derive(Debug)]
        pub struct #name {
            process: ::forkbridge::AsyncMessageProcess,
            timeout: ::std::time::Duration,
        }

        impl #name {
            #(#constants)*

            /// Wraps an async handle of a process built for this backend.
            pub fn new(process: ::forkbridge::AsyncMessageProcess) -> Self {
                Self {
                    process,
                    timeout: ::forkbridge::__private::DEFAULT_CALL_TIMEOUT,
                }
            }

            /// How long calls wait for their reply (default 30 s).
            pub fn set_timeout(&mut self, timeout: ::std::time::Duration) {
                self.timeout = timeout;
            }

            /// The async process handle.
            pub fn into_process(self) -> ::forkbridge::AsyncMessageProcess {
                self.process
            }

            #(#methods)*
        }

        impl #frontend {
            /// The async form of this client (call inside a tokio runtime).
            pub fn into_async(self) -> ::forkbridge::Result<#name> {
                let timeout = self.timeout;
                let mut client = #name::new(self.process.into_async()?);
                client.set_timeout(timeout);
                ::std::result::Result::Ok(client)
            }
        }

        impl ::std::ops::Deref for #name {
            type Target = ::forkbridge::AsyncMessageProcess;
            fn deref(&self) -> &::forkbridge::AsyncMessageProcess {
                &self.process
            }
        }

        impl ::std::ops::DerefMut for #name {
            fn deref_mut(&mut self) -> &mut ::forkbridge::AsyncMessageProcess {
                &mut self.process
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(item: TokenStream) -> syn::Result<String> {
        handlers(quote!(frontend = P), item).map(|out| out.to_string())
    }

    #[test]
    fn constant_names_are_screaming_snake_case() {
        let name = |s: &str| constant_name(&syn::parse_str::<Ident>(s).unwrap()).to_string();
        assert_eq!(name("square"), "SQUARE");
        assert_eq!(name("my_stuff2"), "MY_STUFF2");
        assert_eq!(name("myStuff"), "MY_STUFF");
        assert_eq!(name("r#type"), "TYPE");
        assert_eq!(name("_private"), "_PRIVATE");
    }

    #[test]
    fn self_becomes_the_backend_type() {
        let ty: Type = syn::parse_quote!(Vec<(Self, Option<Box<Self>>)>);
        let backend: Type = syn::parse_quote!(crate::Backend);
        let replaced = replace_self(&ty, &backend).to_token_stream().to_string();
        let expected: Type = syn::parse_quote!(Vec<(crate::Backend, Option<Box<crate::Backend>>)>);
        assert_eq!(replaced, expected.to_token_stream().to_string());
    }

    #[test]
    fn each_handler_gets_a_constant_typed_as_its_frontend_method() {
        let out = expand(quote! {
            impl B {
                fn none(&mut self) {}
                fn one(&mut self, ctx: &mut BackendContext, a: u8) -> Result<u16, String> { todo!() }
                #[forkbridge(command = "twoArgs")]
                fn two(&mut self, a: u8, b: Self) -> Self { todo!() }
            }
        })
        .unwrap();
        let constant = |tokens: TokenStream| {
            let s = tokens.to_string();
            assert!(out.contains(&s), "{s}\nnot in\n{out}");
        };
        constant(quote! {
            pub const NONE: ::forkbridge::Command<(), ()> = ::forkbridge::Command::new("none");
        });
        constant(quote! {
            pub const ONE: ::forkbridge::Command<
                (u8,),
                <Result<u16, String> as ::forkbridge::__private::ResultOk>::Ok
            > = ::forkbridge::Command::new("one");
        });
        constant(quote! {
            pub const TWO: ::forkbridge::Command<(u8, B,), B> = ::forkbridge::Command::new("twoArgs");
        });
    }

    #[test]
    fn two_handlers_making_one_constant_are_refused() {
        let err = expand(quote! {
            impl B {
                fn foo_bar(&mut self) {}
                fn fooBar(&mut self) {}
            }
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("`foo_bar` and `fooBar` would both make the constant `FOO_BAR`"),
            "{err}"
        );
    }
}
