//! [`Pool`]: N identical backends behind one handle, with typed calls
//! dispatched among them, dead workers replaced, and back-pressure.
//!
//! # Design
//!
//! The pool is driven by its caller's thread: `submit` writes a call to a
//! worker's socket and returns a [`Ticket`]; `wait` (and every other
//! method) waits in one `poll(2)` on every worker's socket and exit fd, reads
//! what arrived, routes replies to their tickets, replaces workers that
//! ended and resends the idempotent calls they held. A background thread
//! would answer tickets without being asked, but it would make the parent
//! threaded, and a threaded parent cannot restart a worker by `fork`; the
//! caller's thread can, and a program that wants the pool on a thread of
//! its own moves it there (it is `Send`) and uses
//! [`StartMethod::ForkServer`](crate::StartMethod::ForkServer).
//!
//! Many calls in flight per worker (up to
//! [`max_in_flight`](PoolBuilder::max_in_flight)) keep every worker busy
//! while the caller submits more: the bound is the back-pressure, and
//! `submit` waits, `try_submit` refuses ([`ErrorKind::Full`]) and
//! `submit_timeout` gives up ([`ErrorKind::Timeout`]) while every worker is
//! at it.
//!
//! When a worker dies, each call it held ends once, and never in silence:
//! a call of an [idempotent](Command::idempotent) command goes once more
//! to another worker (or, with no other, the replacement); any other ends
//! with [`ErrorKind::Disconnected`] carrying the worker's exit status. The
//! replacement starts at once (the policy's first restart has no delay), in
//! the same pass that saw the death.

mod builder;
mod command;
mod dispatch;

pub use builder::PoolBuilder;
pub use command::{Command, Request, Ticket};
pub use dispatch::Dispatch;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::data::message::Message;
use crate::deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::process::{Incoming, MessageProcess, ProcessState, Status};
use crate::protocol::call::decode_reply;
use crate::protocol::wire::Fingerprints;

use super::child::Child;
use super::event::{Hook, SupervisorEvent};
use super::policy::RestartPolicy;
use super::watch;
use command::{Slot, fulfil};
use dispatch::Keys;

/// Makes a worker process, not yet started, with the name given.
type MakeWorker = Arc<dyn Fn(&str) -> Result<MessageProcess> + Send + Sync>;

/// A call written to a worker and not yet answered.
struct Call {
    ticket: Weak<Slot>,
    command: &'static str,
    /// The request's key, which follows a resend to its new worker.
    key: Option<u64>,
    /// The call's encoded form, kept for an idempotent call not yet sent
    /// twice.
    resend: Option<Resend>,
}

struct Resend {
    types: Fingerprints,
    args: Vec<u8>,
}

/// An idempotent call whose worker died, waiting for another.
struct Retry {
    call: Call,
    resend: Resend,
    /// The incarnation it died with.
    avoid: u64,
}

struct Worker {
    child: Child,
    calls: HashMap<u64, Call>,
    /// Leaving the pool: removed once ended.
    leaving: bool,
    /// A stop request was queued (once drained).
    stopping: bool,
    /// Started and idle, waiting to take a dead worker's place.
    spare: bool,
}

impl Worker {
    /// Whether new calls may go to it.
    fn takes_calls(&self) -> bool {
        !self.spare && self.child.is_serving()
    }

    /// Whether it counts towards the pool's size: a worker (not a spare)
    /// that serves or will after its restart.
    fn kept(&self) -> bool {
        !self.leaving
            && !self.spare
            && matches!(
                self.child.state(),
                ProcessState::Running | ProcessState::Restarting
            )
    }
}

/// N identical backends behind one handle, for typed calls.
///
/// The pool is driven by the thread that calls it: `submit` writes a call
/// to a worker's socket and returns a [`Ticket`]; `wait` (and every other
/// method) waits in one `poll(2)` on every worker's socket and exit fd,
/// routes replies to their tickets, replaces workers that ended and
/// resends the idempotent calls they held. No thread of its own, so a
/// single-threaded program can restart workers by `fork`; a program that
/// wants the pool on another thread moves it there (it is `Send`) and
/// uses [`StartMethod::ForkServer`](crate::StartMethod::ForkServer).
///
/// Each worker takes at most
/// [`max_in_flight`](PoolBuilder::max_in_flight) calls at once, which keeps
/// it busy while replies travel and is the back-pressure: `submit` waits,
/// `try_submit` refuses ([`ErrorKind::Full`]) and `submit_timeout` gives
/// up ([`ErrorKind::Timeout`]) while every worker (or a keyed request's
/// worker) is at it.
///
/// When a worker dies, each call it held ends once, never in silence: a
/// call of an [idempotent](Command::idempotent) command goes once more to
/// another worker (or, with no other, to the replacement); any other ends
/// with [`ErrorKind::Disconnected`] carrying the worker's exit status. The
/// replacement starts in the same pass that saw the death, by the pool's
/// [`RestartPolicy`](crate::RestartPolicy) (the first restart has no
/// delay). With [spares](PoolBuilder::spares), a spare already running takes
/// the dead worker's place in that same pass, so its calls are answered
/// without waiting for a start, and the replacement becomes the new spare.
///
/// ```
/// use std::time::Duration;
/// use forkbridge::{Backend, Command, Handlers, MessageProcess, Pool};
///
/// #[derive(Default)]
/// struct Square;
/// impl Backend for Square {
///     fn register(h: &mut Handlers<Self>) {
///         h.typed("square", |_, _, (x,): (u64,)| Ok(x * x));
///     }
/// }
/// const SQUARE: Command<(u64,), u64> = Command::new("square").idempotent();
///
/// let mut pool = Pool::builder("squares")
///     .workers(2)
///     .build(|name| MessageProcess::builder(name).build(Square))?;
/// let tickets: Vec<_> = (0..10u64)
///     .map(|x| pool.submit(SQUARE.with((x,))))
///     .collect::<Result<_, _>>()?;
/// let mut sum = 0;
/// for t in tickets {
///     sum += pool.wait(t)?;
/// }
/// assert_eq!(sum, 285);
/// assert_eq!(pool.call(SQUARE.with((12,)))?, 144);
/// pool.stop(Duration::from_secs(5));
/// # Ok::<(), forkbridge::Error>(())
/// ```
pub struct Pool {
    name: String,
    make: MakeWorker,
    policy: RestartPolicy,
    dispatch: Dispatch,
    bound: usize,
    call_timeout: Option<Duration>,
    workers: Vec<Worker>,
    /// How many workers (spares aside) the program asked for.
    target: usize,
    /// A `wait` is on: spares' restarts wait until it returns.
    waiting: bool,
    /// The number the next new worker's name gets.
    numbered: usize,
    cursor: usize,
    keys: Keys,
    retries: VecDeque<Retry>,
    inbox: VecDeque<(String, Message)>,
    hook: Option<Hook>,
}

impl Pool {
    /// Configures a pool named `name` (its workers are `name-0`, `name-1`,
    /// …).
    pub fn builder(name: impl Into<String>) -> PoolBuilder {
        PoolBuilder::new(name.into())
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Workers taking calls now (not restarting, leaving, given up or
    /// spare).
    pub fn serving(&self) -> usize {
        self.workers.iter().filter(|w| w.takes_calls()).count()
    }

    /// Workers the pool keeps (serving or restarting), leaving ones and
    /// spares aside.
    pub fn size(&self) -> usize {
        self.workers.iter().filter(|w| w.kept()).count()
    }

    /// Submits a call and returns its ticket; waits while every worker has
    /// [`max_in_flight`](PoolBuilder::max_in_flight) calls in flight (or,
    /// for a keyed request, while its worker has).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::GaveUp`] when no worker is left to take it (each hit
    /// its restart limit); encoding errors of the arguments.
    pub fn submit<A: Serialize, R: DeserializeOwned>(
        &mut self,
        request: Request<A, R>,
    ) -> Result<Ticket<R>> {
        self.submit_by(request, None, ErrorKind::Timeout)
    }

    /// As [`submit`](Pool::submit), refusing with [`ErrorKind::Full`] at
    /// once instead of waiting.
    pub fn try_submit<A: Serialize, R: DeserializeOwned>(
        &mut self,
        request: Request<A, R>,
    ) -> Result<Ticket<R>> {
        self.submit_by(request, Some(Instant::now()), ErrorKind::Full)
    }

    /// As [`submit`](Pool::submit), giving up after `timeout` with
    /// [`ErrorKind::Timeout`].
    pub fn submit_timeout<A: Serialize, R: DeserializeOwned>(
        &mut self,
        request: Request<A, R>,
        timeout: Duration,
    ) -> Result<Ticket<R>> {
        self.submit_by(request, deadline::after(timeout), ErrorKind::Timeout)
    }

    /// Waits for a ticket's result, at most the pool's
    /// [`call_timeout`](PoolBuilder::call_timeout) (none by default: a call
    /// then ends when it is answered or its worker dies).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`] with the exit status if the worker died
    /// with the call (not idempotent, or its second try died too);
    /// [`ErrorKind::Remote`] if the handler failed; [`ErrorKind::Timeout`].
    pub fn wait<R: DeserializeOwned>(&mut self, ticket: Ticket<R>) -> Result<R> {
        let deadline = self.call_timeout.and_then(deadline::after);
        self.wait_deadline(&ticket, deadline)
    }

    /// As [`wait`](Pool::wait), giving up after `timeout` with
    /// [`ErrorKind::Timeout`]; the ticket stays valid for a later wait.
    pub fn wait_timeout<R: DeserializeOwned>(
        &mut self,
        ticket: &Ticket<R>,
        timeout: Duration,
    ) -> Result<R> {
        self.wait_deadline(ticket, deadline::after(timeout))
    }

    /// The result if it has arrived (after reading what is ready), else
    /// [`ErrorKind::Empty`].
    pub fn try_wait<R: DeserializeOwned>(&mut self, ticket: &Ticket<R>) -> Result<R> {
        self.wait_deadline(ticket, Some(Instant::now()))
            .map_err(|e| match e.kind() {
                ErrorKind::Timeout => Error::new(ErrorKind::Empty),
                _ => e,
            })
    }

    /// Submits and waits: [`submit`](Pool::submit) then
    /// [`wait`](Pool::wait).
    pub fn call<A: Serialize, R: DeserializeOwned>(&mut self, request: Request<A, R>) -> Result<R> {
        let ticket = self.submit(request)?;
        self.wait(ticket)
    }

    /// Sends a one-way command to a worker chosen as for a call (a key
    /// routes it too). Casts are not counted in flight and not resent: a
    /// cast to a worker that dies before reading it is lost with it.
    pub fn cast<A: Serialize>(&mut self, request: Request<A, ()>) -> Result<()> {
        loop {
            self.maintain();
            let i = match self.pick(request.key, usize::MAX) {
                Some(i) => i,
                None => {
                    self.refuse_if_empty()?;
                    self.pump(None)?;
                    continue;
                }
            };
            let w = &mut self.workers[i];
            let incarnation = w.child.incarnation();
            let Some(process) = w.child.process() else {
                continue;
            };
            match process.cast(request.command.name(), &request.args) {
                Ok(()) => {
                    if let Some(key) = request.key {
                        self.keys.assign(key, incarnation);
                    }
                    return Ok(());
                }
                Err(e) if e.is_disconnected() => self.ended(i),
                Err(e) => return Err(e),
            }
        }
    }

    /// A message a worker sent on its own (an `"error"` report of a failed
    /// cast, say), with the worker's name; [`ErrorKind::Empty`] if none has
    /// arrived (after reading what is ready).
    pub fn try_recv(&mut self) -> Result<(String, Message)> {
        if self.inbox.is_empty() {
            self.pump(Some(Instant::now()))?;
        }
        self.inbox.pop_front().ok_or(Error::new(ErrorKind::Empty))
    }

    /// Reads what arrived and replaces ended workers, waiting up to
    /// `timeout` for something to happen: for a program that has no call
    /// to wait for but wants dead workers replaced now.
    pub fn poll(&mut self, timeout: Duration) -> Result<()> {
        self.pump(deadline::after(timeout))
    }

    /// As [`poll`](Pool::poll), also waiting for the program's own fds (a
    /// [`Shutdown`](crate::Shutdown)'s fd, another process's): returns the
    /// indices in `extra` of those that are readable, in the same `poll(2)`
    /// that waits on the workers.
    pub fn poll_with(&mut self, extra: &[BorrowedFd<'_>], timeout: Duration) -> Result<Vec<usize>> {
        self.pump_with(extra, deadline::after(timeout))
    }

    /// Grows or shrinks the pool to `n` workers while it runs. New workers
    /// start now; leaving ones (the newest first) take no new calls, finish
    /// the ones they hold, and are stopped when done: no call is lost to a
    /// shrink.
    ///
    /// # Errors
    ///
    /// A new worker that fails to start (the workers started before it
    /// stay).
    pub fn resize(&mut self, n: usize) -> Result<()> {
        self.target = n;
        let mut keeping = self.size();
        while keeping < n {
            self.add_worker(false)?;
            keeping += 1;
        }
        for w in self.workers.iter_mut().rev() {
            if keeping <= n {
                break;
            }
            if !w.kept() {
                continue;
            }
            w.leaving = true;
            self.keys.release(w.child.incarnation());
            w.child.drain();
            keeping -= 1;
        }
        self.maintain();
        Ok(())
    }

    /// A snapshot of every worker, spares (state
    /// [`Standby`](ProcessState::Standby)), leaving and given-up ones
    /// included.
    pub fn status(&self) -> Vec<Status> {
        self.workers
            .iter()
            .map(|w| {
                let mut status = w.child.status(w.calls.len());
                if w.spare && status.state == ProcessState::Running {
                    status.state = ProcessState::Standby;
                }
                status
            })
            .collect()
    }

    /// Stops every worker within `timeout` in all (newest first: stop
    /// request, then `SIGTERM`, then `SIGKILL` as the bound runs out), and
    /// ends every call still in flight with [`ErrorKind::Disconnected`]
    /// (its ticket turns [ready](Ticket::is_ready); nothing is left to
    /// wait on it with).
    pub fn stop(mut self, timeout: Duration) {
        self.stop_all(deadline::after(timeout));
    }

    fn stop_all(&mut self, by: Option<Instant>) {
        // Every worker is asked first, so they wind down together; then
        // each is waited for (and escalated) in turn within the one bound.
        for w in self.workers.iter_mut().rev() {
            if let Some(p) = w.child.process() {
                let _ = p.request_stop_timeout(Duration::ZERO);
            }
        }
        for w in self.workers.iter_mut().rev() {
            let status = match w.child.stop_by(by) {
                Some(Ok(status)) => Some(status),
                Some(Err(e)) => e.exit_status(),
                None => None,
            };
            for (_, call) in w.calls.drain() {
                fulfil(
                    &call.ticket,
                    Err(Error::disconnected(status).with_process(w.child.name())),
                );
            }
        }
        for retry in self.retries.drain(..) {
            fulfil(&retry.call.ticket, Err(Error::disconnected(None)));
        }
        self.workers.clear();
    }

    fn submit_by<A: Serialize, R: DeserializeOwned>(
        &mut self,
        request: Request<A, R>,
        deadline: Option<Instant>,
        full: ErrorKind,
    ) -> Result<Ticket<R>> {
        let command = request.command;
        let types = Fingerprints::of::<A, R>();
        let resend = if command.is_idempotent() {
            let args = postcard::to_stdvec(&request.args)
                .map_err(|e| Error::new(ErrorKind::Encode).with_source(e.to_string()))?;
            Some(Resend { types, args })
        } else {
            None
        };
        loop {
            self.maintain();
            let Some(i) = self.pick(request.key, self.bound) else {
                self.refuse_if_empty()?;
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(Error::new(full.clone()));
                }
                self.pump(deadline)?;
                continue;
            };
            let w = &mut self.workers[i];
            let incarnation = w.child.incarnation();
            let Some(process) = w.child.process() else {
                continue;
            };
            // An idempotent call's arguments are encoded once, for this
            // send and a resend.
            let fed = match &resend {
                Some(r) => process.feed_call_encoded(command.name(), types, &r.args),
                None => process.feed_call(command.name(), types, &request.args),
            };
            let id = match fed {
                Ok(id) => id,
                Err(e) if e.is_disconnected() => {
                    self.ended(i);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (ticket, weak) = Ticket::new(command.name());
            w.calls.insert(
                id,
                Call {
                    ticket: weak,
                    command: command.name(),
                    key: request.key,
                    resend,
                },
            );
            if let Some(key) = request.key {
                self.keys.assign(key, incarnation);
            }
            if let Err(e) = process.flush_now() {
                if e.is_disconnected() {
                    self.ended(i);
                } else {
                    return Err(e);
                }
            }
            return Ok(ticket);
        }
    }

    fn wait_deadline<R: DeserializeOwned>(
        &mut self,
        ticket: &Ticket<R>,
        deadline: Option<Instant>,
    ) -> Result<R> {
        self.waiting = true;
        let result = self.wait_for(ticket, deadline);
        self.waiting = false;
        result
    }

    fn wait_for<R: DeserializeOwned>(
        &mut self,
        ticket: &Ticket<R>,
        deadline: Option<Instant>,
    ) -> Result<R> {
        loop {
            if let Some(outcome) = ticket.take() {
                return outcome.and_then(|value| decode_reply(&value, ticket.command()));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                // One last look at what is ready, for a try.
                self.pump(Some(Instant::now()))?;
                if let Some(outcome) = ticket.take() {
                    return outcome.and_then(|value| decode_reply(&value, ticket.command()));
                }
                return Err(Error::new(ErrorKind::Timeout));
            }
            self.pump(deadline)?;
        }
    }

    /// Whether worker `w`'s restart, if due, waits: a spare's replacement
    /// is not needed for the call being waited for while another worker
    /// serves, and its start would hold up that call's answer (from the
    /// spare that took over). It starts at the pool's next use outside a
    /// wait.
    fn restart_waits(&self, w: &Worker) -> bool {
        self.waiting && w.spare && self.workers.iter().any(Worker::takes_calls)
    }

    /// The worker for a request: by its key's owner, else by the dispatch.
    fn pick(&mut self, key: Option<u64>, bound: usize) -> Option<usize> {
        let workers = &self.workers;
        let load = |i: usize| {
            let w: &Worker = &workers[i];
            w.takes_calls().then_some(w.calls.len())
        };
        if let Some(owner) = key.and_then(|k| self.keys.owner(k)) {
            if let Some(i) = workers
                .iter()
                .position(|w| w.child.incarnation() == owner && w.takes_calls())
            {
                return load(i).filter(|&l| l < bound).map(|_| i);
            }
        }
        let dispatch = if key.is_some() {
            Dispatch::LeastOutstanding
        } else {
            self.dispatch
        };
        dispatch::choose(dispatch, workers.len(), load, bound, &mut self.cursor)
    }

    /// [`ErrorKind::GaveUp`] (the last worker's error) when no worker
    /// serves or will.
    fn refuse_if_empty(&self) -> Result<()> {
        let alive = self.workers.iter().any(|w| {
            !w.leaving
                && matches!(
                    w.child.state(),
                    ProcessState::Running | ProcessState::Restarting
                )
        });
        if alive {
            return Ok(());
        }
        Err(self
            .workers
            .iter()
            .rev()
            .find_map(|w| w.child.gave_up().map(Error::duplicate))
            .unwrap_or_else(|| Error::disconnected(None).with_process(&self.name)))
    }

    /// One wait on every worker's socket and exit fd, until something
    /// arrives, a restart is due, or `deadline`; then handles it all.
    fn pump(&mut self, deadline: Option<Instant>) -> Result<()> {
        self.pump_with(&[], deadline).map(drop)
    }

    fn pump_with(
        &mut self,
        extra: &[BorrowedFd<'_>],
        deadline: Option<Instant>,
    ) -> Result<Vec<usize>> {
        self.maintain();
        // A pool of one waits in its worker's socket read, as a bare
        // `MessageProcess` does (which also watches the pidfd): one syscall
        // per reply where a poll and a read would be two.
        if let Some(i) = self.sole_worker(extra) {
            if let Some(process) = self.workers[i].child.process() {
                let got = process.wait_incoming(deadline);
                if self.route(i, got) {
                    self.service(i);
                }
            }
            self.maintain();
            return Ok(Vec::new());
        }
        let mut wake = deadline;
        for w in &self.workers {
            if let Some(at) = w.child.restart_at().filter(|_| !self.restart_waits(w)) {
                wake = Some(wake.map_or(at, |d| d.min(at)));
            }
        }
        let workers = self
            .workers
            .iter()
            .enumerate()
            .filter_map(|(i, w)| Some((i, w.child.process_ref()?)));
        let Some(woken) = watch::wait(workers, extra, wake, true)? else {
            self.maintain();
            return Ok(Vec::new());
        };
        for i in woken.processes {
            self.service(i);
        }
        self.maintain();
        Ok(woken.extra)
    }

    /// Writes what waits and reads everything that arrived from worker `i`.
    fn service(&mut self, i: usize) {
        let Some(process) = self.workers.get_mut(i).and_then(|w| w.child.process()) else {
            return;
        };
        if process.has_pending_output() {
            if let Err(e) = process.flush_now() {
                if e.is_disconnected() {
                    self.ended(i);
                    return;
                }
                log::warn!(target: "forkbridge::supervise", "{}: {e}", process.name());
            }
        }
        loop {
            let Some(process) = self.workers[i].child.process() else {
                return;
            };
            let got = process.try_incoming();
            if !self.route(i, got) {
                return;
            }
        }
    }

    /// Routes what worker `i` sent: a reply to its ticket, a message to the
    /// inbox, its end to [`ended`](Pool::ended). `false` once nothing more
    /// is to be read now.
    fn route(&mut self, i: usize, got: Result<Option<Incoming>>) -> bool {
        match got {
            Ok(Some(Incoming::Reply { id, result })) => {
                match self.workers[i].calls.remove(&id) {
                    Some(call) => fulfil(&call.ticket, result),
                    None => log::debug!(
                        target: "forkbridge::supervise",
                        "{}: dropping the reply to call {id}",
                        self.workers[i].child.name()
                    ),
                }
                true
            }
            Ok(Some(Incoming::Message(msg))) => {
                let name = self.workers[i].child.name().to_string();
                self.inbox.push_back((name, msg));
                true
            }
            Ok(None) => false,
            Err(e) if e.is_disconnected() => {
                self.ended(i);
                false
            }
            // A bad frame is skipped; the stream goes on.
            Err(e) => {
                log::warn!(target: "forkbridge::supervise", "{}: {e}", self.workers[i].child.name());
                true
            }
        }
    }

    /// The one worker there is, when nothing else needs watching (no other
    /// worker, no restart due, no resend waiting, no fd of the program's).
    fn sole_worker(&self, extra: &[BorrowedFd<'_>]) -> Option<usize> {
        let [only] = self.workers.as_slice() else {
            return None;
        };
        (extra.is_empty()
            && self.retries.is_empty()
            && only.child.restart_at().is_none()
            && only.child.process_ref().is_some())
        .then_some(0)
    }

    /// Worker `i` ended: its status is collected, its calls resent or
    /// failed, its keys released, its restart decided.
    fn ended(&mut self, i: usize) {
        let now = Instant::now();
        let w = &mut self.workers[i];
        let incarnation = w.child.incarnation();
        let events = w.child.ended(now);
        let status = events.iter().find_map(|e| match e {
            SupervisorEvent::Exited { status, .. } => Some(*status),
            _ => None,
        });
        let error = Error::disconnected(status.flatten()).with_process(w.child.name());
        self.keys.release(incarnation);
        for (_, mut call) in w.calls.drain() {
            match call.resend.take() {
                Some(resend) => self.retries.push_back(Retry {
                    call,
                    resend,
                    avoid: incarnation,
                }),
                None => fulfil(&call.ticket, Err(error.duplicate())),
            }
        }
        self.emit(events);
        let w = &self.workers[i];
        if !w.spare && !w.leaving {
            self.take_over(i);
        }
    }

    /// A running spare takes the place of worker `i`, which ended: the
    /// spare takes calls from now on, and `i`, when it restarts, is a
    /// spare. Nothing happens without a running spare.
    fn take_over(&mut self, i: usize) {
        let Some(j) = self
            .workers
            .iter()
            .position(|w| w.spare && !w.leaving && w.child.is_serving())
        else {
            return;
        };
        self.workers[j].spare = false;
        self.workers[i].spare = true;
        let event = SupervisorEvent::TookOver {
            name: self.workers[j].child.name().to_string(),
            replaces: self.workers[i].child.name().to_string(),
        };
        self.emit(vec![event]);
    }

    /// Running spares take the places of workers that stay down, while the
    /// pool is smaller than asked.
    fn fill(&mut self) {
        while self.size() < self.target {
            let Some(down) = self.workers.iter().position(|w| {
                !w.spare
                    && !w.leaving
                    && matches!(
                        w.child.state(),
                        ProcessState::Exited | ProcessState::GivenUp
                    )
            }) else {
                return;
            };
            let before = self.size();
            self.take_over(down);
            if self.size() == before {
                return;
            }
        }
    }

    /// Restarts due, ended workers noticed, drained workers stopped and
    /// removed, resends placed.
    fn maintain(&mut self) {
        for i in 0..self.workers.len() {
            if self.workers[i].child.has_ended() {
                self.ended(i);
            }
        }
        // Resends first, to the workers (and spares) already running: a
        // restart's start would hold them up.
        self.fill();
        if !self.retries.is_empty() {
            self.place_retries();
        }
        let now = Instant::now();
        for i in 0..self.workers.len() {
            if !self.restart_waits(&self.workers[i]) {
                let events = self.workers[i].child.restart_if_due(now);
                self.emit(events);
            }
            let w = &mut self.workers[i];
            if w.leaving && !w.stopping && w.calls.is_empty() {
                if let Some(p) = w.child.process() {
                    w.stopping = true;
                    let _ = p.request_stop_timeout(Duration::ZERO);
                }
            }
        }
        let before = self.workers.len();
        self.workers
            .retain(|w| !(w.leaving && w.child.process_ref().is_none()));
        if self.workers.len() != before {
            self.cursor = 0;
        }
        self.fill();
        self.place_retries();
    }

    /// Sends each waiting resend to a serving worker other than the one it
    /// died with (the in-flight bound does not apply: these calls were
    /// admitted already); with none left to take them, they fail.
    fn place_retries(&mut self) {
        let mut waiting = VecDeque::new();
        while let Some(retry) = self.retries.pop_front() {
            let target = self
                .workers
                .iter()
                .enumerate()
                .filter(|(_, w)| w.takes_calls() && w.child.incarnation() != retry.avoid)
                .min_by_key(|(_, w)| w.calls.len())
                .map(|(i, _)| i);
            let Some(i) = target else {
                waiting.push_back(retry);
                continue;
            };
            let w = &mut self.workers[i];
            let Some(process) = w.child.process() else {
                waiting.push_back(retry);
                continue;
            };
            let Retry { call, resend, .. } = retry;
            match process.feed_call_encoded(call.command, resend.types, &resend.args) {
                Ok(id) => {
                    let _ = process.flush_now();
                    if let Some(key) = call.key {
                        if self.keys.owner(key).is_none() {
                            self.keys.assign(key, w.child.incarnation());
                        }
                    }
                    w.calls.insert(id, call);
                }
                Err(e) => fulfil(&call.ticket, Err(e)),
            }
        }
        if !waiting.is_empty() && self.refuse_if_empty().is_err() {
            for retry in waiting.drain(..) {
                fulfil(
                    &retry.call.ticket,
                    Err(Error::disconnected(None).with_process(&self.name)),
                );
            }
        }
        self.retries = waiting;
    }

    fn add_worker(&mut self, spare: bool) -> Result<()> {
        let name = format!("{}-{}", self.name, self.numbered);
        self.numbered += 1;
        let make = Arc::clone(&self.make);
        let child = Child::start(name, Box::new(move |n| make(n)), self.policy)?;
        self.workers.push(Worker {
            child,
            calls: HashMap::new(),
            leaving: false,
            stopping: false,
            spare,
        });
        Ok(())
    }

    fn emit(&mut self, events: Vec<SupervisorEvent>) {
        for event in events {
            event.log();
            if let Some(hook) = &mut self.hook {
                hook(&event);
            }
        }
    }
}

/// Stops every worker within 5 s in all; calls in flight end with
/// [`ErrorKind::Disconnected`].
impl Drop for Pool {
    fn drop(&mut self) {
        self.stop_all(deadline::after(Duration::from_secs(5)));
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("serving", &self.serving())
            .field("dispatch", &self.dispatch)
            .field("max_in_flight", &self.bound)
            .finish()
    }
}
