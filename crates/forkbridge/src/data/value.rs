//! [`Value`]: the dynamic values a [`Message`](crate::Message) carries.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One dynamic value: what a parameter of a [`Message`](crate::Message) holds.
///
/// The set mirrors what valkka-multiprocess's pickled `MessageObject` kwargs carry in
/// practice and what MessagePack or JSON can express: null, booleans,
/// integers, floats, strings, bytes, lists and maps (in insertion order, with
/// keys of any value type, as Python dicts allow). Two variants exist for
/// the Python binding and are appended last so that older encodings still
/// decode: [`Value::Tuple`] (a Python tuple, which a Rust reader sees as a
/// list) and [`Value::Pickled`] (any other Python object, pickled; opaque to
/// Rust, which may still forward it).
///
/// Integers are normalised on construction: every integer that fits an
/// `i64` is [`Value::Int`]; only larger unsigned ones are [`Value::UInt`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// No value (Python's `None`).
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// A 64-bit float.
    Float(f64),
    /// A UTF-8 string.
    Str(String),
    /// A byte string (owned, or lent: see [`Bytes`](crate::Bytes)).
    Bytes(crate::Bytes),
    /// A list of values.
    List(#[serde(deserialize_with = "crate::data::serde_helpers::nested::list")] Vec<Value>),
    /// A map, in insertion order.
    Map(
        #[serde(
            serialize_with = "crate::data::serde_helpers::pairs::serialize",
            deserialize_with = "crate::data::serde_helpers::nested::map"
        )]
        Vec<(Value, Value)>,
    ),
    /// A tuple: a list that a Python end gets back as a `tuple`.
    /// [`as_list`](Value::as_list) and the list conversions accept it.
    Tuple(#[serde(deserialize_with = "crate::data::serde_helpers::nested::list")] Vec<Value>),
    /// A Python object of a type with no native variant (a `set`, a class
    /// instance, a numpy array…), pickled by the Python end that sent it.
    /// Only a Python end can read it; Rust code can forward it unchanged.
    Pickled {
        /// The object's qualified type name, for error messages
        /// (`"numpy.ndarray"`).
        type_name: String,
        /// The pickle (protocol 5).
        #[serde(with = "crate::data::serde_helpers::bytes")]
        data: Vec<u8>,
        /// Its out-of-band buffers (protocol 5's `PickleBuffer`s: a numpy
        /// array's data travels here, not copied into `data`, and may be
        /// lent rather than copied when sending; see [`Bytes`](crate::Bytes)).
        buffers: Vec<crate::Bytes>,
    },
}

impl Value {
    /// The name of the value's type, as used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::UInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Map(_) => "map",
            Value::Tuple(_) => "tuple",
            Value::Pickled { .. } => "pickled Python object",
        }
    }

    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The integer, if this is one that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            Value::UInt(u) => i64::try_from(u).ok(),
            _ => None,
        }
    }

    /// The integer, if this is a non-negative one.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Int(i) => u64::try_from(i).ok(),
            Value::UInt(u) => Some(u),
            _ => None,
        }
    }

    /// The number as a float (integers convert, as in Python arithmetic).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(f) => Some(f),
            Value::Int(i) => Some(i as f64),
            Value::UInt(u) => Some(u as f64),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b.as_slice()),
            _ => None,
        }
    }

    /// The items, if this is a list or a tuple.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) | Value::Tuple(l) => Some(l),
            _ => None,
        }
    }

    /// The entries, if this is a map.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }
}

/// Formats like Python's `repr`, so a [`Message`](crate::Message) prints
/// like valkka-multiprocess's `MessageObject`: `'text'`, `b'\x00'`, `None`, `True`,
/// `1.0`, `[1, 2]`, `{'k': 1}`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("None"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Float(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e16 => {
                write!(f, "{x:.1}")
            }
            Value::Float(x) if x.is_nan() => f.write_str("nan"),
            Value::Float(x) if x.is_infinite() => {
                f.write_str(if *x > 0.0 { "inf" } else { "-inf" })
            }
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write_py_str(f, s),
            Value::Bytes(b) => {
                f.write_str("b'")?;
                for &byte in b.as_slice() {
                    match byte {
                        b'\\' => f.write_str("\\\\")?,
                        b'\'' => f.write_str("\\'")?,
                        b'\n' => f.write_str("\\n")?,
                        b'\r' => f.write_str("\\r")?,
                        b'\t' => f.write_str("\\t")?,
                        0x20..=0x7e => write!(f, "{}", byte as char)?,
                        _ => write!(f, "\\x{byte:02x}")?,
                    }
                }
                f.write_str("'")
            }
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Map(entries) => write_py_map(f, entries.iter().map(|(k, v)| (k, v))),
            Value::Tuple(items) => {
                f.write_str("(")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str(if items.len() == 1 { ",)" } else { ")" })
            }
            Value::Pickled {
                type_name,
                data,
                buffers,
            } => {
                let len = data.len() + buffers.iter().map(crate::Bytes::len).sum::<usize>();
                write!(f, "<pickled {type_name}, {len} bytes>")
            }
        }
    }
}

/// Python's `repr` of a string: single quotes, or double quotes when the
/// text holds a single quote and no double quote.
pub(crate) fn write_py_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    write!(f, "{quote}")?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            c if c == quote => write!(f, "\\{c}")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\x{:02x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    write!(f, "{quote}")
}

pub(crate) fn write_py_map<'a, K: fmt::Display + 'a>(
    f: &mut fmt::Formatter<'_>,
    entries: impl Iterator<Item = (K, &'a Value)>,
) -> fmt::Result {
    f.write_str("{")?;
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{k}: {v}")?;
    }
    f.write_str("}")
}

// ===== conversions into Value =====

macro_rules! from_signed {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::Int(v as i64)
            }
        }
    )*};
}
from_signed!(i8, i16, i32, i64, isize, u8, u16, u32);

macro_rules! from_unsigned {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                match i64::try_from(v) {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::UInt(v as u64),
                }
            }
        }
    )*};
}
from_unsigned!(u64, usize);

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Value {
        Value::Float(f64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Bytes(v.to_vec().into())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v.into())
    }
}

impl From<crate::Bytes> for Value {
    fn from(v: crate::Bytes) -> Value {
        Value::Bytes(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl From<()> for Value {
    fn from(_: ()) -> Value {
        Value::Null
    }
}

macro_rules! from_list {
    ($($t:ty),*) => {$(
        impl From<Vec<$t>> for Value {
            fn from(v: Vec<$t>) -> Value {
                Value::List(v.into_iter().map(Value::from).collect())
            }
        }
        impl From<&[$t]> for Value {
            fn from(v: &[$t]) -> Value {
                Value::List(v.iter().cloned().map(Value::from).collect())
            }
        }
    )*};
}
from_list!(
    Value, bool, i32, i64, u32, u64, usize, f32, f64, String, &str
);

// ===== conversions out of Value =====

/// Types that [`Message::param`](crate::Message::param) can extract from a
/// [`Value`].
///
/// Integers convert when they fit (a `Value::Int(300)` is not a `u8`),
/// floats accept integers, `Vec<u8>` accepts bytes or a list of small
/// integers, and `Option<T>` maps null to `None`.
pub trait FromValue: Sized {
    /// The type's name in error messages.
    const EXPECTED: &'static str;

    /// Converts, or `None` if the value does not hold this type.
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for Value {
    const EXPECTED: &'static str = "value";
    fn from_value(value: &Value) -> Option<Self> {
        Some(value.clone())
    }
}

impl FromValue for bool {
    const EXPECTED: &'static str = "bool";
    fn from_value(value: &Value) -> Option<Self> {
        value.as_bool()
    }
}

macro_rules! from_value_int {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            const EXPECTED: &'static str = stringify!($t);
            fn from_value(value: &Value) -> Option<Self> {
                match *value {
                    Value::Int(i) => <$t>::try_from(i).ok(),
                    Value::UInt(u) => <$t>::try_from(u).ok(),
                    _ => None,
                }
            }
        }
    )*};
}
from_value_int!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

impl FromValue for f64 {
    const EXPECTED: &'static str = "float";
    fn from_value(value: &Value) -> Option<Self> {
        value.as_f64()
    }
}

impl FromValue for f32 {
    const EXPECTED: &'static str = "float";
    fn from_value(value: &Value) -> Option<Self> {
        value.as_f64().map(|f| f as f32)
    }
}

impl FromValue for String {
    const EXPECTED: &'static str = "string";
    fn from_value(value: &Value) -> Option<Self> {
        value.as_str().map(str::to_owned)
    }
}

impl FromValue for Vec<u8> {
    const EXPECTED: &'static str = "bytes";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Bytes(b) => Some(b.as_slice().to_vec()),
            Value::List(items) | Value::Tuple(items) => items.iter().map(u8::from_value).collect(),
            _ => None,
        }
    }
}

/// A byte string without a copy (a lent one stays lent).
impl FromValue for crate::Bytes {
    const EXPECTED: &'static str = "bytes";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Bytes(b) => Some(b.clone()),
            _ => None,
        }
    }
}

macro_rules! from_value_list {
    ($($t:ty),*) => {$(
        impl FromValue for Vec<$t> {
            const EXPECTED: &'static str = "list";
            fn from_value(value: &Value) -> Option<Self> {
                value.as_list()?.iter().map(<$t>::from_value).collect()
            }
        }
    )*};
}
from_value_list!(Value, bool, i32, i64, u32, u64, usize, f32, f64, String);

impl<T: FromValue> FromValue for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    #[test]
    fn display_is_python_repr() {
        let msg = Message::new("cmd")
            .with("a", 1)
            .with("s", "it's")
            .with("q", "say \"hi\"")
            .with("f", 2.0)
            .with("b", &b"\x00a'"[..])
            .with("n", Value::Null)
            .with("t", true)
            .with("l", vec![1.5, -0.25])
            .with("m", Value::Map(vec![(Value::from(1), Value::from("x"))]));
        assert_eq!(
            msg.to_string(),
            "<Message: cmd: {'a': 1, 's': \"it's\", 'q': 'say \"hi\"', 'f': 2.0, \
             'b': b'\\x00a\\'', 'n': None, 't': True, 'l': [1.5, -0.25], 'm': {1: 'x'}}>"
        );
    }

    #[test]
    fn integers_normalise_and_convert_checked() {
        assert_eq!(Value::from(5u64), Value::Int(5));
        assert_eq!(Value::from(u64::MAX), Value::UInt(u64::MAX));
        let msg = Message::new("x")
            .with("v", 300)
            .with("neg", -1)
            .with("big", u64::MAX);
        assert_eq!(msg.param::<u16>("v").unwrap(), 300);
        assert!(msg.param::<u8>("v").is_err());
        assert!(msg.param::<u32>("neg").is_err());
        assert_eq!(msg.param::<u64>("big").unwrap(), u64::MAX);
        assert!(msg.param::<i64>("big").is_err());
        assert_eq!(msg.param::<f64>("v").unwrap(), 300.0);
        assert_eq!(msg.param::<Option<i32>>("v").unwrap(), Some(300));
    }

    #[test]
    fn param_errors_are_typed() {
        use crate::ErrorKind;
        let msg = Message::new("x").with("s", "text");
        let missing = msg.param::<i32>("nope").unwrap_err();
        assert_eq!(
            missing.kind(),
            &ErrorKind::MissingParam {
                name: "nope".into()
            }
        );
        assert_eq!(missing.to_string(), "no parameter 'nope'");
        let wrong = msg.param::<Vec<u8>>("s").unwrap_err();
        assert_eq!(
            wrong.kind(),
            &ErrorKind::ParamType {
                name: "s".into(),
                expected: "bytes",
                found: "string"
            }
        );
    }

    #[test]
    fn message_serde_round_trips_through_json_and_postcard() {
        let msg = crate::message!("resize", width = 640, name = "cam-1", data = vec![1u8, 2])
            .with("nested", Value::List(vec![Value::Null, Value::from(1.5)]));
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), msg);
        let bytes = postcard::to_stdvec(&msg).unwrap();
        assert_eq!(postcard::from_bytes::<Message>(&bytes).unwrap(), msg);
    }

    #[test]
    fn with_replaces_and_take_removes() {
        let mut msg = Message::new("x").with("a", 1).with("a", 2);
        assert_eq!(msg.params().len(), 1);
        assert_eq!(msg["a"], Value::Int(2));
        assert_eq!(msg.take("a"), Some(Value::Int(2)));
        assert!(!msg.contains("a"));
    }
}
