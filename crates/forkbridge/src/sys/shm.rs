//! Anonymous `MAP_SHARED` mappings: memory a fork shares instead of copying.

use super::atomic::AtomicU64;
use std::io;
use std::ptr::NonNull;

/// Maps `len` zero-filled bytes of anonymous shared memory: the same pages
/// in this process and every child forked afterwards, at a page-aligned
/// address. The caller unmaps them (`munmap`) exactly once.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn map_shared(len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: an anonymous shared mapping of `len` bytes with no fixed
    // address; the kernel picks a page-aligned address or fails.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::ErrorKind::OutOfMemory.into())
}

/// A zero-filled shared mapping, unmapped on drop. Created before a fork,
/// it is the same memory in parent and child; nothing is named, so nothing
/// is left behind in `/dev/shm` when a process dies.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct SharedWords {
    ptr: NonNull<AtomicU64>,
    len: usize,
    bytes: usize,
}

// SAFETY: the mapping is plain memory accessed only through atomics, so
// sharing or sending the handle between threads is as safe as for `[AtomicU64]`.
#[cfg(not(loom))]
unsafe impl Send for SharedWords {}
// SAFETY: as above.
#[cfg(not(loom))]
unsafe impl Sync for SharedWords {}

#[cfg(not(loom))]
impl SharedWords {
    /// Maps room for `len` 64-bit words (at least one page).
    pub(crate) fn new(len: usize) -> io::Result<SharedWords> {
        let bytes = len
            .max(1)
            .checked_mul(8)
            .ok_or(io::ErrorKind::InvalidInput)?;
        let ptr = map_shared(bytes)?.cast::<AtomicU64>();
        Ok(SharedWords { ptr, len, bytes })
    }

    /// The words.
    pub(crate) fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned (so aligned for AtomicU64),
        // `len * 8 <= bytes` long, zero-filled by the kernel (a valid
        // AtomicU64 bit pattern), and lives until `self` is dropped, which
        // the returned borrow cannot outlive. All access is atomic.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

#[cfg(not(loom))]
impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`bytes` are exactly what `mmap` returned, and no
        // borrow of the words outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}

/// Under the model checker the words are loom atomics on the heap: loom's
/// threads stand in for the processes that share the mapping.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct SharedWords {
    words: Vec<AtomicU64>,
}

#[cfg(loom)]
impl SharedWords {
    pub(crate) fn new(len: usize) -> io::Result<SharedWords> {
        Ok(SharedWords {
            words: (0..len.max(1)).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    pub(crate) fn words(&self) -> &[AtomicU64] {
        &self.words[..]
    }
}
