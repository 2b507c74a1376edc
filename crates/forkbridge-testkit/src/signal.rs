//! Signals: sending them (now, after a delay, or to this process at an
//! alarm), ignoring them, and waiting for the one that ends the process.

use std::time::Duration;

/// Sends `sig` to `pid`.
///
/// A check that kills a process it may already have lost (it died, it was
/// reaped) can ignore the error; one that must land can `expect` it.
pub fn kill(pid: i32, sig: i32) -> std::io::Result<()> {
    // SAFETY: `kill` takes two integers and touches no memory of ours.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Forks a plain helper process that sends `sig` to `pid` after `delay`
/// and exits, so a single-threaded test can be blocked in a wait when the
/// signal lands. Returns the helper's pid: reap it with
/// [`reap`](crate::reap()) (or [`kill_and_reap`](crate::kill_and_reap) to
/// call it off).
///
/// # Panics
///
/// If `fork` fails.
pub fn signal_later(pid: i32, sig: i32, delay: Duration) -> i32 {
    // SAFETY: the child calls only async-signal-safe functions (nanosleep
    // through `thread::sleep`, `kill`, `_exit`), so forking is sound even
    // from a multi-threaded process; it never returns into our frames.
    match unsafe { libc::fork() } {
        0 => {
            std::thread::sleep(delay);
            // SAFETY: plain integers; `_exit` ends the helper without
            // running the parent's destructors or atexit handlers.
            unsafe {
                libc::kill(pid, sig);
                libc::_exit(0)
            }
        }
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        helper => helper,
    }
}

/// Arms this process's alarm: `SIGALRM` in `secs` seconds (0 disarms it,
/// and a new call replaces the old alarm).
///
/// With the default action the signal ends the process: the hard bound of
/// a test case or a soak round that might otherwise hang forever.
pub fn alarm(secs: u32) {
    // SAFETY: `alarm` only arms or disarms a timer of this process.
    unsafe { libc::alarm(secs) };
}

/// Makes this process ignore `sig` (a backend that must be killed, not
/// stopped, ignores `SIGTERM`).
pub fn ignore(sig: i32) {
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { libc::signal(sig, libc::SIG_IGN) };
}

/// Gives `sig` its default action back, after a check that installed a
/// handler or ignored it, so the next check starts from the default.
pub fn restore_default(sig: i32) {
    // SAFETY: SIG_DFL installs no handler code.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

/// Sleeps until a signal ends the process: a backend stuck for good (in
/// a handler, say), which only a kill can end.
pub fn sleep_until_killed() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_lands_and_a_later_signal_arrives_in_time() {
        let mut child = crate::tests::sleeper();
        let pid = child.id() as i32;
        let helper = signal_later(pid, libc::SIGTERM, Duration::from_millis(20));
        let status = crate::wait_within(&mut child, Duration::from_secs(10));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.and_then(|s| s.signal()), Some(libc::SIGTERM));
        assert!(libc::WIFEXITED(crate::reap(helper)));
        assert!(kill(pid, 0).is_err(), "a reaped pid takes no signal");
    }
}
