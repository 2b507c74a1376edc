//! The pieces both ends of a link use to carry a stream of frames: a
//! publisher that never drops, a pump from a stream to the network, a
//! sink from the network into a stream, the credits that bound what a
//! sender may have in flight, and the integers of the `exit`, `sig` and
//! `ack` keys.
//!
//! # Credits
//!
//! A receiver never waits for its stream's reader (its callback runs in
//! the thread that receives for the whole link: see
//! [`FrameWriter`]), so what it cannot write at once waits in memory. A
//! sender may therefore have at most [`WINDOW`] bytes out that the
//! receiver has not written into its stream; the receiver acknowledges
//! each quarter window it writes (a sample on the direction's `ack` key:
//! the bytes written since the last one, `u64` LE), and a sender out of
//! credit waits. A slow reader so slows its sender, as a full local socket
//! does, and holds up nobody else on the link. A run of frames larger than
//! the window goes whole once the window is open.

use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use forkbridge::relay::{FrameReader, FrameWriter};
use zenoh::Wait;
use zenoh::pubsub::{Publisher, Subscriber};
use zenoh::qos::{CongestionControl, Priority};
use zenoh::sample::Sample;

use crate::error::{Error, Result};

/// The bytes a sender may have out that its receiver has not written.
pub(crate) const WINDOW: u64 = 8 << 20;

/// How often a receiver acknowledges: every quarter window written.
const ACK_EVERY: u64 = WINDOW / 4;

/// How often an acknowledging thread looks whether its stream ended.
const ACK_POLL: Duration = Duration::from_millis(100);

/// A publisher on `key` that blocks under congestion (Zenoh's default for
/// a `put` drops): a slow reader slows its writer instead of losing
/// frames.
pub(crate) fn publisher(
    session: &zenoh::Session,
    key: String,
    what: &str,
) -> Result<Publisher<'static>> {
    declare(session, key, what, Priority::default(), false)
}

/// A publisher for what must pass the data (`sig`, `ack`): a priority of
/// its own, so a queue full of frames does not hold it up; blocking, as
/// [`publisher`].
pub(crate) fn control_publisher(
    session: &zenoh::Session,
    key: String,
    what: &str,
) -> Result<Publisher<'static>> {
    declare(session, key, what, Priority::InteractiveHigh, true)
}

fn declare(
    session: &zenoh::Session,
    key: String,
    what: &str,
    priority: Priority,
    express: bool,
) -> Result<Publisher<'static>> {
    session
        .declare_publisher(key)
        .congestion_control(CongestionControl::Block)
        .priority(priority)
        .express(express)
        .wait()
        .map_err(|e| Error::link(&format!("cannot publish {what}"), e))
}

/// Publishes the stream's frames, a run of whole ones per sample, until
/// the stream ends or the network refuses; a frame that must not cross is
/// logged and skipped. `ready` is asked before each sample with its size
/// (`false`: drop it).
pub(crate) fn pump<R: Read>(
    mut reader: FrameReader<R>,
    output: &Publisher<'_>,
    name: &str,
    mut ready: impl FnMut(usize) -> bool,
) {
    loop {
        match reader.next_run() {
            Ok(Some(run)) => {
                if ready(run.len()) && output.put(run.to_vec()).wait().is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) if e.kind() == &forkbridge::ErrorKind::Io => return,
            Err(e) => log::warn!("'{name}': a frame was not sent: {e}"),
        }
    }
}

/// Writes a sample's payload into a stream (see [`FrameWriter`]); one
/// that is not whole frames within the limit, or that a sender past its
/// credit sent, is logged and dropped (`false`), and the stream stays in
/// step. A stream whose reader is gone is not logged: the end is reported
/// on its own.
pub(crate) fn deliver(payload: &[u8], writer: &FrameWriter, name: &str) -> bool {
    if (writer.queued() as u64) > WINDOW + writer.frames().max() as u64 {
        log::warn!("'{name}': dropped a sample sent past the window");
        return false;
    }
    match writer.deliver(payload) {
        Err(e) if e.kind() != &forkbridge::ErrorKind::Io => {
            log::warn!("'{name}': dropped a sample from the network: {e}");
            false
        }
        Err(_) => false,
        Ok(()) => true,
    }
}

/// The integer an `exit` or `sig` sample carries (`None`: not 4 bytes).
pub(crate) fn int_of(sample: &Sample) -> Option<i32> {
    let raw = sample.payload().to_bytes();
    <[u8; 4]>::try_from(&raw[..]).ok().map(i32::from_le_bytes)
}

/// The payload of an `exit` or `sig` sample.
pub(crate) fn int_payload(value: i32) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// What a sender may still send: [`WINDOW`] less what is out unacknowledged.
#[derive(Debug, Default)]
pub(crate) struct Credits {
    state: Mutex<Window>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Window {
    /// Sent and not acknowledged.
    out: u64,
    /// Nothing more will be sent: waits end.
    ended: bool,
}

impl Credits {
    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the window is open, then counts `n` bytes out; `false`
    /// once [`end`](Credits::end) was called.
    pub(crate) fn take(&self, n: usize) -> bool {
        let mut window = self.lock();
        while window.out >= WINDOW && !window.ended {
            window = self
                .changed
                .wait(window)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if window.ended {
            return false;
        }
        window.out += n as u64;
        true
    }

    /// An acknowledgement of `n` bytes.
    pub(crate) fn give(&self, n: u64) {
        let mut window = self.lock();
        window.out = window.out.saturating_sub(n);
        self.changed.notify_all();
    }

    /// A new receiver: nothing of it is out.
    pub(crate) fn reset(&self) {
        self.lock().out = 0;
        self.changed.notify_all();
    }

    /// Ends every wait, now and later.
    pub(crate) fn end(&self) {
        self.lock().ended = true;
        self.changed.notify_all();
    }
}

/// Gives `credits` what the receiver acknowledges on `key` (samples of
/// another size are ignored).
pub(crate) fn credit_subscriber(
    session: &zenoh::Session,
    key: String,
    credits: Arc<Credits>,
) -> Result<Subscriber<()>> {
    session
        .declare_subscriber(key)
        .callback(move |sample| {
            let raw = sample.payload().to_bytes();
            if let Ok(n) = <[u8; 8]>::try_from(&raw[..]) {
                credits.give(u64::from_le_bytes(n));
            }
        })
        .wait()
        .map_err(|e| Error::link("cannot subscribe to the peer's credit", e))
}

/// Acknowledges what `writer` writes into its stream, a quarter window at
/// a time, on `ack`, until the stream fails or `ended` says so.
pub(crate) fn acknowledge(writer: &FrameWriter, ack: &Publisher<'_>, ended: impl Fn() -> bool) {
    let mut acked = 0u64;
    loop {
        match writer.wait_delivered(acked + ACK_EVERY, ACK_POLL) {
            Ok(Some(total)) => {
                if ack
                    .put((total - acked).to_le_bytes().to_vec())
                    .wait()
                    .is_err()
                {
                    return;
                }
                acked = total;
            }
            Ok(None) if ended() => return,
            Ok(None) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use forkbridge::{Message, MessageProcess};

    use super::*;

    /// A receiver holds at most a window plus one frame its reader has not
    /// taken: a sender past its credit has its samples dropped, whole.
    #[test]
    fn a_sample_sent_past_the_window_is_dropped() {
        let max = 64 << 10;
        // One frame of almost `max` bytes, as a handle writes it.
        let (mut p, remote) = MessageProcess::builder("sender")
            .max_frame_size(max)
            .attach()
            .unwrap();
        p.send(Message::new("x").with("pad", vec![7u8; max - 64]))
            .unwrap();
        let mut reader = FrameReader::new(remote.stream().try_clone().unwrap(), remote.frames());
        let frame = reader.next_run().unwrap().unwrap().to_vec();
        // A handle nobody reads: what it cannot take waits in its writer.
        let (mut reader_side, far) = MessageProcess::builder("receiver")
            .max_frame_size(max)
            .attach()
            .unwrap();
        let bound = WINDOW as usize + max;
        let mut sent = 0;
        while far.writer().queued() <= bound {
            assert!(
                deliver(&frame, far.writer(), "receiver"),
                "refused within the window"
            );
            sent += 1;
            assert!(sent < 2 * bound / frame.len(), "the queue does not grow");
        }
        let queued = far.writer().queued();
        assert!(
            !deliver(&frame, far.writer(), "receiver"),
            "past the window"
        );
        assert_eq!(far.writer().queued(), queued, "nothing of it is kept");
        // The stream stays in step: what was kept arrives whole.
        let wait = std::time::Duration::from_secs(5);
        assert_eq!(reader_side.recv_timeout(wait).unwrap().command(), "x");
        // Both handles end here, reported as exited.
        use std::os::unix::process::ExitStatusExt;
        for end in [&remote, &far] {
            end.report_exit(std::process::ExitStatus::from_raw(0))
                .unwrap();
        }
        drop((p, reader_side));
    }
}
