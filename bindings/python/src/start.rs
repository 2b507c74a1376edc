//! The start methods that do not copy the caller (`forkserver`, `spawn`):
//! the Python side of the core's foreign-worker seam.
//!
//! # Design
//!
//! Under those methods the backend crosses as a pickle of the user's
//! `MessageProcess` (made by the package's `_cross` module) plus the fds of
//! the shared objects it holds, given to the core with
//! `ProcessExt::set_foreign`. The worker is a fresh interpreter (`spawn`)
//! or a fork of the package's fork server, which runs `_worker.py`; there
//! the payload is unpickled with the same fds, in the same order.
//!
//! The fds travel in an [`FdList`]: while the package pickles a process, a
//! shared object's reducer moves its fds into the current list and pickles
//! their positions; in the worker the list received with the payload is
//! installed, and the rebuild functions take their fds from it by position.
//! A list owns what it holds, so an fd nobody took is closed with it.
//!
//! Rejected: collecting fds in a Rust global (pickling runs Python code,
//! and another thread may start another process meanwhile: the list is
//! the package's, per thread); passing fd numbers inside the pickle (they
//! mean nothing in another process).

use std::ffi::OsString;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::sync::Mutex;

use forkbridge::binding::{self, ForeignWorker};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::IntoPyResult;
use crate::events::{Event, EventGroup};
use crate::intercom::Intercom;
use crate::process::lock;
use crate::sys::{self, PythonForkHooks};

/// Fds that go with a pickle, by position (see the module docs).
#[pyclass(frozen, module = "forkbridge._native")]
pub(crate) struct FdList {
    fds: Mutex<Vec<Option<OwnedFd>>>,
}

impl FdList {
    pub(crate) fn from_fds(fds: Vec<OwnedFd>) -> FdList {
        FdList {
            fds: Mutex::new(fds.into_iter().map(Some).collect()),
        }
    }

    /// Adds `fds` at the end; their positions.
    fn extend(&self, fds: Vec<OwnedFd>) -> Vec<usize> {
        let mut list = lock(&self.fds);
        let first = list.len();
        list.extend(fds.into_iter().map(Some));
        (first..list.len()).collect()
    }

    /// Takes the fd at `i` (each is taken once).
    fn take_owned(&self, i: usize) -> PyResult<OwnedFd> {
        lock(&self.fds)
            .get_mut(i)
            .and_then(Option::take)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "fd {i} of the pickle is missing or was taken already"
                ))
            })
    }

    /// Every fd not taken yet, in order.
    pub(crate) fn drain(&self) -> Vec<OwnedFd> {
        lock(&self.fds).drain(..).flatten().collect()
    }
}

#[pymethods]
impl FdList {
    #[new]
    fn new() -> FdList {
        FdList::from_fds(Vec::new())
    }

    /// Adds a duplicate of `fd` (which stays the caller's); its position.
    fn add(&self, fd: i32) -> PyResult<usize> {
        let dup = sys::dup_fd(fd).map_err(PyErr::from)?;
        Ok(self.extend(vec![dup])[0])
    }

    /// Takes the fd at `i`: the caller owns (and closes) the number.
    fn take(&self, i: usize) -> PyResult<i32> {
        Ok(self.take_owned(i)?.into_raw_fd())
    }

    /// Closes every fd not taken.
    fn close(&self) {
        drop(self.drain());
    }

    fn __len__(&self) -> usize {
        lock(&self.fds).len()
    }
}

/// The bytes and fd positions of a shared object (`Event`, `EventGroup`),
/// its fds moved into `fds`: what its reducer pickles.
#[pyfunction]
pub(crate) fn encode_shared(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    fds: &FdList,
) -> PyResult<(Py<PyBytes>, Vec<usize>)> {
    let (bytes, owned) = if let Ok(event) = obj.cast::<Event>() {
        binding::encode_shared(&event.get().inner).py_err()?
    } else if let Ok(group) = obj.cast::<EventGroup>() {
        binding::encode_shared(group.get().inner()).py_err()?
    } else {
        return Err(PyTypeError::new_err(format!(
            "not a shared object of forkbridge: {}",
            obj.get_type().name()?
        )));
    };
    Ok((PyBytes::new(py, &bytes).unbind(), fds.extend(owned)))
}

/// The reverse of `encode_shared`: `kind` is "Event" or "EventGroup".
#[pyfunction]
pub(crate) fn decode_shared(
    py: Python<'_>,
    kind: &str,
    bytes: &[u8],
    positions: Vec<usize>,
    fds: &FdList,
) -> PyResult<Py<PyAny>> {
    let owned = positions
        .into_iter()
        .map(|i| fds.take_owned(i))
        .collect::<PyResult<Vec<_>>>()?;
    match kind {
        "Event" => {
            let inner = binding::decode_shared(bytes, owned).py_err()?;
            Ok(Py::new(py, Event { inner })?.into_any())
        }
        "EventGroup" => {
            let inner = binding::decode_shared(bytes, owned).py_err()?;
            Ok(Py::new(py, EventGroup::from_inner(inner))?.into_any())
        }
        other => Err(PyValueError::new_err(format!(
            "not a shared object of forkbridge: {other}"
        ))),
    }
}

/// A worker between its boot frame and its loop (see `_worker.py`).
#[pyclass(frozen, module = "forkbridge._native")]
pub(crate) struct Worker {
    inner: Mutex<Option<ForeignWorker>>,
}

impl Worker {
    fn take(&self) -> PyResult<ForeignWorker> {
        lock(&self.inner)
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("the worker is ready or failed already"))
    }
}

#[pymethods]
impl Worker {
    /// The pickle the frontend sent.
    fn payload<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let guard = lock(&self.inner);
        let worker = guard
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("the worker is ready or failed already"))?;
        Ok(PyBytes::new(py, worker.payload()))
    }

    /// The fds that came with the payload.
    fn take_fds(&self) -> PyResult<FdList> {
        let mut guard = lock(&self.inner);
        let worker = guard
            .as_mut()
            .ok_or_else(|| PyRuntimeError::new_err("the worker is ready or failed already"))?;
        Ok(FdList::from_fds(worker.take_fds()))
    }

    /// Tells the frontend the worker runs (its `start()` returns); the
    /// backend's end of the intercom.
    #[pyo3(signature = (lend = false))]
    fn ready(&self, lend: bool) -> PyResult<Intercom> {
        let intercom = self.take()?.ready().map_err(PyRuntimeError::new_err)?;
        Ok(Intercom::new(intercom, lend))
    }

    /// Tells the frontend why the worker cannot run (its `start()` raises
    /// it), and exits with status 2.
    fn fail(&self, message: String) -> PyResult<()> {
        flush_std(None);
        self.take()?.fail(message)
    }
}

/// In a process spawned as a worker: the worker, set up as its boot frame
/// says; `None` if this process was not spawned as one.
#[pyfunction]
pub(crate) fn accept_worker() -> PyResult<Option<Worker>> {
    match binding::accept_worker() {
        None => Ok(None),
        Some(Ok(worker)) => Ok(Some(Worker {
            inner: Mutex::new(Some(worker)),
        })),
        Some(Err(message)) => Err(PyRuntimeError::new_err(message)),
    }
}

/// The command later fork servers run (program, then arguments).
#[pyfunction]
pub(crate) fn set_fork_server_command(command: Vec<OsString>) -> PyResult<()> {
    if command.is_empty() {
        return Err(PyValueError::new_err("the command is empty"));
    }
    binding::set_fork_server_command(command);
    Ok(())
}

/// In a fork server: serves fork requests and never returns; each worker
/// calls `child(worker)` and exits with the int it returns. Returns `False`
/// if this process is not a fork server.
///
/// The GIL stays held throughout: the server has one thread, and each fork
/// runs CPython's fork protocol (`PythonForkHooks`), after which the worker
/// goes on with the GIL, as `os.fork()`'s child does.
#[pyfunction]
pub(crate) fn serve_forks(py: Python<'_>, child: Py<PyAny>) -> bool {
    let mut run = |fd: OwnedFd| -> i32 {
        // The server ignores SIGINT and its child starts with default
        // handlers: give the worker Python's (KeyboardInterrupt), as a
        // forked backend has; its boot frame may then ignore it.
        if let Err(e) = restore_sigint(py) {
            e.print(py);
        }
        let worker = match binding::accept_served(fd) {
            Ok(worker) => worker,
            Err(message) => {
                eprintln!("forkbridge worker: {message}");
                return 2;
            }
        };
        let worker = Worker {
            inner: Mutex::new(Some(worker)),
        };
        let code = match child.call1(py, (worker,)) {
            Ok(code) => code.extract::<i32>(py).unwrap_or(1),
            Err(e) => {
                e.print(py);
                1
            }
        };
        flush_std(Some(py));
        code
    };
    binding::serve_forks(Some(&PythonForkHooks), &mut run).is_some()
}

fn restore_sigint(py: Python<'_>) -> PyResult<()> {
    let signal = py.import("signal")?;
    let handler = signal.getattr("default_int_handler")?;
    signal.call_method1("signal", (libc::SIGINT, handler))?;
    Ok(())
}

/// Flushes Python's `sys.stdout` and `sys.stderr` before an `_exit`.
fn flush_std(py: Option<Python<'_>>) {
    let flush = |py: Python<'_>| {
        if let Ok(sys) = py.import("sys") {
            for name in ["stdout", "stderr"] {
                if let Ok(stream) = sys.getattr(name) {
                    let _ = stream.call_method0("flush");
                }
            }
        }
    };
    match py {
        Some(py) => flush(py),
        None => Python::attach(flush),
    }
}
