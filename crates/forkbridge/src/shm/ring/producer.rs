//! The producer's side of a [`FrameRing`]: [`RingProducer`] and the
//! [`WriteSlot`] it lends.

use crate::sys::atomic::Ordering;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crate::deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::ring::{FREE, SlotWrite};

use super::liveness::Liveness;
use super::{FrameRing, cast_error};

/// The producer role of a [`FrameRing`], held by one process; released on
/// drop. It has no serde form: the role is this process's, so a backend
/// gets the ring and claims the role itself.
pub struct RingProducer {
    pub(super) ring: FrameRing,
    pub(super) pid: i32,
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
