//! `MessageObject`, the seed's message class, in native code.
//!
//! It was a pure-Python class with `__slots__`; sending one then meant two
//! attribute lookups through the type (a slot descriptor each) and building
//! one meant a Python `__init__` frame. As a native class both are field
//! reads and writes, which is a tenth of what a small one-way message costs
//! (`py_oneway` in the bench). Behaviour is the Python class's: same
//! constructor, `msg()`, `msg[k]`, `get`, `in`, `==`, `str`, pickling
//! (through `forkbridge._message._rebuild`, as before), unhashable, and
//! subclassable.

use pyo3::basic::CompareOp;
use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// A command plus keyword parameters, what crosses the intercom.
///
/// ``msg()`` returns the command and ``msg["key"]`` a parameter, as in
/// valkka-multiprocess::
///
///     msg = MessageObject("a-command", par1=1, par2=2)
///     msg()          # "a-command"
///     msg["par1"]    # 1
///
/// Parameters cross natively when they are ``None``, ``bool``, ``int``,
/// ``float``, ``str``, ``bytes``, ``list``, ``tuple`` or ``dict`` (so a Rust
/// end reads them), and pickled otherwise.
#[pyclass(module = "forkbridge", subclass)]
pub(crate) struct MessageObject {
    /// The command (a ``str`` for anything that is to cross).
    #[pyo3(get, set)]
    pub(crate) command: Py<PyAny>,
    /// The parameters.
    #[pyo3(get, set)]
    pub(crate) kwargs: Py<PyDict>,
}

#[pymethods]
impl MessageObject {
    /// For `MessageObject` itself, the whole constructor (its `__init__`
    /// then does nothing: the arguments are parsed once). For a subclass,
    /// whose own `__init__` may take other arguments and call
    /// `super().__init__(command, **kw)` as with the seed's class, the
    /// fields are set here when the arguments look like a message's, and
    /// (again) by `__init__`.
    #[new]
    #[classmethod]
    #[pyo3(signature = (*args, **kwargs), text_signature = "(command, **kwargs)")]
    fn new(
        cls: &Bound<'_, PyType>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let py = cls.py();
        match fields(args, kwargs) {
            Ok((command, kwargs)) => Ok(MessageObject { command, kwargs }),
            Err(e) if cls.is(py.get_type::<MessageObject>()) => Err(e),
            Err(_) => Ok(MessageObject {
                command: py.None(),
                kwargs: PyDict::new(py).unbind(),
            }),
        }
    }

    /// See `__new__`.
    #[pyo3(signature = (*args, **kwargs))]
    fn __init__(
        slf: &Bound<'_, Self>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        if slf.get_type().is(slf.py().get_type::<MessageObject>()) {
            return Ok(());
        }
        let (command, kwargs) = fields(args, kwargs)?;
        let mut this = slf.borrow_mut();
        this.command = command;
        this.kwargs = kwargs;
        Ok(())
    }

    fn __call__(&self, py: Python<'_>) -> Py<PyAny> {
        self.command.clone_ref(py)
    }

    fn __getitem__<'py>(&self, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.kwargs
            .bind(key.py())
            .get_item(key)?
            .ok_or_else(|| PyKeyError::new_err(key.clone().unbind()))
    }

    /// A parameter, or ``default`` when the message has none by that name.
    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = key.py();
        Ok(match self.kwargs.bind(py).get_item(key)? {
            Some(value) => value,
            None => default.unwrap_or_else(|| py.None().into_bound(py)),
        })
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.kwargs.bind(key.py()).contains(key)
    }

    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let py = other.py();
        let Ok(other) = other.cast::<MessageObject>() else {
            return Ok(py.NotImplemented());
        };
        let other = other.borrow();
        let equal =
            self.command.bind(py).eq(&other.command)? && self.kwargs.bind(py).eq(&other.kwargs)?;
        Ok(match op {
            CompareOp::Eq => equal.into_pyobject(py)?.to_owned().into_any().unbind(),
            CompareOp::Ne => (!equal).into_pyobject(py)?.to_owned().into_any().unbind(),
            _ => py.NotImplemented(),
        })
    }

    fn __str__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<MessageObject: {}: {}>",
            self.command.bind(py).str()?,
            self.kwargs.bind(py).str()?
        ))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        self.__str__(py)
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        static REBUILD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let rebuild = REBUILD.get_or_try_init(py, || {
            py.import(intern!(py, "forkbridge._message"))?
                .getattr(intern!(py, "_rebuild"))
                .map(Bound::unbind)
        })?;
        let args = PyTuple::new(
            py,
            [
                self.command.clone_ref(py),
                self.kwargs.clone_ref(py).into_any(),
            ],
        )?;
        PyTuple::new(py, [rebuild.clone_ref(py), args.into_any().unbind()])
    }
}

/// The fields of `MessageObject(command, **kwargs)` from a call's
/// arguments (the command positional or by keyword).
fn fields(
    args: &Bound<'_, PyTuple>,
    kwargs: Option<Bound<'_, PyDict>>,
) -> PyResult<(Py<PyAny>, Py<PyDict>)> {
    let py = args.py();
    let keyword = match &kwargs {
        Some(k) => k.get_item(intern!(py, "command"))?,
        None => None,
    };
    let command = match (args.len(), keyword) {
        (1, None) => args.get_item(0)?,
        (0, Some(command)) => {
            let rest = kwargs.as_ref().expect("a keyword came from it").copy()?;
            rest.del_item(intern!(py, "command"))?;
            return Ok((command.unbind(), rest.unbind()));
        }
        (1, Some(_)) => {
            return Err(PyTypeError::new_err(
                "MessageObject() got multiple values for argument 'command'",
            ));
        }
        (n, _) => {
            return Err(PyTypeError::new_err(format!(
                "MessageObject() takes 1 positional argument (the command) but {n} were given"
            )));
        }
    };
    let kwargs = kwargs.unwrap_or_else(|| PyDict::new(py));
    Ok((command.unbind(), kwargs.unbind()))
}

/// A `MessageObject` with these fields.
pub(crate) fn message_object(
    py: Python<'_>,
    command: String,
    kwargs: Bound<'_, PyDict>,
) -> PyResult<Py<PyAny>> {
    let msg = MessageObject {
        command: command.into_pyobject(py)?.into_any().unbind(),
        kwargs: kwargs.unbind(),
    };
    Ok(Py::new(py, msg)?.into_any())
}
