//! When a ring's waiter checks that the process on the other side is
//! alive, and how.

use crate::sys::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use crate::sys::fork;

/// How often a waiter checks that the other side is alive.
pub(super) const LIVENESS_PERIOD: Duration = Duration::from_millis(50);

/// When a waiter checks that the other side is alive: when it is about to
/// give up, and then once per liveness period — never on every round of a
/// busy stream (reading `/proc` costs more than a frame hand-off).
pub(super) struct Liveness {
    next: Instant,
}

impl Liveness {
    pub(super) fn new() -> Liveness {
        Liveness {
            next: Instant::now() + LIVENESS_PERIOD,
        }
    }

    pub(super) fn due(&mut self, giving_up: bool) -> bool {
        let now = Instant::now();
        if giving_up || now >= self.next {
            self.next = now + LIVENESS_PERIOD;
            true
        } else {
            false
        }
    }

    /// Whether the role's holder is alive; a role nobody claimed yet counts
    /// as alive (the other side may still be starting), and so does a role
    /// released by a process that is still alive (it may claim it again,
    /// handler by handler). A released role whose process has ended —
    /// however it ended, an orderly exit included — is gone.
    pub(super) fn alive(&self, role: &AtomicI32) -> bool {
        match role.load(Ordering::Acquire) {
            0 => true,
            pid => process_alive(pid.abs()),
        }
    }
}

/// Whether `pid` exists and is not a zombie.
pub(super) fn process_alive(pid: i32) -> bool {
    if fork::kill(pid, 0).is_err_and(|e| e.raw_os_error() == Some(libc::ESRCH)) {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next()),
            Some("Z" | "X")
        ),
        Err(_) => false,
    }
}
