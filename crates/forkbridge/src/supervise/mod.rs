//! Supervision: processes that come back when they die, pools of identical
//! workers, and a status snapshot of each.
//!
//! # Design
//!
//! A [`RestartPolicy`] says when a process is started again, how often
//! (restarts counted in a sliding window, as Erlang/OTP's supervisors do)
//! and how soon (the first restart at once, then an exponential backoff up
//! to a cap), so a process killed once is back in the time a start takes
//! and a crash loop neither storms nor runs forever: past its limit, the
//! process is given up with [`ErrorKind::GaveUp`](crate::ErrorKind::GaveUp)
//! and its last exit statuses.
//!
//! A [`Supervisor`] holds processes of any kinds, each with its policy; a
//! [`Pool`] holds N identical ones and spreads typed calls over them. Both
//! are driven by the caller's thread and wait in one `poll(2)` on all their
//! processes: no hidden thread, so a supervisor in a single-threaded
//! program can still restart by `fork`, and any start method works for its
//! children. Every state change is a [`SupervisorEvent`], handed to a hook
//! and logged at target `forkbridge::supervise`; the
//! [`status`](Supervisor::status) snapshot shows each process's state,
//! restarts, traffic and resources.

mod child;
mod event;
mod policy;
mod pool;
mod supervisor;
mod watch;

pub use event::SupervisorEvent;
pub use policy::{Restart, RestartPolicy};
pub use pool::{Command, Dispatch, Pool, PoolBuilder, Request, Ticket};
pub use supervisor::Supervisor;
