//! `ppoll(2)` with a deadline.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Instant;

use super::syscall;

/// Readiness interest and result bits, as `poll(2)` defines them.
pub(crate) const POLLIN: i16 = libc::POLLIN;
pub(crate) const POLLOUT: i16 = libc::POLLOUT;
pub(crate) const POLLPRI: i16 = libc::POLLPRI;
pub(crate) const POLLERR: i16 = libc::POLLERR;
pub(crate) const POLLHUP: i16 = libc::POLLHUP;
pub(crate) const POLLNVAL: i16 = libc::POLLNVAL;

/// One entry of a poll set.
#[derive(Debug, Clone, Copy)]
#[repr(transparent)]
pub(crate) struct PollFd(libc::pollfd);

impl PollFd {
    /// Watches `fd` for `events`.
    ///
    /// The entry stores the number only; the caller keeps the fd open for as
    /// long as the entry is polled (a closed fd reports `POLLNVAL`, never
    /// undefined behaviour).
    pub(crate) fn new(fd: BorrowedFd<'_>, events: i16) -> PollFd {
        PollFd(libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        })
    }

    /// Watches the fd with this number. Polling a number that is not an open
    /// fd reports `POLLNVAL` for the entry; it is never undefined behaviour.
    pub(crate) fn from_raw(fd: RawFd, events: i16) -> PollFd {
        PollFd(libc::pollfd {
            fd,
            events,
            revents: 0,
        })
    }

    /// The readiness bits returned by the last poll.
    pub(crate) fn revents(&self) -> i16 {
        self.0.revents
    }
}

/// Waits until an entry is ready or `deadline` passes (`None`: no deadline).
/// `EINTR` is retried with the time that remains, never the full timeout.
/// Returns the number of ready entries (0 on timeout).
pub(crate) fn poll(fds: &mut [PollFd], deadline: Option<Instant>) -> io::Result<usize> {
    loop {
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            }
        });
        let ts_ptr = timeout
            .as_ref()
            .map_or(std::ptr::null(), |ts| ts as *const libc::timespec);
        // SAFETY: `PollFd` is `repr(transparent)` over `libc::pollfd`, so the
        // slice is a valid array of `fds.len()` pollfds; `ts_ptr` is null or
        // points to a live timespec; a null sigmask leaves the mask alone.
        let res = syscall!(ppoll(
            fds.as_mut_ptr().cast::<libc::pollfd>(),
            fds.len() as libc::nfds_t,
            ts_ptr,
            std::ptr::null(),
        ));
        match res {
            Ok(n) => return Ok(n as usize),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}
