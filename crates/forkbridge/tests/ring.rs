//! The frame ring across real forks: in-place frames, back-pressure, roles,
//! and the death of either side while it holds a slot.

mod common;

use std::time::{Duration, Instant};

use common::{WAIT, recv};
use forkbridge::{
    Backend, BackendContext, ErrorKind, FrameRing, HandlerResult, Handlers, Message,
    MessageProcess, message,
};
use forkbridge_testkit::{open_fds, shared_mappings, wait_until};

test_main!(
    frames_arrive_in_order_and_are_read_in_place,
    a_full_ring_is_back_pressure_never_an_overwrite,
    roles_are_exclusive_and_released_on_drop,
    typed_views_of_frames,
    consumer_dying_with_a_slot_is_seen_and_the_frame_recovered,
    producer_dying_mid_frame_is_seen_after_its_frames_are_read,
    commit_larger_than_the_slot_is_refused,
    rings_leak_no_mapping_or_fd_and_leave_nothing_in_dev_shm,
    a_dropped_write_slot_publishes_nothing,
    ring_sizes_and_typed_views_are_checked_with_their_kind,
);

/// A backend that plays either role.
#[derive(Debug)]
struct RingWorker {
    ring: FrameRing,
}

impl RingWorker {
    /// Reads `n` frames, checks their sequence numbers, sums their bytes.
    fn consume(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let n: u64 = msg.param("n")?;
        let mut consumer = self.ring.consumer()?;
        let mut sum = 0u64;
        for expected in 0..n {
            let frame = consumer.recv_timeout(WAIT)?;
            let seq = u64::from_le_bytes(frame[..8].try_into()?);
            if seq != expected {
                return Err(format!("frame {seq} where {expected} was due").into());
            }
            sum += frame[8..].iter().map(|&b| u64::from(b)).sum::<u64>();
        }
        ctx.send(message!("consumed", n = n, sum = sum))?;
        Ok(())
    }

    /// Takes one frame, reports its sequence number, then dies holding it.
    fn hold_and_die(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        let mut consumer = self.ring.consumer()?;
        let frame = consumer.recv_timeout(WAIT)?;
        let seq = u64::from_le_bytes(frame[..8].try_into()?);
        ctx.send(message!("holding", seq = seq))?;
        ctx.flush()?;
        std::process::abort();
    }

    /// Produces `n` frames, then starts one more and dies writing it.
    fn produce_then_die(&mut self, _: &mut BackendContext, msg: Message) -> HandlerResult {
        let n: u64 = msg.param("n")?;
        let mut producer = self.ring.producer()?;
        for seq in 0..n {
            let mut slot = producer.acquire_timeout(WAIT)?;
            slot[..8].copy_from_slice(&seq.to_le_bytes());
            slot.commit(64)?;
        }
        let mut slot = producer.acquire_timeout(WAIT)?;
        slot[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        std::process::abort();
    }
}

impl Backend for RingWorker {
    fn register(h: &mut Handlers<Self>) {
        h.on("consume", Self::consume)
            .on("hold_and_die", Self::hold_and_die)
            .on("produce_then_die", Self::produce_then_die);
    }
}

fn start(ring: &FrameRing) -> MessageProcess {
    let mut p = MessageProcess::new("ring-worker", RingWorker { ring: ring.clone() }).unwrap();
    p.start().unwrap();
    p
}

/// Writes frame `seq`: its number, then `fill` bytes of `seq as u8`.
fn produce(producer: &mut forkbridge::RingProducer, seq: u64, fill: usize) {
    let mut slot = producer.acquire_timeout(WAIT).unwrap();
    slot[..8].copy_from_slice(&seq.to_le_bytes());
    slot[8..8 + fill].fill(seq as u8);
    slot.commit(8 + fill).unwrap();
}

fn frames_arrive_in_order_and_are_read_in_place() {
    let ring = FrameRing::new(4, 1 << 20).unwrap();
    let mut p = start(&ring);
    let n = 200u64;
    p.send(message!("consume", n = n)).unwrap();
    let mut producer = ring.producer().unwrap();
    let fill = (1 << 20) - 8;
    for seq in 0..n {
        produce(&mut producer, seq, fill);
    }
    let done = recv(&mut p);
    assert_eq!(done.command(), "consumed", "{done}");
    let expected: u64 = (0..n).map(|s| (s as u8) as u64 * fill as u64).sum();
    assert_eq!(done.param::<u64>("sum").unwrap(), expected);
    assert_eq!(ring.pending(), 0);
    p.stop().unwrap();
}

fn a_full_ring_is_back_pressure_never_an_overwrite() {
    let ring = FrameRing::new(3, 4096).unwrap();
    let mut producer = ring.producer().unwrap();
    for seq in 0..3 {
        produce(&mut producer, seq, 100);
    }
    assert_eq!(producer.try_acquire().unwrap_err().kind(), &ErrorKind::Full);
    let t = Instant::now();
    assert!(
        producer
            .acquire_timeout(Duration::from_millis(80))
            .unwrap_err()
            .is_timeout()
    );
    assert!(t.elapsed() >= Duration::from_millis(80));
    assert_eq!(ring.pending(), 3);
    // The consumer gets all three, untouched, in order.
    let mut p = start(&ring);
    p.send(message!("consume", n = 3)).unwrap();
    assert_eq!(recv(&mut p).param::<u64>("n").unwrap(), 3);
    p.stop().unwrap();
}

fn roles_are_exclusive_and_released_on_drop() {
    let ring = FrameRing::new(2, 64).unwrap();
    let producer = ring.producer().unwrap();
    assert_eq!(ring.producer().unwrap_err().kind(), &ErrorKind::RoleTaken);
    drop(producer);
    let _again = ring.producer().unwrap();
    let consumer = ring.consumer().unwrap();
    assert_eq!(ring.consumer().unwrap_err().kind(), &ErrorKind::RoleTaken);
    drop(consumer);
    let mut consumer = ring.consumer().unwrap();
    assert_eq!(consumer.try_recv().unwrap_err().kind(), &ErrorKind::Empty);
    assert_eq!(
        FrameRing::new(0, 64).unwrap_err().kind(),
        &ErrorKind::InvalidArgument
    );
}

fn typed_views_of_frames() {
    let ring = FrameRing::new(2, 16 * 4).unwrap();
    let mut producer = ring.producer().unwrap();
    let mut slot = producer.acquire().unwrap();
    let floats = slot.cast_mut::<f32>().unwrap();
    for (i, f) in floats.iter_mut().enumerate() {
        *f = i as f32 * 0.5;
    }
    slot.commit(16 * 4).unwrap();
    let mut consumer = ring.consumer().unwrap();
    let frame = consumer.recv().unwrap();
    assert_eq!(frame.cast::<f32>().unwrap()[15], 7.5);
    assert_eq!(
        frame.cast::<[u8; 3]>().map(|_| ()).unwrap_err().kind(),
        &ErrorKind::InvalidArgument,
        "64 bytes are not a whole number of 3-byte pixels"
    );
}

fn consumer_dying_with_a_slot_is_seen_and_the_frame_recovered() {
    let ring = FrameRing::new(2, 256).unwrap();
    let mut p = start(&ring);
    p.send(Message::new("hold_and_die")).unwrap();
    let mut producer = ring.producer().unwrap();
    produce(&mut producer, 0, 10);
    produce(&mut producer, 1, 10);
    assert_eq!(recv(&mut p).param::<u64>("seq").unwrap(), 0);
    // The ring is full (frame 0 held, frame 1 waiting) and the consumer is
    // dead: acquire says so instead of blocking forever.
    let t = Instant::now();
    let err = producer.acquire().unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(p.recv_timeout(WAIT).unwrap_err().is_disconnected());
    // A new consumer recovers the held slot: frame 0 is delivered again.
    let mut p = start(&ring);
    p.send(message!("consume", n = 2)).unwrap();
    let done = recv(&mut p);
    assert_eq!(done.command(), "consumed", "{done}");
    p.stop().unwrap();
}

fn producer_dying_mid_frame_is_seen_after_its_frames_are_read() {
    let ring = FrameRing::new(4, 256).unwrap();
    let mut p = start(&ring);
    p.send(message!("produce_then_die", n = 2)).unwrap();
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    let mut consumer = ring.consumer().unwrap();
    for seq in 0..2u64 {
        let frame = consumer.recv_timeout(WAIT).unwrap();
        assert_eq!(u64::from_le_bytes(frame[..8].try_into().unwrap()), seq);
    }
    let err = consumer.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    // A new producer frees the half-written slot and the stream goes on.
    let mut producer = ring.producer().unwrap();
    produce(&mut producer, 2, 5);
    let frame = consumer.recv_timeout(WAIT).unwrap();
    assert_eq!(u64::from_le_bytes(frame[..8].try_into().unwrap()), 2);
}

fn commit_larger_than_the_slot_is_refused() {
    let ring = FrameRing::new(1, 100).unwrap();
    let mut producer = ring.producer().unwrap();
    let slot = producer.acquire().unwrap();
    assert_eq!(slot.len(), 100);
    let err = slot.commit(101).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidArgument);
    // The slot was freed, not published.
    assert_eq!(ring.pending(), 0);
    assert!(producer.try_acquire().is_ok());
}

fn dev_shm_entries() -> usize {
    std::fs::read_dir("/dev/shm")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rings_leak_no_mapping_or_fd_and_leave_nothing_in_dev_shm() {
    let shm = dev_shm_entries();
    drop(FrameRing::new(4, 1 << 16).unwrap());
    let fds = open_fds();
    let maps = shared_mappings();
    for i in 0..50u64 {
        let ring = FrameRing::new(4, 1 << 16).unwrap();
        let mut p = start(&ring);
        if i % 5 == 0 {
            // SIGKILL the consumer mid-stream.
            p.send(message!("consume", n = 1_000)).unwrap();
            let mut producer = ring.producer().unwrap();
            produce(&mut producer, 0, 10);
            // Once frame 0 is taken the consumer has claimed its role.
            assert!(wait_until(WAIT, || ring.pending() == 0));
            // SAFETY: plain integers; `p` holds the unreaped child.
            unsafe { libc::kill(p.pid().unwrap(), libc::SIGKILL) };
            let err = loop {
                match producer.acquire_timeout(WAIT) {
                    Ok(slot) => slot.commit(8).unwrap(),
                    Err(e) => break e,
                }
            };
            assert!(err.is_disconnected(), "{err}");
        } else {
            p.send(message!("consume", n = 1)).unwrap();
            let mut producer = ring.producer().unwrap();
            produce(&mut producer, 0, 10);
            assert_eq!(recv(&mut p).command(), "consumed");
        }
        drop(p);
    }
    assert_eq!(open_fds(), fds);
    let grown = shared_mappings().saturating_sub(maps);
    assert!(grown < 8, "mappings grew by {grown}");
    assert_eq!(dev_shm_entries(), shm, "files left in /dev/shm");
}

fn a_dropped_write_slot_publishes_nothing() {
    let ring = FrameRing::new(2, 64).unwrap();
    let mut producer = ring.producer().unwrap();
    let mut consumer = ring.consumer().unwrap();
    let mut slot = producer.acquire().unwrap();
    let first = slot.slot();
    slot[..4].copy_from_slice(b"lost");
    drop(slot);
    assert_eq!(ring.pending(), 0);
    assert_eq!(consumer.try_recv().unwrap_err().kind(), &ErrorKind::Empty);
    // The same slot is lent again, and what is committed there arrives.
    let mut slot = producer.acquire().unwrap();
    assert_eq!(slot.slot(), first);
    slot[..4].copy_from_slice(b"kept");
    slot.commit(4).unwrap();
    assert_eq!(&consumer.try_recv().unwrap()[..], b"kept");
}

fn ring_sizes_and_typed_views_are_checked_with_their_kind() {
    for (slots, size) in [(0, 64), (1, 0), (u32::MAX, usize::MAX / 2)] {
        let err = FrameRing::new(slots, size).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidArgument, "{slots} x {size}");
    }
    // Slots start on 64-byte boundaries, whatever their size.
    let ring = FrameRing::new(3, 100).unwrap();
    let mut producer = ring.producer().unwrap();
    let mut consumer = ring.consumer().unwrap();
    for _ in 0..3 {
        let mut slot = producer.acquire().unwrap();
        assert_eq!(slot.as_ptr() as usize % 64, 0, "slot {}", slot.slot());
        // 100 bytes are not a whole number of u64s.
        let err = slot.cast_mut::<u64>().unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidArgument);
        assert_eq!(slot.cast_mut::<u32>().unwrap().len(), 25);
        slot.commit(6).unwrap();
        let frame = consumer.recv_timeout(WAIT).unwrap();
        assert_eq!(
            frame.cast::<u32>().unwrap_err().kind(),
            &ErrorKind::InvalidArgument
        );
    }
}
