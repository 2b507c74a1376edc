//! [`AsyncHandlers`]: the async backend's table from command name to
//! handler, and the traits its handlers satisfy.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{BoxError, HandlerResult};
use crate::data::message::Message;
use crate::protocol::call::{decode_args, encode_reply, handler_failure};
use crate::protocol::wire::{Failure, Fingerprints};

use super::context::AsyncContext;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

type AsyncHandler<B> =
    Box<dyn for<'a> Fn(&'a mut B, &'a mut AsyncContext, Message) -> BoxFuture<'a, HandlerResult>>;

type AsyncTypedHandler<B> = Box<
    dyn for<'a> Fn(
        &'a mut B,
        &'a mut AsyncContext,
        Fingerprints,
        Vec<u8>,
    ) -> BoxFuture<'a, std::result::Result<Vec<u8>, Failure>>,
>;

type FixedHasher = BuildHasherDefault<DefaultHasher>;

/// A function usable as an async handler: `async fn(&mut B, &mut
/// AsyncContext, Message) -> HandlerResult` (a method such as
/// `Self::fetch`). Implemented for every such function; not meant to be
/// implemented by hand.
pub trait AsyncHandlerFn<'a, B: 'a>:
    Fn(&'a mut B, &'a mut AsyncContext, Message) -> Self::Future
{
    /// The handler's future.
    type Future: Future<Output = HandlerResult> + 'a;
}

impl<'a, B: 'a, F, Fut> AsyncHandlerFn<'a, B> for F
where
    F: Fn(&'a mut B, &'a mut AsyncContext, Message) -> Fut,
    Fut: Future<Output = HandlerResult> + 'a,
{
    type Future = Fut;
}

/// A function usable as a typed async handler: `async fn(&mut B, &mut
/// AsyncContext, A) -> Result<R, BoxError>`. Implemented for every such
/// function; not meant to be implemented by hand.
pub trait AsyncTypedHandlerFn<'a, B: 'a, A>:
    Fn(&'a mut B, &'a mut AsyncContext, A) -> Self::Future
{
    /// The handler's return value.
    type Value: Serialize;
    /// The handler's future.
    type Future: Future<Output = std::result::Result<Self::Value, BoxError>> + 'a;
}

impl<'a, B: 'a, A, R, F, Fut> AsyncTypedHandlerFn<'a, B, A> for F
where
    R: Serialize,
    F: Fn(&'a mut B, &'a mut AsyncContext, A) -> Fut,
    Fut: Future<Output = std::result::Result<R, BoxError>> + 'a,
{
    type Value = R;
    type Future = Fut;
}

/// The dispatch table of an [`AsyncBackend`](crate::AsyncBackend).
pub struct AsyncHandlers<B> {
    pub(super) map: HashMap<String, AsyncHandler<B>, FixedHasher>,
    pub(super) typed: HashMap<String, AsyncTypedHandler<B>, FixedHasher>,
}

impl<B: 'static> AsyncHandlers<B> {
    /// Routes `command` to an async handler (an `async fn` method); a later
    /// registration of the same name replaces the earlier one.
    pub fn on<F>(&mut self, command: impl Into<String>, handler: F) -> &mut Self
    where
        F: for<'a> AsyncHandlerFn<'a, B> + 'static,
    {
        let boxed: AsyncHandler<B> = Box::new(move |b, ctx, msg| Box::pin(handler(b, ctx, msg)));
        self.map.insert(command.into(), boxed);
        self
    }

    /// Routes the typed command `command` to an async handler taking its
    /// arguments as `A` and returning `Result<R, BoxError>`; as
    /// [`Handlers::typed`](crate::Handlers::typed) for blocking backends.
    pub fn typed<A, F>(&mut self, command: impl Into<String>, handler: F) -> &mut Self
    where
        A: DeserializeOwned + 'static,
        F: for<'a> AsyncTypedHandlerFn<'a, B, A> + 'static,
    {
        let command = command.into();
        let name: Arc<str> = Arc::from(command.as_str());
        let handler = Arc::new(handler);
        let boxed: AsyncTypedHandler<B> = Box::new(move |b, ctx, types, args| {
            let name = name.clone();
            let handler = handler.clone();
            Box::pin(async move {
                let args: A = decode_args::<A, <F as AsyncTypedHandlerFn<'_, B, A>>::Value>(
                    &name, types, &args,
                )?;
                let value = handler(b, ctx, args).await.map_err(handler_failure)?;
                encode_reply(&name, &value)
            })
        });
        self.typed.insert(command, boxed);
        self
    }
}

impl<B> fmt::Debug for AsyncHandlers<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.map.keys().chain(self.typed.keys()))
            .finish()
    }
}
