//! The exceptions the native module raises, and the mapping from the core's
//! [`forkbridge::ErrorKind`].

use forkbridge::{Error, ErrorKind};
use pyo3::exceptions::{PyEOFError, PyException, PyTimeoutError, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    forkbridge,
    ForkbridgeError,
    PyException,
    "Base class of forkbridge's own errors."
);
pyo3::create_exception!(
    forkbridge,
    BackendGone,
    PyEOFError,
    "The other side of the intercom is gone (an `EOFError`, like \
     `multiprocessing.Connection.recv` at end of stream)."
);
pyo3::create_exception!(
    forkbridge,
    NotEnoughEvents,
    ForkbridgeError,
    "Every event of the `EventGroup` is reserved (an `Exception` here; \
     valkka-multiprocess derives it from `BaseException`)."
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ForkbridgeError", py.get_type::<ForkbridgeError>())?;
    m.add("BackendGone", py.get_type::<BackendGone>())?;
    m.add("NotEnoughEvents", py.get_type::<NotEnoughEvents>())?;
    Ok(())
}

/// A core error's text with its causes.
pub(crate) fn text(e: &Error) -> String {
    // The core's Display names what failed; its sources say why ("not
    // started as a backend"): Python gets both in one message.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A core error as the Python exception a Python user expects.
pub(crate) fn to_py(e: Error) -> PyErr {
    let text = text(&e);
    match e.kind() {
        ErrorKind::Disconnected => BackendGone::new_err(text),
        ErrorKind::Timeout => PyTimeoutError::new_err(text),
        ErrorKind::NoFreeEvent { .. } => NotEnoughEvents::new_err(text),
        ErrorKind::InvalidArgument
        | ErrorKind::NotReserved
        | ErrorKind::FrameTooLarge { .. }
        | ErrorKind::Encode => PyValueError::new_err(text),
        _ => ForkbridgeError::new_err(text),
    }
}

/// `?` for core results inside Python methods.
pub(crate) trait IntoPyResult<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for forkbridge::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
