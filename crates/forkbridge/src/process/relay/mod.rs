//! Carrying a backend's stream elsewhere: the seam a transport between
//! hosts plugs into, so the core knows nothing of the network.
//!
//! A handle and its backend talk through one stream socket of frames. A
//! transport that carries them across hosts (the `forkbridge-zenoh` crate)
//! stands in the middle and needs three things, all given here as plain
//! sockets:
//!
//! * on the frontend's host, a [`MessageProcess`] whose backend is
//!   elsewhere: [`MessageProcessBuilder::attach`] returns one, running,
//!   with its far end, a [`Remote`]. The transport moves the frames of
//!   [`Remote::stream`] to the backend and back, and tells the handle how
//!   the backend ended ([`Remote::report_exit`], [`Remote::report_lost`]);
//!   the handle asks it for signals ([`Remote::next_signal`]). Everything
//!   the handle offers works as for a local backend: send, feed, receive,
//!   typed calls, `AsFd`, the async frontend, a bounded stop that ends with
//!   a status, and [`ErrorKind::Disconnected`] after the backend's last
//!   message when it dies — or when its host is lost
//!   ([`Error::is_host_lost`]).
//! * on the backend's host, the stream of a started process without the
//!   handle's reads: [`MessageProcess::into_relay`] returns a [`Relay`],
//!   which still stops, signals and reaps the process.
//! * event sets: a backend served elsewhere sets events by the indices its
//!   frontend sent, in a [relayed](crate::EventGroup::relayed) group bound
//!   to its process ([`MessageProcessBuilder::events`]);
//!   [`Relay::events`] reads those sets, and [`Remote::deliver_sets`] sets
//!   them in the group bound to the handle, so a [`SyncIndex`] works
//!   across hosts.
//! * on both, whole frames: a [`FrameReader`] cuts what a stream gives
//!   into runs of whole frames, so each network message carries whole
//!   frames, and a [`FrameWriter`] writes a network message into a stream
//!   only if it is whole frames ([`FrameCheck`]): a damaged or hostile one
//!   is refused alone, and the stream stays in step.
//!
//! # Design
//!
//! Sockets rather than a trait the transport implements: the handle's
//! receive already waits in one socket read, its stop on one fd, and its
//! user may poll its fd; a trait would need a second way for each. The
//! cost is one extra hand-off per direction on each host (a socket write
//! and a wake-up; the bench README of `forkbridge-zenoh` measures it).
//! Event sets travel apart from the frames, as locally (where a set is
//! seen at once and a message when its handler returns), so a frontend
//! woken by a set may find the backend's message a moment later.
//!
//! [`SyncIndex`]: crate::SyncIndex

mod events;
pub(super) mod fate;
mod reader;
mod writer;
pub use events::{EventSets, parse_sets};
pub use reader::FrameReader;
pub use writer::FrameWriter;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::ExitStatus;
use std::time::Duration;

use crate::deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::wire::{self, Refusal, Scan};
use crate::shm::event_group::EventGroup;
use crate::sys::socket;

use super::registry::Registered;
use super::watch::{Fate, Watch};
use super::{MessageProcess, MessageProcessBuilder, State};

impl MessageProcessBuilder {
    /// The event group whose sets cross between this process's backend
    /// and its frontend when they run on different hosts (see the
    /// [module docs](crate::relay)): on the backend's host, a
    /// [relayed](EventGroup::relayed) group that the backend holds; on the
    /// frontend's, the ordinary group the handle reserves from, where the
    /// backend's sets arrive. A process whose backend runs here shares its
    /// group by the start itself, and ignores this.
    pub fn events(mut self, group: &EventGroup) -> Self {
        self.events = Some(group.clone());
        self
    }

    /// A running handle for a backend that runs elsewhere, and its far end,
    /// for a transport to carry (see the [module docs](crate::relay)).
    ///
    /// The builder's `max_frame_size`, `stop_timeout` and `kill_timeout`
    /// apply; what shapes a process made here (the start method, the
    /// large-message lane, fork hooks) does not.
    ///
    /// ```
    /// use forkbridge::{Message, MessageProcess};
    /// use forkbridge::relay::FrameReader;
    /// use std::time::Duration;
    ///
    /// let (mut p, remote) = MessageProcess::builder("far").attach()?;
    /// p.send(Message::new("hello"))?;
    /// // The transport's side: frames come out of the stream whole...
    /// let mut frames = FrameReader::new(remote.stream().try_clone()?, remote.frames());
    /// let run = frames.next_run()?.expect("the frame").to_vec();
    /// // ...and the backend's frames go back in, checked (here: an echo).
    /// remote.writer().deliver(&run)?;
    /// assert_eq!(p.recv_timeout(Duration::from_secs(5))?.command(), "hello");
    /// // The backend ended over there:
    /// use std::os::unix::process::ExitStatusExt;
    /// remote.report_exit(std::process::ExitStatus::from_raw(0))?;
    /// assert!(p.join()?.success());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the sockets cannot be made;
    /// [`ErrorKind::InvalidArgument`] if the builder's
    /// [`events`](MessageProcessBuilder::events) group is relayed (bind
    /// the group the handle reserves from).
    pub fn attach(self) -> Result<(MessageProcess, Remote)> {
        if self.events.as_ref().is_some_and(EventGroup::is_relayed) {
            return Err(Error::new(ErrorKind::InvalidArgument).with_source(
                "a handle's events are set in its own group: bind an EventGroup::new here, \
                 and the relayed group to the served process",
            ));
        }
        let events = self.events.clone();
        let max = self.max_frame_size;
        let (front, back) = socket::socketpair()?;
        let (fate_front, fate_back) = socket::packet_pair()?;
        let target = self.name.clone();
        let state = State::Running {
            pid: None,
            watch: Watch::Remote(Registered::new(fate_front)),
            exited: false,
        };
        let process = self.handle(target, Registered::new(front), state);
        let stream = UnixStream::from(back);
        let writer = FrameWriter::new(stream.try_clone()?, FrameCheck { max });
        Ok((
            process,
            Remote {
                stream,
                fate: fate_back,
                writer,
                events,
            },
        ))
    }
}

/// The far end of a handle made by [`MessageProcessBuilder::attach`]: what
/// a transport carries to the backend and back.
///
/// Dropping it without a report ends the handle's backend as
/// [`ErrorKind::Disconnected`] without a status.
#[derive(Debug)]
pub struct Remote {
    stream: UnixStream,
    fate: OwnedFd,
    writer: FrameWriter,
    events: Option<EventGroup>,
}

impl Remote {
    /// The stream of frames: what the handle sends comes out of it (read
    /// it with a [`FrameReader`]); write into it only through
    /// [`writer`](Remote::writer).
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// What writes the backend's frames into the stream, checked, one
    /// message at a time.
    pub fn writer(&self) -> &FrameWriter {
        &self.writer
    }

    /// Where frames end, with the handle's frame limit.
    pub fn frames(&self) -> FrameCheck {
        self.writer.frames()
    }

    /// Sets, in the group bound to the handle
    /// ([`MessageProcessBuilder::events`]), the events of a payload that
    /// [`EventSets::next_timeout`] gave on the backend's host. Returns how
    /// many were set: an index of an event released since (a late set)
    /// sets nothing, as locally.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if no group is bound, the payload is
    /// not whole 8-byte indices, or an index is out of the group's range
    /// (the others are still set).
    pub fn deliver_sets(&self, payload: &[u8]) -> Result<usize> {
        events::deliver(self.events.as_ref(), payload)
    }

    /// Tells the handle that the backend exited with `status` (its raw
    /// wait status, as the backend's host saw it), and ends the stream
    /// towards it, once the frames delivered before it are written (the
    /// [`writer`](Remote::writer)'s queue goes first): the handle delivers
    /// them, then `Disconnected` with this status.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the handle's fds cannot be shared.
    pub fn report_exit(&self, status: ExitStatus) -> Result<()> {
        self.end(Fate::Exited(status))
    }

    /// Tells the handle that the backend's host, or the link to it, was
    /// lost, and ends the stream towards it: its waits end with
    /// `Disconnected`,
    /// [`Error::is_host_lost`], and `reason` in the error's text — after
    /// the frames delivered before it, as for
    /// [`report_exit`](Remote::report_exit).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the handle's fds cannot be shared.
    pub fn report_lost(&self, reason: &str) -> Result<()> {
        self.end(Fate::Lost(reason.to_owned()))
    }

    /// Reports the end, then ends the stream towards the handle: a receive
    /// waiting in the socket read wakes at once, finds the report, and
    /// returns `Disconnected` after what the stream still holds.
    /// Frames still queued in the [`writer`](Remote::writer) go first: the
    /// report waits for them in the writer's thread.
    fn end(&self, fate: Fate) -> Result<()> {
        let (report, stream) = (self.fate.try_clone()?, self.stream.try_clone()?);
        self.writer.then(move || {
            let _ = fate::report(report.as_fd(), &fate);
            let _ = stream.shutdown(std::net::Shutdown::Write);
        })
    }

    /// The next signal the handle asks to deliver to the backend (its stop
    /// escalates to `SIGTERM`, then `SIGKILL`), waiting at most `timeout`.
    /// `Ok(None)`: none within it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`] once the handle is gone (dropped, or
    /// its program died); [`ErrorKind::Io`] otherwise.
    pub fn next_signal(&self, timeout: Duration) -> Result<Option<i32>> {
        match fate::next_signal(self.fate.as_fd(), deadline::after(timeout)) {
            Ok(sig) => Ok(sig),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(Error::new(ErrorKind::Disconnected))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Readable when a signal request arrives or the handle is gone.
impl AsFd for Remote {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fate.as_fd()
    }
}

/// A started process's stream, handed to a transport, and its lifecycle,
/// kept: see [`MessageProcess::into_relay`].
#[derive(Debug)]
pub struct Relay {
    process: MessageProcess,
    stream: UnixStream,
    writer: FrameWriter,
}

impl MessageProcess {
    /// Hands the stream of this running process to a transport that
    /// carries it elsewhere (see the [module docs](crate::relay)): its
    /// frames come out of [`Relay::stream`], and frames written there
    /// reach the backend. The relay still stops, signals and reaps the
    /// process; it never reads the stream itself.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotStarted`] before `start`; [`ErrorKind::Disconnected`]
    /// once the backend is gone; [`ErrorKind::InvalidArgument`] if the
    /// handle uses the shared-memory lane or has already read from the
    /// stream or sent on it (what it holds would be lost), or if its
    /// [`events`](MessageProcessBuilder::events) group is not a relayed
    /// group made in this program; [`ErrorKind::Io`] if the socket cannot
    /// be shared.
    pub fn into_relay(mut self) -> Result<Relay> {
        match &self.state {
            State::Running { exited: false, .. } => {}
            State::Running { .. } | State::Finished { .. } => return Err(self.disconnected()),
            _ => return Err(self.err(ErrorKind::NotStarted)),
        }
        let traffic = self.conn.traffic();
        if self.conn.has_lane()
            || self.conn.has_pending_output()
            || traffic.bytes_received > 0
            || !self.inbox.is_empty()
        {
            return Err(self
                .err(ErrorKind::InvalidArgument)
                .with_source("relay a process before it sends, receives or uses the lane"));
        }
        if let Some(group) = &self.events {
            if group.relay.as_ref().is_none_or(|r| r.recv.is_none()) {
                return Err(self.err(ErrorKind::InvalidArgument).with_source(
                    "a served process's events must be an EventGroup::relayed made here",
                ));
            }
        }
        let stream = UnixStream::from(self.conn.as_fd().try_clone_to_owned()?);
        let check = FrameCheck {
            max: self.conn.max_frame(),
        };
        let writer = FrameWriter::new(stream.try_clone()?, check);
        self.relayed = true;
        Ok(Relay {
            process: self,
            stream,
            writer,
        })
    }
}

impl Relay {
    /// The process's stream: its backend's frames come out of it (read it
    /// with a [`FrameReader`]); write into it only through
    /// [`writer`](Relay::writer).
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// What writes frames into the backend's stream, checked, one message
    /// at a time; [`stop`](Relay::stop) takes its lock too.
    pub fn writer(&self) -> &FrameWriter {
        &self.writer
    }

    /// Where frames end, with the process's frame limit.
    pub fn frames(&self) -> FrameCheck {
        self.writer.frames()
    }

    /// The sets its backend makes in the relayed group bound to the
    /// process ([`MessageProcessBuilder::events`]); `None` without one.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the socket cannot be shared.
    pub fn events(&self) -> Result<Option<EventSets>> {
        let recv = self.process.events.as_ref().and_then(|g| g.relay.as_ref());
        match recv.and_then(|r| r.recv.as_ref()) {
            Some(socket) => Ok(Some(EventSets::new(socket.try_clone()?))),
            None => Ok(None),
        }
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        self.process.name()
    }

    /// Its pid on this host.
    pub fn pid(&self) -> Option<i32> {
        self.process.pid()
    }

    /// Sends `sig` to the process while it runs.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] (`ESRCH` once it has exited).
    pub fn signal(&self, sig: i32) -> Result<()> {
        Ok(self.process.signal(sig)?)
    }

    /// Waits at most `timeout` for the process to exit and reaps it.
    ///
    /// # Errors
    ///
    /// As [`MessageProcess::join_timeout`].
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.process.join_timeout(timeout)
    }

    /// Stops the process as [`MessageProcess::stop`] does: a stop request
    /// queued in the [`writer`](Relay::writer) behind what was delivered
    /// (so it never lands inside a message), then, if the process has not
    /// ended within its `stop_timeout` — a backend that does not read its
    /// stream never sees the request — `SIGTERM`, then `SIGKILL`.
    ///
    /// # Errors
    ///
    /// As [`MessageProcess::stop`].
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Err(e) = self.writer.request_stop() {
            log::debug!("'{}': stop request not delivered: {e}", self.name());
        }
        self.process.stop()
    }
}

/// A relay dropped while its process runs stops it as
/// [`stop`](Relay::stop) does.
impl Drop for Relay {
    fn drop(&mut self) {
        if self.process.is_alive() {
            let _ = self.writer.request_stop();
        }
    }
}

/// Where frames end in a byte stream, for a transport that carries whole
/// frames: one network message per run of frames, so a damaged one is
/// refused alone and the stream stays in step.
///
/// Messages, typed calls, replies and stop requests cross; a frame larger
/// than the limit is refused, and so is one whose meaning stays on its host
/// (a message carrying fds, a slot of the shared-memory lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCheck {
    max: usize,
}

/// The front of a byte run, as [`FrameCheck::cut`] sees it.
#[derive(Debug)]
pub enum Cut {
    /// The first this many bytes are whole frames that may cross.
    Whole(usize),
    /// The first frame is not complete yet: read more.
    Partial,
    /// The first frame must not cross: drop `skip` bytes (its header and
    /// body; more than the run holds when its body has not arrived), and
    /// report `error`.
    Refused {
        /// Bytes to drop, from the start of the run.
        skip: usize,
        /// Why: [`ErrorKind::FrameTooLarge`], or [`ErrorKind::Decode`]
        /// for a frame that is malformed or means something only on its
        /// host.
        error: Error,
    },
}

impl FrameCheck {
    /// Frames of at most `max` bytes.
    pub fn new(max: usize) -> FrameCheck {
        FrameCheck { max }
    }

    /// The largest frame let through.
    pub fn max(&self) -> usize {
        self.max
    }

    /// What the front of `buf` holds.
    pub fn cut(&self, buf: &[u8]) -> Cut {
        match wire::scan(buf, self.max) {
            Scan::Whole(n) => Cut::Whole(n),
            Scan::Partial => Cut::Partial,
            Scan::Refused { skip, why } => Cut::Refused {
                skip,
                error: self.refusal(why),
            },
        }
    }

    /// Whether `payload` is exactly whole frames that may cross: what a
    /// receiver checks before it writes a network message into a stream.
    ///
    /// # Errors
    ///
    /// As [`Cut::Refused`]; a payload that ends inside a frame is
    /// [`ErrorKind::Decode`].
    pub fn check(&self, payload: &[u8]) -> Result<()> {
        match wire::scan(payload, self.max) {
            Scan::Whole(n) if n == payload.len() => Ok(()),
            Scan::Refused { why, .. } => Err(self.refusal(why)),
            Scan::Whole(_) | Scan::Partial => {
                Err(Error::new(ErrorKind::Decode).with_source("a frame cut short"))
            }
        }
    }

    fn refusal(&self, why: Refusal) -> Error {
        match why {
            Refusal::TooLarge { len } => {
                Error::new(ErrorKind::FrameTooLarge { len, max: self.max })
            }
            Refusal::Local => Error::new(ErrorKind::Decode)
                .with_source("fds and shared-memory slots cannot cross hosts"),
            Refusal::Malformed => Error::new(ErrorKind::Decode).with_source("malformed frame"),
        }
    }
}
