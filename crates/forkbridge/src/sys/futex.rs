//! `futex(2)` on a word in shared memory (no `FUTEX_PRIVATE_FLAG`: waiters
//! and wakers live in different processes).
//!
//! The kernel's futex is 32 bits. A 64-bit word (an event: a flag, a
//! waiter count and a long generation, changed together by one
//! compare-and-swap) is waited on through its low half, which holds the
//! bits that every change of the word changes (see `event.rs`); the kernel
//! only reads that half, as an outside observer of the atomic word.

use super::atomic::{AtomicU32, AtomicU64};

/// A word a futex can wait on: its low 32 bits, by address.
pub(crate) trait Word {
    /// The address of the low 32 bits.
    #[cfg(not(loom))]
    fn low_half(&self) -> *const u32;
    /// The low 32 bits now (the model checker's view of what the kernel
    /// compares).
    #[cfg(loom)]
    fn low_bits(&self) -> u32;
}

impl Word for AtomicU32 {
    #[cfg(not(loom))]
    fn low_half(&self) -> *const u32 {
        self.as_ptr()
    }
    #[cfg(loom)]
    fn low_bits(&self) -> u32 {
        self.load(super::atomic::Ordering::SeqCst)
    }
}

impl Word for AtomicU64 {
    #[cfg(not(loom))]
    fn low_half(&self) -> *const u32 {
        let word = self.as_ptr().cast::<u32>();
        if cfg!(target_endian = "little") {
            word
        } else {
            // SAFETY: the second u32 of a live, aligned u64.
            unsafe { word.add(1) }
        }
    }
    #[cfg(loom)]
    fn low_bits(&self) -> u32 {
        self.load(super::atomic::Ordering::SeqCst) as u32
    }
}

#[cfg(not(loom))]
use std::io;
#[cfg(not(loom))]
use std::time::Instant;

/// Sleeps while the low 32 bits of `word` equal `expected`, until woken or
/// `deadline`. Returns `false` on timeout. A changed value, a signal or a
/// spurious wake-up return `true`: the caller re-checks its condition
/// either way.
#[cfg(not(loom))]
pub(crate) fn wait(word: &impl Word, expected: u32, deadline: Option<Instant>) -> bool {
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
    // SAFETY: `low_half` is a live, aligned u32 inside the atomic word;
    // `ts` is null or points to a live timespec; FUTEX_WAIT reads both only.
    let res = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.low_half(),
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
#[cfg(not(loom))]
pub(crate) fn wake_all(word: &impl Word) {
    // SAFETY: `low_half` is a live, aligned u32; FUTEX_WAKE only uses its
    // address.
    unsafe {
        libc::syscall(libc::SYS_futex, word.low_half(), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// `futex(2)` as the model checker sees it: the value check and the sleep
/// happen under one lock (the kernel's hash-bucket lock), so a wake-up that
/// comes between a waiter's check and its sleep is not lost — and a lost
/// one elsewhere shows up as a deadlock loom reports. One queue serves
/// every word (a wake-up for another word is a spurious one, which callers
/// tolerate, as with the real futex). Time does not exist in the model: a
/// wait with a deadline waits like one without.
#[cfg(loom)]
mod model {
    use loom::sync::{Condvar, Mutex};

    use super::Word;

    loom::lazy_static! {
        static ref BUCKET: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
    }

    pub(crate) fn wait(
        word: &impl Word,
        expected: u32,
        _deadline: Option<std::time::Instant>,
    ) -> bool {
        let (lock, queue) = &*BUCKET;
        let guard = lock.lock().unwrap();
        if word.low_bits() == expected {
            drop(queue.wait(guard).unwrap());
        }
        true
    }

    pub(crate) fn wake_all(_word: &impl Word) {
        let (lock, queue) = &*BUCKET;
        let _guard = lock.lock().unwrap();
        queue.notify_all();
    }
}

#[cfg(loom)]
pub(crate) use model::{wait, wake_all};

#[cfg(all(test, loom))]
mod loom_model {
    use super::super::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn the_futex_model_wakes_a_waiter() {
        loom::model(|| {
            let word = Arc::new(AtomicU32::new(0));
            let w2 = word.clone();
            let t = loom::thread::spawn(move || {
                w2.store(1, Ordering::SeqCst);
                super::wake_all(&*w2);
            });
            while word.load(Ordering::SeqCst) == 0 {
                super::wait(&*word, 0, None);
            }
            t.join().unwrap();
        });
    }
}
