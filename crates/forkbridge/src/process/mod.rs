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
//! buffered and never blocks the caller longer than asked; a pidfd for the child sits in the same `poll`
//! as the socket, so the death of the backend ends every wait at once with
//! [`ErrorKind::Disconnected`] carrying the exit status, after every message
//! the backend sent before dying has been delivered.
//!
//! Stopping is bounded: a stop request (a control frame queued behind the
//! commands already sent), then `SIGTERM`, then `SIGKILL`, each after its own
//! timeout, and the child is always reaped. Dropping the handle stops the
//! process the same way, so a forgotten `stop` never hangs the program (the
//! seed's Q6) or leaves a zombie.
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
//! `Mutex` of your own or a runtime's is not.

pub(crate) mod registry;
#[cfg(feature = "tokio")]
pub(crate) mod tokio;

use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{self, Backend, ChildInfo};
use crate::data::message::Message;
use crate::deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::wire::{DEFAULT_MAX_FRAME, Fingerprints, Frame};
use crate::sys::fork::{self, ChildSetup, Forked};
use crate::sys::pidfd::{self, Reap};
use crate::sys::{poll, signal, socket};
use crate::transport::conn::{Conn, FLUSH_THRESHOLD, Filled};
use crate::transport::intercom::Intercom;
use crate::transport::lane::LaneRings;

/// How often a stop checks whether it was asked to hurry.
const STOP_SLICE: Duration = Duration::from_millis(100);
/// How long to wait for a SIGKILLed child to be reaped before giving up.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long to spin for an exiting child (end of stream seen) to become
/// reapable before sleeping on its pidfd.
const EXIT_SPIN: Duration = Duration::from_micros(200);
/// How long to wait for the exit status after end of stream.
const SETTLE_WAIT: Duration = Duration::from_secs(1);

type Entry = Box<dyn FnOnce(OwnedFd) -> i32 + Send>;

/// Configures a [`MessageProcess`] before it is created.
///
/// ```
/// use std::time::Duration;
/// # use forkbridge::{Backend, Handlers, MessageProcess};
/// # struct Worker;
/// # impl Backend for Worker { fn register(_: &mut Handlers<Self>) {} }
///
/// let process = MessageProcess::builder("worker-1")
///     .ignore_sigint(true)
///     .stop_timeout(Duration::from_secs(2))
///     .build(Worker)?;
/// # Ok::<(), forkbridge::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MessageProcessBuilder {
    name: String,
    ignore_sigint: bool,
    allow_threads: bool,
    stop_timeout: Duration,
    kill_timeout: Duration,
    max_frame_size: usize,
    spin: Duration,
    large: Option<(usize, usize)>,
    hooks: Option<Arc<dyn ForkHooks>>,
    keep_signal_handlers: bool,
    frame_reads: bool,
    #[cfg(feature = "tokio")]
    async_config: crate::backend::tokio::AsyncConfig,
}

/// Code to run around the fork, for a runtime embedded in the program that
/// must prepare for it (the Python binding calls `PyOS_BeforeFork` and its
/// siblings here). Each method runs on the thread that calls
/// [`MessageProcess::start`].
///
/// `after_fork_child` runs in the child right after forkbridge's own setup
/// (parent-death signal, signals, fds) and before the backend; the fork's
/// rules apply to it (see [`MessageProcess`]).
pub trait ForkHooks: Send + Sync + fmt::Debug {
    /// In the parent, just before `fork(2)`.
    fn before_fork(&self) {}
    /// In the child, before the backend runs.
    fn after_fork_child(&self) {}
    /// In the parent, just after `fork(2)`, whether it succeeded or not.
    fn after_fork_parent(&self) {}
}

impl MessageProcessBuilder {
    /// Sends messages whose strings and byte strings hold at least
    /// `threshold` bytes through a shared-memory lane instead of the socket,
    /// transparently, both ways: the message is encoded straight into a
    /// shared slot, and only a small marker goes through the socket, in
    /// order — so a huge message neither costs a socket's worth of copies
    /// and wake-ups nor holds up small ones behind it in the socket. Each
    /// direction has two slots of `slot_size` bytes (address space only,
    /// until used). The sender writes the slot it wrote last again when the
    /// receiver is done with it (its cache lines are still warm: ~30%
    /// faster for 4 MiB here), waiting for it a fraction of a copy's time
    /// if the receiver is usually that quick, and the other slot when the
    /// receiver is still working on a frame, so the two overlap. When both
    /// are busy, or a message does not fit a slot, it takes the socket.
    /// Off by default: it maps 4 slots per process.
    ///
    /// The receiver does not copy large byte strings out of the slot: a
    /// received [`Value::Bytes`](crate::Value::Bytes) of 4 KiB or more is
    /// lent by the slot ([`Bytes::is_lent`](crate::Bytes::is_lent)), and
    /// the slot goes back to the sender when the last value lending from it
    /// is dropped. So the lane costs one copy in all, the sender's. A
    /// program that keeps such values keeps their slots: one kept value
    /// (the previous frame, to compare with) leaves the other slot to the
    /// lane; with both kept, the sender waits up to 20 ms for one, once,
    /// and sends through the socket until a slot is free again. An async
    /// end (an `AsyncBackend`, an `AsyncMessageProcess`) never waits for a
    /// slot, which would block its runtime's thread: with both busy, its
    /// message takes the socket at once. A value still held when its
    /// process forks is never given back (a copy of it may be read in the
    /// child), so a received message moved into a backend before `start`
    /// costs its lane a slot for good; `Bytes::into_vec` makes an owned
    /// copy.
    pub fn large_messages(mut self, threshold: usize, slot_size: usize) -> Self {
        self.large = Some((threshold.max(1), slot_size.max(4096)));
        self
    }

    /// Spin up to `spin` on the socket before sleeping, on both sides (the
    /// frontend's receives and the blocking backend's loop). A request and
    /// its reply then cost a few microseconds instead of two sleeps and
    /// wake-ups (~50 µs on these VMs), at the price of a busy CPU for up to
    /// `spin` whenever either side waits. Default: zero (never spin).
    pub fn spin_before_sleep(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// The backend ignores `SIGINT` (the seed's `ignoreSIGINT`), so a
    /// Ctrl-C in the terminal reaches only the parent, which then stops its
    /// processes in order. Default: `false` (Ctrl-C kills the backend too).
    pub fn ignore_sigint(mut self, yes: bool) -> Self {
        self.ignore_sigint = yes;
        self
    }

    /// Fork even if the process has other threads. See the module docs of
    /// [`MessageProcess`] for what can go wrong. Default: `false`.
    pub fn allow_threads(mut self, yes: bool) -> Self {
        self.allow_threads = yes;
        self
    }

    /// How long [`stop`](MessageProcess::stop) waits for the backend to
    /// finish after the stop request before sending `SIGTERM`. Default: 5 s.
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// How long `stop` waits after `SIGTERM` before `SIGKILL`. Default: 1 s.
    pub fn kill_timeout(mut self, timeout: Duration) -> Self {
        self.kill_timeout = timeout;
        self
    }

    /// The largest frame either side accepts, in bytes (checked on the
    /// header, before allocating). Larger messages fail to send with
    /// [`ErrorKind::FrameTooLarge`]; larger incoming frames are skipped and
    /// reported. The limit holds on every path, the
    /// [large-message lane](MessageProcessBuilder::large_messages)'s
    /// included. Default: 64 MiB.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes.max(16);
        self
    }

    /// Which tokio runtime an async backend builds in the child. Default:
    /// [`RuntimeFlavor::CurrentThread`](crate::RuntimeFlavor::CurrentThread).
    #[cfg(feature = "tokio")]
    pub fn runtime(mut self, flavor: crate::RuntimeFlavor) -> Self {
        self.async_config.flavor = flavor;
        self
    }

    /// How long an async backend's background tasks may run on after a stop
    /// request before they are cancelled. Default: 1 s. Keep it below
    /// [`stop_timeout`](MessageProcessBuilder::stop_timeout).
    #[cfg(feature = "tokio")]
    pub fn task_grace(mut self, grace: Duration) -> Self {
        self.async_config.grace = grace;
        self
    }

    /// Runs `hooks` around the fork (see [`ForkHooks`]).
    pub fn fork_hooks(mut self, hooks: Arc<dyn ForkHooks>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// The child keeps the parent's signal handlers instead of starting with
    /// the default dispositions (`SIGINT` is still ignored if asked). For an
    /// embedded interpreter whose handlers the backend relies on (Python's
    /// `KeyboardInterrupt`). Default: `false`.
    pub fn keep_signal_handlers(mut self, yes: bool) -> Self {
        self.keep_signal_handlers = yes;
        self
    }

    /// The frontend reads one frame per `recv(2)` pair (its length, then the
    /// rest) instead of everything the socket holds, so a message never
    /// waits in the handle while its fd looks idle: a program may `select`
    /// on the fd and read one message per wake-up, as Python's
    /// `multiprocessing` users do. Costs a second syscall per message on
    /// bursts. (While a send waits for room it still reads ahead, so that
    /// two writers never deadlock.) Default: `false`.
    pub fn frame_reads(mut self, yes: bool) -> Self {
        self.frame_reads = yes;
        self
    }

    /// Creates a process whose backend is the function `run`, called in the
    /// child with its end of the intercom; its return value is the exit
    /// status. For a backend that runs its own loop (see [`Intercom`]);
    /// everything else — fork, setup, stop bound, faults — is as with
    /// [`build`](MessageProcessBuilder::build).
    ///
    /// # Errors
    ///
    /// As [`build`](MessageProcessBuilder::build).
    pub fn build_fn<F>(self, run: F) -> Result<MessageProcess>
    where
        F: FnOnce(Intercom) -> i32 + Send + 'static,
    {
        let target = self.name.clone();
        self.build_with(target, move |fd, info| {
            let (name, spin) = (info.name.clone(), info.spin);
            run(Intercom::new(info.intercom(fd), name, spin))
        })
    }

    /// Creates the process (and its intercom) without starting it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the socketpair cannot be created (fd limit).
    pub fn build<B: Backend>(self, backend: B) -> Result<MessageProcess> {
        let target = format!("{}.{}", short_type_name::<B>(), self.name);
        self.build_with(target, move |fd, info| backend::run(backend, fd, info))
    }

    /// Creates a process whose backend is async, on a tokio runtime built in
    /// the child (see [`AsyncBackend`](crate::AsyncBackend)).
    ///
    /// # Errors
    ///
    /// As [`build`](MessageProcessBuilder::build).
    #[cfg(feature = "tokio")]
    pub fn build_async<B: crate::AsyncBackend>(self, backend: B) -> Result<MessageProcess> {
        let target = format!("{}.{}", short_type_name::<B>(), self.name);
        let config = self.async_config;
        self.build_with(target, move |fd, info| {
            crate::backend::tokio::run(backend, fd, info, config)
        })
    }

    fn build_with(
        self,
        target: String,
        run: impl FnOnce(OwnedFd, ChildInfo) -> i32 + Send + 'static,
    ) -> Result<MessageProcess> {
        let lane = match self.large {
            Some((threshold, slot_size)) => Some(LaneRings::new(threshold, slot_size)?),
            None => None,
        };
        let (front, back) = socket::socketpair()?;
        registry::add(front.as_raw_fd());
        registry::add(back.as_raw_fd());
        let mut conn = Conn::new(front, self.max_frame_size);
        conn.set_frame_reads(self.frame_reads);
        if let Some(rings) = &lane {
            match rings.frontend_end() {
                Ok(end) => conn.set_lane(end),
                Err(e) => {
                    registry::remove(front_raw(&conn));
                    registry::remove(back.as_raw_fd());
                    return Err(e);
                }
            }
        }
        let info = ChildInfo {
            name: self.name.clone(),
            target: target.clone(),
            max_frame: self.max_frame_size,
            spin: self.spin,
            lane,
        };
        let entry: Entry = Box::new(move |fd| run(fd, info));
        Ok(MessageProcess {
            name: self.name,
            target,
            config: Config {
                spin: self.spin,
                ignore_sigint: self.ignore_sigint,
                allow_threads: self.allow_threads,
                stop_timeout: self.stop_timeout,
                kill_timeout: self.kill_timeout,
                keep_signal_handlers: self.keep_signal_handlers,
            },
            hooks: self.hooks,
            conn,
            state: State::Idle {
                entry,
                backend_end: back,
            },
            inbox: VecDeque::new(),
            last_call: 0,
            wait_in_read: false,
            stop_requested: false,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Config {
    spin: Duration,
    ignore_sigint: bool,
    allow_threads: bool,
    stop_timeout: Duration,
    kill_timeout: Duration,
    keep_signal_handlers: bool,
}

enum State {
    Idle {
        entry: Entry,
        backend_end: OwnedFd,
    },
    Running {
        pid: libc::pid_t,
        pidfd: OwnedFd,
        exited: bool,
    },
    Finished {
        pid: libc::pid_t,
        status: Option<ExitStatus>,
    },
    Empty,
}

/// A backend process and the frontend's handle to it (the seed's
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
/// The handle implements [`AsFd`] for the receive side (the seed's
/// `getPipe()` / `getReadFd()`), so the program's own `poll`, mio or tokio
/// can wait on it. The fd is readable when bytes arrive or the backend ends;
/// messages may already be buffered in the handle, so after a wake-up call
/// `try_recv` until it returns [`ErrorKind::Empty`] before waiting again.
pub struct MessageProcess {
    name: String,
    target: String,
    config: Config,
    hooks: Option<Arc<dyn ForkHooks>>,
    conn: Conn,
    state: State,
    /// Messages that arrived while a typed call waited for its reply.
    inbox: VecDeque<(Message, Vec<OwnedFd>)>,
    /// The id of the last typed call (ids start at 1; 0 means one-way).
    last_call: u64,
    /// Timed waits block in the socket read (see `set_wait_in_read`).
    wait_in_read: bool,
    /// A stop request was queued (it is queued once: the backend stops at
    /// the first).
    stop_requested: bool,
}

impl MessageProcess {
    /// A builder with the default settings and this name.
    pub fn builder(name: impl Into<String>) -> MessageProcessBuilder {
        MessageProcessBuilder {
            name: name.into(),
            ignore_sigint: false,
            allow_threads: false,
            stop_timeout: Duration::from_secs(5),
            kill_timeout: Duration::from_secs(1),
            max_frame_size: DEFAULT_MAX_FRAME,
            spin: Duration::ZERO,
            large: None,
            hooks: None,
            keep_signal_handlers: false,
            frame_reads: false,
            #[cfg(feature = "tokio")]
            async_config: Default::default(),
        }
    }

    /// Creates a process with default settings; `start` forks it.
    ///
    /// # Errors
    ///
    /// As [`MessageProcessBuilder::build`].
    pub fn new<B: Backend>(name: impl Into<String>, backend: B) -> Result<MessageProcess> {
        MessageProcess::builder(name).build(backend)
    }

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

    /// The backend's pid, once started.
    pub fn pid(&self) -> Option<i32> {
        match self.state {
            State::Running { pid, .. } | State::Finished { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// A pidfd of the backend while it runs: readable once it has exited
    /// (Python's `Process.sentinel`).
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        match &self.state {
            State::Running { pidfd, .. } => Some(pidfd.as_fd()),
            _ => None,
        }
    }

    /// Forks the backend (the seed's `start`).
    ///
    /// In the child: the process's name (first 15 bytes, as `ps` and `top`
    /// show it), the parent-death signal (armed when the fork happens on
    /// the main thread: the kernel sends it when the forking *thread*
    /// exits), a check that the parent is still alive, signal
    /// dispositions and mask reset (`SIGINT` ignored if asked), the parent's
    /// other forkbridge fds closed; then `register`, `pre_run`, the loop,
    /// `post_run`, and `_exit` — the child never returns into the caller's
    /// frames. A panic in a handler is reported and the loop goes on; one
    /// in `pre_run` or `post_run` is reported and ends the process with
    /// status 1; one anywhere else (`register`, a function backend) ends it
    /// with status 101.
    ///
    /// When the frontend dies (even by `SIGKILL`), the backend ends in
    /// order: the handler it is in finishes, the loop sees the end of the
    /// stream, `post_run` runs, and it exits. The parent-death signal (the
    /// last real-time signal, `SIGRTMAX`, so that no handler of the
    /// program's own is taken over) arms a timer that kills it with
    /// `SIGKILL` if that takes more than 900 ms: a frontend's backends are
    /// gone within a second of its death, whatever they were doing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AlreadyStarted`]; [`ErrorKind::ForkWithThreads`] when
    /// the process has other threads and `allow_threads` is off;
    /// [`ErrorKind::Io`] if `fork` or `pidfd_open` fails.
    pub fn start(&mut self) -> Result<()> {
        if !matches!(self.state, State::Idle { .. }) {
            return Err(self.err(ErrorKind::AlreadyStarted));
        }
        if !self.config.allow_threads {
            let threads = fork::thread_count()?;
            if threads > 1 {
                return Err(self.err(ErrorKind::ForkWithThreads { threads }));
            }
        }
        let State::Idle { entry, backend_end } = std::mem::replace(&mut self.state, State::Empty)
        else {
            unreachable!("checked above");
        };
        // A buffer copied into the child would be written twice.
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        let close = registry::snapshot_without(backend_end.as_raw_fd());
        let setup = ChildSetup {
            parent: fork::getpid(),
            parent_death_signal: fork::is_main_thread().then(fork::parent_death_signal),
            ignore_sigint: self.config.ignore_sigint,
            keep_handlers: self.config.keep_signal_handlers,
            close: &close,
            comm: fork::comm(&self.name),
        };
        let hooks = self.hooks.clone();
        if let Some(hooks) = &hooks {
            hooks.before_fork();
        }
        let forked = fork::fork();
        if let (Some(hooks), Ok(Forked::Parent(_)) | Err(_)) = (&hooks, &forked) {
            hooks.after_fork_parent();
        }
        let pid = match forked {
            Ok(Forked::Child) => child_main(&setup, hooks.as_deref(), entry, backend_end),
            Ok(Forked::Parent(pid)) => pid,
            Err(e) => {
                self.state = State::Idle { entry, backend_end };
                return Err(Error::io(e).with_process(&self.name));
            }
        };
        registry::remove(backend_end.as_raw_fd());
        drop(backend_end);
        // The backend value's parent copy: the child owns the real one now.
        drop(entry);
        let pidfd = match pidfd::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = fork::kill(pid, libc::SIGKILL);
                let _ = wait_reap(pid, None, Some(Instant::now() + KILL_WAIT));
                self.state = State::Finished { pid, status: None };
                return Err(Error::io(e).with_process(&self.name));
            }
        };
        registry::add(pidfd.as_raw_fd());
        self.state = State::Running {
            pid,
            pidfd,
            exited: false,
        };
        log::debug!(target: &self.target, "started pid {pid}");
        if self.conn.has_pending_output() {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes the backend ignore `SIGINT` (or not), as
    /// [`MessageProcessBuilder::ignore_sigint`] does, on a handle that
    /// exists already: the seed's `ignoreSIGINT()`, called between
    /// construction and `start`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AlreadyStarted`]: the child's dispositions are set at
    /// the fork.
    pub fn set_ignore_sigint(&mut self, yes: bool) -> Result<()> {
        if !matches!(self.state, State::Idle { .. }) {
            return Err(self.err(ErrorKind::AlreadyStarted));
        }
        self.config.ignore_sigint = yes;
        Ok(())
    }

    /// Switches [frame reads](MessageProcessBuilder::frame_reads) on or
    /// off from now on; for a caller that learns late whether the fd will
    /// be handed to a foreign `select`.
    pub fn set_frame_reads(&mut self, yes: bool) {
        self.conn.set_frame_reads(yes);
    }

    /// Makes the receives that wait with a timeout (`recv_timeout`,
    /// `recv_with_fds`' timed forms, `call_timeout`) wait in the socket
    /// read itself rather than in `poll(2)` and then read: one syscall per
    /// message instead of two. The backend's pidfd is then looked at when
    /// the wait ends empty, so a backend that died while a process it
    /// forked keeps the socket open is seen at the end of the timeout
    /// rather than at once (a backend that dies closes the socket, which
    /// ends the read at once in every other case). For a caller that waits
    /// in short slices anyway, as the Python binding does between its
    /// signal checks. Waits without a timeout always poll.
    pub fn set_wait_in_read(&mut self, yes: bool) {
        self.wait_in_read = yes;
    }

    /// Alias of [`start`](MessageProcess::start) (the seed's `go`).
    pub fn go(&mut self) -> Result<()> {
        self.start()
    }

    /// Sends a message and writes it to the socket before returning (the
    /// seed's `sendMessageToBack`). Blocks while the socket buffer is full;
    /// the backend's own messages are read meanwhile and kept.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`] if the backend is gone: at once, and
    /// without queueing anything, once it is known to be (a receive
    /// reported it, or its exit was seen); even a process the backend
    /// forked that keeps the socket open cannot make a send block then;
    /// [`ErrorKind::FrameTooLarge`] if the message exceeds the frame limit.
    pub fn send(&mut self, msg: Message) -> Result<()> {
        self.refuse_if_gone()?;
        self.conn
            .feed(&msg)
            .map_err(|e| e.with_process(&self.name))?;
        self.flush()
    }

    /// Sends a message with fds attached (up to 16): a memfd
    /// ([`SharedBuffer`](crate::SharedBuffer)), a socket, a pipe — things
    /// made after the fork that the running backend should get. The backend's
    /// handler takes them with
    /// [`BackendContext::take_fds`](crate::BackendContext::take_fds); the
    /// kernel gives it its own copies (close-on-exec), ours stay open.
    /// Written before returning, after the messages queued before it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for no fds or more than 16; as
    /// [`send`](MessageProcess::send) otherwise.
    pub fn send_with_fds(&mut self, msg: Message, fds: &[BorrowedFd<'_>]) -> Result<()> {
        if let State::Idle { .. } = self.state {
            return Err(self.err(ErrorKind::NotStarted));
        }
        self.refuse_if_gone()?;
        let State::Running { pidfd, .. } = &self.state else {
            unreachable!("refused above");
        };
        let watch = Some(pidfd.as_fd());
        match self.conn.send_with_fds(&msg, fds, None, watch) {
            Ok(()) => Ok(()),
            Err(e) if e.is_disconnected() => {
                self.settle(Some(Instant::now() + SETTLE_WAIT));
                Err(self.disconnected())
            }
            Err(e) => Err(e.with_process(&self.name)),
        }
    }

    /// As [`send`](MessageProcess::send), giving up after `timeout` with
    /// [`ErrorKind::Timeout`]. A message that timed out before any of it was
    /// written is taken back (it is not sent later), so a sender that keeps
    /// timing out against a backend that stopped reading keeps its memory
    /// bounded; one that was partly written stays buffered and goes out with
    /// a later flush (the stream must stay whole).
    pub fn send_timeout(&mut self, msg: Message, timeout: Duration) -> Result<()> {
        self.refuse_if_gone()?;
        let mark = self.conn.feed_mark();
        self.conn
            .feed(&msg)
            .map_err(|e| e.with_process(&self.name))?;
        let result = self.flush_deadline(deadline::after(timeout));
        if result.as_ref().is_err_and(Error::is_timeout) {
            self.conn.unfeed(mark);
        }
        result
    }

    /// Appends a message to the send buffer without writing it (see
    /// "Sending" above); writes the buffer only once it holds 64 KiB.
    pub fn feed(&mut self, msg: Message) -> Result<()> {
        self.refuse_if_gone()?;
        self.conn
            .feed(&msg)
            .map_err(|e| e.with_process(&self.name))?;
        if self.conn.pending_output() > FLUSH_THRESHOLD {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends a message to the send buffer and writes nothing, however
    /// much is buffered (unlike [`feed`](MessageProcess::feed)); the next
    /// send, flush or receive writes it. With
    /// [`flush_timeout`](MessageProcess::flush_timeout) it makes a send
    /// that waits in slices, for a caller that must do something between
    /// them (an interpreter checking for Ctrl-C).
    pub fn queue(&mut self, msg: Message) -> Result<()> {
        self.refuse_if_gone()?;
        self.conn.feed(&msg).map_err(|e| e.with_process(&self.name))
    }

    /// As [`flush`](MessageProcess::flush), giving up after `timeout` with
    /// [`ErrorKind::Timeout`]; what was not written stays buffered.
    pub fn flush_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.flush_deadline(deadline::after(timeout))
    }

    /// Writes every buffered message, waiting while the socket is full.
    pub fn flush(&mut self) -> Result<()> {
        self.flush_deadline(None)
    }

    fn flush_deadline(&mut self, deadline: Option<Instant>) -> Result<()> {
        if let State::Idle { .. } = self.state {
            return Ok(()); // delivered by `start`
        }
        self.refuse_if_gone()?;
        let State::Running { pidfd, .. } = &self.state else {
            unreachable!("refused above");
        };
        let watch = Some(pidfd.as_fd());
        match self.conn.flush(deadline, watch) {
            Ok(()) => Ok(()),
            Err(e) if e.is_disconnected() => {
                self.settle(Some(Instant::now() + SETTLE_WAIT));
                Err(self.disconnected())
            }
            Err(e) => Err(e.with_process(&self.name)),
        }
    }

    /// Asks the backend to stop after the messages already sent (the seed's
    /// `requestStop`); does not wait for it to stop. The request is written
    /// like [`send`](MessageProcess::send) writes a message: it blocks while
    /// the socket is full. `Ok` also if the backend is already gone.
    pub fn request_stop(&mut self) -> Result<()> {
        self.request_stop_deadline(None)
    }

    /// As [`request_stop`](MessageProcess::request_stop), giving up after
    /// `timeout` with [`ErrorKind::Timeout`] while the socket is full; the
    /// request stays queued, and a later call or flush goes on writing it
    /// (one request however many calls). For a caller that must do
    /// something between slices of the wait (an interpreter checking for
    /// Ctrl-C).
    pub fn request_stop_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.request_stop_deadline(deadline::after(timeout))
    }

    fn request_stop_deadline(&mut self, deadline: Option<Instant>) -> Result<()> {
        match self.state {
            State::Running { .. } => {}
            State::Idle { .. } => return Err(self.err(ErrorKind::NotStarted)),
            _ => return Ok(()),
        }
        if !std::mem::replace(&mut self.stop_requested, true) {
            self.conn.feed_stop();
        }
        match self.flush_deadline(deadline) {
            Err(e) if e.is_disconnected() => Ok(()),
            other => other,
        }
    }

    /// Waits for the next message from the backend.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`] once the backend is gone and its messages
    /// are consumed; [`ErrorKind::Decode`] / [`ErrorKind::FrameTooLarge`]
    /// for a bad frame (skipped: the next call goes on);
    /// [`ErrorKind::NotStarted`].
    pub fn recv(&mut self) -> Result<Message> {
        self.recv_deadline(None)
    }

    /// As [`recv`](MessageProcess::recv), giving up after `timeout` with
    /// [`ErrorKind::Timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message> {
        self.recv_deadline(deadline::after(timeout))
    }

    /// A message if one is ready now, else [`ErrorKind::Empty`].
    pub fn try_recv(&mut self) -> Result<Message> {
        self.recv_deadline(Some(Instant::now()))
            .map_err(|e| match e.kind() {
                ErrorKind::Timeout => self.err(ErrorKind::Empty),
                _ => e,
            })
    }

    fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<Message> {
        // Fds that came with the message are closed: `recv_with_fds` keeps them.
        self.recv_fds_deadline(deadline).map(|(msg, _)| msg)
    }

    fn recv_fds_deadline(&mut self, deadline: Option<Instant>) -> Result<(Message, Vec<OwnedFd>)> {
        if let Some(entry) = self.inbox.pop_front() {
            return Ok(entry);
        }
        loop {
            match self.next_frame_deadline(deadline)? {
                Frame::Message(msg) => return Ok((msg, Vec::new())),
                Frame::MessageFds(msg, count) => {
                    let fds = self
                        .conn
                        .take_fds(count)
                        .map_err(|e| e.with_process(&self.name))?;
                    return Ok((msg, fds));
                }
                Frame::Reply { id, .. } => {
                    log::debug!(target: &self.target, "dropping the late reply to call {id}");
                }
                Frame::Stop | Frame::Call { .. } | Frame::Lane(_) => {} // backends send neither
            }
        }
    }

    /// As [`recv_timeout`](MessageProcess::recv_timeout), also returning
    /// the fds the backend sent with the message
    /// ([`BackendContext::send_with_fds`](crate::BackendContext::send_with_fds));
    /// empty for a message sent without. `recv` and its siblings close such
    /// fds.
    pub fn recv_with_fds(&mut self, timeout: Duration) -> Result<(Message, Vec<OwnedFd>)> {
        self.recv_fds_deadline(deadline::after(timeout))
    }

    /// The next frame from the backend, waiting until `deadline`; writes
    /// pending output first. The one place that turns end of stream and the
    /// pidfd into [`ErrorKind::Disconnected`].
    fn next_frame_deadline(&mut self, deadline: Option<Instant>) -> Result<Frame> {
        if let State::Idle { .. } = self.state {
            return Err(self.err(ErrorKind::NotStarted));
        }
        if self.conn.has_pending_output() {
            match self.flush_deadline(deadline) {
                // A dead backend's messages are still delivered below.
                Err(e) if !e.is_disconnected() => return Err(e),
                _ => {}
            }
        }
        loop {
            if let Some(frame) = self.conn.next_frame() {
                return frame.map_err(|e| e.with_process(&self.name));
            }
            if self.conn.is_eof() {
                self.settle(Some(Instant::now() + SETTLE_WAIT));
                return Err(self.disconnected());
            }
            let exited = match &self.state {
                State::Running { exited, .. } => *exited,
                _ => true,
            };
            if exited {
                // Drain what the backend sent before it died; once nothing is
                // left it is gone (a process it forked may still hold the
                // intercom open, so end of stream may never come).
                if self.fill()? == Filled::Read(0) {
                    self.settle(Some(Instant::now() + SETTLE_WAIT));
                    return Err(self.disconnected());
                }
                continue;
            }
            // Spin at most until the deadline: `try_recv` never spins.
            let spin = deadline.map_or(self.config.spin, |d| {
                self.config
                    .spin
                    .min(d.saturating_duration_since(Instant::now()))
            });
            if self
                .conn
                .spin_fill(spin)
                .map_err(|e| e.with_process(&self.name))?
            {
                continue;
            }
            // A try (deadline already reached) reads first: it usually runs
            // after the fd was seen readable. A wait waits first, then
            // reads: in a request/reply exchange the reply is rarely there
            // yet, and a read would only return `EAGAIN`.
            if deadline.is_some_and(|d| d <= Instant::now()) && self.fill()? != Filled::Read(0) {
                continue;
            }
            if let (true, Some(d)) = (self.wait_in_read, deadline) {
                let filled = self
                    .conn
                    .fill_until(d)
                    .map_err(|e| e.with_process(&self.name))?;
                // Empty: the timeout ran out (or a signal came); the poll
                // below then looks at the pidfd for what time is left.
                if !matches!(filled, None | Some(Filled::Read(0))) {
                    continue;
                }
            }
            self.wait_readable(deadline)?;
            self.fill()?;
        }
    }

    /// Calls the typed command `command` with `args` and waits up to
    /// `timeout` for its return value (request/reply). Messages that arrive
    /// meanwhile are kept for [`recv`](MessageProcess::recv); replies are
    /// matched by a correlation id, so a late reply to an earlier call that
    /// timed out is never taken for this one's.
    ///
    /// Usually called through the methods `#[forkbridge::handlers]`
    /// generates (feature `macros`); by hand, `args` is a tuple of the
    /// handler's arguments.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] (the reply, if it comes later, is dropped);
    /// [`ErrorKind::NotStarted`] before `start`, without queueing the call
    /// (a failed call has no effect, later either);
    /// [`ErrorKind::Disconnected`] if the backend died;
    /// [`ErrorKind::Remote`] if the handler failed, panicked or does not
    /// exist, or if its argument or reply types are not `A` and `R` (the
    /// call carries fingerprints of both, checked by the backend: kind
    /// `"decode"`); [`ErrorKind::Decode`] if the reply's bytes do not
    /// decode as an `R` (a backend that sent no fingerprints).
    pub fn call<A, R>(&mut self, command: &str, args: &A, timeout: Duration) -> Result<R>
    where
        A: serde::Serialize + ?Sized,
        R: serde::de::DeserializeOwned,
    {
        let deadline = deadline::after(timeout);
        let id = self.feed_call(command, Fingerprints::of::<A, R>(), args)?;
        let value = self.reply_deadline(id, deadline)?;
        decode_reply(&value, command).map_err(|e| e.with_process(&self.name))
    }

    /// Sends the typed command `command` one way (no reply; a failure is
    /// reported by the backend as an `"error"` message). Written at once,
    /// like [`send`](MessageProcess::send).
    pub fn cast<A: serde::Serialize + ?Sized>(&mut self, command: &str, args: &A) -> Result<()> {
        self.feed_cast(command, args)?;
        self.flush()
    }

    /// As [`cast`](MessageProcess::cast), buffered like
    /// [`feed`](MessageProcess::feed).
    pub fn feed_cast<A: serde::Serialize + ?Sized>(
        &mut self,
        command: &str,
        args: &A,
    ) -> Result<()> {
        self.refuse_if_gone()?;
        self.conn
            .feed_call(0, command, Fingerprints::of::<A, ()>(), args)
            .map_err(|e| e.with_process(&self.name))?;
        if self.conn.pending_output() > FLUSH_THRESHOLD {
            self.flush()?;
        }
        Ok(())
    }

    /// Queues a typed call and returns its id.
    pub(crate) fn feed_call<A: serde::Serialize + ?Sized>(
        &mut self,
        command: &str,
        types: Fingerprints,
        args: &A,
    ) -> Result<u64> {
        // A call that fails must have no effect: before `start` it is not
        // queued (a message is; a call's reply could never be waited for).
        if let State::Idle { .. } = self.state {
            return Err(self.err(ErrorKind::NotStarted));
        }
        self.refuse_if_gone()?;
        self.last_call += 1;
        let id = self.last_call;
        self.conn
            .feed_call(id, command, types, args)
            .map_err(|e| e.with_process(&self.name))?;
        Ok(id)
    }

    /// Waits until `deadline` for the reply to call `id` and returns the
    /// encoded value; keeps messages for `recv`, drops other replies.
    pub(crate) fn reply_deadline(&mut self, id: u64, deadline: Option<Instant>) -> Result<Vec<u8>> {
        loop {
            match self.next_frame_deadline(deadline)? {
                Frame::Message(msg) => self.inbox.push_back((msg, Vec::new())),
                Frame::MessageFds(msg, count) => {
                    let fds = self
                        .conn
                        .take_fds(count)
                        .map_err(|e| e.with_process(&self.name))?;
                    self.inbox.push_back((msg, fds));
                }
                Frame::Reply { id: got, result } if got == id => {
                    return result.map_err(|f| {
                        Error::new(ErrorKind::Remote {
                            kind: f.kind,
                            message: f.message,
                        })
                        .with_process(&self.name)
                    });
                }
                Frame::Reply { id: other, .. } => {
                    log::debug!(target: &self.target, "dropping the late reply to call {other}");
                }
                Frame::Stop | Frame::Call { .. } | Frame::Lane(_) => {}
            }
        }
    }

    fn fill(&mut self) -> Result<Filled> {
        self.conn.fill().map_err(|e| e.with_process(&self.name))
    }

    /// Waits until the socket or the pidfd is readable.
    fn wait_readable(&mut self, deadline: Option<Instant>) -> Result<()> {
        let State::Running { pidfd, exited, .. } = &mut self.state else {
            return Ok(());
        };
        let mut fds = [
            poll::PollFd::new(self.conn.as_fd(), poll::POLLIN),
            poll::PollFd::new(pidfd.as_fd(), poll::POLLIN),
        ];
        if poll::poll(&mut fds, deadline)? == 0 {
            return Err(Error::new(ErrorKind::Timeout).with_process(&self.name));
        }
        if fds[1].revents() != 0 {
            *exited = true;
        }
        Ok(())
    }

    /// Whether a message is already read and waiting in this handle (then
    /// the fd may not look readable although `try_recv` has something).
    pub fn has_buffered(&self) -> bool {
        !self.inbox.is_empty() || self.conn.has_complete_frame()
    }

    /// Whether the backend is still running (reaps it if it has exited).
    pub fn is_alive(&mut self) -> bool {
        if let State::Running { .. } = self.state {
            let _ = self.join_deadline(Some(Instant::now()));
        }
        matches!(self.state, State::Running { .. })
    }

    /// Waits for the backend to exit and reaps it (the seed's `waitStop`);
    /// does not ask it to stop. Messages it sends meanwhile are read and
    /// kept for `recv`, so a backend blocked on a full socket can finish.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotStarted`]; [`ErrorKind::Disconnected`] without a
    /// status if something else in the program reaped the child.
    pub fn join(&mut self) -> Result<ExitStatus> {
        self.join_deadline(None)
    }

    /// As [`join`](MessageProcess::join), giving up after `timeout` with
    /// [`ErrorKind::Timeout`] (the process keeps running).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.join_deadline(deadline::after(timeout))
    }

    fn join_deadline(&mut self, deadline: Option<Instant>) -> Result<ExitStatus> {
        match &self.state {
            State::Idle { .. } | State::Empty => return Err(self.err(ErrorKind::NotStarted)),
            State::Finished { status, .. } => {
                return status.ok_or_else(|| self.disconnected());
            }
            State::Running { .. } => {}
        }
        let State::Running { pid, pidfd, .. } = &self.state else {
            unreachable!("checked above");
        };
        let pid = *pid;
        match wait_reap(pid, Some((pidfd.as_fd(), &mut self.conn)), deadline) {
            Ok(status) => {
                self.finish(pid, status);
                status.ok_or_else(|| self.disconnected())
            }
            Err(e) => Err(e.with_process(&self.name)),
        }
    }

    /// Stops the backend within a bound and reaps it (the seed's `stop`):
    /// stop request → wait `stop_timeout` → `SIGTERM` → wait `kill_timeout`
    /// → `SIGKILL` → reap. Returns how it ended; a second call returns the
    /// same status at once.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotStarted`]; [`ErrorKind::Disconnected`] without a
    /// status if something else reaped the child; [`ErrorKind::Timeout`]
    /// only if even `SIGKILL` did not end it within 5 s (a process stuck in
    /// the kernel).
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let State::Finished { status, .. } = self.state {
            return status.ok_or_else(|| self.disconnected());
        }
        let stop_timeout = self.config.stop_timeout;
        let kill_timeout = self.config.kill_timeout;
        // The request and the wait share one bound: a backend stuck in a
        // handler with the socket full must not hold `stop` at the write.
        let deadline = deadline::after(stop_timeout);
        match self.request_stop_deadline(deadline::min_after(deadline, STOP_SLICE)) {
            Ok(()) => {}
            Err(e) if e.kind() == &ErrorKind::NotStarted => return Err(e),
            Err(e) => log::debug!(target: &self.target, "stop request not delivered: {e}"),
        }
        match self.join_unless_forced(deadline) {
            Err(e) if e.is_timeout() => {}
            other => return other,
        }
        if !signal::force_stop() {
            log::warn!(target: &self.target, "did not stop within {stop_timeout:?}: sending SIGTERM");
            self.signal(libc::SIGTERM);
            match self.join_unless_forced(deadline::after(kill_timeout)) {
                Err(e) if e.is_timeout() => {}
                other => return other,
            }
        }
        log::warn!(target: &self.target, "survived SIGTERM for {kill_timeout:?}: sending SIGKILL");
        self.signal(libc::SIGKILL);
        self.join_timeout(KILL_WAIT)
    }

    /// The intercom, for the async frontend.
    #[cfg(feature = "tokio")]
    pub(crate) fn conn_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// `stop_timeout` and `kill_timeout`, for the async frontend.
    #[cfg(feature = "tokio")]
    pub(crate) fn stop_timeouts(&self) -> (Duration, Duration) {
        (self.config.stop_timeout, self.config.kill_timeout)
    }

    /// Queues a stop request without writing it (once per process).
    #[cfg(feature = "tokio")]
    pub(crate) fn queue_stop(&mut self) -> Result<()> {
        match self.state {
            State::Running { .. } => {
                if !std::mem::replace(&mut self.stop_requested, true) {
                    self.conn.feed_stop();
                }
                Ok(())
            }
            State::Idle { .. } => Err(self.err(ErrorKind::NotStarted)),
            _ => Ok(()),
        }
    }

    /// The error a write to a gone backend returns, after collecting its
    /// exit status (bounded).
    #[cfg(feature = "tokio")]
    pub(crate) fn disconnected_error(&mut self) -> Error {
        self.settle(Some(Instant::now() + SETTLE_WAIT));
        self.disconnected()
    }

    /// Waits for the exit until `deadline`, in slices, giving up early (as
    /// a timeout) when a second Ctrl-C asks every stop to hurry (see
    /// [`MainContext`](crate::MainContext)).
    fn join_unless_forced(&mut self, deadline: Option<Instant>) -> Result<ExitStatus> {
        loop {
            match self.join_deadline(deadline::min_after(deadline, STOP_SLICE)) {
                Err(e) if e.is_timeout() => {
                    if signal::force_stop() || deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    /// Whether a message can be received without waiting: one is already
    /// decoded, or a complete frame is buffered.
    pub(crate) fn has_buffered_message(&self) -> bool {
        !self.inbox.is_empty() || self.conn.has_complete_frame()
    }

    /// Sends a signal to the running backend; does nothing once it has been
    /// reaped (its pid may belong to another process by then).
    pub(crate) fn signal(&self, sig: libc::c_int) {
        if let State::Running { pid, .. } = self.state {
            let _ = fork::kill(pid, sig);
        }
    }

    /// Waits until the child is reaped (bounded) to learn its status.
    /// [`ErrorKind::Disconnected`] once the backend is known to be gone
    /// (reaped, or its pidfd seen readable), dropping what waits to be
    /// written: nobody will read it, and a socket that a process the
    /// backend forked keeps open would take bytes until full, then block.
    fn refuse_if_gone(&mut self) -> Result<()> {
        let gone = match self.state {
            State::Idle { .. } => false,
            State::Running { exited, .. } => exited,
            State::Finished { .. } | State::Empty => true,
        };
        if !gone {
            return Ok(());
        }
        self.conn.discard_output();
        self.settle(Some(Instant::now() + SETTLE_WAIT));
        Err(self.disconnected())
    }

    fn settle(&mut self, deadline: Option<Instant>) {
        if let State::Running { .. } = self.state {
            let _ = self.join_deadline(deadline);
        }
    }

    fn finish(&mut self, pid: libc::pid_t, status: Option<ExitStatus>) {
        if let State::Running { pidfd, .. } = &self.state {
            registry::remove(pidfd.as_raw_fd());
        }
        self.state = State::Finished { pid, status };
        match status {
            Some(s) => log::debug!(target: &self.target, "exited: {s}"),
            None => log::debug!(target: &self.target, "exited; reaped elsewhere"),
        }
    }

    fn disconnected(&self) -> Error {
        let status = match self.state {
            State::Finished { status, .. } => status,
            _ => None,
        };
        Error::disconnected(status).with_process(&self.name)
    }

    fn err(&self, kind: ErrorKind) -> Error {
        Error::new(kind).with_process(&self.name)
    }
}

/// Waits for `pid` to exit and reaps it. While waiting, reads the intercom
/// (if given) so a backend blocked on a full socket can finish.
fn wait_reap(
    pid: libc::pid_t,
    mut watch: Option<(BorrowedFd<'_>, &mut Conn)>,
    deadline: Option<Instant>,
) -> Result<Option<ExitStatus>> {
    loop {
        match pidfd::try_reap(pid)? {
            Reap::Exited(status) => return Ok(Some(status)),
            Reap::Gone => return Ok(None),
            Reap::Running => {}
        }
        // A fixed array, not a Vec: no allocation while a child shares our
        // pages copy-on-write.
        let mut fds = [poll::PollFd::from_raw(-1, 0); 2];
        let mut n = 0;
        if let Some((pidfd, conn)) = &watch {
            fds[0] = poll::PollFd::new(*pidfd, poll::POLLIN);
            n = 1;
            if !conn.is_eof() {
                fds[1] = poll::PollFd::new(conn.as_fd(), poll::POLLIN);
                n = 2;
            }
        }
        let fds = &mut fds[..n];
        if fds.is_empty() {
            // No pidfd (it could not be opened): poll the status.
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(ErrorKind::Timeout));
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        if poll::poll(fds, deadline)? == 0 {
            return Err(Error::new(ErrorKind::Timeout));
        }
        if fds.len() == 2 && fds[1].revents() != 0 {
            if let Some((_, conn)) = &mut watch {
                if conn.fill()? == Filled::Eof {
                    // The child closed its end: it is exiting, and becomes
                    // reapable within microseconds. Yielding for that beats a
                    // second sleep in `poll` (a cross-CPU wake-up costs tens
                    // of microseconds on a VM).
                    if let Some(status) = reap_soon(pid)? {
                        return Ok(status);
                    }
                }
            }
        }
    }
}

/// Tries to reap `pid` for a short while, yielding the CPU in between;
/// `None` if it is still running after that.
fn reap_soon(pid: libc::pid_t) -> Result<Option<Option<ExitStatus>>> {
    let until = Instant::now() + EXIT_SPIN;
    while Instant::now() < until {
        match pidfd::try_reap(pid)? {
            Reap::Exited(status) => return Ok(Some(Some(status))),
            Reap::Gone => return Ok(Some(None)),
            Reap::Running => std::thread::yield_now(),
        }
    }
    Ok(None)
}

/// The child's side of `start`. Never returns.
fn child_main(
    setup: &ChildSetup<'_>,
    hooks: Option<&dyn ForkHooks>,
    entry: Entry,
    backend_end: OwnedFd,
) -> ! {
    if !fork::child_setup(setup) {
        fork::exit_now(1);
    }
    if let Some(hooks) = hooks {
        hooks.after_fork_child();
    }
    // From here on this process is a parent too: the processes its backend
    // starts must close this intercom end (and nothing the list held in the
    // parent, whose numbers are free here).
    registry::reset_in_child(backend_end.as_raw_fd());
    let code = catch_unwind(AssertUnwindSafe(|| entry(backend_end))).unwrap_or(101);
    let _ = catch_unwind(|| std::io::stdout().flush());
    fork::exit_now(code)
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
            State::Idle { .. } => "idle",
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
        match std::mem::replace(&mut self.state, State::Empty) {
            State::Idle { backend_end, .. } => registry::remove(backend_end.as_raw_fd()),
            State::Running { pidfd, .. } => registry::remove(pidfd.as_raw_fd()),
            _ => {}
        }
        registry::remove(self.conn.as_fd().as_raw_fd());
    }
}

/// `my_crate::module::Worker<T>` → `Worker`.
fn short_type_name<B>() -> &'static str {
    let full = std::any::type_name::<B>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// Decodes a typed call's return value.
pub(crate) fn decode_reply<R: serde::de::DeserializeOwned>(
    value: &[u8],
    command: &str,
) -> Result<R> {
    postcard::from_bytes(value).map_err(|e| {
        Error::new(ErrorKind::Decode).with_source(format!(
            "the reply of '{command}' is not the expected type: {e}"
        ))
    })
}

fn front_raw(conn: &Conn) -> RawFd {
    conn.as_fd().as_raw_fd()
}
