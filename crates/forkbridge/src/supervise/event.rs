//! [`SupervisorEvent`]: what a supervisor or a pool reports about its processes, to
//! the program and to the log.

use std::process::ExitStatus;
use std::time::Duration;

use crate::data::message::Message;
use crate::error::Error;

/// A program's hook on a supervisor's or pool's events.
pub(crate) type Hook = Box<dyn FnMut(&SupervisorEvent) + Send>;

/// A change in a supervised process, or something it sent.
///
/// Every state change is also logged (target `forkbridge::supervise`):
/// `Exited` at `warn` for a failure and `info` for a clean exit,
/// `Restarted` and `TookOver` at `info`, `GaveUp` at `error` — so a program that only
/// logs sees every restart.
#[derive(Debug)]
#[non_exhaustive]
pub enum SupervisorEvent {
    /// The process sent a message (a [`Supervisor`](crate::Supervisor)'s
    /// children only; a pool keeps its workers' messages for
    /// [`Pool::try_recv`](crate::Pool::try_recv)).
    Message {
        /// The process's name.
        name: String,
        /// The message.
        message: Message,
    },
    /// The process ended.
    Exited {
        /// The process's name.
        name: String,
        /// Its pid.
        pid: Option<i32>,
        /// How it ended (`None`: the status could not be collected).
        status: Option<ExitStatus>,
        /// When it will be started again (`None`: it will not).
        restart_in: Option<Duration>,
    },
    /// A replacement for an ended process started.
    Restarted {
        /// The process's name (the replacement keeps it).
        name: String,
        /// The replacement's pid.
        pid: i32,
        /// Restarts of this process so far, this one included.
        restarts: u32,
        /// From the exit seen to the replacement started.
        down_for: Duration,
    },
    /// A pool's spare took the place of a worker that died, at once: it
    /// takes calls from now on (the dead worker's resends first), and the
    /// dead worker's replacement, when it starts, is the new spare.
    TookOver {
        /// The spare's name.
        name: String,
        /// The worker it replaces.
        replaces: String,
    },
    /// The process hit its restart limit and stays down; `error` is
    /// [`ErrorKind::GaveUp`](crate::ErrorKind::GaveUp) with its last exit
    /// statuses.
    GaveUp {
        /// The process's name.
        name: String,
        /// Why.
        error: Error,
    },
    /// One of the extra fds given to
    /// [`Supervisor::wait_event_with`](crate::Supervisor::wait_event_with)
    /// is readable (its index in that slice).
    Ready(usize),
}

impl SupervisorEvent {
    /// The name of the process the event is about (`None` for `Ready`).
    pub fn name(&self) -> Option<&str> {
        match self {
            SupervisorEvent::Message { name, .. }
            | SupervisorEvent::Exited { name, .. }
            | SupervisorEvent::Restarted { name, .. }
            | SupervisorEvent::TookOver { name, .. }
            | SupervisorEvent::GaveUp { name, .. } => Some(name),
            SupervisorEvent::Ready(_) => None,
        }
    }

    /// Logs the event, if it is a state change.
    pub(crate) fn log(&self) {
        const TARGET: &str = "forkbridge::supervise";
        match self {
            SupervisorEvent::Exited {
                name,
                pid,
                status,
                restart_in,
            } => {
                let how = status.map_or_else(|| "status unknown".to_string(), |s| s.to_string());
                let pid = pid.map_or_else(String::new, |p| format!(" (pid {p})"));
                let next = match restart_in {
                    Some(d) => format!("; restart in {d:?}"),
                    None => "; not restarted".to_string(),
                };
                if status.is_some_and(|s| s.success()) {
                    log::info!(target: TARGET, "{name}{pid} exited: {how}{next}");
                } else {
                    log::warn!(target: TARGET, "{name}{pid} exited: {how}{next}");
                }
            }
            SupervisorEvent::Restarted {
                name,
                pid,
                restarts,
                down_for,
            } => log::info!(
                target: TARGET,
                "{name} restarted as pid {pid} (restart {restarts}, down {down_for:?})"
            ),
            SupervisorEvent::TookOver { name, replaces } => {
                log::info!(target: TARGET, "spare {name} took over from {replaces}")
            }
            // The error names the process.
            SupervisorEvent::GaveUp { error, .. } => log::error!(target: TARGET, "{error}"),
            SupervisorEvent::Message { .. } | SupervisorEvent::Ready(_) => {}
        }
    }
}
