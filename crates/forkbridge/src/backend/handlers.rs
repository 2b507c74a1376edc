//! [`Handlers`]: the table from command name to handler that a backend
//! fills once, in the child, before its loop starts.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, DefaultHasher};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::data::message::Message;
use crate::protocol::call::{decode_args, encode_reply, handler_failure};
use crate::protocol::wire::{Failure, Fingerprints};

use super::{BackendContext, BoxError, HandlerResult};

pub(super) type Handler<B> = Box<dyn Fn(&mut B, &mut BackendContext, Message) -> HandlerResult>;

pub(super) type TypedHandler<B> =
    Box<dyn Fn(&mut B, &mut BackendContext, Fingerprints, &[u8]) -> Result<Vec<u8>, Failure>>;

type FixedHasher = BuildHasherDefault<DefaultHasher>;

/// The dispatch table: command name → handler.
pub struct Handlers<B> {
    // A fixed-key hasher: command names come from the program itself, so
    // hash flooding is no concern, and random keys would cost a `getrandom`
    // and a copy-on-write page fault in every new child.
    pub(super) map: HashMap<String, Handler<B>, FixedHasher>,
    pub(super) typed: HashMap<String, TypedHandler<B>, FixedHasher>,
}

impl<B> Handlers<B> {
    pub(super) fn new() -> Handlers<B> {
        Handlers {
            map: HashMap::default(),
            typed: HashMap::default(),
        }
    }

    /// Routes the typed command `command` to `handler`, whose arguments `A`
    /// (a tuple, or any serde type) are decoded from the call and whose
    /// return value is encoded into the reply. The frontend calls it with
    /// [`MessageProcess::call`](crate::MessageProcess::call) (request/reply)
    /// or [`cast`](crate::MessageProcess::cast) (one-way). The
    /// `#[forkbridge::handlers]` attribute (feature `macros`) writes these
    /// registrations for you.
    ///
    /// Typed and dynamic handlers live side by side: a [`Message`] named
    /// `command` still goes to the dynamic table.
    pub fn typed<A, R, F>(&mut self, command: impl Into<String>, handler: F) -> &mut Self
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(&mut B, &mut BackendContext, A) -> Result<R, BoxError> + 'static,
    {
        let command = command.into();
        let name = command.clone();
        let boxed: TypedHandler<B> = Box::new(move |backend, ctx, types, args| {
            let args: A = decode_args::<A, R>(&name, types, args)?;
            let value = handler(backend, ctx, args).map_err(handler_failure)?;
            encode_reply(&name, &value)
        });
        self.typed.insert(command, boxed);
        self
    }

    /// Whether a dynamic or typed handler is registered for `command`.
    pub fn contains(&self, command: &str) -> bool {
        self.map.contains_key(command) || self.typed.contains_key(command)
    }

    /// Routes `command` to `handler`; a later registration of the same name
    /// replaces the earlier one.
    pub fn on<F>(&mut self, command: impl Into<String>, handler: F) -> &mut Self
    where
        F: Fn(&mut B, &mut BackendContext, Message) -> HandlerResult + 'static,
    {
        self.map.insert(command.into(), Box::new(handler));
        self
    }
}

impl<B> fmt::Debug for Handlers<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.map.keys().chain(self.typed.keys()))
            .finish()
    }
}
