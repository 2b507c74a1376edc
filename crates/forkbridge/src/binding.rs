//! What the Python binding needs beyond the public API. Hidden from the
//! docs and outside semver: a Rust program has better tools for each of
//! these (`try_recv` until `Empty` after a wake-up, `send_timeout`), and
//! they exist for a caller that waits in short slices between checks of an
//! interpreter's signals, or hands the fd to a foreign `select`.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::process::start::boot::{self, Arrival};
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
    /// Makes the backend cross as `payload` and `fds` to a worker that
    /// runs `command` (program, then arguments) under `Spawn`, or to the
    /// fork server set with [`set_fork_server_command`]: a worker in
    /// another language, which reads them with [`accept_worker`] or
    /// [`accept_served`]. Before `start` only.
    fn set_foreign(
        &mut self,
        command: Vec<OsString>,
        payload: Vec<u8>,
        fds: Vec<OwnedFd>,
    ) -> Result<()>;
    /// Sets the start method before `start`.
    fn set_start_method(&mut self, method: crate::StartMethod) -> Result<()>;
    /// What polls readable once the backend's exit status can be read (its
    /// pidfd, or a served worker's status channel), while it runs: for a
    /// binding that waits on many processes in one `poll`.
    fn exit_poll_fd(&self) -> Option<BorrowedFd<'_>>;
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
    fn set_foreign(
        &mut self,
        command: Vec<OsString>,
        payload: Vec<u8>,
        fds: Vec<OwnedFd>,
    ) -> Result<()> {
        MessageProcess::set_portable(self, boot::Portable::foreign(command, payload, fds))
    }
    fn set_start_method(&mut self, method: crate::StartMethod) -> Result<()> {
        MessageProcess::set_method(self, method)
    }
    fn exit_poll_fd(&self) -> Option<BorrowedFd<'_>> {
        MessageProcess::exit_fd(self)
    }
}

/// Makes later fork servers run `command` (program, then arguments), which
/// calls [`serve_forks`]; for a binding whose workers are interpreters.
pub fn set_fork_server_command(command: Vec<OsString>) {
    crate::process::start::server::set_command(command);
}

/// In a fork server spawned with [`set_fork_server_command`]'s command:
/// serves fork requests and never returns; each worker runs `child` with
/// its intercom end (which calls [`accept_served`]) and exits with what it
/// returns. `hooks` run around each fork. `None` if this process is not a
/// fork server.
pub fn serve_forks(
    hooks: Option<&dyn crate::ForkHooks>,
    child: &mut dyn FnMut(OwnedFd) -> i32,
) -> Option<std::convert::Infallible> {
    let control = crate::process::start::server::take_control()?;
    crate::process::start::server::serve::run_with(control, hooks, child)
}

/// A worker of another language, between its boot frame and its loop.
#[derive(Debug)]
pub struct ForeignWorker {
    arrival: Arrival,
    sock: OwnedFd,
}

/// In a process spawned for a foreign backend ([`ProcessExt::set_foreign`]
/// with `Spawn`): reads the boot frame and sets the process up. `None` if
/// this process was not spawned as a worker.
pub fn accept_worker() -> Option<std::result::Result<ForeignWorker, String>> {
    let sock = crate::process::start::take_worker_socket()?;
    Some(accept_served(sock))
}

/// In a worker forked by a fork server (the `child` of [`serve_forks`]):
/// as [`accept_worker`].
pub fn accept_served(sock: OwnedFd) -> std::result::Result<ForeignWorker, String> {
    let arrival = boot::accept(sock.as_fd())?;
    Ok(ForeignWorker { arrival, sock })
}

impl ForeignWorker {
    /// The payload the frontend gave [`ProcessExt::set_foreign`].
    pub fn payload(&self) -> &[u8] {
        self.arrival.payload()
    }

    /// The fds that came with the payload, in the order given.
    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        self.arrival.take_payload_fds()
    }

    /// Tells the frontend the worker runs, and returns its intercom.
    pub fn ready(self) -> std::result::Result<Intercom, String> {
        boot::foreign_ready(self.sock, self.arrival)
    }

    /// Tells the frontend why the worker cannot run, and exits.
    pub fn fail(self, message: String) -> ! {
        self.arrival.fail(self.sock.as_fd(), message)
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

/// Encodes `value` (postcard) with the fds of the shared objects in it
/// ([`Event`](crate::Event), [`EventGroup`](crate::EventGroup),
/// [`SharedBuffer`](crate::SharedBuffer), ...) beside the bytes, for a
/// binding that sends them to a worker in its own way (inside a pickle).
pub fn encode_shared<T: serde::Serialize + ?Sized>(value: &T) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    crate::data::fds::encode(value)
        .map_err(|e| crate::Error::new(crate::ErrorKind::Encode).with_source(e))
}

/// The reverse of [`encode_shared`]: the shared objects map the memory the
/// fds refer to.
pub fn decode_shared<T: serde::de::DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
    crate::data::fds::decode(bytes, fds).map_err(|why| {
        crate::Error::new(crate::ErrorKind::Decode).with_source(std::io::Error::other(why))
    })
}
