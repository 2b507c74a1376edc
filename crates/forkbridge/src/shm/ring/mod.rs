//! [`FrameRing`]: a ring of fixed-size slots in shared memory for a stream of
//! frames from one process to another, read in place.
//!
//! # Design
//!
//! valkka-multiprocess's users put video frames and numpy arrays in shared memory and
//! send only an index through the pipe: a pipe copies every byte twice
//! through the kernel, a shared ring not at all (the bench's `shm_frames`
//! measures the ring against a plain memcpy). A `FrameRing` is that pattern, made safe:
//!
//! - one memfd mapped `MAP_SHARED`, made before the backend starts:
//!   nothing named, nothing left in `/dev/shm` when a process crashes; a
//!   fork shares the mapping, and a backend started otherwise (`exec`, a
//!   fork server) gets the memfd beside its serde value and maps it (an
//!   anonymous mapping would serve a fork alone: it cannot be named to
//!   another process);
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
//! by hand); sending frames through the socket — every byte copied twice through
//! the kernel (the figure is in the bench's README).

use crate::sys::atomic::{AtomicI32, AtomicU32, Ordering};
mod consumer;
mod liveness;
#[cfg(all(test, loom))]
mod loom_model;
mod producer;

pub use consumer::{ReadSlot, RingConsumer};
pub use producer::{RingProducer, WriteSlot};

use liveness::{LIVENESS_PERIOD, process_alive};

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::ring::{READING, RingMemory, WRITING};
use crate::sys::{fork, futex};

/// A ring of `slots` slots of `slot_size` bytes in shared memory; create it
/// before the backend starts and give a clone to the backend. Cloning
/// shares the ring. It crosses to a backend started by any start method
/// (as part of its serde value, with its spin time); outside a start,
/// serializing it is an error. The roles ([`RingProducer`],
/// [`RingConsumer`]) do not cross: a role belongs to the process that
/// claimed it, so the backend claims its own from its copy of the ring.
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
    pub(super) mem: Arc<RingMemory>,
    pub(super) spin: Duration,
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

fn cast_error(e: bytemuck::PodCastError) -> Error {
    Error::new(ErrorKind::InvalidArgument).with_source(format!("cannot view the bytes so: {e:?}"))
}
