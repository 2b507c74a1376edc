//! The async event loop: the child's life for an [`AsyncBackend`], on a
//! tokio runtime built in the child. The dispatch is the shared core in
//! `backend/endpoint.rs`; the waiting (one `select!` over the intercom, the
//! tasks' messages and their ends) is this loop's own.

use std::collections::HashMap;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::backend::endpoint::{ChildInfo, Incoming};
use crate::data::message::Message;
use crate::error::{Result, panic_message};
use crate::protocol::fault::FaultKind;
use crate::sys::async_fd;
use crate::transport::conn::Filled;

use super::context::AsyncContext;
use super::handlers::AsyncHandlers;
use super::{AsyncBackend, AsyncConfig, RuntimeFlavor};

/// How many task messages may wait for the loop before `TaskSender::send`
/// waits too.
const TASK_QUEUE: usize = 1024;

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
