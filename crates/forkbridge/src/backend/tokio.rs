//! [`AsyncBackend`]: a backend whose handlers are `async`, run on a tokio
//! runtime built in the child (the seed's `AsyncBackMessageProcess`).
//!
//! # Design
//!
//! The runtime is created in the child, after the fork, and never crosses
//! it: a tokio runtime is not fork-safe (tokio #4301 — its worker threads and
//! its signal self-pipe do not survive a fork). It is current-thread by
//! default (the seed's asyncio loop), multi-thread on request
//! ([`RuntimeFlavor`]). The intercom is registered with the runtime's
//! reactor ([`tokio::io::unix::AsyncFd`], the non-deprecated `register`), so
//! the loop awaits commands, task results and whatever the handlers await
//! in one place.
//!
//! Commands run one after another, in order, as in the seed: the loop awaits
//! each handler before it reads the next command. For concurrency a handler
//! hands work to a background task in one call,
//! [`AsyncContext::spawn`], and returns; the loop keeps serving. A task that
//! fails or panics is logged with its label and the process name and
//! reported to the frontend as an `"error"` message (kinds `"task_error"`,
//! `"task_panic"`): the seed's `exclog` / `exclogmsg`, built in. Tasks talk
//! to the frontend through a [`TaskSender`].
//!
//! On a stop request (or when the frontend goes away) the loop ends, running
//! tasks get a grace period ([`MessageProcessBuilder::task_grace`](crate::MessageProcessBuilder::task_grace)),
//! the rest are cancelled, `post_run` runs, and the process leaves. The seed
//! abandons its tasks without cancelling or awaiting them (Q11).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::{Id, JoinError, JoinSet};

use crate::backend::endpoint::{ChildInfo, Endpoint, Incoming};
use crate::backend::{BoxError, HandlerResult};
use crate::data::message::Message;
use crate::error::{Error, Result, panic_message};
use crate::protocol::call::{decode_args, encode_reply, handler_failure};
use crate::protocol::fault::FaultKind;
use crate::protocol::wire::{Failure, Fingerprints};
use crate::sys::async_fd;
use crate::transport::conn::{FLUSH_THRESHOLD, Filled};

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

/// How many task messages may wait for the loop before `TaskSender::send`
/// waits too.
const TASK_QUEUE: usize = 1024;

/// Which tokio runtime the child builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuntimeFlavor {
    /// One thread runs the loop and every task (the default; the seed's
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

    /// Runs in the child, inside the runtime, before the loop (the seed's
    /// `preRun__` and `asyncPre__` in one). An error is reported and the
    /// process exits with status 1.
    async fn pre_run(&mut self, ctx: &mut AsyncContext) -> HandlerResult {
        let _ = ctx;
        Ok(())
    }

    /// Runs after the loop and the background tasks ended, however the
    /// loop ended (the seed's `asyncPost__` and `postRun__`).
    async fn post_run(&mut self, ctx: &mut AsyncContext) {
        let _ = ctx;
    }
}

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

/// The dispatch table of an [`AsyncBackend`].
pub struct AsyncHandlers<B> {
    map: HashMap<String, AsyncHandler<B>, FixedHasher>,
    typed: HashMap<String, AsyncTypedHandler<B>, FixedHasher>,
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

/// The async backend's view of its process.
pub struct AsyncContext {
    endpoint: Endpoint<Arc<AsyncFd<OwnedFd>>>,
    tasks: JoinSet<HandlerResult>,
    labels: HashMap<Id, String>,
    tx: mpsc::Sender<Message>,
}

impl AsyncContext {
    /// The fds that came with the message being handled; as
    /// [`BackendContext::take_fds`](crate::BackendContext::take_fds).
    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.endpoint.fds)
    }

    /// Sends a message to the frontend (the seed's `send_out__`). Buffered;
    /// written when the handler returns, or once 64 KiB are buffered. What
    /// a handler sent is on the wire before the next command is handled:
    /// when the frontend is not reading, the loop waits (asynchronously,
    /// reading the frontend's messages meanwhile) for room in the socket.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::FrameTooLarge`](crate::ErrorKind::FrameTooLarge) if the
    /// message exceeds the frame limit.
    pub fn send(&mut self, msg: Message) -> Result<()> {
        self.endpoint.conn.feed(&msg)?;
        if self.endpoint.conn.pending_output() > FLUSH_THRESHOLD {
            // Non-blocking here; the loop waits for room if needed.
            let _ = self.endpoint.conn.try_flush();
        }
        Ok(())
    }

    /// Writes every buffered message now, waiting (asynchronously) while
    /// the frontend's socket is full and reading its messages meanwhile.
    /// Use it to deliver progress from a long handler; otherwise messages go
    /// out when the handler returns.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) if the
    /// frontend is gone.
    pub async fn flush(&mut self) -> Result<()> {
        let afd = self.endpoint.conn.owner().clone();
        loop {
            if self.endpoint.conn.try_flush()? {
                return Ok(());
            }
            tokio::select! {
                ready = afd.writable() => ready?.clear_ready(),
                ready = afd.readable() => {
                    let mut guard = ready?;
                    if self.endpoint.conn.is_eof() || self.endpoint.conn.fill()? == Filled::Read(0) {
                        guard.clear_ready();
                    }
                }
            }
        }
    }

    /// A handle for background tasks to send messages to the frontend.
    pub fn sender(&self) -> TaskSender {
        TaskSender {
            tx: self.tx.clone(),
        }
    }

    /// Runs `task` in the background; the loop keeps serving commands. If
    /// it returns an error or panics, that is logged with `label` and the
    /// process name and reported to the frontend as an `"error"` message
    /// (kind `"task_error"` or `"task_panic"`, command `label`).
    pub fn spawn<F>(&mut self, label: impl Into<String>, task: F)
    where
        F: Future<Output = HandlerResult> + Send + 'static,
    {
        let handle = self.tasks.spawn(task);
        self.labels.insert(handle.id(), label.into());
    }

    /// Background tasks still running.
    pub fn tasks_running(&self) -> usize {
        self.tasks.len()
    }

    /// The process name.
    pub fn name(&self) -> &str {
        &self.endpoint.name
    }

    /// The logging target, `TypeName.name`.
    pub fn log_target(&self) -> &str {
        &self.endpoint.target
    }

    /// Ends the loop after the current handler.
    pub fn request_stop(&mut self) {
        self.endpoint.stop = true;
    }

    fn task_done(&mut self, joined: std::result::Result<(Id, HandlerResult), JoinError>) {
        match joined {
            Ok((id, Ok(()))) => {
                self.labels.remove(&id);
            }
            Ok((id, Err(e))) => {
                let label = self.labels.remove(&id).unwrap_or_default();
                self.endpoint
                    .report(FaultKind::TaskError, &label, &e.to_string());
            }
            Err(e) => {
                let label = self.labels.remove(&e.id()).unwrap_or_default();
                if e.is_panic() {
                    self.endpoint.report(
                        FaultKind::TaskPanic,
                        &label,
                        &panic_message(&*e.into_panic()),
                    );
                } else {
                    log::debug!(target: &self.endpoint.target, "task '{label}' cancelled");
                }
            }
        }
    }
}

impl fmt::Debug for AsyncContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncContext")
            .field("name", &self.endpoint.name)
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

/// Sends messages to the frontend from background tasks; cheap to clone.
#[derive(Debug, Clone)]
pub struct TaskSender {
    tx: mpsc::Sender<Message>,
}

impl TaskSender {
    /// Queues a message for the frontend; waits while 1024 are queued.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) once the
    /// backend is ending: after `post_run` (a message sent from `post_run`
    /// itself still arrives, after `post_run`'s own).
    pub async fn send(&self, msg: Message) -> Result<()> {
        self.tx
            .send(msg)
            .await
            .map_err(|_| Error::disconnected(None))
    }

    /// As [`send`](TaskSender::send), from blocking code (a
    /// `spawn_blocking` task); must not be called on a runtime thread.
    ///
    /// # Errors
    ///
    /// As [`send`](TaskSender::send).
    pub fn blocking_send(&self, msg: Message) -> Result<()> {
        self.tx
            .blocking_send(msg)
            .map_err(|_| Error::disconnected(None))
    }
}

/// Polls a future inside `catch_unwind`: a panicking handler becomes an
/// error report instead of the end of the loop.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// The child's whole life for an async backend. Returns the exit code.
pub(crate) fn run<B: AsyncBackend>(
    backend: B,
    fd: OwnedFd,
    info: ChildInfo,
    config: AsyncConfig,
) -> i32 {
    let mut builder = match config.flavor {
        RuntimeFlavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        RuntimeFlavor::MultiThread { workers } => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = workers {
                b.worker_threads(n.max(1));
            }
            b
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            log::error!(target: &info.target, "cannot build the tokio runtime: {e}");
            return 1;
        }
    };
    let code = runtime.block_on(async_main(backend, fd, info, config.grace));
    // Blocking tasks the handlers started get a short bound, never a hang.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

async fn async_main<B: AsyncBackend>(
    mut backend: B,
    fd: OwnedFd,
    info: ChildInfo,
    grace: Duration,
) -> i32 {
    let afd = match async_fd::register(fd) {
        Ok(afd) => Arc::new(afd),
        Err(e) => {
            log::error!(target: &info.target, "cannot register the intercom: {e}");
            return 1;
        }
    };
    let (tx, mut rx) = mpsc::channel(TASK_QUEUE);
    let mut endpoint = info.endpoint(afd.clone());
    endpoint.conn.lane_never_waits();
    let mut ctx = AsyncContext {
        endpoint,
        tasks: JoinSet::new(),
        labels: HashMap::new(),
        tx,
    };
    let mut handlers = AsyncHandlers {
        map: HashMap::default(),
        typed: HashMap::default(),
    };
    B::register(&mut handlers);

    let pre = CatchUnwind(Box::pin(backend.pre_run(&mut ctx))).await;
    let failure = match pre {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(panic) => Some(panic_message(&*panic)),
    };
    if let Some(error) = failure {
        ctx.endpoint.report(FaultKind::PreRun, "", &error);
        flush_at_exit(&mut ctx, &afd).await;
        return 1;
    }

    let mut code = 0;
    if let Err(e) = event_loop(&mut backend, &handlers, &mut ctx, &afd, &mut rx).await {
        log::error!(target: &ctx.endpoint.target, "event loop failed: {e}");
        code = 1;
    }
    finish_tasks(&mut ctx, &mut rx, grace).await;
    if let Err(panic) = CatchUnwind(Box::pin(backend.post_run(&mut ctx))).await {
        log::error!(target: &ctx.endpoint.target, "post_run panicked: {}", panic_message(&*panic));
        code = 1;
    }
    while let Ok(msg) = rx.try_recv() {
        let _ = ctx.endpoint.conn.feed(&msg);
    }
    flush_at_exit(&mut ctx, &afd).await;
    code
}

async fn event_loop<B: AsyncBackend>(
    backend: &mut B,
    handlers: &AsyncHandlers<B>,
    ctx: &mut AsyncContext,
    afd: &AsyncFd<OwnedFd>,
    rx: &mut mpsc::Receiver<Message>,
) -> Result<()> {
    loop {
        while let Some(incoming) = ctx.endpoint.next_incoming() {
            match incoming {
                Incoming::Message(msg) => dispatch(backend, handlers, ctx, msg).await,
                Incoming::Call(mut call) => {
                    let args = std::mem::take(&mut call.args);
                    let outcome = match handlers.typed.get(&call.command) {
                        Some(handler) => {
                            Some(CatchUnwind(handler(backend, ctx, call.types, args)).await)
                        }
                        None => None,
                    };
                    ctx.endpoint.answer(&call, outcome);
                }
                Incoming::Stop => return Ok(()),
            }
            ctx.endpoint.after_handler();
            // What the handler sent goes out before the next one runs (a
            // gone frontend is noticed at the top of the loop).
            if ctx.endpoint.conn.has_pending_output() {
                match ctx.flush().await {
                    Ok(()) => {}
                    Err(e) if e.is_disconnected() => {}
                    Err(e) => {
                        log::warn!(target: &ctx.endpoint.target, "flush after a handler failed: {e}")
                    }
                }
            }
            if ctx.endpoint.stop {
                return Ok(());
            }
        }
        if ctx.endpoint.stop || ctx.endpoint.conn.is_eof() {
            return Ok(());
        }
        match ctx.endpoint.conn.try_flush() {
            Ok(_) => {}
            Err(e) if e.is_disconnected() => return Ok(()),
            Err(e) => return Err(e),
        }
        let pending = ctx.endpoint.conn.has_pending_output();
        let tasks_running = !ctx.tasks.is_empty();
        tokio::select! {
            ready = afd.readable() => {
                let mut guard = ready?;
                if ctx.endpoint.conn.fill()? == Filled::Read(0) {
                    guard.clear_ready();
                }
            }
            ready = afd.writable(), if pending => {
                let mut guard = ready?;
                match ctx.endpoint.conn.try_flush() {
                    Ok(true) => {}
                    Ok(false) => guard.clear_ready(),
                    Err(e) if e.is_disconnected() => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            Some(msg) = rx.recv() => {
                // Take everything the tasks queued: one write for the lot.
                let mut next = Some(msg);
                while let Some(msg) = next {
                    if let Err(e) = ctx.endpoint.conn.feed(&msg) {
                        ctx.endpoint.report(FaultKind::TaskError, msg.command(), &e.to_string());
                    }
                    next = rx.try_recv().ok();
                }
            }
            Some(joined) = ctx.tasks.join_next_with_id(), if tasks_running => {
                ctx.task_done(joined);
            }
        }
    }
}

async fn dispatch<B: AsyncBackend>(
    backend: &mut B,
    handlers: &AsyncHandlers<B>,
    ctx: &mut AsyncContext,
    msg: Message,
) {
    match handlers.map.get_key_value(msg.command()) {
        Some((command, handler)) => {
            let outcome = CatchUnwind(handler(backend, ctx, msg)).await;
            ctx.endpoint.handled(command, outcome);
        }
        None => ctx.endpoint.unclaimed(&msg),
    }
}

/// Lets running tasks finish within `grace`, then cancels the rest.
async fn finish_tasks(ctx: &mut AsyncContext, rx: &mut mpsc::Receiver<Message>, grace: Duration) {
    if ctx.tasks.is_empty() {
        return;
    }
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            joined = ctx.tasks.join_next_with_id() => match joined {
                Some(joined) => ctx.task_done(joined),
                None => return,
            },
            Some(msg) = rx.recv() => {
                let _ = ctx.endpoint.conn.feed(&msg);
            }
            () = &mut deadline => {
                log::warn!(
                    target: &ctx.endpoint.target,
                    "cancelling {} background task(s) still running after {grace:?}",
                    ctx.tasks.len()
                );
                ctx.tasks.abort_all();
                while let Some(joined) = ctx.tasks.join_next_with_id().await {
                    ctx.task_done(joined);
                }
                return;
            }
        }
    }
}

/// Writes what is left, waiting for room; ends at once if the frontend is
/// gone (its `stop` bounds the wait otherwise).
async fn flush_at_exit(ctx: &mut AsyncContext, afd: &AsyncFd<OwnedFd>) {
    loop {
        match ctx.endpoint.conn.try_flush() {
            Ok(true) => return,
            Ok(false) => match afd.writable().await {
                Ok(mut guard) => guard.clear_ready(),
                Err(_) => return,
            },
            Err(e) => {
                if !e.is_disconnected() {
                    log::warn!(target: &ctx.endpoint.target, "final flush failed: {e}");
                }
                return;
            }
        }
    }
}
