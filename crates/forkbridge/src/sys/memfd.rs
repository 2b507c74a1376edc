//! Memory-file-backed shared buffers: `memfd_create(2)` + `mmap(2)`.
//!
//! A memfd has no name in any filesystem (nothing in `/dev/shm`, nothing
//! left after a crash) and can be handed to a running process as an fd over
//! the intercom (`SCM_RIGHTS`); the receiver maps the same pages.
//!
//! A mapping of a file that another process shrinks raises `SIGBUS` on the
//! next access past the new end: a peer's mistake (or malice) would crash
//! this process. So every buffer is sealed against shrinking
//! (`F_SEAL_SHRINK`) before it is mapped: one made here is sealed at birth
//! (its size is fixed for good: `F_SEAL_GROW` too); one received is sealed
//! by the receiver if its maker did not, and refused if it cannot be
//! sealed (a regular file, or a memfd made without `MFD_ALLOW_SEALING`).
//! The size is read after the seal, so it cannot change under the mapping.
//!
//! Access is by copying in and out (`read_at` / `write_at`): no reference
//! into memory another process may write at the same time is ever handed
//! out, so this process's own borrows cannot be invalidated. Concurrent
//! writes by two processes to the same bytes give torn data, not undefined
//! behaviour in this process; synchronise with events or messages.
//!
//! The mapping itself ([`SharedMap`]: make or open, seal, size, map,
//! unmap) is shared with the memory that is accessed by atomics instead —
//! event words (`shm.rs`) and the frame ring (`ring/`) — so every memfd
//! forkbridge maps, made here or received, passes the same seal and size
//! checks.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use super::syscall;

/// A memfd mapped shared, whole, unmapped and closed on drop. It hands out
/// its address only as a raw pointer: what may be done with the bytes is
/// argued by the type built on it ([`MappedFile`] copies, `SharedWords`
/// and the ring use atomics).
#[derive(Debug)]
pub(crate) struct SharedMap {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: nothing is read or written through a `SharedMap` itself; every
// dereference of its address is an `unsafe` block of a type built on it,
// which argues it there. Moving or sharing the handle between threads only
// moves an fd and an address.
unsafe impl Send for SharedMap {}
// SAFETY: as above.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// A new zero-filled memfd of `len` bytes (`len > 0`), sealed at this
    /// size for good, mapped. `name` is what `/proc/<pid>/maps` shows.
    pub(crate) fn create(name: &CStr, len: usize) -> io::Result<SharedMap> {
        // SAFETY: `name` is a NUL-terminated string; flags are plain ints.
        let raw = syscall!(memfd_create(
            name.as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING
        ))?;
        // SAFETY: `memfd_create` returned a new fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = libc::off_t::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: plain integers on our own fd.
        syscall!(ftruncate(fd.as_raw_fd(), size))?;
        // SAFETY: plain integers on our own fd.
        syscall!(fcntl(
            fd.as_raw_fd(),
            libc::F_ADD_SEALS,
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW
        ))?;
        SharedMap::map(fd, len)
    }

    /// Maps a received memfd whole, after sealing it against shrinking if
    /// its maker did not (see the module docs). `InvalidInput` if it cannot
    /// be sealed or is empty.
    pub(crate) fn open(fd: OwnedFd) -> io::Result<SharedMap> {
        // SAFETY: plain integers on an fd we own.
        let seals = syscall!(fcntl(fd.as_raw_fd(), libc::F_GET_SEALS)).map_err(unsealable)?;
        if seals & libc::F_SEAL_SHRINK == 0 {
            // SAFETY: as above.
            syscall!(fcntl(
                fd.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK
            ))
            .map_err(unsealable)?;
        }
        // SAFETY: a zeroed `stat` is a valid out-buffer for `fstat`.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a writable stat buffer; `fd` is open.
        syscall!(fstat(fd.as_raw_fd(), &mut st))?;
        let len = usize::try_from(st.st_size).map_err(|_| io::ErrorKind::InvalidData)?;
        SharedMap::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<SharedMap> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an empty buffer",
            ));
        }
        // SAFETY: maps `len` bytes of our fd, shared, at an address the
        // kernel picks; checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(io::ErrorKind::OutOfMemory)?;
        Ok(SharedMap { fd, ptr, len })
    }

    /// The first byte: page-aligned, `len` bytes mapped from there for as
    /// long as `self` lives, and the file cannot shrink under them (sealed).
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The mapped length in bytes (the file's size when it was mapped).
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl AsFd for SharedMap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are what `mmap` returned; the types built on
        // the map borrow its memory only while they hold it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A mapped memfd accessed by copies, unmapped and closed on drop.
#[derive(Debug)]
pub(crate) struct MappedFile {
    map: SharedMap,
}

impl MappedFile {
    /// A new zero-filled memfd of `len` bytes, mapped.
    pub(crate) fn create(len: usize) -> io::Result<MappedFile> {
        Ok(MappedFile {
            map: SharedMap::create(c"forkbridge-buffer", len)?,
        })
    }

    /// Maps a received memfd whole, after sealing it against shrinking if
    /// its maker did not (see the module docs). `InvalidInput` if it cannot
    /// be sealed.
    pub(crate) fn open(fd: OwnedFd) -> io::Result<MappedFile> {
        Ok(MappedFile {
            map: SharedMap::open(fd)?,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Copies `dst.len()` bytes from `offset`; `false` if out of range.
    pub(crate) fn read_at(&self, offset: usize, dst: &mut [u8]) -> bool {
        if offset
            .checked_add(dst.len())
            .is_none_or(|end| end > self.len())
        {
            return false;
        }
        // SAFETY: the range was checked to lie inside the live mapping
        // (sealed against shrinking, so every byte of it is backed); `dst`
        // is a distinct, writable buffer of this process, and only copies
        // touch the mapping (module docs).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.ptr().as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
        true
    }

    /// Copies `src` to `offset`; `false` if out of range.
    pub(crate) fn write_at(&self, offset: usize, src: &[u8]) -> bool {
        if offset
            .checked_add(src.len())
            .is_none_or(|end| end > self.len())
        {
            return false;
        }
        // SAFETY: as in `read_at`, the other way round.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.map.ptr().as_ptr().add(offset),
                src.len(),
            );
        }
        true
    }
}

/// The error for a file that cannot be sealed against shrinking.
fn unsealable(e: io::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "not a memfd that can be sealed against shrinking ({e}): another process \
             could shrink it under the mapping and crash this one"
        ),
    )
}

impl AsFd for MappedFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.map.as_fd()
    }
}
