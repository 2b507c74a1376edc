//! [`FrameRing`]: a ring of fixed-size slots in shared memory for a stream of
//! frames from one process to another, read in place.
//!
//! # Design
//!
//! valkka-multiprocess's users put video frames and numpy arrays in shared memory and
//! send only an index through the pipe: a pipe copies every byte twice
//! through the kernel, a shared ring not at all (the bench's `shm_frames`
//! measures the difference). A `FrameRing` is that pattern, made safe:
//!
//! - one anonymous `MAP_SHARED` mapping made before the fork: nothing named,
//!   nothing left in `/dev/shm` when a process crashes;
//! - one producer and one consumer, each a *role* a process claims
//!   ([`FrameRing::producer`], [`FrameRing::consumer`]); the role records the
//!   holder's pid, so a dead holder is noticed and its role can be claimed
//!   again, recovering the slot it held;
//! - the producer [acquires](RingProducer::acquire) the next free slot,
//!   writes into it in place and [commits](WriteSlot::commit) a length; the
//!   consumer takes the next committed slot ([`RingConsumer::recv`]), reads
//!   it in place and releases it by dropping it. A slot is never written
//!   while it is being read: a full ring is back-pressure (blocking, `try_`
//!   and `_timeout` forms), never an overwrite;
//! - the slot a process holds is borrowed from its role handle (`&mut`), so
//!   each side holds at most one slot at a time and the borrow checker
//!   enforces it; the state machine that makes lending shared memory as
//!   `&mut [u8]` sound lives in `sys/ring.rs` with its reasoning;
//! - doorbells are futex words in the same mapping, each holding a ring
//!   counter (high 16 bits) and the number of sleepers (low 16 bits), so
//!   that registering as a sleeper and ringing are read-modify-writes of one
//!   word: whichever comes second sees the first, in any memory model (a
//!   sleeper count in a separate word needs sequentially consistent
//!   ordering across two words, which the loom model checker found easy to
//!   get wrong); a waiter first spins briefly ([`FrameRing::with_spin`]),
//!   then sleeps, and a doorbell makes a system call only when somebody
//!   sleeps; a waiter also checks
//!   every 50 ms that the process on the other side is alive, so the end
//!   of the peer's process ends a wait with [`ErrorKind::Disconnected`] —
//!   after every frame it committed has been read. That holds however the
//!   process ended: killed, or exited in order after dropping its role
//!   (a dropped role keeps its last holder's pid, so the other side still
//!   sees that process end; a live process that dropped its role may claim
//!   it again, handler by handler, and is waited for meanwhile).
//!
//! Known limit: a role records a pid, so if the holder died and its pid was
//! reused by an unrelated live process before the role is claimed again,
//! the claim reports [`ErrorKind::RoleTaken`] (or, for a role dropped in
//! order, the other side waits on as if for the new process). A zombie
//! (dead, not yet reaped) counts as dead.
//!
//! Rejected: POSIX named shared memory (`shm_open`) — names outlive
//! crashes and pile up in `/dev/shm` (valkka-multiprocess's docs tell users to clean it
//! by hand); sending frames through the socket — 40× slower for 1 MiB.

use crate::sys::atomic::{AtomicI32, AtomicU32, Ordering};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::ring::{FREE, READING, READY, RingMemory, SlotRead, SlotWrite, WRITING};
use crate::sys::{fork, futex};

/// How often a waiter checks that the other side is alive.
const LIVENESS_PERIOD: Duration = Duration::from_millis(50);

/// A ring of `slots` slots of `slot_size` bytes in shared memory; create it
/// before the fork and give a clone to the backend. Cloning shares the ring.
///
/// ```rust,standalone_crate
/// use std::time::Duration;
/// use forkbridge::{Backend, BackendContext, FrameRing, HandlerResult, Handlers, Message, MessageProcess};
///
/// struct Summer { ring: FrameRing }
/// impl Summer {
///     fn sum(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
///         let mut consumer = self.ring.consumer()?;
///         let mut total = 0u64;
///         for _ in 0..msg.param::<u32>("frames")? {
///             let frame = consumer.recv_timeout(Duration::from_secs(5))?;
///             total += frame.iter().map(|&b| u64::from(b)).sum::<u64>(); // read in place
///         }
///         ctx.send(Message::new("sum").with("total", total))?;
///         Ok(())
///     }
/// }
/// impl Backend for Summer {
///     fn register(h: &mut Handlers<Self>) { h.on("sum", Self::sum); }
/// }
///
/// let ring = FrameRing::new(4, 1 << 20)?;            // 4 slots of 1 MiB, before the fork
/// let mut p = MessageProcess::new("summer", Summer { ring: ring.clone() })?;
/// p.start()?;
/// p.send(Message::new("sum").with("frames", 8))?;
/// let mut producer = ring.producer()?;
/// for i in 0..8u8 {
///     let mut slot = producer.acquire_timeout(Duration::from_secs(5))?;
///     slot[..1000].fill(i);                             // write in place
///     slot.commit(1000)?;
/// }
/// let sum = p.recv_timeout(Duration::from_secs(5))?;
/// assert_eq!(sum.param::<u64>("total")?, 1000 * (0..8).sum::<u64>());
/// p.stop()?;
/// # Ok::<(), forkbridge::Error>(())
/// ```
#[derive(Clone)]
pub struct FrameRing {
    mem: Arc<RingMemory>,
    spin: Duration,
}

/// How long a waiter spins before it sleeps, by default. Frames of a stream
/// follow each other closely; a sleep and a cross-CPU wake-up cost tens of
/// microseconds on a VM, comparable to copying a megabyte.
const DEFAULT_SPIN: Duration = Duration::from_micros(100);

impl FrameRing {
    /// Maps a ring of `slots` slots of `slot_size` bytes each (every slot
    /// starts on a 64-byte boundary).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for zero slots or sizes that overflow;
    /// [`ErrorKind::Io`] if the mapping fails.
    pub fn new(slots: u32, slot_size: usize) -> Result<FrameRing> {
        if slots == 0 || slot_size == 0 {
            return Err(Error::new(ErrorKind::InvalidArgument)
                .with_source("a ring needs at least one slot of at least one byte"));
        }
        let mem = RingMemory::new(slots, slot_size).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidInput {
                Error::new(ErrorKind::InvalidArgument).with_source("ring size overflows")
            } else {
                Error::io(e)
            }
        })?;
        Ok(FrameRing {
            mem: Arc::new(mem),
            spin: DEFAULT_SPIN,
        })
    }

    /// This handle, spinning up to `spin` (default 100 µs) before a wait
    /// sleeps. Spinning keeps a fast stream from paying a sleep and a
    /// wake-up per frame, at the price of a busy CPU for that long when the
    /// other side is slow; `Duration::ZERO` never spins.
    #[must_use]
    pub fn with_spin(mut self, spin: Duration) -> FrameRing {
        self.spin = spin;
        self
    }

    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.mem.slots()
    }

    /// Bytes per slot.
    pub fn slot_size(&self) -> usize {
        self.mem.slot_size()
    }

    /// Committed frames not yet read.
    pub fn pending(&self) -> u64 {
        let head = self.mem.head().load(Ordering::Acquire);
        head.saturating_sub(self.mem.tail().load(Ordering::Acquire))
    }

    /// Claims the producer role for this process.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::RoleTaken`] if a live process (this one included) holds
    /// it. A role held by a dead process is taken over, and the slot it was
    /// writing is freed (the partial frame is dropped).
    pub fn producer(&self) -> Result<RingProducer> {
        let pid = self.claim(self.mem.producer())?;
        let slot = (self.mem.head().load(Ordering::Acquire) % u64::from(self.slots())) as u32;
        if self.mem.state(slot).load(Ordering::Acquire) == WRITING {
            self.mem.recover(slot);
        }
        Ok(RingProducer {
            ring: self.clone(),
            pid,
        })
    }

    /// Claims the consumer role for this process.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::RoleTaken`] as for [`producer`](FrameRing::producer). A
    /// frame a dead consumer was reading is delivered again.
    pub fn consumer(&self) -> Result<RingConsumer> {
        let pid = self.claim(self.mem.consumer())?;
        let slot = (self.mem.tail().load(Ordering::Acquire) % u64::from(self.slots())) as u32;
        if self.mem.state(slot).load(Ordering::Acquire) == READING {
            self.mem.recover(slot);
        }
        Ok(RingConsumer {
            ring: self.clone(),
            pid,
        })
    }

    fn claim(&self, role: &AtomicI32) -> Result<i32> {
        let me = fork::getpid();
        let mut holder = role.load(Ordering::Acquire);
        loop {
            if holder > 0 && process_alive(holder) {
                return Err(
                    Error::new(ErrorKind::RoleTaken).with_source(format!("held by pid {holder}"))
                );
            }
            match role.compare_exchange(holder, me, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(me),
                Err(now) => holder = now,
            }
        }
    }

    /// Waits until `ready()` might hold: spins up to the spin time, then
    /// sleeps on `bell` until it rings, `deadline`, or a liveness period
    /// passes.
    fn wait_bell(&self, bell: &AtomicU32, deadline: Option<Instant>, ready: impl Fn() -> bool) {
        let spin_until = deadline::after(self.spin);
        while spin_until.is_none_or(|s| Instant::now() < s) {
            for _ in 0..64 {
                std::hint::spin_loop();
            }
            if ready() || deadline.is_some_and(|d| Instant::now() >= d) {
                return;
            }
        }
        let slice = Instant::now() + LIVENESS_PERIOD;
        let until = deadline.map_or(slice, |d| d.min(slice));
        // Counting ourselves in is ordered with every ring of this bell: a
        // ring before it made `ready()` true (we read its state change), a
        // ring after it changes the word, so the futex does not sleep, and
        // sees the count, so it wakes us.
        let registered = bell
            .fetch_add(SLEEPER, Ordering::SeqCst)
            .wrapping_add(SLEEPER);
        if !ready() {
            futex::wait(bell, registered, Some(until));
        }
        bell.fetch_sub(SLEEPER, Ordering::SeqCst);
    }

    /// Rings `bell`, waking sleepers only if there are any.
    fn ring_bell(bell: &AtomicU32) {
        let before = bell.fetch_add(RING, Ordering::SeqCst);
        if before & SLEEPERS != 0 {
            futex::wake_all(bell);
        }
    }
}

/// A doorbell word: a ring counter in the high 16 bits (wrapping), the
/// number of sleepers in the low 16.
const RING: u32 = 1 << 16;
const SLEEPER: u32 = 1;
const SLEEPERS: u32 = RING - 1;

impl fmt::Debug for FrameRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameRing")
            .field("slots", &self.slots())
            .field("slot_size", &self.slot_size())
            .field("pending", &self.pending())
            .finish()
    }
}

/// When a waiter checks that the other side is alive: when it is about to
/// give up, and then once per liveness period — never on every round of a
/// busy stream (reading `/proc` costs more than a frame hand-off).
struct Liveness {
    next: Instant,
}

impl Liveness {
    fn new() -> Liveness {
        Liveness {
            next: Instant::now() + LIVENESS_PERIOD,
        }
    }

    fn due(&mut self, giving_up: bool) -> bool {
        let now = Instant::now();
        if giving_up || now >= self.next {
            self.next = now + LIVENESS_PERIOD;
            true
        } else {
            false
        }
    }

    /// Whether the role's holder is alive; a role nobody claimed yet counts
    /// as alive (the other side may still be starting), and so does a role
    /// released by a process that is still alive (it may claim it again,
    /// handler by handler). A released role whose process has ended —
    /// however it ended, an orderly exit included — is gone.
    fn alive(&self, role: &AtomicI32) -> bool {
        match role.load(Ordering::Acquire) {
            0 => true,
            pid => process_alive(pid.abs()),
        }
    }
}

/// Whether `pid` exists and is not a zombie.
fn process_alive(pid: i32) -> bool {
    if fork::kill(pid, 0).is_err_and(|e| e.raw_os_error() == Some(libc::ESRCH)) {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next()),
            Some("Z" | "X")
        ),
        Err(_) => false,
    }
}

/// The producer role of a [`FrameRing`], held by one process; released on
/// drop.
pub struct RingProducer {
    ring: FrameRing,
    pid: i32,
}

impl RingProducer {
    /// Waits for the next slot to be free and lends it for writing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`] if the consumer's process ended, killed
    /// or in order (a consumer that has not claimed its role yet is waited
    /// for).
    pub fn acquire(&mut self) -> Result<WriteSlot<'_>> {
        self.acquire_deadline(None)
    }

    /// As [`acquire`](RingProducer::acquire), or [`ErrorKind::Full`] at
    /// once if the ring is full.
    pub fn try_acquire(&mut self) -> Result<WriteSlot<'_>> {
        match self.acquire_deadline(Some(Instant::now())) {
            Err(e) if e.is_timeout() => Err(Error::new(ErrorKind::Full)),
            other => other,
        }
    }

    /// As [`acquire`](RingProducer::acquire), giving up after `timeout`
    /// with [`ErrorKind::Timeout`].
    pub fn acquire_timeout(&mut self, timeout: Duration) -> Result<WriteSlot<'_>> {
        self.acquire_deadline(deadline::after(timeout))
    }

    fn acquire_deadline(&mut self, deadline: Option<Instant>) -> Result<WriteSlot<'_>> {
        let mem = &self.ring.mem;
        let mut liveness = Liveness::new();
        loop {
            let slot = self.next_slot();
            if let Some(inner) = mem.try_write(slot, self.pid) {
                return Ok(WriteSlot {
                    inner: Some(inner),
                    producer: self,
                });
            }
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            if liveness.due(expired) && !liveness.alive(mem.consumer()) {
                return Err(Error::disconnected(None).with_source("the ring's consumer died"));
            }
            if expired {
                return Err(Error::new(ErrorKind::Timeout));
            }
            self.ring
                .wait_bell(mem.free_bell(), deadline, || mem.is(slot, FREE));
        }
    }

    /// The slot the next acquire takes.
    fn next_slot(&self) -> u32 {
        let mem = &self.ring.mem;
        (mem.head().load(Ordering::Acquire) % u64::from(mem.slots())) as u32
    }

    /// Whether the next slot is free now (only this producer takes it, so
    /// an acquire right after succeeds).
    pub(crate) fn is_free(&self) -> bool {
        self.ring.mem.is(self.next_slot(), FREE)
    }

    /// Spins up to `budget`, never sleeping, until the next slot is free.
    pub(crate) fn spin_until_free(&self, budget: Duration) -> bool {
        let until = Instant::now() + budget;
        loop {
            if self.is_free() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
    }

    /// Waits up to `timeout` (spinning, then sleeping on the doorbell) for
    /// the next slot to be free, without taking it.
    pub(crate) fn wait_free(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mem = &self.ring.mem;
        let slot = self.next_slot();
        loop {
            if mem.is(slot, FREE) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.ring
                .wait_bell(mem.free_bell(), Some(deadline), || mem.is(slot, FREE));
        }
    }
}

/// Releasing a role leaves the holder's pid behind, negated (see
/// `Liveness::alive`): the other side learns that the role is free to
/// claim, and still sees when the process that last held it ends.
impl Drop for RingProducer {
    fn drop(&mut self) {
        let _ = self.ring.mem.producer().compare_exchange(
            self.pid,
            -self.pid,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

impl fmt::Debug for RingProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingProducer")
            .field("pid", &self.pid)
            .finish()
    }
}

/// A slot being written: all `slot_size` bytes, in place. Publish it with
/// [`commit`](WriteSlot::commit); dropping it publishes nothing.
pub struct WriteSlot<'a> {
    inner: Option<SlotWrite>,
    producer: &'a RingProducer,
}

impl WriteSlot<'_> {
    /// Publishes the first `len` bytes to the consumer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if `len` exceeds the slot size (the
    /// slot is then freed unpublished).
    pub fn commit(mut self, len: usize) -> Result<()> {
        let inner = self.inner.take().expect("BUG: slot committed twice");
        let slot_size = self.producer.ring.slot_size();
        if len > slot_size {
            drop(inner);
            return Err(Error::new(ErrorKind::InvalidArgument)
                .with_source(format!("{len} bytes do not fit a slot of {slot_size}")));
        }
        inner.commit(len);
        let mem = &self.producer.ring.mem;
        mem.head().fetch_add(1, Ordering::AcqRel);
        FrameRing::ring_bell(mem.ready_bell());
        Ok(())
    }

    /// The slot's bytes as plain values of type `T` (e.g. `f32` pixels).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the slot size is not a multiple of
    /// `size_of::<T>()`.
    pub fn cast_mut<T: bytemuck::Pod>(&mut self) -> Result<&mut [T]> {
        bytemuck::try_cast_slice_mut(&mut self[..]).map_err(cast_error)
    }

    /// The slot's position in the ring.
    pub fn slot(&self) -> u32 {
        self.inner.as_ref().map_or(0, SlotWrite::slot)
    }
}

impl Deref for WriteSlot<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.inner.as_deref().expect("BUG: slot used after commit")
    }
}

impl DerefMut for WriteSlot<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.inner
            .as_deref_mut()
            .expect("BUG: slot used after commit")
    }
}

impl fmt::Debug for WriteSlot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteSlot")
            .field("slot", &self.slot())
            .finish()
    }
}

/// The consumer role of a [`FrameRing`], held by one process; released on
/// drop.
pub struct RingConsumer {
    ring: FrameRing,
    pid: i32,
}

impl RingConsumer {
    /// Waits for the next committed frame and lends it for reading in
    /// place; dropping the [`ReadSlot`] releases it to the producer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`] once the producer's process ended (killed,
    /// or exited in order) and every frame it committed has been read;
    /// [`ErrorKind::Decode`] if the producer
    /// recorded a length larger than the slot (the frame is skipped).
    pub fn recv(&mut self) -> Result<ReadSlot<'_>> {
        self.recv_deadline(None)
    }

    /// As [`recv`](RingConsumer::recv), or [`ErrorKind::Empty`] at once.
    pub fn try_recv(&mut self) -> Result<ReadSlot<'_>> {
        match self.recv_deadline(Some(Instant::now())) {
            Err(e) if e.is_timeout() => Err(Error::new(ErrorKind::Empty)),
            other => other,
        }
    }

    /// As [`recv`](RingConsumer::recv), giving up after `timeout` with
    /// [`ErrorKind::Timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<ReadSlot<'_>> {
        self.recv_deadline(deadline::after(timeout))
    }

    fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<ReadSlot<'_>> {
        let mem = &self.ring.mem;
        let slots = u64::from(mem.slots());
        let mut liveness = Liveness::new();
        loop {
            let slot = (mem.tail().load(Ordering::Acquire) % slots) as u32;
            match mem.try_read(slot, self.pid) {
                Some(Ok(inner)) => {
                    return Ok(ReadSlot {
                        inner: Some(inner),
                        consumer: self,
                    });
                }
                Some(Err(len)) => {
                    self.advance();
                    return Err(Error::new(ErrorKind::Decode).with_source(format!(
                        "the producer recorded {len} bytes for a slot of {}",
                        mem.slot_size()
                    )));
                }
                None => {}
            }
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            if liveness.due(expired) && !liveness.alive(mem.producer()) {
                return Err(Error::disconnected(None).with_source("the ring's producer died"));
            }
            if expired {
                return Err(Error::new(ErrorKind::Timeout));
            }
            self.ring
                .wait_bell(mem.ready_bell(), deadline, || mem.is(slot, READY));
        }
    }

    /// The next committed frame if there is one, held apart from this
    /// consumer: the consumer moves on at once (the next call reads the
    /// next frame) while the frame stays lent until the [`HeldFrame`] is
    /// dropped. The producer still reuses slots in order, so a held frame
    /// stalls it once it comes round to that slot. For the message lane
    /// (one-slot rings: `lane.rs`), whose received values lend from the
    /// slot (`Bytes`).
    pub(crate) fn try_hold(&mut self) -> Result<HeldFrame> {
        let inner = match self.recv_deadline(Some(Instant::now())) {
            Err(e) if e.is_timeout() => return Err(Error::new(ErrorKind::Empty)),
            Err(e) => return Err(e),
            Ok(mut read) => read
                .inner
                .take()
                .expect("BUG: a fresh slot without its guard"),
        };
        self.ring.mem.tail().fetch_add(1, Ordering::AcqRel);
        Ok(HeldFrame {
            inner: Some(inner),
            ring: self.ring.clone(),
            pid: self.pid,
            forks: fork::forks(),
        })
    }

    /// Moves past the slot at `tail` (it is `FREE` now) and rings the
    /// producer's doorbell.
    fn advance(&self) {
        let mem = &self.ring.mem;
        mem.tail().fetch_add(1, Ordering::AcqRel);
        FrameRing::ring_bell(mem.free_bell());
    }
}

/// As for the producer: the pid stays behind, negated.
impl Drop for RingConsumer {
    fn drop(&mut self) {
        let _ = self.ring.mem.consumer().compare_exchange(
            self.pid,
            -self.pid,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

impl fmt::Debug for RingConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingConsumer")
            .field("pid", &self.pid)
            .finish()
    }
}

/// A committed frame, read in place; dropping it frees the slot.
pub struct ReadSlot<'a> {
    inner: Option<SlotRead>,
    consumer: &'a RingConsumer,
}

impl ReadSlot<'_> {
    /// The frame's bytes as plain values of type `T`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the frame's length is not a
    /// multiple of `size_of::<T>()` (slots are 64-byte aligned).
    pub fn cast<T: bytemuck::Pod>(&self) -> Result<&[T]> {
        bytemuck::try_cast_slice(&self[..]).map_err(cast_error)
    }

    /// The slot's position in the ring.
    pub fn slot(&self) -> u32 {
        self.inner.as_ref().map_or(0, SlotRead::slot)
    }
}

impl Deref for ReadSlot<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.inner.as_deref().expect("BUG: slot used after release")
    }
}

impl Drop for ReadSlot<'_> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.release();
            self.consumer.advance();
        }
    }
}

impl fmt::Debug for ReadSlot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadSlot")
            .field("slot", &self.slot())
            .field("len", &self.len())
            .finish()
    }
}

/// A frame taken out of the ring's order by
/// [`RingConsumer::try_hold`]; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct HeldFrame {
    inner: Option<SlotRead>,
    ring: FrameRing,
    /// The reading process: a copy of this guard in a child made by fork
    /// must not free a slot its parent is still reading.
    pid: i32,
    /// The reader's fork count when it took the frame: if it forked since,
    /// a child may be reading a copy (a backend value moved into it), so
    /// the parent must not free the slot either.
    forks: u64,
}

impl Deref for HeldFrame {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.inner
            .as_deref()
            .expect("BUG: frame used after release")
    }
}

// Under the model checker a slot's bytes are a tracked loom cell, not
// shareable across threads; nothing there lends them.
#[cfg(not(loom))]
impl crate::LentBytes for HeldFrame {
    fn as_bytes(&self) -> &[u8] {
        self
    }
}

impl Drop for HeldFrame {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        // A frame held across a fork is never freed: the copies cannot
        // agree on who frees it last, and a slot lost is only a slower lane
        // (the sender takes the socket), where a slot freed early is a
        // frame overwritten under its reader.
        if fork::getpid() == self.pid && fork::forks() == self.forks {
            inner.release();
            FrameRing::ring_bell(self.ring.mem.free_bell());
        } else {
            inner.abandon();
        }
    }
}

fn cast_error(e: bytemuck::PodCastError) -> Error {
    Error::new(ErrorKind::InvalidArgument).with_source(format!("cannot view the bytes so: {e:?}"))
}

/// Model checks (`checks/loom`) of the public ring: a producer blocked on a
/// full ring and a consumer blocked on an empty one, with the doorbells and
/// sleeper counts deciding who wakes whom (a lost wake-up is a deadlock loom
/// reports: the model has no timeouts to hide it).
#[cfg(all(test, loom))]
mod loom_model {
    use super::*;

    #[test]
    fn frames_flow_in_order_through_a_full_ring() {
        loom::model(|| {
            let ring = FrameRing::new(1, 4).unwrap().with_spin(Duration::ZERO);
            let producer_ring = ring.clone();
            let producer = loom::thread::spawn(move || {
                let mut p = producer_ring.producer().unwrap();
                for frame in 0..2u8 {
                    let mut slot = p.acquire().unwrap();
                    slot[0] = frame;
                    slot.commit(1).unwrap();
                }
            });
            let mut c = ring.consumer().unwrap();
            for frame in 0..2u8 {
                let slot = c.recv().unwrap();
                assert_eq!(slot[0], frame);
                drop(slot);
            }
            producer.join().unwrap();
        });
    }
}
