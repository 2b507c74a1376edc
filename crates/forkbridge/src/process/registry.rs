//! The fds every forked child must close: the parent-side ends of every
//! process's intercom and their pidfds.
//!
//! A child that kept a sibling's frontend end open would keep that sibling's
//! intercom alive after the parent dies, so the sibling would never see end
//! of stream (the ipc-channel #281 hang). Everything forkbridge creates is
//! close-on-exec as well, for programs that `exec`.

use std::os::fd::RawFd;
use std::sync::Mutex;

static FDS: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

fn fds() -> std::sync::MutexGuard<'static, Vec<RawFd>> {
    // A panic while holding this lock cannot leave the list inconsistent
    // (push and retain are the only writes), so poisoning is ignored.
    FDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// In a new child: forget the parent's list (its fds are closed here and
/// their numbers free) and record the child's own intercom end instead.
///
/// `try_lock`, because the child of a multi-threaded parent (`allow_threads`)
/// may inherit the lock held by a thread that does not exist here; the list
/// is then left as it was and a warning logged: processes this child starts
/// may then close fds by stale numbers. A single-threaded parent holds no
/// lock across the fork (the list is copied before it).
pub(crate) fn reset_in_child(own: RawFd) {
    match FDS.try_lock() {
        Ok(mut fds) => {
            fds.clear();
            fds.push(own);
        }
        Err(std::sync::TryLockError::Poisoned(e)) => {
            let mut fds = e.into_inner();
            fds.clear();
            fds.push(own);
        }
        Err(std::sync::TryLockError::WouldBlock) => {
            log::warn!(
                "fd registry was locked by another thread at fork; nested processes may close stale fds"
            );
        }
    }
}

/// Records an fd that children must not keep.
pub(crate) fn add(fd: RawFd) {
    fds().push(fd);
}

/// Forgets an fd; call before closing it, so its number can be reused.
pub(crate) fn remove(fd: RawFd) {
    fds().retain(|&f| f != fd);
}

/// The list for a child about to be forked, without `keep`. Taken before
/// the fork so the child never touches the lock.
pub(crate) fn snapshot_without(keep: RawFd) -> Vec<RawFd> {
    fds().iter().copied().filter(|&f| f != keep).collect()
}
