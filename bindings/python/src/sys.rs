//! The binding's raw calls: CPython's side of the fork, as [`ForkHooks`]
//! for the core's one fork path, the cached pid, `kill`, and a `poll` on
//! raw fd numbers.
//!
//! `os.fork()` brackets `fork(2)` with `PyOS_BeforeFork` (runs the
//! `os.register_at_fork(before=...)` callbacks, takes the import lock) and
//! `PyOS_AfterFork_Parent` / `PyOS_AfterFork_Child` (the child re-creates
//! the runtime's locks, makes this thread the only thread state, and runs
//! the stdlib's repairs: `threading`, `random`'s reseed, `logging`'s handler
//! locks, asyncio's loop). A bare `fork` skips all of that, and the child of
//! a process whose other thread held the import lock deadlocks on its first
//! `import`. The GIL must be
//! held across the whole bracket, by this thread: `start` never releases it
//! around the fork.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicI32, Ordering};

use forkbridge::ForkHooks;

/// The three `PyOS_*` calls around the core's fork.
#[derive(Debug)]
pub(crate) struct PythonForkHooks;

impl ForkHooks for PythonForkHooks {
    fn before_fork(&self) {
        // SAFETY: called by `MessageProcess::start` on the thread that holds
        // the GIL (`Process.start` runs with it and never detaches), which
        // is what `PyOS_BeforeFork` requires.
        unsafe { pyo3::ffi::PyOS_BeforeFork() }
    }

    fn after_fork_child(&self) {
        refresh_pid();
        // SAFETY: in the child, on the only thread, which held the GIL at
        // the fork; `PyOS_BeforeFork` ran before it in the parent.
        unsafe { pyo3::ffi::PyOS_AfterFork_Child() }
    }

    fn after_fork_parent(&self) {
        // SAFETY: in the parent, with the GIL, after `PyOS_BeforeFork`.
        unsafe { pyo3::ffi::PyOS_AfterFork_Parent() }
    }
}

/// This process's id, cached: glibc no longer caches `getpid`, and every
/// method of a frontend handle checks it. Refreshed in every child, by our
/// fork hooks and by `os.register_at_fork` for forks made elsewhere.
static PID: AtomicI32 = AtomicI32::new(0);

/// Re-reads the process id (after a fork).
pub(crate) fn refresh_pid() {
    PID.store(std::process::id() as i32, Ordering::Relaxed);
}

/// The calling process's id.
pub(crate) fn getpid() -> i32 {
    match PID.load(Ordering::Relaxed) {
        0 => {
            refresh_pid();
            PID.load(Ordering::Relaxed)
        }
        pid => pid,
    }
}

/// Waits until `fd` is ready for `writable` (or readable; either way a
/// hang-up counts), or `timeout` passes. `EINTR` counts as a wake-up (the
/// caller runs Python's signal handlers).
///
/// The number may be stale (the handle was stopped meanwhile by another
/// thread): `poll` then reports `POLLNVAL` or wakes for an unrelated fd,
/// and the caller simply retries under its lock.
pub(crate) fn poll_fd(fd: i32, writable: bool, timeout: std::time::Duration) {
    // A writer also wakes for incoming bytes: the core reads them while it
    // waits to write, so that two writers never deadlock.
    let events = if writable {
        libc::POLLIN | libc::POLLOUT
    } else {
        libc::POLLIN
    };
    let mut pollfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pollfd` is one live, writable pollfd struct; `poll` only
    // reads the fd number and writes `revents`, whatever the number refers
    // to.
    unsafe { libc::poll(&mut pollfd, 1, ms) };
}

/// A duplicate of `fd` (close-on-exec), owned by the caller; `fd` stays
/// its owner's.
pub(crate) fn dup_fd(fd: i32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: `F_DUPFD_CLOEXEC` reads only the number; on an invalid one it
    // fails with EBADF and creates nothing.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `dup` is a new descriptor made just above, owned by nobody
    // else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(dup) })
}
