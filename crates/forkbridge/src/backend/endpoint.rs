//! The backend's end of its intercom, and the one dispatch core both loops
//! share.
//!
//! The blocking loop and the async loop differ only in how they wait and
//! how they run a handler (a call, or an awaited future). Everything else
//! — which frames ask for work, what a malformed one becomes, how a
//! handler's outcome, a ping, an unknown command and a typed call's answer
//! are reported — is here, once:
//!
//! ```text
//! while let Some(incoming) = endpoint.next_incoming() {
//!     match incoming {
//!         Incoming::Message(msg) => /* find the handler, run it, */ endpoint.handled(..),
//!         Incoming::Call(call) => /* run the typed handler, */ endpoint.answer(..),
//!         Incoming::Stop => break,
//!     }
//!     endpoint.after_handler(); // then the loop flushes, its own way
//! }
//! ```

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::data::message::{ERROR_COMMAND, Message};
use crate::error::panic_message;
use crate::protocol::fault::FaultKind;
use crate::protocol::wire::{Failure, Fingerprints, Frame};
use crate::transport::conn::Conn;
use crate::transport::lane::LaneRings;

use super::HandlerResult;

/// What the child needs to know besides the backend value.
#[derive(Debug)]
pub(crate) struct ChildInfo {
    pub(crate) name: String,
    pub(crate) target: String,
    pub(crate) max_frame: usize,
    /// How long the loop spins on the socket before it sleeps.
    pub(crate) spin: std::time::Duration,
    /// The shared-memory lane for large messages, if asked for.
    pub(crate) lane: Option<LaneRings>,
}

impl ChildInfo {
    /// The child's connection over `fd`, with its end of the large-message
    /// lane if the process has one.
    pub(crate) fn conn<F: AsFd>(&self, fd: F) -> Conn<F> {
        let mut conn = Conn::new(fd, self.max_frame);
        if let Some(rings) = &self.lane {
            match rings.backend_end() {
                Ok(lane) => conn.set_lane(lane),
                Err(e) => log::warn!(target: &self.target, "large-message lane unavailable: {e}"),
            }
        }
        conn
    }

    /// The child's end over `fd`, with its end of the large-message lane if
    /// the process has one.
    pub(crate) fn endpoint<F: AsFd>(self, fd: F) -> Endpoint<F> {
        Endpoint {
            conn: self.conn(fd),
            name: self.name,
            target: self.target,
            stop: false,
            fds: Vec::new(),
        }
    }
}

/// The backend's end of the intercom, with what every loop keeps beside it.
#[derive(Debug)]
pub(crate) struct Endpoint<F: AsFd> {
    pub(crate) conn: Conn<F>,
    /// The process name given to the frontend's builder.
    pub(crate) name: String,
    /// The logging target, `TypeName.name`.
    pub(crate) target: String,
    /// A handler asked the loop to end.
    pub(crate) stop: bool,
    /// The fds that came with the message being handled.
    pub(crate) fds: Vec<OwnedFd>,
}

/// What a frame asks of the loop.
pub(crate) enum Incoming {
    /// Run this message's handler; the fds that came with it are in
    /// [`Endpoint::fds`].
    Message(Message),
    /// Run a typed handler and answer.
    Call(Call),
    /// The frontend's stop request.
    Stop,
}

/// A typed call as it arrived.
pub(crate) struct Call {
    pub(crate) id: u64,
    pub(crate) command: String,
    pub(crate) types: Fingerprints,
    pub(crate) args: Vec<u8>,
}

impl<F: AsFd> Endpoint<F> {
    /// The next frame that asks for work, from what is buffered (`None`:
    /// the loop must read or wait). Frames that do not — a lane marker (the
    /// connection has turned it into its message), a stray reply — are
    /// passed over, and one that does not decode, or whose fds did not
    /// arrive, is reported and skipped.
    pub(crate) fn next_incoming(&mut self) -> Option<Incoming> {
        while let Some(frame) = self.conn.next_frame() {
            match frame {
                Ok(Frame::Message(msg)) => return Some(Incoming::Message(msg)),
                Ok(Frame::MessageFds(msg, count)) => match self.conn.take_fds(count) {
                    Ok(fds) => {
                        self.fds = fds;
                        return Some(Incoming::Message(msg));
                    }
                    Err(e) => self.report(FaultKind::Decode, msg.command(), &e.to_string()),
                },
                Ok(Frame::Call {
                    id,
                    command,
                    types,
                    args,
                }) => {
                    return Some(Incoming::Call(Call {
                        id,
                        command,
                        types,
                        args,
                    }));
                }
                Ok(Frame::Lane(_)) => {}
                Ok(Frame::Reply { .. }) => {
                    log::debug!(target: &self.target, "ignoring a reply frame: backends make no calls");
                }
                Ok(Frame::Stop) => {
                    log::debug!(target: &self.target, "stop requested");
                    return Some(Incoming::Stop);
                }
                Err(e) => self.report(FaultKind::Decode, "", &e.to_string()),
            }
        }
        None
    }

    /// After each handler: the fds it did not take are closed.
    pub(crate) fn after_handler(&mut self) {
        self.fds.clear();
    }

    /// Reports a message handler's outcome: nothing, its error, or its
    /// panic.
    pub(crate) fn handled(&mut self, command: &str, outcome: std::thread::Result<HandlerResult>) {
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.report(FaultKind::HandlerError, command, &e.to_string()),
            Err(panic) => self.report(FaultKind::Panic, command, &panic_message(&*panic)),
        }
    }

    /// Answers a message no handler claimed: `"ping"` with a `"pong"`
    /// carrying the same parameters, anything else with an
    /// `unknown_command` report.
    pub(crate) fn unclaimed(&mut self, msg: &Message) {
        if msg.command() == "ping" {
            let mut pong = Message::new("pong");
            for (k, v) in msg.params() {
                pong.set(k, v.clone());
            }
            if let Err(e) = self.conn.feed(&pong) {
                log::warn!(target: &self.target, "could not answer ping: {e}");
            }
        } else {
            let command = msg.command();
            let text = format!("unknown command '{command}'");
            self.report(FaultKind::UnknownCommand, command, &text);
        }
    }

    /// Queues the answer to `call`: the encoded return value, or the
    /// failure (also logged); `outcome` is `None` when no typed handler has
    /// that name. A one-way call (id 0) gets no reply; its failure is
    /// reported as an `"error"` message like a message handler's.
    pub(crate) fn answer(
        &mut self,
        call: &Call,
        outcome: Option<std::thread::Result<Result<Vec<u8>, Failure>>>,
    ) {
        let command = &call.command;
        let outcome = match outcome {
            Some(Ok(result)) => result,
            Some(Err(panic)) => Err(Failure::new(FaultKind::Panic, panic_message(&*panic))),
            None => Err(Failure::new(
                FaultKind::UnknownCommand,
                format!("unknown typed command '{command}'"),
            )),
        };
        let target = &self.target;
        let fed = match (call.id, &outcome) {
            (0, Ok(_)) => Ok(()),
            (0, Err(f)) => {
                report(
                    &mut self.conn,
                    &self.name,
                    target,
                    &f.kind,
                    command,
                    &f.message,
                );
                Ok(())
            }
            (id, Ok(value)) => self.conn.feed_reply(id, Ok(value)),
            (id, Err(f)) => {
                log::error!(target: target, "{} in typed command '{command}': {}", f.kind, f.message);
                self.conn.feed_reply(id, Err(f))
            }
        };
        if let Err(e) = fed {
            // The reply itself is too large: tell the caller that instead.
            let failure = Failure::new(FaultKind::Encode, e.to_string());
            log::error!(target: target, "reply to '{command}' not sent: {e}");
            let _ = self.conn.feed_reply(call.id, Err(&failure));
        }
    }

    /// Logs a fault with the process's target and queues the `"error"`
    /// message that tells the frontend (see the `backend` module docs).
    pub(crate) fn report(&mut self, kind: FaultKind, command: &str, error: &str) {
        report(
            &mut self.conn,
            &self.name,
            &self.target,
            kind.as_str(),
            command,
            error,
        );
    }
}

/// Reports a fault that ended the backend before its loop (a served
/// worker that could not decode its backend) on `fd`, and flushes it.
pub(crate) fn report_before_run(fd: BorrowedFd<'_>, name: &str, kind: FaultKind, error: &str) {
    let mut conn = Conn::new(fd, crate::protocol::wire::DEFAULT_MAX_FRAME);
    report(&mut conn, name, name, kind.as_str(), "", error);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let _ = conn.flush(Some(deadline), None);
}

/// [`Endpoint::report`] for a kind known only by its wire name (a failed
/// call's, which may come from a backend of another language).
fn report<F: AsFd>(
    conn: &mut Conn<F>,
    name: &str,
    target: &str,
    kind: &str,
    command: &str,
    error: &str,
) {
    let level = if kind == FaultKind::UnknownCommand.as_str() {
        log::Level::Warn
    } else {
        log::Level::Error
    };
    match command {
        "" => log::log!(target: target, level, "{kind}: {error}"),
        _ => log::log!(target: target, level, "{kind} in command '{command}': {error}"),
    }
    let msg = Message::new(ERROR_COMMAND)
        .with("kind", kind)
        .with("command", command)
        .with("error", error)
        .with("process", name);
    if let Err(e) = conn.feed(&msg) {
        log::error!(target: target, "could not report the error: {e}");
    }
}
