//! The serving side: backends of this host, attached to by frontends on
//! others.
//!
//! Each backend is a local process started before the Zenoh session opens
//! (a fork needs a process without threads), then handed over as a
//! [`Relay`]:
//!
//! * the `in` subscriber checks each sample is whole frames within the
//!   frame limit and writes it into the backend's stream, never waiting
//!   for the backend to read (see [`carry`](crate::carry)'s credits); a
//!   thread acknowledges what was written on `in/ack`;
//! * a thread reads whole frames from the stream and publishes them on
//!   `out` once a frontend is attached (until then they wait), within the
//!   credit that frontend's `out/ack` samples give;
//! * when the stream ends, the backend is reaped and its wait status is
//!   published on `exit`, then the `alive` token is withdrawn;
//! * a process bound to a relayed event group
//!   ([`MessageProcessBuilder::events`](forkbridge::MessageProcessBuilder::events))
//!   has its backend's sets published on `ev` by a thread of their own,
//!   once a frontend is attached, all of them before the exit;
//! * `sig` samples are delivered to the process;
//! * when the attached frontend's `owner` token vanishes, the backend is
//!   stopped like a local backend whose frontend died (unless
//!   [`Config::outlive_frontend`](crate::Config::outlive_frontend)).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use forkbridge::MessageProcess;
use forkbridge::relay::{EventSets, FrameReader, Relay};
use zenoh::Wait;
use zenoh::pubsub::Publisher;
use zenoh::sample::SampleKind;

use crate::carry::{self, Credits};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::link::Link;

/// How long to wait for a process whose stream ended to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(10);

/// How often the event sets' thread looks whether its backend ended.
const SETS_POLL: Duration = Duration::from_millis(100);

/// Starts `processes` (built, not started: each is forked here, before
/// Zenoh starts its threads), opens a link with `config`, and serves each
/// backend under its process name until it ends.
///
/// ```no_run
/// use forkbridge::{Backend, Handlers, MessageProcess};
/// use forkbridge_zenoh::{Config, serve};
///
/// struct Detector;
/// impl Backend for Detector {
///     fn register(_: &mut Handlers<Self>) {}
/// }
///
/// let detector = MessageProcess::new("detector-1", Detector)?;
/// let served = serve(
///     Config::listen("tcp/0.0.0.0:7447").namespace("vision"),
///     [detector],
/// )?;
/// for (name, status) in served.wait() {
///     println!("{name}: {status:?}");
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`ErrorKind::Process`](crate::ErrorKind::Process) if a process cannot
/// start (those already started are stopped); as [`Link::open`]
/// otherwise.
pub fn serve(
    config: Config,
    processes: impl IntoIterator<Item = MessageProcess>,
) -> Result<Served> {
    let mut relays = Vec::new();
    for mut process in processes {
        process.start()?;
        relays.push(process.into_relay()?);
    }
    let link = Link::open(config)?;
    let mut backends = Vec::new();
    for relay in relays {
        backends.push(link.serve_relay(relay)?);
    }
    Ok(Served { link, backends })
}

/// Backends served by this program; see [`serve`].
#[derive(Debug)]
pub struct Served {
    link: Link,
    backends: Vec<ServedBackend>,
}

impl Served {
    /// The link the backends are served on.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Waits until every backend has ended and its last frames and exit
    /// were published; returns each one's name and exit status (`None` if
    /// it could not be collected). Frames wait for a frontend: a backend
    /// that sent something nobody attached to receive is served until one
    /// attaches or [`stop`](Served::stop) drops them.
    pub fn wait(self) -> Vec<(String, Option<ExitStatus>)> {
        let ended = self.backends.into_iter().map(ServedBackend::join).collect();
        drop(self.link);
        ended
    }

    /// Stops every backend (stop request, then `SIGTERM`, then `SIGKILL`,
    /// within each process's bounds) and waits for them.
    pub fn stop(self) -> Vec<(String, Option<ExitStatus>)> {
        for backend in &self.backends {
            backend.stop();
        }
        self.wait()
    }
}

/// One backend served on a link: its relay's thread and what the
/// callbacks share.
#[derive(Debug)]
pub(crate) struct ServedBackend {
    pub(crate) name: String,
    shared: Arc<Shared>,
    thread: JoinHandle<Option<ExitStatus>>,
}

impl ServedBackend {
    /// Stops the backend (in its bounds); `join` then collects it.
    pub(crate) fn stop(&self) {
        self.shared.stop();
    }

    /// Whether it has ended and its exit was published.
    pub(crate) fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for its end: its name and exit status.
    pub(crate) fn join(self) -> (String, Option<ExitStatus>) {
        let status = self.thread.join().unwrap_or(None);
        (self.name, status)
    }
}

/// What the callbacks and the relay thread of one backend share.
#[derive(Debug)]
struct Shared {
    name: String,
    relay: Mutex<Relay>,
    /// How many frontends are attached (0 or 1 in practice).
    attached: Mutex<usize>,
    changed: Condvar,
    outlive_frontend: bool,
    /// Stopped by [`Served::stop`]: frames waiting for a frontend are
    /// dropped.
    stopping: AtomicBool,
    /// The backend's stream ended: its last event sets are in their queue.
    ended: AtomicBool,
    /// What the attached frontend lets the `out` pump send.
    credits: Arc<Credits>,
}

impl Shared {
    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.credits.end();
        self.changed.notify_all();
        let mut relay = self.relay.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = relay.stop() {
            log::warn!("'{}': stop: {e}", self.name);
        }
    }

    fn owner_came(&self) {
        // A new frontend: its stream holds nothing of ours yet.
        self.credits.reset();
        *self.attached.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.changed.notify_all();
    }

    fn owner_left(self: &Arc<Self>) {
        let mut attached = self.attached.lock().unwrap_or_else(PoisonError::into_inner);
        *attached = attached.saturating_sub(1);
        if *attached == 0 && !self.outlive_frontend {
            log::info!("'{}': its frontend is gone: stopping it", self.name);
            let shared = self.clone();
            // Not in Zenoh's callback: a stop takes up to its bounds.
            let _ = std::thread::Builder::new()
                .name("fb-stop".into())
                .spawn(move || shared.stop());
        }
    }

    /// Waits until a frontend is attached; `false` if the backend is
    /// being stopped instead.
    fn wait_attached(&self) -> bool {
        let mut attached = self.attached.lock().unwrap_or_else(PoisonError::into_inner);
        while *attached == 0 {
            if self.stopping.load(Ordering::SeqCst) {
                return false;
            }
            attached = self
                .changed
                .wait(attached)
                .unwrap_or_else(PoisonError::into_inner);
        }
        true
    }
}

impl Link {
    /// Serves a started process's relay under its name until it ends.
    pub(crate) fn serve_relay(&self, relay: Relay) -> Result<ServedBackend> {
        let name = relay.name().to_owned();
        let keys = Keys::new(&self.config.namespace, &name)?;
        let session = &self.session;
        let frames = relay.frames();
        let reader = FrameReader::new(
            relay
                .stream()
                .try_clone()
                .map_err(forkbridge::Error::from)?,
            frames,
        );
        let writer = relay.writer().clone();
        let acknowledged = relay.writer().clone();
        let sets = relay.events()?;
        let shared = Arc::new(Shared {
            name: name.clone(),
            relay: Mutex::new(relay),
            attached: Mutex::new(0),
            changed: Condvar::new(),
            outlive_frontend: self.config.outlive_frontend,
            stopping: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            credits: Arc::default(),
        });
        let input = {
            let shared = shared.clone();
            session
                .declare_subscriber(keys.input())
                .callback(move |sample| {
                    carry::deliver(&sample.payload().to_bytes(), &writer, &shared.name);
                })
                .wait()
                .map_err(|e| Error::link("cannot subscribe to frames", e))?
        };
        let output_ack =
            carry::credit_subscriber(session, keys.output_ack(), shared.credits.clone())?;
        let signals = {
            let shared = shared.clone();
            session
                .declare_subscriber(keys.signal())
                .callback(move |sample| {
                    if let Some(sig) = carry::int_of(&sample) {
                        let relay = shared.relay.lock().unwrap_or_else(PoisonError::into_inner);
                        let _ = relay.signal(sig);
                    }
                })
                .wait()
                .map_err(|e| Error::link("cannot subscribe to signals", e))?
        };
        let owners = {
            let shared = shared.clone();
            session
                .liveliness()
                .declare_subscriber(keys.owners())
                .history(true)
                .callback(move |sample| match sample.kind() {
                    SampleKind::Put => shared.owner_came(),
                    SampleKind::Delete => shared.owner_left(),
                })
                .wait()
                .map_err(|e| Error::link("cannot watch for frontends", e))?
        };
        let output = carry::publisher(session, keys.output(), "frames")?;
        let exit = carry::publisher(session, keys.exit(), "the exit")?;
        let input_ack = carry::control_publisher(session, keys.input_ack(), "credit")?;
        {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("fb-ack:{name}"))
                .spawn(move || {
                    carry::acknowledge(&acknowledged, &input_ack, || {
                        shared.ended.load(Ordering::SeqCst)
                    });
                })
                .map_err(|e| Error::link("cannot start the credit thread", e))?;
        }
        let sets = match sets {
            Some(sets) => {
                let output = carry::publisher(session, keys.events(), "event sets")?;
                let shared = shared.clone();
                let thread = std::thread::Builder::new()
                    .name(format!("fb-ev:{name}"))
                    .spawn(move || publish_sets(sets, &output, &shared))
                    .map_err(|e| Error::link("cannot start the event sets' thread", e))?;
                Some(thread)
            }
            None => None,
        };
        // Declared last: a frontend that sees it has seen the subscribers.
        let alive = session
            .liveliness()
            .declare_token(keys.alive())
            .wait()
            .map_err(|e| Error::link("cannot declare the backend's token", e))?;
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("fb-serve:{name}"))
                .spawn(move || {
                    // Frames wait for a frontend; dropped only when stopping.
                    carry::pump(reader, &output, &shared.name, |n| {
                        shared.wait_attached() && shared.credits.take(n)
                    });
                    shared.ended.store(true, Ordering::SeqCst);
                    if let Some(sets) = sets {
                        let _ = sets.join();
                    }
                    let status = {
                        let mut relay = shared.relay.lock().unwrap_or_else(PoisonError::into_inner);
                        relay.wait_timeout(REAP_WAIT)
                    };
                    let status = match status {
                        Ok(status) => Some(status),
                        Err(e) => e.exit_status(),
                    };
                    if let Some(status) = status {
                        let _ = exit.put(carry::int_payload(status.into_raw())).wait();
                    }
                    drop((alive, input, output_ack, signals, owners));
                    status
                })
                .map_err(|e| Error::link("cannot start the relay thread", e))?
        };
        Ok(ServedBackend {
            name,
            shared,
            thread,
        })
    }
}

/// Publishes the backend's event sets as they come, once a frontend is
/// attached, until its stream has ended and the queue is empty.
fn publish_sets(mut sets: EventSets, output: &Publisher<'_>, shared: &Shared) {
    loop {
        let ended = shared.ended.load(Ordering::SeqCst);
        let wait = if ended { Duration::ZERO } else { SETS_POLL };
        match sets.next_timeout(wait) {
            Ok(Some(payload)) => {
                if shared.wait_attached() && output.put(payload).wait().is_err() {
                    return;
                }
            }
            Ok(None) if ended => return,
            Ok(None) => {}
            Err(e) => {
                log::warn!("'{}': event sets stopped: {e}", shared.name);
                return;
            }
        }
    }
}
