//! [`Intercom`]: the child's end of the intercom, for a backend that runs
//! its own loop.
//!
//! # Design
//!
//! A [`Backend`](crate::Backend) hands its loop to forkbridge: one `poll`,
//! a dispatch table, error reports. That is the right shape for Rust code,
//! but not for every backend. The Python binding's backends must keep the
//! valkka-multiprocess's overridable loop (`run()` calling `readPipes__()` calling
//! `select` on `back_pipe`), and a program embedding another event loop
//! (GStreamer's, Qt's) wants to wait on the intercom itself. For them
//! [`MessageProcessBuilder::build_fn`](crate::MessageProcessBuilder::build_fn)
//! runs a plain function in the child and gives it this handle: receive,
//! send, and an fd to wait on.
//!
//! The fork, the child's setup, the stop bound and every fault rule of the
//! frontend are the same as with a `Backend`. What the function gives up is
//! dispatch and error reports: it decides what a command means, and a stop
//! request reaches it as `Ok(None)` from a receive (valkka-multiprocess's `None` in the
//! pipe), not as the end of a loop.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::data::message::Message;
use crate::deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::fault::FaultKind;
use crate::protocol::wire::{Failure, Frame};
use crate::sys::{poll, socket};
use crate::transport::conn::{Conn, Filled};

/// The child's end of the intercom, given to a function backend (see
/// [`MessageProcessBuilder::build_fn`](crate::MessageProcessBuilder::build_fn)).
///
/// ```
/// use forkbridge::{Message, MessageProcess};
/// use std::time::Duration;
///
/// let mut p = MessageProcess::builder("echo").build_fn(|mut intercom| {
///     // `None` is the frontend's stop request.
///     while let Ok(Some(msg)) = intercom.recv() {
///         let reply = Message::new("echoed").with("of", msg.command());
///         if intercom.send(reply).is_err() {
///             return 1;
///         }
///     }
///     0
/// })?;
/// p.start()?;
/// p.send(Message::new("hello"))?;
/// let reply = p.recv_timeout(Duration::from_secs(5))?;
/// assert_eq!(reply.param::<String>("of")?, "hello");
/// assert!(p.stop()?.success());
/// # Ok::<(), forkbridge::Error>(())
/// ```
///
/// Receives come as `recv` / `try_recv` / `recv_timeout`, like the
/// frontend's; each returns `Ok(Some(message))`, `Ok(None)` for a stop
/// request, or an error: [`ErrorKind::Empty`], [`ErrorKind::Timeout`], or
/// [`ErrorKind::Disconnected`] once the frontend is gone. Fds that arrive
/// with a message are closed. Typed calls
/// ([`MessageProcess::call`](crate::MessageProcess::call)) are answered
/// with an `unknown_command` failure: they need a `Backend`'s table.
///
/// When waiting on [`as_fd`](AsFd::as_fd) with your own `poll`, call
/// `try_recv` until it returns `Empty` after each wake-up: several messages
/// may arrive in one read.
#[derive(Debug)]
pub struct Intercom {
    conn: Conn,
    name: String,
    /// How long a receive spins on the socket before it sleeps.
    spin: Duration,
}

/// The environment variable that names the intercom fd of a backend
/// program started with [`Intercom::exec`] (or by the Python package's
/// `ProgramProcess`).
pub const INTERCOM_FD_ENV: &str = "FORKBRIDGE_FD";

static ADOPTED: AtomicBool = AtomicBool::new(false);

impl Intercom {
    pub(crate) fn new(conn: Conn, name: String, spin: Duration) -> Intercom {
        Intercom { conn, name, spin }
    }

    /// The intercom of a backend *program*: a process that its frontend
    /// forked and then replaced with this program through `exec`, passing
    /// the socket as the fd named by [`INTERCOM_FD_ENV`]. This is how a
    /// backend in one language serves a frontend in another: the wire
    /// format is the same (a Python frontend's `ProgramProcess` starts Rust
    /// programs this way; [`exec`](Intercom::exec) starts any program).
    ///
    /// Only the first call in a process can succeed (the variable stays
    /// set; programs this one starts do not inherit the fd, which is
    /// close-on-exec again once adopted). Large messages travel
    /// through the socket: the shared-memory lane does not survive `exec`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the variable is missing, not a
    /// number, or not an open stream socket.
    ///
    /// The frame limit is the default, 64 MiB: the frontend's does not
    /// cross `exec`. A program whose frontend sends larger messages sets it
    /// with [`set_max_frame_size`](Intercom::set_max_frame_size).
    pub fn from_env() -> Result<Intercom> {
        let invalid = |why: String| Error::new(ErrorKind::InvalidArgument).with_source(why);
        let value = std::env::var(INTERCOM_FD_ENV).map_err(|_| {
            invalid(format!(
                "{INTERCOM_FD_ENV} is not set: not started as a backend"
            ))
        })?;
        let fd: std::os::fd::RawFd = value
            .trim()
            .parse()
            .map_err(|_| invalid(format!("{INTERCOM_FD_ENV}={value:?} is not an fd number")))?;
        // `adopt_inherited` needs the fd to be owned by nobody else: only
        // the first call in this process may take it.
        if ADOPTED.swap(true, Ordering::SeqCst) {
            return Err(invalid(format!(
                "the fd named by {INTERCOM_FD_ENV} was already adopted"
            )));
        }
        let fd = socket::adopt_inherited(fd, libc::SOCK_STREAM)
            .map_err(|e| invalid(format!("{INTERCOM_FD_ENV}={fd}: {e}")))?;
        let name = std::env::args().next().unwrap_or_default();
        Ok(Intercom::new(
            Conn::new(fd, crate::protocol::wire::DEFAULT_MAX_FRAME),
            name,
            Duration::ZERO,
        ))
    }

    /// Replaces this process with `command` (`execvp`), handing it this
    /// intercom: the program adopts it with [`Intercom::from_env`] (Rust)
    /// or `forkbridge.serve` (Python). Returns only if `exec` failed.
    ///
    /// Use it in a [`build_fn`](crate::MessageProcessBuilder::build_fn)
    /// backend, on a process built without
    /// [`large_messages`](crate::MessageProcessBuilder::large_messages)
    /// (a mapping does not survive `exec`).
    pub fn exec(self, command: &mut std::process::Command) -> Error {
        use std::os::unix::process::CommandExt;
        if let Err(e) = socket::set_inheritable(self.conn.as_fd()) {
            return Error::io(e);
        }
        let fd = self.conn.as_fd().as_raw_fd();
        let err = command.env(INTERCOM_FD_ENV, fd.to_string()).exec();
        Error::io(err)
    }

    /// Sets the largest frame this end accepts and sends, in bytes (at
    /// least 16), as
    /// [`MessageProcessBuilder::max_frame_size`](crate::MessageProcessBuilder::max_frame_size)
    /// does for both ends of a forked process. A forked backend starts
    /// with its builder's limit; a backend program adopted with
    /// [`from_env`](Intercom::from_env) starts with the default, 64 MiB,
    /// and sets the limit its frontend uses here. A larger incoming frame
    /// is skipped and reported by the receive that meets it
    /// ([`ErrorKind::FrameTooLarge`]; the next one decodes); a larger
    /// message fails to send with the same kind.
    pub fn set_max_frame_size(&mut self, bytes: usize) {
        self.conn.set_max_frame(bytes.max(16));
    }

    /// The process name given to the builder.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes `msg` to the frontend, waiting while the socket is full (and
    /// reading meanwhile, so two writers never deadlock).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`] if the frontend is gone;
    /// [`ErrorKind::FrameTooLarge`] if `msg` exceeds the frame limit.
    pub fn send(&mut self, msg: Message) -> Result<()> {
        self.conn.feed(&msg)?;
        self.conn.flush(None, None)
    }

    /// As [`send`](Intercom::send), giving up with [`ErrorKind::Timeout`]
    /// after `timeout` (the message then stays queued for the next send or
    /// flush).
    pub fn send_timeout(&mut self, msg: Message, timeout: Duration) -> Result<()> {
        self.conn.feed(&msg)?;
        self.conn.flush(deadline::after(timeout), None)
    }

    /// Queues `msg` without writing it; the next `send` or
    /// [`flush`](Intercom::flush) writes it (one syscall for a burst).
    pub fn feed(&mut self, msg: Message) -> Result<()> {
        self.conn.feed(&msg)
    }

    /// Writes every queued message, waiting while the socket is full.
    pub fn flush(&mut self) -> Result<()> {
        self.conn.flush(None, None)
    }

    /// As [`flush`](Intercom::flush), giving up after `timeout` with
    /// [`ErrorKind::Timeout`]; what was not written stays queued.
    pub(crate) fn flush_within(&mut self, timeout: Duration) -> Result<()> {
        self.conn.flush(deadline::after(timeout), None)
    }

    /// Bytes queued and not yet written.
    pub fn pending_output(&self) -> usize {
        self.conn.pending_output()
    }

    /// The next message, waiting as long as it takes.
    pub fn recv(&mut self) -> Result<Option<Message>> {
        self.recv_deadline(None)
    }

    /// The next message, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Message>> {
        self.recv_deadline(deadline::after(timeout))
    }

    /// A message if one is ready now, else [`ErrorKind::Empty`].
    pub fn try_recv(&mut self) -> Result<Option<Message>> {
        self.recv_deadline(Some(Instant::now()))
            .map_err(|e| match e.kind() {
                ErrorKind::Timeout => Error::new(ErrorKind::Empty),
                _ => e,
            })
    }

    /// Whether a whole message is already read and waiting here (then the
    /// fd may not look readable although `try_recv` has something).
    pub(crate) fn has_read_ahead(&self) -> bool {
        self.conn.has_complete_frame()
    }

    fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<Option<Message>> {
        if self.conn.has_pending_output() {
            // Replies queued by `feed` go out before we wait for more work.
            match self.conn.try_flush() {
                Err(e) if !e.is_disconnected() => return Err(e),
                _ => {}
            }
        }
        loop {
            if let Some(frame) = self.conn.next_frame() {
                match frame? {
                    Frame::Message(msg) => return Ok(Some(msg)),
                    Frame::MessageFds(msg, count) => {
                        drop(self.conn.take_fds(count)?);
                        return Ok(Some(msg));
                    }
                    Frame::Stop => return Ok(None),
                    Frame::Call { id, command, .. } => {
                        let failure = Failure::new(
                            FaultKind::UnknownCommand,
                            format!(
                                "typed call '{command}' to a function backend, which has no \
                                 handler table"
                            ),
                        );
                        self.conn.feed_reply(id, Err(&failure))?;
                        let _ = self.conn.try_flush();
                    }
                    Frame::Reply { .. } | Frame::Lane(_) => {}
                }
                continue;
            }
            if self.conn.is_eof() {
                return Err(Error::disconnected(None));
            }
            // A receive that may wait waits first, then reads: the next
            // command is rarely there yet, and a read would only return
            // `EAGAIN`. `try_recv` reads first.
            let now = deadline.is_some_and(|d| d <= Instant::now());
            if now {
                if let Filled::Read(0) = self.conn.fill()? {
                    return Err(Error::new(ErrorKind::Timeout));
                }
                continue;
            }
            // Spin at most until the deadline, as the frontend does.
            let spin = deadline.map_or(self.spin, |d| {
                self.spin.min(d.saturating_duration_since(Instant::now()))
            });
            if self.conn.spin_fill(spin)? {
                continue;
            }
            // The wait is the read itself (one syscall per message, not a
            // poll and a read); the last sub-millisecond of a deadline is
            // polled.
            let filled = match deadline {
                None => Some(self.conn.fill_wait()?),
                Some(d) => self.conn.fill_until(d)?,
            };
            if filled.is_none() {
                let mut fds = [poll::PollFd::new(self.conn.as_fd(), poll::POLLIN)];
                if poll::poll(&mut fds, deadline)? == 0 {
                    return Err(Error::new(ErrorKind::Timeout));
                }
                self.conn.fill()?;
            }
        }
    }
}

impl AsFd for Intercom {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.conn.as_fd()
    }
}

impl std::os::fd::AsRawFd for Intercom {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.conn.as_fd().as_raw_fd()
    }
}
