//! `futex(2)` on a word in shared memory (no `FUTEX_PRIVATE_FLAG`: waiters
//! and wakers live in different processes).

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Instant;

/// Sleeps while `*word == expected`, until woken or `deadline`. Returns
/// `false` on timeout. A changed value, a signal or a spurious wake-up
/// return `true`: the caller re-checks its condition either way.
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
    let timeout = match deadline {
        None => None,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            Some(libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            })
        }
    };
    let ts = timeout
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32 (an AtomicU32 has u32's layout);
    // `ts` is null or points to a live timespec; FUTEX_WAIT reads both only.
    let res = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts,
        )
    };
    if res == -1 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ETIMEDOUT) {
            return false;
        }
    }
    true
}

/// Wakes every waiter on `word`.
pub(crate) fn wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE only uses its address.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}
