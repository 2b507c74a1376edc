//! Making the backend's process: the one place that knows how a child comes
//! to exist. [`fork`] is the only start method today; another one (a fork
//! server, a fresh `exec`) plugs in beside it with the same contract:
//!
//! * it takes the backend's entry point and its end of the socketpair, and
//!   runs the entry in the new process with that end, never returning into
//!   the caller's frames there;
//! * the parent gets the child's pid and a pidfd for it ([`Started`]), or
//!   learns that nothing was started and gets both back to try again, or
//!   that a child existed and is gone ([`Failed`]);
//! * whatever it must not leak into the child (the fds of the registry)
//!   is closed there.
//!
//! What happens after (reaping, stopping) is the lifecycle's, not the start
//! method's.

use std::os::fd::OwnedFd;

use crate::error::Error;

use super::Entry;
use super::registry::Registered;

pub(super) mod fork;

/// A started backend, as its parent holds it.
pub(super) struct Started {
    pub(super) pid: libc::pid_t,
    pub(super) pidfd: OwnedFd,
}

/// Why a start failed, and what is left of the process.
pub(super) enum Failed {
    /// Nothing was started: the entry and the socket end come back, so the
    /// handle can be started again.
    NotStarted {
        error: Error,
        entry: Entry,
        backend_end: Registered,
    },
    /// A child existed and could not be watched; it was killed and reaped.
    Lost { error: Error, pid: libc::pid_t },
}
