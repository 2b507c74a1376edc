//! The serde forms of the shared objects: how an [`Event`], an
//! [`EventGroup`], a [`SyncIndex`], a [`FrameRing`], a [`SharedBuffer`] or
//! a [`SharedArray`] held by a backend crosses to a backend started by
//! `exec` or a fork server, which gets the backend as serde data rather
//! than as a copy of the frontend's memory.
//!
//! # Design
//!
//! Every one of them is memory in a memfd (`sys/memfd.rs`) and, for a
//! pollable event, eventfds. The memfd goes beside the bytes
//! (`data/fds.rs`: [`fds::carry`] writes its index, [`fds::claim`] takes it
//! back), and the receiver maps it after the same checks as any received
//! memfd — sealed against shrinking, at least as large as the shape the
//! bytes state, a ring's header matching that shape — so bytes and fds
//! that do not match are a decode error, never a `SIGBUS`. The shape used
//! afterwards is the decoded one, as with a fork it is the copy in the
//! process's own memory, never re-read from the shared pages.
//!
//! Each mapping (an `Arc` in this process) is written whole once per encode
//! and then as a reference ([`fds::share`]), so clones that share it here
//! share one mapping there: an event and its group still belong together
//! ([`EventGroup::release`] and [`EventGroup::index_of`] compare stores),
//! as after a fork. An event group's free list is written too, as it is
//! now (a fork copies it; the module docs of `event_group.rs` say what the
//! backend's copy means), and shared the same way, so a [`SyncIndex`] and
//! the group it came from release into one list.
//!
//! What does not cross: the roles of a ring ([`RingProducer`],
//! [`RingConsumer`]) and the slots they lend. A role is a claim by a
//! process (its pid is in the ring's header); a copy of it in another
//! process would be a role that nobody holds, so the backend gets the ring
//! and claims its role itself. Under the model checker (`--cfg loom`) the
//! memory is on the heap with no fd, and encoding one fails.
//!
//! Outside a start (no [`fds::collect`] around the encode), writing any of
//! these fails with [`fds::OUTSIDE`]: a number standing for an fd means
//! nothing to another program reading, say, JSON.
//!
//! Rejected: sending the ring's or store's shape inside the shared pages
//! only (the header) — the receiver would size its mapping from memory the
//! sender can still change; an fd per event of a group — a group of a
//! thousand events would be a thousand fds, where it is one memfd.
//!
//! [`RingProducer`]: crate::RingProducer
//! [`RingConsumer`]: crate::RingConsumer

use std::any::Any;
use std::collections::VecDeque;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::data::fds::{self, Sharing};
use crate::shm::buffer::{SharedArray, SharedBuffer};
use crate::shm::event::{Event, EventKind, EventStore};
use crate::shm::event_group::{EventGroup, EventIndex, FreeList};
use crate::shm::relayed::SetRelay;
use crate::shm::ring::FrameRing;
use crate::shm::sync_index::SyncIndex;
use crate::sys::memfd::MappedFile;
use crate::sys::ring::RingMemory;
use crate::sys::shm::SharedWords;

#[cfg(all(test, not(loom)))]
mod tests;

/// A shared object in the encoding: whole with its id the first time,
/// then by id.
#[derive(Serialize, Deserialize)]
enum Wire<P> {
    Whole(u32, P),
    Again(u32),
}

/// Writes `object` whole (as `whole` describes it) the first time in this
/// encode, and as a reference after.
fn write_shared<T, P, S>(
    object: &Arc<T>,
    whole: impl FnOnce(&T) -> Result<P, String>,
    s: S,
) -> Result<S::Ok, S::Error>
where
    T: Any + Send + Sync,
    P: Serialize,
    S: Serializer,
{
    match fds::share(object).map_err(S::Error::custom)? {
        Sharing::First(id) => {
            Wire::Whole(id, whole(object).map_err(S::Error::custom)?).serialize(s)
        }
        Sharing::Again(id) => Wire::<P>::Again(id).serialize(s),
    }
}

/// Reads what [`write_shared`] wrote: builds the object from its whole
/// form, or hands out the one built earlier in this decode.
fn read_shared<'de, T, P, D>(
    d: D,
    build: impl FnOnce(P) -> Result<Arc<T>, String>,
) -> Result<Arc<T>, D::Error>
where
    T: Any + Send + Sync,
    P: DeserializeOwned,
    D: Deserializer<'de>,
{
    match Wire::<P>::deserialize(d)? {
        Wire::Whole(id, whole) => {
            let object = build(whole).map_err(refused)?;
            fds::keep(id, &object).map_err(refused)?;
            Ok(object)
        }
        Wire::Again(id) => fds::shared(id).map_err(refused),
    }
}

/// A decode error saying why, recorded for formats that drop the text
/// ([`fds::refuse`]).
fn refused<E: serde::de::Error>(why: impl ToString) -> E {
    E::custom(fds::refuse(why.to_string()))
}

/// An event store whole: its words' memfd, how many, its kind, and a
/// pollable store's eventfds (indices into the fds beside the bytes).
#[derive(Serialize, Deserialize)]
struct StoreWire {
    words: u32,
    len: u64,
    kind: EventKind,
    eventfds: Vec<u32>,
}

/// An `Arc<EventStore>` in a serde form.
struct Store<'a>(&'a Arc<EventStore>);

impl Serialize for Store<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        write_shared(
            self.0,
            |store| {
                Ok(StoreWire {
                    words: memory::carry_words(&store.words)?,
                    len: store.len() as u64,
                    kind: store.kind,
                    eventfds: store.fds.iter().map(fds::carry).collect::<Result<_, _>>()?,
                })
            },
            s,
        )
    }
}

fn read_store<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<EventStore>, D::Error> {
    read_shared(d, |wire: StoreWire| {
        let len = usize::try_from(wire.len).map_err(|_| "an event store too large")?;
        let expected = match wire.kind {
            EventKind::Futex => 0,
            EventKind::Pollable => len,
        };
        if wire.eventfds.len() != expected {
            return Err(format!(
                "a {:?} store of {len} events with {} eventfds",
                wire.kind,
                wire.eventfds.len()
            ));
        }
        let words = memory::open_words(fds::claim(wire.words)?, len)?;
        let fds = wire
            .eventfds
            .into_iter()
            .map(fds::claim)
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(EventStore {
            words,
            fds,
            kind: wire.kind,
        }))
    })
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (Store(&self.store), self.slot).serialize(s)
    }
}

/// An `Arc<EventStore>` read back.
struct StoreIn(Arc<EventStore>);

impl<'de> Deserialize<'de> for StoreIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StoreIn, D::Error> {
        read_store(d).map(StoreIn)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Event, D::Error> {
        let (StoreIn(store), slot) = <(StoreIn, u32)>::deserialize(d)?;
        if slot as usize >= store.len() {
            return Err(refused(format!(
                "event {slot} of a store of {}",
                store.len()
            )));
        }
        Ok(Event::in_store(store, slot))
    }
}

/// A free list whole, as it is now.
#[derive(Serialize, Deserialize)]
struct ListWire {
    free: Vec<u32>,
    reserved: Vec<bool>,
}

impl Serialize for EventGroup {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct List<'a>(&'a EventGroup);
        impl Serialize for List<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                write_shared(
                    &self.0.list,
                    |_| {
                        let list = self.0.list();
                        Ok(ListWire {
                            free: list.free.iter().copied().collect(),
                            reserved: list.reserved.clone(),
                        })
                    },
                    s,
                )
            }
        }
        // A relayed group's setters' end goes along; its transport's end
        // stays with the program that made it.
        let relay = match &self.relay {
            Some(relay) => Some(fds::carry(&relay.send).map_err(S::Error::custom)?),
            None => None,
        };
        (Store(&self.store), List(self), relay).serialize(s)
    }
}

/// An event group's free list read back.
struct ListIn(Arc<Mutex<FreeList>>);

impl<'de> Deserialize<'de> for ListIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ListIn, D::Error> {
        read_shared(d, |wire: ListWire| {
            Ok(Arc::new(Mutex::new(free_list(wire)?)))
        })
        .map(ListIn)
    }
}

impl<'de> Deserialize<'de> for EventGroup {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EventGroup, D::Error> {
        let (StoreIn(store), ListIn(list), relay) =
            <(StoreIn, ListIn, Option<u32>)>::deserialize(d)?;
        let relay = match relay {
            Some(fd) => Some(Arc::new(SetRelay {
                send: UnixDatagram::from(fds::claim(fd).map_err(refused)?),
                recv: None,
            })),
            None => None,
        };
        let group = EventGroup { store, list, relay };
        let listed = group.list().reserved.len();
        if listed != group.len() {
            return Err(refused(format!(
                "a free list of {listed} events for a group of {}",
                group.len()
            )));
        }
        Ok(group)
    }
}

/// A free list from its whole form, if it is one: every event either free
/// (once) or reserved.
fn free_list(wire: ListWire) -> Result<FreeList, String> {
    let mut listed = wire.reserved.clone();
    for &slot in &wire.free {
        match listed.get_mut(slot as usize) {
            Some(seen) if !*seen => *seen = true,
            _ => {
                return Err(format!(
                    "event {slot} is free twice, free and reserved, or out of range"
                ));
            }
        }
    }
    if listed.contains(&false) {
        return Err("an event neither free nor reserved".to_string());
    }
    Ok(FreeList {
        free: VecDeque::from(wire.free),
        reserved: wire.reserved,
    })
}

/// The same integer as its [`Value`](crate::Value).
impl Serialize for EventIndex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.to_u64())
    }
}

impl<'de> Deserialize<'de> for EventIndex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EventIndex, D::Error> {
        u64::deserialize(d).map(EventIndex::from_u64)
    }
}

impl Serialize for SyncIndex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.group, self.index, &self.event).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SyncIndex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SyncIndex, D::Error> {
        let (group, index, event) = <(EventGroup, EventIndex, Event)>::deserialize(d)?;
        if !event.same_store(&group.store) || event.slot() != index.slot() {
            return Err(refused(
                "a sync index whose event is not the one its index names",
            ));
        }
        Ok(SyncIndex {
            group,
            index,
            event,
        })
    }
}

/// A ring whole: its memfd and its shape.
#[derive(Serialize, Deserialize)]
struct RingWire {
    fd: u32,
    slots: u32,
    slot_size: u64,
}

impl Serialize for FrameRing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Mem<'a>(&'a Arc<RingMemory>);
        impl Serialize for Mem<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                write_shared(
                    self.0,
                    |mem| {
                        Ok(RingWire {
                            fd: memory::carry_ring(mem)?,
                            slots: mem.slots(),
                            slot_size: mem.slot_size() as u64,
                        })
                    },
                    s,
                )
            }
        }
        (Mem(&self.mem), self.spin).serialize(s)
    }
}

impl<'de> Deserialize<'de> for FrameRing {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FrameRing, D::Error> {
        struct Mem(Arc<RingMemory>);
        impl<'de> Deserialize<'de> for Mem {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mem, D::Error> {
                read_shared(d, |wire: RingWire| {
                    let slot_size =
                        usize::try_from(wire.slot_size).map_err(|_| "a slot too large")?;
                    let mem = memory::open_ring(fds::claim(wire.fd)?, wire.slots, slot_size)?;
                    Ok(Arc::new(mem))
                })
                .map(Mem)
            }
        }
        let (Mem(mem), spin) = <(Mem, Duration)>::deserialize(d)?;
        Ok(FrameRing { mem, spin })
    }
}

impl Serialize for SharedBuffer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        write_shared(&self.file, |file| fds::carry(file), s)
    }
}

impl<'de> Deserialize<'de> for SharedBuffer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SharedBuffer, D::Error> {
        let file = read_shared(d, |fd: u32| {
            MappedFile::open(fds::claim(fd)?)
                .map(Arc::new)
                .map_err(|e| format!("cannot map a shared buffer: {e}"))
        })?;
        Ok(SharedBuffer { file })
    }
}

impl<T: bytemuck::Pod> Serialize for SharedArray<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.buffer(), self.shape()).serialize(s)
    }
}

impl<'de, T: bytemuck::Pod> Deserialize<'de> for SharedArray<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SharedArray<T>, D::Error> {
        let (buffer, shape) = <(SharedBuffer, Vec<usize>)>::deserialize(d)?;
        SharedArray::from_buffer(buffer, &shape).map_err(refused)
    }
}

/// The fds of event words and rings, and mapping received ones. Under the
/// model checker their memory is on the heap, with no fd to send.
mod memory {
    use super::{RingMemory, SharedWords};

    #[cfg(not(loom))]
    use crate::data::fds;
    #[cfg(not(loom))]
    use std::os::fd::OwnedFd;

    #[cfg(not(loom))]
    pub(super) fn carry_words(words: &SharedWords) -> Result<u32, String> {
        fds::carry(words.fd())
    }

    #[cfg(not(loom))]
    pub(super) fn open_words(fd: OwnedFd, len: usize) -> Result<SharedWords, String> {
        SharedWords::open(fd, len).map_err(|e| format!("cannot map an event store: {e}"))
    }

    #[cfg(not(loom))]
    pub(super) fn carry_ring(mem: &RingMemory) -> Result<u32, String> {
        fds::carry(mem.fd())
    }

    #[cfg(not(loom))]
    pub(super) fn open_ring(
        fd: OwnedFd,
        slots: u32,
        slot_size: usize,
    ) -> Result<RingMemory, String> {
        RingMemory::open(fd, slots, slot_size).map_err(|e| format!("cannot map a frame ring: {e}"))
    }

    #[cfg(loom)]
    const HEAP: &str = "shared memory on the heap (the model checker) does not cross";

    #[cfg(loom)]
    pub(super) fn carry_words(_: &SharedWords) -> Result<u32, String> {
        Err(HEAP.to_string())
    }

    #[cfg(loom)]
    pub(super) fn open_words(_: std::os::fd::OwnedFd, _: usize) -> Result<SharedWords, String> {
        Err(HEAP.to_string())
    }

    #[cfg(loom)]
    pub(super) fn carry_ring(_: &RingMemory) -> Result<u32, String> {
        Err(HEAP.to_string())
    }

    #[cfg(loom)]
    pub(super) fn open_ring(
        _: std::os::fd::OwnedFd,
        _: u32,
        _: usize,
    ) -> Result<RingMemory, String> {
        Err(HEAP.to_string())
    }
}
