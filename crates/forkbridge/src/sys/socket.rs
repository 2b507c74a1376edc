//! The intercom: one `AF_UNIX SOCK_STREAM` socketpair per process.
//!
//! A stream socket rather than two pipes: one fd per side, full duplex,
//! `MSG_NOSIGNAL` instead of `SIGPIPE`, and room for `SCM_RIGHTS` later. A
//! stream rather than `SOCK_SEQPACKET`: no per-packet size limit, and the
//! explicit length prefix of the wire format does the framing.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::syscall;

/// Creates a connected pair, close-on-exec, blocking.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a writable array of two ints, as `socketpair` requires.
    syscall!(socketpair(
        libc::AF_UNIX,
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
        0,
        fds.as_mut_ptr()
    ))?;
    // SAFETY: on success both descriptors are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Puts the open file description of `fd` in non-blocking mode.
///
/// Only ever called on an end that no other process shares: `O_NONBLOCK`
/// lives on the description, so a shared end would change under the peer.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: `F_GETFL`/`F_SETFL` on a valid fd take and return plain ints.
    let flags = syscall!(fcntl(raw, libc::F_GETFL))?;
    // SAFETY: as above.
    syscall!(fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK)).map(drop)
}

/// `send(2)` with `MSG_NOSIGNAL | MSG_DONTWAIT`: a closed peer is `EPIPE`,
/// a full buffer `WouldBlock`.
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `recv(2)` with `MSG_DONTWAIT` into the spare capacity of `buf`, which
/// grows by what was read. `Ok(0)` is end of stream.
pub(crate) fn recv_into(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let len = spare.len().min(max);
    // SAFETY: `spare` is writable for `len` bytes; `recv` initialises the
    // first `n` of them, and only those are added to the vector's length.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            spare.as_mut_ptr().cast(),
            len,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: `recv` wrote `n <= len <= capacity - len()` bytes right after
    // the current end of the vector.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}
