//! numpy arrays without running `pickle.dumps` for each one.
//!
//! A contiguous array crosses as a protocol-5 pickle whose data goes out of
//! band (see `convert::pickled`). That pickle's in-band part names numpy's
//! rebuild function and holds the dtype, the shape, the order and whether
//! the buffer is read-only — nothing else — yet producing it costs ~15 µs
//! per array here (numpy's `__reduce_ex__` imports its rebuild function by
//! name each time and pickles the dtype), about as much as copying a 1 MiB
//! frame into shared memory and several times a small message's whole trip.
//! So the in-band bytes of the first arrays of each kind are kept, keyed by
//! what they depend on, and an array of a kind seen before costs a few
//! attribute reads plus its buffer.
//!
//! The key holds the dtype (equal dtypes: a received array's dtype is a
//! fresh object equal to the builtin one, so identity alone would miss
//! every echoed frame), the shape tuple, the order and the writability.
//! Only dtypes without fields and without metadata are cached — for those,
//! equal dtypes pickle to the same bytes; a structured dtype's field names
//! can even be reassigned in place, and numpy's equality ignores metadata.
//! Subclasses of `ndarray` are never cached either (their `__reduce_ex__`
//! may add state). Everything else goes through `pickle.dumps` exactly as
//! before, which is also how each entry is made.
//!
//! Receiving is the mirror image: `pickle.loads` spends most of its ~6 µs
//! rebuilding the dtype from its pickle, so the in-band bytes of arrays
//! received before are kept with the kind they turned out to be, and an
//! array whose bytes match is built directly — `numpy.frombuffer` on the
//! received buffer and `reshape`, exactly what numpy's own rebuild function
//! (`_frombuffer`) does with what those bytes say.
//!
//! Rejected: building the pickle bytes by hand (numpy's rebuild function
//! and dtype pickling differ between numpy versions; copying what numpy
//! itself produced cannot drift).

use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// Kinds of arrays remembered at once; a program sends a few.
const ENTRIES: usize = 16;

/// What an array's protocol-5 pickle depends on.
pub(crate) struct Kind {
    dtype: Py<PyAny>,
    shape: Py<PyTuple>,
    c_order: bool,
    writeable: bool,
}

struct Entry {
    kind: Kind,
    data: Vec<u8>,
}

/// Entries are shared out of the lock: no Python code (a comparison, a
/// destructor) ever runs while it is held, so a thread that releases the
/// GIL inside one cannot deadlock with a thread waiting for the lock.
struct Cache {
    entries: Vec<Arc<Entry>>,
    /// The entry a new kind replaces once the cache is full.
    next: usize,
}

/// Kinds sent: their in-band pickle by kind.
static SENT: Mutex<Cache> = Mutex::new(Cache::new());
/// Kinds received: their kind by in-band pickle.
static RECEIVED: Mutex<Cache> = Mutex::new(Cache::new());

/// `numpy.frombuffer`, once an array has been received.
static FROMBUFFER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

impl Cache {
    const fn new() -> Cache {
        Cache {
            entries: Vec::new(),
            next: 0,
        }
    }

    /// Adds an entry; returns the one it replaced, for the caller to drop
    /// after letting go of the lock.
    fn insert(&mut self, kind: Kind, data: &[u8]) -> Option<Arc<Entry>> {
        let entry = Arc::new(Entry {
            kind,
            data: data.to_vec(),
        });
        if self.entries.len() < ENTRIES {
            self.entries.push(entry);
            None
        } else {
            let at = self.next;
            self.next = (at + 1) % ENTRIES;
            Some(std::mem::replace(&mut self.entries[at], entry))
        }
    }
}

fn lock(cache: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    cache.lock().unwrap_or_else(|e| e.into_inner())
}

/// `numpy.ndarray`, once an array has been seen.
static NDARRAY: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// An exact `numpy.ndarray` whose pickle this module may remember: its
/// kind, or `None` (any other object, a subclass, a structured dtype, an
/// array neither C- nor Fortran-contiguous). Never an error: anything odd
/// only means the array takes pickle's own path.
pub(crate) fn kind_of(obj: &Bound<'_, PyAny>) -> Option<Kind> {
    try_kind_of(obj).ok().flatten()
}

fn try_kind_of(obj: &Bound<'_, PyAny>) -> PyResult<Option<Kind>> {
    let py = obj.py();
    let ty = obj.get_type();
    match NDARRAY.get(py) {
        Some(ndarray) => {
            if !ty.is(ndarray.bind(py)) {
                return Ok(None);
            }
        }
        None => {
            if ty.name()? != "ndarray" || ty.module()? != "numpy" {
                return Ok(None);
            }
            let _ = NDARRAY.set(py, ty.clone().unbind());
        }
    }
    let dtype = obj.getattr("dtype")?;
    if !dtype.getattr("fields")?.is_none() || !dtype.getattr("metadata")?.is_none() {
        return Ok(None);
    }
    let flags = obj.getattr("flags")?;
    let c_order = flags.getattr("c_contiguous")?.is_truthy()?;
    if !c_order && !flags.getattr("f_contiguous")?.is_truthy()? {
        return Ok(None);
    }
    Ok(Some(Kind {
        dtype: dtype.unbind(),
        shape: obj.getattr("shape")?.cast_into::<PyTuple>()?.unbind(),
        c_order,
        writeable: flags.getattr("writeable")?.is_truthy()?,
    }))
}

impl Kind {
    fn same(&self, py: Python<'_>, other: &Kind) -> PyResult<bool> {
        Ok(self.c_order == other.c_order
            && self.writeable == other.writeable
            && self.shape.bind(py).eq(other.shape.bind(py))?
            && (self.dtype.is(&other.dtype) || self.dtype.bind(py).eq(other.dtype.bind(py))?))
    }
}

/// The remembered in-band pickle of arrays of `kind`, if any (a comparison
/// that raises is a miss).
pub(crate) fn cached(py: Python<'_>, kind: &Kind) -> Option<Vec<u8>> {
    let entries = lock(&SENT).entries.clone();
    entries
        .iter()
        .find(|entry| entry.kind.same(py, kind).unwrap_or(false))
        .map(|entry| entry.data.clone())
}

/// Remembers `data`, the in-band pickle `pickle.dumps` made for an array of
/// `kind` with its one buffer out of band.
pub(crate) fn remember(kind: Kind, data: &[u8]) {
    let replaced = lock(&SENT).insert(kind, data);
    drop(replaced);
}

/// Remembers that `pickle.loads` made an array of `kind` from the in-band
/// pickle `data` and one buffer.
pub(crate) fn learn(kind: Kind, data: &[u8]) {
    let replaced = {
        let mut received = lock(&RECEIVED);
        if received.entries.iter().any(|e| e.data == data) {
            return; // `kind` is dropped after the lock
        }
        received.insert(kind, data)
    };
    drop(replaced);
}

/// The array the in-band pickle `data` makes of `buffer`, built without
/// `pickle.loads` if arrays from the same bytes were received before.
pub(crate) fn rebuild<'py>(
    py: Python<'py>,
    data: &[u8],
    buffer: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let found = lock(&RECEIVED)
        .entries
        .iter()
        .find(|e| e.data == data)
        .cloned();
    let Some(entry) = found else {
        return Ok(None);
    };
    let Kind {
        dtype,
        shape,
        c_order,
        writeable,
    } = &entry.kind;
    let frombuffer = FROMBUFFER.get_or_try_init(py, || {
        py.import("numpy")?.getattr("frombuffer").map(Bound::unbind)
    })?;
    let flat = frombuffer.bind(py).call1((buffer, dtype.bind(py)))?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("order", if *c_order { "C" } else { "F" })?;
    let array = flat.call_method("reshape", (shape.bind(py),), Some(&kwargs))?;
    if !*writeable {
        array.getattr("flags")?.setattr("writeable", false)?;
    }
    Ok(Some(array))
}
