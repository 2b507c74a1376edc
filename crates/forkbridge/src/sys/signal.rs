//! Turning `SIGINT` / `SIGTERM` in the parent into a byte on a pipe.
//!
//! The handler does only async-signal-safe work: an atomic load, a
//! `write(2)` to a pipe, atomic stores. The main loop polls the pipe's read
//! end next to its processes, so a signal wakes it without races, and the
//! second signal while closing asks every stop to skip its grace periods.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use super::syscall;

/// The write end of the current shutdown pipe (-1: none).
static PIPE: AtomicI32 = AtomicI32::new(-1);
/// The last signal received.
static LAST: AtomicI32 = AtomicI32::new(0);
/// Set while the program is closing; a signal then also sets `FORCE`.
static CLOSING: AtomicBool = AtomicBool::new(false);
/// Stops skip their waits and kill at once.
static FORCE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    LAST.store(sig, Ordering::SeqCst);
    if CLOSING.load(Ordering::SeqCst) {
        FORCE.store(true, Ordering::SeqCst);
    }
    let fd = PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: `write` is async-signal-safe; the buffer is a live local
        // byte; a full pipe (EAGAIN) already holds a wake-up.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

/// Handlers installed for the duration of a run; restored on drop.
#[derive(Debug)]
pub(crate) struct ShutdownSignals {
    read: OwnedFd,
    write: OwnedFd,
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl ShutdownSignals {
    /// Creates the pipe and installs the handlers for `signals`.
    pub(crate) fn install(signals: &[libc::c_int]) -> io::Result<ShutdownSignals> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a writable array of two ints.
        syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK))?;
        // SAFETY: `pipe2` returned two new descriptors owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        PIPE.store(write.as_raw_fd(), Ordering::SeqCst);
        LAST.store(0, Ordering::SeqCst);
        CLOSING.store(false, Ordering::SeqCst);
        FORCE.store(false, Ordering::SeqCst);
        let mut previous = Vec::new();
        for &sig in signals {
            // SAFETY: a zeroed sigaction is valid to fill; the handler is
            // an `extern "C" fn(c_int)` doing only async-signal-safe work;
            // `old` receives the previous action for restoring.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &action, &mut old) == 0 {
                    previous.push((sig, old));
                }
            }
        }
        Ok(ShutdownSignals {
            read,
            write,
            previous,
        })
    }

    /// The read end: readable once a signal (or a request) arrived.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.read)
    }

    /// Wakes the loop as a signal would (a programmatic stop request).
    pub(crate) fn request(&self) {
        let byte = 1u8;
        // SAFETY: writes one byte from a live local to our own pipe.
        unsafe { libc::write(self.write.as_raw_fd(), (&byte as *const u8).cast(), 1) };
    }
}

impl Drop for ShutdownSignals {
    fn drop(&mut self) {
        for (sig, old) in &self.previous {
            // SAFETY: restores an action `sigaction` gave us earlier.
            unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
        }
        PIPE.store(-1, Ordering::SeqCst);
        CLOSING.store(false, Ordering::SeqCst);
        // Stops after the run take their grace periods again.
        FORCE.store(false, Ordering::SeqCst);
    }
}

/// The last signal received during the run (0: none).
pub(crate) fn last_signal() -> i32 {
    LAST.load(Ordering::SeqCst)
}

/// Marks the start of closing: a signal from now on forces the stops.
pub(crate) fn set_closing() {
    CLOSING.store(true, Ordering::SeqCst);
}

/// Whether stops should skip their grace periods (a second signal came
/// while closing).
pub(crate) fn force_stop() -> bool {
    FORCE.load(Ordering::SeqCst)
}
