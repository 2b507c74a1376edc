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

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use super::syscall;

/// A mapped memfd, unmapped and closed on drop.
#[derive(Debug)]
pub(crate) struct MappedFile {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is only read and written by copies through `&self`
// (see the module docs); no interior reference escapes, so sharing the
// handle between threads is as safe as sharing a file.
unsafe impl Send for MappedFile {}
// SAFETY: as above.
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// A new zero-filled memfd of `len` bytes, mapped.
    pub(crate) fn create(len: usize) -> io::Result<MappedFile> {
        let name = c"forkbridge-buffer";
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
        MappedFile::map(fd, len)
    }

    /// Maps a received memfd whole, after sealing it against shrinking if
    /// its maker did not (see the module docs). `InvalidInput` if it cannot
    /// be sealed.
    pub(crate) fn open(fd: OwnedFd) -> io::Result<MappedFile> {
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
        MappedFile::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<MappedFile> {
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
        Ok(MappedFile { fd, ptr, len })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Copies `dst.len()` bytes from `offset`; `false` if out of range.
    pub(crate) fn read_at(&self, offset: usize, dst: &mut [u8]) -> bool {
        if offset
            .checked_add(dst.len())
            .is_none_or(|end| end > self.len)
        {
            return false;
        }
        // SAFETY: the range was checked to lie inside the live mapping;
        // `dst` is a distinct, writable buffer of this process.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
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
            .is_none_or(|end| end > self.len)
        {
            return false;
        }
        // SAFETY: as in `read_at`, the other way round.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len());
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
        self.fd.as_fd()
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are what `mmap` returned; no reference into
        // the mapping exists (module docs).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
