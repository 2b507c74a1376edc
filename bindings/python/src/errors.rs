//! The exceptions the native module raises, and the mapping from the core's
//! [`forkbridge::ErrorKind`].

use forkbridge::{Error, ErrorKind};
use pyo3::exceptions::{PyEOFError, PyException, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

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

const UNREADABLE_DOC: &str = "\
A message from the backend that cannot be read here, skipped: a frame that \
does not decode or is over `max_message_size` (`command` is then ''), or a \
value that does not unpickle in this process (the loader's exception is the \
`__cause__`; `command` is the message's, '' for an object that is not a \
`MessageObject`). The next receive returns the message after it. Both a \
`ForkbridgeError` and a `ValueError`.";

static UNREADABLE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `UnreadableMessage`: two bases, which `create_exception!` cannot give,
/// so the class is made as Python makes one.
fn unreadable_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    UNREADABLE
        .get_or_try_init(py, || {
            let bases = PyTuple::new(
                py,
                [
                    py.get_type::<ForkbridgeError>(),
                    py.get_type::<PyValueError>(),
                ],
            )?;
            let dict = PyDict::new(py);
            dict.set_item("__module__", "forkbridge")?;
            dict.set_item("__doc__", UNREADABLE_DOC)?;
            dict.set_item("command", "")?;
            let ty = py
                .get_type::<PyType>()
                .call1(("UnreadableMessage", bases, dict))?;
            Ok::<_, PyErr>(ty.cast_into::<PyType>()?.unbind())
        })
        .map(|ty| ty.bind(py))
}

/// An `UnreadableMessage` saying `text`, about a message with `command`,
/// raised because of `cause`.
pub(crate) fn unreadable(
    py: Python<'_>,
    text: String,
    command: &str,
    cause: Option<PyErr>,
) -> PyErr {
    let ty = match unreadable_type(py) {
        Ok(ty) => ty.clone(),
        Err(e) => return e,
    };
    let err = PyErr::from_type(ty, text);
    if let Err(e) = err.value(py).setattr("command", command) {
        return e;
    }
    err.set_cause(py, cause);
    err
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ForkbridgeError", py.get_type::<ForkbridgeError>())?;
    m.add("BackendGone", py.get_type::<BackendGone>())?;
    m.add("NotEnoughEvents", py.get_type::<NotEnoughEvents>())?;
    m.add("UnreadableMessage", unreadable_type(py)?)?;
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
