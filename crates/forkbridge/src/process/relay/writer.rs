//! Writing whole frames into a stream, for a transport's receiving side,
//! without ever blocking it.
//!
//! A transport receives in a thread it shares with every other stream on
//! the same link (Zenoh runs its callbacks in the link's one receiving
//! task). A write that waited for a backend that does not read would stall
//! the other backends of the link, the signals that could stop this one,
//! and eventually the link itself. So [`FrameWriter::deliver`] writes what
//! the stream takes at once and queues the rest for a thread of the
//! writer's own, which waits on the stream instead; the transport bounds
//! the queue by letting its peer send only as much as was delivered
//! ([`FrameWriter::wait_delivered`] tells it how much).
//!
//! Rejected: a blocking write (the stall above), and a queue without a
//! write at once (every frame would cost the thread's wake-up, which is
//! most of a round trip's latency on one host).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::deadline;
use crate::error::{Error, Result};
use crate::protocol::wire;
use crate::sys::socket;

use super::FrameCheck;

/// Writes network messages into a handle's or a process's stream, each
/// only if it is whole frames that may cross (see [`FrameCheck`]), in the
/// order delivered: clones share one queue, which
/// [`Relay::stop`](super::Relay::stop)'s request joins too, so neither
/// another message nor a stop request ever lands inside a message's
/// frames.
///
/// [`deliver`](FrameWriter::deliver) never blocks: what the stream cannot
/// take at once waits in the writer's queue, written by a thread of its
/// own as the reader reads. A transport must bound that queue by what it
/// lets its peer send: credit the peer with what
/// [`wait_delivered`](FrameWriter::wait_delivered) reports, and nothing is
/// dropped while a slow reader slows its writer.
#[derive(Debug, Clone)]
pub struct FrameWriter {
    handle: Arc<Handle>,
    check: FrameCheck,
}

/// Dropped with the last clone: the writer's thread then ends once its
/// queue is written.
#[derive(Debug)]
struct Handle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    stream: UnixStream,
    state: Mutex<State>,
    /// Work for the thread.
    work: Condvar,
    /// Progress for `wait_delivered`: signalled only when a waiter's total
    /// is reached, not on every write (the hot path).
    progress: Condvar,
}

/// What waits in the queue: bytes, or something to do once what is
/// before it is written (the end of the stream).
enum Item {
    Bytes(Vec<u8>),
    Then(Box<dyn FnOnce() + Send>),
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Bytes(b) => write!(f, "Bytes({})", b.len()),
            Item::Then(_) => f.write_str("Then"),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Item>,
    queued: usize,
    /// The thread is writing an item it took off the queue.
    busy: bool,
    thread: bool,
    /// Every clone is gone.
    closed: bool,
    /// Bytes written into the stream so far.
    delivered: u64,
    /// The least total a `wait_delivered` waits for (`u64::MAX`: none).
    wanted: u64,
    /// The stream failed (its reader is gone): what deliveries now say.
    failed: Option<io::ErrorKind>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.lock().closed = true;
        self.inner.work.notify_all();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update keeps the state consistent before it can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The thread: writes the queue in order, waiting on the stream.
    fn run(&self) {
        let mut state = self.lock();
        loop {
            let Some(item) = state.queue.pop_front() else {
                if state.closed || state.failed.is_some() {
                    state.thread = false;
                    return;
                }
                state = self
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            state.busy = true;
            drop(state);
            let written = match &item {
                Item::Bytes(bytes) => (&self.stream).write_all(bytes).map(|()| bytes.len()),
                Item::Then(_) => Ok(0),
            };
            if let Item::Then(then) = item {
                then();
            }
            state = self.lock();
            state.busy = false;
            match written {
                Ok(n) => {
                    state.queued -= n;
                    state.delivered += n as u64;
                }
                Err(e) => fail(&mut state, e.kind()),
            }
            self.progressed(&mut state);
        }
    }

    /// Wakes the `wait_delivered` callers once the least total one waits
    /// for is written, or the stream failed.
    fn progressed(&self, state: &mut State) {
        if state.delivered >= state.wanted || state.failed.is_some() {
            state.wanted = u64::MAX;
            self.progress.notify_all();
        }
    }
}

/// Drops the bytes that wait (nobody will read them) and does what was
/// to be done after them.
fn fail(state: &mut State, kind: io::ErrorKind) {
    state.failed = Some(kind);
    state.queued = 0;
    for item in state.queue.drain(..) {
        if let Item::Then(then) = item {
            then();
        }
    }
}

impl FrameWriter {
    pub(super) fn new(stream: UnixStream, check: FrameCheck) -> FrameWriter {
        FrameWriter {
            handle: Arc::new(Handle {
                inner: Arc::new(Inner {
                    stream,
                    state: Mutex::new(State {
                        wanted: u64::MAX,
                        ..State::default()
                    }),
                    work: Condvar::new(),
                    progress: Condvar::new(),
                }),
            }),
            check,
        }
    }

    /// Writes `payload` if it is whole frames that may cross: what the
    /// stream takes at once, the rest after what is queued, without
    /// waiting.
    ///
    /// # Errors
    ///
    /// As [`FrameCheck::check`] (nothing is written);
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) once the stream's other end is gone.
    pub fn deliver(&self, payload: &[u8]) -> Result<()> {
        self.check.check(payload)?;
        self.put(payload)
    }

    /// Queues a stop request behind what was delivered.
    pub(super) fn request_stop(&self) -> Result<()> {
        let mut frame = Vec::new();
        wire::encode_stop(&mut frame);
        self.put(&frame)
    }

    fn put(&self, payload: &[u8]) -> Result<()> {
        let inner = &self.handle.inner;
        let mut state = inner.lock();
        if let Some(kind) = state.failed {
            return Err(Error::from(io::Error::from(kind)));
        }
        let mut rest = payload;
        if !state.busy && state.queue.is_empty() {
            loop {
                match socket::send(inner.stream.as_fd(), rest) {
                    Ok(n) => {
                        state.delivered += n as u64;
                        rest = &rest[n..];
                        if rest.is_empty() {
                            inner.progressed(&mut state);
                            return Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        fail(&mut state, e.kind());
                        inner.progressed(&mut state);
                        return Err(e.into());
                    }
                }
            }
        }
        state.queued += rest.len();
        self.enqueue(state, Item::Bytes(rest.to_vec()))
    }

    /// Runs `then` once everything delivered before it is written: now if
    /// nothing waits (or the stream failed), else in the writer's thread.
    pub(super) fn then(&self, then: impl FnOnce() + Send + 'static) -> Result<()> {
        let state = self.handle.inner.lock();
        if state.failed.is_some() || (!state.busy && state.queue.is_empty()) {
            drop(state);
            then();
            return Ok(());
        }
        self.enqueue(state, Item::Then(Box::new(then)))
    }

    fn enqueue(&self, mut state: MutexGuard<'_, State>, item: Item) -> Result<()> {
        let inner = &self.handle.inner;
        state.queue.push_back(item);
        if !state.thread {
            let thread = inner.clone();
            std::thread::Builder::new()
                .name("fb-deliver".into())
                .spawn(move || thread.run())?;
            state.thread = true;
        }
        inner.work.notify_one();
        Ok(())
    }

    /// Waits at most `timeout` until at least `total` bytes have been
    /// written into the stream since the writer was made, and returns how
    /// many have (`Ok(None)`: not that many in time). A transport credits
    /// its peer with the difference.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) once the stream's other end is gone.
    pub fn wait_delivered(&self, total: u64, timeout: Duration) -> Result<Option<u64>> {
        let inner = &self.handle.inner;
        let until = deadline::after(timeout);
        let mut state = inner.lock();
        loop {
            if state.delivered >= total {
                return Ok(Some(state.delivered));
            }
            if let Some(kind) = state.failed {
                return Err(Error::from(io::Error::from(kind)));
            }
            state.wanted = state.wanted.min(total);
            state = match until {
                None => inner
                    .progress
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(until) => {
                    let left = until.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    inner
                        .progress
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Bytes waiting in the queue.
    pub fn queued(&self) -> usize {
        self.handle.inner.lock().queued
    }

    /// The frame limit it checks.
    pub fn frames(&self) -> FrameCheck {
        self.check
    }
}
