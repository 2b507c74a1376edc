//! Starting, stopping and reaping: the states a backend goes through, seen
//! from its frontend.

use std::os::fd::AsFd;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{poll, signal};
use crate::transport::conn::{Conn, Filled};

use super::start::{self, Failed, Started};
use super::watch::{Fate, Watch, Whom};
use super::{EXIT_SPIN, KILL_WAIT, MessageProcess, Registered, SETTLE_WAIT, STOP_SLICE, State};

impl MessageProcess {
    /// Forks the backend (valkka-multiprocess's `start`).
    ///
    /// In the child: the process's name (first 15 bytes, as `ps` and `top`
    /// show it), the parent-death signal (armed when the fork happens on
    /// the main thread: the kernel sends it when the forking *thread*
    /// exits), a check that the parent is still alive, signal
    /// dispositions and mask reset (`SIGINT` ignored if asked), the parent's
    /// other forkbridge fds closed; then `register`, `pre_run`, the loop,
    /// `post_run`, and `_exit` — the child never returns into the caller's
    /// frames. A panic in a handler is reported and the loop goes on; one
    /// in `pre_run` or `post_run` is reported and ends the process with
    /// status 1; one anywhere else (`register`, a function backend) ends it
    /// with status 101.
    ///
    /// When the frontend dies (even by `SIGKILL`), the backend ends in
    /// order: the handler it is in finishes, the loop sees the end of the
    /// stream, `post_run` runs, and it exits. The parent-death signal (the
    /// last real-time signal, `SIGRTMAX`, so that no handler of the
    /// program's own is taken over) arms a timer that kills it with
    /// `SIGKILL` if that takes more than 900 ms: a frontend's backends are
    /// gone within a second of its death, whatever they were doing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AlreadyStarted`]; [`ErrorKind::ForkWithThreads`] when
    /// the process has other threads and `allow_threads` is off;
    /// [`ErrorKind::Io`] if `fork` or `pidfd_open` fails.
    pub fn start(&mut self) -> Result<()> {
        if !matches!(self.state, State::Idle(_)) {
            return Err(self.err(ErrorKind::AlreadyStarted));
        }
        let State::Idle(pending) = std::mem::replace(&mut self.state, State::Empty) else {
            unreachable!("checked above");
        };
        let started = start::start(
            &self.name,
            &self.config,
            self.hooks.as_deref(),
            self.conn.as_fd(),
            pending,
        );
        let Started { pid, pidfd, status } = match started {
            Ok(started) => started,
            Err(Failed::NotStarted { error, pending }) => {
                self.state = State::Idle(pending);
                return Err(error.with_process(&self.name));
            }
            Err(Failed::Lost { error, pid }) => {
                self.state = State::Finished {
                    pid: Some(pid),
                    fate: Fate::Gone,
                };
                return Err(error.with_process(&self.name));
            }
        };
        let pidfd = Registered::new(pidfd);
        let watch = match status {
            Some(status) => Watch::Served {
                pidfd,
                status: Registered::new(status),
            },
            None => Watch::Child(pidfd),
        };
        self.state = State::Running {
            pid: Some(pid),
            watch,
            exited: false,
        };
        log::debug!(target: &self.target, "started pid {pid}");
        if self.conn.has_pending_output() {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes the backend ignore `SIGINT` (or not), as
    /// [`MessageProcessBuilder::ignore_sigint`](crate::MessageProcessBuilder::ignore_sigint) does, on a handle that
    /// exists already: valkka-multiprocess's `ignoreSIGINT()`, called between
    /// construction and `start`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AlreadyStarted`]: the child's dispositions are set at
    /// the fork.
    pub fn set_ignore_sigint(&mut self, yes: bool) -> Result<()> {
        if !matches!(self.state, State::Idle(_)) {
            return Err(self.err(ErrorKind::AlreadyStarted));
        }
        self.config.ignore_sigint = yes;
        Ok(())
    }

    /// Replaces the backend's data form before `start` (the binding's).
    pub(crate) fn set_portable(&mut self, portable: super::start::boot::Portable) -> Result<()> {
        match &mut self.state {
            State::Idle(pending) => {
                pending.portable = Some(Box::new(portable));
                Ok(())
            }
            _ => Err(self.err(ErrorKind::AlreadyStarted)),
        }
    }

    /// Sets the start method before `start` (the binding's).
    pub(crate) fn set_method(&mut self, method: super::StartMethod) -> Result<()> {
        if !matches!(self.state, State::Idle(_)) {
            return Err(self.err(ErrorKind::AlreadyStarted));
        }
        self.config.method = method;
        Ok(())
    }

    /// Alias of [`start`](MessageProcess::start) (valkka-multiprocess's `go`).
    pub fn go(&mut self) -> Result<()> {
        self.start()
    }

    /// Asks the backend to stop after the messages already sent (valkka-multiprocess's
    /// `requestStop`); does not wait for it to stop. The request is written
    /// like [`send`](MessageProcess::send) writes a message: it blocks while
    /// the socket is full. `Ok` also if the backend is already gone.
    pub fn request_stop(&mut self) -> Result<()> {
        self.request_stop_deadline(None)
    }

    /// As [`request_stop`](MessageProcess::request_stop), giving up after
    /// `timeout` with [`ErrorKind::Timeout`] while the socket is full; the
    /// request stays queued, and a later call or flush goes on writing it
    /// (one request however many calls). For a caller that must do
    /// something between slices of the wait (an interpreter checking for
    /// Ctrl-C).
    pub fn request_stop_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.request_stop_deadline(deadline::after(timeout))
    }

    pub(super) fn request_stop_deadline(&mut self, deadline: Option<Instant>) -> Result<()> {
        match self.state {
            State::Running { .. } => {}
            State::Idle(_) => return Err(self.err(ErrorKind::NotStarted)),
            _ => return Ok(()),
        }
        // A relay's stream is written by its transport: `Relay::stop`
        // queues the request there.
        if self.relayed {
            return Ok(());
        }
        if !std::mem::replace(&mut self.stop_requested, true) {
            self.conn.feed_stop();
        }
        match self.flush_deadline(deadline) {
            Err(e) if e.is_disconnected() => Ok(()),
            other => other,
        }
    }

    /// Whether the backend is still running (reaps it if it has exited).
    pub fn is_alive(&mut self) -> bool {
        if let State::Running { .. } = self.state {
            let _ = self.join_deadline(Some(Instant::now()));
        }
        matches!(self.state, State::Running { .. })
    }

    /// Waits for the backend to exit and reaps it (valkka-multiprocess's `waitStop`);
    /// does not ask it to stop. Messages it sends meanwhile are read and
    /// kept for `recv`, so a backend blocked on a full socket can finish.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotStarted`]; [`ErrorKind::Disconnected`] without a
    /// status if something else in the program reaped the child.
    pub fn join(&mut self) -> Result<ExitStatus> {
        self.join_deadline(None)
    }

    /// As [`join`](MessageProcess::join), giving up after `timeout` with
    /// [`ErrorKind::Timeout`] (the process keeps running).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.join_deadline(deadline::after(timeout))
    }

    pub(super) fn join_deadline(&mut self, deadline: Option<Instant>) -> Result<ExitStatus> {
        let (pid, watch) = match &self.state {
            State::Idle(_) | State::Empty => return Err(self.err(ErrorKind::NotStarted)),
            State::Finished { fate, .. } => {
                return fate.status().ok_or_else(|| self.disconnected());
            }
            State::Running { pid, watch, .. } => (*pid, watch),
        };
        // A relay's stream is read by its transport, never here.
        let conn = (!self.relayed).then_some(&mut self.conn);
        match wait_reap(watch.whom(), conn, deadline) {
            Ok(fate) => {
                let status = fate.status();
                self.finish(pid, fate);
                status.ok_or_else(|| self.disconnected())
            }
            Err(e) => Err(e.with_process(&self.name)),
        }
    }

    /// Stops the backend within a bound and reaps it (valkka-multiprocess's `stop`):
    /// stop request → wait `stop_timeout` → `SIGTERM` → wait `kill_timeout`
    /// → `SIGKILL` → reap. Returns how it ended; a second call returns the
    /// same status at once.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotStarted`]; [`ErrorKind::Disconnected`] without a
    /// status if something else reaped the child; [`ErrorKind::Timeout`]
    /// only if even `SIGKILL` did not end it within 5 s (a process stuck in
    /// the kernel).
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.stop_by(None)
    }

    /// As [`stop`](MessageProcess::stop), with every grace period cut short
    /// at `by` (`None`: no cut): a supervisor stopping many processes
    /// within one bound.
    pub(crate) fn stop_by(&mut self, by: Option<Instant>) -> Result<ExitStatus> {
        if let State::Finished { fate, .. } = &self.state {
            return fate.status().ok_or_else(|| self.disconnected());
        }
        let stop_timeout = self.config.stop_timeout;
        let kill_timeout = self.config.kill_timeout;
        let earliest = |a: Option<Instant>| match (a, by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        };
        // The request and the wait share one bound: a backend stuck in a
        // handler with the socket full must not hold `stop` at the write.
        let deadline = earliest(deadline::after(stop_timeout));
        match self.request_stop_deadline(deadline::min_after(deadline, STOP_SLICE)) {
            Ok(()) => {}
            Err(e) if e.kind() == &ErrorKind::NotStarted => return Err(e),
            Err(e) => log::debug!(target: &self.target, "stop request not delivered: {e}"),
        }
        match self.join_unless_forced(deadline) {
            Err(e) if e.is_timeout() => {}
            other => return other,
        }
        if !signal::force_stop() {
            log::warn!(target: &self.target, "did not stop within {stop_timeout:?}: sending SIGTERM");
            let _ = self.signal(libc::SIGTERM);
            match self.join_unless_forced(earliest(deadline::after(kill_timeout))) {
                Err(e) if e.is_timeout() => {}
                other => return other,
            }
        }
        log::warn!(target: &self.target, "survived SIGTERM for {kill_timeout:?}: sending SIGKILL");
        let _ = self.signal(libc::SIGKILL);
        self.join_timeout(KILL_WAIT)
    }

    /// `stop_timeout` and `kill_timeout`, for the async frontend.
    #[cfg(feature = "tokio")]
    pub(crate) fn stop_timeouts(&self) -> (Duration, Duration) {
        (self.config.stop_timeout, self.config.kill_timeout)
    }

    /// Queues a stop request without writing it (once per process).
    #[cfg(feature = "tokio")]
    pub(crate) fn queue_stop(&mut self) -> Result<()> {
        match self.state {
            State::Running { .. } => {
                if !std::mem::replace(&mut self.stop_requested, true) {
                    self.conn.feed_stop();
                }
                Ok(())
            }
            State::Idle(_) => Err(self.err(ErrorKind::NotStarted)),
            _ => Ok(()),
        }
    }

    /// Waits for the exit until `deadline`, in slices, giving up early (as
    /// a timeout) when a second Ctrl-C asks every stop to hurry (see
    /// [`MainContext`](crate::MainContext)).
    pub(super) fn join_unless_forced(&mut self, deadline: Option<Instant>) -> Result<ExitStatus> {
        loop {
            match self.join_deadline(deadline::min_after(deadline, STOP_SLICE)) {
                Err(e) if e.is_timeout() => {
                    if signal::force_stop() || deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    /// Waits until the child is reaped (bounded) to learn its status.
    /// [`ErrorKind::Disconnected`] once the backend is known to be gone
    /// (reaped, or its pidfd seen readable), dropping what waits to be
    /// written: nobody will read it, and a socket that a process the
    /// backend forked keeps open would take bytes until full, then block.
    pub(super) fn refuse_if_gone(&mut self) -> Result<()> {
        let gone = match self.state {
            State::Idle(_) => false,
            State::Running { exited, .. } => exited,
            State::Finished { .. } | State::Empty => true,
        };
        if !gone {
            return Ok(());
        }
        self.conn.discard_output();
        self.settle(Some(Instant::now() + SETTLE_WAIT));
        Err(self.disconnected())
    }

    pub(super) fn settle(&mut self, deadline: Option<Instant>) {
        if let State::Running { .. } = self.state {
            let _ = self.join_deadline(deadline);
        }
    }

    pub(super) fn finish(&mut self, pid: Option<libc::pid_t>, fate: Fate) {
        match &fate {
            Fate::Exited(s) => log::debug!(target: &self.target, "exited: {s}"),
            Fate::Gone => log::debug!(target: &self.target, "exited; reaped elsewhere"),
            Fate::Lost(reason) => log::warn!(target: &self.target, "host lost: {reason}"),
        }
        self.state = State::Finished { pid, fate };
    }
}

/// Waits for the child to exit and reaps it. While waiting, reads the
/// intercom (if given) so a backend blocked on a full socket can finish.
pub(super) fn wait_reap(
    whom: Whom<'_>,
    mut conn: Option<&mut Conn<Registered>>,
    deadline: Option<Instant>,
) -> Result<Fate> {
    loop {
        if let Some(fate) = whom.try_end()? {
            return Ok(fate);
        }
        // A fixed array, not a Vec: no allocation while a child shares our
        // pages copy-on-write.
        let mut fds = [poll::PollFd::from_raw(-1, 0); 2];
        let mut n = 0;
        if let Some(fd) = whom.ready_fd() {
            fds[0] = poll::PollFd::new(fd, poll::POLLIN);
            n = 1;
            if let Some(conn) = conn.as_ref().filter(|c| !c.is_eof()) {
                fds[1] = poll::PollFd::new(conn.as_fd(), poll::POLLIN);
                n = 2;
            }
        }
        let fds = &mut fds[..n];
        if fds.is_empty() {
            // No pidfd (it could not be opened): poll the status.
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(ErrorKind::Timeout));
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        if poll::poll(fds, deadline)? == 0 {
            return Err(Error::new(ErrorKind::Timeout));
        }
        if fds.len() == 2 && fds[1].revents() != 0 {
            if let Some(conn) = &mut conn {
                if conn.fill()? == Filled::Eof {
                    // The child closed its end: it is exiting, and becomes
                    // reapable within microseconds. Yielding for that beats a
                    // second sleep in `poll` (a cross-CPU wake-up costs tens
                    // of microseconds on a VM).
                    if let Some(fate) = reap_soon(whom)? {
                        return Ok(fate);
                    }
                }
            }
        }
    }
}

/// Tries to reap the child for a short while, yielding the CPU in
/// between; `None` if it is still running after that.
fn reap_soon(whom: Whom<'_>) -> Result<Option<Fate>> {
    let until = Instant::now() + EXIT_SPIN;
    while Instant::now() < until {
        match whom.try_end()? {
            Some(fate) => return Ok(Some(fate)),
            None => std::thread::yield_now(),
        }
    }
    Ok(None)
}
