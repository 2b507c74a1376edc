//! How frames move: the connection over a socketpair, the shared-memory
//! lane for large messages, and the intercom a backend program adopts.

pub(crate) mod conn;
pub(crate) mod intercom;
pub(crate) mod lane;
