//! Helpers shared by forkbridge's tests, its bench and its soak suite.
//!
//! Each of those checks the same things about real processes: which
//! children this process has left, whether a pid still runs, how many fds
//! and shared mappings are open (to see a leak), how to end and reap what
//! a check left behind, how to wait for a condition without waiting
//! forever. They used to carry a copy each; this crate holds the one copy.
//! It knows nothing of forkbridge: what is about forkbridge's own types
//! (test backends, the test harness) stays with the tests that use it.
//!
//! Linux only: the answers come from `/proc` and from plain syscalls, never
//! from forkbridge itself, so a test does not trust the code it checks.
//!
//! | module | job |
//! | --- | --- |
//! | [`children`](mod@children) | the children of this process, zombies included |
//! | [`process`] | whether a pid runs, how many threads it has |
//! | [`fds`] | open fds, and what a process's fds point to |
//! | [`memory`] | shared mappings and resident memory, to see leaks |
//! | [`page`] | a page of memory shared with forked children |
//! | [`signal`] | sending, ignoring and waiting for signals |
//! | [`reap`](mod@reap) | reaping children, bounded, and the subreaper flag |
//! | [`wait`] | polling a condition within a bound |
//! | [`net`] | a free TCP port |
//! | [`cli`] | the `[SCENARIO...] [--quick]` command line of bench and soak |

pub mod children;
pub mod cli;
pub mod fds;
pub mod memory;
pub mod net;
pub mod page;
pub mod process;
pub mod reap;
pub mod signal;
pub mod wait;

pub use children::{FORK_SERVER_COMM, children, children_but_the_fork_server, comm};
pub use cli::ScenarioArgs;
pub use fds::{fd_links, open_fds, pipe_inodes, socket_inodes};
pub use memory::{mappings, rss_kib, shared_mappings};
pub use net::free_port;
pub use page::SharedPage;
pub use process::{alive, pin, threads, threads_of, unpin};
pub use reap::{kill_and_reap, reap, reap_within, set_subreaper, try_reap, wait_within};
pub use signal::{alarm, ignore, kill, restore_default, signal_later, sleep_until_killed};
pub use wait::wait_until;

#[cfg(test)]
mod tests {
    /// A child that runs until the test kills it (or 30 s pass).
    pub(crate) fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap()
    }
}
