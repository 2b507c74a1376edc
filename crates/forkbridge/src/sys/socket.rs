//! The intercom: one `AF_UNIX SOCK_STREAM` socketpair per process.
//!
//! A stream socket rather than two pipes: one fd per side, full duplex,
//! `MSG_NOSIGNAL` instead of `SIGPIPE`, and room for `SCM_RIGHTS` later. A
//! stream rather than `SOCK_SEQPACKET`: no per-packet size limit, and the
//! explicit length prefix of the wire format does the framing.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::syscall;

/// Creates a connected pair, close-on-exec, blocking (see `recv_into`).
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

/// `recv(2)` into the spare capacity of `buf`, which grows by what was
/// read; with `wait`, blocks until at least one byte (or end of stream)
/// arrives, else `MSG_DONTWAIT`. `Ok(0)` is end of stream.
///
/// The sockets stay in blocking mode and every non-blocking call says so
/// with a flag: `O_NONBLOCK` would live on the open file description, which
/// a `dup` (or a careless fork) shares.
pub(crate) fn recv_into(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    max: usize,
    wait: bool,
) -> io::Result<usize> {
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
            if wait { 0 } else { libc::MSG_DONTWAIT },
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
