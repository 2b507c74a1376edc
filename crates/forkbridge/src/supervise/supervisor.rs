//! [`Supervisor`]: a set of processes restarted by their policies, waited
//! on in one poll, and stopped in reverse start order within one bound.

use std::collections::VecDeque;
use std::fmt;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::process::{Incoming, MessageProcess, Status};

use super::child::Child;
use super::event::{Hook, SupervisorEvent};
use super::policy::RestartPolicy;
use super::watch;

/// Owns processes of any kinds, restarts each by its [`RestartPolicy`], and
/// reports what happens as [`SupervisorEvent`]s.
///
/// The supervisor is driven by the caller's thread, like a
/// [`MessageProcess`]: [`wait_event`](Supervisor::wait_event) waits in one
/// `poll(2)` on every child's socket and exit fd (and the program's own
/// fds), restarts the children whose time has come, and returns the next
/// event: a message, an exit, a restart, a give-up. A restart happens only
/// while the program waits for events — a program busy elsewhere calls
/// `wait_event` with a zero timeout now and then.
///
/// ```
/// use std::time::Duration;
/// use forkbridge::{Backend, Handlers, Message, MessageProcess, RestartPolicy, Supervisor, SupervisorEvent};
///
/// struct Worker;
/// impl Backend for Worker { fn register(_: &mut Handlers<Self>) {} }
///
/// let mut sup = Supervisor::new();
/// sup.add("worker", RestartPolicy::on_failure(), |name| {
///     MessageProcess::builder(name).build(Worker)
/// })?;
/// let pid = sup.process("worker").unwrap().pid().unwrap();
/// unsafe { libc::kill(pid, libc::SIGKILL) };
/// loop {
///     match sup.wait_event(Duration::from_secs(5))? {
///         Some(SupervisorEvent::Restarted { name, restarts, .. }) => {
///             assert_eq!((name.as_str(), restarts), ("worker", 1));
///             break;
///         }
///         Some(_) => {}
///         None => panic!("no restart"),
///     }
/// }
/// let worker = sup.process("worker").unwrap();
/// worker.send(Message::new("ping"))?;
/// assert_eq!(worker.recv_timeout(Duration::from_secs(5))?.command(), "pong");
/// sup.stop();
/// # Ok::<(), forkbridge::Error>(())
/// ```
pub struct Supervisor {
    /// In start order.
    children: Vec<Child>,
    events: VecDeque<SupervisorEvent>,
    hook: Option<Hook>,
    stop_timeout: Duration,
}

impl Default for Supervisor {
    fn default() -> Supervisor {
        Supervisor::new()
    }
}

impl Supervisor {
    /// A supervisor with no children, stopping them within 10 s in all.
    pub fn new() -> Supervisor {
        Supervisor {
            children: Vec::new(),
            events: VecDeque::new(),
            hook: None,
            stop_timeout: Duration::from_secs(10),
        }
    }

    /// The bound of [`stop`](Supervisor::stop) for all children together.
    pub fn stop_timeout(mut self, timeout: Duration) -> Supervisor {
        self.stop_timeout = timeout;
        self
    }

    /// Runs `hook` on every exit, restart and give-up as it happens (before
    /// `wait_event` returns it), in the thread that waits.
    pub fn on_event(mut self, hook: impl FnMut(&SupervisorEvent) + Send + 'static) -> Supervisor {
        self.hook = Some(Box::new(hook));
        self
    }

    /// Starts a child named `name`: `make(name)` returns the process, not
    /// yet started, now and for each restart — or a running handle to a
    /// backend elsewhere (`forkbridge-zenoh`'s `Link::start_on`), taken as
    /// it is.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if a child has that name; the first
    /// start's error (nothing is supervised then).
    pub fn add<F>(&mut self, name: impl Into<String>, policy: RestartPolicy, make: F) -> Result<()>
    where
        F: FnMut(&str) -> Result<MessageProcess> + Send + 'static,
    {
        let name = name.into();
        if self.children.iter().any(|c| c.name() == name) {
            return Err(Error::new(ErrorKind::InvalidArgument)
                .with_source(format!("a child is named '{name}' already")));
        }
        self.children
            .push(Child::start(name, Box::new(make), policy)?);
        Ok(())
    }

    /// The child's process while it runs (`None` while it is restarting,
    /// after it ended for good, or for no such child).
    pub fn process(&mut self, name: &str) -> Option<&mut MessageProcess> {
        self.children
            .iter_mut()
            .find(|c| c.name() == name)
            .and_then(Child::process)
    }

    /// As [`process`](Supervisor::process), shared: for a wait on its fd
    /// beside other things.
    pub fn get(&self, name: &str) -> Option<&MessageProcess> {
        self.children
            .iter()
            .find(|c| c.name() == name)
            .and_then(Child::process_ref)
    }

    /// The children's names, in start order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.children.iter().map(Child::name)
    }

    /// A snapshot of every child, in start order.
    pub fn status(&self) -> Vec<Status> {
        self.children.iter().map(|c| c.status(0)).collect()
    }

    /// The next event, waiting up to `timeout`; `None` when none came.
    pub fn wait_event(&mut self, timeout: Duration) -> Result<Option<SupervisorEvent>> {
        self.wait_event_with(&[], timeout)
    }

    /// As [`wait_event`](Supervisor::wait_event), also waiting for the
    /// program's own fds: [`SupervisorEvent::Ready`] with the index in
    /// `extra` of one that is readable (a [`Shutdown`](crate::Shutdown)'s
    /// fd, a listening socket).
    pub fn wait_event_with(
        &mut self,
        extra: &[BorrowedFd<'_>],
        timeout: Duration,
    ) -> Result<Option<SupervisorEvent>> {
        let deadline = deadline::after(timeout);
        loop {
            self.maintain();
            if let Some(event) = self.events.pop_front() {
                return Ok(Some(event));
            }
            // Past the deadline this is one look without waiting.
            self.wait_once(extra, deadline)?;
            if let Some(event) = self.events.pop_front() {
                return Ok(Some(event));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    /// Stops every child in reverse start order, all within the
    /// [`stop_timeout`](Supervisor::stop_timeout): each gets its stop
    /// request, `SIGTERM` and `SIGKILL` by its own timeouts, cut short when
    /// the common bound runs out (then the rest are killed at once). No
    /// child is restarted after this.
    pub fn stop(&mut self) {
        let by = deadline::after(self.stop_timeout);
        for child in self.children.iter_mut().rev() {
            let _ = child.stop_by(by);
        }
    }

    fn maintain(&mut self) {
        let now = Instant::now();
        for i in 0..self.children.len() {
            if self.children[i].has_ended() {
                self.drain(i);
            }
            let events = self.children[i].restart_if_due(now);
            self.queue(events);
        }
    }

    fn wait_once(&mut self, extra: &[BorrowedFd<'_>], deadline: Option<Instant>) -> Result<()> {
        let mut wake = deadline;
        for c in &self.children {
            if let Some(at) = c.restart_at() {
                wake = Some(wake.map_or(at, |d| d.min(at)));
            }
        }
        let children = self
            .children
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((i, c.process_ref()?)));
        let Some(woken) = watch::wait(children, extra, wake, false)? else {
            return Err(Error::new(ErrorKind::InvalidArgument)
                .with_source("nothing to wait for: no child runs and no fd was given"));
        };
        self.events
            .extend(woken.extra.into_iter().map(SupervisorEvent::Ready));
        for i in woken.processes {
            self.drain(i);
        }
        Ok(())
    }

    /// Takes every message child `i` sent as events; handles its end.
    fn drain(&mut self, i: usize) {
        loop {
            let child = &mut self.children[i];
            let name = child.name().to_string();
            let Some(process) = child.process() else {
                return;
            };
            match process.try_incoming() {
                Ok(Some(Incoming::Message(message))) => {
                    self.events
                        .push_back(SupervisorEvent::Message { name, message });
                }
                // A reply no call waits for any more (it timed out).
                Ok(Some(Incoming::Reply { .. })) => {}
                Ok(None) => return,
                Err(e) if e.is_disconnected() => {
                    let events = self.children[i].ended(Instant::now());
                    self.queue(events);
                    let events = self.children[i].restart_if_due(Instant::now());
                    self.queue(events);
                    return;
                }
                Err(e) => log::warn!(target: "forkbridge::supervise", "{name}: {e}"),
            }
        }
    }

    fn queue(&mut self, events: Vec<SupervisorEvent>) {
        for event in events {
            event.log();
            if let Some(hook) = &mut self.hook {
                hook(&event);
            }
            self.events.push_back(event);
        }
    }
}

/// Stops every child as [`stop`](Supervisor::stop) does.
impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field(
                "children",
                &self.children.iter().map(Child::name).collect::<Vec<_>>(),
            )
            .finish()
    }
}
