//! [`SyncIndex`]: reserve an event, send its index, wait, release — with a
//! bound, and without leaking the event on any way out.
//!
//! valkka-multiprocess's `SyncIndex` is a context manager that waits in `__exit__`,
//! forever, even when the block raised or returned before sending the
//! request: a deadlock. Here waiting is an explicit call, optionally
//! bounded, and `Drop` only releases: an early return, a `?` or a panic
//! inside the block releases the event without waiting.

use std::fmt;
use std::time::Duration;

use crate::deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::shm::event::Event;
use crate::shm::event_group::{EventGroup, EventIndex};

/// A reserved event for one request/acknowledge exchange.
///
/// It crosses to a backend started by any start method (as part of its
/// serde value), with its group; outside a start, serializing it is an
/// error. As a forked copy does, the backend's copy releases the event
/// when it is dropped — into the backend's copy of the free list, but the
/// event itself is shared, so that release renews it (clears it, and sets
/// by its index are ignored from then on): send the index, not the guard.
///
/// ```rust,standalone_crate
/// use std::time::Duration;
/// use forkbridge::{
///     Backend, BackendContext, EventGroup, EventIndex, HandlerResult, Handlers, Message,
///     MessageProcess, SyncIndex,
/// };
///
/// struct Attacher { events: EventGroup }
/// impl Attacher {
///     fn attach(&mut self, _: &mut BackendContext, msg: Message) -> HandlerResult {
///         // ... attach to a shared buffer, then acknowledge:
///         self.events.set(msg.param::<EventIndex>("sync")?)?;
///         Ok(())
///     }
/// }
/// impl Backend for Attacher {
///     fn register(h: &mut Handlers<Self>) {
///         h.on("attach", Self::attach);
///     }
/// }
///
/// let events = EventGroup::new(4)?;
/// let mut p = MessageProcess::new("attacher", Attacher { events: events.clone() })?;
/// p.start()?;
/// let sync = SyncIndex::new(&events)?;
/// p.send(Message::new("attach").with("sync", sync.index()))?;
/// sync.wait_timeout(Duration::from_secs(5))?;   // released here, set or not
/// assert_eq!(events.free(), 4);
/// p.stop()?;
/// # Ok::<(), forkbridge::Error>(())
/// ```
pub struct SyncIndex {
    pub(super) group: EventGroup,
    pub(super) index: EventIndex,
    pub(super) event: Event,
}

// Here rather than in `event_group.rs`: the group does not need to know
// the guard, the guard needs the group.
impl EventGroup {
    /// Reserves an event for one request; see [`SyncIndex`].
    ///
    /// # Errors
    ///
    /// As [`reserve`](EventGroup::reserve).
    pub fn sync_index(&self) -> Result<SyncIndex> {
        SyncIndex::new(self)
    }
}

impl SyncIndex {
    /// Reserves an event of `group`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoFreeEvent`] when the group is exhausted.
    pub fn new(group: &EventGroup) -> Result<SyncIndex> {
        let (index, event) = group.reserve()?;
        Ok(SyncIndex {
            group: group.clone(),
            index,
            event,
        })
    }

    /// The index to put in the message.
    pub fn index(&self) -> EventIndex {
        self.index
    }

    /// The reserved event (for a pollable group: its fd, for `select`).
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// Waits until the event is set, then releases it. No bound: prefer
    /// [`wait_timeout`](SyncIndex::wait_timeout) when the setter can die.
    pub fn wait(self) {
        self.event.wait();
    }

    /// Waits until the event is set or `timeout` passes, then releases it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if the event was not set in time. A set that
    /// arrives later is ignored: the index's generation is then stale.
    pub fn wait_timeout(self, timeout: Duration) -> Result<()> {
        if self.event.wait_deadline(deadline::after(timeout)) {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::Timeout))
        }
    }
}

impl Drop for SyncIndex {
    fn drop(&mut self) {
        // Cannot fail: the guard owns the reservation.
        let _ = self.group.release(&self.event);
    }
}

impl fmt::Debug for SyncIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncIndex")
            .field("index", &self.index)
            .finish()
    }
}
