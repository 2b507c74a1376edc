//! [`Bytes`]: a byte buffer a [`Value`](crate::Value) holds, owned or lent.
//!
//! A value built to be sent is encoded once — into the socket buffer or a
//! shared-memory slot — and dropped. When its bytes already live somewhere
//! (a numpy array's data, a memory-mapped frame), copying them into a
//! `Vec` first only to copy them again while encoding doubles the cost of
//! a large message. A lent buffer lets the encoder read them where they
//! are: the program hands over an owner ([`LentBytes`]) that keeps the
//! memory alive and unchanged for as long as the value exists. Received
//! buffers are always owned.

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

/// A byte buffer: owned (`Vec<u8>`), or lent by the program without a copy.
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

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        crate::serde_impl::bytes::deserialize(d).map(Bytes::from)
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
