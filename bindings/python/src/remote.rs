//! The native half of `forkbridge.remote`: the core's relay seam
//! ([`forkbridge::relay`]) for a transport written in Python.
//!
//! The Python package speaks Zenoh through the `eclipse-zenoh` package; this
//! module gives it what must stay native, so that both ends of a link make
//! and check frames with the Rust core, whatever language each end is in:
//!
//! * [`attach`]: a frontend handle (the `Process` the package's
//!   `MessageProcess` wraps) whose backend is elsewhere, and its far end
//!   ([`RemoteEnd`]): a stream of frames to carry, the reports of how the
//!   backend ended, and the signals the handle asks for;
//! * [`into_relay`]: a started process's stream, handed over ([`Relay`]),
//!   which still stops, signals and reaps the process;
//! * [`FrameReader`]: runs of whole frames from either stream, read with
//!   the GIL released; [`check_frames`]: the check a receiver makes before
//!   a network message reaches a stream;
//! * the pickle rule: `deliver(payload, trusted=False)` replaces every
//!   pickled value in the payload's messages by a pickle of ours that
//!   raises `forkbridge.remote.PicklesRefused` when loaded, so a peer's
//!   pickle never reaches `pickle.loads` unless the program trusts it, and
//!   the reader gets a typed error, in the message's turn, instead.
//!
//! # Design
//!
//! Rewriting at the transport rather than refusing in the handle's
//! decoder: the rule then holds for every reader of the stream (the
//! frontend's `recv`, `returnFromBack`, a served backend's loop) without a
//! second decoding path, and a refused value is an `UnreadableMessage` in
//! its turn, as any value that does not load is: the stream goes on.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Mutex;
use std::time::Duration;

use forkbridge::relay::{self, FrameCheck};
use forkbridge::{MessageProcess, Value};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::IntoPyResult;
use crate::events::EventGroup;
use crate::process::{DEFAULT_MAX_FRAME, Process, lock, seconds};

/// Where `PicklesRefused` is raised from, by the pickle that replaces a
/// refused one.
const REFUSER: (&str, &str) = ("forkbridge.remote", "_refuse_pickle");

/// A handle for the backend served as `name` elsewhere, and its far end
/// for the transport. The handle runs from the start; its stop, joins
/// and signals go through the far end.
#[pyfunction]
#[pyo3(signature = (
    name, *, stop_timeout = 5.0, kill_timeout = 1.0,
    max_frame_size = DEFAULT_MAX_FRAME, lend = false, events = None
))]
pub(crate) fn attach(
    name: String,
    stop_timeout: f64,
    kill_timeout: f64,
    max_frame_size: usize,
    lend: bool,
    events: Option<PyRef<'_, EventGroup>>,
) -> PyResult<(Process, RemoteEnd)> {
    let mut builder = MessageProcess::builder(name)
        .stop_timeout(seconds(stop_timeout)?)
        .kill_timeout(seconds(kill_timeout)?)
        .max_frame_size(max_frame_size);
    let group = events.map(|g| g.inner().clone());
    if let Some(group) = &group {
        builder = builder.events(group);
    }
    let (inner, remote) = builder.attach().py_err()?;
    let process = Process::adopt(inner, stop_timeout, kill_timeout, lend)?;
    Ok((
        process,
        RemoteEnd {
            frames: remote.frames(),
            remote,
            events: group,
        },
    ))
}

/// Takes a started process's stream for a transport: its frames come out
/// of the relay, and frames delivered to it reach the backend. `process`
/// is closed from then on (the relay stops, signals and reaps it).
#[pyfunction]
pub(crate) fn into_relay(py: Python<'_>, process: &Process) -> PyResult<Relay> {
    let inner = process.take_handle(py)?;
    let relay = inner.into_relay().py_err()?;
    Ok(Relay {
        name: relay.name().to_owned(),
        pid: relay.pid(),
        frames: relay.frames(),
        writer: relay.writer().clone(),
        sets: relay.events().py_err()?.map(Mutex::new),
        relay: Mutex::new(relay),
    })
}

/// Whether `payload` is whole frames of at most `max` bytes that may cross
/// hosts; raises as a frame that cannot be read does (`ValueError` for one
/// over the limit, `ForkbridgeError` for one that is malformed or carries
/// what only means something on its host).
#[pyfunction]
pub(crate) fn check_frames(payload: &[u8], max: usize) -> PyResult<()> {
    FrameCheck::new(max).check(payload).py_err()
}

/// The far end of an attached handle (see [`attach`]).
#[pyclass(frozen, module = "forkbridge._native")]
pub(crate) struct RemoteEnd {
    remote: relay::Remote,
    frames: FrameCheck,
    /// The group the backend's event sets land in.
    events: Option<forkbridge::EventGroup>,
}

#[pymethods]
impl RemoteEnd {
    /// The largest frame let through.
    #[getter]
    fn max_frame(&self) -> usize {
        self.frames.max()
    }

    /// A reader of the frames the handle sends.
    fn reader(&self) -> PyResult<FrameReader> {
        FrameReader::new(self.remote.stream().try_clone()?, self.frames)
    }

    /// Writes a network message into the handle's stream if it is whole
    /// frames within the limit (raises otherwise: nothing is written);
    /// pickles in it are replaced unless `trusted`. Never waits: what the
    /// stream cannot take at once is queued (see `wait_delivered`).
    fn deliver(&self, py: Python<'_>, payload: &[u8], trusted: bool) -> PyResult<()> {
        deliver(py, self.remote.writer(), payload, trusted)
    }

    /// Sets the events of a sample of event sets (8-byte indices) in the
    /// group given to `attach`, by slot, reserved or not: Python's indices
    /// are slots, with no generation to check (see `EventGroup`). Returns
    /// how many; raises `ValueError` for a payload that is not whole
    /// indices, an index out of the group, or no group.
    fn deliver_sets(&self, payload: &[u8]) -> PyResult<usize> {
        let group = self.events.as_ref().ok_or_else(|| {
            PyValueError::new_err("event sets arrived for a handle attached without events")
        })?;
        let indices = relay::parse_sets(payload).py_err()?;
        for index in &indices {
            let slot = index.slot();
            let event = group.get(slot).map_err(|_| {
                PyValueError::new_err(format!(
                    "an event set for slot {slot} of a group of {}",
                    group.len()
                ))
            })?;
            event.set();
        }
        Ok(indices.len())
    }

    /// Waits up to `timeout` seconds, without the GIL, until at least
    /// `total` bytes were written into the handle's stream: how many were
    /// (`None`: not that many in time). Raises once the stream is gone.
    fn wait_delivered(&self, py: Python<'_>, total: u64, timeout: f64) -> PyResult<Option<u64>> {
        wait_delivered(py, self.remote.writer(), total, timeout)
    }

    /// The backend exited with this raw wait status: the handle delivers
    /// what the stream holds, then `BackendGone` with it.
    fn report_exit(&self, py: Python<'_>, raw: i32) -> PyResult<()> {
        py.detach(|| self.remote.report_exit(ExitStatus::from_raw(raw)))
            .py_err()
    }

    /// The backend's host or the link to it was lost: the handle's waits
    /// end with `BackendGone` saying so.
    fn report_lost(&self, py: Python<'_>, reason: &str) -> PyResult<()> {
        py.detach(|| self.remote.report_lost(reason)).py_err()
    }

    /// The next signal the handle asks for, waiting up to `timeout`
    /// seconds (`None`: none came); `BackendGone` once the handle is gone.
    #[pyo3(signature = (timeout = None))]
    fn next_signal(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<i32>> {
        let timeout = match timeout {
            Some(t) => seconds(t)?,
            None => Duration::MAX,
        };
        py.detach(|| self.remote.next_signal(timeout)).py_err()
    }
}

/// A started process's stream and lifecycle, handed over (see
/// [`into_relay`]).
#[pyclass(frozen, module = "forkbridge._native")]
pub(crate) struct Relay {
    name: String,
    pid: Option<i32>,
    frames: FrameCheck,
    /// The relay's writer, kept outside its lock: a delivery must not
    /// wait for a `wait` to end (`stop` takes the writer's lock itself).
    writer: relay::FrameWriter,
    relay: Mutex<relay::Relay>,
    /// The backend's sets in the relayed group bound to its process.
    sets: Option<Mutex<relay::EventSets>>,
}

#[pymethods]
impl Relay {
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The process's pid on this host.
    #[getter]
    fn pid(&self) -> Option<i32> {
        self.pid
    }

    #[getter]
    fn max_frame(&self) -> usize {
        self.frames.max()
    }

    /// A reader of the frames the backend sends.
    fn reader(&self, py: Python<'_>) -> PyResult<FrameReader> {
        let stream = py.detach(|| lock(&self.relay).stream().try_clone())?;
        FrameReader::new(stream, self.frames)
    }

    /// As [`RemoteEnd::deliver`], into the backend's stream.
    fn deliver(&self, py: Python<'_>, payload: &[u8], trusted: bool) -> PyResult<()> {
        deliver(py, &self.writer, payload, trusted)
    }

    /// As [`RemoteEnd::wait_delivered`], for the backend's stream.
    fn wait_delivered(&self, py: Python<'_>, total: u64, timeout: f64) -> PyResult<Option<u64>> {
        wait_delivered(py, &self.writer, total, timeout)
    }

    /// Whether the process has a relayed group whose sets to carry.
    #[getter]
    fn has_events(&self) -> bool {
        self.sets.is_some()
    }

    /// The backend's next event sets (8-byte indices, for
    /// `RemoteEnd.deliver_sets` on the frontend's host), waiting up to
    /// `timeout` seconds without the GIL; `None` if none came.
    fn next_sets<'py>(
        &self,
        py: Python<'py>,
        timeout: f64,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let Some(sets) = &self.sets else {
            return Ok(None);
        };
        let timeout = seconds(timeout)?;
        let payload = py.detach(|| lock(sets).next_timeout(timeout)).py_err()?;
        Ok(payload.map(|p| PyBytes::new(py, &p)))
    }

    /// Sends `sig` to the process (nothing once it has exited).
    fn signal(&self, py: Python<'_>, sig: i32) -> PyResult<()> {
        match py.detach(|| lock(&self.relay).signal(sig)) {
            Err(e) if gone(&e) => Ok(()),
            other => other.py_err(),
        }
    }

    /// Waits up to `timeout` seconds for the process to exit and reaps it:
    /// its raw wait status, or `None` if it still runs or its status
    /// cannot be known.
    fn wait(&self, py: Python<'_>, timeout: f64) -> PyResult<Option<i32>> {
        let timeout = seconds(timeout)?;
        Ok(status_of(
            py.detach(|| lock(&self.relay).wait_timeout(timeout)),
        ))
    }

    /// Stops the process (stop request, then `SIGTERM`, then `SIGKILL`,
    /// within its bounds) and reaps it: its raw wait status, or `None` if
    /// it cannot be known.
    fn stop(&self, py: Python<'_>) -> Option<i32> {
        status_of(py.detach(|| lock(&self.relay).stop()))
    }

    fn __repr__(&self) -> String {
        format!("<forkbridge._native.Relay {:?}>", self.name)
    }
}

fn wait_delivered(
    py: Python<'_>,
    writer: &relay::FrameWriter,
    total: u64,
    timeout: f64,
) -> PyResult<Option<u64>> {
    let timeout = seconds(timeout)?;
    py.detach(|| writer.wait_delivered(total, timeout)).py_err()
}

/// Runs of whole frames from a stream (the sending half of a transport).
#[pyclass(frozen, module = "forkbridge._native")]
pub(crate) struct FrameReader {
    fd: i32,
    inner: Mutex<relay::FrameReader<UnixStream>>,
}

impl FrameReader {
    fn new(stream: UnixStream, frames: FrameCheck) -> PyResult<FrameReader> {
        Ok(FrameReader {
            fd: stream.as_raw_fd(),
            inner: Mutex::new(relay::FrameReader::new(stream, frames)),
        })
    }
}

#[pymethods]
impl FrameReader {
    /// The next run of whole frames, waiting for it without the GIL;
    /// `None` once the stream has ended (or its read failed). A frame that
    /// must not cross raises (`ValueError` over the limit,
    /// `ForkbridgeError` otherwise) and is dropped: call again for the
    /// frames after it.
    fn next_run<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let got = py.detach(|| {
            let mut inner = lock(&self.inner);
            match inner.next_run() {
                Ok(Some(run)) => Ok(Some(run.to_vec())),
                Ok(None) => Ok(None),
                Err(e) if e.kind() == &forkbridge::ErrorKind::Io => Ok(None),
                Err(e) => Err(e),
            }
        });
        Ok(got.py_err()?.map(|run| PyBytes::new(py, &run)))
    }

    /// The stream's fd (the reader's own duplicate).
    fn fileno(&self) -> i32 {
        self.fd
    }
}

/// Writes a network message into a stream through its writer (checked
/// there), its pickles replaced unless `trusted`.
fn deliver(
    py: Python<'_>,
    writer: &relay::FrameWriter,
    payload: &[u8],
    trusted: bool,
) -> PyResult<()> {
    let replaced = if trusted {
        None
    } else {
        writer.frames().check(payload).py_err()?;
        forkbridge::binding::replace_pickles(payload, writer.frames().max(), &mut refusal)
            .py_err()?
    };
    let bytes = replaced.as_deref().unwrap_or(payload);
    py.detach(|| writer.deliver(bytes)).py_err()
}

/// What stands in for a refused pickle of `type_name`: a pickle whose
/// loading calls `forkbridge.remote._refuse_pickle(type_name)`, which
/// raises `PicklesRefused`. Hand-written opcodes (protocol 2): GLOBAL,
/// the argument, TUPLE1, REDUCE, STOP.
fn refusal(type_name: &str) -> Value {
    let mut data = vec![0x80, 2, b'c'];
    data.extend_from_slice(format!("{}\n{}\n", REFUSER.0, REFUSER.1).as_bytes());
    data.push(b'X'); // BINUNICODE: u32 LE length, UTF-8
    data.extend_from_slice(&(type_name.len() as u32).to_le_bytes());
    data.extend_from_slice(type_name.as_bytes());
    data.extend_from_slice(&[0x85, b'R', b'.']);
    Value::Pickled {
        type_name: type_name.to_owned(),
        data,
        buffers: Vec::new(),
    }
}

/// Whether a signal failed because the process has exited (`ESRCH`).
fn gone(e: &forkbridge::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.raw_os_error() == Some(libc::ESRCH))
}

/// A reaped status as its raw integer (`None`: unknown).
fn status_of(result: forkbridge::Result<ExitStatus>) -> Option<i32> {
    match result {
        Ok(status) => Some(status.into_raw()),
        Err(e) => e.exit_status().map(ExitStatusExt::into_raw),
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RemoteEnd>()?;
    m.add_class::<Relay>()?;
    m.add_class::<FrameReader>()?;
    m.add_function(wrap_pyfunction!(attach, m)?)?;
    m.add_function(wrap_pyfunction!(into_relay, m)?)?;
    m.add_function(wrap_pyfunction!(check_frames, m)?)?;
    Ok(())
}
