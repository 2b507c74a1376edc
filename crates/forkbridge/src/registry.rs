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
