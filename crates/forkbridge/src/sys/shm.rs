//! Words in a memfd mapped `MAP_SHARED`: memory a fork shares instead of
//! copying, and that crosses to a process started otherwise (`exec`, a fork
//! server) as an fd.
//!
//! An anonymous shared mapping would do for a fork alone, and did: but
//! nothing can name it afterwards, so a process that was not forked from
//! its maker could never map it. A memfd is as anonymous (no name in any
//! filesystem, gone with its last fd and mapping) and can be sent with
//! `SCM_RIGHTS`. The cost is one fd per store, held while it lives. The
//! mapping, its seals and the size check on a received fd are
//! `memfd.rs`'s [`SharedMap`], so a peer cannot shrink the file under the
//! words (a `SIGBUS` here).

use super::atomic::AtomicU64;
use std::io;

#[cfg(not(loom))]
use super::memfd::SharedMap;
#[cfg(not(loom))]
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Shared 64-bit words in a sealed memfd, unmapped and closed on drop.
/// Created before a fork, they are the same memory in parent and child;
/// opened from a received fd, the same memory as the sender's.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct SharedWords {
    map: SharedMap,
    len: usize,
}

#[cfg(not(loom))]
impl SharedWords {
    /// Maps room for `len` zero-filled 64-bit words.
    pub(crate) fn new(len: usize) -> io::Result<SharedWords> {
        let map = SharedMap::create(c"forkbridge-events", bytes_for(len)?)?;
        Ok(SharedWords { map, len })
    }

    /// Maps `len` words of a received memfd (one made by [`new`](Self::new)
    /// in another process, sent as [`fd`](Self::fd)). `InvalidInput` if it
    /// cannot be sealed against shrinking or is smaller than `len` words:
    /// the words would end past the file, and a read there is a `SIGBUS`.
    pub(crate) fn open(fd: OwnedFd, len: usize) -> io::Result<SharedWords> {
        let bytes = bytes_for(len)?;
        let map = SharedMap::open(fd)?;
        if map.len() < bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a memfd of {} bytes cannot hold {len} shared words",
                    map.len()
                ),
            ));
        }
        Ok(SharedWords { map, len })
    }

    /// The words.
    pub(crate) fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned (so aligned for AtomicU64),
        // at least `len * 8` bytes long (checked when it was made or
        // opened) and sealed against shrinking, so every word is backed;
        // any bit pattern is a valid AtomicU64 (a received file's contents
        // included), all access is atomic, and the mapping lives until
        // `self` is dropped, which the returned borrow cannot outlive.
        unsafe { std::slice::from_raw_parts(self.map.ptr().as_ptr().cast(), self.len) }
    }

    /// The memfd, to send to another process.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.map.as_fd()
    }
}

/// The bytes of `len` words: at least one, as a memfd cannot be empty.
#[cfg(not(loom))]
fn bytes_for(len: usize) -> io::Result<usize> {
    len.max(1)
        .checked_mul(8)
        .ok_or_else(|| io::ErrorKind::InvalidInput.into())
}

/// Under the model checker the words are loom atomics on the heap: loom's
/// threads stand in for the processes that share the mapping. There is no
/// fd, so nothing crosses.
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sys::syscall;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::sync::atomic::Ordering;

    fn dup(words: &SharedWords) -> OwnedFd {
        words.fd().try_clone_to_owned().unwrap()
    }

    #[test]
    fn an_opened_store_is_the_same_words() {
        let words = SharedWords::new(3).unwrap();
        let other = SharedWords::open(dup(&words), 3).unwrap();
        other.words()[2].store(42, Ordering::SeqCst);
        assert_eq!(words.words()[2].load(Ordering::SeqCst), 42);
        assert_eq!(SharedWords::open(dup(&words), 2).unwrap().words().len(), 2);
    }

    #[test]
    fn a_memfd_too_small_or_unsealable_is_refused_not_mapped() {
        let words = SharedWords::new(1).unwrap();
        let err = SharedWords::open(dup(&words), 513).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let err = SharedWords::open(dup(&words), usize::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        // A memfd its maker did not allow to be sealed: it could be shrunk
        // under the mapping at any time.
        // SAFETY: a NUL-terminated name and plain flags.
        let raw = syscall!(memfd_create(c"unsealable".as_ptr(), libc::MFD_CLOEXEC)).unwrap();
        // SAFETY: `memfd_create` returned a new fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: plain integers on our own fd.
        syscall!(ftruncate(fd.as_raw_fd(), 4096)).unwrap();
        let err = SharedWords::open(fd, 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }
}
