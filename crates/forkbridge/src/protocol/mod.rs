//! The protocol between a frontend and its backend: frames on the stream,
//! the typed-call encoding and fault reports. Pure: no I/O.

pub(crate) mod call;
pub(crate) mod fault;
pub(crate) mod wire;
