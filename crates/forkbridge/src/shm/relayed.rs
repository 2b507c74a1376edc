//! The sets of a relayed [`EventGroup`](super::event_group::EventGroup):
//! carried to another host instead of made here.
//!
//! A backend served on another host than its frontend gets indices from
//! the frontend's group, whose events live in that host's memory. Setting
//! an event of a group on the backend's host would set the wrong event (or
//! nothing: the generations are the frontend's). A relayed group's `set`
//! therefore writes the index, as 8 bytes, into a datagram socket pair
//! made with the group; the transport reads the other end on the
//! backend's host, carries the indices, and sets them in the frontend's
//! group, where the generation check happens as locally.
//!
//! A datagram pair rather than a pipe: each index is one datagram, never
//! torn or merged with another writer's, and a full queue blocks the
//! setter (a set is never dropped) until the transport reads.

use std::io;
use std::os::unix::net::UnixDatagram;

use crate::error::Result;

/// The setters' end (kept by every copy of the group) and, in the program
/// that made the group, the transport's end.
#[derive(Debug)]
pub(crate) struct SetRelay {
    pub(crate) send: UnixDatagram,
    /// `None` in a copy that crossed to another program as data.
    pub(crate) recv: Option<UnixDatagram>,
}

impl SetRelay {
    pub(crate) fn new() -> io::Result<SetRelay> {
        let (send, recv) = UnixDatagram::pair()?;
        Ok(SetRelay {
            send,
            recv: Some(recv),
        })
    }

    /// Carries one raw index, waiting while the transport is behind.
    pub(crate) fn carry(&self, raw: u64) -> Result<()> {
        loop {
            match self.send.send(&raw.to_le_bytes()) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}
