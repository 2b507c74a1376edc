//! Making the backend's process: the one place that knows how a child comes
//! to exist. Three start methods ([`StartMethod`]) share one contract:
//! [`fork`] copies the caller, [`spawn`] executes the program again and
//! [`server`] asks a fork server; the last two send the backend as data in
//! a boot frame ([`boot`]) and need [`init`] at the top of `main`.
//!
//! * it takes the backend (its entry point, or its bytes) and its end of
//!   the socketpair, and runs the backend in the new process with that
//!   end, never returning into the caller's frames there;
//! * the parent gets the child's pid and a pidfd for it ([`Started`]), or
//!   learns that nothing was started and gets both back to try again, or
//!   that a child existed and is gone ([`Failed`]);
//! * whatever it must not leak into the child (the fds of the registry)
//!   is closed there.
//!
//! What happens after (reaping, stopping) is the lifecycle's, not the start
//! method's.

use std::os::fd::{BorrowedFd, OwnedFd};

use crate::backend::ChildInfo;
use crate::error::{Error, ErrorKind};
use crate::process::builder::ForkHooks;

use super::registry::Registered;
use super::{Config, Entry};

pub(crate) mod boot;
pub(super) mod fork;
mod init;
pub(crate) mod server;
mod spawn;

pub use init::init;
pub(crate) use init::take_worker_socket;
pub use server::{start_fork_server, stop_fork_server};

/// How a backend's process comes to exist.
///
/// | | `Fork` | `ForkServer` | `Spawn` |
/// |---|---|---|---|
/// | the worker is | a copy of the caller | a fork of a small server | this program, run again |
/// | from a threaded caller | refused (or `allow_threads`) | yes | yes |
/// | start cost | grows with the caller's memory | flat | an `exec` |
/// | the backend | any value | `build_portable`: crosses as data | `build_portable` |
/// | needs [`init`] first in `main` | no | yes | yes |
///
/// With `ForkServer` and `Spawn` the backend is encoded with serde when the
/// process is built and decoded in the worker, with the fds of the shared
/// objects it holds ([`Event`](crate::Event), [`EventGroup`](crate::EventGroup),
/// [`SharedBuffer`](crate::SharedBuffer), [`FrameRing`](crate::FrameRing))
/// passed beside the bytes; build heavy state in `pre_run`. Every
/// guarantee of `Fork` holds for all three: death seen at once, a bounded
/// stop that reaps, the backend gone within a second of its frontend's
/// death.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartMethod {
    /// `fork(2)` of the caller (the default): the fastest from a small,
    /// single-threaded program; refused from a threaded one.
    #[default]
    Fork,
    /// A single-threaded fork server, started by [`Spawn`](StartMethod::Spawn)
    /// when first needed (or by [`start_fork_server`]), forks the worker.
    /// Its cost stays that of forking a small process, whatever the caller
    /// holds and runs. The worker is the server's child: its pid, a pidfd
    /// and later its exit status reach the frontend over a socket. If the
    /// server dies, its workers die with it and their frontends see
    /// [`ErrorKind::Disconnected`].
    ForkServer,
    /// `posix_spawn` of this executable (`/proc/self/exe`), which runs
    /// `main` up to [`init`] and becomes the worker there. The worker is
    /// the caller's child.
    Spawn,
}

/// What a built process holds until it starts.
pub(super) struct Pending {
    /// The backend as a closure, for `Fork`.
    pub(super) entry: Entry,
    /// The backend as data, for the other methods (`None`: it cannot cross).
    pub(super) portable: Option<Box<boot::Portable>>,
    /// What the backend's loop needs besides the backend.
    pub(super) info: ChildInfo,
    pub(super) backend_end: Registered,
}

/// A started backend, as its parent holds it.
pub(super) struct Started {
    pub(super) pid: libc::pid_t,
    pub(super) pidfd: OwnedFd,
    /// Where a fork server reports the worker's exit status (`None`: the
    /// worker is our child and we reap it).
    pub(super) status: Option<OwnedFd>,
}

/// Starts `pending` by `config.method`; `front` is the frontend's end of
/// the intercom, on which the others write the boot frame.
pub(super) fn start(
    name: &str,
    config: &Config,
    hooks: Option<&dyn ForkHooks>,
    front: BorrowedFd<'_>,
    pending: Box<Pending>,
) -> Result<Started, Failed> {
    let method = config.method;
    if method == StartMethod::Fork {
        return fork::start(name, config, hooks, pending);
    }
    if pending.portable.is_none() {
        return Err(Failed::NotStarted {
            error: Error::new(ErrorKind::NotPortable),
            pending,
        });
    }
    // A worker of another language is given its program, and needs no
    // `init` in this one.
    let foreign = pending
        .portable
        .as_ref()
        .is_some_and(|p| p.command().is_some())
        && (method == StartMethod::Spawn || server::is_foreign());
    if !foreign {
        if let Err(error) = init::check() {
            return Err(Failed::NotStarted { error, pending });
        }
    }
    match method {
        StartMethod::Spawn => spawn::start(config, front, pending),
        _ => server::start(name, config, front, pending),
    }
}

/// Why a start failed, and what is left of the process.
pub(super) enum Failed {
    /// Nothing was started: the backend and the socket end come back, so
    /// the handle can be started again.
    NotStarted { error: Error, pending: Box<Pending> },
    /// A child existed and could not be watched; it was killed and reaped.
    Lost { error: Error, pid: libc::pid_t },
}
