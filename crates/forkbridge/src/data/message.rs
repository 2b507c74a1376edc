//! [`Message`]: a command name plus named parameters (valkka-multiprocess's
//! `MessageObject`).

use std::fmt;
use std::ops::Index;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::data::value::{FromValue, Value, write_py_map, write_py_str};
use crate::error::{Error, ErrorKind, Result};

/// The command of a backend's error report (see [`Backend`](crate::Backend)).
pub(crate) const ERROR_COMMAND: &str = "error";

/// A command name plus named parameters of dynamic [`Value`]s.
///
/// This is what crosses the fork: the frontend sends one, the backend
/// dispatches it to the handler registered for its [`command`](Message::command),
/// and the backend's replies are messages too. Parameters keep the order in
/// which they were added.
///
/// ```
/// use forkbridge::{Message, message};
///
/// let msg = Message::new("my_stuff").with("parameter", "gotcha!").with("n", 3);
/// assert_eq!(msg.command(), "my_stuff");
/// assert_eq!(msg["parameter"].as_str(), Some("gotcha!"));
/// assert_eq!(msg.param::<u32>("n")?, 3);
/// assert_eq!(msg.to_string(), "<Message: my_stuff: {'parameter': 'gotcha!', 'n': 3}>");
///
/// // The same message with the macro:
/// assert_eq!(msg, message!("my_stuff", parameter = "gotcha!", n = 3));
/// # Ok::<(), forkbridge::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    command: String,
    #[serde(with = "crate::data::serde_helpers::pairs")]
    params: Vec<(String, Value)>,
}

impl Message {
    /// A message with this command and no parameters.
    pub fn new(command: impl Into<String>) -> Message {
        Message {
            command: command.into(),
            params: Vec::new(),
        }
    }

    /// Adds (or replaces) a parameter; for building in one expression.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Message {
        self.set(name, value);
        self
    }

    /// Adds (or replaces) a parameter.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        let name = name.into();
        let value = value.into();
        match self.params.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.params.push((name, value)),
        }
    }

    /// The command and the parameters, by value: moves large values out
    /// without copying them.
    pub fn into_parts(self) -> (String, Vec<(String, Value)>) {
        (self.command, self.params)
    }

    /// The command (valkka-multiprocess's `msg()`).
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The parameter, if present.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Whether the parameter is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The parameter converted to `T`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::MissingParam`] if absent, [`ErrorKind::ParamType`] if it
    /// holds another type (or an integer that does not fit `T`).
    pub fn param<T: FromValue>(&self, name: &str) -> Result<T> {
        let value = self.get(name).ok_or_else(|| {
            Error::new(ErrorKind::MissingParam {
                name: name.to_owned(),
            })
        })?;
        T::from_value(value).ok_or_else(|| {
            Error::new(ErrorKind::ParamType {
                name: name.to_owned(),
                expected: T::EXPECTED,
                found: value.type_name(),
            })
        })
    }

    /// Removes the parameter and returns it (to move a large value out
    /// without copying it).
    pub fn take(&mut self, name: &str) -> Option<Value> {
        let pos = self.params.iter().position(|(k, _)| k == name)?;
        Some(self.params.remove(pos).1)
    }

    /// The parameters, in the order they were added.
    pub fn params(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Adds (or replaces) a parameter holding any serde value, encoded
    /// compactly (postcard) with a fingerprint of its type: the typed way to
    /// carry a struct inside a dynamic message, read back with
    /// [`typed`](Message::typed). Both sides are the same program, so the
    /// fingerprint tells whether they agree on the type.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// struct Detection { seq: u64, blobs: u32 }
    ///
    /// let msg = forkbridge::Message::new("result")
    ///     .with_typed("detection", &Detection { seq: 7, blobs: 3 })?;
    /// assert_eq!(msg.typed::<Detection>("detection")?, Detection { seq: 7, blobs: 3 });
    /// assert!(msg.typed::<String>("detection").is_err()); // another type
    /// # Ok::<(), forkbridge::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`] if serde cannot encode the value.
    pub fn with_typed<T: Serialize>(
        mut self,
        name: impl Into<String>,
        value: &T,
    ) -> Result<Message> {
        let mut bytes = crate::data::codec::fingerprint::<T>()
            .to_le_bytes()
            .to_vec();
        crate::data::codec::append(value, &mut bytes)
            .map_err(|e| Error::new(ErrorKind::Encode).with_source(e))?;
        self.set(name, Value::Bytes(bytes.into()));
        Ok(self)
    }

    /// Reads a parameter written by [`with_typed`](Message::with_typed).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::MissingParam`]; [`ErrorKind::ParamType`] if it is not a
    /// typed value of `T` (another type, or not written by `with_typed`);
    /// [`ErrorKind::Decode`] if the bytes do not decode.
    pub fn typed<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let wrong = |found: &'static str| {
            Error::new(ErrorKind::ParamType {
                name: name.to_owned(),
                expected: std::any::type_name::<T>(),
                found,
            })
        };
        let value = self.get(name).ok_or_else(|| {
            Error::new(ErrorKind::MissingParam {
                name: name.to_owned(),
            })
        })?;
        let bytes = value.as_bytes().ok_or_else(|| wrong(value.type_name()))?;
        let (fp, body) = bytes.split_at_checked(8).ok_or_else(|| wrong("bytes"))?;
        if fp != crate::data::codec::fingerprint::<T>().to_le_bytes() {
            return Err(wrong("a typed value of another type"));
        }
        postcard::from_bytes(body).map_err(|e| Error::new(ErrorKind::Decode).with_source(e))
    }

    /// Whether this is an error report from a backend: command `"error"`,
    /// with these parameters (all strings):
    ///
    /// | parameter | meaning |
    /// |---|---|
    /// | `kind` | `"handler_error"` (a handler returned an error), `"panic"`, `"unknown_command"`, `"decode"` (a frame or its arguments did not decode, or it was over the size limit), `"pre_run"` (the process then ends); an async backend's background tasks add `"task_error"` and `"task_panic"` |
    /// | `command` | the command being handled (empty for a frame that did not decode) |
    /// | `error` | the error's text or the panic message |
    /// | `process` | the process name |
    ///
    /// The backend logs the fault too, and its loop goes on.
    pub fn is_error(&self) -> bool {
        self.command == ERROR_COMMAND
    }
}

/// `msg["name"]`, like valkka-multiprocess's `msg["par1"]`.
///
/// # Panics
///
/// If the parameter is absent (as Python raises `KeyError`); use
/// [`Message::get`] or [`Message::param`] to handle absence.
impl Index<&str> for Message {
    type Output = Value;

    fn index(&self, name: &str) -> &Value {
        match self.get(name) {
            Some(v) => v,
            None => panic!("message '{}' has no parameter '{name}'", self.command),
        }
    }
}

/// Formats like valkka-multiprocess: `<Message: command: {'name': value, ...}>`.
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Message: {}: ", self.command)?;
        write_py_map(f, self.params.iter().map(|(k, v)| (PyStr(k), v)))?;
        f.write_str(">")
    }
}

struct PyStr<'a>(&'a str);

impl fmt::Display for PyStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_py_str(f, self.0)
    }
}

/// Builds a [`Message`]: `message!("cmd", name = value, ...)`.
///
/// Parameter names are identifiers; for other names use
/// [`Message::with`].
///
/// ```
/// let msg = forkbridge::message!("resize", width = 640, height = 480);
/// assert_eq!(msg.param::<i64>("height")?, 480);
/// # Ok::<(), forkbridge::Error>(())
/// ```
#[macro_export]
macro_rules! message {
    ($command:expr $(, $name:ident = $value:expr)* $(,)?) => {
        $crate::Message::new($command)$(.with(stringify!($name), $value))*
    };
}
