//! [`Bytes`]: a byte buffer a [`Value`](crate::Value) holds, owned or lent.
//!
//! A value built to be sent is encoded once — into the socket buffer or a
//! shared-memory slot — and dropped. When its bytes already live somewhere
//! (a numpy array's data, a memory-mapped frame), copying them into a
//! `Vec` first only to copy them again while encoding doubles the cost of
//! a large message. A lent buffer lets the encoder read them where they
//! are: the program hands over an owner ([`LentBytes`]) that keeps the
//! memory alive and unchanged for as long as the value exists.
//!
//! Received buffers are owned, except for large byte strings of a message
//! that came through the shared-memory lane
//! ([`large_messages`](crate::MessageProcessBuilder::large_messages)):
//! those are lent by the lane's slot itself, read where the sender wrote
//! them, and the slot goes back to the sender when the last value lending
//! from it is dropped. Copying them out would cost as much as the sender's
//! copy in; the price is that a program keeping such a value keeps a lane
//! slot (see the builder's docs for what the sender does then).

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Memory lent to a [`Bytes`]: it must stay valid, and unchanged, as long
/// as this value exists (the Python binding implements it over a pinned
/// buffer of a numpy array, used while it holds the GIL).
pub trait LentBytes: Send + Sync + fmt::Debug {
    /// The lent bytes.
    fn as_bytes(&self) -> &[u8];
}

/// A byte buffer: owned (`Vec<u8>`), or lent without a copy — by the
/// program, or by the shared-memory slot a large message arrived in.
///
/// ```
/// use std::sync::Arc;
/// use forkbridge::{Bytes, Message};
///
/// // A frame the program keeps and sends many times: lent, not cloned.
/// let frame = Arc::new(vec![7u8; 1 << 20]);
/// let msg = Message::new("frame").with("data", Bytes::lent(frame.clone()));
/// let data: Bytes = msg.param("data")?; // no copy either
/// assert!(data.is_lent() && data.len() == 1 << 20);
/// let owned: Vec<u8> = msg.param("data")?; // a copy
/// assert_eq!(owned[0], 7);
/// # Ok::<(), forkbridge::Error>(())
/// ```
#[derive(Clone)]
pub struct Bytes(Repr);

#[derive(Clone)]
enum Repr {
    Owned(Vec<u8>),
    Lent(Arc<dyn LentBytes>),
}

impl Bytes {
    /// Bytes lent by `owner` (see [`LentBytes`]).
    pub fn lent(owner: Arc<dyn LentBytes>) -> Bytes {
        Bytes(Repr::Lent(owner))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Owned(v) => v,
            Repr::Lent(owner) => owner.as_bytes(),
        }
    }

    /// The bytes as a `Vec` (a copy only if they were lent).
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Repr::Owned(v) => v,
            Repr::Lent(owner) => owner.as_bytes().to_vec(),
        }
    }

    /// Whether the bytes are lent rather than owned.
    pub fn is_lent(&self) -> bool {
        matches!(self.0, Repr::Lent(_))
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LentBytes for Vec<u8> {
    fn as_bytes(&self) -> &[u8] {
        self
    }
}

impl LentBytes for Box<[u8]> {
    fn as_bytes(&self) -> &[u8] {
        self
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes(Repr::Owned(v))
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bytes")
            .field("len", &self.len())
            .field("lent", &self.is_lent())
            .finish()
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.as_slice())
    }
}

/// Byte strings at least this long are lent by the memory a message is
/// decoded from, when that memory lends itself (see [`decode_lending`]);
/// shorter ones are copied, so that small values never pin a slot.
const LEND_MIN: usize = 4096;

thread_local! {
    /// The memory the message being decoded on this thread lies in, when it
    /// may lend parts of itself.
    static LENDER: RefCell<Option<Arc<dyn LentBytes>>> = const { RefCell::new(None) };
}

/// Runs `decode` (which decodes from `memory.as_bytes()`) so that the large
/// byte strings it finds become views of `memory` instead of copies.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn decode_lending<R>(memory: Arc<dyn LentBytes>, decode: impl FnOnce(&[u8]) -> R) -> R {
    struct Reset(Option<Arc<dyn LentBytes>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            LENDER.with(|l| *l.borrow_mut() = self.0.take());
        }
    }
    let _reset = Reset(LENDER.with(|l| l.borrow_mut().replace(memory.clone())));
    decode(memory.as_bytes())
}

/// A part of a lending memory: `start..start + len` of `memory`.
#[derive(Debug)]
struct Part {
    memory: Arc<dyn LentBytes>,
    start: usize,
    len: usize,
}

impl LentBytes for Part {
    fn as_bytes(&self) -> &[u8] {
        &self.memory.as_bytes()[self.start..self.start + self.len]
    }
}

/// `part` as a view of the lending memory, if it lies inside it and is
/// worth lending.
fn lend(part: &[u8]) -> Option<Bytes> {
    if part.len() < LEND_MIN {
        return None;
    }
    LENDER.with(|l| {
        let memory = l.borrow().clone()?;
        let whole = memory.as_bytes();
        let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
        (start.checked_add(part.len())? <= whole.len()).then(|| {
            Bytes::lent(Arc::new(Part {
                memory,
                start,
                len: part.len(),
            }))
        })
    })
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<Bytes, E> {
                Ok(lend(v).unwrap_or_else(|| Bytes::from(v.to_vec())))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes::from(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes::from(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Bytes, A::Error> {
                crate::data::serde_helpers::bytes::from_seq(seq).map(Bytes::from)
            }
        }
        // Not `deserialize_byte_buf`: postcard answers that with an owned
        // copy, and only borrowed bytes can be lent.
        d.deserialize_bytes(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Static(&'static [u8]);
    impl LentBytes for Static {
        fn as_bytes(&self) -> &[u8] {
            self.0
        }
    }

    #[test]
    fn decoding_from_lending_memory_lends_large_byte_strings_only() {
        let msg = crate::Message::new("frame")
            .with("big", vec![9u8; LEND_MIN])
            .with("small", vec![1u8; 16])
            .with("list", vec![crate::Value::from(vec![7u8; LEND_MIN + 1])]);
        let memory: Arc<dyn LentBytes> = Arc::new(postcard::to_stdvec(&msg).unwrap());
        let back: crate::Message =
            decode_lending(memory.clone(), |b| postcard::from_bytes(b)).unwrap();
        assert_eq!(back, msg);
        let lent = |v: &crate::Value| matches!(v, crate::Value::Bytes(b) if b.is_lent());
        assert!(lent(&back["big"]));
        assert!(
            !lent(&back["small"]),
            "small values must not pin the memory"
        );
        assert!(lent(&back["list"].as_list().unwrap()[0]));
        // The views keep the memory alive; outside `decode_lending` nothing lends.
        drop(memory);
        assert_eq!(back["big"].as_bytes().unwrap(), &[9u8; LEND_MIN][..]);
        let again: crate::Message =
            postcard::from_bytes(&postcard::to_stdvec(&msg).unwrap()).unwrap();
        assert!(!lent(&again["big"]));
    }

    #[test]
    fn lent_and_owned_encode_alike_and_decode_owned() {
        let lent = Bytes::lent(Arc::new(Static(b"frame")));
        let owned = Bytes::from(b"frame".to_vec());
        assert_eq!(lent, owned);
        let a = postcard::to_stdvec(&lent).unwrap();
        assert_eq!(a, postcard::to_stdvec(&owned).unwrap());
        let back: Bytes = postcard::from_bytes(&a).unwrap();
        assert!(!back.is_lent());
        assert_eq!(back.into_vec(), b"frame");
        assert!(lent.is_lent() && lent.len() == 5 && !lent.is_empty());
    }
}
