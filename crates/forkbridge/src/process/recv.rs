//! Receiving from the backend: messages in order, then its end.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::data::message::Message;
use crate::deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::wire::Frame;
use crate::sys::poll;
use crate::transport::conn::Filled;

use super::{MessageProcess, READ_SLICE, SETTLE_WAIT, State};

impl MessageProcess {
    /// Waits for the next message from the backend.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`] once the backend is gone and its messages
    /// are consumed; [`ErrorKind::Decode`] / [`ErrorKind::FrameTooLarge`]
    /// for a bad frame (skipped: the next call goes on);
    /// [`ErrorKind::NotStarted`].
    pub fn recv(&mut self) -> Result<Message> {
        self.recv_deadline(None)
    }

    /// As [`recv`](MessageProcess::recv), giving up after `timeout` with
    /// [`ErrorKind::Timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message> {
        self.recv_deadline(deadline::after(timeout))
    }

    /// A message if one is ready now, else [`ErrorKind::Empty`].
    pub fn try_recv(&mut self) -> Result<Message> {
        self.recv_deadline(Some(Instant::now()))
            .map_err(|e| match e.kind() {
                ErrorKind::Timeout => self.err(ErrorKind::Empty),
                _ => e,
            })
    }

    pub(super) fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<Message> {
        // Fds that came with the message are closed: `recv_with_fds` keeps them.
        self.recv_fds_deadline(deadline).map(|(msg, _)| msg)
    }

    pub(super) fn recv_fds_deadline(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<(Message, Vec<OwnedFd>)> {
        if let Some(entry) = self.inbox.pop_front() {
            return Ok(entry);
        }
        loop {
            match self.next_frame_deadline(deadline)? {
                Frame::Message(msg) => return Ok((msg, Vec::new())),
                Frame::MessageFds(msg, count) => {
                    let fds = self
                        .conn
                        .take_fds(count)
                        .map_err(|e| e.with_process(&self.name))?;
                    return Ok((msg, fds));
                }
                Frame::Reply { id, .. } => {
                    log::debug!(target: &self.target, "dropping the late reply to call {id}");
                }
                Frame::Stop | Frame::Call { .. } | Frame::Lane(_) => {} // backends send neither
            }
        }
    }

    /// As [`recv_timeout`](MessageProcess::recv_timeout), also returning
    /// the fds the backend sent with the message
    /// ([`BackendContext::send_with_fds`](crate::BackendContext::send_with_fds));
    /// empty for a message sent without. `recv` and its siblings close such
    /// fds.
    pub fn recv_with_fds(&mut self, timeout: Duration) -> Result<(Message, Vec<OwnedFd>)> {
        self.recv_fds_deadline(deadline::after(timeout))
    }

    /// The next frame from the backend, waiting until `deadline`; writes
    /// pending output first. The one place that turns end of stream and the
    /// pidfd into [`ErrorKind::Disconnected`].
    pub(super) fn next_frame_deadline(&mut self, deadline: Option<Instant>) -> Result<Frame> {
        if let State::Idle(_) = self.state {
            return Err(self.err(ErrorKind::NotStarted));
        }
        if self.conn.has_pending_output() {
            match self.flush_deadline(deadline) {
                // A dead backend's messages are still delivered below.
                Err(e) if !e.is_disconnected() => return Err(e),
                _ => {}
            }
        }
        loop {
            if let Some(frame) = self.conn.next_frame() {
                return frame.map_err(|e| e.with_process(&self.name));
            }
            if self.conn.is_eof() {
                self.settle(Some(Instant::now() + SETTLE_WAIT));
                return Err(self.disconnected());
            }
            let exited = match &self.state {
                State::Running { exited, .. } => *exited,
                _ => true,
            };
            if exited {
                // Drain what the backend sent before it died; once nothing is
                // left it is gone (a process it forked may still hold the
                // intercom open, so end of stream may never come).
                if self.fill()? == Filled::Read(0) {
                    self.settle(Some(Instant::now() + SETTLE_WAIT));
                    return Err(self.disconnected());
                }
                continue;
            }
            // Spin at most until the deadline: `try_recv` never spins.
            let spin = deadline.map_or(self.config.spin, |d| {
                self.config
                    .spin
                    .min(d.saturating_duration_since(Instant::now()))
            });
            if self
                .conn
                .spin_fill(spin)
                .map_err(|e| e.with_process(&self.name))?
            {
                continue;
            }
            // A try (deadline already reached) reads first: it usually runs
            // after the fd was seen readable. A wait waits first, then
            // reads: in a request/reply exchange the reply is rarely there
            // yet, and a read would only return `EAGAIN`.
            if deadline.is_some_and(|d| d <= Instant::now()) && self.fill()? != Filled::Read(0) {
                continue;
            }
            // The wait is the socket read itself (one syscall per message
            // where a poll and a read would be two), in slices: the read
            // ends at once when the backend's end of the socket closes —
            // when it dies, unless a process it forked without forkbridge
            // still holds that end — and after each empty slice the pidfd
            // says whether it has exited.
            let slice_end = deadline::min_after(deadline, READ_SLICE);
            let filled = match slice_end {
                Some(end) => self
                    .conn
                    .fill_until(end)
                    .map_err(|e| e.with_process(&self.name))?,
                None => None,
            };
            let ready = match filled {
                Some(Filled::Read(0)) => self.poll_ready(Some(Instant::now()))?,
                Some(_) => true,
                // Under a millisecond left: poll for the rest, then read.
                None => {
                    let ready = self.poll_ready(deadline)?;
                    if ready {
                        self.fill()?;
                    }
                    ready
                }
            };
            if !ready && deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(ErrorKind::Timeout).with_process(&self.name));
            }
        }
    }

    pub(super) fn fill(&mut self) -> Result<Filled> {
        self.conn.fill().map_err(|e| e.with_process(&self.name))
    }

    /// Whether the socket or the pidfd is readable by `until` (`None`: as
    /// long as it takes); a readable pidfd marks the backend exited.
    fn poll_ready(&mut self, until: Option<Instant>) -> Result<bool> {
        let State::Running { watch, exited, .. } = &mut self.state else {
            return Ok(true);
        };
        let mut fds = [
            poll::PollFd::new(self.conn.as_fd(), poll::POLLIN),
            poll::PollFd::new(watch.death_fd(), poll::POLLIN),
        ];
        if poll::poll(&mut fds, until)? == 0 {
            return Ok(false);
        }
        if fds[1].revents() != 0 {
            *exited = true;
        }
        Ok(true)
    }

    /// Whether a message is already read and waiting in this handle (then
    /// the fd may not look readable although `try_recv` has something).
    pub(crate) fn has_read_ahead(&self) -> bool {
        !self.inbox.is_empty() || self.conn.has_complete_frame()
    }
}
