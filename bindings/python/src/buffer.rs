//! `ReceivedBuffer`: bytes that arrived from the other side, lent to Python
//! without a copy.
//!
//! A received numpy array's data arrives as an out-of-band pickle buffer
//! (`Value::Pickled::buffers`). Turning it into `bytes` would copy a frame
//! once more; instead the memory is handed to this object, which exports it
//! through the buffer protocol — writable, like a `bytearray` — and
//! `pickle.loads(data, buffers=...)` lets numpy build the array on it. The
//! memory is the decoder's allocation (the socket path, or a frame copied
//! out of its shared-memory slot) or, when the process lends received
//! buffers (`lend_received_buffers`), the lane's slot itself: the frame is
//! then read where the sender wrote it, and copying it out would have cost
//! as much as the sender's copy in. Lending is opt-in because the lane has
//! two slots each way: a program that keeps two views (frames collected in
//! a list) sends every later large message through the socket. The array
//! keeps this object alive; when the last view is gone it frees the
//! allocation or gives the slot back.
//!
//! `LentView` is the sending side's counterpart: an array's buffer lent to
//! the message being encoded, so it is copied once, into the socket buffer
//! or a shared-memory slot.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::fmt;

use forkbridge::{Bytes, LentBytes};
use pyo3::buffer::PyBuffer;
use pyo3::ffi;
use pyo3::prelude::*;

/// Received bytes owned by Python through the buffer protocol: a heap
/// allocation (bytes that came through the socket), or a view of the
/// shared-memory slot a large message arrived in (`Bytes` lent by the lane).
#[pyclass(frozen, module = "forkbridge._native")]
pub(crate) struct ReceivedBuffer {
    /// Where the bytes start: the allocation, or the slot.
    ptr: *mut u8,
    len: usize,
    /// For a slot: the value that keeps it this process's (the slot goes
    /// back to the sender when this is dropped). `None`: `ptr` is ours.
    lent: Option<Bytes>,
}

// SAFETY: the bytes are this object's alone (an allocation made for it, or a
// lane slot held for it, which the sender does not touch until it is
// released); Rust never reads or writes them after `new`, and Python
// reaches them only through buffer views, whose concurrent use follows the
// same rules as a `bytearray`'s.
unsafe impl Send for ReceivedBuffer {}
// SAFETY: as above: no Rust code dereferences `ptr`.
unsafe impl Sync for ReceivedBuffer {}

impl ReceivedBuffer {
    /// Takes `bytes` over: an owned value becomes the allocation; a lent
    /// one keeps lending if `lend` (its slot stays held while Python uses
    /// the buffer), else it is copied out and its slot given back at once.
    pub(crate) fn new(bytes: Bytes, lend: bool) -> ReceivedBuffer {
        if lend && bytes.is_lent() {
            return ReceivedBuffer {
                // The only address taken from the lent value; no reference
                // into the slot is kept.
                ptr: bytes.as_slice().as_ptr().cast_mut(),
                len: bytes.len(),
                lent: Some(bytes),
            };
        }
        let boxed = bytes.into_vec().into_boxed_slice();
        let len = boxed.len();
        ReceivedBuffer {
            ptr: Box::into_raw(boxed).cast::<u8>(),
            len,
            lent: None,
        }
    }
}

impl Drop for ReceivedBuffer {
    fn drop(&mut self) {
        if self.lent.is_some() {
            return; // dropping `lent` gives the slot back
        }
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
        // `ptr` points at `len` live bytes that are `slf`'s alone (see the
        // `Send` impl), which `PyBuffer_FillInfo` keeps alive by storing a
        // new reference to `slf` in `view.obj`. They are writable
        // (readonly = 0), as a received `bytearray` or numpy array is in
        // valkka-multiprocess: an allocation of ours, or a slot mapping
        // read-write that the sender leaves alone until `lent` is dropped;
        // Rust holds no reference into either while views exist.
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

    /// Whether the bytes are a view of the shared-memory slot they arrived
    /// in (a large message) rather than a private copy.
    #[getter]
    fn shared(&self) -> bool {
        self.lent.is_some()
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
