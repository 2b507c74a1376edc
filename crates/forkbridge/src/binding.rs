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

/// Rewrites `run` (whole frames, as [`relay::FrameCheck`](crate::relay::FrameCheck)
/// passed them, each at most `max` bytes) so that every pickled value in
/// its messages becomes `replace(type_name)`; other frames, and messages
/// without one, are copied as they are. `Ok(None)`: nothing to replace
/// (send `run` itself).
///
/// For a binding whose transport carries frames from peers it does not
/// trust: a pickle is code for the interpreter that loads it, so such a
/// peer's pickles must never reach the unpickler. Only message frames
/// carry the values a binding loads; the arguments of typed calls and
/// their replies are postcard bytes for the Rust types on either end.
///
/// # Errors
///
/// [`ErrorKind::Decode`](crate::ErrorKind::Decode) if a message frame does
/// not decode or `run` does not end on a frame's end;
/// [`ErrorKind::FrameTooLarge`](crate::ErrorKind::FrameTooLarge) if a
/// rewritten message outgrows `max`.
pub fn replace_pickles(
    run: &[u8],
    max: usize,
    replace: &mut dyn FnMut(&str) -> crate::Value,
) -> Result<Option<Vec<u8>>> {
    use crate::protocol::wire;

    fn holds_pickle(v: &crate::Value) -> bool {
        match v {
            crate::Value::Pickled { .. } => true,
            crate::Value::List(items) | crate::Value::Tuple(items) => {
                items.iter().any(holds_pickle)
            }
            crate::Value::Map(entries) => entries
                .iter()
                .any(|(k, v)| holds_pickle(k) || holds_pickle(v)),
            _ => false,
        }
    }
    fn rewrite(v: crate::Value, replace: &mut dyn FnMut(&str) -> crate::Value) -> crate::Value {
        match v {
            crate::Value::Pickled { type_name, .. } => replace(&type_name),
            crate::Value::List(items) => {
                crate::Value::List(items.into_iter().map(|v| rewrite(v, replace)).collect())
            }
            crate::Value::Tuple(items) => {
                crate::Value::Tuple(items.into_iter().map(|v| rewrite(v, replace)).collect())
            }
            crate::Value::Map(entries) => crate::Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (rewrite(k, replace), rewrite(v, replace)))
                    .collect(),
            ),
            other => other,
        }
    }
    let cut_short = || crate::Error::new(crate::ErrorKind::Decode).with_source("a frame cut short");
    let mut out: Option<Vec<u8>> = None;
    let mut pos = 0;
    while pos < run.len() {
        let head: [u8; wire::LEN_BYTES] = run
            .get(pos..pos + wire::LEN_BYTES)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(cut_short)?;
        let end = pos + wire::LEN_BYTES + u32::from_le_bytes(head) as usize;
        let frame = run.get(pos..end).ok_or_else(cut_short)?;
        let mut replaced = None;
        // Kind 0 is a message (see the table in `protocol::wire`).
        if let Some((&0, body)) = frame[wire::LEN_BYTES..].split_first() {
            let msg: Message = postcard::from_bytes(body)
                .map_err(|e| crate::Error::new(crate::ErrorKind::Decode).with_source(e))?;
            if msg.params().any(|(_, v)| holds_pickle(v)) {
                let (command, params) = msg.into_parts();
                let mut clean = Message::new(command);
                for (name, value) in params {
                    clean.set(name, rewrite(value, replace));
                }
                replaced = Some(clean);
            }
        }
        match (replaced, &mut out) {
            (Some(clean), out) => {
                let out = out.get_or_insert_with(|| run[..pos].to_vec());
                wire::encode_message(out, &clean, max)?;
            }
            (None, Some(out)) => out.extend_from_slice(frame),
            (None, None) => {}
        }
        pos = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;
    use crate::protocol::wire;

    fn pickled(name: &str) -> Value {
        Value::Pickled {
            type_name: name.to_owned(),
            data: b"evil".to_vec(),
            buffers: Vec::new(),
        }
    }

    #[test]
    fn pickles_are_replaced_and_the_rest_kept() {
        let mut run = Vec::new();
        let plain = Message::new("plain").with("x", 1);
        wire::encode_message(&mut run, &plain, 1 << 20).unwrap();
        let nested = Value::Map(vec![(
            Value::Str("k".into()),
            Value::List(vec![pickled("a.B")]),
        )]);
        let dirty = Message::new("dirty")
            .with("p", pickled("set"))
            .with("n", nested);
        wire::encode_message(&mut run, &dirty, 1 << 20).unwrap();
        wire::encode_stop(&mut run);
        let mut seen = Vec::new();
        let out = replace_pickles(&run, 1 << 20, &mut |t| {
            seen.push(t.to_owned());
            Value::Str(format!("refused {t}"))
        })
        .unwrap()
        .expect("rewritten");
        assert_eq!(seen, ["set", "a.B"]);
        let mut decoder = wire::Decoder::new(1 << 20);
        decoder.buffer().extend_from_slice(&out);
        let first = decoder.next_frame().unwrap().unwrap();
        assert!(matches!(first, wire::Frame::Message(m) if m == plain));
        let Some(Ok(wire::Frame::Message(m))) = decoder.next_frame() else {
            panic!("a message")
        };
        assert_eq!(m.get("p"), Some(&Value::Str("refused set".into())));
        assert!(matches!(decoder.next_frame(), Some(Ok(wire::Frame::Stop))));
        // Nothing to replace: `None`, and a cut run is refused.
        let mut clean = Vec::new();
        wire::encode_message(&mut clean, &plain, 1 << 20).unwrap();
        assert!(
            replace_pickles(&clean, 1 << 20, &mut |_| Value::Null)
                .unwrap()
                .is_none()
        );
        assert!(replace_pickles(&clean[..clean.len() - 1], 1 << 20, &mut |_| Value::Null).is_err());
    }
}
