//! [`Command`], [`Request`] and [`Ticket`]: a typed call as a value, so a
//! pool can choose where it goes, send it again, and answer it later.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, Weak};

use crate::error::Result;

/// A typed command of a backend: its name, its argument tuple `A` and its
/// return type `R`. `#[forkbridge::handlers]` generates one per handler as
/// an associated constant of the frontend type (`MyProcess::SQUARE` for
/// `fn square`); by hand, `Command::new("square")`.
///
/// A command marked [`idempotent`](Command::idempotent) may run twice
/// without harm (it reads, or its second run changes nothing): a pool
/// sends it once more to another worker when the worker running it dies.
pub struct Command<A, R> {
    name: &'static str,
    idempotent: bool,
    types: PhantomData<fn(A) -> R>,
}

impl<A, R> Command<A, R> {
    /// The command `name`, with arguments `A` (a tuple of the handler's
    /// parameters) and return type `R`.
    pub const fn new(name: &'static str) -> Command<A, R> {
        Command {
            name,
            idempotent: false,
            types: PhantomData,
        }
    }

    /// The same command, marked safe to run twice.
    pub const fn idempotent(self) -> Command<A, R> {
        Command {
            idempotent: true,
            ..self
        }
    }

    /// The command's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Whether it is marked safe to run twice.
    pub const fn is_idempotent(&self) -> bool {
        self.idempotent
    }

    /// A request to run it with `args`.
    pub fn with(self, args: A) -> Request<A, R> {
        Request {
            command: self,
            args,
            key: None,
        }
    }
}

impl<A, R> Clone for Command<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, R> Copy for Command<A, R> {}

impl<A, R> fmt::Debug for Command<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("name", &self.name)
            .field("idempotent", &self.idempotent)
            .finish()
    }
}

/// A [`Command`] with its arguments, and optionally a key: requests with
/// the same key go to the same worker while that worker lives.
#[derive(Debug)]
pub struct Request<A, R> {
    pub(super) command: Command<A, R>,
    pub(super) args: A,
    pub(super) key: Option<u64>,
}

impl<A, R> Request<A, R> {
    /// Routes the request by `key` instead of the pool's dispatch: the
    /// first request with a key goes to the least busy worker, and every
    /// later one to the same worker for as long as it lives; when it dies
    /// or leaves the pool, the key moves to another.
    pub fn key(mut self, key: impl Hash) -> Request<A, R> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        self.key = Some(hasher.finish());
        self
    }
}

/// Where a pool puts a call's outcome: the ticket holds it, the pool only
/// a weak reference, so a dropped ticket's reply is dropped on arrival.
pub(super) type Slot = Mutex<Outcome>;

/// A call's outcome as its ticket sees it.
#[derive(Debug, Default)]
pub(super) enum Outcome {
    /// Not answered yet.
    #[default]
    Pending,
    /// Answered, not yet taken.
    Ready(Result<Vec<u8>>),
    /// Taken by a wait: the ticket is spent.
    Taken,
}

/// A call submitted to a pool; [`Pool::wait`](super::Pool::wait) turns it
/// into the call's result. Dropping it abandons the result (the call
/// still runs).
pub struct Ticket<R> {
    pub(super) slot: Arc<Slot>,
    pub(super) command: &'static str,
    pub(super) reply: PhantomData<fn() -> R>,
}

impl<R> Ticket<R> {
    pub(super) fn new(command: &'static str) -> (Ticket<R>, Weak<Slot>) {
        let slot = Arc::new(Mutex::new(Outcome::Pending));
        let weak = Arc::downgrade(&slot);
        (
            Ticket {
                slot,
                command,
                reply: PhantomData,
            },
            weak,
        )
    }

    /// The command this ticket is for.
    pub fn command(&self) -> &'static str {
        self.command
    }

    /// Whether the result has arrived (the pool read it while doing
    /// something else): [`Pool::wait`](super::Pool::wait) then returns at
    /// once. Reads no socket.
    pub fn is_ready(&self) -> bool {
        matches!(
            *self.slot.lock().unwrap_or_else(|e| e.into_inner()),
            Outcome::Ready(_)
        )
    }

    /// The outcome if it has arrived (taken once: the ticket is spent);
    /// `Some(Err(InvalidArgument))` for a spent ticket.
    pub(super) fn take(&self) -> Option<Result<Vec<u8>>> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *slot, Outcome::Taken) {
            Outcome::Pending => {
                *slot = Outcome::Pending;
                None
            }
            Outcome::Ready(outcome) => Some(outcome),
            Outcome::Taken => Some(Err(crate::error::Error::new(
                crate::error::ErrorKind::InvalidArgument,
            )
            .with_source(format!(
                "the result of '{}' was already taken",
                self.command
            )))),
        }
    }
}

impl<R> fmt::Debug for Ticket<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("command", &self.command)
            .finish()
    }
}

/// Fills a ticket's slot, if the ticket still exists.
pub(super) fn fulfil(slot: &Weak<Slot>, outcome: Result<Vec<u8>>) {
    if let Some(slot) = slot.upgrade() {
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Outcome::Ready(outcome);
    }
}
