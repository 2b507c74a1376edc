//! The [`Backend`] trait, its [`BackendContext`], and the blocking event loop
//! that runs in the forked child.
//!
//! # Design
//!
//! The seed finds a handler by building the string `"c__" + command` and
//! looking it up on the object. Here the backend fills a [`Handlers`] table
//! once, in the child, before the loop starts: a `HashMap` from command name
//! to handler, so dispatch is one hash lookup and a typo is a missing entry
//! that the frontend hears about, not an attribute error that kills the
//! process (the seed's Q2).
//!
//! The loop waits in one `poll(2)` on the intercom and on every fd the
//! backend [watches](BackendContext::watch), with no timeout: an idle backend
//! uses no CPU and wakes only for work (the seed wakes every second, and
//! busy-polls with `listening=True`, Q9). Faults never leave the loop by
//! accident: a handler's error or panic, an unknown command or a malformed
//! frame is logged with the process name and reported to the frontend as an
//! `"error"` message, and the loop goes on.
//!
//! # Error messages
//!
//! A fault is reported to the frontend as a [`Message`] with command
//! `"error"` and these parameters (all strings):
//!
//! | parameter | meaning |
//! |---|---|
//! | `kind` | `"handler_error"`, `"panic"`, `"unknown_command"`, `"decode"` or `"pre_run"` |
//! | `command` | the command being handled (empty for `decode`) |
//! | `error` | the error's text or the panic message |
//! | `process` | the process name |

#[cfg(feature = "tokio")]
pub(crate) mod tokio;

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::data::message::{ERROR_COMMAND, Message};
use crate::error::Result;
use crate::protocol::call::decode_args;
use crate::protocol::wire::{Failure, Fingerprints, Frame};
use crate::sys::{fork, poll};
use crate::transport::conn::{Conn, FLUSH_THRESHOLD};

/// Any error a handler can return with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What handlers and hooks return.
pub type HandlerResult = std::result::Result<(), BoxError>;

type Handler<B> = Box<dyn Fn(&mut B, &mut BackendContext, Message) -> HandlerResult>;
type TypedHandler<B> =
    Box<dyn Fn(&mut B, &mut BackendContext, Fingerprints, &[u8]) -> Result<Vec<u8>, Failure>>;
type FixedHasher = BuildHasherDefault<DefaultHasher>;

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

    /// Runs in the child before the loop (the seed's `preRun__`): load heavy
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
    /// killed (the seed's `postRun__`; see
    /// [`MessageProcess::start`](crate::MessageProcess::start) for the
    /// 900 ms bound on an orphaned backend). Messages sent here reach the
    /// frontend before it sees the process end. A panic here is logged and
    /// ends the process with status 1, after what it sent is flushed.
    fn post_run(&mut self, ctx: &mut BackendContext) {
        let _ = ctx;
    }

    /// Called when a [watched](BackendContext::watch) fd is ready (the
    /// seed's overridden `readPipes__`). Errors and panics are reported like
    /// a handler's.
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

/// The dispatch table: command name → handler.
pub struct Handlers<B> {
    // A fixed-key hasher: command names come from the program itself, so
    // hash flooding is no concern, and random keys would cost a `getrandom`
    // and a copy-on-write page fault in every new child.
    map: HashMap<String, Handler<B>, FixedHasher>,
    typed: HashMap<String, TypedHandler<B>, FixedHasher>,
}

impl<B> Handlers<B> {
    fn new() -> Handlers<B> {
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
            let value = handler(backend, ctx, args).map_err(|e| Failure {
                kind: "handler_error".into(),
                message: e.to_string(),
            })?;
            postcard::to_stdvec(&value).map_err(|e| Failure {
                kind: "encode".into(),
                message: format!("the reply of '{name}' does not encode: {e}"),
            })
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

/// Identifies a [watched](BackendContext::watch) fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceId(u32);

/// Which readiness to wait for on a watched fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Readable (or hung up).
    Readable,
    /// Writable.
    Writable,
    /// Either.
    Both,
}

/// The readiness of a watched fd, as `poll(2)` reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready(i16);

impl Ready {
    /// Data can be read (or the peer hung up: a read returns 0).
    pub fn is_readable(self) -> bool {
        self.0 & (poll::POLLIN | poll::POLLHUP) != 0
    }
    /// Data can be written.
    pub fn is_writable(self) -> bool {
        self.0 & poll::POLLOUT != 0
    }
    /// The peer hung up.
    pub fn is_hangup(self) -> bool {
        self.0 & poll::POLLHUP != 0
    }
    /// An error condition is pending on the fd.
    pub fn is_error(self) -> bool {
        self.0 & poll::POLLERR != 0
    }
}

#[derive(Debug)]
struct Source {
    id: SourceId,
    fd: RawFd,
    events: i16,
}

/// The backend's view of its process: send to the frontend, name, logging
/// target, extra fds, stop.
#[derive(Debug)]
pub struct BackendContext {
    conn: Conn,
    name: String,
    target: String,
    stop: bool,
    sources: Vec<Source>,
    next_source: u32,
    fds: Vec<OwnedFd>,
}

impl BackendContext {
    /// The fds that came with the message being handled (sent with
    /// [`MessageProcess::send_with_fds`](crate::MessageProcess::send_with_fds)),
    /// in the order sent; what the handler does not take is closed when it
    /// returns.
    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.fds)
    }

    /// Sends a message to the frontend (the seed's `send_out__`).
    ///
    /// The message is buffered and written when the current handler returns
    /// (together with everything else the handler sent: one syscall per
    /// handler, not per message), when more than 64 KiB are buffered, or on
    /// [`flush`](BackendContext::flush). Call `flush` to deliver progress
    /// from a long-running handler. What a handler sent is on the wire before
    /// the next handler runs, so a later crash of the process does not lose
    /// it: when the frontend is not reading, the loop waits for room in the
    /// socket (reading the frontend's messages meanwhile, so neither side
    /// blocks the other) until the frontend reads, stops the process or goes
    /// away.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::FrameTooLarge`](crate::ErrorKind::FrameTooLarge) if the
    /// message exceeds the maximum frame size;
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) if the
    /// frontend is gone.
    pub fn send(&mut self, msg: Message) -> Result<()> {
        self.conn.feed(&msg)?;
        if self.conn.pending_output() > FLUSH_THRESHOLD {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends a message with fds attached (up to 16) to the frontend, which
    /// receives them with
    /// [`MessageProcess::recv_with_fds`](crate::MessageProcess::recv_with_fds):
    /// a [`SharedBuffer`](crate::SharedBuffer) the backend made, a socket it
    /// accepted. Written before returning, after everything sent before it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for
    /// no fds or more than 16; as [`send`](BackendContext::send) otherwise.
    pub fn send_with_fds(&mut self, msg: Message, fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.conn.send_with_fds(&msg, fds, None, None)
    }

    /// Writes every buffered message now, waiting while the frontend's
    /// socket buffer is full (and reading its messages meanwhile, so two
    /// writers never deadlock).
    pub fn flush(&mut self) -> Result<()> {
        self.conn.flush(None, None)
    }

    /// The process name given to the frontend's builder.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The logging target, `TypeName.name` as the seed's `self.logger`:
    /// `log::info!(target: ctx.log_target(), "...")`.
    pub fn log_target(&self) -> &str {
        &self.target
    }

    /// Ends the loop after the current handler; `post_run` runs next.
    pub fn request_stop(&mut self) {
        self.stop = true;
    }

    /// Adds `fd` to the loop's wait set; [`Backend::on_ready`] is called
    /// with the returned id when it is ready.
    ///
    /// Only the number is stored: keep the fd open until
    /// [`unwatch`](BackendContext::unwatch). A watched fd that gets closed is
    /// reported by the kernel as invalid; the loop then drops it and logs a
    /// warning (never undefined behaviour).
    pub fn watch(&mut self, fd: BorrowedFd<'_>, interest: Interest) -> SourceId {
        let id = SourceId(self.next_source);
        self.next_source += 1;
        let events = match interest {
            Interest::Readable => poll::POLLIN,
            Interest::Writable => poll::POLLOUT,
            Interest::Both => poll::POLLIN | poll::POLLOUT,
        };
        self.sources.push(Source {
            id,
            fd: fd.as_raw_fd(),
            events,
        });
        id
    }

    /// Removes a watched fd; returns whether it was watched.
    pub fn unwatch(&mut self, id: SourceId) -> bool {
        let before = self.sources.len();
        self.sources.retain(|s| s.id != id);
        before != self.sources.len()
    }

    /// Reports a fault to the frontend as an `"error"` message (see the
    /// module docs) and logs it.
    fn report(&mut self, kind: &str, command: &str, error: &str) {
        report(
            &mut self.conn,
            &self.name,
            &self.target,
            kind,
            command,
            error,
        );
    }

    /// Best-effort final flush: blocks while the frontend is alive and not
    /// reading (its `stop` bound ends that), returns at once if it is gone.
    fn flush_at_exit(&mut self) {
        match self.conn.flush(None, None) {
            Ok(()) => {}
            Err(e) if e.is_disconnected() => {}
            Err(e) => log::warn!(target: &self.target, "final flush failed: {e}"),
        }
    }
}

/// Logs a fault with the process's target and queues the `"error"` message
/// that tells the frontend (see the module docs). Shared by both loops.
pub(crate) fn report<F: AsFd>(
    conn: &mut Conn<F>,
    name: &str,
    target: &str,
    kind: &str,
    command: &str,
    error: &str,
) {
    let level = if kind == "unknown_command" {
        log::Level::Warn
    } else {
        log::Level::Error
    };
    match command {
        "" => log::log!(target: target, level, "{kind}: {error}"),
        _ => log::log!(target: target, level, "{kind} in command '{command}': {error}"),
    }
    let msg = Message::new(ERROR_COMMAND)
        .with("kind", kind)
        .with("command", command)
        .with("error", error)
        .with("process", name);
    if let Err(e) = conn.feed(&msg) {
        log::error!(target: target, "could not report the error: {e}");
    }
}

/// The failure of a call to a typed command nobody registered.
pub(crate) fn unknown_typed(command: &str) -> Failure {
    Failure {
        kind: "unknown_command".into(),
        message: format!("unknown typed command '{command}'"),
    }
}

/// Queues the answer to typed call `id`: the encoded return value, or the
/// failure (also logged). A one-way call (`id` 0) gets no reply; its
/// failure is reported as an `"error"` message like a dynamic handler's.
pub(crate) fn answer_call<F: AsFd>(
    conn: &mut Conn<F>,
    name: &str,
    target: &str,
    id: u64,
    command: &str,
    outcome: Result<Vec<u8>, Failure>,
) {
    let fed = match (id, &outcome) {
        (0, Ok(_)) => Ok(()),
        (0, Err(f)) => {
            report(conn, name, target, &f.kind, command, &f.message);
            Ok(())
        }
        (_, Ok(value)) => conn.feed_reply(id, Ok(value)),
        (_, Err(f)) => {
            log::error!(target: target, "{} in typed command '{command}': {}", f.kind, f.message);
            conn.feed_reply(id, Err(f))
        }
    };
    if let Err(e) = fed {
        // The reply itself is too large: tell the caller that instead.
        let failure = Failure {
            kind: "encode".into(),
            message: e.to_string(),
        };
        log::error!(target: target, "reply to '{command}' not sent: {e}");
        let _ = conn.feed_reply(id, Err(&failure));
    }
}

/// The reply to a `"ping"` no handler claimed: `"pong"` with the same
/// parameters.
pub(crate) fn pong(ping: &Message) -> Message {
    let mut pong = Message::new("pong");
    for (k, v) in ping.params() {
        pong.set(k, v.clone());
    }
    pong
}

/// What the child needs to know besides the backend value.
#[derive(Debug)]
pub(crate) struct ChildInfo {
    pub(crate) name: String,
    pub(crate) target: String,
    pub(crate) max_frame: usize,
    /// How long the loop spins on the socket before it sleeps.
    pub(crate) spin: std::time::Duration,
    /// The shared-memory lane for large messages, if asked for.
    pub(crate) lane: Option<crate::transport::lane::LaneRings>,
}

impl ChildInfo {
    /// The child's end of the intercom over `fd`, with its end of the
    /// large-message lane if the process has one.
    pub(crate) fn intercom<F: AsFd>(&self, fd: F) -> Conn<F> {
        let mut conn = Conn::new(fd, self.max_frame);
        if let Some(rings) = &self.lane {
            match rings.backend_end() {
                Ok(lane) => conn.set_lane(lane),
                Err(e) => log::warn!(target: &self.target, "large-message lane unavailable: {e}"),
            }
        }
        conn
    }
}

/// The child's whole life after setup: register, `pre_run`, loop,
/// `post_run`, final flush. Returns the exit code.
pub(crate) fn run<B: Backend>(mut backend: B, fd: OwnedFd, info: ChildInfo) -> i32 {
    let conn = info.intercom(fd);
    let spin = info.spin;
    let mut ctx = BackendContext {
        conn,
        name: info.name,
        target: info.target,
        stop: false,
        sources: Vec::new(),
        next_source: 0,
        fds: Vec::new(),
    };
    let mut handlers = Handlers::new();
    B::register(&mut handlers);
    log::debug!(target: &ctx.target, "started, pid {}", fork::getpid());

    match catch_unwind(AssertUnwindSafe(|| backend.pre_run(&mut ctx))) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            ctx.report("pre_run", "", &e.to_string());
            ctx.flush_at_exit();
            return 1;
        }
        Err(panic) => {
            ctx.report("pre_run", "", &panic_message(&*panic));
            ctx.flush_at_exit();
            return 1;
        }
    }

    let mut code = 0;
    if let Err(e) = event_loop(&mut backend, &handlers, &mut ctx, spin) {
        log::error!(target: &ctx.target, "event loop failed: {e}");
        code = 1;
    }
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| backend.post_run(&mut ctx))) {
        log::error!(target: &ctx.target, "post_run panicked: {}", panic_message(&*panic));
        code = 1;
    }
    ctx.flush_at_exit();
    log::debug!(target: &ctx.target, "bye");
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
        while let Some(frame) = ctx.conn.next_frame() {
            match frame {
                Ok(Frame::Message(msg)) => dispatch(backend, handlers, ctx, msg),
                Ok(Frame::MessageFds(msg, count)) => match ctx.conn.take_fds(count) {
                    Ok(fds) => {
                        ctx.fds = fds;
                        dispatch(backend, handlers, ctx, msg);
                        ctx.fds.clear(); // what the handler did not take is closed
                    }
                    Err(e) => ctx.report("decode", msg.command(), &e.to_string()),
                },
                Ok(Frame::Call {
                    id,
                    command,
                    types,
                    args,
                }) => {
                    let outcome = match handlers.typed.get(&command) {
                        Some(handler) => {
                            catch_unwind(AssertUnwindSafe(|| handler(backend, ctx, types, &args)))
                                .unwrap_or_else(|panic| {
                                    Err(Failure {
                                        kind: "panic".into(),
                                        message: panic_message(&*panic),
                                    })
                                })
                        }
                        None => Err(unknown_typed(&command)),
                    };
                    answer_call(&mut ctx.conn, &ctx.name, &ctx.target, id, &command, outcome);
                    flush_after_handler(ctx);
                }
                // The connection turns lane markers into messages.
                Ok(Frame::Lane(_)) => {}
                Ok(Frame::Reply { .. }) => {
                    log::debug!(target: &ctx.target, "ignoring a reply frame: backends make no calls");
                }
                Ok(Frame::Stop) => {
                    log::debug!(target: &ctx.target, "stop requested");
                    return Ok(());
                }
                Err(e) => ctx.report("decode", "", &e.to_string()),
            }
            if ctx.stop {
                return Ok(());
            }
        }
        if ctx.stop {
            return Ok(());
        }
        if ctx.conn.is_eof() {
            log::debug!(target: &ctx.target, "frontend closed the intercom");
            return Ok(());
        }
        match ctx.conn.try_flush() {
            Ok(_) => {}
            Err(e) if e.is_disconnected() => {
                log::debug!(target: &ctx.target, "frontend is gone");
                return Ok(());
            }
            Err(e) => return Err(e),
        }

        if ctx.sources.is_empty() && !ctx.conn.has_pending_output() {
            if !ctx.conn.spin_fill(spin)? {
                // Nothing else to wait for: block in `recv` itself.
                ctx.conn.fill_wait()?;
            }
            continue;
        }
        let mut events = poll::POLLIN;
        if ctx.conn.has_pending_output() {
            events |= poll::POLLOUT;
        }
        fds.clear();
        fds.push(poll::PollFd::new(ctx.conn.as_fd(), events));
        for source in &ctx.sources {
            fds.push(poll_entry(source));
        }
        poll::poll(&mut fds, None)?;

        if fds[0].revents() & !poll::POLLOUT != 0 {
            // At end of stream the frames that arrived before it are still
            // dispatched; the loop then ends at the top.
            ctx.conn.fill()?;
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
                log::warn!(target: &ctx.target, "watched fd {fd} was closed; no longer watching it");
                ctx.unwatch(id);
                continue;
            }
            let result = catch_unwind(AssertUnwindSafe(|| {
                backend.on_ready(ctx, id, Ready(revents))
            }));
            report_outcome(ctx, "on_ready", result);
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
            let result = catch_unwind(AssertUnwindSafe(|| handler(backend, ctx, msg)));
            report_outcome(ctx, command, result);
        }
        None if msg.command() == "ping" => {
            if let Err(e) = ctx.send(pong(&msg)) {
                log::warn!(target: &ctx.target, "could not answer ping: {e}");
            }
        }
        None => {
            let command = msg.command();
            let text = format!("unknown command '{command}'");
            ctx.report("unknown_command", command, &text);
        }
    }
    flush_after_handler(ctx);
}

/// Puts what a handler sent on the wire before the next handler runs, so a
/// later handler that crashes the process (a segfault in a C library, an
/// abort) cannot take earlier results with it. If the frontend is not
/// reading, this waits for room, reading its messages meanwhile (so two
/// writers never deadlock). The wait ends when the frontend reads, stops
/// the process (its stop is bounded), or goes away (the write fails at
/// once, or the parent-death timer ends the process).
fn flush_after_handler(ctx: &mut BackendContext) {
    if ctx.conn.has_pending_output() {
        match ctx.conn.flush(None, None) {
            // A gone frontend is noticed at the top of the loop.
            Ok(()) => {}
            Err(e) if e.is_disconnected() => {}
            Err(e) => log::warn!(target: &ctx.target, "flush after a handler failed: {e}"),
        }
    }
}

fn report_outcome(
    ctx: &mut BackendContext,
    command: &str,
    result: std::thread::Result<HandlerResult>,
) {
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => ctx.report("handler_error", command, &e.to_string()),
        Err(panic) => ctx.report("panic", command, &panic_message(&*panic)),
    }
}

pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
