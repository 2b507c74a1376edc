//! Unit tests of the slot state machine, on real shared mappings.

use super::*;

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
