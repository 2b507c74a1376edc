//! `Intercom`: the backend's end of the intercom, given to the Python
//! child's bootstrap (the seed's `back_pipe`).

use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use forkbridge::Message;
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
    inner: Mutex<forkbridge::Intercom>,
    /// Received shared-memory buffers stay lent (see `convert::to_py`).
    lend: bool,
}

impl Intercom {
    pub(crate) fn new(inner: forkbridge::Intercom, lend: bool) -> Intercom {
        Intercom {
            fd: inner.as_raw_fd(),
            inner: Mutex::new(inner),
            lend,
        }
    }

    /// The next message (`None`: stop request), waiting up to `timeout`
    /// seconds in slices that let Python's signal handlers run.
    fn wait_one(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Message>> {
        let deadline = match timeout {
            Some(t) => deadline_in(t)?,
            None => None,
        };
        loop {
            let slice = slice_left(deadline).unwrap_or(Duration::ZERO);
            match py.detach(|| lock(&self.inner).recv_timeout(slice)) {
                Err(e) if e.is_timeout() && deadline.is_none_or(|d| Instant::now() < d) => {
                    py.check_signals()?;
                }
                other => return other.py_err(),
            }
        }
    }

    /// The next message and every one already read with it, in one
    /// release of the GIL.
    fn wait_batch(&self, py: Python<'_>) -> PyResult<Vec<Option<Message>>> {
        loop {
            let got = py.detach(|| {
                let mut intercom = lock(&self.inner);
                let first = intercom.recv_timeout(SIGNAL_SLICE)?;
                let mut batch = vec![first];
                while intercom.has_buffered() {
                    match intercom.try_recv() {
                        Ok(msg) => batch.push(msg),
                        Err(_) => break,
                    }
                }
                Ok::<_, forkbridge::Error>(batch)
            });
            match got {
                Err(e) if e.is_timeout() => py.check_signals()?,
                other => return other.py_err(),
            }
        }
    }

    fn send_message(&self, py: Python<'_>, msg: Message) -> PyResult<()> {
        // Queued with the GIL held (lent buffers must be, see `LentView`)
        // and written at once if the socket takes it; only a full socket
        // makes us release the GIL and wait, in slices that let signals in.
        let sent = {
            let mut intercom = lock(&self.inner);
            intercom.feed(msg).py_err()?;
            intercom.flush_timeout(Duration::ZERO)
        };
        match sent {
            Err(e) if e.is_timeout() => loop {
                py.check_signals()?;
                match py.detach(|| lock(&self.inner).flush_timeout(SIGNAL_SLICE)) {
                    Err(e) if e.is_timeout() => continue,
                    other => return other.py_err(),
                }
            },
            other => other.py_err(),
        }
    }
}

/// Runs one command on `process` (see `Intercom.serve`).
fn dispatch(py: Python<'_>, process: &Bound<'_, PyAny>, msg: Message, lend: bool) -> PyResult<()> {
    if msg.command() == convert::OBJECT_COMMAND {
        let obj = convert::to_object(py, msg, lend)?;
        process.call_method1(intern!(py, "routeMainPipe__"), (obj,))?;
        return Ok(());
    }
    let (command, params) = msg.into_parts();
    let kwargs = PyDict::new(py);
    for (k, v) in params {
        kwargs.set_item(k, convert::to_py(py, v, lend)?)?;
    }
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

/// A received message as the backend's loop sees it: `None` for the stop
/// request, else a `MessageObject` or the object sent.
fn object(py: Python<'_>, msg: Option<Message>, lend: bool) -> PyResult<Py<PyAny>> {
    match msg {
        None => Ok(py.None()),
        Some(msg) => convert::to_object(py, msg, lend),
    }
}

#[pymethods]
impl Intercom {
    /// The intercom inherited through `exec` (see `forkbridge.serve`).
    #[staticmethod]
    fn from_env() -> PyResult<Intercom> {
        Ok(Intercom::new(
            forkbridge::Intercom::from_env().py_err()?,
            false,
        ))
    }

    fn fileno(&self) -> i32 {
        self.fd
    }

    /// The next command, waiting up to `timeout` seconds (`None`: as long
    /// as it takes); `None` is the stop request. Raises `TimeoutError`, or
    /// `BackendGone` (an `EOFError`) when the frontend is gone.
    #[pyo3(signature = (timeout = None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let msg = self.wait_one(py, timeout)?;
        object(py, msg, self.lend)
    }

    /// The backend's loop for a `MessageProcess` that does not override
    /// `readPipes__`, `handleBackPipe__` or `routeMainPipe__`: waits for
    /// commands and calls `process.c__<command>(**kwargs)` for each, in
    /// order, until the stop request (or a handler sets `process.loop`
    /// false). The same semantics as the Python loop, without a Python
    /// frame or a `MessageObject` per command. Unknown commands go to
    /// `process._unknown(msg)`, handler exceptions to
    /// `process._handler_failed(msg, exc)`; `BaseException`s
    /// (`KeyboardInterrupt`, `SystemExit`) propagate, as do a vanished
    /// frontend (`BackendGone`) and signals.
    fn serve(&self, py: Python<'_>, process: &Bound<'_, PyAny>) -> PyResult<()> {
        let loop_attr = intern!(py, "loop");
        loop {
            for msg in self.wait_batch(py)? {
                let Some(msg) = msg else {
                    process.setattr(loop_attr, false)?;
                    return Ok(());
                };
                dispatch(py, process, msg, self.lend)?;
                if !process.getattr(loop_attr)?.is_truthy()? {
                    return Ok(());
                }
            }
        }
    }

    /// Sends a `MessageObject` as a message, anything else as an object.
    fn send_any(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let msg = convert::any_message(obj)?;
        self.send_message(py, msg)
    }

    /// Every command that can be read now without waiting (possibly none),
    /// in order; a `None` entry is the stop request. Raises `BackendGone`
    /// only when nothing was read and the frontend is gone.
    fn drain(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        let (messages, end) = py.detach(|| {
            let mut intercom = lock(&self.inner);
            let mut messages = Vec::new();
            loop {
                match intercom.try_recv() {
                    Ok(msg) => messages.push(msg),
                    Err(e) if e.is_empty() => return (messages, None),
                    Err(e) => return (messages, Some(e)),
                }
            }
        });
        if let (true, Some(e)) = (messages.is_empty(), end) {
            return Err(crate::errors::to_py(e));
        }
        let list = PyList::empty(py);
        for msg in messages {
            list.append(object(py, msg, self.lend)?)?;
        }
        Ok(list.unbind())
    }

    /// Whether a command is already read and waiting (the fd may then look
    /// idle).
    fn has_buffered(&self, py: Python<'_>) -> bool {
        py.detach(|| lock(&self.inner).has_buffered())
    }

    fn __repr__(&self) -> String {
        format!("<forkbridge._native.Intercom fd={}>", self.fd)
    }
}
