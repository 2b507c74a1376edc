//! Extra fds in the blocking loop: [`BackendContext::watch`] adds one to
//! the loop's `poll(2)`, and [`Backend::on_ready`](crate::Backend::on_ready)
//! hears when it is ready.

use std::os::fd::RawFd;

use crate::sys::poll;

#[allow(unused_imports)] // for the doc links
use super::BackendContext;

/// Identifies a [watched](BackendContext::watch) fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceId(pub(super) u32);

/// Which readiness to wait for on a watched fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Readable (or hung up).
    Readable,
    /// Writable.
    Writable,
    /// Either.
    Both,
}

/// The readiness of a watched fd, as `poll(2)` reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready(pub(super) i16);

impl Ready {
    /// Data can be read (or the peer hung up: a read returns 0).
    pub fn is_readable(self) -> bool {
        self.0 & (poll::POLLIN | poll::POLLHUP) != 0
    }
    /// Data can be written.
    pub fn is_writable(self) -> bool {
        self.0 & poll::POLLOUT != 0
    }
    /// The peer hung up.
    pub fn is_hangup(self) -> bool {
        self.0 & poll::POLLHUP != 0
    }
    /// An error condition is pending on the fd.
    pub fn is_error(self) -> bool {
        self.0 & poll::POLLERR != 0
    }
}

#[derive(Debug)]
pub(super) struct Source {
    pub(super) id: SourceId,
    pub(super) fd: RawFd,
    pub(super) events: i16,
}
