//! The spawn start method: this executable runs again, from `main`, and
//! becomes the worker in [`init`](super::init).
//!
//! The worker is our child, spawned with its end of the intercom at fd 3
//! and the variable [`WORKER_ENV`] naming it. It reads the boot frame,
//! sets itself up as a forked child would (name, signals, parent-death
//! signal), and says hello. Nothing of the caller is copied: its threads,
//! locks and memory stay behind, which is the point.
//!
//! The parent-death signal fires when the *thread* that started the child
//! exits, so it is armed only when the spawn happened on the main thread
//! (as for fork). Started from another thread, the worker ends when its
//! loop sees its frontend's end of the intercom close.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use crate::error::Error;
use crate::sys::{fork, pidfd, spawn};

use super::super::lifecycle::wait_reap;
use super::super::watch::Whom;
use super::super::{Config, KILL_WAIT};
use super::boot;
use super::{Failed, Pending, Started};

/// Names the inherited intercom fd in a spawned worker.
pub(super) const WORKER_ENV: &str = "FORKBRIDGE_WORKER_FD";

pub(super) fn start(
    config: &Config,
    front: BorrowedFd<'_>,
    pending: Box<Pending>,
) -> Result<Started, Failed> {
    let portable = pending.portable.as_ref().expect("checked by start");
    let parent = fork::is_main_thread().then(fork::getpid);
    let (boot, fds) = match portable.boot(&pending.info, parent, true, config.ignore_sigint) {
        Ok(boot) => boot,
        Err(error) => return Err(Failed::NotStarted { error, pending }),
    };
    let (exe, args) = match portable.command() {
        Some([program, args @ ..]) => (program.clone(), args.to_vec()),
        _ => (
            "/proc/self/exe".into(),
            std::env::args_os().skip(1).collect(),
        ),
    };
    let env = [(WORKER_ENV, spawn::INHERITED_FD.to_string())];
    let pid = match spawn::spawn(exe.as_ref(), &args, &env, pending.backend_end.as_fd()) {
        Ok(pid) => pid,
        Err(e) => {
            return Err(Failed::NotStarted {
                error: Error::io(e),
                pending,
            });
        }
    };
    drop(pending);
    let lost = |error: Error| {
        let _ = fork::kill(pid, libc::SIGKILL);
        let _ = wait_reap(Whom::Pid(pid), None, Some(Instant::now() + KILL_WAIT));
        Failed::Lost { error, pid }
    };
    let pidfd = match pidfd::pidfd_open(pid) {
        Ok(pidfd) => pidfd,
        Err(e) => return Err(lost(Error::io(e))),
    };
    let deadline = Instant::now() + config.start_timeout;
    if let Err(error) = boot::deliver(front, pidfd.as_fd(), &boot, &fds, deadline) {
        return Err(lost(error));
    }
    Ok(Started {
        pid,
        pidfd,
        status: None,
    })
}
