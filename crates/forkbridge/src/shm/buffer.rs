//! [`SharedBuffer`]: shared memory made *after* the fork and handed to a
//! running backend as an fd.
//!
//! A [`FrameRing`](crate::FrameRing) or an [`EventGroup`](crate::EventGroup)
//! must exist before the fork. A `SharedBuffer` can be made at any time:
//! it is a `memfd` (no name, nothing in `/dev/shm`, gone when the last
//! process closes it) that [`MessageProcess::send_with_fds`](crate::MessageProcess::send_with_fds)
//! passes to the backend, which maps the same pages with
//! [`SharedBuffer::from_fd`] — valkka-multiprocess tutorial's `shm2.py` ("create a
//! shared array on demand"), without the named segment it has to unlink.
//!
//! Access copies in and out ([`read_at`](SharedBuffer::read_at),
//! [`write_at`](SharedBuffer::write_at), and the typed forms): no reference
//! into memory the other process may be writing is ever handed out, so a
//! race gives torn data, never undefined behaviour here. Order the two
//! sides' accesses with a message, an [`Event`](crate::Event) or a
//! [`SyncIndex`](crate::SyncIndex).

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::sys::memfd::MappedFile;

/// A shared memory buffer backed by a memfd; cloning shares it.
///
/// It crosses to a backend started by any start method (as part of its
/// serde value); outside a start, serializing it is an error (send its
/// [`fd`](SharedBuffer::fd) with a message to a running backend instead).
///
/// ```rust,standalone_crate
/// use std::time::Duration;
/// use forkbridge::{Backend, BackendContext, HandlerResult, Handlers, Message, MessageProcess, SharedBuffer};
///
/// struct Doubler;
/// impl Doubler {
///     fn attach(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
///         let fd = ctx.take_fds().pop().ok_or("no buffer")?;
///         let buffer = SharedBuffer::from_fd(fd)?;         // the same pages
///         let mut values = buffer.read_vec::<u32>(0, 4)?;
///         values.iter_mut().for_each(|v| *v *= 2);
///         buffer.write_slice(0, &values)?;
///         ctx.send(Message::new("doubled"))?;
///         Ok(())
///     }
/// }
/// impl Backend for Doubler {
///     fn register(h: &mut Handlers<Self>) { h.on("attach", Self::attach); }
/// }
///
/// let mut p = MessageProcess::new("doubler", Doubler)?;
/// p.start()?;
/// let buffer = SharedBuffer::new(4096)?;                 // after the fork
/// buffer.write_slice(0, &[1u32, 2, 3, 4])?;
/// p.send_with_fds(Message::new("attach"), &[buffer.fd()])?;
/// p.recv_timeout(Duration::from_secs(5))?;              // "doubled"
/// assert_eq!(buffer.read_vec::<u32>(0, 4)?, [2, 4, 6, 8]);
/// p.stop()?;
/// # Ok::<(), forkbridge::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedBuffer {
    pub(super) file: Arc<MappedFile>,
}

impl SharedBuffer {
    /// A new zero-filled buffer of `len` bytes.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for `len` 0; [`ErrorKind::Io`] if the
    /// memfd cannot be made or mapped.
    pub fn new(len: usize) -> Result<SharedBuffer> {
        if len == 0 {
            return Err(Error::new(ErrorKind::InvalidArgument).with_source("an empty buffer"));
        }
        Ok(SharedBuffer {
            file: Arc::new(MappedFile::create(len)?),
        })
    }

    /// Maps a buffer received as an fd (from
    /// [`BackendContext::take_fds`](crate::BackendContext::take_fds)).
    ///
    /// The memfd is sealed against shrinking first (if its maker did not
    /// seal it; [`new`](SharedBuffer::new) does), so no process can cut it
    /// short under this mapping: a file shrunk under a mapping raises
    /// `SIGBUS` on the next read past its new end.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the fd cannot be sealed so (a
    /// regular file, a pipe, a memfd made without `MFD_ALLOW_SEALING`) or
    /// is empty; [`ErrorKind::Io`] if it cannot be mapped.
    pub fn from_fd(fd: OwnedFd) -> Result<SharedBuffer> {
        let file = MappedFile::open(fd).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidInput {
                Error::new(ErrorKind::InvalidArgument).with_source(e.to_string())
            } else {
                Error::io(e)
            }
        })?;
        Ok(SharedBuffer {
            file: Arc::new(file),
        })
    }

    /// The fd to send to the other side.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.file.len()
    }

    /// Always `false`: buffers are never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Copies bytes from `offset` into `dst`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the range is outside the buffer.
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        if self.file.read_at(offset, dst) {
            Ok(())
        } else {
            Err(self.out_of_range(offset, dst.len()))
        }
    }

    /// Copies `src` to `offset`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the range is outside the buffer.
    pub fn write_at(&self, offset: usize, src: &[u8]) -> Result<()> {
        if self.file.write_at(offset, src) {
            Ok(())
        } else {
            Err(self.out_of_range(offset, src.len()))
        }
    }

    /// Reads `count` plain values of type `T` starting at byte `offset`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the range is outside the buffer.
    pub fn read_vec<T: bytemuck::Pod>(&self, offset: usize, count: usize) -> Result<Vec<T>> {
        // The range is checked before anything is allocated for it.
        let bytes = count.checked_mul(std::mem::size_of::<T>());
        if bytes.is_none_or(|b| offset.checked_add(b).is_none_or(|end| end > self.len())) {
            return Err(self.out_of_range(offset, bytes.unwrap_or(usize::MAX)));
        }
        let mut values = vec![T::zeroed(); count];
        self.read_at(offset, bytemuck::cast_slice_mut(&mut values))?;
        Ok(values)
    }

    /// Writes plain values of type `T` starting at byte `offset`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the range is outside the buffer.
    pub fn write_slice<T: bytemuck::Pod>(&self, offset: usize, values: &[T]) -> Result<()> {
        self.write_at(offset, bytemuck::cast_slice(values))
    }

    fn out_of_range(&self, offset: usize, len: usize) -> Error {
        Error::new(ErrorKind::InvalidArgument).with_source(format!(
            "{len} bytes at offset {offset} do not fit a buffer of {}",
            self.len()
        ))
    }
}

impl fmt::Debug for SharedBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBuffer")
            .field("len", &self.len())
            .finish()
    }
}

/// An n-dimensional array of plain values in a [`SharedBuffer`] (what
/// valkka-multiprocess's users do with a numpy array in shared memory): a
/// shape, row-major (C) order, every index checked.
///
/// It crosses to a backend started by any start method (as part of its
/// serde value: the buffer as an fd, the shape as data); outside a start,
/// serializing it is an error.
///
/// ```
/// use forkbridge::SharedArray;
///
/// let frame = SharedArray::<u8>::new(&[480, 640, 3])?;    // an RGB image
/// frame.set(&[10, 20, 1], 200)?;
/// assert_eq!(frame.get(&[10, 20, 1])?, 200);
/// assert!(frame.get(&[480, 0, 0]).is_err());              // out of range: typed error
/// let row = frame.read_range(&[10, 0, 0], 640 * 3)?;      // one row, contiguous
/// assert_eq!(row[20 * 3 + 1], 200);
/// // Send `frame.buffer().fd()` to a backend; it rebuilds the view with
/// // `SharedArray::from_buffer(buffer, &[480, 640, 3])`.
/// # Ok::<(), forkbridge::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedArray<T> {
    buffer: SharedBuffer,
    shape: Vec<usize>,
    _values: std::marker::PhantomData<T>,
}

impl<T: bytemuck::Pod> SharedArray<T> {
    /// A zero-filled array of this shape in a new buffer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for an empty shape, a zero dimension,
    /// or a size that overflows.
    pub fn new(shape: &[usize]) -> Result<SharedArray<T>> {
        let bytes = byte_len::<T>(shape)?;
        SharedArray::from_buffer(SharedBuffer::new(bytes)?, shape)
    }

    /// A view of this shape over an existing buffer (one received as an
    /// fd, for example).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the buffer is smaller than the
    /// shape needs.
    pub fn from_buffer(buffer: SharedBuffer, shape: &[usize]) -> Result<SharedArray<T>> {
        let bytes = byte_len::<T>(shape)?;
        if buffer.len() < bytes {
            return Err(Error::new(ErrorKind::InvalidArgument).with_source(format!(
                "a {shape:?} array needs {bytes} bytes; the buffer has {}",
                buffer.len()
            )));
        }
        Ok(SharedArray {
            buffer,
            shape: shape.to_vec(),
            _values: std::marker::PhantomData,
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Always `false`: dimensions are never zero.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The buffer underneath (to send its fd).
    pub fn buffer(&self) -> &SharedBuffer {
        &self.buffer
    }

    /// The value at `index`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the index has the wrong number of
    /// dimensions or is out of range in one.
    pub fn get(&self, index: &[usize]) -> Result<T> {
        let at = self.offset(index)?;
        Ok(self.buffer.read_vec::<T>(at, 1)?[0])
    }

    /// Sets the value at `index`.
    ///
    /// # Errors
    ///
    /// As [`get`](SharedArray::get).
    pub fn set(&self, index: &[usize], value: T) -> Result<()> {
        let at = self.offset(index)?;
        self.buffer.write_slice(at, &[value])
    }

    /// `count` values in row-major order starting at `index`.
    ///
    /// # Errors
    ///
    /// As [`get`](SharedArray::get), or if the range runs past the end.
    pub fn read_range(&self, index: &[usize], count: usize) -> Result<Vec<T>> {
        let at = self.offset(index)?;
        self.check_range(at, count)?;
        self.buffer.read_vec(at, count)
    }

    /// Writes `values` in row-major order starting at `index`.
    ///
    /// # Errors
    ///
    /// As [`read_range`](SharedArray::read_range).
    pub fn write_range(&self, index: &[usize], values: &[T]) -> Result<()> {
        let at = self.offset(index)?;
        self.check_range(at, values.len())?;
        self.buffer.write_slice(at, values)
    }

    fn offset(&self, index: &[usize]) -> Result<usize> {
        if index.len() != self.shape.len() {
            return Err(Error::new(ErrorKind::InvalidArgument).with_source(format!(
                "a {}-dimensional index for a {}-dimensional array",
                index.len(),
                self.shape.len()
            )));
        }
        let mut flat = 0;
        for (dim, (&i, &n)) in index.iter().zip(&self.shape).enumerate() {
            if i >= n {
                return Err(Error::new(ErrorKind::InvalidArgument).with_source(format!(
                    "index {i} out of range for dimension {dim} of size {n}"
                )));
            }
            flat = flat * n + i;
        }
        Ok(flat * std::mem::size_of::<T>())
    }

    fn check_range(&self, at: usize, count: usize) -> Result<()> {
        let end = count
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(at));
        match end {
            Some(end) if end <= self.len() * std::mem::size_of::<T>() => Ok(()),
            _ => Err(Error::new(ErrorKind::InvalidArgument)
                .with_source(format!("{count} values from there run past the array"))),
        }
    }
}

fn byte_len<T>(shape: &[usize]) -> Result<usize> {
    let invalid = |why: &str| Error::new(ErrorKind::InvalidArgument).with_source(why.to_owned());
    if shape.is_empty() || shape.contains(&0) {
        return Err(invalid(
            "a shape needs at least one dimension, none of size 0",
        ));
    }
    shape
        .iter()
        .try_fold(std::mem::size_of::<T>().max(1), |acc, &n| {
            acc.checked_mul(n)
        })
        .ok_or_else(|| invalid("the array's size overflows"))
}

impl<T> fmt::Debug for SharedArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedArray")
            .field("type", &std::any::type_name::<T>())
            .field("shape", &self.shape)
            .finish()
    }
}
