//! The only module with `unsafe`: thin wrappers over the Linux system calls
//! forkbridge needs.
//!
//! Every function here takes and returns safe types (`OwnedFd`,
//! `BorrowedFd`, `io::Result`), so the rest of the crate is written under
//! `#![deny(unsafe_code)]`. Each `unsafe` block carries a `// SAFETY:`
//! sentence saying why it holds at that place.
//!
//! | file | provides |
//! |---|---|
//! | `fork.rs` | `fork`, `_exit`, the child's first steps (parent-death signal, signal reset, fd closing), `kill` |
//! | `socket.rs` | the intercom: an `AF_UNIX SOCK_STREAM` socketpair, non-blocking `send`/`recv` without `SIGPIPE` |
//! | `poll.rs` | `ppoll(2)` with a deadline, retried on `EINTR` with the remaining time |
//! | `pidfd.rs` | `pidfd_open(2)` and reaping with `waitpid(2)` |
//! | `procfs.rs` | a process's resident memory and CPU time, and this process's thread count, from one read of its `/proc/<pid>/stat` |
//! | `shm.rs` | atomic words in a sealed memfd mapped `MAP_SHARED`: an event store, shared by a fork or opened from an fd |
//! | `signal.rs` | `SIGINT`/`SIGTERM` in the parent as a byte on a pipe, for `MainContext` |
//! | `memfd.rs` | a `memfd` mapped shared, sealed against shrinking (made or received): the mapping under `shm.rs` and `ring/`, and a buffer accessed by copies |
//! | `ring/` | a frame ring's shared memory (a memfd, or the heap under loom) and the slot protocol that lends its bytes |
//! | `futex.rs` | `futex(2)` wait and wake on a shared word |
//! | `eventfd.rs` | `eventfd(2)`: an event's pollable mirror |
//! | `spawn.rs` | `posix_spawn` of this executable with one inherited socket; code offsets a re-executed process resolves |
//! | `async_fd.rs` | registering an fd with tokio's reactor (feature `tokio`) |
//!
//! # Safety and `fork`
//!
//! After `fork(2)` in a process that had other threads, only
//! async-signal-safe functions may run in the child until it calls `_exit` or
//! `exec`: a lock held by a vanished thread (malloc's, stdout's, a logger's)
//! is never released. forkbridge therefore refuses to fork when the process
//! has more than one thread unless the caller opts in
//! ([`MessageProcessBuilder::allow_threads`](crate::MessageProcessBuilder::allow_threads)),
//! and the child-side steps in `fork.rs` allocate nothing and take no lock.

#[cfg(feature = "tokio")]
pub(crate) mod async_fd;
pub(crate) mod atomic;
pub(crate) mod eventfd;
pub(crate) mod fork;
pub(crate) mod futex;
pub(crate) mod memfd;
pub(crate) mod pidfd;
pub(crate) mod poll;
pub(crate) mod procfs;
pub(crate) mod ring;
pub(crate) mod shm;
pub(crate) mod signal;
pub(crate) mod socket;
pub(crate) mod spawn;

/// Calls a libc function and turns the `-1` error convention into
/// `io::Error::last_os_error()`.
macro_rules! syscall {
    ($fn: ident ( $($arg: expr),* $(,)* ) ) => {{
        #[allow(unused_unsafe)]
        // SAFETY: the caller of `syscall!` states, next to each use, why the
        // arguments satisfy the function's contract.
        let res = unsafe { libc::$fn($($arg, )*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
pub(crate) use syscall;
