//! The consumer's side of a [`FrameRing`]: [`RingConsumer`], the
//! [`ReadSlot`] it lends, and the [`HeldFrame`] the lane keeps out of order.

use crate::sys::atomic::Ordering;
use std::fmt;
use std::ops::Deref;
use std::time::{Duration, Instant};

use crate::deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::fork;
use crate::sys::ring::{READY, SlotRead};

use super::liveness::Liveness;
use super::{FrameRing, cast_error};

/// The consumer role of a [`FrameRing`], held by one process; released on
/// drop. It has no serde form: the role is this process's, so a backend
/// gets the ring and claims the role itself.
pub struct RingConsumer {
    pub(super) ring: FrameRing,
    pub(super) pid: i32,
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
