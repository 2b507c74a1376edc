//! The atomics of the lock-free protocols shared between processes (event
//! words, ring slots): std's, or loom's under `--cfg loom`, so that the
//! model checker (`checks/loom`) explores the very code that runs.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
