//! The blocking event loop: the child's whole life after setup for a
//! [`Backend`]. Its dispatch is the shared core in `endpoint.rs`; what is
//! its own is the waiting — one `poll(2)` on the intercom and the watched
//! fds, or a blocking read when there is nothing else to wait for.

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::data::message::Message;
use crate::error::{Result, panic_message};
use crate::protocol::fault::FaultKind;
use crate::sys::{fork, poll};

use super::endpoint::{ChildInfo, Incoming};
use super::handlers::Handlers;
use super::watch::{Ready, Source, SourceId};
use super::{Backend, BackendContext};

/// Registers the handlers, runs `pre_run`, the loop, `post_run`, and the
/// final flush. Returns the exit code.
pub(crate) fn run<B: Backend>(mut backend: B, fd: OwnedFd, info: ChildInfo) -> i32 {
    let spin = info.spin;
    let mut ctx = BackendContext {
        endpoint: info.endpoint(fd),
        sources: Vec::new(),
        next_source: 0,
    };
    let mut handlers = Handlers::new();
    B::register(&mut handlers);
    log::debug!(target: &ctx.endpoint.target, "started, pid {}", fork::getpid());

    let failure = match catch_unwind(AssertUnwindSafe(|| backend.pre_run(&mut ctx))) {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(panic) => Some(panic_message(&*panic)),
    };
    if let Some(error) = failure {
        ctx.endpoint.report(FaultKind::PreRun, "", &error);
        ctx.flush_at_exit();
        return 1;
    }

    let mut code = 0;
    if let Err(e) = event_loop(&mut backend, &handlers, &mut ctx, spin) {
        log::error!(target: &ctx.endpoint.target, "event loop failed: {e}");
        code = 1;
    }
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| backend.post_run(&mut ctx))) {
        log::error!(target: &ctx.endpoint.target, "post_run panicked: {}", panic_message(&*panic));
        code = 1;
    }
    ctx.flush_at_exit();
    log::debug!(target: &ctx.endpoint.target, "bye");
    code
}

fn event_loop<B: Backend>(
    backend: &mut B,
    handlers: &Handlers<B>,
    ctx: &mut BackendContext,
    spin: std::time::Duration,
) -> Result<()> {
    let mut fds: Vec<poll::PollFd> = Vec::new();
    loop {
        while let Some(incoming) = ctx.endpoint.next_incoming() {
            match incoming {
                Incoming::Message(msg) => dispatch(backend, handlers, ctx, msg),
                Incoming::Call(call) => {
                    let outcome = handlers.typed.get(&call.command).map(|handler| {
                        catch_unwind(AssertUnwindSafe(|| {
                            handler(backend, ctx, call.types, &call.args)
                        }))
                    });
                    ctx.endpoint.answer(&call, outcome);
                }
                Incoming::Stop => return Ok(()),
            }
            ctx.endpoint.after_handler();
            flush_after_handler(ctx);
            if ctx.endpoint.stop {
                return Ok(());
            }
        }
        if ctx.endpoint.stop {
            return Ok(());
        }
        let conn = &mut ctx.endpoint.conn;
        if conn.is_eof() {
            log::debug!(target: &ctx.endpoint.target, "frontend closed the intercom");
            return Ok(());
        }
        match conn.try_flush() {
            Ok(_) => {}
            Err(e) if e.is_disconnected() => {
                log::debug!(target: &ctx.endpoint.target, "frontend is gone");
                return Ok(());
            }
            Err(e) => return Err(e),
        }

        if ctx.sources.is_empty() && !conn.has_pending_output() {
            if !conn.spin_fill(spin)? {
                // Nothing else to wait for: block in `recv` itself.
                conn.fill_wait()?;
            }
            continue;
        }
        let mut events = poll::POLLIN;
        if conn.has_pending_output() {
            events |= poll::POLLOUT;
        }
        fds.clear();
        fds.push(poll::PollFd::new(conn.as_fd(), events));
        for source in &ctx.sources {
            fds.push(poll_entry(source));
        }
        poll::poll(&mut fds, None)?;

        if fds[0].revents() & !poll::POLLOUT != 0 {
            // At end of stream the frames that arrived before it are still
            // dispatched; the loop then ends at the top.
            ctx.endpoint.conn.fill()?;
        }
        // Sources may be added or removed by handlers; match ready entries
        // by id against the current list.
        let ready: Vec<(SourceId, RawFd, i16)> = ctx
            .sources
            .iter()
            .zip(&fds[1..])
            .filter(|(_, p)| p.revents() != 0)
            .map(|(s, p)| (s.id, s.fd, p.revents()))
            .collect();
        for (id, fd, revents) in ready {
            if !ctx.sources.iter().any(|s| s.id == id) {
                continue; // unwatched by an earlier callback in this round
            }
            if revents & poll::POLLNVAL != 0 {
                log::warn!(target: &ctx.endpoint.target, "watched fd {fd} was closed; no longer watching it");
                ctx.unwatch(id);
                continue;
            }
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                backend.on_ready(ctx, id, Ready(revents))
            }));
            ctx.endpoint.handled("on_ready", outcome);
            flush_after_handler(ctx);
        }
    }
}

fn poll_entry(source: &Source) -> poll::PollFd {
    // Only the number is stored (see `watch`), so the entry is built from it
    // directly; a stale number yields POLLNVAL, handled above.
    poll::PollFd::from_raw(source.fd, source.events)
}

fn dispatch<B: Backend>(
    backend: &mut B,
    handlers: &Handlers<B>,
    ctx: &mut BackendContext,
    msg: Message,
) {
    match handlers.map.get_key_value(msg.command()) {
        Some((command, handler)) => {
            let outcome = catch_unwind(AssertUnwindSafe(|| handler(backend, ctx, msg)));
            ctx.endpoint.handled(command, outcome);
        }
        None => ctx.endpoint.unclaimed(&msg),
    }
}

/// Puts what a handler sent on the wire before the next handler runs, so a
/// later handler that crashes the process (a segfault in a C library, an
/// abort) cannot take earlier results with it. If the frontend is not
/// reading, this waits for room, reading its messages meanwhile (so two
/// writers never deadlock). The wait ends when the frontend reads, stops
/// the process (its stop is bounded), or goes away (the write fails at
/// once, or the parent-death timer ends the process).
fn flush_after_handler(ctx: &mut BackendContext) {
    let endpoint = &mut ctx.endpoint;
    if endpoint.conn.has_pending_output() {
        match endpoint.conn.flush(None, None) {
            // A gone frontend is noticed at the top of the loop.
            Ok(()) => {}
            Err(e) if e.is_disconnected() => {}
            Err(e) => log::warn!(target: &endpoint.target, "flush after a handler failed: {e}"),
        }
    }
}
