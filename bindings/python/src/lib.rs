//! `forkbridge._native`: the compiled half of the `forkbridge` Python
//! package.
//!
//! # Design
//!
//! The package's public classes (`MessageProcess`, `MainContext`,
//! `SyncIndex`, …) are plain Python in `python/forkbridge/`, so that user
//! subclasses behave exactly as with valkka-multiprocess: `__init__` with
//! any signature, `c__` methods found by name, `run()` and `readPipes__()`
//! overridable. This module supplies what must not be Python: the fork (with
//! CPython's own fork protocol, see `sys.rs`), the intercom (the core's
//! sockets and codec, releasing the GIL while it waits), value conversion,
//! and the process-shared events. Nothing here is meant to be imported by
//! users; the Python package is the API.
//!
//! Every wait releases the GIL and wakes every `SIGNAL_SLICE` (50 ms) to run
//! Python's signal handlers, so Ctrl-C raises `KeyboardInterrupt` out of a
//! blocked receive, as it does out of `multiprocessing.Connection.recv`.

#![deny(unsafe_code)]

use std::time::Duration;

use pyo3::prelude::*;

mod buffer;
mod convert;
mod errors;
mod events;
mod intercom;
mod message;
mod ndarray;
mod process;
mod remote;
mod start;
mod sys;

/// How long a GIL-free wait runs before it checks for Python signals.
pub(crate) const SIGNAL_SLICE: Duration = Duration::from_millis(50);

#[pyfunction(name = "_refresh_pid")]
fn refresh_pid() {
    sys::refresh_pid();
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<message::MessageObject>()?;
    m.add_class::<process::Process>()?;
    m.add_class::<intercom::Intercom>()?;
    m.add_class::<events::EventGroup>()?;
    m.add_class::<events::Event>()?;
    m.add_class::<start::FdList>()?;
    m.add_class::<start::Worker>()?;
    m.add_function(wrap_pyfunction!(start::encode_shared, m)?)?;
    m.add_function(wrap_pyfunction!(start::decode_shared, m)?)?;
    m.add_function(wrap_pyfunction!(start::accept_worker, m)?)?;
    m.add_function(wrap_pyfunction!(start::set_fork_server_command, m)?)?;
    m.add_function(wrap_pyfunction!(start::serve_forks, m)?)?;
    errors::register(m)?;
    remote::register(m)?;
    m.add_function(wrap_pyfunction!(refresh_pid, m)?)?;
    // A fork made by `os.fork` or `multiprocessing` must refresh the cached
    // pid too (see `sys::getpid`).
    sys::refresh_pid();
    let register_at_fork = m.py().import("os")?.getattr("register_at_fork")?;
    let kwargs = pyo3::types::PyDict::new(m.py());
    kwargs.set_item("after_in_child", m.getattr("_refresh_pid")?)?;
    register_at_fork.call((), Some(&kwargs))?;
    m.add("OBJECT_COMMAND", convert::OBJECT_COMMAND)?;
    m.add("DEFAULT_MAX_FRAME", process::DEFAULT_MAX_FRAME)?;
    // The fault kinds' wire names, from the core's one enum, so the package
    // never types them again: FAULT_HANDLER_ERROR = "handler_error", ….
    for kind in forkbridge::binding::FaultKind::ALL {
        let name = kind.as_str();
        m.add(format!("FAULT_{}", name.to_uppercase()), name)?;
    }
    Ok(())
}
