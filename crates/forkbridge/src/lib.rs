//! Fork long-lived worker processes and talk to them with messages.
//!
//! forkbridge is structured multiprocessing in the style of the Python
//! library valkka-multiprocess: a program forks worker processes, each split
//! into a **frontend** (a [`MessageProcess`] handle in the parent) and a
//! **backend** (a [`Backend`] value whose event loop runs in the forked
//! child). [`Message`]s cross between them without the user writing any
//! plumbing, and when a backend dies the frontend is told instead of left
//! hanging.
//!
//! # Hello, world!
//!
//! ```rust,standalone_crate
//! use std::time::Duration;
//! use forkbridge::{Backend, BackendContext, HandlerResult, Handlers, Message, MessageProcess};
//!
//! struct Greeter;
//!
//! impl Greeter {
//!     fn greet(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
//!         let who: String = msg.param("who")?;
//!         ctx.send(Message::new("greeting").with("text", format!("hello, {who}")))?;
//!         Ok(())
//!     }
//! }
//!
//! impl Backend for Greeter {
//!     fn register(handlers: &mut Handlers<Self>) {
//!         handlers.on("greet", Self::greet);
//!     }
//! }
//!
//! let mut p = MessageProcess::new("greeter", Greeter)?;
//! p.start()?;                                      // fork: the loop runs in the child
//! p.send(Message::new("greet").with("who", "world"))?;
//! let reply = p.recv_timeout(Duration::from_secs(5))?;
//! assert_eq!(reply["text"].as_str(), Some("hello, world"));
//! p.stop()?;                                       // stop request → wait → reap
//! # Ok::<(), forkbridge::Error>(())
//! ```
//!
//! # Concepts
//!
//! **Messages.** A [`Message`] is a command name plus named parameters of
//! dynamic [`Value`]s (null, bool, integers, float, string, bytes, list,
//! map). Build one with [`Message::new`] and [`Message::with`] or the
//! [`message!`] macro; read it with `msg["name"]`, [`Message::get`] or the
//! typed [`Message::param`].
//!
//! **Backends and handlers.** A [`Backend`] maps command names to handlers
//! in [`Backend::register`]; the child's loop looks each incoming message up
//! in that table (one hash lookup). [`Backend::pre_run`] runs in the child
//! before the loop (load heavy things there, after the fork),
//! [`Backend::post_run`] after it, on every way out. A handler talks back
//! through its [`BackendContext`]: [`send`](BackendContext::send),
//! [`log_target`](BackendContext::log_target), extra fds to
//! [`watch`](BackendContext::watch) in the same `poll`.
//!
//! **Faults.** A handler's error or panic, an unknown command or a malformed
//! frame is logged in the child with the process name and reaches the
//! frontend as an `"error"` message ([`Message::is_error`]); the loop keeps
//! running. A backend that dies (exit, signal, `SIGKILL`, OOM) ends every
//! wait of its frontend with [`ErrorKind::Disconnected`] and the exit status,
//! after the messages it sent before dying, and every send after that with
//! `Disconnected` at once. A frontend that dies, even by `SIGKILL`, takes
//! its backends with it within a second: each sees the end of the stream
//! and ends in order (`post_run` runs), or is killed if that takes longer
//! (see [`MessageProcess::start`]). Every timeout takes `Duration::MAX` as
//! "no limit".
//!
//! **Sending and receiving.** [`MessageProcess::send`] writes at once;
//! [`MessageProcess::feed`] buffers for bursts, written by
//! [`flush`](MessageProcess::flush). Receive with
//! [`recv`](MessageProcess::recv), [`try_recv`](MessageProcess::try_recv)
//! ([`ErrorKind::Empty`]) or [`recv_timeout`](MessageProcess::recv_timeout)
//! ([`ErrorKind::Timeout`]); the handle is [`AsFd`](std::os::fd::AsFd) for
//! your own poll loop.
//!
//! **Stopping.** [`MessageProcess::stop`] is bounded: a stop request, then
//! `SIGTERM`, then `SIGKILL`, then the child is reaped. Dropping the handle
//! does the same.
//!
//! **Fork safety.** [`MessageProcess::start`] refuses to fork a process that
//! has other threads ([`ErrorKind::ForkWithThreads`]) unless you opt in:
//! start processes first, then threads.
//!
//! **Events across the fork.** An [`Event`] is a flag in shared memory made
//! before the fork: `set` in one process, `wait` / `wait_timeout` in another.
//! `set` with nobody waiting is one atomic instruction. An [`EventGroup`]
//! holds many; the frontend [reserves](EventGroup::reserve) one per request
//! and sends its [`EventIndex`] in the message, the backend
//! [sets](EventGroup::set) it by index. [`SyncIndex`] does the
//! reserve–wait–release dance with a bound and without leaking the event on
//! an error. [`EventKind::Pollable`] events have an fd too, readable while
//! set.
//!
//! **Typed commands** (feature `macros`). `#[forkbridge::handlers]` on a
//! backend's `impl` block makes each method a typed command and generates
//! the frontend with the same methods: one definition, checked by the
//! compiler on both sides, calls matched to replies by a correlation id,
//! errors typed. By hand: [`Handlers::typed`], [`MessageProcess::call`],
//! [`MessageProcess::cast`].
//!
//! **Async backends** (feature `tokio`). An `AsyncBackend` has `async fn`
//! handlers; `MessageProcessBuilder::build_async` runs it on a tokio
//! runtime built in the child after the fork. A handler hands slow work to
//! a background task with `AsyncContext::spawn` and the loop keeps
//! serving; a failing task is reported like valkka-multiprocess's `exclog`. In the
//! parent, `MessageProcess::into_async` gives an `AsyncMessageProcess`
//! whose `recv().await` is cancel-safe. Start processes before building a
//! multi-threaded runtime (see `AsyncMessageProcess`).
//!
//! **Frames through shared memory.** A [`FrameRing`] made before the fork
//! carries a stream of large frames (video, arrays) from one process to the
//! other without copying them through the socket: the
//! [producer](FrameRing::producer) writes a slot in place and commits it,
//! the [consumer](FrameRing::consumer) reads it in place. A full ring is
//! back-pressure; a dead peer is reported, its slot recovered. Memory made
//! *after* the fork is a [`SharedBuffer`], sent to a running backend with
//! [`MessageProcess::send_with_fds`] and taken there with
//! [`BackendContext::take_fds`]. Without any of this, a large [`Message`]
//! can take shared memory by itself:
//! [`MessageProcessBuilder::large_messages`]`(threshold, slot_size)` sends
//! messages holding at least `threshold` bytes through two slots each way,
//! in order with the rest, and the receiver reads their byte strings where
//! they landed.
//!
//! **The main process.** A [`MainContext`] names its four duties (start
//! processes, start threads, run, close); [`run_main`] performs them in that
//! order — every fork before any thread — turns Ctrl-C and SIGTERM into a
//! readable [`Shutdown`] fd for the main loop, and runs `close` on every way
//! out. [`wait_any`] waits on many processes (and that fd) at once.
//!
//! **Start methods.** [`MessageProcessBuilder::start_method`] picks how
//! the worker comes to exist ([`StartMethod`]): a fork of the caller (the
//! default), a fork of a small single-threaded server
//! ([`StartMethod::ForkServer`]: workers from a threaded tokio, rayon or
//! CUDA program, at a start cost that does not grow with the caller's
//! memory), or this program run again ([`StartMethod::Spawn`]). The last
//! two take a backend that crosses as data
//! ([`MessageProcessBuilder::build_portable`]: serde, with the fds of the
//! shared objects it holds) and need [`init`] first in `main`.
//!
//! **Supervision and pools.** A [`RestartPolicy`] says when a dead
//! process comes back, at most how often, and after what backoff; past its
//! limit the process is given up with [`ErrorKind::GaveUp`] and its last
//! exit statuses. A [`Supervisor`] keeps processes of any kinds by their
//! policies, reports [`SupervisorEvent`]s from one `poll`, and stops them
//! all in reverse start order within one bound (a [`MainContext`] can own
//! one). A [`Pool`] spreads typed calls ([`Command`]s) over N identical
//! workers — round robin, least outstanding, or by key — with a bound on
//! calls in flight, replaces a worker that dies at once, and ends each of
//! its calls with [`ErrorKind::Disconnected`] or, for an idempotent
//! command, sends it once more to another worker. [`MessageProcess::status`]
//! (and the supervisor's and pool's) is a [`Status`] snapshot: state,
//! restarts, traffic, calls in flight, RSS and CPU time.
//!
//! **Waiting on several things.** [`select`] waits on any fds — processes,
//! their [pidfds](MessageProcess::pidfd), pollable events, your sockets —
//! with no `FD_SETSIZE` limit, and a signal never cuts its timeout short.
//!
//! **Logging.** Backends log through the [`log`] crate with target
//! `TypeName.name`; [`format_logger`] installs a one-line formatter.
//!
//! **Backends that run their own loop, and other languages.**
//! [`MessageProcessBuilder::build_fn`] forks a plain function that gets the
//! child's [`Intercom`] (receive, send, an fd to wait on) instead of a
//! dispatch table — for a backend embedding another event loop, or the
//! Python binding's backends. [`Intercom::exec`] replaces the child with
//! another program, which adopts the intercom with [`Intercom::from_env`];
//! the wire is the same whatever the language (the Python package's
//! `ProgramProcess` and `serve` are the other ends). [`ForkHooks`] and
//! [`MessageProcessBuilder::keep_signal_handlers`] let an embedded runtime
//! prepare for the fork (CPython's `PyOS_BeforeFork`/`AfterFork_*`).
//! [`Value::Tuple`] and [`Value::Pickled`] carry Python's tuples and
//! everything Python has no native form for; [`Bytes`] lets a large buffer
//! be lent to a message and encoded once, without a copy first (and lends
//! a large message's byte strings from the shared-memory slot it arrived
//! in). What only the binding needs (sends and flushes in slices, one
//! frame per read for a foreign `select`) is in a hidden `binding` module.
//!
//! # From valkka-multiprocess
//!
//! | valkka-multiprocess | forkbridge |
//! |---|---|
//! | `MessageObject("cmd", par=1)`, `msg()`, `msg["par"]` | [`Message::new`]`("cmd").with("par", 1)` or [`message!`], [`Message::command`], `msg["par"]`, [`Message::get`], [`Message::param`] |
//! | `MessageProcess(name)` subclass | a [`Backend`] + [`MessageProcess::new`] / [`MessageProcess::builder`] |
//! | `c__my_stuff` backend methods | handlers in [`Backend::register`]: `handlers.on("my_stuff", Self::my_stuff)` |
//! | `c__my_stuff` + frontend `my_stuff` paired by name | one method under `#[forkbridge::handlers]` (feature `macros`): typed handler + generated frontend method |
//! | `returnFromBack()` (a value back from the backend) | a typed call: [`MessageProcess::call`] |
//! | `c__ping` / `sendPing(lis)` | built-in `"ping"` → `"pong"` (echoes the parameters) |
//! | `preRun__`, `postRun__` | [`Backend::pre_run`], [`Backend::post_run`] (runs on every way out of the loop) |
//! | `readPipes__` override | [`BackendContext::watch`] + [`Backend::on_ready`] (no busy polling) |
//! | `send_out__(obj)` | [`BackendContext::send`] |
//! | `sendMessageToBack(msg)` | [`MessageProcess::send`] (or [`feed`](MessageProcess::feed) + [`flush`](MessageProcess::flush) for bursts) |
//! | `getPipe()`, `getReadFd()` | `impl AsFd for MessageProcess`; [`MessageProcess::pidfd`] for death |
//! | `pipe.recv()` | [`MessageProcess::recv`], [`try_recv`](MessageProcess::try_recv), [`recv_timeout`](MessageProcess::recv_timeout) |
//! | `start()` / `go()` | [`MessageProcess::start`] / [`go`](MessageProcess::go) |
//! | `requestStop()`, `waitStop()`, `stop()` | [`request_stop`](MessageProcess::request_stop), [`join`](MessageProcess::join) / [`join_timeout`](MessageProcess::join_timeout), [`stop`](MessageProcess::stop) (bounded) |
//! | `ignoreSIGINT()` | [`MessageProcessBuilder::ignore_sigint`] |
//! | `self.logger` (`Class.name`), `formatLogger(level)` | target [`BackendContext::log_target`], [`format_logger`] |
//! | `multiprocessing.Event` / libValkka `EventFd` | [`Event::new`] / [`Event::with_kind`]`(`[`EventKind::Pollable`]`)` |
//! | `EventGroup(n, event_class)` | [`EventGroup::new`]`(n)` / [`EventGroup::with_kind`] |
//! | `reserve()`, `release(event)`, `release_ind(i)` | [`EventGroup::reserve`], [`EventGroup::release`], [`EventGroup::release_index`] |
//! | `set(i)`, `fromIndex(i)`, `asIndex(event)` | [`EventGroup::set`], [`EventGroup::get`], [`EventGroup::index_of`] |
//! | `NotEnoughEvents` | [`ErrorKind::NoFreeEvent`] |
//! | `with SyncIndex(eg) as i:` | `let sync = SyncIndex::new(&eg)?; ... sync.wait_timeout(t)?` |
//! | `safe_select(r, w, x, timeout)` | [`select`]`(&r, &w, &x, timeout)` |
//! | `MainContext` (`startProcesses`, `startThreads`, `__call__`, `close`) | [`MainContext`] + [`run_main`] (Ctrl-C / SIGTERM handled, close on every exit) |
//! | `runAsThread`, `stopThread` | [`run_as_thread`], [`MainThread::stop`] |
//! | tutorials' `SharedMemory` numpy frames | [`FrameRing`]: [`RingProducer::acquire`] / [`WriteSlot::commit`], [`RingConsumer::recv`], [`ReadSlot::cast`] |
//! | `AsyncBackMessageProcess`, `async def c__x` | `AsyncBackend` with `async fn` handlers, `build_async` (feature `tokio`) |
//! | `asyncPre__`, `asyncPost__` | `AsyncBackend::pre_run`, `AsyncBackend::post_run` |
//! | `create_task` + `@exclog` / `@exclogmsg` | `AsyncContext::spawn` (failures logged and reported) |
//! | `Duplex` / `getReadFd()` for an asyncio frontend | `MessageProcess::into_async` → `AsyncMessageProcess` |
//!
//! # Crate features
//!
//! * `tokio` — `AsyncBackend`, `AsyncMessageProcess` and the builder's
//!   `build_async`, `runtime`, `task_grace`.
//! * `macros` — `#[forkbridge::handlers]` (typed commands from one
//!   definition).
//!
//! On docs.rs each item a feature brings is marked with its feature.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg(target_os = "linux")]
// docs.rs builds with `--cfg docsrs` (Cargo.toml's metadata), so each item
// a feature brings says which feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[allow(unsafe_code)] // The only module with syscalls; see its docs.
mod sys;

// The layers, lowest first; a module names only modules of its own layer
// or of layers below it (`checks/layers` enforces it).
mod app;
mod backend;
#[doc(hidden)]
pub mod binding;
mod data;
mod deadline;
mod error;
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzz;
mod process;
mod protocol;
mod shm;
mod supervise;
mod transport;

pub use crate::app::logger::format_logger;
pub use crate::app::main_context::{
    MainContext, MainThread, Outcome, ReadySet, Shutdown, run_as_thread, run_main, wait_any,
};
pub use crate::app::select::{Selected, select};
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use crate::backend::tokio::{
    AsyncBackend, AsyncContext, AsyncHandlerFn, AsyncHandlers, AsyncTypedHandlerFn, RuntimeFlavor,
    TaskSender,
};
pub use crate::backend::{
    Backend, BackendContext, BoxError, HandlerResult, Handlers, Interest, Ready, SourceId,
};
pub use crate::data::bytes::{Bytes, LentBytes};
pub use crate::data::message::Message;
pub use crate::data::value::{FromValue, Value};
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::process::relay;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use crate::process::tokio::AsyncMessageProcess;
pub use crate::process::{
    ForkHooks, MessageProcess, MessageProcessBuilder, ProcessState, StartMethod, Status, init,
    start_fork_server, stop_fork_server,
};
pub use crate::shm::buffer::{SharedArray, SharedBuffer};
pub use crate::shm::event::{Event, EventKind};
pub use crate::shm::event_group::{EventGroup, EventIndex};
pub use crate::shm::ring::{FrameRing, ReadSlot, RingConsumer, RingProducer, WriteSlot};
pub use crate::shm::sync_index::SyncIndex;
pub use crate::supervise::{
    Command, Dispatch, Pool, PoolBuilder, Request, Restart, RestartPolicy, Supervisor,
    SupervisorEvent, Ticket,
};
pub use crate::transport::intercom::{INTERCOM_FD_ENV, Intercom};

/// Makes typed commands from one definition: each `&mut self` method of the
/// `impl` block becomes a backend handler for the command of the same name,
/// and a generated frontend type gets a method with the same parameters
/// that sends it (feature `macros`).
///
/// ```rust,standalone_crate
/// use std::time::Duration;
/// use forkbridge::BackendContext;
///
/// #[derive(Default)]
/// pub struct Detector {
///     threshold: u8,
/// }
///
/// #[forkbridge::handlers(frontend = DetectorProcess)]
/// impl Detector {
///     /// One way: no value, nothing comes back.
///     pub fn set_threshold(&mut self, threshold: u8) {
///         self.threshold = threshold;
///     }
///
///     /// A call: the frontend waits for the value.
///     pub fn count_bright(&mut self, ctx: &mut BackendContext, pixels: Vec<u8>) -> usize {
///         log::debug!(target: ctx.log_target(), "{} pixels", pixels.len());
///         pixels.iter().filter(|&&p| p > self.threshold).count()
///     }
///
///     /// Errors come back as `ErrorKind::Remote`.
///     pub fn ratio(&mut self, a: u32, b: u32) -> Result<u32, String> {
///         a.checked_div(b).ok_or_else(|| "division by zero".to_string())
///     }
/// }
///
/// let mut p = DetectorProcess::start("detector", Detector::default())?;
/// p.set_timeout(Duration::from_secs(5));
/// p.set_threshold(100)?;
/// assert_eq!(p.count_bright(vec![50, 150, 250])?, 2);
/// assert!(p.ratio(1, 0).is_err());
/// p.stop()?; // the client dereferences to its MessageProcess
///
/// // The same commands, as typed constants, through a pool of workers.
/// let mut pool = forkbridge::Pool::builder("detectors")
///     .workers(2)
///     .build(|name| forkbridge::MessageProcess::builder(name).build(Detector::default()))?;
/// let bright: usize = pool.call(DetectorProcess::COUNT_BRIGHT.with((vec![0, 150, 250],)))?;
/// assert_eq!(bright, 2);
/// assert!(pool.call(DetectorProcess::RATIO.with((1, 0))).is_err());
/// pool.stop(Duration::from_secs(5));
/// # Ok::<(), forkbridge::Error>(())
/// ```
///
/// # What it generates
///
/// - `register_typed(handlers)`, registering every method with
///   [`Handlers::typed`] (or `AsyncHandlers::typed` when the methods are
///   `async fn`), and — unless `#[handlers(custom_backend)]` — the
///   [`Backend`] (or `AsyncBackend`) impl whose `register` calls it. With
///   `custom_backend`, write the impl yourself (for `pre_run`/`post_run` or
///   dynamic handlers beside the typed ones) and call
///   `Self::register_typed(handlers)` in `register`.
/// - The frontend: `<Type>Client`, or the name given as `frontend = Name`,
///   with `start(name, backend)`, `start_with(builder, backend)` (any
///   start method: the backend must also be serde, or the call does not
///   compile), `new(process)`, `set_timeout` (default
///   30 s), one method per command, and `Deref` to [`MessageProcess`]. A
///   method returning nothing is one-way ([`MessageProcess::cast`]); any
///   other return type makes a call that waits for the value
///   ([`MessageProcess::call`]); `Result<T, E>` (`E: Into<BoxError>`)
///   returns `T` or [`ErrorKind::Remote`]. With the `tokio` feature also
///   `<Frontend>Async`, the same methods as `async fn`, from
///   `client.into_async()`.
/// - On the frontend (and `<Frontend>Async`), one [`Command`] constant per
///   command, named after the method in upper case (`COUNT_BRIGHT` for
///   `count_bright`): `Command<(A, B,), T>` with the argument tuple the
///   method sends (`(a,)` for one argument, `()` for none) and the value it
///   returns (`()` when one-way, `T` for `Result<T, E>`). A [`Pool`] takes
///   them as requests, `pool.call(DetectorProcess::RATIO.with((1, 0)))`
///   ([`Pool::cast`] for one-way ones), checked by the compiler as the
///   method is and by the backend as the method's calls are;
///   `DetectorProcess::RATIO.idempotent()` lets the pool resend it when its
///   worker dies.
///
/// # Rules
///
/// Methods take `&mut self`, then optionally `&mut BackendContext` (or
/// `&mut AsyncContext`), then owned serde arguments. `Self` in their types
/// means the backend (on the frontend too). Lifetimes in their types are
/// written out (`Cow<'static, str>` or `Cow<'_, str>`, not `Cow<str>`): the
/// constants name the types, and the type of a constant cannot leave a
/// lifetime out. The backend type is not generic. `#[forkbridge(skip)]`
/// leaves a method out; `#[forkbridge(command = "myStuff")]` renames its
/// command (for frontends in other languages). Misuse is a compile error at
/// the offending code: another receiver, a borrowed or non-serde argument, a
/// duplicate command name, two methods making one constant (`foo_bar` and
/// `fooBar`), `async` and blocking handlers mixed.
///
/// The dynamic [`Message`] path keeps working beside the typed one.
#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use forkbridge_macros::handlers;

/// Support for the code `#[handlers]` generates; not a public API.
#[doc(hidden)]
pub mod __private {
    /// How long generated clients wait for a reply by default.
    pub const DEFAULT_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

    /// The `T` of a `Result<T, E>` return type.
    pub trait ResultOk {
        /// `T`.
        type Ok;
    }

    impl<T, E> ResultOk for std::result::Result<T, E> {
        type Ok = T;
    }

    pub use serde::{Serialize, de::DeserializeOwned};

    /// `T: Is<U>` holds only for `T = U`: ties a generic parameter to the
    /// backend's type, so a missing serde impl is reported at the call.
    pub trait Is<T> {}
    impl<T> Is<T> for T {}

    /// Fails to compile, at the argument's type, unless it can cross the
    /// fork as a typed argument.
    pub fn assert_argument<T: serde::Serialize + serde::de::DeserializeOwned>() {}
}

// The README's examples are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
