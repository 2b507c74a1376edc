//! Baselines: the raw mechanisms forkbridge is built on, between a parent
//! and a child forked the same way, with no library in between.

use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use forkbridge::Message;
use forkbridge_testkit::{SharedPage, kill_and_reap, reap};

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

/// An echo partner: a forked child that answers every 8-byte write on a
/// socketpair, both sides blocking, until the socket closes.
pub(crate) struct EchoPartner {
    stream: UnixStream,
    pid: libc::pid_t,
}

impl EchoPartner {
    pub(crate) fn start() -> EchoPartner {
        let (parent, mut child) = UnixStream::pair().expect("socketpair");
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
        EchoPartner {
            stream: parent,
            pid,
        }
    }

    /// The partner's pid.
    pub(crate) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// One 8-byte write + read.
    pub(crate) fn round(&mut self) {
        let mut buf = [7u8; 8];
        self.stream.write_all(&buf).unwrap();
        self.stream.read_exact(&mut buf).unwrap();
    }

    /// Ends and reaps the partner. Closing our end is not enough: a
    /// process forked after the partner (a forkbridge backend) inherited a
    /// copy of it, so the partner would never see end of stream.
    pub(crate) fn finish(self) {
        drop(self.stream);
        kill_and_reap(&[self.pid]);
    }
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
    reap(pid);
    rate
}

/// Mean time of fork + `_exit` + `waitpid`.
pub(crate) fn fork_exit_wait(n: u32) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        match fork() {
            Some(pid) => {
                reap(pid);
            }
            None => exit(0),
        }
    }
    t.elapsed() / n
}

fn futex_wake(word: &std::sync::atomic::AtomicU32) {
    // SAFETY: FUTEX_WAKE on a live, aligned shared word.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
}

fn futex_wait_for_one(word: &std::sync::atomic::AtomicU32) {
    use std::sync::atomic::Ordering::SeqCst;
    while word.load(SeqCst) == 0 {
        // SAFETY: FUTEX_WAIT on a live, aligned shared word, no timeout.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                0,
                std::ptr::null::<libc::timespec>(),
            )
        };
    }
    word.store(0, SeqCst);
}

/// A futex ping-pong partner: a forked child that, `rounds` times, waits
/// for word 0 and answers on word 1.
pub(crate) struct FutexPingPong {
    page: SharedPage,
    pid: libc::pid_t,
}

impl FutexPingPong {
    pub(crate) fn start(rounds: u32) -> FutexPingPong {
        use std::sync::atomic::Ordering::SeqCst;
        let page = SharedPage::new();
        let Some(pid) = fork() else {
            for _ in 0..rounds {
                futex_wait_for_one(&page.words()[0]);
                page.words()[1].store(1, SeqCst);
                futex_wake(&page.words()[1]);
            }
            exit(0);
        };
        FutexPingPong { page, pid }
    }

    /// One round trip: store + `FUTEX_WAKE`, then `FUTEX_WAIT` for the answer.
    pub(crate) fn round(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.page.words()[0].store(1, SeqCst);
        futex_wake(&self.page.words()[0]);
        futex_wait_for_one(&self.page.words()[1]);
    }

    /// The partner's pid.
    pub(crate) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Waits for the child, which leaves after its last round.
    pub(crate) fn finish(self) {
        reap(self.pid);
    }
}

/// Mean cost of one `FUTEX_WAKE` with nobody waiting.
pub(crate) fn futex_wake_alone(n: u32) -> Duration {
    let page = SharedPage::new();
    let t = Instant::now();
    for _ in 0..n {
        futex_wake(&page.words()[0]);
    }
    t.elapsed() / n
}

pub(crate) use forkbridge_testkit::{pin, unpin};
