//! Open fds: how many this process holds, and what a process's fds point
//! to.
//!
//! An fd left open is forkbridge's most likely leak (every process holds
//! sockets, pidfds, memfds), and an fd a child should not have inherited
//! shows in what the child's fds point to.

/// Number of fds this process has open.
///
/// Counts `/proc/self/fd`, less the fd that reading the directory opens,
/// so two calls with nothing opened between them agree with each other and
/// with a count taken in another process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count().saturating_sub(1))
}

/// What `pid`'s open fds point to, among those starting with `kind`
/// (`"socket:"`, `"pipe:"`, `"/memfd:"`, `"anon_inode:[pidfd]"`), sorted:
/// e.g. `socket:[8731]`. Two processes holding the same socket show the
/// same entry.
///
/// # Panics
///
/// If `/proc/<pid>/fd` cannot be read (no such process, or not ours to
/// read): a check about a process's fds has nothing to say then.
pub fn fd_links(pid: i32, kind: &str) -> Vec<String> {
    let mut links: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|link| link.to_string_lossy().into_owned())
        .filter(|link| link.starts_with(kind))
        .collect();
    links.sort();
    links
}

/// The sockets `pid` holds open (see [`fd_links`]).
pub fn socket_inodes(pid: i32) -> Vec<String> {
    fd_links(pid, "socket:")
}

/// The pipes `pid` holds open (see [`fd_links`]).
pub fn pipe_inodes(pid: i32) -> Vec<String> {
    fd_links(pid, "pipe:")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Tests run on parallel threads that open fds of their own: only what
    // this test holds is checked, by identity rather than by count.
    #[test]
    fn a_pipe_shows_in_the_links_until_closed() {
        let me = std::process::id() as i32;
        let (r, w) = std::io::pipe().unwrap();
        use std::os::fd::AsRawFd;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", r.as_raw_fd())).unwrap();
        let link = link.to_string_lossy().into_owned();
        assert!(pipe_inodes(me).contains(&link));
        drop((r, w));
        assert!(!pipe_inodes(me).contains(&link));
    }

    #[test]
    fn open_fds_counts_an_open_file() {
        // Another test may open or close fds meanwhile: retry a few times
        // until one pair of counts is taken undisturbed.
        let held = (0..50).any(|_| {
            let before = open_fds();
            let file = std::fs::File::open("/proc/self/stat").unwrap();
            let during = open_fds();
            drop(file);
            during == before + 1
        });
        assert!(held);
    }
}
