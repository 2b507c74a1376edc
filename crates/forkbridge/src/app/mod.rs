//! What a program builds from processes: the main context, `select` over
//! events and fds, and the logger format.

pub(crate) mod logger;
pub(crate) mod main_context;
pub(crate) mod select;
