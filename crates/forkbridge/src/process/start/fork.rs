//! The fork start method: the child is a copy of the caller, made by
//! `fork(2)` on the caller's thread.
//!
//! The copy is why it is fast and why it has rules. Only the forking thread
//! exists in the child, so a lock another thread held stays held there:
//! with more than one thread it refuses (`ForkWithThreads`) unless the
//! program opted in. Buffered stdio would be written twice, so it is
//! flushed first. The child resets what it inherited (signal dispositions
//! and mask, the registry's fds, its name) before the backend's entry runs
//! (see `sys::fork::child_setup`).

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use crate::error::{Error, ErrorKind};
use crate::process::builder::ForkHooks;
use crate::sys::fork::{self, ChildSetup, Forked};
use crate::sys::pidfd;

use super::super::lifecycle::wait_reap;
use super::super::registry;
use super::super::watch::Whom;
use super::super::{Config, Entry, KILL_WAIT};
use super::{Failed, Pending, Started};

/// Forks the backend; the child runs `entry` with `backend_end` and exits.
pub(in crate::process) fn start(
    name: &str,
    config: &Config,
    hooks: Option<&dyn ForkHooks>,
    pending: Box<Pending>,
) -> Result<Started, Failed> {
    let status = match fork::ProcStatus::read() {
        Ok(status) if status.threads > 1 && !config.allow_threads => {
            Err(Error::new(ErrorKind::ForkWithThreads {
                threads: status.threads,
            }))
        }
        Ok(status) => Ok(status),
        Err(e) => Err(Error::io(e)),
    };
    let status = match status {
        Ok(status) => status,
        Err(error) => return Err(Failed::NotStarted { error, pending }),
    };
    let Pending {
        entry,
        portable,
        info,
        backend_end,
    } = *pending;
    // A buffer copied into the child would be written twice.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let close = registry::snapshot_without(backend_end.as_raw_fd());
    let setup = ChildSetup {
        parent: fork::getpid(),
        parent_death_signal: fork::is_main_thread().then(fork::parent_death_signal),
        ignore_sigint: config.ignore_sigint,
        keep_handlers: config.keep_signal_handlers,
        // Another thread may install a handler after the read: then reset
        // every signal, as if all had one.
        not_default: if status.threads > 1 {
            u64::MAX
        } else {
            status.not_default
        },
        close: &close,
        comm: fork::comm(name),
    };
    let pid = match fork_with(hooks) {
        Ok(Forked::Child) => child_main(&setup, hooks, entry, info, backend_end.into_child()),
        Ok(Forked::Parent(pid)) => pid,
        Err(e) => {
            return Err(Failed::NotStarted {
                error: Error::io(e),
                pending: Box::new(Pending {
                    entry,
                    portable,
                    info,
                    backend_end,
                }),
            });
        }
    };
    drop(backend_end);
    // The backend value's parent copy: the child owns the real one now.
    drop(entry);
    drop(info);
    match pidfd::pidfd_open(pid) {
        Ok(pidfd) => Ok(Started {
            pid,
            pidfd,
            status: None,
        }),
        Err(e) => {
            let _ = fork::kill(pid, libc::SIGKILL);
            let _ = wait_reap(Whom::Pid(pid), None, Some(Instant::now() + KILL_WAIT));
            Err(Failed::Lost {
                error: Error::io(e),
                pid,
            })
        }
    }
}

/// `fork(2)` with the program's hooks around it: `before_fork`, then
/// `after_fork_parent` in the parent whether it worked or not (the child
/// runs `after_fork_child` after its own setup).
pub(super) fn fork_with(hooks: Option<&dyn ForkHooks>) -> std::io::Result<Forked> {
    if let Some(hooks) = hooks {
        hooks.before_fork();
    }
    let forked = fork::fork();
    if let (Some(hooks), Ok(Forked::Parent(_)) | Err(_)) = (hooks, &forked) {
        hooks.after_fork_parent();
    }
    forked
}

/// The child's side of `start`. Never returns.
fn child_main(
    setup: &ChildSetup<'_>,
    hooks: Option<&dyn ForkHooks>,
    entry: Entry,
    info: crate::backend::ChildInfo,
    backend_end: OwnedFd,
) -> ! {
    if !fork::child_setup(setup) {
        fork::exit_now(1);
    }
    if let Some(hooks) = hooks {
        hooks.after_fork_child();
    }
    // From here on this process is a parent too: the processes its backend
    // starts must close this intercom end (and nothing the list held in the
    // parent, whose numbers are free here).
    registry::reset_in_child(backend_end.as_raw_fd());
    super::server::forget_in_child();
    let code = catch_unwind(AssertUnwindSafe(|| entry(backend_end, info))).unwrap_or(101);
    let _ = catch_unwind(|| std::io::stdout().flush());
    fork::exit_now(code)
}
