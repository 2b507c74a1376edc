//! serde helpers shared by [`Value`](crate::Value) and
//! [`Message`](crate::Message): byte strings as bytes (not a sequence of
//! numbers) and ordered pairs as a map.

pub(crate) mod bytes {
    use serde::de::SeqAccess;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    /// One decoder for byte strings: [`Bytes`](crate::Bytes)' (a large one
    /// decoded from lending memory is lent, then copied here).
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        crate::Bytes::deserialize(d).map(crate::Bytes::into_vec)
    }

    /// Bytes given as a sequence of numbers (JSON, for one).
    pub(crate) fn from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Vec<u8>, A::Error> {
        // Bounded by what the decoder already holds, never by a claimed size.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}

pub(crate) mod pairs {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        pairs: &[(K, V)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(pairs.len()))?;
        for (k, v) in pairs {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }

    pub(crate) fn deserialize<'de, K, V, D>(d: D) -> Result<Vec<(K, V)>, D::Error>
    where
        K: Deserialize<'de>,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        struct PairsVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for PairsVisitor<K, V> {
            type Value = Vec<(K, V)>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // A hostile length prefix must not allocate: cap the hint.
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(out)
            }
        }
        d.deserialize_map(PairsVisitor(PhantomData))
    }
}

/// Decoding of nested lists and maps with a depth limit: a hostile frame of
/// a few megabytes of "list of list of ..." must be a decode error, not a
/// stack overflow.
pub(crate) mod nested {
    use std::cell::Cell;

    use serde::{Deserialize, Deserializer};

    use crate::Value;

    /// Deeper than any real message; shallow enough for an 8 MiB stack or a
    /// 2 MiB thread stack.
    pub(crate) const MAX_DEPTH: u32 = 128;

    thread_local! {
        static DEPTH: Cell<u32> = const { Cell::new(0) };
    }

    struct Level;

    impl Level {
        fn enter<E: serde::de::Error>() -> Result<Level, E> {
            DEPTH.with(|d| {
                if d.get() >= MAX_DEPTH {
                    Err(E::custom(format_args!(
                        "values nested deeper than {MAX_DEPTH} levels"
                    )))
                } else {
                    d.set(d.get() + 1);
                    Ok(Level)
                }
            })
        }
    }

    impl Drop for Level {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get() - 1));
        }
    }

    pub(crate) fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
        let _level = Level::enter::<D::Error>()?;
        Vec::<Value>::deserialize(d)
    }

    pub(crate) fn map<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(Value, Value)>, D::Error> {
        let _level = Level::enter::<D::Error>()?;
        super::pairs::deserialize(d)
    }
}
