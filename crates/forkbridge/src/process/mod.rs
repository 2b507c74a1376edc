//! [`MessageProcess`]: the frontend handle that forks a backend, sends to it,
//! receives from it and stops it.
//!
//! # Design
//!
//! One `AF_UNIX SOCK_STREAM` socketpair per process carries frames both ways.
//! Pipes, eventfds and futexes all cost the same cross-CPU wake-up per
//! message (the bench's raw baselines measure them), so the choice rests on
//! features: duplex, one fd per side, no `SIGPIPE`, fds passed with a
//! frame. The frontend's end is
//! buffered and never blocks the caller longer than asked. A receive waits
//! in the socket read itself, one syscall per message (a `poll` first would
//! be a second, and costs a tenth of a round trip); the read ends when the
//! backend dies, because its end of the socket closes, and the wait then
//! ends with [`ErrorKind::Disconnected`] carrying the exit status, after
//! every message the backend sent before dying has been delivered. If a
//! process the backend forked without forkbridge (raw `fork`, Python's
//! `multiprocessing`) still holds that end, the backend's pidfd, looked at
//! every 100 ms of a wait, ends it instead.
//!
//! Stopping is bounded: a stop request (a control frame queued behind the
//! commands already sent), then `SIGTERM`, then `SIGKILL`, each after its own
//! timeout, and the child is always reaped. Dropping the handle stops the
//! process the same way, so a forgotten `stop` never hangs the program or
//! leaves a zombie.
//!
//! # Fork and threads
//!
//! `start` refuses to fork when the process has more than one thread
//! ([`ErrorKind::ForkWithThreads`]): the child would inherit locks held by
//! threads that do not exist in it (malloc's, stdout's, a logger's, tokio's),
//! and the first use of one deadlocks. Start processes first, then threads
//! (`MainContext` will enforce that order), or opt in with
//! [`MessageProcessBuilder::allow_threads`] if you know no such lock can be
//! held — Python's `os.fork` only warns, glibc's `malloc` is fork-safe, but a
//! `Mutex` of your own or a runtime's is not. A threaded program starts its
//! workers with [`StartMethod::ForkServer`] or [`StartMethod::Spawn`]
//! instead, which fork nothing of it.

mod builder;
pub use builder::{ForkHooks, MessageProcessBuilder};
mod call;
pub(crate) use call::Incoming;
mod lifecycle;
mod recv;
pub(crate) mod registry;
pub mod relay;
use registry::Registered;
mod send;
pub(crate) mod start;
pub use start::{StartMethod, init, start_fork_server, stop_fork_server};
mod status;
pub use status::{ProcessState, Status};
mod watch;
use watch::{Fate, Watch};
#[cfg(feature = "tokio")]
pub(crate) mod tokio;

use std::collections::VecDeque;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::data::message::Message;
use crate::error::{Error, ErrorKind};
use crate::transport::conn::Conn;

/// How often a stop checks whether it was asked to hurry.
const STOP_SLICE: Duration = Duration::from_millis(100);
/// How long to wait for a SIGKILLed child to be reaped before giving up.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long to spin for an exiting child (end of stream seen) to become
/// reapable before sleeping on its pidfd.
const EXIT_SPIN: Duration = Duration::from_micros(200);
/// How long to wait for the exit status after end of stream.
pub(super) const SETTLE_WAIT: Duration = Duration::from_secs(1);
/// How long a receive blocks in the socket read before it looks at the
/// pidfd (see `recv.rs`).
const READ_SLICE: Duration = Duration::from_millis(100);

type Entry = Box<dyn FnOnce(OwnedFd, crate::backend::ChildInfo) -> i32 + Send>;

#[derive(Debug, Clone, Copy)]
struct Config {
    spin: Duration,
    ignore_sigint: bool,
    allow_threads: bool,
    stop_timeout: Duration,
    kill_timeout: Duration,
    keep_signal_handlers: bool,
    method: StartMethod,
    start_timeout: Duration,
}

enum State {
    Idle(Box<start::Pending>),
    Running {
        /// `None` for a backend on another host.
        pid: Option<libc::pid_t>,
        watch: Watch,
        /// Seen dead, not reaped yet.
        exited: bool,
    },
    Finished {
        pid: Option<libc::pid_t>,
        fate: Fate,
    },
    Empty,
}

/// A backend process and the frontend's handle to it (valkka-multiprocess's
/// `MessageProcess`).
///
/// ```
/// use forkbridge::{Backend, Handlers, Message, MessageProcess};
/// use std::time::Duration;
///
/// struct Worker;
/// impl Backend for Worker {
///     fn register(_: &mut Handlers<Self>) {}
/// }
///
/// let mut p = MessageProcess::new("worker", Worker)?;
/// p.start()?;
/// p.send(Message::new("ping").with("n", 1))?;
/// let pong = p.recv_timeout(Duration::from_secs(5))?;
/// assert_eq!(pong.command(), "pong");
/// let status = p.stop()?;
/// assert!(status.success());
/// # Ok::<(), forkbridge::Error>(())
/// ```
///
/// # Sending
///
/// [`send`](MessageProcess::send) writes the message to the socket before it
/// returns: it is on its way (the backend reads it when it next waits).
/// [`feed`](MessageProcess::feed) only appends it to a buffer, written by the
/// next `send` or [`flush`](MessageProcess::flush), before any receive or
/// stop, or when 64 KiB are buffered: a burst of `feed`s costs one syscall
/// per 64 KiB instead of one per message. Messages sent before `start` are
/// queued and delivered when the backend starts.
///
/// # Receiving
///
/// `recv`, [`try_recv`](MessageProcess::try_recv) and
/// [`recv_timeout`](MessageProcess::recv_timeout) return the backend's
/// messages in order. When the backend is gone, they first return every
/// message it sent, then [`ErrorKind::Disconnected`] with its exit status.
///
/// The handle implements [`AsFd`] for the receive side (valkka-multiprocess's
/// `getPipe()` / `getReadFd()`), so the program's own `poll`, mio or tokio
/// can wait on it. The fd is readable when bytes arrive or the backend ends;
/// messages may already be buffered in the handle, so after a wake-up call
/// `try_recv` until it returns [`ErrorKind::Empty`] before waiting again.
pub struct MessageProcess {
    name: String,
    target: String,
    config: Config,
    hooks: Option<Arc<dyn ForkHooks>>,
    conn: Conn<Registered>,
    state: State,
    /// Messages that arrived while a typed call waited for its reply.
    inbox: VecDeque<(Message, Vec<OwnedFd>)>,
    /// The id of the last typed call (ids start at 1; 0 means one-way).
    last_call: u64,
    /// A stop request was queued (it is queued once: the backend stops at
    /// the first).
    stop_requested: bool,
    /// The stream belongs to a [`relay::Relay`]: never read it here.
    relayed: bool,
    /// The group whose sets cross with the stream (see `relay`).
    events: Option<crate::shm::event_group::EventGroup>,
}

impl MessageProcess {
    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The logging target of the backend, `TypeName.name`.
    pub fn log_target(&self) -> &str {
        &self.target
    }

    /// How many messages this handle sent through the shared-memory lane
    /// ([`MessageProcessBuilder::large_messages`]) rather than the socket.
    pub fn large_messages_sent(&self) -> u64 {
        self.conn.lane_sent()
    }

    /// The backend's pid, once started; `None` for a backend on another
    /// host ([`MessageProcessBuilder::attach`]).
    pub fn pid(&self) -> Option<i32> {
        match self.state {
            State::Running { pid, .. } | State::Finished { pid, .. } => pid,
            _ => None,
        }
    }

    /// A pidfd of the backend while it runs: readable once it has exited
    /// (Python's `Process.sentinel`); `None` for a backend on another host.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        match &self.state {
            State::Running { watch, .. } => watch.pidfd(),
            _ => None,
        }
    }

    /// What polls readable once the backend's exit status can be read: its
    /// pidfd, for a served worker its status channel (the server reaps
    /// it, a little after the pidfd turns readable), for a backend
    /// elsewhere its fate channel.
    pub(crate) fn exit_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.state {
            State::Running { watch, .. } => Some(watch.exit_fd()),
            _ => None,
        }
    }

    /// Switches [frame reads](MessageProcessBuilder::read_frames) on or
    /// off from now on; for a caller that learns late whether the fd will
    /// be handed to a foreign `select`.
    pub(crate) fn read_frames(&mut self, yes: bool) {
        self.conn.set_frame_reads(yes);
    }

    /// Sends `sig` to the backend while it runs, through its pidfd (a
    /// backend reaped elsewhere, `SIGCHLD` ignored, is `ESRCH`, never a
    /// process that took its pid since) or, for one elsewhere, as a
    /// request to its transport. Not running: nothing is sent.
    pub(crate) fn signal(&self, sig: libc::c_int) -> std::io::Result<()> {
        match &self.state {
            State::Running { watch, .. } => watch.signal(sig),
            _ => Ok(()),
        }
    }

    pub(super) fn disconnected(&self) -> Error {
        let err = match &self.state {
            State::Finished {
                fate: Fate::Lost(reason),
                ..
            } => Error::host_lost(reason),
            State::Finished { fate, .. } => Error::disconnected(fate.status()),
            _ => Error::disconnected(None),
        };
        err.with_process(&self.name)
    }

    fn err(&self, kind: ErrorKind) -> Error {
        Error::new(kind).with_process(&self.name)
    }
}

impl AsFd for MessageProcess {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.conn.as_fd()
    }
}

impl std::os::fd::AsRawFd for MessageProcess {
    fn as_raw_fd(&self) -> RawFd {
        self.conn.as_fd().as_raw_fd()
    }
}

impl fmt::Debug for MessageProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Idle(_) => "idle",
            State::Running { .. } => "running",
            State::Finished { .. } => "finished",
            State::Empty => "empty",
        };
        f.debug_struct("MessageProcess")
            .field("name", &self.name)
            .field("pid", &self.pid())
            .field("state", &state)
            .finish()
    }
}

/// Stops a running backend within the configured bounds and reaps it.
impl Drop for MessageProcess {
    fn drop(&mut self) {
        if let State::Running { .. } = self.state {
            if let Err(e) = self.stop() {
                log::error!(target: &self.target, "stop on drop failed: {e}");
            }
        }
    }
}

/// `my_crate::module::Worker<T>` → `Worker`.
fn short_type_name<B>() -> &'static str {
    let full = std::any::type_name::<B>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}
