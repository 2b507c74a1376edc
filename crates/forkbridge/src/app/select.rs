//! [`select`]: wait on several fds at once (valkka-multiprocess's `safe_select`).
//!
//! Built on `ppoll(2)`, not `select(2)`: no `FD_SETSIZE` limit (an fd above
//! 1023 is fine), and an interrupted wait (`EINTR`, a signal whose handler
//! returns) is resumed with the time that *remains*, so a signal neither
//! ends the wait early with an empty result nor stretches it.

use std::os::fd::BorrowedFd;
use std::time::Duration;

use crate::deadline;
use crate::error::{Error, Result};
use crate::sys::poll;

/// The ready entries of a [`select`], as positions in the slices given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selected {
    /// Positions in `read` that are readable (data, end of stream, error).
    pub read: Vec<usize>,
    /// Positions in `write` that are writable.
    pub write: Vec<usize>,
    /// Positions in `except` with an exceptional condition (`POLLPRI`).
    pub except: Vec<usize>,
}

impl Selected {
    /// Whether nothing is ready (the wait timed out).
    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.write.is_empty() && self.except.is_empty()
    }
}

/// Waits until one of the fds is ready or `timeout` passes (`None`: no
/// limit), and says which are ready; on timeout every list is empty.
///
/// A [`MessageProcess`](crate::MessageProcess) is readable when its backend
/// sent something or ended, and its [`pidfd`](crate::MessageProcess::pidfd)
/// when it ended; a pollable [`Event`](crate::Event)'s
/// [`fd`](crate::Event::fd) while it is set. So "the event, or the death of
/// the backend that should set it" is one call:
///
/// ```rust,standalone_crate
/// use std::os::fd::AsFd;
/// use std::time::Duration;
/// use forkbridge::{Backend, Event, EventKind, Handlers, MessageProcess, select};
///
/// struct Idle;
/// impl Backend for Idle { fn register(_: &mut Handlers<Self>) {} }
///
/// let done = Event::with_kind(EventKind::Pollable)?;
/// let mut p = MessageProcess::new("idle", Idle)?;
/// p.start()?;
/// let ready = select(
///     &[done.fd().unwrap(), p.pidfd().unwrap()],
///     &[],
///     &[],
///     Some(Duration::from_millis(50)),
/// )?;
/// assert!(ready.is_empty()); // neither set nor dead: timed out
/// p.stop()?;
/// # Ok::<(), forkbridge::Error>(())
/// ```
///
/// # Errors
///
/// [`ErrorKind::Io`](crate::ErrorKind::Io) (`EBADF`) if an fd is not open.
pub fn select(
    read: &[BorrowedFd<'_>],
    write: &[BorrowedFd<'_>],
    except: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> Result<Selected> {
    let deadline = timeout.and_then(deadline::after);
    let mut fds: Vec<poll::PollFd> = Vec::with_capacity(read.len() + write.len() + except.len());
    fds.extend(read.iter().map(|fd| poll::PollFd::new(*fd, poll::POLLIN)));
    fds.extend(write.iter().map(|fd| poll::PollFd::new(*fd, poll::POLLOUT)));
    fds.extend(
        except
            .iter()
            .map(|fd| poll::PollFd::new(*fd, poll::POLLPRI)),
    );
    let mut selected = Selected::default();
    if poll::poll(&mut fds, deadline)? == 0 {
        return Ok(selected);
    }
    if fds.iter().any(|p| p.revents() & poll::POLLNVAL != 0) {
        return Err(Error::io(std::io::Error::from_raw_os_error(libc::EBADF)));
    }
    let (r, rest) = fds.split_at(read.len());
    let (w, x) = rest.split_at(write.len());
    let readable = poll::POLLIN | poll::POLLHUP | poll::POLLERR;
    selected.read = ready(r, readable);
    selected.write = ready(w, poll::POLLOUT | poll::POLLERR | poll::POLLHUP);
    selected.except = ready(x, poll::POLLPRI);
    Ok(selected)
}

fn ready(fds: &[poll::PollFd], mask: i16) -> Vec<usize> {
    fds.iter()
        .enumerate()
        .filter(|(_, p)| p.revents() & mask != 0)
        .map(|(i, _)| i)
        .collect()
}
