//! Supervision and pools on real processes: chaos with SIGKILL, restart
//! limits, key affinity, shrinking under load, back-pressure, bounded
//! stops. Every wait is bounded (the harness's alarm, and each wait's own
//! timeout).

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use forkbridge::{
    Backend, BackendContext, Command, Dispatch, ErrorKind, HandlerResult, Handlers, Message,
    MessageProcess, Pool, ProcessState, RestartPolicy, StartMethod, Supervisor, SupervisorEvent,
    Ticket,
};
use forkbridge_testkit::{children_but_the_fork_server, kill, threads, wait_until};
use serde::{Deserialize, Serialize};

use common::WAIT;

/// A pool worker: answers typed calls; may record each start in a file
/// and fail in `pre_run`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Worker {
    /// A file `pre_run` appends a line to (counts the starts).
    starts_log: Option<String>,
    fail_pre_run: bool,
    /// A file `post_run` appends the process's name to (stop order).
    stops_log: Option<String>,
}

impl Backend for Worker {
    fn register(h: &mut Handlers<Self>) {
        // A little work per call, so the chaos has calls in flight to hit.
        h.typed("double", |_, _, (x,): (u64,)| {
            let until = Instant::now() + Duration::from_micros(100);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            Ok(x * 2)
        });
        h.typed("pid", |_, _, (): ()| Ok(std::process::id()));
        h.typed("sleep", |_, _, (ms,): (u64,)| {
            std::thread::sleep(Duration::from_millis(ms));
            Ok(ms)
        });
        h.on("block", |_, ctx, _| common::block_ignoring_sigterm(ctx));
    }

    fn pre_run(&mut self, _: &mut BackendContext) -> HandlerResult {
        if let Some(path) = &self.starts_log {
            append(path, &std::process::id().to_string());
        }
        if self.fail_pre_run {
            return Err("pre_run fails on purpose".into());
        }
        Ok(())
    }

    fn post_run(&mut self, ctx: &mut BackendContext) {
        if let Some(path) = &self.stops_log {
            append(path, ctx.log_target());
        }
    }
}

fn append(path: &str, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    writeln!(f, "{line}").expect("write log");
}

fn lines(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn temp_path(tag: &str) -> String {
    let path =
        std::env::temp_dir().join(format!("forkbridge-supervise-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path.to_string_lossy().into_owned()
}

// The docs promise a pool (and a supervisor) can move to another thread.
const _: () = {
    const fn send<T: Send>() {}
    send::<Pool>();
    send::<Supervisor>();
    send::<Ticket<u64>>();
};

const DOUBLE: Command<(u64,), u64> = Command::new("double");
const PID: Command<(), u32> = Command::new("pid");
const SLEEP: Command<(u64,), u64> = Command::new("sleep");

/// Restarts at once, without limit: for chaos.
fn unlimited() -> RestartPolicy {
    RestartPolicy::always()
        .max_restarts(u32::MAX, Duration::from_secs(1))
        .backoff(Duration::ZERO, Duration::ZERO)
}

fn pool_of(n: usize, method: StartMethod, policy: RestartPolicy) -> Pool {
    Pool::builder("pool")
        .workers(n)
        .restart(policy)
        .build(move |name| {
            MessageProcess::builder(name)
                .start_method(method)
                .build_portable(Worker::default())
        })
        .expect("pool starts")
}

fn worker_pids(pool: &Pool) -> Vec<i32> {
    pool.status()
        .iter()
        .filter(|s| s.state == ProcessState::Running)
        .filter_map(|s| s.pid)
        .collect()
}

/// A tiny xorshift: the chaos is random but the test needs no crate.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

struct Chaos {
    answered: usize,
    disconnected: usize,
    kills: usize,
    back_to_four: Duration,
}

/// 10 000 calls through a pool of 4, a random worker SIGKILLed every
/// 50 ms by the thread that drives the pool (a second thread would make
/// the parent threaded, and `Fork` restarts refuse that).
fn chaos(command: Command<(u64,), u64>, method: StartMethod, calls: u64) -> Chaos {
    let mut pool = pool_of(4, method, unlimited());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let mut outstanding: std::collections::VecDeque<(u64, Ticket<u64>)> = Default::default();
    let mut next_kill = Instant::now() + Duration::from_millis(50);
    let mut result = Chaos {
        answered: 0,
        disconnected: 0,
        kills: 0,
        back_to_four: Duration::ZERO,
    };
    let settle = |(x, ticket): (u64, Ticket<u64>), pool: &mut Pool, result: &mut Chaos| match pool
        .wait_timeout(&ticket, WAIT)
    {
        Ok(v) => {
            assert_eq!(v, x * 2, "a reply for another call");
            result.answered += 1;
        }
        Err(e) if e.is_disconnected() => {
            assert!(
                e.exit_status().is_some(),
                "the status travels with the error"
            );
            result.disconnected += 1;
        }
        Err(e) => panic!("call {x} ended with {e:?}"),
    };
    for x in 0..calls {
        if Instant::now() >= next_kill {
            let pids = worker_pids(&pool);
            if !pids.is_empty() {
                let _ = kill(pids[rng.below(pids.len())], libc::SIGKILL);
                result.kills += 1;
            }
            next_kill += Duration::from_millis(50);
        }
        let ticket = pool
            .submit_timeout(command.with((x,)), WAIT)
            .expect("submitted within the bound");
        outstanding.push_back((x, ticket));
        if outstanding.len() >= 64 {
            let oldest = outstanding.pop_front().expect("non-empty");
            settle(oldest, &mut pool, &mut result);
        }
    }
    for entry in outstanding.drain(..) {
        settle(entry, &mut pool, &mut result);
    }
    // One last kill, then the time until four serve again.
    let pids = worker_pids(&pool);
    let victim = pids[rng.below(pids.len())];
    kill(victim, libc::SIGKILL).expect("kill");
    let killed = Instant::now();
    let until = killed + WAIT;
    // Until the pool has seen the death (the victim is gone from it) and
    // four serve again: right after the kill, four may still serve only
    // because the death is not seen yet.
    while (worker_pids(&pool).contains(&victim) || pool.serving() < 4) && Instant::now() < until {
        pool.poll(Duration::from_millis(1)).expect("poll");
    }
    result.back_to_four = killed.elapsed();
    assert!(!worker_pids(&pool).contains(&victim), "the death was seen");
    assert_eq!(pool.serving(), 4);
    assert_eq!(
        children_but_the_fork_server().len(),
        if method == StartMethod::Fork { 4 } else { 0 },
        "no zombie, no extra child"
    );
    assert_eq!(pool.call(command.with((21,))).expect("serves"), 42);
    pool.stop(WAIT);
    result
}

fn chaos_every_call_is_answered_or_disconnected() {
    let calls = 10_000;
    let r = chaos(DOUBLE, StartMethod::Fork, calls);
    assert_eq!(r.answered + r.disconnected, calls as usize, "no call lost");
    assert!(r.kills >= 3, "the chaos killed ({} kills)", r.kills);
    assert!(r.disconnected > 0, "the kills hit calls in flight");
    assert!(
        r.back_to_four <= Duration::from_millis(100),
        "back to 4 workers in {:?}",
        r.back_to_four
    );
    println!(
        "  {} answered, {} disconnected, {} kills, back to 4 in {:?}",
        r.answered, r.disconnected, r.kills, r.back_to_four
    );
}

fn chaos_with_idempotent_calls_answers_every_call() {
    let calls = 10_000;
    let r = chaos(DOUBLE.idempotent(), StartMethod::Fork, calls);
    assert_eq!(
        r.answered, calls as usize,
        "{} disconnected",
        r.disconnected
    );
    assert!(r.kills >= 3, "the chaos killed ({} kills)", r.kills);
    assert!(
        r.back_to_four <= Duration::from_millis(100),
        "{:?}",
        r.back_to_four
    );
}

fn chaos_under_the_fork_server() {
    let calls = 3_000;
    let r = chaos(DOUBLE.idempotent(), StartMethod::ForkServer, calls);
    assert_eq!(r.answered, calls as usize);
}

fn a_failing_backend_is_given_up_after_its_limit() {
    let log = temp_path("limit");
    let worker = Worker {
        starts_log: Some(log.clone()),
        fail_pre_run: true,
        ..Worker::default()
    };
    let seen = Arc::new(AtomicU32::new(0));
    let seen_in_hook = Arc::clone(&seen);
    let mut sup = Supervisor::new().on_event(move |e| {
        if matches!(e, SupervisorEvent::Restarted { .. }) {
            seen_in_hook.fetch_add(1, Ordering::Relaxed);
        }
    });
    let policy = RestartPolicy::on_failure()
        .max_restarts(3, Duration::from_secs(60))
        .backoff(Duration::from_millis(1), Duration::from_millis(10));
    sup.add("failing", policy, move |name| {
        MessageProcess::builder(name).build(worker.clone())
    })
    .expect("the first start forks");
    let until = Instant::now() + WAIT;
    let error = loop {
        assert!(Instant::now() < until, "never given up");
        match sup.wait_event(WAIT).expect("wait") {
            Some(SupervisorEvent::GaveUp { error, .. }) => break error,
            Some(_) => {}
            None => panic!("no event within the bound"),
        }
    };
    match error.kind() {
        ErrorKind::GaveUp { restarts, exits } => {
            assert_eq!(*restarts, 3);
            assert_eq!(exits.len(), 4);
            for exit in exits {
                assert_eq!(exit.and_then(|s| s.code()), Some(1), "{exits:?}");
            }
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(error.process_name(), Some("failing"));
    assert_eq!(seen.load(Ordering::Relaxed), 3, "the hook saw each restart");
    // No storm: no fork after the limit.
    assert_eq!(
        sup.wait_event(Duration::from_millis(200))
            .expect("wait")
            .map(|e| e.name().map(str::to_string)),
        None
    );
    assert_eq!(lines(&log).len(), 4, "one start and three restarts");
    assert!(sup.process("failing").is_none());
    let status = &sup.status()[0];
    assert_eq!(status.state, ProcessState::GivenUp);
    assert_eq!(status.restarts, 3);
    assert_eq!(status.last_exit.and_then(|s| s.code()), Some(1));
    let _ = std::fs::remove_file(&log);
}

fn a_pool_whose_workers_all_give_up_refuses_calls() {
    let mut pool = Pool::builder("doomed")
        .workers(2)
        .restart(
            RestartPolicy::always()
                .max_restarts(2, Duration::from_secs(60))
                .backoff(Duration::ZERO, Duration::ZERO),
        )
        .build(|name| {
            MessageProcess::builder(name).build(Worker {
                fail_pre_run: true,
                ..Worker::default()
            })
        })
        .expect("forks");
    let until = Instant::now() + WAIT;
    let error = loop {
        assert!(Instant::now() < until, "never refused");
        match pool.submit(DOUBLE.with((1,))) {
            Ok(t) => {
                let _ = pool.wait_timeout(&t, WAIT);
            }
            Err(e) => break e,
        }
    };
    assert!(
        matches!(error.kind(), ErrorKind::GaveUp { restarts: 2, .. }),
        "{error:?}"
    );
    assert!(
        pool.status()
            .iter()
            .all(|s| s.state == ProcessState::GivenUp)
    );
}

fn keys_stick_to_their_worker_while_it_lives() {
    let mut pool = Pool::builder("keyed")
        .workers(3)
        .dispatch(Dispatch::LeastOutstanding)
        .restart(unlimited())
        .build(|name| MessageProcess::builder(name).build(Worker::default()))
        .expect("pool");
    // Idempotent: a call that was on its way to the killed worker goes once
    // more, to another.
    let owner =
        |pool: &mut Pool, key: u32| pool.call(PID.idempotent().with(()).key(key)).expect("call");
    let first: Vec<u32> = (0..30).map(|k| owner(&mut pool, k)).collect();
    for _ in 0..3 {
        for k in 0..30 {
            assert_eq!(owner(&mut pool, k), first[k as usize], "key {k} moved");
        }
    }
    let distinct: std::collections::HashSet<_> = first.iter().collect();
    assert!(distinct.len() > 1, "keys spread over the workers");
    // Kill the worker of key 5: key 5 moves, the others' keys stay.
    let victim = first[5];
    kill(victim as i32, libc::SIGKILL).expect("kill");
    let moved = owner(&mut pool, 5);
    assert_ne!(moved, victim, "key 5 moved off the dead worker");
    for k in 0..30 {
        let now = owner(&mut pool, k);
        if first[k as usize] != victim {
            assert_eq!(
                now, first[k as usize],
                "key {k} moved though its worker lives"
            );
        } else {
            assert_ne!(now, victim);
        }
    }
    assert_eq!(owner(&mut pool, 5), moved, "and sticks to its new worker");
    pool.stop(WAIT);
}

fn shrinking_under_load_loses_no_call() {
    let mut pool = Pool::builder("shrink")
        .workers(4)
        .max_in_flight(8)
        .build(|name| MessageProcess::builder(name).build(Worker::default()))
        .expect("pool");
    let tickets: Vec<_> = (0..32)
        .map(|_| pool.submit(SLEEP.with((20,))).expect("submit"))
        .collect();
    pool.resize(1).expect("shrink");
    assert_eq!(pool.size(), 1);
    for t in tickets {
        assert_eq!(pool.wait_timeout(&t, WAIT).expect("answered"), 20);
    }
    let until = Instant::now() + WAIT;
    while pool.status().len() > 1 && Instant::now() < until {
        pool.poll(Duration::from_millis(10)).expect("poll");
    }
    assert_eq!(pool.status().len(), 1, "the drained workers left");
    assert_eq!(children_but_the_fork_server().len(), 1, "and were reaped");
    pool.resize(3).expect("grow");
    assert_eq!(pool.serving(), 3);
    let pids: std::collections::HashSet<u32> = (0..12)
        .map(|_| pool.call(PID.with(())).expect("call"))
        .collect();
    assert_eq!(pids.len(), 3, "round robin reaches the new workers");
    pool.stop(WAIT);
}

fn back_pressure_blocks_refuses_and_times_out() {
    let mut pool = Pool::builder("bounded")
        .workers(1)
        .max_in_flight(2)
        .build(|name| MessageProcess::builder(name).build(Worker::default()))
        .expect("pool");
    let a = pool.submit(SLEEP.with((300,))).expect("first");
    let b = pool.submit(SLEEP.with((1,))).expect("second");
    let full = pool.try_submit(SLEEP.with((1,))).expect_err("full");
    assert_eq!(full.kind(), &ErrorKind::Full);
    let t = Instant::now();
    let timed_out = pool
        .submit_timeout(SLEEP.with((1,)), Duration::from_millis(20))
        .expect_err("times out");
    assert_eq!(timed_out.kind(), &ErrorKind::Timeout);
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "gave up at its bound"
    );
    // The blocking form waits for room and then goes.
    let c = pool.submit(SLEEP.with((2,))).expect("blocks, then goes");
    assert_eq!(pool.wait(a).expect("a"), 300);
    assert_eq!(pool.wait(b).expect("b"), 1);
    assert_eq!(pool.wait(c).expect("c"), 2);
    pool.stop(WAIT);
}

fn tickets_and_edges() {
    let zero = Pool::builder("empty")
        .workers(0)
        .build(|name| MessageProcess::builder(name).build(Worker::default()));
    assert_eq!(
        zero.expect_err("no workers").kind(),
        &ErrorKind::InvalidArgument
    );
    let unbounded = Pool::builder("unbounded")
        .max_in_flight(0)
        .build(|name| MessageProcess::builder(name).build(Worker::default()));
    assert_eq!(
        unbounded.expect_err("no room").kind(),
        &ErrorKind::InvalidArgument
    );

    let mut pool = Pool::builder("edges")
        .workers(1)
        .build(|name| MessageProcess::builder(name).build(Worker::default()))
        .expect("pool");
    let t = pool.submit(DOUBLE.with((4,))).expect("submit");
    assert_eq!(pool.wait_timeout(&t, WAIT).expect("8"), 8);
    let spent = pool.try_wait(&t).expect_err("spent");
    assert_eq!(spent.kind(), &ErrorKind::InvalidArgument);
    // A ticket dropped unanswered: the reply is dropped on arrival.
    drop(pool.submit(DOUBLE.with((5,))).expect("submit"));
    assert_eq!(pool.call(DOUBLE.with((6,))).expect("12"), 12);
    // Wrong types: the backend refuses, the pool goes on.
    let wrong: Command<(String,), u64> = Command::new("double");
    let e = pool.call(wrong.with(("x".into(),))).expect_err("refused");
    assert!(
        matches!(e.kind(), ErrorKind::Remote { kind, .. } if kind == "decode"),
        "{e:?}"
    );
    let unknown: Command<(), ()> = Command::new("nope");
    assert!(matches!(
        pool.call(unknown.with(())).expect_err("unknown").kind(),
        ErrorKind::Remote { .. }
    ));
    // A zero and a maximal timeout.
    let t = pool.submit(SLEEP.with((50,))).expect("submit");
    assert_eq!(
        pool.wait_timeout(&t, Duration::ZERO)
            .expect_err("not yet")
            .kind(),
        &ErrorKind::Timeout
    );
    assert_eq!(
        pool.try_wait(&t).expect_err("not yet").kind(),
        &ErrorKind::Empty
    );
    assert_eq!(pool.wait_timeout(&t, Duration::MAX).expect("50"), 50);
    // The pool's call timeout bounds `call` and `wait`.
    let mut bounded = Pool::builder("bounded-calls")
        .workers(1)
        .call_timeout(Duration::from_millis(50))
        .build(|name| MessageProcess::builder(name).build(Worker::default()))
        .expect("pool");
    let e = bounded.call(SLEEP.with((2_000,))).expect_err("times out");
    assert_eq!(e.kind(), &ErrorKind::Timeout);
    // Stopping ends the calls in flight: their tickets turn ready.
    let late = bounded.submit(SLEEP.with((2_000,))).expect("submit");
    assert!(!late.is_ready());
    bounded.stop(Duration::from_millis(100));
    assert!(late.is_ready());
    // Casts go one way; a failed cast's report arrives as a message.
    pool.cast(Command::<(u64,), ()>::new("nope").with((1,)))
        .expect("cast");
    let until = Instant::now() + WAIT;
    let (worker, msg) = loop {
        match pool.try_recv() {
            Ok(m) => break m,
            Err(e) if e.kind() == &ErrorKind::Empty && Instant::now() < until => {
                pool.poll(Duration::from_millis(10)).expect("poll");
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!((worker.as_str(), msg.command()), ("edges-0", "error"));
    pool.stop(WAIT);
}

fn a_killed_worker_fails_its_calls_with_its_status() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let mut pool = Pool::builder("fated")
        .workers(1)
        .on_event(move |e| seen.lock().unwrap().push(format!("{e:?}")))
        .build(|name| MessageProcess::builder(name).build(Worker::default()))
        .expect("pool");
    let pid = pool.call(PID.with(())).expect("pid");
    let t = pool.submit(SLEEP.with((5_000,))).expect("submit");
    kill(pid as i32, libc::SIGKILL).expect("kill");
    let e = pool.wait_timeout(&t, WAIT).expect_err("died with it");
    assert!(e.is_disconnected(), "{e:?}");
    assert_eq!(
        e.exit_status().and_then(|s| s.signal()),
        Some(libc::SIGKILL)
    );
    assert_eq!(e.process_name(), Some("fated-0"));
    // Replaced: the next call is answered by another process.
    assert_ne!(pool.call(PID.with(())).expect("replacement"), pid);
    let status = &pool.status()[0];
    assert_eq!(status.restarts, 1);
    assert_eq!(status.state, ProcessState::Running);
    assert!(status.messages_received >= 1 && status.rss_bytes.is_some());
    let events = events.lock().unwrap();
    assert!(events.iter().any(|e| e.starts_with("Exited")), "{events:?}");
    assert!(
        events.iter().any(|e| e.starts_with("Restarted")),
        "{events:?}"
    );
    drop(events);
    pool.stop(WAIT);
}

fn a_pool_from_a_threaded_parent_restarts_through_the_fork_server() {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinning = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        while !spinning.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let mut pool = pool_of(2, StartMethod::ForkServer, unlimited());
    let pid = pool.call(PID.with(())).expect("pid");
    kill(pid as i32, libc::SIGKILL).expect("kill");
    for x in 0..50 {
        assert_eq!(
            pool.call(DOUBLE.idempotent().with((x,))).expect("double"),
            x * 2
        );
    }
    assert_eq!(pool.serving(), 2);
    assert!(pool.status().iter().map(|s| s.restarts).sum::<u32>() >= 1);
    pool.stop(WAIT);
    stop.store(true, Ordering::Relaxed);
    thread.join().expect("thread");
    // The kernel lists a joined thread a moment longer; later cases fork.
    assert!(wait_until(WAIT, || threads() == 1));
}

fn the_supervisor_stops_everything_within_its_bound() {
    let mut sup = Supervisor::new().stop_timeout(Duration::from_millis(1_500));
    for i in 0..3 {
        sup.add(format!("stubborn-{i}"), RestartPolicy::always(), |name| {
            MessageProcess::builder(name)
                .stop_timeout(Duration::from_secs(5))
                .kill_timeout(Duration::from_secs(5))
                .build(Worker::default())
        })
        .expect("add");
        let p = sup.process(&format!("stubborn-{i}")).expect("running");
        p.send(Message::new("block")).expect("send");
        assert_eq!(
            p.recv_timeout(WAIT).expect("blocking").command(),
            "blocking"
        );
    }
    let t = Instant::now();
    sup.stop();
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(1_500) + Duration::from_secs(1),
        "took {took:?}"
    );
    assert!(children_but_the_fork_server().is_empty());
    for s in sup.status() {
        assert_eq!(s.state, ProcessState::Exited);
        assert_eq!(s.last_exit.and_then(|e| e.signal()), Some(libc::SIGKILL));
    }
    // Nothing comes back after a stop, and a wait without end refuses
    // rather than hang.
    assert!(
        sup.wait_event(Duration::from_millis(100))
            .expect("wait")
            .is_none()
    );
    let forever = sup
        .wait_event(Duration::MAX)
        .expect_err("nothing to wait for");
    assert_eq!(forever.kind(), &ErrorKind::InvalidArgument);
}

fn the_supervisor_stops_in_reverse_start_order() {
    let log = temp_path("order");
    let mut sup = Supervisor::new();
    for name in ["first", "second", "third"] {
        let worker = Worker {
            stops_log: Some(log.clone()),
            ..Worker::default()
        };
        sup.add(name, RestartPolicy::on_failure(), move |n| {
            MessageProcess::builder(n).build(worker.clone())
        })
        .expect("add");
    }
    assert_eq!(
        sup.names().collect::<Vec<_>>(),
        ["first", "second", "third"]
    );
    let dup = sup.add("first", RestartPolicy::never(), |n| {
        MessageProcess::builder(n).build(Worker::default())
    });
    assert_eq!(
        dup.expect_err("duplicate").kind(),
        &ErrorKind::InvalidArgument
    );
    sup.stop();
    assert_eq!(
        lines(&log),
        ["Worker.third", "Worker.second", "Worker.first"]
    );
    let _ = std::fs::remove_file(&log);
}

fn the_supervisor_reports_messages_exits_and_restarts() {
    let mut sup = Supervisor::new();
    sup.add("clean", RestartPolicy::on_failure(), |n| {
        MessageProcess::builder(n).build(Worker::default())
    })
    .expect("add");
    sup.add("never", RestartPolicy::never(), |n| {
        MessageProcess::builder(n).build(Worker::default())
    })
    .expect("add");
    sup.process("clean")
        .unwrap()
        .send(Message::new("ping"))
        .expect("send");
    let mut got_pong = false;
    let until = Instant::now() + WAIT;
    // A zero timeout still reads what has arrived (a program busy
    // elsewhere polls this way).
    while !got_pong && Instant::now() < until {
        match sup.wait_event(Duration::ZERO).expect("wait") {
            Some(SupervisorEvent::Message { name, message }) => {
                got_pong = name == "clean" && message.command() == "pong";
            }
            Some(_) => {}
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    assert!(got_pong);
    // A clean exit under OnFailure and a kill under Never: both stay down.
    sup.process("clean")
        .unwrap()
        .request_stop()
        .expect("stop request");
    let pid = sup.process("never").unwrap().pid().unwrap();
    kill(pid, libc::SIGKILL).expect("kill");
    let mut exits = Vec::new();
    while exits.len() < 2 {
        match sup.wait_event(WAIT).expect("wait") {
            Some(SupervisorEvent::Exited {
                name,
                status,
                restart_in,
                ..
            }) => {
                assert_eq!(restart_in, None);
                exits.push((name, status.expect("status")));
            }
            Some(SupervisorEvent::Restarted { name, .. }) => panic!("{name} restarted"),
            Some(_) => {}
            None => panic!("no exit within the bound"),
        }
    }
    exits.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(exits[0].1.success());
    assert_eq!(exits[1].1.signal(), Some(libc::SIGKILL));
    // An extra fd wakes the wait.
    let (r, w) = std::io::pipe().expect("pipe");
    (&w).write_all(b"x").expect("write");
    use std::os::fd::AsFd;
    let event = sup.wait_event_with(&[r.as_fd()], WAIT).expect("wait");
    assert!(
        matches!(event, Some(SupervisorEvent::Ready(0))),
        "{event:?}"
    );
}

test_main!(
    chaos_every_call_is_answered_or_disconnected,
    chaos_with_idempotent_calls_answers_every_call,
    chaos_under_the_fork_server,
    a_failing_backend_is_given_up_after_its_limit,
    a_pool_whose_workers_all_give_up_refuses_calls,
    keys_stick_to_their_worker_while_it_lives,
    shrinking_under_load_loses_no_call,
    back_pressure_blocks_refuses_and_times_out,
    tickets_and_edges,
    a_killed_worker_fails_its_calls_with_its_status,
    a_pool_from_a_threaded_parent_restarts_through_the_fork_server,
    a_spare_takes_a_dead_workers_place_at_once,
    the_supervisor_stops_everything_within_its_bound,
    the_supervisor_stops_in_reverse_start_order,
    the_supervisor_reports_messages_exits_and_restarts,
    a_restart_that_cannot_start_counts_toward_the_limit,
    every_state_change_is_logged_at_its_level,
);

fn a_spare_takes_a_dead_workers_place_at_once() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let mut pool = Pool::builder("spared")
        .workers(2)
        .spares(1)
        .restart(unlimited())
        .on_event(move |e| {
            if let SupervisorEvent::TookOver { name, replaces } = e {
                seen.lock().unwrap().push((name.clone(), replaces.clone()));
            }
        })
        .build(|name| MessageProcess::builder(name).build(Worker::default()))
        .expect("pool");
    let states = |pool: &Pool| {
        let mut s: Vec<ProcessState> = pool.status().iter().map(|s| s.state).collect();
        s.sort_by_key(|s| s.as_str());
        s
    };
    assert_eq!(
        states(&pool),
        [
            ProcessState::Running,
            ProcessState::Running,
            ProcessState::Standby
        ]
    );
    assert_eq!((pool.serving(), pool.size()), (2, 2));
    let spare = pool
        .status()
        .into_iter()
        .find(|s| s.state == ProcessState::Standby)
        .expect("a spare");
    // The spare takes no calls while both workers live.
    let pids: std::collections::HashSet<u32> = (0..20)
        .map(|_| pool.call(PID.with(())).expect("pid"))
        .collect();
    assert_eq!(pids.len(), 2);
    assert!(!pids.contains(&(spare.pid.unwrap() as u32)));
    // A worker dies with a call in hand: the spare answers it.
    let victim = pool.status()[0].pid.unwrap();
    let t = pool
        .submit(SLEEP.idempotent().with((300,)))
        .expect("submit");
    let t2 = pool
        .submit(SLEEP.idempotent().with((300,)))
        .expect("submit");
    kill(victim, libc::SIGKILL).expect("kill");
    assert_eq!(pool.wait_timeout(&t, WAIT).expect("answered"), 300);
    assert_eq!(pool.wait_timeout(&t2, WAIT).expect("answered"), 300);
    let took = events.lock().unwrap().clone();
    assert_eq!(took, [(spare.name.clone(), "spared-0".to_string())]);
    let pids: std::collections::HashSet<u32> = (0..20)
        .map(|_| pool.call(PID.with(())).expect("pid"))
        .collect();
    assert!(
        pids.contains(&(spare.pid.unwrap() as u32)),
        "the spare serves"
    );
    assert!(!pids.contains(&(victim as u32)));
    // The dead worker's replacement is the new spare.
    let until = Instant::now() + WAIT;
    while states(&pool)
        != [
            ProcessState::Running,
            ProcessState::Running,
            ProcessState::Standby,
        ]
        && Instant::now() < until
    {
        pool.poll(Duration::from_millis(5)).expect("poll");
    }
    assert_eq!(
        states(&pool),
        [
            ProcessState::Running,
            ProcessState::Running,
            ProcessState::Standby
        ]
    );
    let respared = pool
        .status()
        .into_iter()
        .find(|s| s.state == ProcessState::Standby)
        .unwrap();
    assert_eq!((respared.name.as_str(), respared.restarts), ("spared-0", 1));
    assert_eq!(children_but_the_fork_server().len(), 3);
    // A shrink leaves the spare alone; a grow does not use it.
    pool.resize(1).expect("shrink");
    assert_eq!(pool.size(), 1);
    pool.resize(2).expect("grow");
    assert_eq!(pool.size(), 2);
    pool.stop(WAIT);
}

fn a_restart_that_cannot_start_counts_toward_the_limit() {
    let mut sup = Supervisor::new();
    let mut made = 0;
    let policy = RestartPolicy::always()
        .max_restarts(2, Duration::from_secs(60))
        .backoff(Duration::from_millis(1), Duration::from_millis(1));
    sup.add("once", policy, move |name| {
        made += 1;
        // The first start works; every restart is refused at `start`
        // (a backend that cannot cross to a spawned worker).
        let method = if made == 1 {
            StartMethod::Fork
        } else {
            StartMethod::Spawn
        };
        MessageProcess::builder(name)
            .start_method(method)
            .build(Worker::default())
    })
    .expect("the first start works");
    let pid = sup.process("once").unwrap().pid().unwrap();
    kill(pid, libc::SIGKILL).expect("kill");
    let until = Instant::now() + WAIT;
    let error = loop {
        assert!(Instant::now() < until, "never given up");
        match sup.wait_event(WAIT).expect("wait") {
            Some(SupervisorEvent::GaveUp { error, .. }) => break error,
            Some(SupervisorEvent::Restarted { .. }) => panic!("a refused start restarted"),
            Some(_) => {}
            None => panic!("no event within the bound"),
        }
    };
    match error.kind() {
        ErrorKind::GaveUp { restarts, exits } => {
            assert_eq!(*restarts, 2);
            assert_eq!(exits.len(), 3);
            assert_eq!(exits[0].and_then(|s| s.signal()), Some(libc::SIGKILL));
            assert_eq!(&exits[1..], [None, None], "a refused start has no status");
        }
        other => panic!("{other:?}"),
    }
    assert!(children_but_the_fork_server().is_empty());
}

/// Keeps every log record of the supervision target.
struct Capture(Mutex<Vec<(log::Level, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.target() == "forkbridge::supervise" {
            let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
            kept.push((record.level(), record.args().to_string()));
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

fn every_state_change_is_logged_at_its_level() {
    log::set_logger(&CAPTURE).expect("the only logger of this binary");
    log::set_max_level(log::LevelFilter::Info);
    let logged = |level: log::Level, what: &str| {
        CAPTURE
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|(l, m)| *l == level && m.contains(what))
    };
    // A kill, a restart and a spare taking over, in a pool.
    let mut pool = Pool::builder("logged")
        .workers(1)
        .spares(1)
        .restart(unlimited())
        .build(|name| MessageProcess::builder(name).build(Worker::default()))
        .expect("pool");
    let pid = pool.call(PID.with(())).expect("pid");
    kill(pid as i32, libc::SIGKILL).expect("kill");
    let until = Instant::now() + WAIT;
    while !logged(log::Level::Info, "restarted") && Instant::now() < until {
        pool.poll(Duration::from_millis(5)).expect("poll");
    }
    assert!(logged(
        log::Level::Warn,
        &format!("logged-0 (pid {pid}) exited")
    ));
    assert!(logged(
        log::Level::Info,
        "spare logged-1 took over from logged-0"
    ));
    assert!(logged(log::Level::Info, "logged-0 restarted as pid"));
    pool.stop(WAIT);
    // A clean exit, and a give-up, under a supervisor.
    let mut sup = Supervisor::new();
    sup.add("clean", RestartPolicy::on_failure(), |n| {
        MessageProcess::builder(n).build(Worker::default())
    })
    .expect("add");
    sup.add(
        "doomed",
        RestartPolicy::on_failure().max_restarts(0, WAIT),
        |n| {
            MessageProcess::builder(n).build(Worker {
                fail_pre_run: true,
                ..Worker::default()
            })
        },
    )
    .expect("add");
    sup.process("clean")
        .unwrap()
        .request_stop()
        .expect("stop request");
    let until = Instant::now() + WAIT;
    while !(logged(log::Level::Info, "clean") && logged(log::Level::Error, "doomed"))
        && Instant::now() < until
    {
        sup.wait_event(Duration::from_millis(50)).expect("wait");
    }
    assert!(logged(log::Level::Info, "exit status: 0; not restarted"));
    assert!(
        logged(
            log::Level::Error,
            "process 'doomed': given up after 0 restarts (last exit: exit status: 1)"
        ),
        "{:?}",
        CAPTURE.0.lock().unwrap()
    );
}
