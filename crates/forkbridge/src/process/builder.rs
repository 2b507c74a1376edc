//! [`MessageProcessBuilder`]: the settings of a process before it exists,
//! and the [`ForkHooks`] a program adds around the fork.

use std::collections::VecDeque;
use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{self, Backend, ChildInfo};
use crate::error::Result;
use crate::protocol::wire::DEFAULT_MAX_FRAME;
use crate::sys::socket;
use crate::transport::conn::Conn;
use crate::transport::intercom::Intercom;
use crate::transport::lane::LaneRings;

use super::start::boot::{Arrival, Portable, Runner};
use super::start::{Pending, StartMethod};
use super::{Config, Entry, MessageProcess, Registered, State, short_type_name};

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
    pub(super) name: String,
    ignore_sigint: bool,
    allow_threads: bool,
    stop_timeout: Duration,
    kill_timeout: Duration,
    pub(super) max_frame_size: usize,
    spin: Duration,
    large: Option<(usize, usize)>,
    hooks: Option<Arc<dyn ForkHooks>>,
    keep_signal_handlers: bool,
    frame_reads: bool,
    method: StartMethod,
    start_timeout: Duration,
    pub(super) events: Option<crate::shm::event_group::EventGroup>,
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
    /// The name the process will have.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends messages whose strings and byte strings hold at least
    /// `threshold` bytes through a shared-memory lane instead of the socket,
    /// transparently, both ways: the message is encoded straight into a
    /// shared slot, and only a small marker goes through the socket, in
    /// order — so a huge message neither costs a socket's worth of copies
    /// and wake-ups nor holds up small ones behind it in the socket. Each
    /// direction has two slots of `slot_size` bytes (address space only,
    /// until used). The sender writes the slot it wrote last again when the
    /// receiver is done with it (its cache lines are still warm,
    /// so the copy is faster), waiting for it a fraction of a copy's time
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
    /// wake-ups (the bench's `roundtrip_spin` measures the difference), at the price of a busy CPU for up to
    /// `spin` whenever either side waits. Default: zero (never spin).
    pub fn spin_before_sleep(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// The backend ignores `SIGINT` (valkka-multiprocess's `ignoreSIGINT`), so a
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
    /// [`ErrorKind::FrameTooLarge`](crate::ErrorKind::FrameTooLarge); larger incoming frames are skipped and
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

    /// How the backend's process comes to exist (see [`StartMethod`]).
    /// `ForkServer` and `Spawn` need a backend that crosses as data
    /// ([`build_portable`](MessageProcessBuilder::build_portable)) and
    /// [`init`](crate::init) first in `main`. Default: [`StartMethod::Fork`].
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = method;
        self
    }

    /// How long `start` waits for a spawned or served worker to decode its
    /// backend and report, before it kills it and fails with
    /// [`ErrorKind::InitMissing`](crate::ErrorKind::InitMissing) (a worker
    /// that does not reach [`init`](crate::init)). Includes the code before
    /// `init` in `main`. Not used by `Fork`. Default: 10 s.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
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
    pub(crate) fn read_frames(mut self, yes: bool) -> Self {
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
        self.build_with(target, None, move |fd, info| {
            let (name, spin) = (info.name.clone(), info.spin);
            run(Intercom::new(info.conn(fd), name, spin))
        })
    }

    /// Creates the process (and its intercom) without starting it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the socketpair cannot be created (fd limit).
    pub fn build<B: Backend>(self, backend: B) -> Result<MessageProcess> {
        let target = format!("{}.{}", short_type_name::<B>(), self.name);
        self.build_with(target, None, move |fd, info| {
            backend::run(backend, fd, info)
        })
    }

    /// Creates a process whose backend can cross to a worker that is not a
    /// fork of this process: with [`StartMethod::ForkServer`] or
    /// [`StartMethod::Spawn`] it is encoded with serde (postcard) here and
    /// decoded in the worker, so keep it small and build heavy state in
    /// `pre_run`. The shared objects it holds ([`Event`](crate::Event),
    /// [`EventGroup`](crate::EventGroup), [`SyncIndex`](crate::SyncIndex),
    /// [`SharedBuffer`](crate::SharedBuffer), [`FrameRing`](crate::FrameRing))
    /// cross as fds beside the bytes and stay shared. With `Fork` it is
    /// started as [`build`](MessageProcessBuilder::build) would.
    ///
    /// ```no_run
    /// use forkbridge::{Backend, Handlers, MessageProcess, StartMethod};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Detector { threshold: u8 }
    /// impl Backend for Detector {
    ///     fn register(_: &mut Handlers<Self>) {}
    /// }
    ///
    /// fn main() -> forkbridge::Result<()> {
    ///     forkbridge::init(); // a spawned worker becomes the backend here
    ///     let mut p = MessageProcess::builder("detector")
    ///         .start_method(StartMethod::ForkServer)
    ///         .build_portable(Detector { threshold: 100 })?;
    ///     p.start()?;
    ///     p.stop()?;
    ///     Ok(())
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`build`](MessageProcessBuilder::build), and
    /// [`ErrorKind::Encode`](crate::ErrorKind::Encode) if the backend does
    /// not encode (a shared object is an fd, and crosses only here).
    pub fn build_portable<B>(self, backend: B) -> Result<MessageProcess>
    where
        B: Backend + serde::Serialize + serde::de::DeserializeOwned,
    {
        let target = format!("{}.{}", short_type_name::<B>(), self.name);
        let portable = Portable::new(portable_entry::<B>, &backend)?;
        self.build_with(target, Some(portable), move |fd, info| {
            backend::run(backend, fd, info)
        })
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
        self.build_with(target, None, move |fd, info| {
            crate::backend::tokio::run(backend, fd, info, config)
        })
    }

    /// An async backend that can cross to a worker that is not a fork (see
    /// [`build_portable`](MessageProcessBuilder::build_portable)).
    ///
    /// # Errors
    ///
    /// As [`build_portable`](MessageProcessBuilder::build_portable).
    #[cfg(feature = "tokio")]
    pub fn build_async_portable<B>(self, backend: B) -> Result<MessageProcess>
    where
        B: crate::AsyncBackend + serde::Serialize + serde::de::DeserializeOwned,
    {
        let target = format!("{}.{}", short_type_name::<B>(), self.name);
        let config = self.async_config;
        let runtime = match config.flavor {
            crate::RuntimeFlavor::CurrentThread => None,
            crate::RuntimeFlavor::MultiThread { workers } => Some(workers),
        };
        let portable = Portable::new(
            portable_async_entry::<B>,
            &(&backend, runtime, config.grace),
        )?;
        self.build_with(target, Some(portable), move |fd, info| {
            crate::backend::tokio::run(backend, fd, info, config)
        })
    }

    pub(super) fn build_with(
        self,
        target: String,
        portable: Option<Portable>,
        run: impl FnOnce(OwnedFd, ChildInfo) -> i32 + Send + 'static,
    ) -> Result<MessageProcess> {
        let lane = match self.large {
            Some((threshold, slot_size)) => Some(LaneRings::new(threshold, slot_size)?),
            None => None,
        };
        let (front, back) = socket::socketpair()?;
        let (front, back) = (Registered::new(front), Registered::new(back));
        let info = ChildInfo {
            name: self.name.clone(),
            target: target.clone(),
            max_frame: self.max_frame_size,
            spin: self.spin,
            lane,
        };
        let entry: Entry = Box::new(run);
        let front_lane = match &info.lane {
            Some(rings) => Some(rings.frontend_end()?),
            None => None,
        };
        let state = State::Idle(Box::new(Pending {
            entry,
            portable: portable.map(Box::new),
            info,
            backend_end: back,
        }));
        let mut process = self.handle(target, front, state);
        if let Some(lane) = front_lane {
            process.conn.set_lane(lane);
        }
        Ok(process)
    }

    /// The handle around the frontend's end of the stream, in `state`.
    pub(super) fn handle(self, target: String, front: Registered, state: State) -> MessageProcess {
        let mut conn = Conn::new(front, self.max_frame_size);
        conn.set_frame_reads(self.frame_reads);
        let config = Config {
            spin: self.spin,
            ignore_sigint: self.ignore_sigint,
            allow_threads: self.allow_threads,
            stop_timeout: self.stop_timeout,
            kill_timeout: self.kill_timeout,
            keep_signal_handlers: self.keep_signal_handlers,
            method: self.method,
            start_timeout: self.start_timeout,
        };
        MessageProcess {
            name: self.name,
            target,
            state,
            config,
            hooks: self.hooks,
            conn,
            inbox: VecDeque::new(),
            last_call: 0,
            stop_requested: false,
            relayed: false,
            events: self.events,
        }
    }
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
            method: StartMethod::Fork,
            start_timeout: Duration::from_secs(10),
            events: None,
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
}

/// What a worker runs for a backend built with `build_portable`.
fn portable_entry<B>(mut arrival: Arrival) -> std::result::Result<Runner, String>
where
    B: Backend + serde::de::DeserializeOwned,
{
    let backend: B = arrival.decode()?;
    let info = arrival.info()?;
    Ok(Box::new(move |fd| backend::run(backend, fd, info)))
}

/// What a worker runs for a backend built with `build_async_portable`.
#[cfg(feature = "tokio")]
fn portable_async_entry<B>(mut arrival: Arrival) -> std::result::Result<Runner, String>
where
    B: crate::AsyncBackend + serde::de::DeserializeOwned,
{
    let (backend, runtime, grace): (B, Option<Option<usize>>, Duration) = arrival.decode()?;
    let info = arrival.info()?;
    let flavor = match runtime {
        None => crate::RuntimeFlavor::CurrentThread,
        Some(workers) => crate::RuntimeFlavor::MultiThread { workers },
    };
    let config = crate::backend::tokio::AsyncConfig { flavor, grace };
    Ok(Box::new(move |fd| {
        crate::backend::tokio::run(backend, fd, info, config)
    }))
}
