//! What crosses between processes, independent of how: [`Value`](crate::Value),
//! [`Message`](crate::Message), [`Bytes`](crate::Bytes) and their serde
//! forms. Pure: no I/O, no knowledge of frames or processes.

pub(crate) mod bytes;
pub(crate) mod codec;
pub(crate) mod fds;
pub(crate) mod message;
pub(crate) mod serde_helpers;
pub(crate) mod value;
