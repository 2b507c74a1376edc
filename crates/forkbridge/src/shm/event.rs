//! [`Event`]: a flag shared between processes, with `set` / `clear` / `wait`.
//!
//! # Design
//!
//! Each event is one 64-bit word in a memfd mapped `MAP_SHARED`, made
//! before the backend starts, so the frontend and the backend see the same
//! word:
//!
//! ```text
//! bit 0       set
//! bits 1-15   number of processes sleeping in wait()
//! bits 16-59  generation (bumped by EventGroup::reserve and release)
//! ```
//!
//! The flag, the count and the generation change together, by one atomic
//! operation on the word, which is what makes a set by a stale index
//! impossible (see `EventGroup`). The futex sleeps on the word's low 32
//! bits: every change of the word changes them (the flag, the count, or
//! the generation's lowest bits, which any bump changes), so a sleeper
//! never misses one. The generation's 44 bits wrap after 2^43
//! reservations of one event: longer than any program runs.
//!
//! `set` is one atomic read-modify-write; it makes a `FUTEX_WAKE` system
//! call only when the waiter count says somebody sleeps, so setting an
//! event nobody waits on costs an atomic instruction, not a syscall. A thousand events are one page, not a thousand
//! fds. `wait` registers in the count, sleeps in `FUTEX_WAIT` on the word's
//! exact value, and loops on spurious wake-ups; a timeout is a deadline, so
//! signals never stretch or shorten it.
//!
//! [`EventKind::Pollable`] adds an eventfd per event that mirrors the flag:
//! `set` writes it on the 0→1 transition and `clear` drains it on 1→0, so
//! the fd is readable while the event is set and can sit in `poll`,
//! [`select`](crate::select), mio or tokio next to a [`MessageProcess`](crate::MessageProcess).
//! The word stays the truth: a `set` and a `clear` racing from two processes
//! can leave the fd readable for a clear event until the next `set`/`clear`,
//! so treat readiness as a hint and check [`Event::is_set`].
//!
//! Why a memfd and not an anonymous shared mapping (which a fork alone
//! would share as well): a backend started by `exec` or by a fork server
//! is not a fork of the frontend, and an anonymous mapping cannot be named
//! to it. A memfd is as nameless (nothing in `/dev/shm`, gone with its
//! last user) and crosses as an fd beside the backend's serde value
//! (`data/fds.rs`; the eventfds of a pollable event go the same way, so
//! they stay mirrors of the same word). The price is one fd per store
//! while it lives: a group of a thousand events is one fd, a thousand
//! separate [`Event::new`]s are a thousand.
//!
//! Rejected: an eventfd per event as the only mechanism (a syscall per
//! `set`, an fd per event); pthread condition variables in shared memory
//! (a process that dies holding the mutex blocks everybody: raw_sync PR #17).
//! A waiter killed while asleep leaves its count behind, which only costs
//! later `set`s a needless wake-up call.

use crate::sys::atomic::{AtomicU64, Ordering::SeqCst};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::deadline;
use crate::error::Result;
use crate::sys::{eventfd, futex, shm::SharedWords};

const SET: u64 = 1;
const WAITER: u64 = 1 << 1;
const WAITER_MASK: u64 = 0x7FFF << 1;
const GEN_SHIFT: u32 = 16;
/// The generation's bits (44): what an `EventIndex` carries beside its
/// slot.
pub(crate) const GEN_BITS: u32 = 44;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;

/// Which mechanism backs an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum EventKind {
    /// A futex word in shared memory (the default): the fastest, no fd.
    #[default]
    Futex,
    /// A futex word plus an eventfd that is readable while the event is set,
    /// for `poll`/[`select`](crate::select)/mio/tokio.
    Pollable,
}

/// The words (and eventfds) of one or more events.
#[derive(Debug)]
pub(crate) struct EventStore {
    pub(super) words: SharedWords,
    /// A pollable store's eventfds, one per word; empty otherwise.
    pub(super) fds: Vec<OwnedFd>,
    pub(super) kind: EventKind,
}

impl EventStore {
    pub(crate) fn new(n: usize, kind: EventKind) -> Result<Arc<EventStore>> {
        let words = SharedWords::new(n)?;
        let fds = match kind {
            EventKind::Futex => Vec::new(),
            EventKind::Pollable => (0..n)
                .map(|_| eventfd::eventfd())
                .collect::<Result<_, _>>()?,
        };
        Ok(Arc::new(EventStore { words, fds, kind }))
    }

    pub(crate) fn len(&self) -> usize {
        self.words.words().len()
    }
}

/// A process-shared event (valkka-multiprocess's `multiprocessing.Event`, or
/// libValkka's `EventFd` with [`EventKind::Pollable`]).
///
/// Create it before the backend starts and put it in the backend: the
/// frontend and the backend share it. Cloning gives another handle to the
/// same event. It crosses to a backend started by any start method (as
/// part of its serde value); outside a start, serializing it is an error.
///
/// ```rust,standalone_crate
/// use std::time::Duration;
/// use forkbridge::{Backend, BackendContext, Event, HandlerResult, Handlers, Message, MessageProcess};
///
/// struct Setter { done: Event }
/// impl Backend for Setter {
///     fn register(h: &mut Handlers<Self>) {
///         h.on("work", |s: &mut Setter, _: &mut BackendContext, _: Message| {
///             s.done.set();
///             Ok(())
///         });
///     }
/// }
///
/// let done = Event::new()?;
/// let mut p = MessageProcess::new("setter", Setter { done: done.clone() })?;
/// p.start()?;
/// p.send(Message::new("work"))?;
/// assert!(done.wait_timeout(Duration::from_secs(5)));
/// p.stop()?;
/// # Ok::<(), forkbridge::Error>(())
/// ```
#[derive(Clone)]
pub struct Event {
    pub(super) store: Arc<EventStore>,
    pub(super) slot: u32,
}

impl Event {
    /// A new, clear [`EventKind::Futex`] event.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the mapping fails.
    pub fn new() -> Result<Event> {
        Event::with_kind(EventKind::Futex)
    }

    /// A new, clear event of the given kind.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the mapping or the eventfd
    /// cannot be created.
    pub fn with_kind(kind: EventKind) -> Result<Event> {
        Ok(Event::in_store(EventStore::new(1, kind)?, 0))
    }

    pub(crate) fn in_store(store: Arc<EventStore>, slot: u32) -> Event {
        Event { store, slot }
    }

    pub(crate) fn slot(&self) -> u32 {
        self.slot
    }

    pub(crate) fn same_store(&self, store: &Arc<EventStore>) -> bool {
        Arc::ptr_eq(&self.store, store)
    }

    #[inline]
    fn word(&self) -> &AtomicU64 {
        &self.store.words.words()[self.slot as usize]
    }

    /// The kind of this event.
    pub fn kind(&self) -> EventKind {
        self.store.kind
    }

    /// The eventfd of a [`EventKind::Pollable`] event: readable while the
    /// event is set. `None` for [`EventKind::Futex`].
    #[inline]
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.store.fds.get(self.slot as usize).map(AsFd::as_fd)
    }

    /// Sets the event and wakes every waiter. Without waiters this is one
    /// atomic operation (plus an eventfd write for a pollable event).
    #[inline]
    pub fn set(&self) {
        // Testing only the one bit lets the compiler emit a single
        // `lock bts` instead of a compare-and-swap loop; the waiter count is
        // read afterwards: a waiter that registered before the bit was set
        // is counted in that read, one that registers after sees the bit.
        let word = self.word();
        let was_set = word.fetch_or(SET, SeqCst) & SET != 0;
        if !was_set {
            self.announce_set(word, word.load(SeqCst));
        }
    }

    /// After a 0→1 transition from `old`: mirror it on the eventfd and wake
    /// the sleepers, if any.
    fn announce_set(&self, word: &AtomicU64, old: u64) {
        if let Some(fd) = self.fd() {
            eventfd::signal(fd);
        }
        if old & WAITER_MASK != 0 {
            futex::wake_all(word);
        }
    }

    /// Sets the event if its generation is `generation` (or always, for
    /// `None`); returns whether it is set now.
    pub(crate) fn set_if_generation(&self, generation: Option<u64>) -> bool {
        let word = self.word();
        let mut cur = word.load(SeqCst);
        loop {
            if generation.is_some_and(|g| generation_of(cur) != g) {
                return false;
            }
            if cur & SET != 0 {
                return true;
            }
            match word.compare_exchange_weak(cur, cur | SET, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        self.announce_set(word, cur);
        true
    }

    /// Clears the event.
    #[inline]
    pub fn clear(&self) {
        // As in `set`: one `lock btr`.
        let was_set = self.word().fetch_and(!SET, SeqCst) & SET != 0;
        if was_set {
            if let Some(fd) = self.fd() {
                eventfd::drain(fd);
            }
        }
    }

    /// Starts a new generation: clear, and sets by older indices ignored.
    pub(crate) fn renew(&self) -> u64 {
        let word = self.word();
        let mut cur = word.load(SeqCst);
        loop {
            let generation = generation_of(cur).wrapping_add(1) & GEN_MASK;
            let new = (generation << GEN_SHIFT) | (cur & WAITER_MASK);
            match word.compare_exchange_weak(cur, new, SeqCst, SeqCst) {
                Ok(old) => {
                    if old & SET != 0 {
                        if let Some(fd) = self.fd() {
                            eventfd::drain(fd);
                        }
                    }
                    return generation;
                }
                Err(now) => cur = now,
            }
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        generation_of(self.word().load(SeqCst))
    }

    /// Whether the event is set.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.word().load(SeqCst) & SET != 0
    }

    /// Waits until the event is set. Returns at once if it already is.
    ///
    /// This has no bound: if the process that should set the event may die,
    /// use [`wait_timeout`](Event::wait_timeout), or a pollable event and
    /// the process's fd in [`select`](crate::select).
    pub fn wait(&self) {
        self.wait_deadline(None);
    }

    /// Waits until the event is set or `timeout` passes; returns whether it
    /// is set. Spurious wake-ups and signals neither end the wait early nor
    /// extend it.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(deadline::after(timeout))
    }

    pub(crate) fn wait_deadline(&self, deadline: Option<Instant>) -> bool {
        let word = self.word();
        loop {
            let cur = word.load(SeqCst);
            if cur & SET != 0 {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            if cur & WAITER_MASK == WAITER_MASK {
                // 32767 sleepers already: do not overflow the count.
                std::thread::yield_now();
                continue;
            }
            let registered = cur + WAITER;
            if word
                .compare_exchange(cur, registered, SeqCst, SeqCst)
                .is_err()
            {
                continue;
            }
            // The futex compares the low half (see the module docs).
            let woken = futex::wait(word, registered as u32, deadline);
            word.fetch_sub(WAITER, SeqCst);
            if !woken {
                return word.load(SeqCst) & SET != 0;
            }
        }
    }
}

/// The generation field of an event word.
fn generation_of(word: u64) -> u64 {
    (word >> GEN_SHIFT) & GEN_MASK
}

/// Handles to the same event are equal.
impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        Arc::ptr_eq(&self.store, &other.store) && self.slot == other.slot
    }
}

impl Eq for Event {}

/// Consistent with `==`: the same event of the same mapping.
impl std::hash::Hash for Event {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.store).hash(state);
        self.slot.hash(state);
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("slot", &self.slot)
            .field("kind", &self.store.kind)
            .field("set", &self.is_set())
            .finish()
    }
}

/// Model checks (`checks/loom`) of the event word: set/wait with the
/// waiter count (no lost wake-up: loom reports a waiter parked forever as a
/// deadlock), and generations (a late set never survives a new
/// reservation).
#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::thread;

    #[test]
    fn a_set_always_wakes_a_waiter() {
        loom::model(|| {
            let event = Event::new().unwrap();
            let setter = event.clone();
            let t = thread::spawn(move || setter.set());
            assert!(event.wait_deadline(None));
            t.join().unwrap();
        });
    }

    #[test]
    fn two_waiters_and_a_clear_racing_a_set() {
        loom::model(|| {
            let event = Event::new().unwrap();
            let (a, b) = (event.clone(), event.clone());
            let waiter = thread::spawn(move || a.wait_deadline(None));
            let setter = thread::spawn(move || {
                b.clear();
                b.set();
            });
            assert!(event.wait_deadline(None));
            assert!(waiter.join().unwrap());
            setter.join().unwrap();
            assert!(event.is_set());
        });
    }

    #[test]
    fn a_late_set_never_survives_a_new_reservation() {
        loom::model(|| {
            let event = Event::new().unwrap();
            let old = event.generation();
            let late = event.clone();
            let t = thread::spawn(move || late.set_if_generation(Some(old)));
            let new = event.renew();
            t.join().unwrap();
            // Set before the renewal: cleared by it. After: refused.
            assert!(!event.is_set());
            assert_ne!(new, old);
        });
    }
}
