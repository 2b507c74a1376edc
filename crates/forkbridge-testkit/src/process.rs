//! What `/proc` says about one process: whether it runs, how many threads
//! it has; and where it may run.

/// Whether `pid` exists and is not a zombie (nor dead and being removed).
///
/// A zombie has ended but waits to be reaped; a check that "the backend
/// is gone" must not count it as alive, and `kill(pid, 0)` would.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name, which may
        // itself hold spaces and parentheses: split at the last `)`.
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next());
        !matches!(state, Some("Z" | "X"))
    })
}

/// Number of threads of this process.
///
/// forkbridge refuses to fork from a multi-threaded process by default,
/// so tests check they are back to one thread before the next fork.
pub fn threads() -> usize {
    count_tasks("/proc/self/task")
}

/// Number of threads of `pid` (0 if it does not exist).
pub fn threads_of(pid: i32) -> usize {
    count_tasks(&format!("/proc/{pid}/task"))
}

fn count_tasks(dir: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, Iterator::count)
}

/// Pins process `pid` (0: the calling thread, whose later threads and
/// children inherit it) to `cpu`; returns whether it worked (a machine with
/// one CPU, or a restricted cpuset, says no).
pub fn pin(pid: libc::pid_t, cpu: usize) -> bool {
    // SAFETY: `set` is a zeroed cpu_set_t filled by CPU_SET, passed with
    // its size; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Lets `pid` (0: the calling thread) run on every CPU again.
pub fn unpin(pid: libc::pid_t) {
    // SAFETY: as in `pin`, with every CPU of the set marked.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_has_a_thread() {
        assert!(alive(std::process::id() as i32));
        // Other tests run on threads of their own: only a lower bound holds.
        assert!(threads() >= 1);
        assert!(threads_of(std::process::id() as i32) >= 1);
    }

    #[test]
    fn a_zombie_is_not_alive_and_a_missing_pid_neither() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped yet: it turns into a zombie once it has run.
        assert!(crate::wait_until(
            std::time::Duration::from_secs(10),
            || { !alive(pid) }
        ));
        assert!(crate::children().contains(&pid), "still a zombie of ours");
        child.wait().unwrap();
        assert!(!alive(pid));
        assert_eq!(threads_of(pid), 0);
    }
}
