//! [`Status`]: a snapshot of one process, for a program (or a supervisor,
//! a pool, a dashboard) that watches its workers.
//!
//! # Design
//!
//! A snapshot is a plain value, copied out of the handle: the caller keeps
//! it, compares it with the last one (rates are differences of counters),
//! prints it or sends it on, and nothing in it borrows the handle. Taking
//! one needs only `&self`, so it never reaps the backend, never waits and
//! never writes or reads the socket.
//!
//! Its cost is the traffic counters (plain adds on the send and receive
//! paths, see `transport/conn.rs`) and, while the backend runs, one read
//! of `/proc/<pid>/stat` for its memory and CPU time (`sys/procfs.rs`):
//! cheap enough for every second, not for every message.
//!
//! The supervision fields (`restarts`, and the states `Restarting`,
//! `Draining`, `GivenUp` and `Standby`) belong to whoever restarts or removes
//! processes; a bare [`MessageProcess`] reports 0 and never those states.
//! `Status` is `#[non_exhaustive]` so fields can be added without breaking
//! a program that reads it.

use std::fmt;
use std::process::ExitStatus;
use std::time::Duration;

use super::{MessageProcess, StartMethod, State};
use crate::sys::procfs;

/// A snapshot of one process, cheap enough to take every second (see
/// [`MessageProcess::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The process's name, as given at creation.
    pub name: String,
    /// The backend's pid, once started (kept after it exits, for logs: the
    /// pid may belong to another process by then).
    pub pid: Option<i32>,
    /// Where the process is in its life.
    pub state: ProcessState,
    /// How the backend was (or will be) started.
    pub start_method: StartMethod,
    /// How many times a supervisor or pool replaced the backend after it
    /// died; 0 for a bare [`MessageProcess`].
    pub restarts: u32,
    /// How the last backend ended, once its exit status was collected
    /// (by a receive, `join`, `is_alive` or `stop`: a snapshot never
    /// reaps). `None` while it runs, or if something else reaped it.
    pub last_exit: Option<ExitStatus>,
    /// Frames the handle sent: messages, typed calls, and the stop
    /// request. Counted when handed to the handle (`send`, `feed`), not
    /// when the socket takes them; a message taken back by a timed-out
    /// `send_timeout` is not counted.
    pub messages_sent: u64,
    /// Their encoded bytes, length headers included; a message that went
    /// through the shared-memory lane
    /// ([`MessageProcessBuilder::large_messages`](crate::MessageProcessBuilder::large_messages))
    /// counts the bytes it filled in the lane.
    pub bytes_sent: u64,
    /// Frames the handle decoded from the backend: its messages and the
    /// replies to typed calls, whether or not `recv` has returned them yet.
    pub messages_received: u64,
    /// Their bytes, counted as `bytes_sent` is.
    pub bytes_received: u64,
    /// Calls sent and not answered yet; 0 for a bare [`MessageProcess`],
    /// whose calls block until answered (a pool fills it).
    pub calls_in_flight: usize,
    /// Bytes sent by the program that the socket has not taken yet (fed,
    /// or left by a send that timed out partway).
    pub queued_out_bytes: usize,
    /// Messages received and waiting in the handle for a `recv` (those
    /// that arrived while a typed call waited for its reply).
    pub queued_in: usize,
    /// The backend's resident memory, from `/proc/<pid>/stat`: pages
    /// shared with other processes (a fork's pages not yet written) count
    /// here and in them too. `None` when it is not running or `/proc`
    /// cannot be read.
    pub rss_bytes: Option<u64>,
    /// The backend's user plus system CPU time so far, to the clock tick;
    /// `None` as for `rss_bytes`.
    pub cpu_time: Option<Duration>,
}

/// Where a process is in its life (see [`Status::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProcessState {
    /// Built and not started yet.
    Idle,
    /// Started, and not known to have ended.
    Running,
    /// The backend has ended (stopped, or seen dead); its exit status is
    /// in [`Status::last_exit`] once collected.
    Exited,
    /// Dead, and a supervisor or pool will start a replacement soon. Set
    /// only by a supervisor or pool.
    Restarting,
    /// A pool is removing it: it takes no new calls and lets those in
    /// flight finish. Set only by a pool.
    Draining,
    /// It died too often: its restart limit was hit and it stays down.
    /// Set only by a supervisor or pool.
    GivenUp,
    /// Running and idle, a pool's spare: it takes the place of the next
    /// worker that dies. Set only by a pool.
    Standby,
}

impl ProcessState {
    /// The state's name in lowercase (`"running"`, `"given_up"`), for logs
    /// and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessState::Idle => "idle",
            ProcessState::Running => "running",
            ProcessState::Exited => "exited",
            ProcessState::Restarting => "restarting",
            ProcessState::Draining => "draining",
            ProcessState::GivenUp => "given_up",
            ProcessState::Standby => "standby",
        }
    }
}

impl fmt::Display for ProcessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl MessageProcess {
    /// A snapshot of this process: its state, its traffic, what waits in
    /// its buffers, and the backend's memory and CPU time.
    ///
    /// It takes `&self`: it does not reap a backend that has exited (the
    /// state turns `Exited` once a receive saw it die or a `join`, `stop`
    /// or `is_alive` reaped it), writes nothing and waits for nothing. Its
    /// cost is one read of `/proc/<pid>/stat` while the backend runs, and
    /// copying the name; the counters it reports cost plain additions on
    /// every send and receive.
    ///
    /// ```
    /// use forkbridge::{Backend, Handlers, Message, MessageProcess, ProcessState};
    /// use std::time::Duration;
    ///
    /// struct Worker;
    /// impl Backend for Worker {
    ///     fn register(_: &mut Handlers<Self>) {}
    /// }
    ///
    /// let mut p = MessageProcess::new("worker", Worker)?;
    /// assert_eq!(p.status().state, ProcessState::Idle);
    /// p.start()?;
    /// p.send(Message::new("ping"))?;
    /// p.recv_timeout(Duration::from_secs(5))?;
    ///
    /// let s = p.status();
    /// assert_eq!(s.state, ProcessState::Running);
    /// assert_eq!((s.messages_sent, s.messages_received), (1, 1));
    /// println!("{} ({}): {:?} bytes resident", s.name, s.state, s.rss_bytes);
    ///
    /// p.stop()?;
    /// let s = p.status();
    /// assert_eq!(s.state, ProcessState::Exited);
    /// assert!(s.last_exit.is_some_and(|e| e.success()));
    /// # Ok::<(), forkbridge::Error>(())
    /// ```
    pub fn status(&self) -> Status {
        let (state, last_exit, alive) = match &self.state {
            State::Idle(_) => (ProcessState::Idle, None, None),
            State::Running { pid, exited, .. } => {
                if *exited {
                    // Seen dead, not reaped yet: no memory or time to read.
                    (ProcessState::Exited, None, None)
                } else {
                    // No pid: on another host, whose /proc is not ours.
                    (ProcessState::Running, None, *pid)
                }
            }
            State::Finished { fate, .. } => (ProcessState::Exited, fate.status(), None),
            // Only after a `start` that panicked midway: it cannot start
            // again.
            State::Empty => (ProcessState::Exited, None, None),
        };
        let usage = alive.and_then(|pid| procfs::usage(pid).ok());
        let traffic = self.conn.traffic();
        Status {
            name: self.name.clone(),
            pid: self.pid(),
            state,
            start_method: self.config.method,
            restarts: 0,
            last_exit,
            messages_sent: traffic.frames_sent,
            bytes_sent: traffic.bytes_sent,
            messages_received: traffic.frames_received,
            bytes_received: traffic.bytes_received,
            calls_in_flight: 0,
            queued_out_bytes: self.conn.pending_output(),
            queued_in: self.inbox.len(),
            rss_bytes: usage.map(|u| u.rss_bytes),
            cpu_time: usage.map(|u| u.cpu_time),
        }
    }
}
