//! [`AsyncContext`]: what an async backend's handlers see of their
//! process, and the [`TaskSender`] its background tasks send with.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::{Id, JoinError, JoinSet};

use crate::backend::HandlerResult;
use crate::backend::endpoint::Endpoint;
use crate::data::message::Message;
use crate::error::{Error, Result, panic_message};
use crate::protocol::fault::FaultKind;
use crate::transport::conn::{FLUSH_THRESHOLD, Filled};

/// The async backend's view of its process.
pub struct AsyncContext {
    pub(super) endpoint: Endpoint<Arc<AsyncFd<OwnedFd>>>,
    pub(super) tasks: JoinSet<HandlerResult>,
    pub(super) labels: HashMap<Id, String>,
    pub(super) tx: mpsc::Sender<Message>,
}

impl AsyncContext {
    /// The fds that came with the message being handled; as
    /// [`BackendContext::take_fds`](crate::BackendContext::take_fds).
    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.endpoint.fds)
    }

    /// Sends a message to the frontend (valkka-multiprocess's `send_out__`). Buffered;
    /// written when the handler returns, or once 64 KiB are buffered. What
    /// a handler sent is on the wire before the next command is handled:
    /// when the frontend is not reading, the loop waits (asynchronously,
    /// reading the frontend's messages meanwhile) for room in the socket.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::FrameTooLarge`](crate::ErrorKind::FrameTooLarge) if the
    /// message exceeds the frame limit.
    pub fn send(&mut self, msg: Message) -> Result<()> {
        self.endpoint.conn.feed(&msg)?;
        if self.endpoint.conn.pending_output() > FLUSH_THRESHOLD {
            // Non-blocking here; the loop waits for room if needed.
            let _ = self.endpoint.conn.try_flush();
        }
        Ok(())
    }

    /// Writes every buffered message now, waiting (asynchronously) while
    /// the frontend's socket is full and reading its messages meanwhile.
    /// Use it to deliver progress from a long handler; otherwise messages go
    /// out when the handler returns.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) if the
    /// frontend is gone.
    pub async fn flush(&mut self) -> Result<()> {
        let afd = self.endpoint.conn.owner().clone();
        loop {
            if self.endpoint.conn.try_flush()? {
                return Ok(());
            }
            tokio::select! {
                ready = afd.writable() => ready?.clear_ready(),
                ready = afd.readable() => {
                    let mut guard = ready?;
                    if self.endpoint.conn.is_eof() || self.endpoint.conn.fill()? == Filled::Read(0) {
                        guard.clear_ready();
                    }
                }
            }
        }
    }

    /// A handle for background tasks to send messages to the frontend.
    pub fn sender(&self) -> TaskSender {
        TaskSender {
            tx: self.tx.clone(),
        }
    }

    /// Runs `task` in the background; the loop keeps serving commands. If
    /// it returns an error or panics, that is logged with `label` and the
    /// process name and reported to the frontend as an `"error"` message
    /// (kind `"task_error"` or `"task_panic"`, command `label`).
    pub fn spawn<F>(&mut self, label: impl Into<String>, task: F)
    where
        F: Future<Output = HandlerResult> + Send + 'static,
    {
        let handle = self.tasks.spawn(task);
        self.labels.insert(handle.id(), label.into());
    }

    /// Background tasks still running.
    pub fn tasks_running(&self) -> usize {
        self.tasks.len()
    }

    /// The process name.
    pub fn name(&self) -> &str {
        &self.endpoint.name
    }

    /// The logging target, `TypeName.name`.
    pub fn log_target(&self) -> &str {
        &self.endpoint.target
    }

    /// Ends the loop after the current handler.
    pub fn request_stop(&mut self) {
        self.endpoint.stop = true;
    }

    pub(super) fn task_done(
        &mut self,
        joined: std::result::Result<(Id, HandlerResult), JoinError>,
    ) {
        match joined {
            Ok((id, Ok(()))) => {
                self.labels.remove(&id);
            }
            Ok((id, Err(e))) => {
                let label = self.labels.remove(&id).unwrap_or_default();
                self.endpoint
                    .report(FaultKind::TaskError, &label, &e.to_string());
            }
            Err(e) => {
                let label = self.labels.remove(&e.id()).unwrap_or_default();
                if e.is_panic() {
                    self.endpoint.report(
                        FaultKind::TaskPanic,
                        &label,
                        &panic_message(&*e.into_panic()),
                    );
                } else {
                    log::debug!(target: &self.endpoint.target, "task '{label}' cancelled");
                }
            }
        }
    }
}

impl fmt::Debug for AsyncContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncContext")
            .field("name", &self.endpoint.name)
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

/// Sends messages to the frontend from background tasks; cheap to clone.
#[derive(Debug, Clone)]
pub struct TaskSender {
    pub(super) tx: mpsc::Sender<Message>,
}

impl TaskSender {
    /// Queues a message for the frontend; waits while 1024 are queued.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) once the
    /// backend is ending: after `post_run` (a message sent from `post_run`
    /// itself still arrives, after `post_run`'s own).
    pub async fn send(&self, msg: Message) -> Result<()> {
        self.tx
            .send(msg)
            .await
            .map_err(|_| Error::disconnected(None))
    }

    /// As [`send`](TaskSender::send), from blocking code (a
    /// `spawn_blocking` task); must not be called on a runtime thread.
    ///
    /// # Errors
    ///
    /// As [`send`](TaskSender::send).
    pub fn blocking_send(&self, msg: Message) -> Result<()> {
        self.tx
            .blocking_send(msg)
            .map_err(|_| Error::disconnected(None))
    }
}
