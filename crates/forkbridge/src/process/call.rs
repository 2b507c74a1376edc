//! Typed calls and casts from the frontend.

use std::time::{Duration, Instant};

use crate::deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::call::decode_reply;
use crate::protocol::wire::{Failure, Fingerprints, Frame};
use crate::transport::conn::{Conn, FLUSH_THRESHOLD};

use super::{MessageProcess, Registered, State};

impl MessageProcess {
    /// Calls the typed command `command` with `args` and waits up to
    /// `timeout` for its return value (request/reply). Messages that arrive
    /// meanwhile are kept for [`recv`](MessageProcess::recv); replies are
    /// matched by a correlation id, so a late reply to an earlier call that
    /// timed out is never taken for this one's.
    ///
    /// Usually called through the methods `#[forkbridge::handlers]`
    /// generates (feature `macros`); by hand, `args` is a tuple of the
    /// handler's arguments.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] (the reply, if it comes later, is dropped);
    /// [`ErrorKind::NotStarted`] before `start`, without queueing the call
    /// (a failed call has no effect, later either);
    /// [`ErrorKind::Disconnected`] if the backend died;
    /// [`ErrorKind::Remote`] if the handler failed, panicked or does not
    /// exist, or if its argument or reply types are not `A` and `R` (the
    /// call carries fingerprints of both, checked by the backend: kind
    /// `"decode"`); [`ErrorKind::Decode`] if the reply's bytes do not
    /// decode as an `R` (a backend that sent no fingerprints).
    pub fn call<A, R>(&mut self, command: &str, args: &A, timeout: Duration) -> Result<R>
    where
        A: serde::Serialize + ?Sized,
        R: serde::de::DeserializeOwned,
    {
        let deadline = deadline::after(timeout);
        let id = self.feed_call(command, Fingerprints::of::<A, R>(), args)?;
        let value = self.reply_deadline(id, deadline)?;
        decode_reply(&value, command).map_err(|e| e.with_process(&self.name))
    }

    /// Sends the typed command `command` one way (no reply; a failure is
    /// reported by the backend as an `"error"` message). Written at once,
    /// like [`send`](MessageProcess::send).
    pub fn cast<A: serde::Serialize + ?Sized>(&mut self, command: &str, args: &A) -> Result<()> {
        self.feed_cast(command, args)?;
        self.flush()
    }

    /// As [`cast`](MessageProcess::cast), buffered like
    /// [`feed`](MessageProcess::feed).
    pub fn feed_cast<A: serde::Serialize + ?Sized>(
        &mut self,
        command: &str,
        args: &A,
    ) -> Result<()> {
        self.refuse_if_gone()?;
        self.conn
            .feed_call(0, command, Fingerprints::of::<A, ()>(), args)
            .map_err(|e| e.with_process(&self.name))?;
        if self.conn.pending_output() > FLUSH_THRESHOLD {
            self.flush()?;
        }
        Ok(())
    }

    /// Queues a typed call and returns its id.
    pub(crate) fn feed_call<A: serde::Serialize + ?Sized>(
        &mut self,
        command: &str,
        types: Fingerprints,
        args: &A,
    ) -> Result<u64> {
        self.feed_call_with(|conn, id| conn.feed_call(id, command, types, args))
    }

    /// As [`feed_call`](Self::feed_call), with the arguments encoded
    /// already (a pool's call kept to be sent again).
    pub(crate) fn feed_call_encoded(
        &mut self,
        command: &str,
        types: Fingerprints,
        args: &[u8],
    ) -> Result<u64> {
        self.feed_call_with(|conn, id| conn.feed_call_encoded(id, command, types, args))
    }

    fn feed_call_with(
        &mut self,
        feed: impl FnOnce(&mut Conn<Registered>, u64) -> Result<()>,
    ) -> Result<u64> {
        // A call that fails must have no effect: before `start` it is not
        // queued (a message is; a call's reply could never be waited for).
        if let State::Idle(_) = self.state {
            return Err(self.err(ErrorKind::NotStarted));
        }
        self.refuse_if_gone()?;
        let id = self.last_call + 1;
        feed(&mut self.conn, id).map_err(|e| e.with_process(&self.name))?;
        self.last_call = id;
        Ok(id)
    }

    /// Waits until `deadline` for the reply to call `id` and returns the
    /// encoded value; keeps messages for `recv`, drops other replies.
    pub(crate) fn reply_deadline(&mut self, id: u64, deadline: Option<Instant>) -> Result<Vec<u8>> {
        loop {
            match self.next_frame_deadline(deadline)? {
                Frame::Message(msg) => self.inbox.push_back((msg, Vec::new())),
                Frame::MessageFds(msg, count) => {
                    let fds = self
                        .conn
                        .take_fds(count)
                        .map_err(|e| e.with_process(&self.name))?;
                    self.inbox.push_back((msg, fds));
                }
                Frame::Reply { id: got, result } if got == id => {
                    return result.map_err(|f| self.remote_failure(f));
                }
                Frame::Reply { id: other, .. } => {
                    log::debug!(target: &self.target, "dropping the late reply to call {other}");
                }
                Frame::Stop | Frame::Call { .. } | Frame::Lane(_) => {}
            }
        }
    }
}

/// What a frontend took from its backend without waiting: for a caller
/// that waits on many processes at once (a pool) and routes replies itself.
pub(crate) enum Incoming {
    /// The reply to call `id`: its encoded value, or the backend's failure.
    Reply { id: u64, result: Result<Vec<u8>> },
    /// A message the backend sent on its own.
    Message(crate::data::message::Message),
}

impl MessageProcess {
    /// The next reply or message if one has arrived, reading what the
    /// socket holds first; `None` if nothing has. Writes pending output
    /// first, without waiting for room.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`] once the backend is gone and everything
    /// it sent was taken; decode errors of a bad frame (skipped).
    pub(crate) fn try_incoming(&mut self) -> Result<Option<Incoming>> {
        self.wait_incoming(Some(Instant::now()))
    }

    /// As [`try_incoming`](Self::try_incoming), waiting until `deadline`
    /// (`None`: as long as it takes) in the socket read, as `recv` does.
    pub(crate) fn wait_incoming(&mut self, deadline: Option<Instant>) -> Result<Option<Incoming>> {
        if let Some((msg, _fds)) = self.inbox.pop_front() {
            return Ok(Some(Incoming::Message(msg)));
        }
        loop {
            let frame = match self.next_frame_deadline(deadline) {
                Ok(frame) => frame,
                Err(e) if e.is_timeout() => return Ok(None),
                Err(e) => return Err(e),
            };
            match frame {
                Frame::Message(msg) => return Ok(Some(Incoming::Message(msg))),
                Frame::MessageFds(msg, count) => {
                    // Fds sent with a message to a pool are closed: a pool
                    // has no one to hand them to.
                    let _ = self.conn.take_fds(count);
                    return Ok(Some(Incoming::Message(msg)));
                }
                Frame::Reply { id, result } => {
                    let result = result.map_err(|f| self.remote_failure(f));
                    return Ok(Some(Incoming::Reply { id, result }));
                }
                Frame::Stop | Frame::Call { .. } | Frame::Lane(_) => {}
            }
        }
    }

    /// A call's failure in the backend, as the caller's error.
    fn remote_failure(&self, f: Failure) -> Error {
        Error::new(ErrorKind::Remote {
            kind: f.kind,
            message: f.message,
        })
        .with_process(&self.name)
    }

    /// Writes what the socket takes now; `Ok(true)` once nothing is left.
    pub(crate) fn flush_now(&mut self) -> Result<bool> {
        match self.flush_deadline(Some(Instant::now())) {
            Ok(()) => Ok(true),
            Err(e) if e.is_timeout() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether output waits for room in the socket.
    pub(crate) fn has_pending_output(&self) -> bool {
        self.conn.has_pending_output()
    }
}
