//! [`AsyncMessageProcess`]: the frontend handle, awaited from a tokio
//! program in the parent.
//!
//! # The order rule
//!
//! Start processes *before* building a multi-threaded tokio runtime in the
//! parent: `start` refuses to fork a process that has other threads
//! ([`ErrorKind::ForkWithThreads`](crate::ErrorKind::ForkWithThreads)), and
//! a runtime's worker threads are such threads. Start every backend first,
//! then build the runtime, then turn the handles into async ones with
//! [`MessageProcess::into_async`] inside it. A current-thread runtime adds
//! no thread, so with one you may also start processes from inside
//! `block_on`; never carry a runtime across a fork yourself (tokio #4301).
//!
//! The handle registers duplicates of the intercom fd and the pidfd (for a
//! worker of a fork server, its status channel: readable once the server
//! reported the exit) with the runtime's reactor; the I/O itself is the same as the blocking handle's,
//! so [`recv`](AsyncMessageProcess::recv) is cancel-safe: a message is
//! either returned or stays buffered for the next call, whatever
//! `tokio::select!` branch wins.

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use crate::data::message::Message;
use crate::error::{Error, ErrorKind, Result};
use crate::process::registry::Registered;
use crate::process::{MessageProcess, SETTLE_WAIT};
use crate::sys::async_fd;
use crate::transport::conn::Conn;

/// A started [`MessageProcess`] driven from async code.
///
/// ```rust,standalone_crate
/// use forkbridge::{AsyncBackend, AsyncContext, AsyncHandlers, HandlerResult, Message, MessageProcess};
///
/// struct Echo;
/// impl Echo {
///     async fn echo(&mut self, ctx: &mut AsyncContext, msg: Message) -> HandlerResult {
///         ctx.send(Message::new("echoed").with("text", msg.param::<String>("text")?))?;
///         Ok(())
///     }
/// }
/// impl AsyncBackend for Echo {
///     fn register(h: &mut AsyncHandlers<Self>) {
///         h.on("echo", Self::echo);
///     }
/// }
///
/// // Start first, while the process is single-threaded...
/// let mut p = MessageProcess::builder("echo").build_async(Echo)?;
/// p.start()?;
/// // ...then the runtime.
/// let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
/// rt.block_on(async move {
///     let mut p = p.into_async()?;
///     p.send(Message::new("echo").with("text", "hi")).await?;
///     let reply = p.recv_timeout(std::time::Duration::from_secs(5)).await?;
///     assert_eq!(reply["text"].as_str(), Some("hi"));
///     p.stop().await?;
///     Ok::<(), forkbridge::Error>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AsyncMessageProcess {
    inner: MessageProcess,
    socket: AsyncFd<OwnedFd>,
    exit: AsyncFd<OwnedFd>,
}

impl MessageProcess {
    /// Turns a started process into an [`AsyncMessageProcess`]; call it
    /// inside a tokio runtime (see the order rule in its docs).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotStarted`] (the process is dropped, which cleans it
    /// up); [`ErrorKind::Io`] if the fds cannot be registered.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (tokio's own rule for registering fds).
    pub fn into_async(mut self) -> Result<AsyncMessageProcess> {
        let Some(pidfd) = self.exit_fd() else {
            return Err(Error::new(ErrorKind::NotStarted).with_process(self.name()));
        };
        let exit = async_fd::register(pidfd.try_clone_to_owned()?)?;
        let socket = async_fd::register(self.as_fd().try_clone_to_owned()?)?;
        self.conn_mut().lane_never_waits();
        Ok(AsyncMessageProcess {
            inner: self,
            socket,
            exit,
        })
    }
}

impl AsyncMessageProcess {
    /// The next message from the backend. Cancel-safe.
    ///
    /// # Errors
    ///
    /// As [`MessageProcess::recv`]: [`ErrorKind::Disconnected`] once the
    /// backend is gone and its messages are consumed, decode errors per
    /// frame.
    pub async fn recv(&mut self) -> Result<Message> {
        loop {
            match self.inner.try_recv() {
                Err(e) if e.is_empty() => {}
                other => return other,
            }
            // Nothing ready (checked with a zero-timeout poll): wait for the
            // reactor to report the socket or the pidfd.
            tokio::select! {
                ready = self.socket.readable() => ready?.clear_ready(),
                ready = self.exit.readable() => ready?.clear_ready(),
            }
        }
    }

    /// As [`recv`](AsyncMessageProcess::recv), giving up after `timeout`
    /// with [`ErrorKind::Timeout`]. Cancel-safe.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Message> {
        match tokio::time::timeout(timeout, self.recv()).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(ErrorKind::Timeout).with_process(self.inner.name())),
        }
    }

    /// Calls a typed command and awaits its return value, at most
    /// `timeout`; as [`MessageProcess::call`]. Cancel-safe in the sense that
    /// dropping it loses no message; the call itself is then abandoned (its
    /// reply, if it comes, is dropped).
    ///
    /// # Errors
    ///
    /// As [`MessageProcess::call`].
    pub async fn call<A, R>(&mut self, command: &str, args: &A, timeout: Duration) -> Result<R>
    where
        A: serde::Serialize + ?Sized,
        R: serde::de::DeserializeOwned,
    {
        let deadline = after(timeout);
        let id = self.inner.feed_call(
            command,
            crate::protocol::wire::Fingerprints::of::<A, R>(),
            args,
        )?;
        self.flush_until(deadline).await?;
        loop {
            match self
                .inner
                .reply_deadline(id, Some(std::time::Instant::now()))
            {
                Ok(value) => {
                    return crate::protocol::call::decode_reply(&value, command)
                        .map_err(|e| e.with_process(self.inner.name()));
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(e),
            }
            tokio::select! {
                ready = self.socket.readable() => ready?.clear_ready(),
                ready = self.exit.readable() => ready?.clear_ready(),
                () = sleep_until(deadline) => {
                    return Err(Error::new(ErrorKind::Timeout).with_process(self.inner.name()));
                }
            }
        }
    }

    /// Sends a typed command one way; as [`MessageProcess::cast`].
    pub async fn cast<A: serde::Serialize + ?Sized>(
        &mut self,
        command: &str,
        args: &A,
    ) -> Result<()> {
        self.inner
            .conn_mut()
            .feed_call(
                0,
                command,
                crate::protocol::wire::Fingerprints::of::<A, ()>(),
                args,
            )
            .map_err(|e| e.with_process(self.inner.name()))?;
        self.flush().await
    }

    /// A message if one is ready now, else [`ErrorKind::Empty`].
    pub fn try_recv(&mut self) -> Result<Message> {
        self.inner.try_recv()
    }

    /// Sends a message: buffers it and writes the buffer, waiting (without
    /// blocking the runtime) while the socket is full. If the future is
    /// dropped before it completes, the message stays buffered and goes out
    /// with the next `send` or `flush`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`], [`ErrorKind::FrameTooLarge`].
    pub async fn send(&mut self, msg: Message) -> Result<()> {
        self.feed(msg)?;
        self.flush().await
    }

    /// Buffers a message without writing it; `flush` or `send` write it.
    pub fn feed(&mut self, msg: Message) -> Result<()> {
        self.inner
            .conn_mut()
            .feed(&msg)
            .map_err(|e| e.with_process(self.inner.name()))
    }

    /// Writes every buffered message, reading the backend's messages while
    /// waiting for room (they stay buffered for `recv`), so two writers never
    /// deadlock.
    pub async fn flush(&mut self) -> Result<()> {
        self.flush_until(None).await
    }

    async fn flush_until(&mut self, deadline: Option<Instant>) -> Result<()> {
        loop {
            match self.inner.conn_mut().try_flush() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) if e.is_disconnected() => return Err(self.inner.disconnected_error()),
                Err(e) => return Err(e.with_process(self.inner.name())),
            }
            let sleep = sleep_until(deadline);
            tokio::select! {
                ready = self.socket.writable() => ready?.clear_ready(),
                ready = self.socket.readable() => {
                    let mut guard = ready?;
                    if self.inner.conn_mut().fill()? == crate::transport::conn::Filled::Read(0) {
                        guard.clear_ready();
                    }
                }
                ready = self.exit.readable() => {
                    ready?.clear_ready();
                    return Err(self.inner.disconnected_error());
                }
                () = sleep => return Err(Error::new(ErrorKind::Timeout).with_process(self.inner.name())),
            }
        }
    }

    /// Waits for the backend to exit (without asking it to) and reaps it.
    ///
    /// # Errors
    ///
    /// As [`MessageProcess::join`].
    pub async fn join(&mut self) -> Result<ExitStatus> {
        self.join_until(None).await
    }

    async fn join_until(&mut self, deadline: Option<Instant>) -> Result<ExitStatus> {
        loop {
            match self.inner.join_timeout(Duration::ZERO) {
                Err(e) if e.is_timeout() => {}
                other => return other,
            }
            let sleep = sleep_until(deadline);
            tokio::select! {
                ready = self.exit.readable() => ready?.clear_ready(),
                // Keep reading, so a backend blocked writing to us can finish.
                ready = self.socket.readable() => {
                    let mut guard = ready?;
                    let conn = self.inner.conn_mut();
                    if conn.is_eof() || conn.fill()? == crate::transport::conn::Filled::Read(0) {
                        guard.clear_ready();
                    }
                }
                () = sleep => return Err(Error::new(ErrorKind::Timeout).with_process(self.inner.name())),
            }
        }
    }

    /// Stops the backend within the configured bounds and reaps it, as
    /// [`MessageProcess::stop`] does, without blocking the runtime.
    ///
    /// # Errors
    ///
    /// As [`MessageProcess::stop`].
    pub async fn stop(&mut self) -> Result<ExitStatus> {
        let (stop_timeout, kill_timeout) = self.inner.stop_timeouts();
        let deadline = after(stop_timeout);
        self.inner.queue_stop()?;
        match self.flush_until(deadline).await {
            Ok(()) => {}
            Err(e) => {
                log::debug!(target: self.inner.log_target(), "stop request not delivered: {e}")
            }
        }
        match self.join_until(deadline).await {
            Err(e) if e.is_timeout() => {}
            other => return other,
        }
        let _ = self.inner.signal(libc::SIGTERM);
        match self.join_until(after(kill_timeout)).await {
            Err(e) if e.is_timeout() => {}
            other => return other,
        }
        let _ = self.inner.signal(libc::SIGKILL);
        self.join_until(Some(Instant::now() + Duration::from_secs(5)))
            .await
    }

    /// The blocking handle.
    pub fn get_ref(&self) -> &MessageProcess {
        &self.inner
    }

    /// Back to the blocking handle.
    pub fn into_inner(self) -> MessageProcess {
        self.inner
    }
}

/// `timeout` from now; `None` (no limit) past what an `Instant` holds.
fn after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Sleeps until `deadline`, or forever.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl fmt::Debug for AsyncMessageProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AsyncMessageProcess")
            .field(&self.inner)
            .finish()
    }
}

// What the async frontend needs of the blocking handle it wraps.
impl MessageProcess {
    /// The intercom, for the async frontend.
    pub(crate) fn conn_mut(&mut self) -> &mut Conn<Registered> {
        &mut self.conn
    }

    /// The error a write to a gone backend returns, after collecting its
    /// exit status (bounded).
    pub(crate) fn disconnected_error(&mut self) -> Error {
        self.settle(Some(std::time::Instant::now() + SETTLE_WAIT));
        self.disconnected()
    }
}
