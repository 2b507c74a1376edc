//! The [`Backend`] trait, its [`BackendContext`], and the blocking event loop
//! that runs in the forked child.
//!
//! # Design
//!
//! valkka-multiprocess finds a handler by building the string `"c__" + command` and
//! looking it up on the object. Here the backend fills a [`Handlers`] table
//! once, in the child, before the loop starts: a `HashMap` from command name
//! to handler, so dispatch is one hash lookup and a typo is a missing entry
//! that the frontend hears about, not an attribute error that kills the
//! process (valkka-multiprocess's).
//!
//! The loop waits in one `poll(2)` on the intercom and on every fd the
//! backend [watches](BackendContext::watch), with no timeout: an idle backend
//! uses no CPU and wakes only for work (valkka-multiprocess wakes every second, and
//! busy-polls with `listening=True`). Faults never leave the loop by
//! accident: a handler's error or panic, an unknown command or a malformed
//! frame is logged with the process name and reported to the frontend as an
//! `"error"` message, and the loop goes on.
//!
//! # Error messages
//!
//! A fault is reported to the frontend as a [`Message`] with command
//! `"error"`; its parameters are listed on
//! [`Message::is_error`](crate::Message::is_error). The kinds
//! are one enum, `protocol::fault::FaultKind`, so both loops (through the
//! dispatch core in `endpoint.rs`) and the Python binding use the same
//! names.

mod context;
pub(crate) mod endpoint;
mod handlers;
mod run;
#[cfg(feature = "tokio")]
pub(crate) mod tokio;
mod watch;

pub use context::BackendContext;
pub(crate) use endpoint::ChildInfo;
pub use handlers::Handlers;
pub(crate) use run::run;
pub use watch::{Interest, Ready, SourceId};

/// Any error a handler can return with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What handlers and hooks return.
pub type HandlerResult = std::result::Result<(), BoxError>;

/// The backend half of a process: state plus handlers, run in the child.
///
/// Implement [`register`](Backend::register) to map command names to
/// methods; everything else has a default. The value is moved into the child
/// by the fork (the parent's copy is dropped when the process starts).
///
/// ```
/// use forkbridge::{Backend, BackendContext, HandlerResult, Handlers, Message};
///
/// struct Counter {
///     total: i64,
/// }
///
/// impl Counter {
///     fn add(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
///         self.total += msg.param::<i64>("n")?;
///         ctx.send(Message::new("total").with("value", self.total))?;
///         Ok(())
///     }
/// }
///
/// impl Backend for Counter {
///     fn register(handlers: &mut Handlers<Self>) {
///         handlers.on("add", Self::add);
///     }
/// }
/// ```
///
/// Every backend also answers `"ping"` with `"pong"` (echoing the ping's
/// parameters) unless it registers its own `"ping"` handler.
pub trait Backend: Sized + Send + 'static {
    /// Fills the dispatch table. Runs once in the child, before
    /// [`pre_run`](Backend::pre_run).
    fn register(handlers: &mut Handlers<Self>);

    /// Runs in the child before the loop (valkka-multiprocess's `preRun__`): load heavy
    /// libraries and models here, after the fork, and
    /// [watch](BackendContext::watch) extra fds. An error or a panic is
    /// reported to the frontend and the process exits with status 1 without
    /// running the loop or `post_run`.
    fn pre_run(&mut self, ctx: &mut BackendContext) -> HandlerResult {
        let _ = ctx;
        Ok(())
    }

    /// Runs in the child after the loop, however it ended: a stop request,
    /// [`BackendContext::request_stop`], or the frontend going away, even
    /// killed (valkka-multiprocess's `postRun__`; see
    /// [`MessageProcess::start`](crate::MessageProcess::start) for the
    /// 900 ms bound on an orphaned backend). Messages sent here reach the
    /// frontend before it sees the process end. A panic here is logged and
    /// ends the process with status 1, after what it sent is flushed.
    fn post_run(&mut self, ctx: &mut BackendContext) {
        let _ = ctx;
    }

    /// Called when a [watched](BackendContext::watch) fd is ready (what an
    /// overridden `readPipes__` does in valkka-multiprocess). Errors and
    /// panics are reported like a handler's.
    fn on_ready(
        &mut self,
        ctx: &mut BackendContext,
        source: SourceId,
        ready: Ready,
    ) -> HandlerResult {
        let _ = (ctx, source, ready);
        Ok(())
    }
}
