//! Writing whole frames into a stream, for a transport's receiving side.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::Result;

use super::FrameCheck;

/// Writes network messages into a handle's or a process's stream, each
/// only if it is whole frames that may cross (see [`FrameCheck`]), one at
/// a time: clones share one lock, which [`Relay::stop`](super::Relay::stop)
/// takes too, so neither another message nor a stop request ever lands
/// inside a message's frames.
///
/// A write blocks while the stream is full: the transport's publisher
/// then waits too (back-pressure), and nothing is dropped.
#[derive(Debug, Clone)]
pub struct FrameWriter {
    stream: Arc<Mutex<UnixStream>>,
    check: FrameCheck,
}

impl FrameWriter {
    pub(super) fn new(stream: UnixStream, check: FrameCheck) -> FrameWriter {
        FrameWriter {
            stream: Arc::new(Mutex::new(stream)),
            check,
        }
    }

    /// Writes `payload` if it is whole frames that may cross.
    ///
    /// # Errors
    ///
    /// As [`FrameCheck::check`] (nothing is written);
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the stream's other end
    /// is gone.
    pub fn deliver(&self, payload: &[u8]) -> Result<()> {
        self.check.check(payload)?;
        self.lock().write_all(payload)?;
        Ok(())
    }

    /// The frame limit it checks.
    pub fn frames(&self) -> FrameCheck {
        self.check
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, UnixStream> {
        self.stream.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
