//! One `poll(2)` over many processes and the program's fds: the wait a
//! supervisor and a pool share.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use crate::error::Result;
use crate::process::MessageProcess;
use crate::sys::poll;

/// What a wait found.
#[derive(Debug, Default)]
pub(crate) struct Woken {
    /// Indices (as given) of the processes to read from: something arrived
    /// or is buffered, they ended, or (`flush`) their socket takes output.
    pub(crate) processes: Vec<usize>,
    /// Positions in `extra` of the readable fds.
    pub(crate) extra: Vec<usize>,
}

/// Waits until one of `processes` has something (see [`Woken`]), one of
/// `extra` is readable, or `wake` passes. A process with a frame already
/// buffered makes the wait a look. `flush`: a process whose output waits
/// for room is also woken for that room (its caller writes it).
///
/// `None` when there is nothing to wait on: no process, no fd, no `wake`.
pub(crate) fn wait<'a>(
    processes: impl Iterator<Item = (usize, &'a MessageProcess)>,
    extra: &[BorrowedFd<'_>],
    mut wake: Option<Instant>,
    flush: bool,
) -> Result<Option<Woken>> {
    let mut fds = Vec::new();
    let mut owners = Vec::new();
    let mut woken = Woken::default();
    for (i, p) in processes {
        if p.has_read_ahead() {
            woken.processes.push(i);
            wake = Some(Instant::now());
        }
        let mut events = poll::POLLIN;
        if flush && p.has_pending_output() {
            events |= poll::POLLOUT;
        }
        fds.push(poll::PollFd::new(p.as_fd(), events));
        owners.push(i);
        if let Some(exit) = p.exit_fd() {
            fds.push(poll::PollFd::new(exit, poll::POLLIN));
            owners.push(i);
        }
    }
    let processes_end = fds.len();
    fds.extend(extra.iter().map(|fd| poll::PollFd::new(*fd, poll::POLLIN)));
    if fds.is_empty() {
        let Some(at) = wake else {
            return Ok(None);
        };
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        return Ok(Some(woken));
    }
    poll::poll(&mut fds, wake)?;
    for (fd, &i) in fds[..processes_end].iter().zip(&owners) {
        if fd.revents() != 0 {
            woken.processes.push(i);
        }
    }
    woken.processes.sort_unstable();
    woken.processes.dedup();
    woken.extra = fds[processes_end..]
        .iter()
        .enumerate()
        .filter(|(_, fd)| fd.revents() != 0)
        .map(|(k, _)| k)
        .collect();
    Ok(Some(woken))
}
