//! The fork server's own loop, in the spawned server process (see the
//! parent module for the protocol).
//!
//! One thread, one `poll` over the control socket and the pidfds of the
//! workers: a request is forked at once, a readable pidfd is reaped and
//! its status written to the worker's status channel. Before each fork the
//! server reads its thread count: code before `init` may have started a
//! thread, and forking then would be the very hazard the server exists to
//! avoid, so it refuses that request with a reason instead.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;

use crate::sys::fork::{self, ChildSetup, Forked, ProcStatus};
use crate::sys::pidfd::{self, Reap};
use crate::sys::{poll, procfs, socket};

use super::super::boot;
use super::read_packet;
use crate::process::builder::ForkHooks;

/// A worker the server forked and has not reaped yet.
struct Worker {
    pidfd: OwnedFd,
    status: OwnedFd,
}

/// Serves fork requests on `control` until the program's end of it
/// closes; never returns. Each worker runs the Rust backend its boot
/// frame names.
pub(in crate::process::start) fn run(control: OwnedFd) -> ! {
    run_with(control, None, &mut |fd| boot::worker(fd))
}

/// Whether the server's workers keep its signal handlers: an
/// interpreter's (a binding's server: Python's `KeyboardInterrupt`), not
/// those code before `init` installed in a Rust program.
fn keep_handlers(hooks: Option<&dyn ForkHooks>) -> bool {
    hooks.is_some()
}

/// As [`run`], with `hooks` around each fork and `child` run in each
/// worker with its intercom end (a binding's interpreter reads the boot
/// frame itself); the worker exits with what it returns.
pub(crate) fn run_with(
    control: OwnedFd,
    hooks: Option<&dyn ForkHooks>,
    child: &mut dyn FnMut(OwnedFd) -> i32,
) -> ! {
    // A Ctrl-C in the terminal reaches the whole process group: the
    // program decides what its workers do then, not the server.
    fork::ignore_sigint();
    fork::set_name("forkbridge-srv");
    // Read once here rather than in every worker: the executable's
    // identity (each worker checks it), and the dispositions to reset
    // (nothing but this loop runs here after `init`).
    let _ = crate::sys::spawn::executable_id();
    let not_default = ProcStatus::read().map_or(u64::MAX, |s| s.not_default);
    let _ = socket::send(control.as_fd(), b"ready");
    let mut workers: Vec<Worker> = Vec::new();
    loop {
        let mut fds: Vec<poll::PollFd> =
            std::iter::once(poll::PollFd::new(control.as_fd(), poll::POLLIN))
                .chain(
                    workers
                        .iter()
                        .map(|w| poll::PollFd::new(w.pidfd.as_fd(), poll::POLLIN)),
                )
                .collect();
        if poll::poll(&mut fds, None).is_err() {
            continue;
        }
        let exited: Vec<usize> = (0..workers.len())
            .filter(|&i| fds[i + 1].revents() != 0)
            .collect();
        let request = fds[0].revents() != 0;
        drop(fds);
        // Highest index first, so `swap_remove` moves only workers
        // already looked at.
        for i in exited.into_iter().rev() {
            match pidfd::try_reap_fd(workers[i].pidfd.as_fd()) {
                Ok(Reap::Exited(status)) => {
                    let worker = workers.swap_remove(i);
                    let raw = status.into_raw().to_le_bytes();
                    let _ = socket::send(worker.status.as_fd(), &raw);
                }
                // Closing the channel without a status says "unknown".
                Ok(Reap::Gone) => drop(workers.swap_remove(i)),
                Ok(Reap::Running) | Err(_) => {}
            }
        }
        if request {
            match read_packet(control.as_fd(), Some(std::time::Instant::now())) {
                Ok((name, fds)) if !name.is_empty() => {
                    if let Some(worker) =
                        fork_worker(&control, &workers, &name, fds, not_default, hooks, child)
                    {
                        workers.push(worker);
                    }
                }
                // End of stream: the program is gone. The workers get their
                // parent-death signal when this process exits.
                Ok(_) => fork::exit_now(0),
                Err(_) => {}
            }
        }
    }
}

/// Forks one worker for a request carrying `[intercom end, status end]`.
fn fork_worker(
    control: &OwnedFd,
    workers: &[Worker],
    name: &[u8],
    mut fds: Vec<OwnedFd>,
    not_default: u64,
    hooks: Option<&dyn ForkHooks>,
    child: &mut dyn FnMut(OwnedFd) -> i32,
) -> Option<Worker> {
    if fds.len() != 2 {
        return None;
    }
    let status = fds.pop().expect("two fds");
    let intercom = fds.pop().expect("two fds");
    let refuse = |why: String| {
        let mut reply = vec![1u8];
        reply.extend_from_slice(why.as_bytes());
        let _ = socket::send(status.as_fd(), &reply);
        None
    };
    match procfs::thread_count() {
        Ok(1) => {}
        Ok(threads) => {
            return refuse(format!(
                "the server has {threads} threads (code before forkbridge::init() started one)"
            ));
        }
        Err(e) => return refuse(format!("cannot count the server's threads: {e}")),
    }
    let mut close: Vec<RawFd> = vec![control.as_raw_fd(), status.as_raw_fd()];
    close.extend(
        workers
            .iter()
            .flat_map(|w| [w.pidfd.as_raw_fd(), w.status.as_raw_fd()]),
    );
    let setup = ChildSetup {
        parent: fork::getpid(),
        parent_death_signal: Some(fork::parent_death_signal()),
        ignore_sigint: false,
        keep_handlers: keep_handlers(hooks),
        not_default,
        close: &close,
        comm: fork::comm(&String::from_utf8_lossy(name)),
    };
    let pid = match super::super::fork::fork_with(hooks) {
        Ok(Forked::Child) => {
            if !fork::child_setup(&setup) {
                fork::exit_now(1);
            }
            if let Some(hooks) = hooks {
                hooks.after_fork_child();
            }
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child(intercom)));
            fork::exit_now(code.unwrap_or(101))
        }
        Ok(Forked::Parent(pid)) => pid,
        Err(e) => return refuse(format!("fork: {e}")),
    };
    drop(intercom);
    let pidfd = match pidfd::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = fork::kill(pid, libc::SIGKILL);
            return refuse(format!("pidfd_open: {e}"));
        }
    };
    let mut reply = vec![0u8];
    reply.extend_from_slice(&pid.to_le_bytes());
    if socket::send_with_fds(status.as_fd(), &reply, &[pidfd.as_fd()]).is_err() {
        // The frontend gave up waiting: the worker reads end of stream on
        // its intercom and ends; it is reaped like any other.
        let _ = fork::kill(pid, libc::SIGKILL);
    }
    Some(Worker { pidfd, status })
}
