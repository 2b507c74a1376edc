//! Sending to the backend: whole messages, buffered bursts, stop requests.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::data::message::Message;
use crate::deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::transport::conn::FLUSH_THRESHOLD;

use super::{MessageProcess, SETTLE_WAIT, State};

impl MessageProcess {
    /// Sends a message and writes it to the socket before returning (the
    /// valkka-multiprocess's `sendMessageToBack`). Blocks while the socket buffer is full;
    /// the backend's own messages are read meanwhile and kept.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`] if the backend is gone: at once, and
    /// without queueing anything, once it is known to be (a receive
    /// reported it, or its exit was seen); even a process the backend
    /// forked that keeps the socket open cannot make a send block then;
    /// [`ErrorKind::FrameTooLarge`] if the message exceeds the frame limit.
    pub fn send(&mut self, msg: Message) -> Result<()> {
        self.refuse_if_gone()?;
        self.conn
            .feed(&msg)
            .map_err(|e| e.with_process(&self.name))?;
        self.flush()
    }

    /// Sends a message with fds attached (up to 16): a memfd
    /// ([`SharedBuffer`](crate::SharedBuffer)), a socket, a pipe — things
    /// made after the fork that the running backend should get. The backend's
    /// handler takes them with
    /// [`BackendContext::take_fds`](crate::BackendContext::take_fds); the
    /// kernel gives it its own copies (close-on-exec), ours stay open.
    /// Written before returning, after the messages queued before it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for no fds or more than 16; as
    /// [`send`](MessageProcess::send) otherwise.
    pub fn send_with_fds(&mut self, msg: Message, fds: &[BorrowedFd<'_>]) -> Result<()> {
        if let State::Idle(_) = self.state {
            return Err(self.err(ErrorKind::NotStarted));
        }
        self.refuse_if_gone()?;
        let State::Running { watch, .. } = &self.state else {
            unreachable!("refused above");
        };
        let watch = Some(watch.death_fd());
        match self.conn.send_with_fds(&msg, fds, None, watch) {
            Ok(()) => Ok(()),
            Err(e) if e.is_disconnected() => {
                self.settle(Some(Instant::now() + SETTLE_WAIT));
                Err(self.disconnected())
            }
            Err(e) => Err(e.with_process(&self.name)),
        }
    }

    /// As [`send`](MessageProcess::send), giving up after `timeout` with
    /// [`ErrorKind::Timeout`]. A message that timed out before any of it was
    /// written is taken back (it is not sent later), so a sender that keeps
    /// timing out against a backend that stopped reading keeps its memory
    /// bounded; one that was partly written stays buffered and goes out with
    /// a later flush (the stream must stay whole).
    pub fn send_timeout(&mut self, msg: Message, timeout: Duration) -> Result<()> {
        self.refuse_if_gone()?;
        let mark = self.conn.feed_mark();
        self.conn
            .feed(&msg)
            .map_err(|e| e.with_process(&self.name))?;
        let result = self.flush_deadline(deadline::after(timeout));
        if result.as_ref().is_err_and(Error::is_timeout) {
            self.conn.unfeed(mark);
        }
        result
    }

    /// Appends a message to the send buffer without writing it (see
    /// "Sending" above); writes the buffer only once it holds 64 KiB.
    pub fn feed(&mut self, msg: Message) -> Result<()> {
        self.refuse_if_gone()?;
        self.conn
            .feed(&msg)
            .map_err(|e| e.with_process(&self.name))?;
        if self.conn.pending_output() > FLUSH_THRESHOLD {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends a message to the send buffer and writes nothing, however
    /// much is buffered (unlike [`feed`](MessageProcess::feed)); the next
    /// send, flush or receive writes it. With
    /// [`flush_within`](MessageProcess::flush_within) it makes a send
    /// that waits in slices, for a caller that must do something between
    /// them (an interpreter checking for Ctrl-C).
    pub(crate) fn buffer(&mut self, msg: Message) -> Result<()> {
        self.refuse_if_gone()?;
        self.conn.feed(&msg).map_err(|e| e.with_process(&self.name))
    }

    /// As [`flush`](MessageProcess::flush), giving up after `timeout` with
    /// [`ErrorKind::Timeout`]; what was not written stays buffered.
    pub(crate) fn flush_within(&mut self, timeout: Duration) -> Result<()> {
        self.flush_deadline(deadline::after(timeout))
    }

    /// Writes every buffered message, waiting while the socket is full.
    pub fn flush(&mut self) -> Result<()> {
        self.flush_deadline(None)
    }

    pub(super) fn flush_deadline(&mut self, deadline: Option<Instant>) -> Result<()> {
        if let State::Idle(_) = self.state {
            return Ok(()); // delivered by `start`
        }
        self.refuse_if_gone()?;
        let State::Running { watch, .. } = &self.state else {
            unreachable!("refused above");
        };
        let watch = Some(watch.death_fd());
        match self.conn.flush(deadline, watch) {
            Ok(()) => Ok(()),
            Err(e) if e.is_disconnected() => {
                self.settle(Some(Instant::now() + SETTLE_WAIT));
                Err(self.disconnected())
            }
            Err(e) => Err(e.with_process(&self.name)),
        }
    }
}
