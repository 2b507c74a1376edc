//! [`EventGroup`]: events made before the fork, handed out by index.
//!
//! # Design
//!
//! Events must exist before the fork to be shared, but which request needs
//! one is only known later. valkka-multiprocess's answer, kept here: make `n` events up
//! front, reserve one per request, send its *index* inside the message (an
//! [`EventIndex`] is a [`Value`]), let the backend set it by index, release
//! it after. The free list is ordinary memory of the process that reserves
//! (the frontend), as in valkka-multiprocess; the events themselves are shared.
//!
//! A backend's copy of the group gets a copy of the free list as it was
//! when the backend started — what a fork gives, and what the group's
//! serde form carries for the other start methods — and from then on the
//! two lists are separate: reservations made on one side are not seen on
//! the other. So one side reserves (the frontend), and the other only sets
//! by index; a group both sides reserve from would hand the same event out
//! twice.
//!
//! What valkka-multiprocess gets wrong and this does not: exhaustion is a typed error
//! (valkka-multiprocess's `NotEnoughEvents` escapes `except Exception`), a double
//! release or a release of an index never reserved is a typed error (the
//! original silently duplicates or corrupts its free list), and every index
//! carries the event's *generation*, renewed on every reserve and release:
//! a backend that sets an event late, after the frontend gave up waiting
//! and released it, sets nothing ([`EventGroup::set`] returns `false`), so
//! it can never wake a later request that reserved the same event. The
//! generation has 44 bits and changes in the same atomic operation as the
//! event's flag: a stale index would have to wait out 2^43 reservations of
//! its event to match again.
//!
//! A backend on another host than its frontend cannot share the group's
//! memory: it holds a [relayed](EventGroup::relayed) group instead, whose
//! `set` carries the index back to the frontend's host (`relayed.rs`),
//! where the frontend's group sets it, generation check included.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::data::value::{FromValue, Value};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::event::{Event, EventKind, EventStore, GEN_BITS};
use crate::shm::relayed::SetRelay;

/// Identifies a reserved event of an [`EventGroup`]; put it in a message.
///
/// It converts to and from a [`Value`] (an integer holding the slot in its
/// low 20 bits and the generation above them), so
/// `msg.with("event", index)` and `msg.param::<EventIndex>("event")` carry
/// it across. Its serde form is the same integer: plain data, it can be
/// serialized anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventIndex {
    slot: u32,
    generation: u64,
}

/// The bits of an index's slot: a group holds at most 2^20 events.
const SLOT_BITS: u32 = 64 - GEN_BITS;

impl EventIndex {
    /// The event's position in its group, `0..len`.
    pub fn slot(self) -> u32 {
        self.slot
    }

    pub(super) fn to_u64(self) -> u64 {
        (self.generation << SLOT_BITS) | u64::from(self.slot)
    }

    pub(crate) fn from_u64(raw: u64) -> EventIndex {
        EventIndex {
            slot: (raw & ((1 << SLOT_BITS) - 1)) as u32,
            generation: raw >> SLOT_BITS,
        }
    }
}

impl fmt::Display for EventIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.slot, self.generation)
    }
}

impl From<EventIndex> for Value {
    fn from(index: EventIndex) -> Value {
        Value::from(index.to_u64())
    }
}

impl FromValue for EventIndex {
    const EXPECTED: &'static str = "event index";
    fn from_value(value: &Value) -> Option<Self> {
        value.as_u64().map(EventIndex::from_u64)
    }
}

#[derive(Debug)]
pub(super) struct FreeList {
    pub(super) free: VecDeque<u32>,
    pub(super) reserved: Vec<bool>,
}

/// A fixed set of process-shared events (valkka-multiprocess's `EventGroup`).
///
/// It crosses to a backend started by any start method (as part of its
/// serde value), free list included (see the module docs for what the
/// backend's copy of it means); outside a start, serializing it is an
/// error.
///
/// ```rust,standalone_crate
/// use std::time::Duration;
/// use forkbridge::{
///     Backend, BackendContext, EventGroup, EventIndex, HandlerResult, Handlers, Message,
///     MessageProcess,
/// };
///
/// struct Worker { events: EventGroup }
/// impl Worker {
///     fn ping(&mut self, _: &mut BackendContext, msg: Message) -> HandlerResult {
///         self.events.set(msg.param::<EventIndex>("event")?)?;
///         Ok(())
///     }
/// }
/// impl Backend for Worker {
///     fn register(h: &mut Handlers<Self>) {
///         h.on("ping", Self::ping);
///     }
/// }
///
/// let events = EventGroup::new(10)?;              // before the fork
/// let mut p = MessageProcess::new("worker", Worker { events: events.clone() })?;
/// p.start()?;
/// let (index, event) = events.reserve()?;
/// p.send(Message::new("ping").with("event", index))?;
/// assert!(event.wait_timeout(Duration::from_secs(5)));
/// events.release(&event)?;
/// p.stop()?;
/// # Ok::<(), forkbridge::Error>(())
/// ```
#[derive(Clone)]
pub struct EventGroup {
    pub(super) store: Arc<EventStore>,
    pub(super) list: Arc<Mutex<FreeList>>,
    /// A relayed group's way to its frontend's host.
    pub(crate) relay: Option<Arc<SetRelay>>,
}

impl EventGroup {
    /// `n` clear [`EventKind::Futex`] events.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the shared mapping cannot be made.
    pub fn new(n: usize) -> Result<EventGroup> {
        EventGroup::with_kind(n, EventKind::Futex)
    }

    /// `n` clear events of the given kind (valkka-multiprocess's `event_class`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the mapping or an eventfd cannot be made;
    /// [`ErrorKind::InvalidArgument`] for more than 2^20 (1 048 576) events,
    /// which an index cannot name.
    pub fn with_kind(n: usize, kind: EventKind) -> Result<EventGroup> {
        let slots = u32::try_from(n)
            .ok()
            .filter(|&s| s <= 1 << SLOT_BITS)
            .ok_or_else(|| {
                Error::new(ErrorKind::InvalidArgument).with_source(format!(
                    "{n} events are too many (at most {})",
                    1u32 << SLOT_BITS
                ))
            })?;
        Ok(EventGroup {
            store: EventStore::new(n, kind)?,
            list: Arc::new(Mutex::new(FreeList {
                free: (0..slots).collect(),
                reserved: vec![false; n],
            })),
            relay: None,
        })
    }

    /// `n` events for a backend served on another host than its frontend
    /// (the `forkbridge-zenoh` crate): its [`set`](EventGroup::set) does not
    /// set an event here but carries the index to the frontend's host,
    /// where the group the index came from sets it — with the generation
    /// check, so a late set is ignored there as it is locally. Bind it to
    /// the served process with
    /// [`MessageProcessBuilder::events`](crate::MessageProcessBuilder::events),
    /// and the frontend's group to the attached handle the same way.
    ///
    /// Its events are reserved on the frontend's host:
    /// [`reserve`](EventGroup::reserve) here is refused. A set waits while
    /// the transport is behind, and is never dropped; carried sets that no
    /// frontend receives wait with the backend's frames. It crosses to a
    /// backend started by any start method, as a group does.
    ///
    /// # Errors
    ///
    /// As [`with_kind`](EventGroup::with_kind); [`ErrorKind::Io`] if its
    /// socket pair cannot be made.
    pub fn relayed(n: usize) -> Result<EventGroup> {
        let mut group = EventGroup::new(n)?;
        group.relay = Some(Arc::new(SetRelay::new()?));
        Ok(group)
    }

    /// Whether this is a [relayed](EventGroup::relayed) group.
    pub fn is_relayed(&self) -> bool {
        self.relay.is_some()
    }

    /// The number of events (valkka-multiprocess's `len(eg)`).
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether the group has no events at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn list(&self) -> MutexGuard<'_, FreeList> {
        // Every update keeps the list consistent before it can panic.
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves a free event, clears it, and returns it with its index.
    /// Indices rotate (a released index goes to the back), as in valkka-multiprocess.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoFreeEvent`] when every event is reserved;
    /// [`ErrorKind::InvalidArgument`] for a [relayed](EventGroup::relayed)
    /// group, whose events are reserved on its frontend's host.
    pub fn reserve(&self) -> Result<(EventIndex, Event)> {
        if self.relay.is_some() {
            return Err(Error::new(ErrorKind::InvalidArgument).with_source(
                "a relayed group's sets go to its frontend's host: reserve from the group there",
            ));
        }
        let slot = {
            let mut list = self.list();
            let slot = list.free.pop_front().ok_or_else(|| {
                Error::new(ErrorKind::NoFreeEvent {
                    capacity: self.len(),
                })
            })?;
            list.reserved[slot as usize] = true;
            slot
        };
        let event = Event::in_store(self.store.clone(), slot);
        let generation = event.renew();
        Ok((EventIndex { slot, generation }, event))
    }

    /// Returns a reserved event to the group.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotReserved`] if the event is not reserved (released
    /// twice) or belongs to another group.
    pub fn release(&self, event: &Event) -> Result<()> {
        if !event.same_store(&self.store) {
            return Err(Error::new(ErrorKind::NotReserved).with_source("event of another group"));
        }
        self.release_slot(event.slot())
    }

    /// Returns a reserved event to the group by its index (valkka-multiprocess's
    /// `release_ind`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotReserved`] if the index is out of range, not
    /// reserved, or of an older reservation of the same event.
    pub fn release_index(&self, index: EventIndex) -> Result<()> {
        let event = self.get(index.slot).map_err(|_| {
            Error::new(ErrorKind::NotReserved).with_source(format!(
                "index {index} is out of range for a group of {}",
                self.len()
            ))
        })?;
        if event.generation() != index.generation {
            return Err(Error::new(ErrorKind::NotReserved)
                .with_source(format!("index {index} is of an earlier reservation")));
        }
        self.release_slot(index.slot)
    }

    fn release_slot(&self, slot: u32) -> Result<()> {
        let mut list = self.list();
        match list.reserved.get_mut(slot as usize) {
            Some(reserved) if *reserved => {
                *reserved = false;
                list.free.push_back(slot);
                // A set that arrives after the release sets nothing.
                Event::in_store(self.store.clone(), slot).renew();
                Ok(())
            }
            _ => Err(Error::new(ErrorKind::NotReserved)
                .with_source(format!("event {slot} is not reserved"))),
        }
    }

    /// Sets the event of `index` (what the backend does). Returns `false`,
    /// setting nothing, if the event has been released (or released and
    /// reserved again) since the index was handed out: a late set after the
    /// frontend gave up.
    ///
    /// A [relayed](EventGroup::relayed) group carries the index to its
    /// frontend's host and returns `true`: whether it sets anything is
    /// decided there, by the same rule.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the slot is out of range;
    /// [`ErrorKind::Io`] if a relayed group's transport is gone.
    pub fn set(&self, index: EventIndex) -> Result<bool> {
        let event = self.get(index.slot)?;
        if let Some(relay) = &self.relay {
            relay.carry(index.to_u64())?;
            return Ok(true);
        }
        Ok(event.set_if_generation(Some(index.generation)))
    }

    /// The event in `slot` (valkka-multiprocess's `fromIndex`), reserved or not.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the slot is out of range.
    pub fn get(&self, slot: u32) -> Result<Event> {
        if (slot as usize) < self.len() {
            Ok(Event::in_store(self.store.clone(), slot))
        } else {
            Err(Error::new(ErrorKind::InvalidArgument)
                .with_source(format!("event {slot} of a group of {}", self.len())))
        }
    }

    /// The current index of an event of this group (valkka-multiprocess's `asIndex`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the event is of another group.
    pub fn index_of(&self, event: &Event) -> Result<EventIndex> {
        if !event.same_store(&self.store) {
            return Err(
                Error::new(ErrorKind::InvalidArgument).with_source("event of another group")
            );
        }
        Ok(EventIndex {
            slot: event.slot(),
            generation: event.generation(),
        })
    }

    /// How many events are free now.
    pub fn free(&self) -> usize {
        self.list().free.len()
    }
}

/// Like valkka-multiprocess: `<EventGroup: f0 R1 f2 >` (f = free, R = reserved).
impl fmt::Display for EventGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<EventGroup: ")?;
        for (slot, reserved) in self.list().reserved.iter().enumerate() {
            write!(f, "{}{slot} ", if *reserved { 'R' } else { 'f' })?;
        }
        f.write_str(">")
    }
}

impl fmt::Debug for EventGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventGroup")
            .field("len", &self.len())
            .field("free", &self.free())
            .field("relayed", &self.is_relayed())
            .finish()
    }
}
