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
