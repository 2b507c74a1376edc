//! Objects in memory shared between processes: the frame ring, shared
//! buffers, events, event groups and sync indices. They name nothing above
//! the data layer: a process or a backend only hands them across (as a
//! fork's copy, or in their serde form: `cross/`).

pub(crate) mod buffer;
mod cross;
pub(crate) mod event;
pub(crate) mod event_group;
pub(crate) mod relayed;
pub(crate) mod ring;
pub(crate) mod sync_index;
