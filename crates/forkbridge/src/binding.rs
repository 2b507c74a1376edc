//! What the Python binding needs beyond the public API. Hidden from the
//! docs and outside semver: a Rust program has better tools for each of
//! these (`try_recv` until `Empty` after a wake-up, `send_timeout`), and
//! they exist for a caller that waits in short slices between checks of an
//! interpreter's signals, or hands the fd to a foreign `select`.

use std::time::Duration;

pub use crate::protocol::fault::FaultKind;
use crate::{Intercom, Message, MessageProcess, MessageProcessBuilder, Result};

/// The frontend handle's methods for the binding.
pub trait ProcessExt {
    /// Appends `msg` to the send buffer and writes nothing; the next send,
    /// flush or receive writes it.
    fn queue(&mut self, msg: Message) -> Result<()>;
    /// Writes what is buffered, giving up after `timeout` with
    /// `ErrorKind::Timeout`; the rest stays buffered, the stream whole.
    fn flush_timeout(&mut self, timeout: Duration) -> Result<()>;
    /// Whether a message is read and waiting in the handle (the fd may
    /// then look idle).
    fn has_buffered(&self) -> bool;
    /// Sends `sig` to the backend while it runs, through its pidfd (never
    /// to a process that took a reaped backend's pid); nothing when it is
    /// not running.
    fn send_signal(&self, sig: i32) -> Result<()>;
    /// Frame reads on or off from now on (see [`BuilderExt::frame_reads`]).
    fn set_frame_reads(&mut self, yes: bool);
}

impl ProcessExt for MessageProcess {
    fn queue(&mut self, msg: Message) -> Result<()> {
        MessageProcess::buffer(self, msg)
    }
    fn flush_timeout(&mut self, timeout: Duration) -> Result<()> {
        MessageProcess::flush_within(self, timeout)
    }
    fn has_buffered(&self) -> bool {
        MessageProcess::has_read_ahead(self)
    }
    fn send_signal(&self, sig: i32) -> Result<()> {
        match MessageProcess::signal(self, sig) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            other => other.map_err(crate::Error::io),
        }
    }
    fn set_frame_reads(&mut self, yes: bool) {
        MessageProcess::read_frames(self, yes);
    }
}

/// The builder's settings for the binding.
pub trait BuilderExt {
    /// The frontend reads one frame per `recv(2)` pair, so a message never
    /// waits in the handle while its fd looks idle (for a foreign `select`
    /// that reads one message per wake-up).
    fn frame_reads(self, yes: bool) -> Self;
}

impl BuilderExt for MessageProcessBuilder {
    fn frame_reads(self, yes: bool) -> Self {
        MessageProcessBuilder::read_frames(self, yes)
    }
}

/// The adopted intercom's methods for the binding.
pub trait IntercomExt {
    /// As [`ProcessExt::flush_timeout`].
    fn flush_timeout(&mut self, timeout: Duration) -> Result<()>;
    /// As [`ProcessExt::has_buffered`].
    fn has_buffered(&self) -> bool;
}

impl IntercomExt for Intercom {
    fn flush_timeout(&mut self, timeout: Duration) -> Result<()> {
        Intercom::flush_within(self, timeout)
    }
    fn has_buffered(&self) -> bool {
        Intercom::has_read_ahead(self)
    }
}
