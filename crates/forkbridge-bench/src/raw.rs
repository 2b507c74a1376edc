//! Baselines: the raw mechanisms forkbridge is built on, between a parent
//! and a child forked the same way, with no library in between.

use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use forkbridge::Message;

/// Forks; returns `None` in the child, the child's pid in the parent.
pub(crate) fn fork() -> Option<libc::pid_t> {
    // Keep buffered output from being written twice.
    let _ = std::io::stdout().flush();
    // SAFETY: the bench is single-threaded (it runs on the main thread and
    // starts no threads), so the child may run ordinary code.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => None,
        pid => Some(pid),
    }
}

/// Leaves a child forked by [`fork`] without returning into the parent's
/// frames.
pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: `_exit` takes any status and never returns.
    unsafe { libc::_exit(code) }
}

/// Waits for a child forked by [`fork`].
pub(crate) fn wait(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; `pid` is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// Mean time of one 8-byte round trip over a socketpair with a forked echo
/// child, both sides blocking.
pub(crate) fn roundtrip(n: u32) -> Duration {
    let (mut parent, mut child) = UnixStream::pair().expect("socketpair");
    let Some(pid) = fork() else {
        drop(parent);
        let mut buf = [0u8; 8];
        while child.read_exact(&mut buf).is_ok() {
            if child.write_all(&buf).is_err() {
                break;
            }
        }
        exit(0);
    };
    drop(child);
    let mut buf = [0u8; 8];
    for _ in 0..n / 10 {
        parent.write_all(&buf).unwrap();
        parent.read_exact(&mut buf).unwrap();
    }
    let t = Instant::now();
    for i in 0..n {
        buf[0] = i as u8;
        parent.write_all(&buf).unwrap();
        parent.read_exact(&mut buf).unwrap();
    }
    let elapsed = t.elapsed();
    drop(parent);
    wait(pid);
    elapsed / n
}

/// Messages per second of a one-way stream of length-prefixed postcard
/// frames (the same messages forkbridge sends) through 64 KiB buffers,
/// decoded and counted in the forked child.
pub(crate) fn oneway(n: u64, make: fn(u64) -> Message) -> f64 {
    let (parent, child) = UnixStream::pair().expect("socketpair");
    let Some(pid) = fork() else {
        drop(parent);
        let mut reader = BufReader::with_capacity(64 << 10, &child);
        let mut body = Vec::new();
        let mut count = 0u64;
        let mut len = [0u8; 4];
        while count < n {
            if reader.read_exact(&mut len).is_err() {
                exit(1);
            }
            body.resize(u32::from_le_bytes(len) as usize, 0);
            if reader.read_exact(&mut body).is_err() {
                exit(1);
            }
            if postcard::from_bytes::<Message>(&body).is_ok() {
                count += 1;
            }
        }
        exit((&child).write_all(&[1]).map_or(1, |()| 0));
    };
    drop(child);
    let t = Instant::now();
    let mut writer = BufWriter::with_capacity(64 << 10, &parent);
    let mut frame = Vec::new();
    for i in 0..n {
        frame.clear();
        frame.extend_from_slice(&[0; 4]);
        frame = postcard::to_extend(&make(i), frame).expect("encode");
        let len = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&len.to_le_bytes());
        writer.write_all(&frame).unwrap();
    }
    writer.flush().unwrap();
    drop(writer);
    let mut done = [0u8; 1];
    (&parent).read_exact(&mut done).unwrap();
    let rate = n as f64 / t.elapsed().as_secs_f64();
    wait(pid);
    rate
}

/// Mean time of fork + `_exit` + `waitpid`.
pub(crate) fn fork_exit_wait(n: u32) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        match fork() {
            Some(pid) => wait(pid),
            None => exit(0),
        }
    }
    t.elapsed() / n
}
