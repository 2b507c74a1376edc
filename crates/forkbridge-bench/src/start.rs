//! The start methods' scenarios: what a start costs under `ForkServer` and
//! `Spawn`, each against the raw mechanism it is built on, and what a
//! parent holding a gigabyte pays under `Fork` and under `ForkServer`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use forkbridge::{MessageProcess, StartMethod};

use forkbridge_testkit::reap;

use crate::{Outcome, Scale, Sink, micros, raw};

/// Set in the environment of this program spawned by the raw spawn
/// baseline: `main` exits at its first line.
pub(crate) const EXIT_AT_ONCE: &str = "FORKBRIDGE_BENCH_EXIT_AT_ONCE";

/// Mean time of `start()` + `stop()` of an idle portable backend.
fn start_stop_mean(method: StartMethod, n: u32) -> f64 {
    let mut total = Duration::ZERO;
    for _ in 0..n {
        let mut p = MessageProcess::builder("idle")
            .start_method(method)
            .build_portable(Sink::new())
            .expect("build");
        let t = Instant::now();
        p.start().expect("start");
        p.stop().expect("stop");
        total += t.elapsed();
    }
    micros(total) / f64::from(n)
}

pub(crate) fn start_stop_forkserver(scale: &Scale) -> Outcome {
    forkbridge::start_fork_server().expect("fork server");
    let mut server = RawForkServer::start();
    let (mut value, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..scale.runs {
        baseline.push(server.rounds(scale.starts));
        value.push(start_stop_mean(StartMethod::ForkServer, scale.starts));
    }
    server.finish();
    Outcome {
        name: "start_stop_forkserver",
        unit: "us",
        value,
        baseline,
        target: "<=1.5",
        what: "start() + stop() of an idle backend with StartMethod::ForkServer",
        baseline_what: "a raw fork server: request byte, fork, child _exit, waitpid, status back",
    }
}

pub(crate) fn start_stop_spawn(scale: &Scale) -> Outcome {
    let (mut value, mut baseline) = (Vec::new(), Vec::new());
    let n = scale.starts / 3 + 1;
    for _ in 0..scale.runs {
        let t = Instant::now();
        for _ in 0..n {
            // Command uses posix_spawn when it needs no pre_exec.
            let status = std::process::Command::new("/proc/self/exe")
                .env(EXIT_AT_ONCE, "1")
                .status()
                .expect("spawn");
            assert!(status.success());
        }
        baseline.push(micros(t.elapsed()) / f64::from(n));
        value.push(start_stop_mean(StartMethod::Spawn, n));
    }
    Outcome {
        name: "start_stop_spawn",
        unit: "us",
        value,
        baseline,
        target: "<=1.5",
        what: "start() + stop() of an idle backend with StartMethod::Spawn",
        baseline_what: "posix_spawn of this program, which exits at once, and waitpid",
    }
}

pub(crate) fn start_big_parent(scale: &Scale) -> Outcome {
    forkbridge::start_fork_server().expect("fork server");
    // 1 GiB touched in 4 KiB pages: the page tables a fork copies.
    let mut heap = vec![0u8; 1 << 30];
    for page in heap.chunks_mut(4096) {
        page[0] = 1;
    }
    std::hint::black_box(&heap);
    let (mut value, mut baseline) = (Vec::new(), Vec::new());
    let n = (scale.starts / 30).max(3);
    for _ in 0..scale.runs {
        baseline.push(start_stop_mean(StartMethod::Fork, n));
        value.push(start_stop_mean(StartMethod::ForkServer, n));
    }
    drop(heap);
    Outcome {
        name: "start_big_parent",
        unit: "us",
        value,
        baseline,
        target: "<=0.05",
        what: "start() + stop() with ForkServer from a parent with 1 GiB touched",
        baseline_what: "the same with Fork from the same parent",
    }
}

/// A fork server reduced to its mechanism: a forked child that, per request
/// byte, forks a child that exits at once, reaps it, and writes the status.
struct RawForkServer {
    control: UnixStream,
    pid: libc::pid_t,
}

impl RawForkServer {
    fn start() -> RawForkServer {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        match raw::fork() {
            Some(pid) => {
                drop(theirs);
                RawForkServer { control: ours, pid }
            }
            None => {
                drop(ours);
                let mut theirs = theirs;
                let mut byte = [0u8; 1];
                while theirs.read_exact(&mut byte).is_ok() {
                    let status = match raw::fork() {
                        Some(child) => reap(child),
                        None => raw::exit(0),
                    };
                    if theirs.write_all(&status.to_le_bytes()).is_err() {
                        break;
                    }
                }
                raw::exit(0)
            }
        }
    }

    /// Mean time of `n` requests, in µs.
    fn rounds(&mut self, n: u32) -> f64 {
        let t = Instant::now();
        for _ in 0..n {
            self.control.write_all(b"f").expect("request");
            let mut status = [0u8; 4];
            self.control.read_exact(&mut status).expect("status");
        }
        micros(t.elapsed()) / f64::from(n)
    }

    fn finish(self) {
        drop(self.control);
        reap(self.pid);
    }
}
