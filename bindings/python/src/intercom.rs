//! `Intercom`: the backend's end of the intercom, given to the Python
//! child's bootstrap (the seed's `back_pipe`).

use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::Instant;

use forkbridge::Message;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::SIGNAL_SLICE;
use crate::convert;
use crate::errors::IntoPyResult;
use crate::process::{lock, seconds};

/// The child's end: receive commands, send replies.
#[pyclass(frozen, module = "forkbridge._native")]
pub(crate) struct Intercom {
    fd: i32,
    inner: Mutex<forkbridge::Intercom>,
}

impl Intercom {
    pub(crate) fn new(inner: forkbridge::Intercom) -> Intercom {
        Intercom {
            fd: inner.as_raw_fd(),
            inner: Mutex::new(inner),
        }
    }

    /// The next message (`None`: stop request), waiting up to `timeout`
    /// seconds in slices that let Python's signal handlers run.
    fn wait_one(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Message>> {
        let deadline = match timeout {
            Some(t) => Some(Instant::now() + seconds(t)?),
            None => None,
        };
        loop {
            let slice = deadline.map_or(SIGNAL_SLICE, |d| {
                d.saturating_duration_since(Instant::now())
                    .min(SIGNAL_SLICE)
            });
            match py.detach(|| lock(&self.inner).recv_timeout(slice)) {
                Err(e) if e.is_timeout() && deadline.is_none_or(|d| Instant::now() < d) => {
                    py.check_signals()?;
                }
                other => return other.py_err(),
            }
        }
    }

    fn send_message(&self, py: Python<'_>, msg: Message) -> PyResult<()> {
        py.detach(|| lock(&self.inner).send(msg)).py_err()
    }
}

/// `(command, kwargs)`, or `None` for the frontend's stop request.
type Item = Option<(String, Py<PyDict>)>;

fn item(py: Python<'_>, msg: Option<Message>) -> PyResult<Item> {
    msg.map(|m| convert::from_message(py, m)).transpose()
}

/// A received message as the backend's loop sees it: `None` for the stop
/// request, else a `MessageObject` or the object sent.
fn object(py: Python<'_>, msg: Option<Message>) -> PyResult<Py<PyAny>> {
    match msg {
        None => Ok(py.None()),
        Some(msg) => convert::to_object(py, msg),
    }
}

#[pymethods]
impl Intercom {
    /// The intercom inherited through `exec` (see `forkbridge.serve`).
    #[staticmethod]
    fn from_env() -> PyResult<Intercom> {
        Ok(Intercom::new(forkbridge::Intercom::from_env().py_err()?))
    }

    fn fileno(&self) -> i32 {
        self.fd
    }

    /// The next command, waiting up to `timeout` seconds (`None`: as long
    /// as it takes); `None` is the stop request. Raises `TimeoutError`, or
    /// `BackendGone` (an `EOFError`) when the frontend is gone.
    #[pyo3(signature = (timeout = None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Item> {
        let msg = self.wait_one(py, timeout)?;
        item(py, msg)
    }

    /// The next command, waiting as `recv` does, followed by every command
    /// already read with it (no further system call): a burst costs one
    /// wake-up. Each is a `MessageObject` (or the object sent), `None` for
    /// the stop request.
    #[pyo3(signature = (timeout = None))]
    fn recv_many(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyList>> {
        let first = self.wait_one(py, timeout)?;
        let list = PyList::empty(py);
        list.append(object(py, first)?)?;
        let more = py.detach(|| {
            let mut intercom = lock(&self.inner);
            let mut more = Vec::new();
            while intercom.has_buffered() {
                match intercom.try_recv() {
                    Ok(msg) => more.push(msg),
                    Err(_) => break,
                }
            }
            more
        });
        for msg in more {
            list.append(object(py, msg)?)?;
        }
        Ok(list.unbind())
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
            list.append(object(py, msg)?)?;
        }
        Ok(list.unbind())
    }

    /// Sends `command(**kwargs)` to the frontend, waiting while its socket
    /// is full.
    #[pyo3(signature = (command, kwargs = None))]
    fn send(
        &self,
        py: Python<'_>,
        command: &str,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let msg = convert::message(command, kwargs)?;
        self.send_message(py, msg)
    }

    /// Sends a plain object.
    fn send_object(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let msg = convert::object_message(obj)?;
        self.send_message(py, msg)
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
