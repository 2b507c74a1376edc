//! Unit tests of the slot state machine, on real shared mappings.

use super::*;

fn dup(ring: &RingMemory) -> OwnedFd {
    ring.fd().try_clone_to_owned().unwrap()
}

#[test]
fn an_opened_ring_is_the_same_memory_and_must_match_its_shape() {
    let ring = Arc::new(RingMemory::new(2, 100).unwrap());
    let other = Arc::new(RingMemory::open(dup(&ring), 2, 100).unwrap());
    let mut w = other.try_write(1, 1).unwrap();
    w[..2].copy_from_slice(b"hi");
    w.commit(2);
    assert_eq!(&ring.try_read(1, 2).unwrap().unwrap()[..], b"hi");
    for (slots, size, kind) in [
        (3, 100, io::ErrorKind::InvalidInput),
        (2, 1 << 20, io::ErrorKind::InvalidInput),
        (1, 100, io::ErrorKind::InvalidData),
        (2, 99, io::ErrorKind::InvalidData),
        (0, 100, io::ErrorKind::InvalidInput),
    ] {
        let err = RingMemory::open(dup(&ring), slots, size).unwrap_err();
        assert_eq!(err.kind(), kind, "{slots} x {size}: {err}");
    }
}

#[test]
fn a_recorded_length_larger_than_the_slot_is_refused() {
    let ring = Arc::new(RingMemory::new(2, 100).unwrap());
    let slot = ring.try_write(0, 1).unwrap();
    drop(slot); // back to FREE
    let slot = ring.try_write(0, 1).unwrap();
    slot.commit(50);
    // Another process could write anything into the length word.
    ring.len_word(0).store(1 << 40, Ordering::Relaxed);
    assert!(matches!(ring.try_read(0, 2), Some(Err(len)) if len == 1 << 40));
    assert_eq!(ring.state(0).load(Ordering::Relaxed), FREE);
}

#[test]
fn an_abandoned_read_keeps_its_slot() {
    let ring = Arc::new(RingMemory::new(1, 64).unwrap());
    ring.try_write(0, 1).unwrap().commit(1);
    ring.try_read(0, 2).unwrap().unwrap().abandon();
    assert_eq!(ring.state(0).load(Ordering::Relaxed), READING);
    assert!(
        ring.try_write(0, 1).is_none(),
        "a copy in another process gave it back"
    );
}

#[test]
fn states_only_move_by_the_protocol() {
    let ring = Arc::new(RingMemory::new(1, 64).unwrap());
    assert!(ring.try_read(0, 2).is_none(), "nothing committed");
    let mut w = ring.try_write(0, 1).unwrap();
    assert!(ring.try_write(0, 1).is_none(), "one writer");
    w[..3].copy_from_slice(b"abc");
    w.commit(3);
    assert!(
        ring.try_write(0, 1).is_none(),
        "not overwritten while ready"
    );
    let r = ring.try_read(0, 2).unwrap().unwrap();
    assert_eq!(&r[..], b"abc");
    assert_eq!(ring.recover(0), READING);
    assert_eq!(ring.state(0).load(Ordering::Relaxed), READY);
    // The recovered guard belongs to a "dead" reader: it must not free
    // the slot again (leaks one Arc in this test only).
    std::mem::forget(r);
    let r = ring.try_read(0, 3).unwrap().unwrap();
    r.release();
    assert_eq!(ring.state(0).load(Ordering::Relaxed), FREE);
}
