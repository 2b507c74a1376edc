//! Registering an fd with tokio's reactor.

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;

/// Registers `fd` with the current tokio runtime (readable and writable).
///
/// Must be called inside a runtime; the `AsyncFd` owns the fd.
pub(crate) fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the `AsyncFd` takes ownership of the `OwnedFd`, so the fd is
    // open, keeps its number and refers to the same description for the
    // whole life of the `AsyncFd`, which is what `register` requires.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}
