//! The frontend's side: a `MessageProcess` whose backend is served
//! elsewhere.
//!
//! The handle comes from [`MessageProcessBuilder::attach`]; this module
//! carries its far end ([`Remote`]) over Zenoh:
//!
//! * a thread reads whole frames from the handle's stream and publishes
//!   them on `in` (blocking under congestion, and while the backend's
//!   side has a window's worth unwritten: nothing is dropped);
//! * the `out` subscriber checks each sample is whole frames within the
//!   frame limit and writes it into the stream (a refused one is logged
//!   and dropped; the stream stays in step), and a thread acknowledges
//!   what was written on `out/ack`;
//! * the `exit` sample becomes the handle's exit status; the backend's
//!   `alive` token vanishing without one becomes a lost host;
//! * `ev` samples set their events in the group bound to the handle
//!   ([`MessageProcessBuilder::events`]), generation check included;
//! * signal requests of the handle's stop are published on `sig`.
//!
//! The frontend's own liveliness token (`owner/<zid>`) tells the serving
//! side it is attached; it vanishes when the handle is dropped, the
//! program dies, or the link is lost, and the backend then stops — and
//! when the backend's end is reported, so that a replacement of the same
//! name (a pool's, a supervisor's) does not find it still owned.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use forkbridge::relay::{FrameReader, Remote};
use forkbridge::{MessageProcess, MessageProcessBuilder};
use zenoh::Wait;
use zenoh::liveliness::LivelinessToken;
use zenoh::sample::SampleKind;

use crate::carry::{self, Credits};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::Keys;
use crate::link::Link;

/// How long a vanished `alive` token waits for the `exit` sample that may
/// be behind it (liveliness and data travel apart) before the host is
/// declared lost.
const EXIT_GRACE: Duration = Duration::from_millis(50);

/// How long to ask whether another frontend is attached.
const OWNER_QUERY: Duration = Duration::from_millis(500);

impl Link {
    /// A handle to the backend served as `name` in this link's namespace,
    /// with the default settings. See [`attach_with`](Link::attach_with).
    ///
    /// # Errors
    ///
    /// As [`attach_with`](Link::attach_with).
    pub fn attach(&self, name: &str) -> Result<MessageProcess> {
        self.attach_with(MessageProcess::builder(name))
    }

    /// A handle to the backend served as `builder`'s name, running: send,
    /// receive, typed calls, `AsFd`, the async frontend and a bounded stop
    /// work as for a local backend. Its frame limit, `stop_timeout` and
    /// `kill_timeout` come from `builder`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] if no such backend answers within the
    /// attach timeout; [`ErrorKind::Busy`] if another frontend is attached
    /// to it; [`ErrorKind::Config`] for a name that cannot be a key;
    /// [`ErrorKind::Link`] if Zenoh refuses a declaration.
    pub fn attach_with(&self, builder: MessageProcessBuilder) -> Result<MessageProcess> {
        let name = builder.name().to_owned();
        let keys = Keys::new(&self.config.namespace, &name)?;
        let session = &self.session;
        let (process, remote) = builder.attach()?;
        let remote = Arc::new(remote);
        let credits = Arc::new(Credits::default());
        let fate = Arc::new(Fate {
            remote: remote.clone(),
            credits: credits.clone(),
            ended: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            owner: Mutex::new(None),
            reason: format!(
                "no word from the host serving '{name}' within its lease ({:?}), \
                 or its serving program died",
                self.config.lease
            ),
        });
        let out = {
            let writer = remote.writer().clone();
            let name = name.clone();
            session
                .declare_subscriber(keys.output())
                .callback(move |sample| {
                    carry::deliver(&sample.payload().to_bytes(), &writer, &name);
                })
                .wait()
                .map_err(|e| Error::link("cannot subscribe to the backend's frames", e))?
        };
        let events = {
            let (remote, name) = (remote.clone(), name.clone());
            session
                .declare_subscriber(keys.events())
                .callback(move |sample| {
                    if let Err(e) = remote.deliver_sets(&sample.payload().to_bytes()) {
                        log::warn!("'{name}': event sets not set: {e}");
                    }
                })
                .wait()
                .map_err(|e| Error::link("cannot subscribe to the backend's event sets", e))?
        };
        let input_ack = carry::credit_subscriber(session, keys.input_ack(), credits.clone())?;
        let exit = {
            let fate = fate.clone();
            session
                .declare_subscriber(keys.exit())
                .callback(move |sample| {
                    if let Some(raw) = carry::int_of(&sample) {
                        fate.exited(ExitStatus::from_raw(raw));
                    }
                })
                .wait()
                .map_err(|e| Error::link("cannot subscribe to the backend's exit", e))?
        };
        let (found, present) = mpsc::channel();
        let alive = {
            let fate = fate.clone();
            session
                .liveliness()
                .declare_subscriber(keys.alive())
                .history(true)
                .callback(move |sample| match sample.kind() {
                    SampleKind::Put => {
                        let _ = found.send(());
                    }
                    SampleKind::Delete => fate.vanished(),
                })
                .wait()
                .map_err(|e| Error::link("cannot watch the backend's liveliness", e))?
        };
        if present.recv_timeout(self.config.attach_timeout).is_err() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "no backend '{name}' in namespace '{}' answered within {:?}",
                    self.config.namespace, self.config.attach_timeout
                ),
            ));
        }
        let owners = session
            .liveliness()
            .get(keys.owners())
            .timeout(OWNER_QUERY)
            .wait()
            .map_err(|e| Error::link("cannot ask for the backend's frontend", e))?;
        if owners.recv().is_ok() {
            return Err(Error::new(
                ErrorKind::Busy,
                format!("backend '{name}' already has a frontend attached"),
            ));
        }
        let input = carry::publisher(session, keys.input(), "frames")?;
        let signals = carry::control_publisher(session, keys.signal(), "signals")?;
        let output_ack = carry::control_publisher(session, keys.output_ack(), "credit")?;
        // Declared last: the serving side publishes only once it sees it,
        // and by then it has seen the subscribers above.
        let owner = session
            .liveliness()
            .declare_token(keys.owner(session))
            .wait()
            .map_err(|e| Error::link("cannot declare the frontend's token", e))?;
        let reader = FrameReader::new(
            remote
                .stream()
                .try_clone()
                .map_err(forkbridge::Error::from)?,
            remote.frames(),
        );
        *fate.owner.lock().unwrap_or_else(PoisonError::into_inner) = Some(owner);
        let spawned = {
            let fate = fate.clone();
            std::thread::Builder::new()
                .name(format!("fb-out:{name}"))
                .spawn(move || {
                    // Owns the declarations: when the handle is gone, they go.
                    let _held = (out, events, input_ack, exit, alive);
                    carry::pump(reader, &input, &name, |n| credits.take(n));
                    fate.closed.store(true, Ordering::SeqCst);
                    fate.end();
                })
        };
        spawned.map_err(|e| Error::link("cannot start the relay thread", e))?;
        let acknowledging = {
            let (fate, writer) = (fate.clone(), remote.writer().clone());
            std::thread::Builder::new()
                .name("fb-ack".into())
                .spawn(move || {
                    carry::acknowledge(&writer, &output_ack, || fate.is_over());
                })
        };
        acknowledging.map_err(|e| Error::link("cannot start the credit thread", e))?;
        let signaller = std::thread::Builder::new()
            .name("fb-sig".into())
            .spawn(move || {
                loop {
                    match remote.next_signal(Duration::from_secs(3600)) {
                        Ok(Some(sig)) => {
                            let _ = signals.put(carry::int_payload(sig)).wait();
                        }
                        Ok(None) => {}
                        Err(_) => return,
                    }
                }
            });
        signaller.map_err(|e| Error::link("cannot start the signal thread", e))?;
        Ok(process)
    }
}

/// Reports the backend's end to the handle, once.
struct Fate {
    remote: Arc<Remote>,
    /// The `in` pump's: ended with the backend.
    credits: Arc<Credits>,
    ended: AtomicBool,
    /// The handle is gone (its stream ended).
    closed: AtomicBool,
    /// The frontend's token, withdrawn with the backend's end.
    owner: Mutex<Option<LivelinessToken>>,
    reason: String,
}

impl Fate {
    fn exited(&self, status: ExitStatus) {
        if !self.ended.swap(true, Ordering::SeqCst) {
            self.end();
            let _ = self.remote.report_exit(status);
        }
    }

    /// Nothing more to send, and nothing to own.
    fn end(&self) {
        self.credits.end();
        drop(
            self.owner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    /// Whether nothing more crosses: the backend ended or the handle is
    /// gone.
    fn is_over(&self) -> bool {
        self.ended.load(Ordering::SeqCst) || self.closed.load(Ordering::SeqCst)
    }

    /// The `alive` token vanished: an `exit` sample may still be on its
    /// way; if none comes within the grace, the host is lost.
    fn vanished(self: &Arc<Self>) {
        let fate = self.clone();
        let _ = std::thread::Builder::new()
            .name("fb-fate".into())
            .spawn(move || {
                std::thread::sleep(EXIT_GRACE);
                if !fate.ended.swap(true, Ordering::SeqCst) {
                    fate.end();
                    let _ = fate.remote.report_lost(&fate.reason);
                }
            });
    }
}
