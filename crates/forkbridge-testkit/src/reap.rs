//! Reaping: collecting the exit status of children, within a bound, and
//! cleaning up what a check left behind.
//!
//! An unreaped child is a zombie, and the next check that counts children
//! would blame itself for it; a child that never ends would hang a check
//! that waits for it. So every wait here is bounded or on a child known
//! to end.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Waits for `pid`, a child of this process, to end; its wait status.
///
/// # Panics
///
/// If `pid` is not a child of this process (or was reaped already): the
/// check that asked is wrong about what it started.
pub fn reap(pid: i32) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a live out-pointer; the rest are integers.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            return status;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            panic!("waitpid({pid}): {err}");
        }
    }
}

/// Reaps `pid` if it has ended: its wait status, or `None` while it runs
/// (or if it is not a child of ours, yet: an orphan becomes ours only
/// once the kernel re-parents it).
pub fn try_reap(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: as in `reap`.
    (unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid).then_some(status)
}

/// Waits up to `bound` for `pid`, a child of ours (or about to become one,
/// re-parented), to end by itself and reaps it: its wait status. Past the
/// bound, kills and reaps it and says why.
pub fn reap_within(pid: i32, bound: Duration) -> Result<i32, &'static str> {
    let deadline = Instant::now() + bound;
    loop {
        let mut status = 0;
        // SAFETY: as in `reap`.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            if r < 0 {
                return Err("never became a child of ours");
            }
            kill_and_reap(&[pid]);
            return Err("still ran past the bound (killed)");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Kills (`SIGKILL`) and reaps each of `pids`, children of ours: the
/// clean-up after a check found some left, so the next one starts clean.
/// Errors are ignored: a pid that already ended is reaped all the same,
/// one that is not ours is not ours to clean.
pub fn kill_and_reap(pids: &[i32]) {
    for &pid in pids {
        let _ = crate::kill(pid, libc::SIGKILL);
        // SAFETY: a null status is allowed; the rest are integers.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
}

/// Waits up to `bound` for `child` (a process started with
/// `std::process::Command`) to end: its status, or `None` after killing
/// and reaping it at the bound.
pub fn wait_within(child: &mut Child, bound: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + bound;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Makes this process (`on`) the reaper of its orphaned descendants, or
/// stops it (`!on`).
///
/// A check that kills a middle process sees its children re-parented to
/// us instead of to init, so it can watch them end and reap them.
pub fn set_subreaper(on: bool) {
    // SAFETY: PR_SET_CHILD_SUBREAPER only sets a flag on this process.
    unsafe {
        libc::prctl(
            libc::PR_SET_CHILD_SUBREAPER,
            libc::c_ulong::from(on),
            0,
            0,
            0,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts `sh -c script`; the test reaps it by pid, as the helpers do.
    fn shell(script: &str) -> i32 {
        let pid = std::process::Command::new("sh")
            .args(["-c", script])
            .spawn()
            .unwrap()
            .id();
        pid as i32
    }

    #[test]
    fn a_child_that_ends_is_reaped_with_its_status() {
        let status = reap_within(shell("exit 3"), Duration::from_secs(10)).unwrap();
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 3);
    }

    #[test]
    fn a_child_past_the_bound_is_killed_and_reaped() {
        let pid = crate::tests::sleeper().id() as i32;
        assert_eq!(try_reap(pid), None, "it runs");
        let t = Instant::now();
        let err = reap_within(pid, Duration::from_millis(50)).unwrap_err();
        assert!(err.contains("killed"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(10));
        assert!(!crate::children().contains(&pid), "left a zombie");
    }

    #[test]
    fn a_pid_that_is_not_ours_is_said_so() {
        assert_eq!(
            reap_within(1, Duration::ZERO),
            Err("never became a child of ours")
        );
    }

    #[test]
    fn wait_within_kills_at_the_bound() {
        let mut child = crate::tests::sleeper();
        assert!(wait_within(&mut child, Duration::from_millis(50)).is_none());
        assert!(
            !crate::children().contains(&(child.id() as i32)),
            "left a zombie"
        );
        let mut quick = std::process::Command::new("true").spawn().unwrap();
        let status = wait_within(&mut quick, Duration::from_secs(10));
        assert!(status.is_some_and(|s| s.success()));
    }

    #[test]
    fn kill_and_reap_leaves_no_child() {
        let pids: Vec<i32> = (0..2)
            .map(|_| crate::tests::sleeper().id() as i32)
            .collect();
        kill_and_reap(&pids);
        assert!(pids.iter().all(|p| !crate::children().contains(p)));
    }
}
