//! The pieces both ends of a link use to carry a stream of frames: a
//! publisher that never drops, a pump from a stream to the network, a
//! sink from the network into a stream, and the 4-byte integers of the
//! `exit` and `sig` keys.

use std::io::Read;

use forkbridge::relay::{FrameReader, FrameWriter};
use zenoh::Wait;
use zenoh::pubsub::Publisher;
use zenoh::qos::CongestionControl;
use zenoh::sample::Sample;

use crate::error::{Error, Result};

/// A publisher on `key` that blocks under congestion (Zenoh's default for
/// a `put` drops): a slow reader slows its writer instead of losing
/// frames.
pub(crate) fn publisher(
    session: &zenoh::Session,
    key: String,
    what: &str,
) -> Result<Publisher<'static>> {
    session
        .declare_publisher(key)
        .congestion_control(CongestionControl::Block)
        .wait()
        .map_err(|e| Error::link(&format!("cannot publish {what}"), e))
}

/// Publishes the stream's frames, a run of whole ones per sample, until
/// the stream ends or the network refuses; a frame that must not cross is
/// logged and skipped. `ready` is asked before each sample (`false`:
/// drop it).
pub(crate) fn pump<R: Read>(
    mut reader: FrameReader<R>,
    output: &Publisher<'_>,
    name: &str,
    mut ready: impl FnMut() -> bool,
) {
    loop {
        match reader.next_run() {
            Ok(Some(run)) => {
                if ready() && output.put(run.to_vec()).wait().is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) if e.kind() == &forkbridge::ErrorKind::Io => return,
            Err(e) => log::warn!("'{name}': a frame was not sent: {e}"),
        }
    }
}

/// Writes a sample into a stream (see [`FrameWriter`]); one that is not
/// whole frames within the limit is logged and dropped, and the stream
/// stays in step. A stream whose reader is gone is not logged: the end is
/// reported on its own.
pub(crate) fn deliver(sample: &Sample, writer: &FrameWriter, name: &str) {
    match writer.deliver(&sample.payload().to_bytes()) {
        Err(e) if e.kind() != &forkbridge::ErrorKind::Io => {
            log::warn!("'{name}': dropped a sample from the network: {e}")
        }
        _ => {}
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
