//! Process file descriptors: an fd that becomes readable when a child exits.
//!
//! A pidfd joins the intercom socket in one `poll`, so "a message or the
//! death of the backend" is a single wait (Python's `Process.sentinel`), and
//! no global `SIGCHLD` handler is needed (it would fight tokio's).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
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

/// `pidfd_send_signal(2)` (Linux ≥ 5.1): signals the process the pidfd
/// refers to, or fails with `ESRCH` once it has ended — never another
/// process that took its pid after it was reaped.
pub(crate) fn send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: the raw syscall takes an fd, a signal number, a null siginfo
    // (the kernel fills in a plain `kill`'s) and zero flags; no memory is
    // passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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

/// `waitid(P_PIDFD, pidfd, WEXITED | WNOHANG)` (Linux ≥ 5.4): reaps the
/// process the pidfd refers to — never another child that took its pid
/// after something else (`SIGCHLD` ignored) reaped it; that case is `Gone`.
pub(crate) fn try_reap_fd(pidfd: BorrowedFd<'_>) -> io::Result<Reap> {
    loop {
        // SAFETY: an all-zero `siginfo_t` is a valid value for the kernel
        // to fill; `waitid` writes only into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG;
        // SAFETY: `info` is valid and writable; the id is a live fd number.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return Ok(Reap::Gone),
                _ => return Err(e),
            }
        }
        // SAFETY: `waitid` filled `info` for a child event (or left it
        // zeroed: no child has exited yet, `si_pid` 0).
        let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
        if pid == 0 {
            return Ok(Reap::Running);
        }
        // Back to the wait-status word `ExitStatus` wraps.
        let raw = match code {
            libc::CLD_EXITED => (status & 0xff) << 8,
            libc::CLD_DUMPED => (status & 0x7f) | 0x80,
            _ => status & 0x7f,
        };
        return Ok(Reap::Exited(ExitStatus::from_raw(raw)));
    }
}

/// `waitpid(pid, WNOHANG)`, for a child without a pidfd.
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
