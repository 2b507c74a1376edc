//! Entry points for the coverage-guided fuzzer in `fuzz/`.
//!
//! The decoders are private, so the fuzz targets reach them through this
//! module, which exists only when the crate is built with `--cfg fuzzing`
//! (what `fuzz/run` does) or for its own tests. The same functions replay
//! the committed corpus in the ordinary test suite, so every input the
//! fuzzer ever kept is checked on every `cargo test`, no fuzzer needed.
//!
//! Each entry panics only when a property fails; a decode error is a
//! correct answer to hostile bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Message;
use crate::protocol::call::{decode_args, decode_reply};
use crate::protocol::wire::{self, Decoder, Fingerprints, Frame, LEN_BYTES};

/// Feeds `data` through the stream decoder the way a socket would.
///
/// The first byte picks the read size (1–64 bytes) and the maximum frame
/// (16 B–64 KiB), so framing is exercised at every split and across the
/// too-large path. Properties: no panic; the decoder never holds more than
/// one maximum frame plus one read; every message decoded re-encodes to
/// bytes that decode to the same encoding (the round trip is stable).
pub fn frames(data: &[u8]) {
    let Some((&knobs, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(knobs & 0x3f) + 1;
    let max = 16usize << ((knobs >> 6) * 4);
    let mut dec = Decoder::new(max);
    for piece in stream.chunks(chunk) {
        dec.buffer().extend_from_slice(piece);
        while let Some(frame) = dec.next_frame() {
            if let Ok(Frame::Message(msg) | Frame::MessageFds(msg, _)) = frame {
                round_trip(&msg);
            }
        }
        let held = dec.buffer().len();
        assert!(
            held <= LEN_BYTES + max + chunk,
            "decoder holds {held} bytes with max frame {max} and reads of {chunk}"
        );
    }
}

/// Decodes `data` as a message body (the postcard encoding after the kind
/// byte) and checks the round trip of whatever decodes.
pub fn message(data: &[u8]) {
    if let Ok(msg) = postcard::from_bytes::<Message>(data) {
        round_trip(&msg);
    }
}

/// A typed command's argument shape with every kind of field serde has:
/// strings, bytes, options, floats, enums, sequences and maps.
#[derive(Debug, Serialize, Deserialize)]
struct Args {
    name: String,
    data: Vec<u8>,
    n: Option<u64>,
    f: f64,
    kind: Kind,
    items: Vec<(i32, String)>,
    map: BTreeMap<String, u16>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Kind {
    A,
    B(u8),
    C { x: i64 },
}

/// Decodes `data` as a typed call (first byte even) or a reply (odd), then
/// its arguments or value the way a handler or a client would.
///
/// Properties: no panic; a call whose fingerprints are not this handler's
/// is refused; whatever decodes re-encodes to a stable encoding.
pub fn typed(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let mut frame = u32::try_from(body.len() + 1)
        .unwrap()
        .to_le_bytes()
        .to_vec();
    frame.push(if which % 2 == 0 {
        wire::KIND_CALL
    } else {
        wire::KIND_REPLY
    });
    frame.extend_from_slice(body);
    let mut dec = Decoder::new(usize::MAX >> 1);
    dec.buffer().extend_from_slice(&frame);
    match dec.next_frame() {
        Some(Ok(Frame::Call {
            id,
            command,
            types,
            args,
        })) => {
            let checked = decode_args::<Args, Args>(&command, types, &args);
            let ours = Fingerprints::of::<Args, Args>();
            assert!(
                checked.is_err() || types.args == 0 || types.args == ours.args,
                "a call with foreign argument types was accepted"
            );
            // Past the type check, as a caller with matching types gets.
            if let Ok(value) = decode_args::<Args, Args>(&command, Fingerprints::default(), &args) {
                let mut first = Vec::new();
                wire::encode_call(&mut first, id, &command, ours, &value, usize::MAX >> 1)
                    .expect("decoded arguments encode");
                let mut dec = Decoder::new(usize::MAX >> 1);
                dec.buffer().extend_from_slice(&first);
                let Some(Ok(Frame::Call {
                    args: again, types, ..
                })) = dec.next_frame()
                else {
                    panic!("re-encoded call of {value:?} does not decode");
                };
                let value = decode_args::<Args, Args>(&command, types, &again)
                    .expect("re-encoded arguments decode");
                assert_eq!(
                    postcard::to_allocvec(&value).unwrap(),
                    again,
                    "unstable round trip"
                );
            }
        }
        Some(Ok(Frame::Reply {
            result: Ok(value), ..
        })) => {
            if let Ok(reply) = decode_reply::<Args>(&value, "fuzz") {
                let first = postcard::to_allocvec(&reply).unwrap();
                let again = decode_reply::<Args>(&first, "fuzz").expect("re-encoded reply decodes");
                assert_eq!(
                    postcard::to_allocvec(&again).unwrap(),
                    first,
                    "unstable round trip"
                );
            }
        }
        _ => {}
    }
}

fn round_trip(msg: &Message) {
    let mut first = Vec::new();
    wire::encode_message(&mut first, msg, usize::MAX >> 1).expect("a decoded message encodes");
    let mut dec = Decoder::new(usize::MAX >> 1);
    dec.buffer().extend_from_slice(&first);
    let again = match dec.next_frame() {
        Some(Ok(Frame::Message(again))) => again,
        other => panic!("re-encoded {msg:?} decoded as {other:?}"),
    };
    let mut second = Vec::new();
    wire::encode_message(&mut second, &again, usize::MAX >> 1).expect("encodes");
    assert_eq!(first, second, "round trip of {msg:?} is not stable");
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Replays every input the fuzzer kept (`fuzz/corpus/<target>/`).
    fn replay(target: &str, entry: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus")
            .join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut count = 0;
        for entry_path in entries {
            let path = entry_path.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| entry(&data));
            assert!(outcome.is_ok(), "{} fails", path.display());
            count += 1;
        }
        assert!(count > 0, "{} holds no inputs", dir.display());
    }

    // Not under Miri: the corpus replay takes minutes per target there;
    // checks/miri runs the decoders on the wire module's own inputs.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn frames_corpus_replays() {
        replay("frames", super::frames);
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn typed_corpus_replays() {
        replay("typed", super::typed);
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn message_corpus_replays() {
        replay("message", super::message);
    }
}
