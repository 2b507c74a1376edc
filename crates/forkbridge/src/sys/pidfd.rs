//! Process file descriptors: an fd that becomes readable when a child exits.
//!
//! A pidfd joins the intercom socket in one `poll`, so "a message or the
//! death of the backend" is a single wait (Python's `Process.sentinel`), and
//! no global `SIGCHLD` handler is needed (it would fight tokio's).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitStatus;

use std::os::unix::process::ExitStatusExt;

use super::syscall;

/// `pidfd_open(2)` (Linux ≥ 5.3), close-on-exec.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: the raw syscall takes a pid and flags; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `pidfd_open` returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The outcome of a non-blocking reap.
#[derive(Debug)]
pub(crate) enum Reap {
    /// The child is still running.
    Running,
    /// The child was reaped with this status.
    Exited(ExitStatus),
    /// Somebody else reaped the child (`ECHILD`): its status is lost.
    Gone,
}

/// `waitpid(pid, WNOHANG)`.
pub(crate) fn try_reap(pid: libc::pid_t) -> io::Result<Reap> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid, writable `c_int` for the call.
        match syscall!(waitpid(pid, &mut status, libc::WNOHANG)) {
            Ok(0) => return Ok(Reap::Running),
            Ok(_) => return Ok(Reap::Exited(ExitStatus::from_raw(status))),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return Ok(Reap::Gone),
            Err(e) => return Err(e),
        }
    }
}
