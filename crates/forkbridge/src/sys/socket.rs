//! The intercom: one `AF_UNIX SOCK_STREAM` socketpair per process.
//!
//! A stream socket rather than two pipes: one fd per side, full duplex,
//! `MSG_NOSIGNAL` instead of `SIGPIPE`, and room for `SCM_RIGHTS` later. A
//! stream rather than `SOCK_SEQPACKET`: no per-packet size limit, and the
//! explicit length prefix of the wire format does the framing. The price:
//! a small send costs more in the kernel than a pipe write (an skb is
//! allocated and charged per call); the figure is in the bench's README.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::syscall;

/// Creates a connected pair, close-on-exec, blocking (see `recv_into`).
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    pair(libc::SOCK_STREAM)
}

/// Creates a connected `SOCK_SEQPACKET` pair, close-on-exec, blocking: for
/// short requests and replies whose boundaries the kernel keeps (a fork
/// server's), read with the same `recv_into`.
pub(crate) fn packet_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    pair(libc::SOCK_SEQPACKET)
}

fn pair(kind: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a writable array of two ints, as `socketpair` requires.
    syscall!(socketpair(
        libc::AF_UNIX,
        kind | libc::SOCK_CLOEXEC,
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
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let len = spare.len().min(max);
    let mut iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: len,
    };
    // Room for the fds one `send_with_fds` may attach; u64 for alignment.
    let mut control = [0u64; CONTROL_WORDS];
    // SAFETY: a zeroed msghdr is a valid empty header, filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    let flags = libc::MSG_CMSG_CLOEXEC | if wait { 0 } else { libc::MSG_DONTWAIT };
    // SAFETY: `msg` points at `iov` (writable for `len` bytes of the
    // vector's spare capacity) and at `control`, both live for the call.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `recvmsg` wrote `n <= len <= capacity - len()` bytes right
    // after the current end of the vector.
    unsafe { buf.set_len(buf.len() + n as usize) };
    collect_fds(&msg, fds);
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "more fds arrived than a frame may carry; the kernel closed the rest",
        ));
    }
    Ok(n as usize)
}

/// The most fds one frame carries.
pub(crate) const MAX_FDS: usize = 16;
// CMSG_SPACE(16 * 4) on 64-bit Linux is 80 bytes: 10 words, with margin.
const CONTROL_WORDS: usize = 12;

/// Takes ownership of the fds an `SCM_RIGHTS` control message delivered.
fn collect_fds(msg: &libc::msghdr, fds: &mut Vec<OwnedFd>) {
    // SAFETY: `msg` was filled by a successful `recvmsg`; the CMSG macros
    // walk its control buffer within `msg_controllen`.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is a valid header inside the control buffer.
        let (level, kind, len) =
            unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            // SAFETY: `CMSG_LEN(0)` is the header size; the rest of
            // `cmsg_len` is the payload of `c_int` fds.
            let header = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = len.saturating_sub(header) / std::mem::size_of::<libc::c_int>();
            // SAFETY: `CMSG_DATA` points at `count` ints inside the buffer.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
            for i in 0..count {
                // SAFETY: within the payload; read unaligned to be safe.
                let raw = unsafe { data.add(i).read_unaligned() };
                // SAFETY: the kernel installed a new fd for us; nothing
                // else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: as for `CMSG_FIRSTHDR`.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
}

/// `sendmsg(2)` of `buf` with `fds` attached (`SCM_RIGHTS`), non-blocking,
/// no `SIGPIPE`. The fds travel with the first byte sent; on `Ok(n)` they
/// were sent and `buf[n..]` remains for plain sends.
pub(crate) fn send_with_fds(
    fd: BorrowedFd<'_>,
    buf: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    if fds.is_empty() || fds.len() > MAX_FDS || buf.is_empty() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let raw: Vec<libc::c_int> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let payload = std::mem::size_of_val(raw.as_slice());
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is a valid empty header, filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: `CMSG_SPACE` only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(payload as u32) } as _;
    // SAFETY: `control` is large enough for one header with MAX_FDS ints
    // (checked above), so the first header and its data lie inside it;
    // `sendmsg` only reads `buf` (the iovec is never written through).
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
        std::ptr::copy_nonoverlapping(
            raw.as_ptr(),
            libc::CMSG_DATA(cmsg).cast::<libc::c_int>(),
            raw.len(),
        );
    }
    // SAFETY: `msg` points at live `iov`, `buf` and `control`.
    let n = unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Takes ownership of `fd`, inherited through `exec` from a process that
/// made it one end of an intercom: checked to be an open socket of `kind`
/// (`SOCK_STREAM`, `SOCK_SEQPACKET`), and made close-on-exec again so it
/// does not leak further.
///
/// The caller guarantees nothing else in this process owns `fd` (it came
/// from the environment variable that names it, read once).
pub(crate) fn adopt_inherited(fd: RawFd, expected: libc::c_int) -> io::Result<OwnedFd> {
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `getsockopt` writes at most `len` bytes into `kind`, a live
    // c_int, and the new length into `len`; a bad fd is just an error.
    syscall!(getsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_TYPE,
        (&mut kind as *mut libc::c_int).cast(),
        &mut len
    ))?;
    if kind != expected {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is not a socket of the expected type"),
        ));
    }
    // SAFETY: plain integer arguments on an fd just shown to be open.
    syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC))?;
    // SAFETY: the fd is open (checked above) and, per this function's
    // contract, owned by nobody else in this process.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Bounds how long a blocking `recv` on this socket waits (`SO_RCVTIMEO`;
/// zero: no bound). It then fails with `EAGAIN`, and a signal always
/// interrupts it (`EINTR`, even for handlers installed with `SA_RESTART`).
pub(crate) fn set_recv_timeout(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_usec: timeout.subsec_micros().into(),
    };
    // SAFETY: `setsockopt` reads `size_of::<timeval>()` bytes from `tv`, a
    // live local; a bad fd is just an error.
    syscall!(setsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVTIMEO,
        (&tv as *const libc::timeval).cast(),
        std::mem::size_of::<libc::timeval>() as libc::socklen_t
    ))
    .map(drop)
}

/// Whether a non-blocking socket call failed only for now (no data or no
/// room yet, or a signal): the caller waits and tries again.
pub(crate) fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Lets `fd` survive `exec` (clears close-on-exec).
pub(crate) fn set_inheritable(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain integer arguments on a borrowed, hence open, fd.
    syscall!(fcntl(fd.as_raw_fd(), libc::F_SETFD, 0)).map(drop)
}
