//! One supervised process: how to make it, the process while it lives, and
//! its restart history. The supervisor and the pool both hold these.

use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::process::{MessageProcess, ProcessState, Status};

use super::event::SupervisorEvent;
use super::policy::{Decision, RestartPolicy, Restarts};

/// Makes a process, not yet started, named by its argument.
pub(crate) type Factory = Box<dyn FnMut(&str) -> Result<MessageProcess> + Send>;

/// How long a process that broke its stream while still alive gets to die
/// after `SIGKILL`.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// One incarnation of a process is told apart from the next by this.
static INCARNATIONS: AtomicU64 = AtomicU64::new(1);

pub(crate) struct Child {
    name: String,
    factory: Factory,
    process: Option<MessageProcess>,
    restarts: Restarts,
    state: ProcessState,
    /// This incarnation's number (a new one per start).
    incarnation: u64,
    restart_at: Option<Instant>,
    down_since: Option<Instant>,
    last_exit: Option<ExitStatus>,
    /// The last incarnation's final snapshot, shown while it is down.
    last_status: Option<Status>,
    gave_up: Option<Error>,
}

impl Child {
    /// Makes and starts the first incarnation; its failure is the caller's
    /// (nothing was supervised yet).
    pub(crate) fn start(
        name: String,
        mut factory: Factory,
        policy: RestartPolicy,
    ) -> Result<Child> {
        let process = launch(factory(&name)?)?;
        Ok(Child {
            last_status: None,
            name,
            factory,
            process: Some(process),
            restarts: Restarts::new(policy),
            state: ProcessState::Running,
            incarnation: INCARNATIONS.fetch_add(1, Ordering::Relaxed),
            restart_at: None,
            down_since: None,
            last_exit: None,
            gave_up: None,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn state(&self) -> ProcessState {
        self.state
    }

    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The running process (also while draining).
    pub(crate) fn process(&mut self) -> Option<&mut MessageProcess> {
        self.process.as_mut()
    }

    pub(crate) fn process_ref(&self) -> Option<&MessageProcess> {
        self.process.as_ref()
    }

    /// Whether it takes new work.
    pub(crate) fn is_serving(&self) -> bool {
        self.state == ProcessState::Running && self.process.is_some()
    }

    /// The error it was given up with.
    pub(crate) fn gave_up(&self) -> Option<&Error> {
        self.gave_up.as_ref()
    }

    /// Stops taking work; ended for good at its next exit.
    pub(crate) fn drain(&mut self) {
        if self.process.is_some() {
            self.state = ProcessState::Draining;
        } else {
            self.state = ProcessState::Exited;
            self.restart_at = None;
        }
    }

    /// When a restart is due, if one is.
    pub(crate) fn restart_at(&self) -> Option<Instant> {
        self.restart_at
    }

    /// Whether the process is known to have ended (its handle says so);
    /// the caller then calls [`ended`](Child::ended).
    pub(crate) fn has_ended(&self) -> bool {
        self.process.as_ref().is_some_and(|p| p.exit_fd().is_none())
    }

    /// The process ended (its stream said so): collects its status, decides
    /// by the policy, and returns what to report. Stopped or draining, it
    /// is never restarted.
    pub(crate) fn ended(&mut self, now: Instant) -> Vec<SupervisorEvent> {
        let Some(mut process) = self.process.take() else {
            return Vec::new();
        };
        let pid = process.pid();
        let status = match process.join_timeout(Duration::ZERO) {
            Ok(status) => Some(status),
            Err(e) if e.kind() == &ErrorKind::Timeout => {
                // Its stream broke but it lives: it cannot serve, so it goes.
                let _ = process.signal(libc::SIGKILL);
                process.join_timeout(KILL_WAIT).ok()
            }
            Err(e) => e.exit_status(),
        };
        self.last_status = Some(process.status());
        drop(process);
        self.last_exit = status;
        self.down_since = Some(now);
        let decision = if self.state == ProcessState::Draining {
            Decision::Stay
        } else {
            self.restarts.exited(status, now)
        };
        let mut events = Vec::with_capacity(2);
        let restart_in = match &decision {
            Decision::Restart(at) => Some(at.saturating_duration_since(now)),
            _ => None,
        };
        events.push(SupervisorEvent::Exited {
            name: self.name.clone(),
            pid,
            status,
            restart_in,
        });
        events.extend(self.apply(decision));
        events
    }

    /// Takes the policy's decision about an exit: the state it leaves, and
    /// the give-up to report if it is one.
    fn apply(&mut self, decision: Decision) -> Option<SupervisorEvent> {
        match decision {
            Decision::Restart(at) => {
                self.state = ProcessState::Restarting;
                self.restart_at = Some(at);
                None
            }
            Decision::Stay => {
                self.state = ProcessState::Exited;
                None
            }
            Decision::GiveUp(error) => {
                self.state = ProcessState::GivenUp;
                let error = error.with_process(&self.name);
                let event = SupervisorEvent::GaveUp {
                    name: self.name.clone(),
                    error: error.duplicate(),
                };
                self.gave_up = Some(error);
                Some(event)
            }
        }
    }

    /// Starts the replacement if its time has come; what to report.
    pub(crate) fn restart_if_due(&mut self, now: Instant) -> Vec<SupervisorEvent> {
        if self.restart_at.is_none_or(|at| at > now) {
            return Vec::new();
        }
        self.restart_at = None;
        let started = (self.factory)(&self.name).and_then(launch);
        match started {
            Ok(process) => {
                let pid = process.pid().unwrap_or(0);
                self.process = Some(process);
                self.state = ProcessState::Running;
                self.incarnation = INCARNATIONS.fetch_add(1, Ordering::Relaxed);
                let down_for = self
                    .down_since
                    .take()
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                vec![SupervisorEvent::Restarted {
                    name: self.name.clone(),
                    pid,
                    restarts: self.restarts.total(),
                    down_for,
                }]
            }
            Err(e) => {
                // A start that fails counts as an exit without a status.
                log::warn!(target: "forkbridge::supervise", "{}: restart failed: {e}", self.name);
                self.last_exit = None;
                let decision = self.restarts.exited(None, now);
                self.apply(decision).into_iter().collect()
            }
        }
    }

    /// Stops the process within `by` and keeps it down.
    pub(crate) fn stop_by(&mut self, by: Option<Instant>) -> Option<Result<ExitStatus>> {
        self.restart_at = None;
        if self.state != ProcessState::GivenUp {
            self.state = ProcessState::Exited;
        }
        let mut process = self.process.take()?;
        let result = process.stop_by(by);
        if let Ok(status) = result {
            self.last_exit = Some(status);
        }
        self.last_status = Some(process.status());
        Some(result)
    }

    /// Its snapshot; `calls` in flight as its owner counts them.
    pub(crate) fn status(&self, calls: usize) -> Status {
        let mut status = match (&self.process, &self.last_status) {
            (Some(p), _) => p.status(),
            (None, Some(last)) => last.clone(),
            (None, None) => unreachable!("a child starts with a process"),
        };
        status.state = self.state;
        status.restarts = self.restarts.total();
        if status.last_exit.is_none() {
            status.last_exit = self.last_exit;
        }
        status.calls_in_flight = calls;
        status
    }
}

/// Starts what a factory made, or takes it as it is when it runs already:
/// a handle to a backend on another host (the `forkbridge-zenoh` crate's
/// `Link::start_on`), which watches, stops and restarts as any other.
fn launch(mut process: MessageProcess) -> Result<MessageProcess> {
    match process.start() {
        Err(e) if e.kind() == &ErrorKind::AlreadyStarted && process.is_alive() => Ok(process),
        Err(e) => Err(e),
        Ok(()) => Ok(process),
    }
}
