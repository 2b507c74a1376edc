//! [`SharedBuffer`]: shared memory made *after* the fork and handed to a
//! running backend as an fd.
//!
//! A [`FrameRing`](crate::FrameRing) or an [`EventGroup`](crate::EventGroup)
//! must exist before the fork. A `SharedBuffer` can be made at any time:
//! it is a `memfd` (no name, nothing in `/dev/shm`, gone when the last
//! process closes it) that [`MessageProcess::send_with_fds`](crate::MessageProcess::send_with_fds)
//! passes to the backend, which maps the same pages with
//! [`SharedBuffer::from_fd`] — the seed tutorial's `shm2.py` ("create a
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
    file: Arc<MappedFile>,
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
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the fd cannot be mapped shared (not a memfd or
    /// a regular file), or is empty.
    pub fn from_fd(fd: OwnedFd) -> Result<SharedBuffer> {
        Ok(SharedBuffer {
            file: Arc::new(MappedFile::open(fd)?),
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
