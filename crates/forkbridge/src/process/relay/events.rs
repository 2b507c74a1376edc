//! Event sets across the relay: read on the backend's host
//! ([`EventSets`]), applied on the frontend's ([`Remote::deliver_sets`]).
//!
//! [`Remote::deliver_sets`]: super::Remote::deliver_sets

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::shm::event_group::{EventGroup, EventIndex};

/// The most sets one [`EventSets::next_timeout`] returns.
const MOST: usize = 1024;

/// The bytes of one set: its index, little-endian.
const SET_BYTES: usize = 8;

/// The sets a served backend made in its relayed group, in order, for a
/// transport to carry to the frontend's host: see
/// [`Relay::events`](super::Relay::events).
#[derive(Debug)]
pub struct EventSets {
    socket: UnixDatagram,
}

impl EventSets {
    pub(super) fn new(socket: UnixDatagram) -> EventSets {
        EventSets { socket }
    }

    /// Waits at most `timeout` for sets: `Ok(Some(payload))` holds one or
    /// more (up to 1024), 8 bytes each, for
    /// [`Remote::deliver_sets`](super::Remote::deliver_sets) on the other
    /// side; `Ok(None)` if none came in time.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the socket fails.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let mut payload = Vec::new();
        let mut set = [0u8; SET_BYTES];
        // A zero timeout means "no limit" to the socket.
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        match self.socket.recv(&mut set) {
            Ok(SET_BYTES) => payload.extend_from_slice(&set),
            Ok(_) => {}
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        self.socket.set_nonblocking(true)?;
        let drained = loop {
            if payload.len() >= MOST * SET_BYTES {
                break Ok(());
            }
            match self.socket.recv(&mut set) {
                Ok(SET_BYTES) => payload.extend_from_slice(&set),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.socket.set_nonblocking(false)?;
        drained?;
        Ok((!payload.is_empty()).then_some(payload))
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The indices of a payload of sets ([`EventSets::next_timeout`] made
/// it).
///
/// # Errors
///
/// [`ErrorKind::InvalidArgument`] if it is not whole 8-byte indices.
pub fn parse_sets(payload: &[u8]) -> Result<Vec<EventIndex>> {
    if !payload.len().is_multiple_of(SET_BYTES) {
        return Err(Error::new(ErrorKind::InvalidArgument).with_source(format!(
            "{} bytes of event sets: not a multiple of {SET_BYTES}",
            payload.len()
        )));
    }
    let index = |raw: &[u8]| {
        let mut bytes = [0u8; SET_BYTES];
        bytes.copy_from_slice(raw);
        EventIndex::from_u64(u64::from_le_bytes(bytes))
    };
    Ok(payload.chunks_exact(SET_BYTES).map(index).collect())
}

/// Sets the indices of `payload` in `group`; how many set something (a
/// stale index sets nothing, as locally).
pub(super) fn deliver(group: Option<&EventGroup>, payload: &[u8]) -> Result<usize> {
    let Some(group) = group else {
        return Err(Error::new(ErrorKind::InvalidArgument).with_source(
            "event sets arrived for a handle with no group (MessageProcessBuilder::events)",
        ));
    };
    let mut set = 0;
    let mut refused = None;
    for index in parse_sets(payload)? {
        match group.set(index) {
            Ok(true) => set += 1,
            Ok(false) => {}
            Err(e) => refused = Some(e),
        }
    }
    match refused {
        Some(e) => Err(e),
        None => Ok(set),
    }
}
