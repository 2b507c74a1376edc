//! Python objects ↔ the core's [`Value`] and [`Message`].
//!
//! Exact builtin types cross natively, so a Rust end reads them and a
//! Python end gets back what it sent: `None`, `bool`, `int` (64-bit),
//! `float`, `str`, `bytes`, `list`, `tuple` and `dict` (any keys). Anything
//! else — a subclass (an `enum`, `numpy.float64`), a big `int`, a `set`, a
//! class instance, a numpy array — travels as [`Value::Pickled`] (pickle
//! protocol 5, per value), which only a Python end can read. The exact-type
//! rule is what makes the round trip faithful: a `bool` is not sent as an
//! `int`, an `IntEnum` member is not flattened to its value.

use forkbridge::{Message, Value};

use std::sync::Arc;

use forkbridge::Bytes;

use crate::buffer::{LentView, ReceivedBuffer};
use crate::message::MessageObject;
use crate::ndarray;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// The command of a message that carries one plain Python object (what
/// `send_out__` sends when given something other than a `MessageObject`),
/// in its parameter `"value"`.
pub(crate) const OBJECT_COMMAND: &str = "__object__";

/// The type name a pickled `numpy.ndarray` carries.
const NDARRAY_TYPE: &str = "numpy.ndarray";

/// Deeper nesting than the core's decoder accepts is refused when sending.
const MAX_DEPTH: usize = 120;

/// `pickle.dumps`, `pickle.loads`, `pickle.PickleBuffer`.
type Pickle = (Py<PyAny>, Py<PyAny>, Py<PyAny>);

static PICKLE: PyOnceLock<Pickle> = PyOnceLock::new();

fn pickle(py: Python<'_>) -> PyResult<&Pickle> {
    PICKLE.get_or_try_init(py, || {
        let module = py.import("pickle")?;
        Ok((
            module.getattr("dumps")?.unbind(),
            module.getattr("loads")?.unbind(),
            module.getattr("PickleBuffer")?.unbind(),
        ))
    })
}

/// `obj` as a [`Value`].
pub(crate) fn to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    to_value_at(obj, 0)
}

fn to_value_at(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "values nested deeper than {MAX_DEPTH} levels cannot be sent"
        )));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if obj.is_exact_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.extract::<bool>()?));
    }
    if obj.is_exact_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::Int(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::UInt(u));
        }
        return pickled(obj);
    }
    if obj.is_exact_instance_of::<PyFloat>() {
        return Ok(Value::Float(obj.extract::<f64>()?));
    }
    if let Ok(s) = obj.cast_exact::<PyString>() {
        return Ok(Value::Str(s.to_str()?.to_owned()));
    }
    if let Ok(b) = obj.cast_exact::<PyBytes>() {
        return Ok(Value::Bytes(b.as_bytes().to_vec().into()));
    }
    if let Ok(list) = obj.cast_exact::<PyList>() {
        let mut items = Vec::with_capacity(list.len());
        for item in list.iter() {
            items.push(to_value_at(&item, depth + 1)?);
        }
        return Ok(Value::List(items));
    }
    if let Ok(tuple) = obj.cast_exact::<PyTuple>() {
        let mut items = Vec::with_capacity(tuple.len());
        for item in tuple.iter() {
            items.push(to_value_at(&item, depth + 1)?);
        }
        return Ok(Value::Tuple(items));
    }
    if let Ok(dict) = obj.cast_exact::<PyDict>() {
        let mut entries = Vec::with_capacity(dict.len());
        for (k, v) in dict.iter() {
            entries.push((to_value_at(&k, depth + 1)?, to_value_at(&v, depth + 1)?));
        }
        return Ok(Value::Map(entries));
    }
    pickled(obj)
}

/// `buffer` (a `PickleBuffer`) lent to the message without a copy, if it
/// is contiguous bytes.
fn lent_buffer(buffer: &Bound<'_, PyAny>) -> PyResult<Option<Bytes>> {
    let Ok(raw) = buffer.call_method0("raw") else {
        return Ok(None); // not contiguous
    };
    let view = PyBuffer::<u8>::get(&raw)?;
    Ok(LentView::new(view).map(|lent| Bytes::lent(Arc::new(lent))))
}

fn pickled(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    let py = obj.py();
    // An array of a kind already remembered is not remembered again, even
    // if its buffer takes pickle's own path below.
    let mut kind = ndarray::kind_of(obj);
    if let Some(data) = kind.as_ref().and_then(|k| ndarray::cached(py, k)) {
        kind = None;
        let buffer = pickle(py)?.2.bind(py).call1((obj,))?;
        if let Some(lent) = lent_buffer(&buffer)? {
            return Ok(Value::Pickled {
                type_name: NDARRAY_TYPE.to_owned(),
                data,
                buffers: vec![lent],
            });
        }
    }
    let ty = obj.get_type();
    let type_name = format!("{}.{}", ty.module()?, ty.qualname()?);
    let dumps = pickle(py)?.0.bind(py);
    // Protocol 5 with out-of-band buffers: a numpy array's data is copied
    // once, straight from the array into a buffer of the message, instead
    // of into the pickle and then again.
    let collected = PyList::empty(py);
    let kwargs = PyDict::new(py);
    kwargs.set_item("buffer_callback", collected.getattr("append")?)?;
    let data = dumps.call((obj, 5), Some(&kwargs))?;
    let mut buffers = Vec::with_capacity(collected.len());
    for pickle_buffer in collected.iter() {
        match lent_buffer(&pickle_buffer)? {
            Some(lent) => buffers.push(lent),
            // Not contiguous bytes: let pickle copy it in-band instead.
            None => return pickled_in_band(obj, type_name),
        }
    }
    let data = data.cast::<PyBytes>()?.as_bytes();
    if let Some(kind) = kind
        && buffers.len() == 1
        && type_name == NDARRAY_TYPE
    {
        ndarray::remember(kind, data);
    }
    let data = data.to_vec();
    Ok(Value::Pickled {
        type_name,
        data,
        buffers,
    })
}

fn pickled_in_band(obj: &Bound<'_, PyAny>, type_name: String) -> PyResult<Value> {
    let py = obj.py();
    let data = pickle(py)?.0.bind(py).call1((obj, 5))?;
    Ok(Value::Pickled {
        type_name,
        data: data.cast::<PyBytes>()?.as_bytes().to_vec(),
        buffers: Vec::new(),
    })
}

/// `value` as a Python object (consumed: byte buffers move, not copy).
/// `lend`: out-of-band buffers that arrived in a shared-memory slot stay
/// there, as views (see `ReceivedBuffer`); else they are copied out.
pub(crate) fn to_py(py: Python<'_>, value: Value, lend: bool) -> PyResult<Py<PyAny>> {
    Ok(match value {
        Value::Null => py.None(),
        Value::Bool(b) => PyBool::new(py, b).to_owned().into_any().unbind(),
        Value::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        Value::UInt(u) => u.into_pyobject(py)?.into_any().unbind(),
        Value::Float(f) => f.into_pyobject(py)?.into_any().unbind(),
        Value::Str(s) => PyString::new(py, &s).into_any().unbind(),
        Value::Bytes(b) => PyBytes::new(py, b.as_slice()).into_any().unbind(),
        Value::List(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item, lend)?)?;
            }
            list.into_any().unbind()
        }
        Value::Tuple(items) => {
            let items = items
                .into_iter()
                .map(|item| to_py(py, item, lend))
                .collect::<PyResult<Vec<_>>>()?;
            PyTuple::new(py, items)?.into_any().unbind()
        }
        Value::Map(entries) => {
            let dict = PyDict::new(py);
            for (k, v) in entries {
                dict.set_item(to_py(py, k, lend)?, to_py(py, v, lend)?)?;
            }
            dict.into_any().unbind()
        }
        Value::Pickled { data, buffers, .. } => {
            let loads = pickle(py)?.1.bind(py);
            if buffers.is_empty() {
                loads.call1((PyBytes::new(py, &data),))?.unbind()
            } else {
                // Handed over without a copy: numpy builds the array on it.
                let one = buffers.len() == 1;
                let buffers = buffers
                    .into_iter()
                    .map(|b| Py::new(py, ReceivedBuffer::new(b, lend)))
                    .collect::<PyResult<Vec<_>>>()?;
                // A shortcut that fails leaves the error to pickle's own path.
                if one && let Ok(Some(array)) = ndarray::rebuild(py, &data, buffers[0].bind(py)) {
                    return Ok(array.unbind());
                }
                let kwargs = PyDict::new(py);
                kwargs.set_item("buffers", buffers)?;
                let obj = loads.call((PyBytes::new(py, &data),), Some(&kwargs))?;
                if one && let Some(kind) = ndarray::kind_of(&obj) {
                    ndarray::learn(kind, &data);
                }
                obj.unbind()
            }
        }
        // `Value` may grow; a newer peer's value is an error, not a crash.
        #[allow(unreachable_patterns)]
        other => {
            return Err(PyValueError::new_err(format!(
                "a value of type {} has no Python form",
                other.type_name()
            )));
        }
    })
}

/// A message from a command and its keyword parameters.
pub(crate) fn message(command: &str, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Message> {
    let mut msg = Message::new(command);
    if let Some(kwargs) = kwargs {
        for (k, v) in kwargs.iter() {
            let key = k
                .cast::<PyString>()
                .map_err(|_| PyValueError::new_err("message parameter names must be strings"))?;
            msg.set(key.to_str()?, to_value(&v)?);
        }
    }
    Ok(msg)
}

/// What `send_out__` / `sendMessageToBack` send: a `MessageObject` with a
/// string command as a message, anything else as an object message.
pub(crate) fn any_message(obj: &Bound<'_, PyAny>) -> PyResult<Message> {
    if let Ok(msg) = obj.cast_exact::<MessageObject>() {
        let py = obj.py();
        let msg = msg.borrow();
        if let Ok(command) = msg.command.bind(py).cast_exact::<PyString>() {
            return message(command.to_str()?, Some(msg.kwargs.bind(py)));
        }
    }
    object_message(obj)
}

/// Whether `msg` holds lent buffers, which must be encoded while the GIL
/// is held (see `LentView`).
pub(crate) fn lends(msg: &Message) -> bool {
    fn value(v: &Value) -> bool {
        match v {
            Value::Pickled { buffers, .. } => buffers.iter().any(Bytes::is_lent),
            Value::List(items) | Value::Tuple(items) => items.iter().any(value),
            Value::Map(entries) => entries.iter().any(|(k, v)| value(k) || value(v)),
            _ => false,
        }
    }
    msg.params().any(|(_, v)| value(v))
}

/// A message carrying one plain object (see [`OBJECT_COMMAND`]).
pub(crate) fn object_message(obj: &Bound<'_, PyAny>) -> PyResult<Message> {
    Ok(Message::new(OBJECT_COMMAND).with("value", to_value(obj)?))
}
