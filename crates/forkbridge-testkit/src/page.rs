//! A page of memory shared with forked children.
//!
//! The bench's baselines talk through raw futex words between a parent and
//! a child it forks, with no library in between: they need memory both
//! see, mapped before the fork.

use std::sync::atomic::AtomicU32;

/// One anonymous `MAP_SHARED` page, seen by this process and every child
/// it forks afterwards, unmapped on drop. It holds 1024 `AtomicU32` words,
/// zero at the start: enough for futex words and counters.
#[derive(Debug)]
pub struct SharedPage {
    ptr: *mut AtomicU32,
}

const PAGE: usize = 4096;

impl SharedPage {
    /// Maps a new zeroed page.
    ///
    /// # Panics
    ///
    /// If `mmap` fails (out of memory or of mappings).
    pub fn new() -> SharedPage {
        // SAFETY: a new anonymous mapping at an address the kernel picks;
        // nothing of ours is overwritten. Checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(
            ptr,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        SharedPage { ptr: ptr.cast() }
    }

    /// The page's words. A child forked after [`new`](SharedPage::new)
    /// sees the same words: a store on one side is a load on the other.
    pub fn words(&self) -> &[AtomicU32] {
        // SAFETY: the page is mapped, page-aligned (so aligned for u32),
        // zero-filled (a valid AtomicU32 each), and lives as long as
        // `self`; atomics make shared access sound.
        unsafe { std::slice::from_raw_parts(self.ptr, PAGE / 4) }
    }
}

impl Default for SharedPage {
    fn default() -> SharedPage {
        SharedPage::new()
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the page mapped in `new`, which no
        // borrow outlives (`words` borrows `self`).
        unsafe { libc::munmap(self.ptr.cast(), PAGE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::SeqCst;

    #[test]
    fn a_forked_child_writes_what_the_parent_reads() {
        let page = SharedPage::new();
        assert!(page.words().iter().all(|w| w.load(SeqCst) == 0));
        let pid = std::process::id();
        // A child forked after the mapping shares it: `fork` directly, as
        // the bench does; the child only stores and `_exit`s.
        // SAFETY: the child calls only async-signal-safe code (an atomic
        // store, `_exit`), sound even in a multi-threaded test process.
        match unsafe { libc::fork() } {
            0 => {
                page.words()[7].store(pid, SeqCst);
                // SAFETY: ends the child without running the test's code.
                unsafe { libc::_exit(0) }
            }
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            child => {
                assert!(libc::WIFEXITED(crate::reap(child)));
            }
        }
        assert_eq!(page.words()[7].load(SeqCst), pid);
        assert_eq!(page.words().len(), 1024);
    }
}
