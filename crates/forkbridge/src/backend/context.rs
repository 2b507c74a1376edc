//! [`BackendContext`]: what a blocking backend's handlers see of their
//! process.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use crate::data::message::Message;
use crate::error::Result;
use crate::sys::poll;
use crate::transport::conn::FLUSH_THRESHOLD;

use super::endpoint::Endpoint;
use super::watch::{Interest, Source, SourceId};

/// The backend's view of its process: send to the frontend, name, logging
/// target, extra fds, stop.
#[derive(Debug)]
pub struct BackendContext {
    pub(super) endpoint: Endpoint<OwnedFd>,
    pub(super) sources: Vec<Source>,
    pub(super) next_source: u32,
}

impl BackendContext {
    /// The fds that came with the message being handled (sent with
    /// [`MessageProcess::send_with_fds`](crate::MessageProcess::send_with_fds)),
    /// in the order sent; what the handler does not take is closed when it
    /// returns.
    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.endpoint.fds)
    }

    /// Sends a message to the frontend (valkka-multiprocess's `send_out__`).
    ///
    /// The message is buffered and written when the current handler returns
    /// (together with everything else the handler sent: one syscall per
    /// handler, not per message), when more than 64 KiB are buffered, or on
    /// [`flush`](BackendContext::flush). Call `flush` to deliver progress
    /// from a long-running handler. What a handler sent is on the wire before
    /// the next handler runs, so a later crash of the process does not lose
    /// it: when the frontend is not reading, the loop waits for room in the
    /// socket (reading the frontend's messages meanwhile, so neither side
    /// blocks the other) until the frontend reads, stops the process or goes
    /// away.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::FrameTooLarge`](crate::ErrorKind::FrameTooLarge) if the
    /// message exceeds the maximum frame size;
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) if the
    /// frontend is gone.
    pub fn send(&mut self, msg: Message) -> Result<()> {
        self.endpoint.conn.feed(&msg)?;
        if self.endpoint.conn.pending_output() > FLUSH_THRESHOLD {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends a message with fds attached (up to 16) to the frontend, which
    /// receives them with
    /// [`MessageProcess::recv_with_fds`](crate::MessageProcess::recv_with_fds):
    /// a [`SharedBuffer`](crate::SharedBuffer) the backend made, a socket it
    /// accepted. Written before returning, after everything sent before it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for
    /// no fds or more than 16; as [`send`](BackendContext::send) otherwise.
    pub fn send_with_fds(&mut self, msg: Message, fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.endpoint.conn.send_with_fds(&msg, fds, None, None)
    }

    /// Writes every buffered message now, waiting while the frontend's
    /// socket buffer is full (and reading its messages meanwhile, so two
    /// writers never deadlock).
    pub fn flush(&mut self) -> Result<()> {
        self.endpoint.conn.flush(None, None)
    }

    /// The process name given to the frontend's builder.
    pub fn name(&self) -> &str {
        &self.endpoint.name
    }

    /// The logging target, `TypeName.name` as valkka-multiprocess's `self.logger`:
    /// `log::info!(target: ctx.log_target(), "...")`.
    pub fn log_target(&self) -> &str {
        &self.endpoint.target
    }

    /// Ends the loop after the current handler; `post_run` runs next.
    pub fn request_stop(&mut self) {
        self.endpoint.stop = true;
    }

    /// Adds `fd` to the loop's wait set; [`Backend::on_ready`](crate::Backend::on_ready) is called
    /// with the returned id when it is ready.
    ///
    /// Only the number is stored: keep the fd open until
    /// [`unwatch`](BackendContext::unwatch). A watched fd that gets closed is
    /// reported by the kernel as invalid; the loop then drops it and logs a
    /// warning (never undefined behaviour).
    pub fn watch(&mut self, fd: BorrowedFd<'_>, interest: Interest) -> SourceId {
        let id = SourceId(self.next_source);
        self.next_source += 1;
        let events = match interest {
            Interest::Readable => poll::POLLIN,
            Interest::Writable => poll::POLLOUT,
            Interest::Both => poll::POLLIN | poll::POLLOUT,
        };
        self.sources.push(Source {
            id,
            fd: fd.as_raw_fd(),
            events,
        });
        id
    }

    /// Removes a watched fd; returns whether it was watched.
    pub fn unwatch(&mut self, id: SourceId) -> bool {
        let before = self.sources.len();
        self.sources.retain(|s| s.id != id);
        before != self.sources.len()
    }

    /// Best-effort final flush: blocks while the frontend is alive and not
    /// reading (its `stop` bound ends that), returns at once if it is gone.
    pub(super) fn flush_at_exit(&mut self) {
        match self.endpoint.conn.flush(None, None) {
            Ok(()) => {}
            Err(e) if e.is_disconnected() => {}
            Err(e) => log::warn!(target: &self.endpoint.target, "final flush failed: {e}"),
        }
    }
}
