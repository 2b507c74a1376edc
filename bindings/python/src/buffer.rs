//! `ReceivedBuffer`: bytes that arrived from the other side, lent to Python
//! without a copy.
//!
//! A received numpy array's data arrives as an out-of-band pickle buffer
//! (`Value::Pickled::buffers`). Turning it into `bytes` would copy a frame
//! once more; instead the allocation is handed to this object, which
//! exports it through the buffer protocol — writable, like a `bytearray` —
//! and `pickle.loads(data, buffers=...)` lets numpy build the array on it.
//! The array keeps this object alive, and it frees the memory when the last
//! view is gone.
//!
//! `LentView` is the sending side's counterpart: an array's buffer lent to
//! the message being encoded, so it is copied once, into the socket buffer
//! or a shared-memory slot.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::fmt;

use forkbridge::LentBytes;
use pyo3::buffer::PyBuffer;
use pyo3::ffi;
use pyo3::prelude::*;

/// A heap allocation owned by Python through the buffer protocol.
#[pyclass(frozen, module = "forkbridge._native")]
pub(crate) struct ReceivedBuffer {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the allocation is owned by this object alone; Rust never reads or
// writes it after `new`, and Python reaches it only through buffer views,
// whose concurrent use follows the same rules as a `bytearray`'s.
unsafe impl Send for ReceivedBuffer {}
// SAFETY: as above: no Rust code dereferences `ptr` through a shared
// reference.
unsafe impl Sync for ReceivedBuffer {}

impl ReceivedBuffer {
    pub(crate) fn new(bytes: Vec<u8>) -> ReceivedBuffer {
        let boxed = bytes.into_boxed_slice();
        let len = boxed.len();
        ReceivedBuffer {
            ptr: Box::into_raw(boxed).cast::<u8>(),
            len,
        }
    }
}

impl Drop for ReceivedBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from `Box::into_raw` of a boxed slice of
        // exactly `len` bytes in `new`, and are freed only here, once. Python
        // holds a reference to this object for every live buffer view
        // (`PyBuffer_FillInfo` stores one in `view.obj`), so no view
        // outlives the allocation.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len)) });
    }
}

#[pymethods]
impl ReceivedBuffer {
    /// # Safety
    ///
    /// Called by CPython with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        // SAFETY: `view` is valid (CPython's contract for getbufferproc);
        // `ptr` points at `len` live bytes owned by `slf`, which
        // `PyBuffer_FillInfo` keeps alive by storing a new reference to it
        // in `view.obj`; the memory is writable (readonly = 0).
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                this.ptr.cast(),
                this.len as ffi::Py_ssize_t,
                0,
                flags,
            )
        };
        if rc == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    fn __len__(&self) -> usize {
        self.len
    }
}

/// A contiguous buffer of a Python object (a numpy array's data, through a
/// protocol-5 `PickleBuffer`), lent to a message being sent: the encoder
/// copies it straight into the socket buffer or a shared-memory slot, with
/// no intermediate `Vec`.
pub(crate) struct LentView(PyBuffer<u8>);

impl LentView {
    /// `None` unless the buffer is C-contiguous bytes.
    pub(crate) fn new(view: PyBuffer<u8>) -> Option<LentView> {
        view.is_c_contiguous().then_some(LentView(view))
    }
}

impl fmt::Debug for LentView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LentView")
            .field("len", &self.0.len_bytes())
            .finish()
    }
}

impl LentBytes for LentView {
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: the `PyBuffer` holds an export of the object, which keeps
        // its memory allocated and in place (numpy refuses to resize an
        // exported array) for as long as this value lives; the buffer is
        // C-contiguous, `len_bytes` long (checked in `new`). Python code may
        // only change it while holding the GIL, and the binding reads it
        // only while holding the GIL itself: a message holding a `LentView`
        // is encoded and dropped before the GIL is released (see
        // `Process::send_message` and `Intercom::send_message`).
        unsafe { std::slice::from_raw_parts(self.0.buf_ptr().cast::<u8>(), self.0.len_bytes()) }
    }
}
