//! The children of this process.
//!
//! A check that started processes ends by asking whether any is left: a
//! child that was neither reaped nor stopped is a leak (a zombie, or a
//! backend still running).

use std::collections::BTreeSet;

/// Pids of this process's children, zombies included, sorted.
///
/// Reads `/proc/self/task/<tid>/children` for every thread, since the
/// kernel lists a child under the thread that forked it. A process that is
/// re-parented to us (see [`set_subreaper`](crate::set_subreaper)) shows
/// here once the kernel has moved it.
pub fn children() -> Vec<i32> {
    let mut pids = BTreeSet::new();
    let tasks = std::fs::read_dir("/proc/self/task").into_iter().flatten();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    pids.into_iter().collect()
}

/// The name `ps` shows for `pid` (`/proc/<pid>/comm`), empty if it is gone.
pub fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// The name forkbridge's fork server gives itself.
pub const FORK_SERVER_COMM: &str = "forkbridge-srv";

/// This process's children except its fork server, which lives as long
/// as the program by design.
pub fn children_but_the_fork_server() -> Vec<i32> {
    children()
        .into_iter()
        .filter(|&pid| comm(pid) != FORK_SERVER_COMM)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_child_is_listed_until_reaped() {
        let mut child = crate::tests::sleeper();
        let pid = child.id() as i32;
        assert!(children().contains(&pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!children().contains(&pid));
    }
}
