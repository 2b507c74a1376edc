//! `Process`: the frontend's handle to one backend, under the Python
//! package's `MessageProcess`.
//!
//! Locking rule: whoever holds the core handle's `Mutex` never waits for
//! the GIL. Waits poll the raw fd without the mutex and take it only to
//! read; blocking sections run inside `Python::detach`. So a thread may take
//! the mutex with the GIL held — `start` (the fork needs the GIL), a send
//! whose non-blocking write succeeds, a send of lent buffers (read under the
//! GIL) — and at worst waits for a short critical section, never deadlocks.
//!
//! After the fork the child's Python heap still holds this object (the
//! user's `MessageProcess` is `self` in the backend). Its copy of the
//! handle is dead — the core closed those fds in the child — so every
//! method checks the owning pid and refuses in another process, and `Drop`
//! there forgets the handle instead of stopping a process that is not its
//! child.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use forkbridge::binding::ProcessExt;
use forkbridge::{Message, MessageProcess};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::SIGNAL_SLICE;
use crate::convert;
use crate::errors::{self, IntoPyResult};
use crate::intercom::{self, Intercom, Unreadable};
use crate::sys::{self, PythonForkHooks};

pub(crate) const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// How long `stop` waits for a backend it killed to be reaped.
const KILL_REAP: Duration = Duration::from_secs(5);

type ChildSlot = Arc<Mutex<Option<Py<PyAny>>>>;

/// The native half of a `MessageProcess` (frontend side).
#[pyclass(frozen, module = "forkbridge._native")]
pub(crate) struct Process {
    name: String,
    owner: i32,
    fd: i32,
    inner: Mutex<Option<MessageProcess>>,
    /// `spin_before_sleep`: a wait first spins this long under the lock.
    spin: Duration,
    /// `stop`'s bounds in seconds: for the stop request and the backend's
    /// end, then after SIGTERM.
    stop_timeout: f64,
    kill_timeout: f64,
    /// Whether messages may wait in the handle (see `note_buffered`).
    buffered: AtomicBool,
    /// Whether `fileno` was called (see there).
    fd_handed_out: AtomicBool,
    /// A message `poll` took off the socket, for the next `recv`, or a
    /// frame it skipped (see `recv_frame`).
    polled: Mutex<VecDeque<forkbridge::Result<Message>>>,
    /// Received shared-memory buffers stay lent (see `convert::to_py`).
    lend: bool,
    /// The callable the child runs, set by `start` just before the fork.
    child: ChildSlot,
    /// A handle for a backend elsewhere (`remote::attach`): running from
    /// the start, with no pid on this host.
    attached: bool,
}

#[pymethods]
impl Process {
    #[new]
    #[pyo3(signature = (
        name, *, stop_timeout = 5.0, kill_timeout = 1.0,
        max_frame_size = DEFAULT_MAX_FRAME, large_threshold = None,
        large_slot = 16 << 20, spin = 0.0, lend = false, events = None
    ))]
    // Python's keyword-only signature, one argument per class attribute.
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: String,
        stop_timeout: f64,
        kill_timeout: f64,
        max_frame_size: usize,
        large_threshold: Option<usize>,
        large_slot: usize,
        spin: f64,
        lend: bool,
        events: Option<PyRef<'_, crate::events::EventGroup>>,
    ) -> PyResult<Process> {
        let child: ChildSlot = Arc::new(Mutex::new(None));
        let slot = child.clone();
        let mut builder = MessageProcess::builder(name.clone())
            // Python's own policy (live Python threads) runs before `start`;
            // OS threads such as numpy's BLAS pool stop themselves for a fork.
            .allow_threads(true)
            .keep_signal_handlers(true)
            .fork_hooks(Arc::new(PythonForkHooks))
            .stop_timeout(seconds(stop_timeout)?)
            .kill_timeout(seconds(kill_timeout)?)
            .max_frame_size(max_frame_size)
            .spin_before_sleep(seconds(spin)?);
        if let Some(threshold) = large_threshold {
            builder = builder.large_messages(threshold, large_slot);
        }
        if let Some(group) = events {
            builder = builder.events(group.inner());
        }
        let inner = builder
            .build_fn(move |intercom| child_main(&slot, intercom, lend))
            .py_err()?;
        Ok(Process {
            name,
            owner: sys::getpid(),
            fd: inner.as_raw_fd(),
            fd_handed_out: AtomicBool::new(false),
            buffered: AtomicBool::new(false),
            spin: seconds(spin)?,
            stop_timeout,
            kill_timeout,
            inner: Mutex::new(Some(inner)),
            polled: Mutex::new(VecDeque::new()),
            lend,
            child,
            attached: false,
        })
    }

    /// Forks; the child calls `child(intercom)` and exits with its return
    /// value. Runs with the GIL held throughout (see `fork.rs`).
    fn start(&self, child: Py<PyAny>) -> PyResult<()> {
        self.check_owner()?;
        *lock(&self.child) = Some(child);
        let mut inner = lock(&self.inner);
        let result = handle(&mut inner).and_then(|p| p.start().py_err());
        lock(&self.child).take();
        result
    }

    /// Starts the backend under `method` ("forkserver" or "spawn"): it
    /// crosses as `payload` (the package's pickle) with the fds in `fds`,
    /// to a worker running `command` (program, then arguments; under
    /// "forkserver" the server's command is set apart). Returns once the
    /// worker said it runs; raises `RuntimeError` with the worker's reason
    /// if it could not (its unpickling failed, it never reported within
    /// the start timeout). The GIL is released meanwhile: nothing is
    /// forked here.
    fn start_foreign(
        &self,
        py: Python<'_>,
        method: &str,
        command: Vec<std::ffi::OsString>,
        payload: Vec<u8>,
        fds: &crate::start::FdList,
    ) -> PyResult<()> {
        self.check_owner()?;
        let method = match method {
            "forkserver" => forkbridge::StartMethod::ForkServer,
            "spawn" => forkbridge::StartMethod::Spawn,
            other => {
                return Err(PyValueError::new_err(format!(
                    "not a start method for a pickled backend: {other:?}"
                )));
            }
        };
        let fds = fds.drain();
        py.detach(|| {
            let mut inner = lock(&self.inner);
            let p = handle(&mut inner)?;
            p.set_start_method(method).py_err()?;
            p.set_foreign(command, payload, fds).py_err()?;
            p.start().map_err(|e| match e.kind() {
                forkbridge::ErrorKind::Boot { .. } | forkbridge::ErrorKind::InitMissing => {
                    PyRuntimeError::new_err(format!(
                        "process '{}': {}",
                        self.name,
                        errors::text(&e)
                    ))
                }
                _ => errors::to_py(e),
            })
        })
    }

    fn set_ignore_sigint(&self, py: Python<'_>, yes: bool) -> PyResult<()> {
        self.with(py, |p| p.set_ignore_sigint(yes).py_err())
    }

    /// Sends a `MessageObject` as a message, anything else as an object.
    fn send_any(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let msg = convert::any_message(obj)?;
        self.send_message(py, msg)
    }

    /// The seed's `sendMessageToBack`: `None` asks the backend to stop,
    /// anything else is sent as `send_any` sends it. Bound to instances
    /// whose class does not override the method, so a send costs no Python
    /// frame.
    fn send_message_to_back(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<()> {
        if message.is_none() {
            self.request_stop(py, None).map(drop)
        } else {
            self.send_any(py, message)
        }
    }

    /// The next object the backend sent: a `MessageObject`, or what it
    /// passed to `send_out__`, waiting up to `timeout` seconds (`None`: as
    /// long as it takes). Raises `TimeoutError`, or `BackendGone` (an
    /// `EOFError`) once the backend has ended and every message it sent
    /// was read. A message that cannot be read here (a frame that does not
    /// decode or is over the limit, a value that does not unpickle) is
    /// skipped and raised as `UnreadableMessage`: the next call returns
    /// the one after it, as the Rust frontend's `recv` does.
    #[pyo3(signature = (timeout = None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        self.check_owner()?;
        // Held only for a push or a pop, never across a wait: no need to
        // release the GIL around it.
        let polled = lock(&self.polled).pop_front();
        let got = match polled {
            Some(got) => got,
            None => self.wait(py, timeout, false, recv_frame)?,
        };
        let unreadable = |u: Unreadable| {
            let text = if u.command.is_empty() && u.cause.is_none() {
                u.error // the core's text names the process
            } else if u.command.is_empty() {
                format!("process '{}': {}", self.name, u.error)
            } else {
                format!(
                    "process '{}': message '{}': {}",
                    self.name, u.command, u.error
                )
            };
            errors::unreadable(py, text, &u.command, u.cause)
        };
        match intercom::object(py, got.map(Some), self.lend)? {
            Ok(obj) => Ok(obj),
            Err(u) => Err(unreadable(u)),
        }
    }

    /// Whether `recv` would return (a message, or the end) within
    /// `timeout` seconds.
    #[pyo3(signature = (timeout = 0.0))]
    fn poll(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.check_owner()?;
        if !lock(&self.polled).is_empty() {
            return Ok(true);
        }
        match self.wait(py, timeout, false, recv_frame) {
            Ok(got) => {
                lock(&self.polled).push_back(got);
                Ok(true)
            }
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyTimeoutError>(py) => Ok(false),
            Err(e) if e.is_instance_of::<crate::errors::BackendGone>(py) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The fd to wait on. Handing it out switches the handle to frame
    /// reads (one message per read, so a `select` loop that receives once
    /// per wake-up leaves nothing behind in the buffer); a program that
    /// only calls `recv` keeps the cheaper greedy reads. What is read
    /// ahead all the same (by `poll`, by a send that waits for room, by
    /// greedy reads before this call) does not make the fd readable: the
    /// package's docs tell a `select` loop to drain it with `poll(0)`.
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        self.check_owner()?;
        if !self.fd_handed_out.swap(true, Ordering::Relaxed) {
            self.with(py, |p| {
                p.set_frame_reads(true);
                Ok(())
            })?;
        }
        Ok(self.fd)
    }

    /// Asks the backend to stop after the messages sent before. With a
    /// `timeout` (seconds; zero or less: one try), a socket that stays full
    /// that long leaves the request queued (a later request or send goes on
    /// writing it) and returns False; without one it waits as a send does.
    /// True once written, or if the backend is already gone.
    #[pyo3(signature = (timeout = None))]
    fn request_stop(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let Some(timeout) = timeout else {
            return self.with(py, |p| match p.request_stop() {
                Err(e) if e.is_disconnected() => Ok(true),
                other => other.py_err().map(|()| true),
            });
        };
        match self.wait(py, Some(timeout), true, |p, slice| {
            match p.request_stop_timeout(slice) {
                Err(e) if e.is_disconnected() => Ok(()),
                other => other,
            }
        }) {
            Ok(()) => Ok(true),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyTimeoutError>(py) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Bounded stop (request → TERM → KILL → reap); the exit code as
    /// `multiprocessing` reports it (negative: killed by that signal), or
    /// `None` if something else reaped the backend (SIGCHLD ignored,
    /// another handler): it is gone, which is what a stop is for.
    ///
    /// Every wait comes in slices between which Python's signal handlers
    /// run (as `join`'s do). An exception one raises (Ctrl-C's
    /// `KeyboardInterrupt`) does not wait out the bounds: the backend is
    /// killed at once (`SIGKILL`) and reaped, then the exception goes on.
    fn stop(&self, py: Python<'_>) -> PyResult<Option<i32>> {
        self.check_owner()?;
        if !self.started(py) {
            return Ok(None);
        }
        match self.stop_in_slices(py) {
            Err(e) if !e.is_instance_of::<pyo3::exceptions::PyTimeoutError>(py) => {
                self.with(py, |p| {
                    kill_if_alive(p, libc::SIGKILL);
                    let _ = p.join_timeout(KILL_REAP);
                    Ok(())
                })?;
                Err(e)
            }
            other => other,
        }
    }

    /// Waits up to `timeout` seconds for the backend to end; its exit code,
    /// or `None` if it is still running, never started, or was reaped by
    /// something else (its exit code is then unknown).
    #[pyo3(signature = (timeout = None))]
    fn join(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<i32>> {
        self.check_owner()?;
        match self.wait(py, timeout, false, |p, slice| p.join_timeout(slice)) {
            Ok(status) => Ok(Some(exit_code(status))),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyTimeoutError>(py) => Ok(None),
            // `join` returns a status whenever it has one: a disconnection
            // means the child was reaped elsewhere.
            Err(e) if e.is_instance_of::<crate::errors::BackendGone>(py) => Ok(None),
            Err(e) => {
                // Not started: `multiprocessing` asserts; we answer "no code".
                if py.detach(|| self.exitcode_now()).is_none() && !self.started(py) {
                    return Ok(None);
                }
                Err(e)
            }
        }
    }

    fn is_alive(&self, py: Python<'_>) -> PyResult<bool> {
        self.with(py, |p| Ok(p.is_alive()))
    }

    /// Sends `sig` to the backend if it is running.
    fn signal(&self, py: Python<'_>, sig: i32) -> PyResult<()> {
        self.with(py, |p| {
            if p.is_alive() {
                p.send_signal(sig)
                    .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
            }
            Ok(())
        })
    }

    #[getter]
    fn pid(&self, py: Python<'_>) -> PyResult<Option<i32>> {
        self.with(py, |p| Ok(p.pid()))
    }

    #[getter]
    fn exitcode(&self, py: Python<'_>) -> PyResult<Option<i32>> {
        self.check_owner()?;
        Ok(py.detach(|| self.exitcode_now()))
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// What polls readable once the backend has ended and its exit status
    /// can be read (its pidfd; a forkserver worker's status channel), while
    /// it runs; `None` before the start and once the exit was collected,
    /// when the fd is closed: a caller polls the fd it gets now, never one
    /// kept from before a receive, `join` or `is_alive`.
    #[getter]
    fn exit_fd(&self, py: Python<'_>) -> PyResult<Option<i32>> {
        self.with(py, |p| Ok(p.exit_poll_fd().map(|fd| fd.as_raw_fd())))
    }

    /// Whether messages already read wait in this handle (read ahead by
    /// `poll`, by a send that waited for room, by a greedy read): the fd
    /// may then look idle while `recv` has something. No lock, no syscall.
    fn has_buffered(&self) -> bool {
        self.buffered.load(Ordering::Relaxed) || !lock(&self.polled).is_empty()
    }

    /// A snapshot of the process (the core's `Status`) as a dict of
    /// `forkbridge.Status`'s fields: exit statuses as `multiprocessing`'s
    /// exit codes, the CPU time in seconds, and `queued_in` counting what
    /// `poll` read ahead too. Never waits, reaps or reads the socket.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.with(py, |p| Ok(p.status()))?;
        let polled = lock(&self.polled).len();
        let method = match s.start_method {
            forkbridge::StartMethod::Fork => "fork",
            forkbridge::StartMethod::ForkServer => "forkserver",
            forkbridge::StartMethod::Spawn => "spawn",
        };
        let d = PyDict::new(py);
        d.set_item("name", &s.name)?;
        d.set_item("pid", s.pid)?;
        d.set_item("state", s.state.as_str())?;
        d.set_item("start_method", method)?;
        d.set_item("restarts", s.restarts)?;
        d.set_item("last_exit", s.last_exit.map(exit_code))?;
        d.set_item("messages_sent", s.messages_sent)?;
        d.set_item("bytes_sent", s.bytes_sent)?;
        d.set_item("messages_received", s.messages_received)?;
        d.set_item("bytes_received", s.bytes_received)?;
        d.set_item("calls_in_flight", s.calls_in_flight)?;
        d.set_item("queued_out_bytes", s.queued_out_bytes)?;
        d.set_item("queued_in", s.queued_in + polled)?;
        d.set_item("rss_bytes", s.rss_bytes)?;
        d.set_item("cpu_time", s.cpu_time.map(|t| t.as_secs_f64()))?;
        Ok(d)
    }

    /// Messages sent through the shared-memory lane so far.
    #[getter]
    fn large_messages_sent(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |p| Ok(p.large_messages_sent()))
    }

    fn __repr__(&self) -> String {
        format!("<forkbridge._native.Process {:?}>", self.name)
    }
}

impl Process {
    /// Writes `msg` now, waiting while the socket is full in slices that
    /// let Ctrl-C through (an interrupted message stays queued and goes out
    /// with the next send).
    fn send_message(&self, py: Python<'_>, msg: Message) -> PyResult<()> {
        self.check_owner()?;
        let sent = match try_lock(&self.inner) {
            // The common case keeps the GIL: the lock is free and the
            // socket takes the message at once (a non-blocking write, as
            // `os.write` does with the GIL held). Lent buffers must be
            // encoded with the GIL held in any case (see `LentView`).
            Some(mut inner) => {
                let p = handle(&mut inner)?;
                p.queue(msg).py_err()?;
                let sent = p.flush_timeout(Duration::ZERO);
                self.note_buffered(p);
                sent
            }
            None if convert::lends(&msg) => {
                let mut inner = lock(&self.inner);
                handle(&mut inner)?.queue(msg).py_err()?;
                drop(inner);
                self.with(py, |p| Ok(p.flush_timeout(Duration::ZERO)))?
            }
            None => self.with(py, |p| {
                p.queue(msg).py_err()?;
                Ok(p.flush_timeout(Duration::ZERO))
            })?,
        };
        match sent {
            Err(e) if e.is_timeout() => {
                py.check_signals()?;
                self.wait(py, None, true, |p, slice| p.flush_timeout(slice))
            }
            other => other.py_err(),
        }
    }

    fn check_owner(&self) -> PyResult<()> {
        if sys::getpid() == self.owner {
            Ok(())
        } else {
            Err(PyRuntimeError::new_err(format!(
                "the frontend handle of process '{}' belongs to pid {}: it cannot be used in \
                 pid {} (a backend reaches its frontend with send_out__)",
                self.name,
                self.owner,
                sys::getpid()
            )))
        }
    }

    /// Runs `f` on the core handle with the GIL released.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut MessageProcess) -> PyResult<T> + Send,
    ) -> PyResult<T> {
        self.check_owner()?;
        py.detach(|| {
            let mut inner = lock(&self.inner);
            let p = handle(&mut inner)?;
            let result = f(p);
            self.note_buffered(p);
            result
        })
    }

    /// Records whether messages wait in the handle (a send reads ahead
    /// while the socket is full; a greedy read may bring several), so that
    /// a receive knows without taking the lock whether to look there first.
    fn note_buffered(&self, p: &MessageProcess) {
        self.buffered.store(p.has_buffered(), Ordering::Relaxed);
    }

    /// Tries `op` whenever the intercom becomes readable (or writable, for
    /// a send: `writing`), and once per slice, until it returns something
    /// other than a timeout or `timeout` seconds have passed (one of zero
    /// or less tries once, without waiting). Waits come in
    /// slices of at most `SIGNAL_SLICE`, between which Python's signal
    /// handlers run. A receive by the program's only Python thread waits in
    /// the read itself, holding the lock (nobody else can want it: one
    /// syscall per message instead of a poll and a read); otherwise the
    /// wait is a `poll` on the raw fd *without* the lock, so a thread
    /// blocked here never holds up another thread's send.
    fn wait<T: Send>(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        writing: bool,
        op: impl Fn(&mut MessageProcess, Duration) -> forkbridge::Result<T> + Send + Sync,
    ) -> PyResult<T> {
        let deadline = match timeout {
            Some(t) => deadline_in(t)?,
            None => None,
        };
        // The poll is on the intercom alone: a backend that dies closes it
        // (end of stream). A backend whose own child still holds the socket
        // is seen dead by the try after each slice (the core looks at the
        // pidfd there); polling the pidfd too would cost a second wait
        // queue per message.
        let mut slice = Duration::ZERO;
        // The first round only tries what is already read and waiting
        // (then the fd is quiet); later rounds wait for the fds first.
        let mut first = true;
        // Spin mode: first rounds spin on the socket, a signal slice at a
        // time, while `spin` lasts (`None`: it never ends).
        let spin_end = Instant::now().checked_add(self.spin);
        let spin_left = || {
            spin_end.map_or(Duration::MAX, |e| {
                e.saturating_duration_since(Instant::now())
            })
        };
        loop {
            // Nothing read ahead and no spinning: straight to the wait.
            let skip = first && self.spin.is_zero() && !self.buffered.load(Ordering::Relaxed);
            // Checked every round: a thread started meanwhile waits at most
            // one slice for its send, then the next round polls.
            let in_read = skip && !writing && alone(py)?;
            let result = if in_read {
                let left = slice_left(deadline).unwrap_or(Duration::ZERO);
                Some(self.with(py, |p| Ok(op(p, left)))?)
            } else if skip {
                None
            } else {
                py.detach(|| -> PyResult<Option<forkbridge::Result<T>>> {
                    if !first && !slice.is_zero() {
                        sys::poll_fd(self.fd, writing, slice);
                    }
                    let mut inner = lock(&self.inner);
                    let p = handle(&mut inner)?;
                    let wait = if first {
                        // Spin mode: the core spins on the socket this long.
                        let wait = spin_left().min(SIGNAL_SLICE);
                        deadline.map_or(wait, |d| {
                            wait.min(d.saturating_duration_since(Instant::now()))
                        })
                    } else {
                        Duration::ZERO
                    };
                    let result = op(p, wait);
                    self.note_buffered(p);
                    Ok(Some(result))
                })?
            };
            let tried = result.is_some();
            match result {
                None => {}
                Some(Err(e)) if e.is_timeout() => {}
                Some(other) => return other.py_err(),
            }
            if tried {
                py.check_signals()?;
            }
            slice = match slice_left(deadline) {
                Some(slice) => slice,
                // "Do not wait" is not "do not look": a deadline that
                // passed before anything was tried (a timeout of zero or
                // less while other Python threads live) gets one try,
                // without waiting.
                None if !tried => Duration::ZERO,
                None => {
                    return Err(pyo3::exceptions::PyTimeoutError::new_err(format!(
                        "process '{}': timed out",
                        self.name
                    )));
                }
            };
            // After a read in the read, the next round reads again; after a
            // spin, it spins again while the spin lasts.
            first = in_read || (first && !self.spin.is_zero() && !spin_left().is_zero());
        }
    }

    /// `stop`'s steps, each wait in slices (see `wait`): the request and
    /// the backend's end share `stop_timeout`; then SIGTERM and
    /// `kill_timeout`; then SIGKILL and a bounded reap.
    fn stop_in_slices(&self, py: Python<'_>) -> PyResult<Option<i32>> {
        let deadline = deadline_in(self.stop_timeout)?;
        // What is left of the deadline, in seconds (`None`: no limit).
        let left = |d: Option<Instant>| {
            d.map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64())
        };
        match self.wait(py, left(deadline), true, |p, slice| {
            p.request_stop_timeout(slice)
        }) {
            Ok(()) => {}
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyTimeoutError>(py) => {}
            Err(e) => return Err(e),
        }
        let steps = [
            (left(deadline), Some(libc::SIGTERM)),
            (Some(self.kill_timeout), Some(libc::SIGKILL)),
            (Some(KILL_REAP.as_secs_f64()), None),
        ];
        for (bound, then) in steps {
            if let Some(code) = self.join(py, bound)? {
                return Ok(Some(code));
            }
            if !py.detach(|| {
                lock(&self.inner)
                    .as_mut()
                    .is_some_and(MessageProcess::is_alive)
            }) {
                return Ok(None); // reaped elsewhere
            }
            if let Some(sig) = then {
                self.with(py, |p| {
                    kill_if_alive(p, sig);
                    Ok(())
                })?;
            }
        }
        Err(pyo3::exceptions::PyTimeoutError::new_err(format!(
            "process '{}': still running after SIGKILL",
            self.name
        )))
    }

    fn exitcode_now(&self) -> Option<i32> {
        let mut inner = lock(&self.inner);
        let p = inner.as_mut()?;
        match p.join_timeout(Duration::ZERO) {
            Ok(status) => Some(exit_code(status)),
            Err(_) => None,
        }
    }

    fn started(&self, py: Python<'_>) -> bool {
        self.attached
            || py.detach(|| {
                lock(&self.inner)
                    .as_ref()
                    .is_some_and(|p| p.pid().is_some())
            })
    }

    /// The door for `remote.rs`: a handle around `inner`, a running
    /// handle whose backend is elsewhere (`MessageProcessBuilder::attach`).
    pub(crate) fn adopt(
        inner: MessageProcess,
        stop_timeout: f64,
        kill_timeout: f64,
        lend: bool,
    ) -> PyResult<Process> {
        Ok(Process {
            name: inner.name().to_owned(),
            owner: sys::getpid(),
            fd: inner.as_raw_fd(),
            fd_handed_out: AtomicBool::new(false),
            buffered: AtomicBool::new(false),
            spin: Duration::ZERO,
            stop_timeout,
            kill_timeout,
            inner: Mutex::new(Some(inner)),
            polled: Mutex::new(VecDeque::new()),
            lend,
            child: Arc::new(Mutex::new(None)),
            attached: true,
        })
    }

    /// The door for `remote.rs`: the core handle, taken out (to hand a
    /// started process's stream to a transport); this object is closed
    /// from then on.
    pub(crate) fn take_handle(&self, py: Python<'_>) -> PyResult<MessageProcess> {
        self.check_owner()?;
        py.detach(|| lock(&self.inner).take())
            .ok_or_else(|| PyRuntimeError::new_err("the process handle is closed"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if sys::getpid() != self.owner {
            // The parent's handle, copied by the fork: not ours to stop.
            if let Ok(slot) = self.inner.get_mut() {
                std::mem::forget(slot.take());
            }
        }
        // In the owner, the core handle's own `Drop` stops the backend
        // within its bound.
    }
}

/// The next frame, or one the core skipped (it does not decode or is over
/// the limit: the stream goes on, and `recv` raises it in its turn).
fn recv_frame(
    p: &mut MessageProcess,
    slice: Duration,
) -> forkbridge::Result<forkbridge::Result<Message>> {
    match p.recv_timeout(slice) {
        Err(e) if intercom::is_frame_fault(&e) => Ok(Err(e)),
        got => got.map(Ok),
    }
}

/// What is left of a wait until `deadline`, at most one signal slice (and
/// never zero, which would mean "do not wait"); `None` once it has passed.
pub(crate) fn slice_left(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        Some(d) if Instant::now() >= d => None,
        Some(d) => Some(
            d.saturating_duration_since(Instant::now())
                .min(SIGNAL_SLICE)
                .max(Duration::from_micros(1)),
        ),
        None => Some(SIGNAL_SLICE),
    }
}

/// Whether the calling thread is the program's only Python thread.
fn alone(py: Python<'_>) -> PyResult<bool> {
    static ACTIVE_COUNT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let active_count = ACTIVE_COUNT.get_or_try_init(py, || {
        py.import("threading")?
            .getattr("active_count")
            .map(Bound::unbind)
    })?;
    Ok(active_count.bind(py).call0()?.extract::<usize>()? <= 1)
}

/// The child's side: runs the Python callable given to `start`.
fn child_main(slot: &Mutex<Option<Py<PyAny>>>, intercom: forkbridge::Intercom, lend: bool) -> i32 {
    Python::attach(|py| {
        let Some(run) = lock(slot).take() else {
            return 1;
        };
        let intercom = match Py::new(py, Intercom::new(intercom, lend)) {
            Ok(intercom) => intercom,
            Err(e) => {
                e.print(py);
                return 1;
            }
        };
        match run.call1(py, (intercom,)) {
            Ok(code) => code.extract::<i32>(py).unwrap_or(0),
            Err(e) => {
                e.print(py);
                1
            }
        }
    })
}

fn handle(inner: &mut Option<MessageProcess>) -> PyResult<&mut MessageProcess> {
    inner
        .as_mut()
        .ok_or_else(|| PyRuntimeError::new_err("the process handle is closed"))
}

/// Locks `m` if nobody holds it, ignoring poisoning.
pub(crate) fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Locks `m`, ignoring poisoning: a panic elsewhere left plain data behind.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn seconds(s: f64) -> PyResult<Duration> {
    if s.is_nan() {
        return Err(PyValueError::new_err("a timeout cannot be NaN"));
    }
    // Negative is zero; one too long for a Duration (inf included) is no
    // limit, as `threading` and `select` take it.
    Ok(Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX))
}

/// The deadline `s` seconds from now; `None` (no limit) when it lies past
/// what an `Instant` holds.
pub(crate) fn deadline_in(s: f64) -> PyResult<Option<Instant>> {
    Ok(Instant::now().checked_add(seconds(s)?))
}

/// `multiprocessing`'s exit code: the status, or minus the signal.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| -s))
        .unwrap_or(-1)
}

/// Sends `sig` to the backend if it is still running (through its pidfd:
/// a reaped backend's pid may be another process's by now).
fn kill_if_alive(p: &mut MessageProcess, sig: i32) {
    if p.is_alive() {
        let _ = p.send_signal(sig);
    }
}
