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
//! Rejected: building the pickle bytes by hand (numpy's rebuild function
//! and dtype pickling differ between numpy versions; copying what numpy
//! itself produced cannot drift).

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};

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

struct Cache {
    entries: Vec<Entry>,
    /// The entry a new kind replaces once the cache is full.
    next: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    entries: Vec::new(),
    next: 0,
});

/// `numpy.ndarray`, once an array has been seen.
static NDARRAY: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// An exact `numpy.ndarray` whose pickle this module may remember: its
/// kind, or `None` (any other object, a subclass, a structured dtype, an
/// array neither C- nor Fortran-contiguous).
pub(crate) fn kind_of(obj: &Bound<'_, PyAny>) -> PyResult<Option<Kind>> {
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

/// The remembered in-band pickle of arrays of `kind`, if any.
pub(crate) fn cached(py: Python<'_>, kind: &Kind) -> PyResult<Option<Vec<u8>>> {
    let cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    for entry in &cache.entries {
        if entry.kind.same(py, kind)? {
            return Ok(Some(entry.data.clone()));
        }
    }
    Ok(None)
}

/// Remembers `data`, the in-band pickle `pickle.dumps` made for an array of
/// `kind` with its one buffer out of band.
pub(crate) fn remember(kind: Kind, data: &[u8]) {
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let entry = Entry {
        kind,
        data: data.to_vec(),
    };
    if cache.entries.len() < ENTRIES {
        cache.entries.push(entry);
    } else {
        let at = cache.next;
        cache.entries[at] = entry;
        cache.next = (at + 1) % ENTRIES;
    }
}
