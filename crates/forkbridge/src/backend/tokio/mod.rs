//! [`AsyncBackend`]: a backend whose handlers are `async`, run on a tokio
//! runtime built in the child (valkka-multiprocess's `AsyncBackMessageProcess`).
//!
//! # Design
//!
//! The runtime is created in the child, after the fork, and never crosses
//! it: a tokio runtime is not fork-safe (tokio #4301 — its worker threads and
//! its signal self-pipe do not survive a fork). It is current-thread by
//! default (valkka-multiprocess's asyncio loop), multi-thread on request
//! ([`RuntimeFlavor`]). The intercom is registered with the runtime's
//! reactor ([`tokio::io::unix::AsyncFd`], the non-deprecated `register`), so
//! the loop awaits commands, task results and whatever the handlers await
//! in one place.
//!
//! Commands run one after another, in order, as in valkka-multiprocess: the loop awaits
//! each handler before it reads the next command. For concurrency a handler
//! hands work to a background task in one call,
//! [`AsyncContext::spawn`], and returns; the loop keeps serving. A task that
//! fails or panics is logged with its label and the process name and
//! reported to the frontend as an `"error"` message (kinds `"task_error"`,
//! `"task_panic"`): valkka-multiprocess's `exclog` / `exclogmsg`, built in. Tasks talk
//! to the frontend through a [`TaskSender`].
//!
//! On a stop request (or when the frontend goes away) the loop ends, running
//! tasks get a grace period ([`MessageProcessBuilder::task_grace`](crate::MessageProcessBuilder::task_grace)),
//! the rest are cancelled, `post_run` runs, and the process leaves. valkka-multiprocess
//! abandons its tasks without cancelling or awaiting them.

mod context;
mod handlers;
mod run;

pub use context::{AsyncContext, TaskSender};
pub use handlers::{AsyncHandlerFn, AsyncHandlers, AsyncTypedHandlerFn};
pub(crate) use run::run;

use std::time::Duration;

use crate::backend::HandlerResult;

/// Which tokio runtime the child builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuntimeFlavor {
    /// One thread runs the loop and every task (the default; valkka-multiprocess's
    /// asyncio loop).
    #[default]
    CurrentThread,
    /// A thread pool; `None` workers means one per CPU. The child is then
    /// multi-threaded, so a backend that starts processes of its own must
    /// opt in with `allow_threads`.
    MultiThread {
        /// Worker threads.
        workers: Option<usize>,
    },
}

/// Settings of an async backend's runtime, kept by the builder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AsyncConfig {
    pub(crate) flavor: RuntimeFlavor,
    pub(crate) grace: Duration,
}

impl Default for AsyncConfig {
    fn default() -> AsyncConfig {
        AsyncConfig {
            flavor: RuntimeFlavor::CurrentThread,
            grace: Duration::from_secs(1),
        }
    }
}

/// A backend with `async` handlers, run on tokio in the child.
///
/// Handlers are `async fn(&mut self, &mut AsyncContext, Message) ->
/// HandlerResult` methods registered by name, as for [`Backend`](crate::Backend).
/// Start one with [`MessageProcessBuilder::build_async`](crate::MessageProcessBuilder::build_async).
///
/// ```rust,standalone_crate
/// use std::time::Duration;
/// use forkbridge::{AsyncBackend, AsyncContext, AsyncHandlers, HandlerResult, Message, MessageProcess};
///
/// struct Fetcher;
///
/// impl Fetcher {
///     async fn fetch(&mut self, ctx: &mut AsyncContext, msg: Message) -> HandlerResult {
///         let url: String = msg.param("url")?;
///         let out = ctx.sender();
///         // Slow I/O in the background: the loop keeps serving meanwhile.
///         ctx.spawn(format!("fetch {url}"), async move {
///             tokio::time::sleep(Duration::from_millis(20)).await;
///             out.send(Message::new("fetched").with("url", url)).await?;
///             Ok(())
///         });
///         Ok(())
///     }
/// }
///
/// impl AsyncBackend for Fetcher {
///     fn register(handlers: &mut AsyncHandlers<Self>) {
///         handlers.on("fetch", Self::fetch);
///     }
/// }
///
/// let mut p = MessageProcess::builder("fetcher").build_async(Fetcher)?;
/// p.start()?;
/// p.send(Message::new("fetch").with("url", "rtsp://camera-1"))?;
/// assert_eq!(p.recv_timeout(Duration::from_secs(5))?.command(), "fetched");
/// p.stop()?;
/// # Ok::<(), forkbridge::Error>(())
/// ```
///
/// As with [`Backend`](crate::Backend), `"ping"` is answered with `"pong"`
/// unless registered.
// The loop awaits these futures on its own task (`block_on`), never spawns
// them, so they need no `Send` bound; the lint's advice does not apply.
#[allow(async_fn_in_trait)]
pub trait AsyncBackend: Sized + Send + 'static {
    /// Fills the dispatch table; runs once in the child.
    fn register(handlers: &mut AsyncHandlers<Self>);

    /// Runs in the child, inside the runtime, before the loop (valkka-multiprocess's
    /// `preRun__` and `asyncPre__` in one). An error is reported and the
    /// process exits with status 1.
    async fn pre_run(&mut self, ctx: &mut AsyncContext) -> HandlerResult {
        let _ = ctx;
        Ok(())
    }

    /// Runs after the loop and the background tasks ended, however the
    /// loop ended (valkka-multiprocess's `asyncPost__` and `postRun__`).
    async fn post_run(&mut self, ctx: &mut AsyncContext) {
        let _ = ctx;
    }
}
