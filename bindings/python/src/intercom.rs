//! `Intercom`: the backend's end of the intercom, given to the Python
//! child's bootstrap (the seed's `back_pipe`).

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use forkbridge::binding::{FaultKind, IntercomExt};
use forkbridge::{ErrorKind, Message, Value};
use pyo3::exceptions::{PyAttributeError, PyException};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::SIGNAL_SLICE;
use crate::convert;
use crate::errors::IntoPyResult;
use crate::process::{deadline_in, lock, slice_left};

/// The child's end: receive commands, send replies.
#[pyclass(frozen, module = "forkbridge._native")]
pub(crate) struct Intercom {
    fd: i32,
    inner: Mutex<Inner>,
    /// Received shared-memory buffers stay lent (see `convert::to_py`).
    lend: bool,
}

/// What one receive got: a command, the stop request (`None`), or a
/// frame that did not decode (`Err`; the core skipped it, the stream goes
/// on).
type Received = forkbridge::Result<Option<Message>>;

struct Inner {
    intercom: forkbridge::Intercom,
    /// Frames read ahead (`read_ahead`) and not taken yet, oldest first;
    /// every one is older than what the core still buffers. Receives take
    /// from here first, so commands are taken one at a time, in order, by
    /// the loop or by a handler's `recv`: whoever takes one, the other does
    /// not see it again.
    ready: VecDeque<Received>,
}

/// Whether `e` is about one frame only: the core skipped it and the next
/// frame decodes. Anything else ends (or broke) the stream.
pub(crate) fn is_frame_fault(e: &forkbridge::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Decode | ErrorKind::FrameTooLarge { .. }
    )
}

impl Inner {
    /// A frame already read, without a syscall: the oldest read ahead,
    /// else one the core holds complete in its buffer.
    fn take_read(&mut self) -> Option<Received> {
        if let Some(got) = self.ready.pop_front() {
            return Some(got);
        }
        if !self.intercom.has_buffered() {
            return None;
        }
        match self.intercom.try_recv() {
            Err(e) if e.is_empty() => None,
            got => Some(got),
        }
    }

    /// Moves every frame readable now into `ready`, without making Python
    /// values of them. `Err` is what ends the stream (the frontend gone,
    /// after everything it sent): the next receive meets it again.
    fn read_ahead(&mut self) -> forkbridge::Result<()> {
        loop {
            match self.intercom.try_recv() {
                Err(e) if e.is_empty() => return Ok(()),
                Err(e) if !is_frame_fault(&e) => return Err(e),
                got => self.ready.push_back(got),
            }
        }
    }
}

impl Intercom {
    pub(crate) fn new(inner: forkbridge::Intercom, lend: bool) -> Intercom {
        Intercom {
            fd: inner.as_raw_fd(),
            inner: Mutex::new(Inner {
                intercom: inner,
                ready: VecDeque::new(),
            }),
            lend,
        }
    }

    /// The next frame: one already read if there is one (taken without
    /// releasing the GIL, so a burst costs one wait), else waited for up
    /// to `deadline` in slices that let Python's signal handlers run.
    /// Raises for what ends the stream; a frame that did not decode is an
    /// `Err` inside.
    fn next_frame(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<Received> {
        let settle = |got: Received| match got {
            Err(e) if !is_frame_fault(&e) => Err(crate::errors::to_py(e)),
            got => Ok(got),
        };
        if let Some(got) = lock(&self.inner).take_read() {
            return settle(got);
        }
        loop {
            let slice = slice_left(deadline).unwrap_or(Duration::ZERO);
            match py.detach(|| lock(&self.inner).intercom.recv_timeout(slice)) {
                Err(e) if e.is_timeout() && deadline.is_none_or(|d| Instant::now() < d) => {
                    py.check_signals()?;
                }
                got => return settle(got),
            }
        }
    }

    fn send_message(&self, py: Python<'_>, msg: Message) -> PyResult<()> {
        // Queued with the GIL held (lent buffers must be, see `LentView`)
        // and written at once if the socket takes it; only a full socket
        // makes us release the GIL and wait, in slices that let signals in.
        let sent = {
            let mut inner = lock(&self.inner);
            inner.intercom.feed(msg).py_err()?;
            inner.intercom.flush_timeout(Duration::ZERO)
        };
        match sent {
            Err(e) if e.is_timeout() => loop {
                py.check_signals()?;
                match py.detach(|| lock(&self.inner).intercom.flush_timeout(SIGNAL_SLICE)) {
                    Err(e) if e.is_timeout() => continue,
                    other => return other.py_err(),
                }
            },
            other => other.py_err(),
        }
    }
}

/// Why a received command cannot be run: a value in it does not load here
/// (a pickle of a class this process lacks, or whose loader raises; kind
/// `handler_error`, reported as the handler's exception would be), or its
/// frame does not decode or is over the limit (kind `decode`, no command,
/// as a Rust backend reports it). The loop goes on. (The frontend raises
/// it instead: see `Process.recv`.)
pub(crate) struct Unreadable {
    kind: &'static str,
    pub(crate) command: String,
    pub(crate) error: String,
    /// The loader's exception.
    pub(crate) cause: Option<PyErr>,
}

impl Unreadable {
    /// A frame the core skipped (see `is_frame_fault`).
    fn frame(e: &forkbridge::Error) -> Unreadable {
        Unreadable {
            kind: FaultKind::Decode.as_str(),
            command: String::new(),
            error: crate::errors::text(e),
            cause: None,
        }
    }

    /// Hands the report to `fault` (the process's `_unreadable`).
    fn report(self, fault: &Bound<'_, PyAny>) -> PyResult<()> {
        fault.call1((self.kind, self.command, self.error))?;
        Ok(())
    }
}

/// `value` as a Python object, or why it does not load (`what` names it in
/// the report). A `BaseException` that is not an `Exception` (Ctrl-C in a
/// slow load) propagates.
fn load(
    py: Python<'_>,
    value: Value,
    lend: bool,
    command: &str,
    what: impl FnOnce() -> String,
) -> PyResult<Result<Py<PyAny>, Unreadable>> {
    match convert::to_py(py, value, lend) {
        Ok(obj) => Ok(Ok(obj)),
        Err(e) if e.is_instance_of::<PyException>(py) => Ok(Err(Unreadable {
            kind: FaultKind::HandlerError.as_str(),
            command: command.to_owned(),
            error: format!("cannot load {}: {e}", what()),
            cause: Some(e),
        })),
        Err(e) => Err(e),
    }
}

/// A command's parameters as keyword arguments, or why one does not load.
fn kwargs<'py>(
    py: Python<'py>,
    command: &str,
    params: Vec<(String, Value)>,
    lend: bool,
) -> PyResult<Result<Bound<'py, PyDict>, Unreadable>> {
    let kwargs = PyDict::new(py);
    for (k, v) in params {
        match load(py, v, lend, command, || format!("parameter '{k}'"))? {
            Ok(v) => kwargs.set_item(k, v)?,
            Err(unreadable) => return Ok(Err(unreadable)),
        }
    }
    Ok(Ok(kwargs))
}

/// Runs one command on `process` (see `Intercom.serve`).
fn dispatch(py: Python<'_>, process: &Bound<'_, PyAny>, msg: Message, lend: bool) -> PyResult<()> {
    let unreadable = |u: Unreadable| u.report(&process.getattr(intern!(py, "_unreadable"))?);
    if msg.command() == convert::OBJECT_COMMAND {
        match object(py, Ok(Some(msg)), lend)? {
            Ok(obj) => process.call_method1(intern!(py, "routeMainPipe__"), (obj,))?,
            Err(u) => return unreadable(u),
        };
        return Ok(());
    }
    let (command, params) = msg.into_parts();
    let kwargs = match kwargs(py, &command, params, lend)? {
        Ok(kwargs) => kwargs,
        Err(u) => return unreadable(u),
    };
    let method = match process.getattr(format!("c__{command}")) {
        Ok(method) => method,
        Err(e) if e.is_instance_of::<PyAttributeError>(py) => {
            let msg = crate::message::message_object(py, command, kwargs)?;
            process.call_method1(intern!(py, "_unknown"), (msg,))?;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if let Err(e) = method.call((), Some(&kwargs)) {
        if !e.is_instance_of::<PyException>(py) {
            return Err(e);
        }
        let msg = crate::message::message_object(py, command, kwargs)?;
        process.call_method1(intern!(py, "_handler_failed"), (msg, e.value(py)))?;
    }
    Ok(())
}

/// A received frame as Python sees it (in the backend's loop, and in
/// `Process.recv`): `None` for the stop request, else a `MessageObject` or
/// the object sent; or why it cannot be read.
pub(crate) fn object(
    py: Python<'_>,
    got: Received,
    lend: bool,
) -> PyResult<Result<Py<PyAny>, Unreadable>> {
    let msg = match got {
        Ok(Some(msg)) => msg,
        Ok(None) => return Ok(Ok(py.None())),
        Err(e) => return Ok(Err(Unreadable::frame(&e))),
    };
    let (command, params) = msg.into_parts();
    if command == convert::OBJECT_COMMAND {
        return match params.into_iter().find(|(k, _)| k == "value") {
            Some((_, value)) => load(py, value, lend, "", || "the object sent".into()),
            None => Ok(Ok(py.None())),
        };
    }
    Ok(match kwargs(py, &command, params, lend)? {
        Ok(kwargs) => Ok(crate::message::message_object(py, command, kwargs)?),
        Err(unreadable) => Err(unreadable),
    })
}

#[pymethods]
impl Intercom {
    /// The intercom inherited through `exec` (see `forkbridge.serve`),
    /// taking and sending frames of up to `max_frame_size` bytes (the
    /// served class's `max_message_size`).
    #[staticmethod]
    #[pyo3(signature = (max_frame_size = crate::process::DEFAULT_MAX_FRAME))]
    fn from_env(max_frame_size: usize) -> PyResult<Intercom> {
        let mut intercom = forkbridge::Intercom::from_env().py_err()?;
        intercom.set_max_frame_size(max_frame_size);
        Ok(Intercom::new(intercom, false))
    }

    fn fileno(&self) -> i32 {
        self.fd
    }

    /// The next command, waiting up to `timeout` seconds (`None`: as long
    /// as it takes); `None` is the stop request. Commands the loop has
    /// read already come first, in order: a handler gets the one after its
    /// own, and the loop does not run it again. A frame that does not
    /// decode (or is over the limit) and a command with a value that does
    /// not load here go to `fault(kind, command, error)` (the process's
    /// `_unreadable`) and are skipped. Raises `TimeoutError`, or
    /// `BackendGone` (an `EOFError`) when the frontend is gone.
    #[pyo3(signature = (fault, timeout = None))]
    fn recv(
        &self,
        py: Python<'_>,
        fault: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        let deadline = match timeout {
            Some(t) => deadline_in(t)?,
            None => None,
        };
        loop {
            let got = self.next_frame(py, deadline)?;
            match object(py, got, self.lend)? {
                Ok(obj) => return Ok(obj),
                Err(unreadable) => unreadable.report(fault)?,
            }
        }
    }

    /// The backend's loop for a `MessageProcess` that does not override
    /// `readPipes__`, `handleBackPipe__` or `routeMainPipe__`: waits for
    /// commands and calls `process.c__<command>(**kwargs)` for each, in
    /// order, until the stop request (or a handler sets `process.loop`
    /// false). The same semantics as the Python loop, without a Python
    /// frame or a `MessageObject` per command. Commands are taken one at a
    /// time, so a handler's `recv` gets the next one. Unknown commands go
    /// to `process._unknown(msg)`, handler exceptions to
    /// `process._handler_failed(msg, exc)`, frames that do not decode and
    /// commands with a value that does not load here to
    /// `process._unreadable(kind, command, error)`;
    /// `BaseException`s
    /// (`KeyboardInterrupt`, `SystemExit`) propagate, as do a vanished
    /// frontend (`BackendGone`) and signals.
    fn serve(&self, py: Python<'_>, process: &Bound<'_, PyAny>) -> PyResult<()> {
        let loop_attr = intern!(py, "loop");
        loop {
            let msg = match self.next_frame(py, None)? {
                Ok(Some(msg)) => msg,
                Ok(None) => {
                    process.setattr(loop_attr, false)?;
                    return Ok(());
                }
                Err(e) => {
                    let fault = process.getattr(intern!(py, "_unreadable"))?;
                    Unreadable::frame(&e).report(&fault)?;
                    continue;
                }
            };
            dispatch(py, process, msg, self.lend)?;
            if !process.getattr(loop_attr)?.is_truthy()? {
                return Ok(());
            }
        }
    }

    /// Sends a `MessageObject` as a message, anything else as an object.
    fn send_any(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let msg = convert::any_message(obj)?;
        self.send_message(py, msg)
    }

    /// Every command that can be read now without waiting (possibly none),
    /// in order; a `None` entry is the stop request. Frames and commands
    /// that cannot be read go to `fault` as they are read (see `recv`) and
    /// are left out. Raises `BackendGone` only when nothing was read and
    /// the frontend is gone.
    fn drain(&self, py: Python<'_>, fault: &Bound<'_, PyAny>) -> PyResult<Py<PyList>> {
        let (got, end) = py.detach(|| {
            let mut inner = lock(&self.inner);
            let end = inner.read_ahead().err();
            (std::mem::take(&mut inner.ready), end)
        });
        if let (true, Some(e)) = (got.is_empty(), end) {
            return Err(crate::errors::to_py(e));
        }
        let list = PyList::empty(py);
        for msg in got {
            match object(py, msg, self.lend)? {
                Ok(obj) => list.append(obj)?,
                Err(unreadable) => unreadable.report(fault)?,
            }
        }
        Ok(list.unbind())
    }

    /// Reads every frame readable now into the queue receives take from
    /// first, without making Python values of them, so the fd stops
    /// looking readable (for a loop that waits on it while a handler
    /// runs). Returns false once the frontend is gone (or the stream
    /// failed): receives raise that after the commands read before.
    fn read_ahead(&self, py: Python<'_>) -> bool {
        py.detach(|| lock(&self.inner).read_ahead().is_ok())
    }

    /// Whether a command is already read and waiting (the fd may then look
    /// idle).
    fn has_buffered(&self, py: Python<'_>) -> bool {
        py.detach(|| {
            let inner = lock(&self.inner);
            !inner.ready.is_empty() || inner.intercom.has_buffered()
        })
    }

    fn __repr__(&self) -> String {
        format!("<forkbridge._native.Intercom fd={}>", self.fd)
    }
}
