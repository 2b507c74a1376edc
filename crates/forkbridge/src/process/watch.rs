//! How a frontend learns that its backend ended, and how it ended: the
//! one place that knows the three kinds of backend a handle can hold.
//!
//! | the backend is | death is seen on | the status comes from | signals go |
//! |---|---|---|---|
//! | our child (`Fork`, `Spawn`) | its pidfd | `waitid` on the pidfd | `pidfd_send_signal` |
//! | a fork server's child | its pidfd | the server's status channel | `pidfd_send_signal` |
//! | elsewhere ([`relay`](super::relay)) | the fate channel | the fate channel | a request on the fate channel |

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Instant;

use crate::sys::pidfd::{self, Reap};

use super::registry::Registered;
use super::relay::fate;
use super::start::server;

/// What the frontend watches while the backend runs.
pub(super) enum Watch {
    /// Our child, reaped through its pidfd.
    Child(Registered),
    /// A fork server's child: its pidfd (death, signals) and the server's
    /// report of its status.
    Served {
        pidfd: Registered,
        status: Registered,
    },
    /// A backend elsewhere: its fate channel carries the status, or why
    /// none will come, and takes signal requests.
    Remote(Registered),
}

/// How a backend ended, as far as the frontend could learn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fate {
    Exited(ExitStatus),
    /// Reaped elsewhere, or its reporter went away without a word.
    Gone,
    /// The host or the link to it was lost; the text says what was seen.
    Lost(String),
}

impl Watch {
    /// Polls readable once the backend has died.
    pub(super) fn death_fd(&self) -> BorrowedFd<'_> {
        match self {
            Watch::Child(pidfd) | Watch::Served { pidfd, .. } => pidfd.as_fd(),
            Watch::Remote(fate) => fate.as_fd(),
        }
    }

    /// Polls readable once the status can be read (for a served worker a
    /// little after its death: the server reaps it first).
    pub(super) fn exit_fd(&self) -> BorrowedFd<'_> {
        match self {
            Watch::Child(pidfd) => pidfd.as_fd(),
            Watch::Served { status, .. } => status.as_fd(),
            Watch::Remote(fate) => fate.as_fd(),
        }
    }

    /// The pidfd, when the backend is a process of this host.
    pub(super) fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Watch::Child(pidfd) | Watch::Served { pidfd, .. } => Some(pidfd.as_fd()),
            Watch::Remote(_) => None,
        }
    }

    pub(super) fn signal(&self, sig: libc::c_int) -> io::Result<()> {
        match self {
            Watch::Child(pidfd) | Watch::Served { pidfd, .. } => {
                pidfd::send_signal(pidfd.as_fd(), sig)
            }
            Watch::Remote(fate) => fate::ask_signal(fate.as_fd(), sig),
        }
    }

    pub(super) fn whom(&self) -> Whom<'_> {
        match self {
            Watch::Child(pidfd) => Whom::Pidfd(pidfd.as_fd()),
            Watch::Served { status, .. } => Whom::Served {
                status: status.as_fd(),
            },
            Watch::Remote(fate) => Whom::Remote { fate: fate.as_fd() },
        }
    }
}

/// The backend to reap, borrowed: by pid when it has no pidfd, by pidfd
/// when it is ours, through the status channel of the fork server that
/// forked it, or through the fate channel of one elsewhere.
#[derive(Debug, Clone, Copy)]
pub(super) enum Whom<'a> {
    Pid(libc::pid_t),
    Pidfd(BorrowedFd<'a>),
    Served { status: BorrowedFd<'a> },
    Remote { fate: BorrowedFd<'a> },
}

impl<'a> Whom<'a> {
    /// `None` while it runs.
    pub(super) fn try_end(self) -> io::Result<Option<Fate>> {
        let reap = match self {
            Whom::Pid(pid) => pidfd::try_reap(pid)?,
            Whom::Pidfd(fd) => pidfd::try_reap_fd(fd)?,
            Whom::Served { status } => server::read_status(status, Some(Instant::now()))?,
            Whom::Remote { fate } => return fate::read(fate, Some(Instant::now())),
        };
        Ok(match reap {
            Reap::Exited(status) => Some(Fate::Exited(status)),
            Reap::Gone => Some(Fate::Gone),
            Reap::Running => None,
        })
    }

    /// What polls readable when `try_end` has news.
    pub(super) fn ready_fd(self) -> Option<BorrowedFd<'a>> {
        match self {
            Whom::Pid(_) => None,
            Whom::Pidfd(fd) => Some(fd),
            Whom::Served { status } => Some(status),
            Whom::Remote { fate } => Some(fate),
        }
    }
}

impl Fate {
    pub(super) fn status(&self) -> Option<ExitStatus> {
        match self {
            Fate::Exited(status) => Some(*status),
            _ => None,
        }
    }

    /// The raw wait status, for the fate channel.
    pub(super) fn from_raw(raw: i32) -> Fate {
        Fate::Exited(ExitStatus::from_raw(raw))
    }
}
