//! The fds every forked child must close: the parent-side ends of every
//! process's intercom and their pidfds.
//!
//! A child that kept a sibling's frontend end open would keep that sibling's
//! intercom alive after the parent dies, so the sibling would never see end
//! of stream (the ipc-channel #281 hang). Everything forkbridge creates is
//! close-on-exec as well, for programs that `exec`.
//!
//! The list is kept by [`Registered`]: an fd is listed when it is wrapped
//! and unlisted when the wrapper drops, before the fd closes (so a number is
//! never unlisted after another thread reused it). No call site lists or
//! unlists by hand, so no error path can forget one.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
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

fn add(fd: RawFd) {
    fds().push(fd);
}

fn remove(fd: RawFd) {
    fds().retain(|&f| f != fd);
}

/// An fd that forked children close: listed while this wrapper lives.
#[derive(Debug)]
pub(crate) struct Registered<F: AsRawFd = OwnedFd> {
    /// `None` only once `into_child` took it (consuming the wrapper).
    fd: Option<F>,
}

impl<F: AsRawFd> Registered<F> {
    pub(crate) fn new(fd: F) -> Registered<F> {
        add(fd.as_raw_fd());
        Registered { fd: Some(fd) }
    }

    /// Hands the fd over without touching the list: in a new child, which
    /// may not take the lock (see `reset_in_child`) and resets the list.
    pub(crate) fn into_child(mut self) -> F {
        self.fd.take().expect("present until handed over")
    }

    fn get(&self) -> &F {
        self.fd.as_ref().expect("present until handed over")
    }
}

impl<F: AsRawFd> Drop for Registered<F> {
    fn drop(&mut self) {
        if let Some(fd) = &self.fd {
            remove(fd.as_raw_fd());
        }
    }
}

impl<F: AsRawFd + AsFd> AsFd for Registered<F> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get().as_fd()
    }
}

impl<F: AsRawFd> AsRawFd for Registered<F> {
    fn as_raw_fd(&self) -> RawFd {
        self.get().as_raw_fd()
    }
}

/// The list for a child about to be forked, without `keep`. Taken before
/// the fork so the child never touches the lock.
pub(crate) fn snapshot_without(keep: RawFd) -> Vec<RawFd> {
    fds().iter().copied().filter(|&f| f != keep).collect()
}
