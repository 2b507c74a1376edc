//! The shared-memory lane for large messages (see
//! `MessageProcessBuilder::large_messages`): each direction has two slots,
//! the sender encodes a large message straight into one and puts a marker
//! naming it in the socket, in order; the receiver decodes it in place.
//!
//! # Design: which slot the sender writes
//!
//! Each slot is a [`FrameRing`] of one slot, not one ring of two, so the
//! sender can choose which slot to write instead of taking them in turn:
//!
//! 1. the slot it wrote last, if the reader is done with it: the copy goes
//!    into cache lines that are still this CPU's, faster than into the
//!    other slot;
//! 2. that slot again, after a short spin, if the reader is usually quick
//!    to give it back — the spin lasts at most a quarter of the sender's
//!    last copy, about what the warm copy saves;
//! 3. otherwise the other slot, so a reader busy with one frame and a
//!    sender copying the next work at the same time;
//! 4. both busy: a wait of up to 20 ms for either, asleep on the doorbell
//!    of the one that came free first last time (the older one for a
//!    reader that works in order, the newer one for a reader that keeps a
//!    reference frame for good); after a wait that ran out, the socket at
//!    once until a slot is free again (the reader keeps its values, which
//!    lend from their slots).
//!
//! An async end (a tokio backend, an `AsyncMessageProcess`) never spins
//! or waits: a wait there would block the runtime's thread and every task
//! on it, so with both slots busy its message takes the socket at once.
//!
//! A spin that ran out (a reader that works on its frames) is not tried
//! again for 2, 4, ... 64 messages, so such a reader costs the sender one
//! short spin per 64 frames, and a reader that becomes quick is noticed.
//!
//! The bench's `large_message` (an idle reader) and `large_message_read`
//! (a reader that reads every byte) measure the lane against the socket;
//! the figures, and those of the designs below, are in the bench's README.
//!
//! Rejected: one FIFO ring of two slots (the earlier design) — the slots
//! alternate, and a slot the reader keeps blocks the other behind it, so
//! one kept value sends every later large message through the socket;
//! always waiting for the slot written last — with a reader that reads
//! every byte, the sender waited for the slot being read instead of filling
//! the other one, and throughput fell.

use std::time::{Duration, Instant};

use crate::data::message::Message;
use crate::error::{Error, ErrorKind, Result};
use crate::shm::ring::{FrameRing, RingConsumer, RingProducer};

/// Slots per direction: two, the one written last and the other (the
/// choice above); a marker names one in its byte (`wire::encode_lane`).
pub(crate) const SLOTS: usize = 2;

/// How long a large message waits for a slot when both are busy before it
/// takes the socket instead (the reader is usually done sooner: it decodes
/// without copying the payload out).
const BUSY_WAIT: Duration = Duration::from_millis(20);

/// The naps of a wait for either of two busy slots: the first, and the
/// longest (how late a slot freed while the other's doorbell is watched
/// can be noticed).
const FIRST_NAP: Duration = Duration::from_micros(100);
const MAX_NAP: Duration = Duration::from_millis(1);

/// The longest spin for the slot written last, whatever a copy costs.
const MAX_SPIN: Duration = Duration::from_micros(500);

/// After this many spins in a row ran out, the sender tries again only
/// every 2^this messages.
const MAX_MISSES: u32 = 6;

/// The rings of a lane, made before the backend starts; each end claims
/// its half. It crosses in the backend's serde value with the rings (their
/// roles are claimed afterwards, by each end).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct LaneRings {
    to_backend: [FrameRing; SLOTS],
    to_frontend: [FrameRing; SLOTS],
    threshold: usize,
}

impl LaneRings {
    /// Maps `SLOTS` slots of `slot_size` bytes each way (address space
    /// only, until written).
    pub(crate) fn new(threshold: usize, slot_size: usize) -> Result<LaneRings> {
        // Waiters sleep at once: the lane's waits are its own (`Lane`).
        let ring = || Ok::<_, Error>(FrameRing::new(1, slot_size)?.with_spin(Duration::ZERO));
        Ok(LaneRings {
            to_backend: [ring()?, ring()?],
            to_frontend: [ring()?, ring()?],
            threshold,
        })
    }

    /// The backend's end: reads `to_backend`, writes `to_frontend`.
    pub(crate) fn backend_end(&self) -> Result<Lane> {
        Lane::new(&self.to_frontend, &self.to_backend, self.threshold)
    }

    /// The frontend's end: writes `to_backend`, reads `to_frontend`.
    pub(crate) fn frontend_end(&self) -> Result<Lane> {
        Lane::new(&self.to_backend, &self.to_frontend, self.threshold)
    }
}

/// One end of a lane: the slots this end writes and those it reads.
#[derive(Debug)]
pub(crate) struct Lane {
    tx: [RingProducer; SLOTS],
    rx: [RingConsumer; SLOTS],
    threshold: usize,
    slot_size: usize,
    /// Messages sent through the lane so far.
    sent: u64,
    /// Encoded bytes put in slots, and taken from them.
    bytes_sent: u64,
    bytes_received: u64,
    /// The slot written last.
    last: usize,
    /// How long the last copy into a slot took.
    copy_time: Duration,
    /// Spins in a row that ran out, and the messages left before the next.
    misses: u32,
    skip: u32,
    /// In the last wait for either busy slot, the newer one came free
    /// first.
    newer_frees_first: bool,
    /// The last wait for a busy slot ran out: later messages take the
    /// socket at once until a slot is free again, instead of waiting each
    /// time.
    stalled: bool,
    /// Whether a send may spin or wait for a busy slot (not on an async
    /// end: see the module docs).
    patient: bool,
}

impl Lane {
    fn new(tx: &[FrameRing; SLOTS], rx: &[FrameRing; SLOTS], threshold: usize) -> Result<Lane> {
        Ok(Lane {
            tx: [tx[0].producer()?, tx[1].producer()?],
            rx: [rx[0].consumer()?, rx[1].consumer()?],
            threshold,
            slot_size: tx[0].slot_size(),
            sent: 0,
            bytes_sent: 0,
            bytes_received: 0,
            last: 0,
            copy_time: Duration::ZERO,
            misses: 0,
            skip: 0,
            newer_frees_first: false,
            stalled: false,
            patient: true,
        })
    }

    /// Makes sends take a free slot or the socket, never waiting for a
    /// busy slot (for an end that runs on an async runtime).
    #[cfg(any(feature = "tokio", all(test, not(loom))))]
    pub(crate) fn never_wait(&mut self) {
        self.patient = false;
    }

    /// Whether a message whose strings and byte strings hold `payload`
    /// bytes is for the lane: at least the threshold, and not more than a
    /// slot (its encoding is larger still), so a message that cannot fit
    /// never waits for a slot.
    pub(crate) fn takes(&self, payload: usize) -> bool {
        payload >= self.threshold && payload <= self.slot_size
    }

    /// Messages sent through the lane so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    /// Encoded bytes this end put in slots and took from them so far.
    pub(crate) fn bytes(&self) -> (u64, u64) {
        (self.bytes_sent, self.bytes_received)
    }

    /// Puts a large message in a slot (see the module docs for which) and
    /// returns the slot to name in the marker; `None` sends it through the
    /// socket instead: too large for a slot or for `max_frame` (the socket
    /// then refuses it, so the frame limit holds on both paths), or no slot
    /// in time.
    pub(crate) fn try_send(&mut self, msg: &Message, max_frame: usize) -> Option<u8> {
        let slot = self.choose()?;
        let start = Instant::now();
        let written = match self.tx[slot].acquire_timeout(Duration::ZERO) {
            Ok(mut out) => match postcard::to_slice(msg, &mut out[..max_frame.min(self.slot_size)])
            {
                Ok(used) => {
                    let len = used.len();
                    out.commit(len).is_ok().then_some(len)
                }
                Err(_) => None, // larger than a slot: the socket takes it
            },
            Err(_) => None,
        };
        let len = written?;
        self.bytes_sent += len as u64;
        self.copy_time = start.elapsed();
        self.last = slot;
        self.sent += 1;
        Some(slot as u8)
    }

    /// The slot to write, now free; `None` if neither is free in time.
    fn choose(&mut self) -> Option<usize> {
        let (last, other) = (self.last, 1 - self.last);
        if self.tx[last].is_free() {
            return self.found(last);
        }
        if !self.patient {
            // An async end: no spin, no wait (see the module docs).
        } else if self.skip > 0 {
            self.skip -= 1;
        } else if self.tx[last].spin_until_free((self.copy_time / 4).min(MAX_SPIN)) {
            self.misses = 0;
            return self.found(last);
        } else {
            self.misses = (self.misses + 1).min(MAX_MISSES);
            self.skip = 1 << self.misses;
        }
        if self.tx[other].is_free() {
            return self.found(other);
        }
        if self.stalled || !self.patient {
            return None;
        }
        self.wait_for_either()
    }

    /// Both slots busy: waits up to `BUSY_WAIT` for either, asleep on the
    /// doorbell of the one that came free first last time — the older one
    /// when the reader works through its frames in order, the newer one
    /// when it keeps the older for good (a reference frame) — and looking
    /// at the other between naps of at most `MAX_NAP`.
    fn wait_for_either(&mut self) -> Option<usize> {
        let (newer, older) = (self.last, 1 - self.last);
        let deadline = Instant::now() + BUSY_WAIT;
        let mut nap = FIRST_NAP;
        loop {
            let first = if self.newer_frees_first { newer } else { older };
            for slot in [first, 1 - first] {
                if self.tx[slot].is_free() {
                    self.newer_frees_first = slot == newer;
                    return self.found(slot);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                self.stalled = true;
                return None;
            }
            self.tx[first].wait_free(nap.min(deadline - now));
            nap = (nap * 2).min(MAX_NAP);
        }
    }

    fn found(&mut self, slot: usize) -> Option<usize> {
        self.stalled = false;
        Some(slot)
    }

    /// The message the other end put in `slot` before its marker.
    ///
    /// Its large byte strings are not copied out: they stay in the slot,
    /// which is freed when the last of them is dropped. A message larger
    /// than `max_frame` is [`ErrorKind::FrameTooLarge`], as it would be on
    /// the socket, and its slot is freed at once.
    pub(crate) fn recv(&mut self, slot: u8, max_frame: usize) -> Result<Message> {
        let Some(rx) = self.rx.get_mut(usize::from(slot)) else {
            return Err(Error::new(ErrorKind::Decode)
                .with_source(format!("a lane marker names slot {slot} of {SLOTS}")));
        };
        let frame = rx.try_hold().map_err(|e| {
            Error::new(ErrorKind::Decode).with_source(format!("lane marker without a message: {e}"))
        })?;
        self.bytes_received += frame.len() as u64;
        if frame.len() > max_frame {
            return Err(Error::new(ErrorKind::FrameTooLarge {
                len: frame.len(),
                max: max_frame,
            }));
        }
        #[cfg(not(loom))]
        let decoded = crate::data::bytes::decode_lending(std::sync::Arc::new(frame), |b| {
            postcard::from_bytes::<Message>(b)
        });
        #[cfg(loom)]
        let decoded = postcard::from_bytes::<Message>(&frame);
        decoded.map_err(|e| Error::new(ErrorKind::Decode).with_source(e))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::data::fds;

    const MAX: usize = crate::protocol::wire::DEFAULT_MAX_FRAME;

    fn large(tag: u8) -> Message {
        Message::new("large").with("data", vec![tag; 64 << 10])
    }

    fn tag(msg: &Message) -> u8 {
        msg["data"].as_bytes().unwrap()[0]
    }

    #[test]
    fn the_rings_cross_in_a_serde_value_as_the_same_rings() {
        let rings = LaneRings::new(1, 1 << 20).unwrap();
        let (bytes, fds) = fds::collect(|| postcard::to_allocvec(&rings).unwrap());
        assert_eq!(fds.len(), 2 * SLOTS, "one memfd per ring");
        let copy: LaneRings = fds::provide(fds, || postcard::from_bytes(&bytes)).unwrap();
        let (mut front, mut back) = (rings.frontend_end().unwrap(), copy.backend_end().unwrap());
        assert_eq!(front.try_send(&large(1), MAX), Some(0));
        assert_eq!(tag(&back.recv(0, MAX).unwrap()), 1);
        assert_eq!(back.try_send(&large(2), MAX), Some(0));
        assert_eq!(tag(&front.recv(0, MAX).unwrap()), 2);
    }

    #[test]
    fn a_marker_naming_no_slot_or_an_empty_one_is_a_decode_error() {
        let rings = LaneRings::new(1, 1 << 20).unwrap();
        let mut back = rings.backend_end().unwrap();
        assert_eq!(*back.recv(2, MAX).unwrap_err().kind(), ErrorKind::Decode);
        assert_eq!(*back.recv(0, MAX).unwrap_err().kind(), ErrorKind::Decode);
    }

    #[test]
    fn the_frame_limit_holds_on_the_lane_both_ways() {
        let rings = LaneRings::new(1, 1 << 20).unwrap();
        let (mut front, mut back) = (rings.frontend_end().unwrap(), rings.backend_end().unwrap());
        // 64 KiB of payload does not fit 32 KiB: the lane refuses it, every
        // time (the socket then refuses it too), and no slot is used up.
        for _ in 0..3 {
            assert_eq!(front.try_send(&large(1), 32 << 10), None);
        }
        assert_eq!(front.sent(), 0);
        // A receiver with a smaller limit than the sender's refuses the
        // message and frees its slot.
        assert_eq!(front.try_send(&large(2), MAX), Some(0));
        let err = back.recv(0, 32 << 10).unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::FrameTooLarge { max, .. } if *max == 32 << 10));
        assert_eq!(
            front.try_send(&large(3), MAX),
            Some(0),
            "the slot came back"
        );
        assert_eq!(tag(&back.recv(0, MAX).unwrap()), 3);
    }

    #[test]
    fn the_sender_takes_the_slot_it_wrote_last_when_free_and_the_other_when_not() {
        let rings = LaneRings::new(1, 1 << 20).unwrap();
        let (mut front, mut back) = (rings.frontend_end().unwrap(), rings.backend_end().unwrap());
        assert!(
            front.takes(1 << 20) && !front.takes((1 << 20) + 1),
            "more than a slot"
        );
        // Read and dropped: the same slot again.
        assert_eq!(front.try_send(&large(1), MAX), Some(0));
        assert_eq!(tag(&back.recv(0, MAX).unwrap()), 1);
        assert_eq!(front.try_send(&large(2), MAX), Some(0));
        let kept = back.recv(0, MAX).unwrap();
        // Kept: the other slot, then that one while the first stays kept.
        assert_eq!(front.try_send(&large(3), MAX), Some(1));
        assert_eq!(tag(&back.recv(1, MAX).unwrap()), 3);
        assert_eq!(front.try_send(&large(4), MAX), Some(1));
        let kept_too = back.recv(1, MAX).unwrap();
        // Both kept: the socket, after one wait; then at once.
        assert_eq!(front.try_send(&large(5), MAX), None);
        let t = Instant::now();
        assert_eq!(front.try_send(&large(6), MAX), None);
        assert!(t.elapsed() < BUSY_WAIT, "waited again while stalled");
        assert_eq!((tag(&kept), tag(&kept_too)), (2, 4), "a kept frame changed");
        drop(kept);
        assert_eq!(front.try_send(&large(7), MAX), Some(0));
        assert_eq!(tag(&back.recv(0, MAX).unwrap()), 7);
        assert_eq!(front.sent(), 5);
    }

    #[test]
    fn an_end_that_never_waits_takes_the_socket_at_once_when_both_slots_are_busy() {
        let rings = LaneRings::new(1, 1 << 20).unwrap();
        let (mut front, mut back) = (rings.frontend_end().unwrap(), rings.backend_end().unwrap());
        front.never_wait();
        assert_eq!(front.try_send(&large(1), MAX), Some(0));
        let kept = back.recv(0, MAX).unwrap();
        assert_eq!(front.try_send(&large(2), MAX), Some(1), "the free slot");
        let kept_too = back.recv(1, MAX).unwrap();
        assert_eq!(front.try_send(&large(3), MAX), None);
        // No spin ran out and no wait ran out: the choice never waited.
        assert_eq!((front.misses, front.stalled), (0, false));
        drop(kept);
        assert_eq!(front.try_send(&large(4), MAX), Some(0));
        assert_eq!(tag(&back.recv(0, MAX).unwrap()), 4);
        assert_eq!(tag(&kept_too), 2);
    }

    #[test]
    fn a_reader_that_keeps_the_older_frame_is_waited_for_on_the_newer() {
        // The reader keeps its first frame for good and works on each new
        // one for 2 ms: with both slots busy, the sender must notice the
        // newer one freeing, not sleep out its wait on the kept one.
        let rings = LaneRings::new(1, 1 << 20).unwrap();
        let (mut front, mut back) = (rings.frontend_end().unwrap(), rings.backend_end().unwrap());
        assert_eq!(front.try_send(&large(0), MAX), Some(0));
        let reference = back.recv(0, MAX).unwrap();
        for i in 1..6 {
            let slot = front
                .try_send(&large(i), MAX)
                .expect("both slots busy too long");
            let frame = back.recv(slot, MAX).unwrap();
            let worker = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2));
                assert_eq!(tag(&frame), i);
            });
            let t = Instant::now();
            assert_eq!(front.try_send(&large(10 + i), MAX), Some(1));
            assert!(t.elapsed() < BUSY_WAIT, "waited out the kept slot");
            worker.join().unwrap();
            assert_eq!(tag(&back.recv(1, MAX).unwrap()), 10 + i);
        }
        assert_eq!(tag(&reference), 0, "the kept frame changed");
    }
}
