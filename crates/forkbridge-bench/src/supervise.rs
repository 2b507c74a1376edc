//! The supervision scenarios: how soon a pool's killed worker answers
//! again, what a second worker adds to CPU-bound calls, and what the pool
//! costs per call over a direct call to a process.
//!
//! All pools here start their workers by `Fork` from this program's one
//! thread (the bench starts no thread), so a restart by `Fork` is allowed;
//! `restart_latency_forkserver` restarts through the fork server instead.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use forkbridge::{
    Backend, Command, Handlers, MessageProcess, Pool, ProcessState, RestartPolicy, Result,
    StartMethod,
};
use forkbridge_testkit::kill;

use crate::{Outcome, Scale, interleaved, micros, pinned};

/// A pool worker: its pid, an echo, and a CPU-bound loop. It crosses as
/// data, so every start method can run it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Worker;

impl Backend for Worker {
    fn register(h: &mut Handlers<Self>) {
        h.typed("pid", |_, _, (): ()| Ok(std::process::id()))
            .typed("echo", |_, _, (x,): (u64,)| Ok(x))
            .typed("spin", |_, _, (n,): (u64,)| Ok(spin(n)));
    }
}

/// Idempotent: a ping sent to a worker killed before the pool noticed goes
/// once more, to its replacement (see `restart_rounds`).
const PID: Command<(), u32> = Command::new("pid").idempotent();
const ECHO: Command<(u64,), u64> = Command::new("echo");
const SPIN: Command<(u64,), u64> = Command::new("spin");

/// `n` steps of a 64-bit LCG: each step needs the one before, so no
/// compiler folds or vectorises the loop, and its time is linear in `n`.
fn spin(n: u64) -> u64 {
    let mut x = 1u64;
    for _ in 0..std::hint::black_box(n) {
        x = x
            .wrapping_mul(0x5851_F42D_4C95_7F2D)
            .wrapping_add(0x1405_7B7E_F767_814F);
    }
    x
}

/// Steps of `spin` per millisecond on this machine: the fastest of three
/// timings of at least 20 ms (a timing a preemption stretched only makes
/// the calls shorter than 1 ms, never longer).
fn spins_per_ms() -> u64 {
    let mut best = 0.0f64;
    for _ in 0..3 {
        let mut n = 1u64 << 12;
        loop {
            let t = Instant::now();
            std::hint::black_box(spin(n));
            let took = t.elapsed();
            if took >= Duration::from_millis(20) {
                best = best.max(n as f64 / took.as_secs_f64() / 1e3);
                break;
            }
            n *= 2;
        }
    }
    best as u64
}

fn worker(name: &str, method: StartMethod) -> Result<MessageProcess> {
    MessageProcess::builder(name)
        .start_method(method)
        .build_portable(Worker)
}

/// A pool of `n` workers started by `Fork`, with the default policy.
fn fork_pool(name: &str, n: usize) -> Pool {
    Pool::builder(name)
        .workers(n)
        .build(|name| worker(name, StartMethod::Fork))
        .expect("pool")
}

pub(crate) fn restart_latency(scale: &Scale) -> Outcome {
    let (value, baseline) = restart_rounds(scale, StartMethod::Fork, 0);
    Outcome {
        name: "restart_latency",
        unit: "us",
        value,
        baseline,
        target: "<=1.3",
        what: "SIGKILL of a 1-worker Pool's worker (Fork, immediate restarts) until pool.call of an idempotent pid command returns the replacement's pid",
        baseline_what: "start() + first typed call of a fresh process under Fork (its stop not counted)",
    }
}

pub(crate) fn restart_latency_spare(scale: &Scale) -> Outcome {
    let (value, baseline) = restart_rounds(scale, StartMethod::Fork, 1);
    Outcome {
        name: "restart_latency_spare",
        unit: "us",
        value,
        baseline,
        target: "<=1.3",
        what: "restart_latency with one spare (PoolBuilder::spares): the spare, already started, takes the killed worker's place",
        baseline_what: "start() + first typed call of a fresh process under Fork (its stop not counted)",
    }
}

pub(crate) fn restart_latency_forkserver(scale: &Scale) -> Outcome {
    forkbridge::start_fork_server().expect("fork server");
    let (value, baseline) = restart_rounds(scale, StartMethod::ForkServer, 0);
    Outcome {
        name: "restart_latency_forkserver",
        unit: "us",
        value,
        baseline,
        target: "<=1.3",
        what: "restart_latency with the workers started by StartMethod::ForkServer",
        baseline_what: "start() + first typed call of a fresh process under ForkServer (its stop not counted)",
    }
}

/// Per run, the mean kill-to-answer time of a pool's worker and the mean
/// start-to-answer time of a fresh process, in µs, taking turns.
///
/// The kill-to-answer time is what a caller sees who calls right after its
/// worker died: `pool.call` at once, the pool not told. The pid command is
/// idempotent, so a call written to the killed worker before the pool saw
/// its death (the kill is asynchronous: the socket may still take it) is
/// resent to the replacement rather than failed; the time then covers the
/// death being noticed, the restart, and the answer, as a caller waits for
/// them. Polling the pool until it serves again and calling only then would
/// leave out the time between the restart and the poll that sees it.
///
/// The value also holds the killed worker's exit in the kernel, which the
/// baseline has no counterpart for: its socket closes and its pidfd turns
/// readable only once the kernel has torn down its memory and files, and
/// no pool can replace a worker before it learns of the death.
///
/// With `spares`, each round first waits (untimed) until the killed
/// worker's replacement is up as the new spare, so every round measures a
/// spare taking over.
fn restart_rounds(scale: &Scale, method: StartMethod, spares: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (scale.starts / 3).max(5);
    // Restarts at once, every time, without limit.
    let policy = RestartPolicy::always()
        .max_restarts(u32::MAX, Duration::from_secs(1))
        .backoff(Duration::ZERO, Duration::ZERO);
    let mut pool = Pool::builder("restarted")
        .workers(1)
        .spares(spares)
        .restart(policy)
        .build(move |name| worker(name, method))
        .expect("pool");
    let mut pid = pool.call(PID.with(())).expect("pid");
    let mut round = || {
        let mut fresh = worker("fresh", method).expect("build");
        let t = Instant::now();
        fresh.start().expect("start");
        let answer: u32 = fresh.call("pid", &(), Duration::MAX).expect("call");
        let t_fresh = t.elapsed();
        assert_eq!(Some(answer as i32), fresh.pid());
        fresh.stop().expect("stop");

        while pool
            .status()
            .iter()
            .filter(|s| s.state == ProcessState::Standby)
            .count()
            < spares
        {
            pool.poll(Duration::from_millis(1)).expect("poll");
        }
        let t = Instant::now();
        kill(pid as i32, libc::SIGKILL).expect("kill");
        let replaced = pool.call(PID.with(())).expect("the replacement answers");
        let t_pool = t.elapsed();
        assert_ne!(replaced, pid, "answered by the killed worker");
        pid = replaced;
        (t_pool, t_fresh)
    };
    // Warm-up: the first start touches pages and code neither side counts.
    round();
    let (mut value, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..scale.runs {
        let (mut t_pool, mut t_fresh) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..n {
            let (p, f) = round();
            t_pool += p;
            t_fresh += f;
        }
        value.push(micros(t_pool) / f64::from(n));
        baseline.push(micros(t_fresh) / f64::from(n));
    }
    pool.stop(Duration::from_secs(5));
    (value, baseline)
}

/// Calls per second of `calls` calls of `SPIN.with((steps,))` through
/// `pool`, `window` of them in flight (a new one submitted as the oldest
/// is answered).
fn spin_rate(pool: &mut Pool, calls: u32, window: usize, steps: u64) -> f64 {
    let expected = spin(steps);
    let mut in_flight = VecDeque::with_capacity(window);
    let t = Instant::now();
    for _ in 0..calls {
        if in_flight.len() == window {
            let oldest = in_flight.pop_front().expect("a call in flight");
            assert_eq!(pool.wait(oldest).expect("spin"), expected);
        }
        in_flight.push_back(pool.submit(SPIN.with((steps,))).expect("submit"));
    }
    for ticket in in_flight {
        assert_eq!(pool.wait(ticket).expect("spin"), expected);
    }
    f64::from(calls) / t.elapsed().as_secs_f64()
}

pub(crate) fn pool_throughput(scale: &Scale) -> Outcome {
    // Eight in flight: four per worker of the pool of 2, so a worker always
    // has the next call queued when it answers one.
    const WINDOW: usize = 8;
    let steps = spins_per_ms();
    let calls = scale.starts * 2;
    let (mut value, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..scale.runs {
        // The baseline is the same pool with one worker, not a bare
        // MessageProcess: the same dispatch, window and bookkeeping per
        // call, so the ratio isolates what the second worker adds.
        let mut one = fork_pool("spin1", 1);
        let mut two = fork_pool("spin2", 2);
        // Warm-up: each worker's first calls fault in its pages.
        spin_rate(&mut one, WINDOW as u32, WINDOW, steps);
        spin_rate(&mut two, WINDOW as u32, WINDOW, steps);
        baseline.push(spin_rate(&mut one, calls, WINDOW, steps));
        value.push(spin_rate(&mut two, calls, WINDOW, steps));
        one.stop(Duration::from_secs(5));
        two.stop(Duration::from_secs(5));
    }
    Outcome {
        name: "pool_throughput",
        unit: "calls/s",
        value,
        baseline,
        target: ">=1.7",
        what: "typed calls of ~1 ms of CPU-bound work each (a calibrated loop) through a Pool of 2 (Fork), 8 in flight",
        baseline_what: "the same calls through a Pool of 1, 8 in flight",
    }
}

pub(crate) fn pool_overhead(scale: &Scale) -> Outcome {
    let (mut value, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..scale.runs {
        let mut pool = fork_pool("overhead", 1);
        let mut direct = worker("direct", StartMethod::Fork).expect("build");
        direct.start().expect("start");
        let pooled = pool.call(PID.with(())).expect("pid") as libc::pid_t;
        let partners = [pooled, direct.pid().expect("pid")];
        let (v, b) = pinned(&partners, || {
            interleaved(
                scale.roundtrips,
                500,
                || {
                    assert_eq!(pool.call(ECHO.with((7,))).expect("pool call"), 7);
                },
                || {
                    let x: u64 = direct
                        .call("echo", &(7u64,), Duration::MAX)
                        .expect("direct call");
                    assert_eq!(x, 7);
                },
            )
        });
        value.push(v);
        baseline.push(b);
        pool.stop(Duration::from_secs(5));
        direct.stop().expect("stop");
    }
    Outcome {
        name: "pool_overhead",
        unit: "us",
        value,
        baseline,
        target: "<=1.05",
        what: "pool.call of a typed echo (u64 -> u64) through a Pool of 1 (Fork)",
        baseline_what: "MessageProcess::call of the same command on a process of the same backend; interleaved blocks, partners on another CPU",
    }
}

/// What a status snapshot costs, against the round trip it must stay well
/// under to be taken every second beside the traffic (one read of
/// `/proc/<pid>/stat` and the counters).
pub(crate) fn status_snapshot(scale: &Scale) -> Outcome {
    let (mut value, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..scale.runs {
        let mut p = worker("status", StartMethod::Fork).expect("build");
        p.start().expect("start");
        let partners = [p.pid().expect("pid")];
        // Both sides use the one process, in turns.
        let p = std::cell::RefCell::new(p);
        let (v, b) = pinned(&partners, || {
            interleaved(
                scale.roundtrips,
                500,
                || {
                    let s = std::hint::black_box(p.borrow().status());
                    assert!(s.rss_bytes.is_some());
                },
                || {
                    let x: u64 = p
                        .borrow_mut()
                        .call("echo", &(7u64,), Duration::MAX)
                        .expect("call");
                    assert_eq!(x, 7);
                },
            )
        });
        value.push(v);
        baseline.push(b);
        p.into_inner().stop().expect("stop");
    }
    Outcome {
        name: "status_snapshot",
        unit: "us",
        value,
        baseline,
        target: "<=0.5",
        what: "MessageProcess::status() of a running backend (counters, one read of /proc/<pid>/stat)",
        baseline_what: "one typed call round trip to the same backend",
    }
}
