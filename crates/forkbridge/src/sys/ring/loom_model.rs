//! Model checks (`checks/loom`): the slot state machine alone, a producer
//! and a consumer thread on a two-slot ring, every interleaving loom finds
//! (loom threads stand in for the processes).

use super::*;

/// A writer thread putting frames 0..3 (each `[n, !n]`) into the two
/// slots in turn, waiting for each slot to be free.
fn write_three(ring: &Arc<RingMemory>) -> loom::thread::JoinHandle<()> {
    let ring = ring.clone();
    loom::thread::spawn(move || {
        for frame in 0..3u8 {
            let slot = u32::from(frame % 2);
            let mut w = loop {
                match ring.try_write(slot, 1) {
                    Some(w) => break w,
                    None => loom::thread::yield_now(),
                }
            };
            w[..2].copy_from_slice(&[frame, frame ^ 0xff]);
            w.commit(2);
        }
    })
}

/// The next frame in `slot`, waiting for it to be committed.
fn read(ring: &Arc<RingMemory>, slot: u32) -> SlotRead {
    loop {
        match ring.try_read(slot, 2) {
            Some(r) => break r.unwrap(),
            None => loom::thread::yield_now(),
        }
    }
}

#[test]
fn slot_borrows_never_overlap_and_frames_arrive_whole() {
    loom::model(|| {
        let ring = Arc::new(RingMemory::new(2, 4).unwrap());
        let producer = write_three(&ring);
        for frame in 0..3u8 {
            let r = read(&ring, u32::from(frame % 2));
            assert_eq!(&r[..], &[frame, frame ^ 0xff]);
            r.release();
        }
        producer.join().unwrap();
    });
}

/// The lane's pattern (`HeldFrame`): the reader keeps frame 0 while it
/// reads frame 1 and lets 1 go first; the writer, reusing slots in
/// order, must not touch slot 0 before it is let go, whatever the
/// interleaving.
#[test]
fn a_held_frame_is_not_overwritten_while_later_ones_pass() {
    loom::model(|| {
        let ring = Arc::new(RingMemory::new(2, 4).unwrap());
        let producer = write_three(&ring);
        let held = read(&ring, 0);
        let next = read(&ring, 1);
        assert_eq!(&next[..], &[1, 0xfe]);
        next.release();
        assert_eq!(&held[..], &[0, 0xff], "the held frame changed");
        held.release();
        assert_eq!(&read(&ring, 0)[..], &[2, 0xfd]);
        producer.join().unwrap();
    });
}
