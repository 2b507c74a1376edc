//! Round trips through the serde forms in one process, as a start method
//! makes them (`fds::collect` + postcard, `fds::provide` + postcard): the
//! decoded object is a second mapping of the same memory, so what one copy
//! does the other sees. And inputs that do not match their fds are refused
//! with an error, never a `SIGBUS`.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::*;
use crate::sys::poll::{POLLIN, PollFd, poll};

const WAIT: Duration = Duration::from_secs(5);

/// Encodes `value` with its fds, as a start method does.
fn encode<T: Serialize>(value: &T) -> (Vec<u8>, Vec<OwnedFd>) {
    let (bytes, fds) = fds::collect(|| postcard::to_allocvec(value));
    (bytes.unwrap(), fds)
}

/// Decodes what [`encode`] gave, as the worker does; an error says why
/// (postcard keeps only that there was one: `fds::refusal` has the text).
fn decode<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, String> {
    fds::provide(fds, || {
        postcard::from_bytes(bytes).map_err(|e| fds::refusal().unwrap_or_else(|| e.to_string()))
    })
}

/// The value as a worker started by `exec` would get it.
fn cross<T: Serialize + DeserializeOwned>(value: &T) -> T {
    let (bytes, fds) = encode(value);
    decode(&bytes, fds).unwrap()
}

/// Postcard bytes of `value`, written without `fds::collect` (for forged
/// inputs: plain data only).
fn forge<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).unwrap()
}

fn dup(fd: BorrowedFd<'_>) -> OwnedFd {
    fd.try_clone_to_owned().unwrap()
}

fn readable(fd: BorrowedFd<'_>) -> bool {
    let mut set = [PollFd::new(fd, POLLIN)];
    poll(&mut set, Some(Instant::now())).unwrap() == 1
}

#[test]
fn an_event_crosses_as_the_same_word() {
    let event = Event::new().unwrap();
    let copy = cross(&event);
    assert_ne!(copy, event, "another mapping in this process");
    copy.set();
    assert!(event.is_set());
    event.clear();
    assert!(!copy.is_set());
    let setter = std::thread::spawn({
        let copy = copy.clone();
        move || {
            std::thread::sleep(Duration::from_millis(20));
            copy.set();
        }
    });
    assert!(
        event.wait_timeout(WAIT),
        "a set through the copy wakes a waiter on the original"
    );
    setter.join().unwrap();
}

#[test]
fn a_pollable_event_crosses_with_its_eventfd() {
    let event = Event::with_kind(EventKind::Pollable).unwrap();
    let copy = cross(&event);
    assert_eq!(copy.kind(), EventKind::Pollable);
    let fd = copy.fd().unwrap();
    assert!(!readable(fd));
    event.set();
    assert!(readable(fd), "the copy's fd mirrors the original's set");
    copy.clear();
    assert!(!readable(event.fd().unwrap()));
}

#[test]
fn clones_of_one_store_decode_to_one_store() {
    let group = EventGroup::with_kind(3, EventKind::Pollable).unwrap();
    let (index, event) = group.reserve().unwrap();
    let value = (
        group.clone(),
        event.clone(),
        event.clone(),
        group.get(2).unwrap(),
    );
    let (bytes, fds) = encode(&value);
    assert_eq!(fds.len(), 1 + 3, "one memfd and three eventfds, once");
    let (group2, event2, again, other): (EventGroup, Event, Event, Event) =
        decode(&bytes, fds).unwrap();
    assert_eq!(event2, again);
    assert_ne!(event2, other);
    assert_eq!(group2.index_of(&event2).unwrap(), index);
    assert_eq!(group2.index_of(&other).unwrap().slot(), 2);
    group2.release(&event2).unwrap();
    assert!(
        group.set(index).is_ok_and(|set| !set),
        "released through the copy: the generation moved on"
    );
}

#[test]
fn an_event_group_crosses_with_its_free_list_as_it_is() {
    let group = EventGroup::new(4).unwrap();
    let (index, event) = group.reserve().unwrap();
    let copy = cross(&group);
    assert_eq!((copy.len(), copy.free()), (4, 3));
    assert!(copy.set(index).unwrap(), "set by index on the other side");
    assert!(event.is_set());
    // From now on the lists are separate (the module docs of event_group).
    let (_, _) = copy.reserve().unwrap();
    assert_eq!((copy.free(), group.free()), (2, 3));
    assert!(
        copy.release_index(index).is_ok(),
        "the copy's list knows the reservation made before"
    );
}

#[test]
fn a_sync_index_crosses_with_its_group() {
    let group = EventGroup::new(2).unwrap();
    let sync = group.sync_index().unwrap();
    let (bytes, fds) = encode(&(group.clone(), &sync));
    let (copy_group, copy): (EventGroup, SyncIndex) = decode(&bytes, fds).unwrap();
    assert_eq!(copy.index(), sync.index());
    assert_eq!(copy_group.free(), 1);
    copy.event().set();
    assert!(sync.event().is_set());
    // Dropping the copy releases into the copy of the group (and, the
    // event word being shared, starts its next generation: as a forked
    // copy's drop does).
    drop(copy);
    assert_eq!(copy_group.free(), 2, "released into the copy of its group");
    assert_eq!(group.free(), 1, "not into the original's");
    drop(sync);
    assert_eq!(group.free(), 2);
}

#[test]
fn a_relayed_group_crosses_with_its_setters_end() {
    let group = EventGroup::relayed(3).unwrap();
    let copy: EventGroup = cross(&group);
    assert!(copy.is_relayed());
    assert!(
        copy.relay.as_ref().unwrap().recv.is_none(),
        "the reader stays here"
    );
    let index = EventIndex::from_u64(2);
    assert!(copy.set(index).unwrap());
    let mut raw = [0u8; 8];
    let recv = group.relay.as_ref().unwrap().recv.as_ref().unwrap();
    recv.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(recv.recv(&mut raw).unwrap(), 8);
    assert_eq!(EventIndex::from_u64(u64::from_le_bytes(raw)), index);
    assert_eq!(
        copy.set(EventIndex::from_u64(3)).unwrap_err().kind(),
        &crate::error::ErrorKind::InvalidArgument,
        "out of range"
    );
}

#[test]
fn an_event_index_is_plain_data() {
    let group = EventGroup::new(2).unwrap();
    group.reserve().unwrap();
    let (index, _) = group.reserve().unwrap();
    let json = serde_json::to_string(&index).unwrap();
    assert_eq!(
        json,
        crate::Value::from(index).as_u64().unwrap().to_string()
    );
    assert_eq!(serde_json::from_str::<EventIndex>(&json).unwrap(), index);
}

#[test]
fn a_shared_buffer_and_array_cross_as_the_same_pages() {
    let buffer = SharedBuffer::new(4096).unwrap();
    let array = SharedArray::<u32>::from_buffer(buffer.clone(), &[2, 3]).unwrap();
    let (bytes, fds) = encode(&(buffer.clone(), array.clone()));
    assert_eq!(fds.len(), 1, "the array's buffer is the buffer");
    let (buffer2, array2): (SharedBuffer, SharedArray<u32>) = decode(&bytes, fds).unwrap();
    assert_eq!(buffer2.len(), 4096);
    assert_eq!(array2.shape(), [2, 3]);
    buffer2.write_slice(0, &[7u32]).unwrap();
    assert_eq!(array.get(&[0, 0]).unwrap(), 7);
    array2.set(&[1, 2], 9).unwrap();
    assert_eq!(buffer.read_vec::<u32>(5 * 4, 1).unwrap(), [9]);
}

#[test]
fn a_frame_ring_crosses_and_is_produced_on_one_copy_consumed_on_the_other() {
    let ring = FrameRing::new(2, 256)
        .unwrap()
        .with_spin(Duration::from_micros(7));
    let copy = cross(&ring);
    assert_eq!((copy.slots(), copy.slot_size()), (2, 256));
    assert_eq!(copy.spin, Duration::from_micros(7));
    let mut producer = ring.producer().unwrap();
    assert_eq!(
        *copy.producer().unwrap_err().kind(),
        crate::ErrorKind::RoleTaken,
        "one ring: the role is taken"
    );
    let mut consumer = copy.consumer().unwrap();
    for i in 0..5u8 {
        let mut slot = producer.acquire_timeout(WAIT).unwrap();
        slot[..3].fill(i);
        slot.commit(3).unwrap();
        let frame = consumer.recv_timeout(WAIT).unwrap();
        assert_eq!(&frame[..], &[i; 3]);
    }
    assert_eq!(ring.pending(), 0);
}

#[test]
fn outside_a_start_serializing_is_an_error() {
    let event = serde_json::to_string(&Event::new().unwrap()).unwrap_err();
    assert!(event.to_string().contains(fds::OUTSIDE), "{event}");
    let group = serde_json::to_string(&EventGroup::new(1).unwrap()).unwrap_err();
    assert!(group.to_string().contains(fds::OUTSIDE), "{group}");
    let ring = serde_json::to_string(&FrameRing::new(1, 8).unwrap()).unwrap_err();
    assert!(ring.to_string().contains(fds::OUTSIDE), "{ring}");
    let buffer = serde_json::to_string(&SharedBuffer::new(8).unwrap()).unwrap_err();
    assert!(buffer.to_string().contains(fds::OUTSIDE), "{buffer}");
    let decoded = serde_json::from_str::<SharedBuffer>(r#"{"Whole":[0,0]}"#).unwrap_err();
    assert!(decoded.to_string().contains(fds::OUTSIDE), "{decoded}");
}

/// An event store whole, stated by hand.
fn store(words: u32, len: u64, kind: EventKind, eventfds: Vec<u32>) -> Wire<StoreWire> {
    Wire::Whole(
        0,
        StoreWire {
            words,
            len,
            kind,
            eventfds,
        },
    )
}

#[test]
fn an_event_store_larger_than_its_memfd_is_refused() {
    let small = Event::new().unwrap();
    let bytes = forge(&(store(0, 1 << 20, EventKind::Futex, vec![]), 5u32));
    let err = decode::<Event>(&bytes, vec![dup(small.store.words.fd())]).unwrap_err();
    assert!(err.contains("cannot hold"), "{err}");
}

#[test]
fn an_fd_that_cannot_be_sealed_is_refused() {
    let (pipe, _w) = std::io::pipe().unwrap();
    let bytes = forge(&(store(0, 1, EventKind::Futex, vec![]), 0u32));
    let err = decode::<Event>(&bytes, vec![pipe.into()]).unwrap_err();
    assert!(err.contains("sealed"), "{err}");
    let (pipe, _w) = std::io::pipe().unwrap();
    let err = decode::<SharedBuffer>(&forge(&Wire::Whole(0, 0u32)), vec![pipe.into()]).unwrap_err();
    assert!(err.contains("sealed"), "{err}");
}

#[test]
fn a_ring_of_another_shape_or_no_ring_is_refused() {
    let ring = FrameRing::new(1, 64).unwrap();
    let wire = |slots, slot_size| {
        forge(&(
            Wire::Whole(
                0,
                RingWire {
                    fd: 0,
                    slots,
                    slot_size,
                },
            ),
            Duration::ZERO,
        ))
    };
    let fd = || dup(ring.mem.fd());
    let err = decode::<FrameRing>(&wire(1000, 1 << 20), vec![fd()]).unwrap_err();
    assert!(err.contains("cannot hold"), "{err}");
    let err = decode::<FrameRing>(&wire(1, 32), vec![fd()]).unwrap_err();
    assert!(err.contains("not a ring"), "{err}");
    let err = decode::<FrameRing>(&wire(0, 64), vec![fd()]).unwrap_err();
    assert!(err.contains("at least one slot"), "{err}");
    // Large enough, zero-filled: no header.
    let blank = SharedBuffer::new(1 << 20).unwrap();
    let err = decode::<FrameRing>(&wire(1, 64), vec![dup(blank.fd())]).unwrap_err();
    assert!(err.contains("not a ring"), "{err}");
}

#[test]
fn inconsistent_stores_lists_and_references_are_refused() {
    let group = EventGroup::with_kind(2, EventKind::Pollable).unwrap();
    let fds = || vec![dup(group.store.words.fd())];
    // A pollable store without its eventfds.
    let bytes = forge(&(store(0, 2, EventKind::Pollable, vec![]), 0u32));
    let err = decode::<Event>(&bytes, fds()).unwrap_err();
    assert!(err.contains("eventfds"), "{err}");
    // An event past its store.
    let bytes = forge(&(store(0, 2, EventKind::Futex, vec![]), 2u32));
    let err = decode::<Event>(&bytes, fds()).unwrap_err();
    assert!(err.contains("event 2"), "{err}");
    // A free list naming an event twice, or of another length.
    for (free, reserved) in [(vec![0, 0], vec![false, false]), (vec![0], vec![false])] {
        let list = Wire::Whole(1, ListWire { free, reserved });
        let bytes = forge(&(store(0, 2, EventKind::Futex, vec![]), list));
        assert!(decode::<EventGroup>(&bytes, fds()).is_err());
    }
    // A reference to an object not written before, an fd not sent.
    let err = decode::<Event>(&forge(&(Wire::<StoreWire>::Again(3), 0u32)), vec![]).unwrap_err();
    assert!(err.contains("before it is written"), "{err}");
    let bytes = forge(&(store(4, 2, EventKind::Futex, vec![]), 0u32));
    let err = decode::<Event>(&bytes, fds()).unwrap_err();
    assert!(err.contains("missing"), "{err}");
}
