//! forkbridge's soak-and-fault suite.
//!
//! ```text
//! cargo run --release -p forkbridge-soak -- [SCENARIO...] [--quick]
//! ```
//!
//! Each scenario repeats a fault on real processes many times and counts
//! what went wrong; it prints a table, then one line per scenario:
//! `RESULT scenario=<name> value=<number> unit=<unit> baseline=0 ratio=<value> target=<target>`
//! where the value counts failures (target 0) unless the scenario says
//! otherwise. `--quick` runs every scenario in well under two minutes; the
//! full form is for people.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use forkbridge::{
    AsyncBackend, AsyncContext, AsyncHandlers, Backend, BackendContext, HandlerResult, Handlers,
    Message, MessageProcess, message,
};

/// A blocking backend with the behaviours the scenarios need.
#[derive(Debug, Default)]
struct Worker;

impl Worker {
    fn burst(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        for i in 0..msg.param::<u64>("n")? {
            ctx.send(message!("item", i = i))?;
        }
        Ok(())
    }

    fn sleep(&mut self, _: &mut BackendContext, msg: Message) -> HandlerResult {
        std::thread::sleep(Duration::from_millis(msg.param("ms")?));
        Ok(())
    }

    fn ignore_term_and_block(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
        ctx.send(Message::new("blocking"))?;
        ctx.flush()?;
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }

    fn spin(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        ctx.send(Message::new("spinning"))?;
        ctx.flush()?;
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    fn echo(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        ctx.send(msg)?;
        Ok(())
    }

    /// Checks a stream of `chunk` messages: sequence numbers and checksums.
    fn chunk(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let data = msg["data"].as_bytes().ok_or("no data")?;
        if checksum(data) != msg.param::<u64>("sum")? {
            ctx.send(message!("corrupt", seq = msg.param::<u64>("seq")?))?;
        }
        Ok(())
    }
}

impl Backend for Worker {
    fn register(h: &mut Handlers<Self>) {
        h.on("burst", Self::burst)
            .on("sleep", Self::sleep)
            .on("ignore_term_and_block", Self::ignore_term_and_block)
            .on("spin", Self::spin)
            .on("echo", Self::echo)
            .on("chunk", Self::chunk);
    }
}

/// An async backend: ping is built in, `nap` sleeps in a task.
#[derive(Debug, Default)]
struct AsyncWorker;

impl AsyncWorker {
    async fn nap(&mut self, ctx: &mut AsyncContext, msg: Message) -> HandlerResult {
        let ms: u64 = msg.param("ms")?;
        ctx.spawn("nap", async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        });
        Ok(())
    }
}

impl AsyncBackend for AsyncWorker {
    fn register(h: &mut AsyncHandlers<Self>) {
        h.on("nap", Self::nap);
    }
}

fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A small deterministic PRNG (xorshift), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |s| s.lines().count())
}

fn children() -> usize {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .map(|s| s.split_whitespace().count())
        .sum()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !matches!(
            stat.rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next()),
            Some("Z" | "X")
        )
    })
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: plain integers; the pids are our own unreaped children.
    unsafe { libc::kill(pid, sig) };
}

/// One scenario's outcome.
struct Outcome {
    name: &'static str,
    value: f64,
    unit: &'static str,
    baseline: f64,
    target: &'static str,
    detail: String,
}

impl Outcome {
    fn failures(name: &'static str, failures: u64, detail: String) -> Outcome {
        Outcome {
            name,
            value: failures as f64,
            unit: "failures",
            baseline: 0.0,
            target: "0",
            detail,
        }
    }
}

struct Scale {
    cycles: u64,
    kills: u64,
    stream_mib: u64,
    stops: u64,
    storm_ms: u64,
}

const FULL: Scale = Scale {
    cycles: 10_000,
    kills: 1_000,
    stream_mib: 1024,
    stops: 30,
    storm_ms: 10_000,
};

const QUICK: Scale = Scale {
    cycles: 500,
    kills: 100,
    stream_mib: 64,
    stops: 3,
    storm_ms: 1_000,
};

/// Start/stop cycles of blocking and async backends, ended in four ways.
fn cycles(scale: &Scale) -> Outcome {
    let warm = MessageProcess::builder("warm").build_async(AsyncWorker);
    drop(warm);
    let (fds, maps) = (open_fds(), mappings());
    let mut rng = Rng(1);
    let mut failures = 0;
    for i in 0..scale.cycles {
        let built = if i % 2 == 0 {
            MessageProcess::new("cycle", Worker)
        } else {
            MessageProcess::builder("cycle").build_async(AsyncWorker)
        };
        let Ok(mut p) = built else {
            failures += 1;
            continue;
        };
        if p.start().is_err() {
            failures += 1;
            continue;
        }
        let ok = match rng.below(4) {
            0 => p.stop().is_ok_and(|s| s.success()),
            1 => {
                let _ = p.send(Message::new("ping"));
                p.recv_timeout(Duration::from_secs(5)).is_ok() && p.stop().is_ok()
            }
            2 => {
                kill(p.pid().unwrap_or(0), libc::SIGKILL);
                p.join_timeout(Duration::from_secs(5)).is_ok()
            }
            _ => {
                drop(p);
                true
            }
        };
        failures += u64::from(!ok);
    }
    let zombies = children() as u64;
    let leaked_fds = open_fds().saturating_sub(fds) as u64;
    let leaked_maps = mappings().saturating_sub(maps + 8) as u64;
    Outcome::failures(
        "cycles",
        failures + zombies + leaked_fds + leaked_maps,
        format!(
            "{} cycles: {failures} failed, {zombies} children left, {leaked_fds} fds and {leaked_maps} mappings leaked",
            scale.cycles
        ),
    )
}

/// SIGKILL a backend at a random point of a burst it is sending; the
/// frontend must see Disconnected within 50 ms of the kill.
fn backend_kill(scale: &Scale) -> Outcome {
    let mut rng = Rng(2);
    let (mut late, mut hangs, mut worst) = (0, 0, Duration::ZERO);
    for _ in 0..scale.kills {
        let Ok(mut p) = MessageProcess::new("victim", Worker) else {
            hangs += 1;
            continue;
        };
        if p.start().is_err() || p.send(message!("burst", n = 100_000)).is_err() {
            hangs += 1;
            continue;
        }
        let before = rng.below(2_000);
        for _ in 0..before {
            if p.recv_timeout(Duration::from_secs(5)).is_err() {
                break;
            }
        }
        kill(p.pid().unwrap_or(0), libc::SIGKILL);
        let killed = Instant::now();
        // Drain what was sent before the kill, then the disconnection.
        let result = loop {
            match p.recv_timeout(Duration::from_secs(5)) {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        let took = killed.elapsed();
        worst = worst.max(took);
        if !result.is_disconnected() {
            hangs += 1;
        } else if took > Duration::from_millis(50) {
            late += 1;
        }
    }
    Outcome::failures(
        "backend_kill",
        late + hangs,
        format!(
            "{} kills: {late} seen later than 50 ms, {hangs} not seen; worst {worst:.1?}",
            scale.kills
        ),
    )
}

/// Backends that ignore SIGTERM and block, block in a handler, or spin:
/// `stop()` must return within stop_timeout + kill_timeout + reaping.
fn stop_bound(scale: &Scale) -> Outcome {
    let (stop_timeout, kill_timeout) = (Duration::from_millis(200), Duration::from_millis(200));
    // The configured waits, plus time to reap on a loaded machine.
    let bound = stop_timeout + kill_timeout + Duration::from_millis(300);
    let mut worst = Duration::ZERO;
    let mut failures = 0;
    for i in 0..scale.stops * 3 {
        let Ok(mut p) = MessageProcess::builder("stubborn")
            .stop_timeout(stop_timeout)
            .kill_timeout(kill_timeout)
            .build(Worker)
        else {
            failures += 1;
            continue;
        };
        if p.start().is_err() {
            failures += 1;
            continue;
        }
        let (command, ack) = match i % 3 {
            0 => (Message::new("ignore_term_and_block"), true),
            1 => (message!("sleep", ms = 60_000), false),
            _ => (Message::new("spin"), true),
        };
        let _ = p.send(command);
        if ack {
            let _ = p.recv_timeout(Duration::from_secs(5));
        }
        let t = Instant::now();
        let stopped = p.stop();
        let took = t.elapsed();
        worst = worst.max(took);
        if stopped.is_err() || took > bound {
            failures += 1;
        }
    }
    Outcome {
        name: "stop_bound",
        value: worst.as_secs_f64() * 1e3,
        unit: "ms",
        baseline: bound.as_secs_f64() * 1e3,
        target: "<=1.0",
        detail: format!(
            "{} stops (SIGTERM ignored, blocked, spinning): {failures} over the bound; worst {worst:.0?} against {bound:?}",
            scale.stops * 3
        ),
    }
}

/// A frontend sending as fast as it can to a backend that stopped reading:
/// `send_timeout` must fail, and the sender's memory must stay bounded.
fn backpressure(_: &Scale) -> Outcome {
    let mut failures = 0;
    let Ok(mut p) = MessageProcess::builder("deaf")
        .stop_timeout(Duration::from_millis(100))
        .build(Worker)
    else {
        return Outcome::failures("backpressure", 1, "could not build".into());
    };
    if p.start().is_err() || p.send(message!("sleep", ms = 600_000)).is_err() {
        return Outcome::failures("backpressure", 1, "could not start".into());
    }
    let chunk = Message::new("echo").with("data", vec![7u8; 256 << 10]);
    let rss_before = rss_kib();
    let (mut sent, mut timeouts) = (0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        match p.send_timeout(chunk.clone(), Duration::from_millis(5)) {
            Ok(()) => sent += 1,
            Err(e) if e.is_timeout() => timeouts += 1,
            Err(_) => {
                failures += 1;
                break;
            }
        }
    }
    let grown_mib = rss_kib().saturating_sub(rss_before) / 1024;
    if timeouts == 0 {
        failures += 1;
    }
    if grown_mib > 32 {
        failures += 1;
    }
    let _ = p.stop();
    Outcome::failures(
        "backpressure",
        failures,
        format!(
            "{sent} sends went through, {timeouts} timed out; peak RSS growth {grown_mib} MiB (limit 32)"
        ),
    )
}

/// Messages with sequence numbers and checksums, the frontend writing and
/// the backend writing back at the same time, with bursts: none lost,
/// duplicated, reordered or corrupted.
fn stream_integrity(scale: &Scale) -> Outcome {
    // Once over the socket alone, once with the shared-memory lane: chunks
    // of 16–48 KiB take the lane while a slot is free, the rest (and those
    // finding both slots busy) the socket, all in one ordered stream.
    let (socket_failures, (_, socket_seq)) = stream_run(scale, MessageProcess::builder("stream"));
    let (mut lane_failures, (lane_sent, lane_seq)) = stream_run(
        scale,
        MessageProcess::builder("stream-lane").large_messages(16 << 10, 48 << 10),
    );
    if lane_sent == 0 {
        lane_failures += 1; // the lane was never taken: the run proved nothing
    }
    let failures = socket_failures + lane_failures;
    Outcome::failures(
        "stream_integrity",
        failures,
        format!(
            "{} MiB each way at once, twice ({socket_seq} messages over the socket, \
             {lane_seq} with the lane, {lane_sent} of them through it): {failures} lost, corrupt or out of order",
            scale.stream_mib
        ),
    )
}

/// One stream through a process built from `builder`: failures and how
/// many messages went through the shared-memory lane (of how many).
fn stream_run(scale: &Scale, builder: forkbridge::MessageProcessBuilder) -> (u64, (u64, u64)) {
    let Ok(mut p) = builder.build(Worker) else {
        return (1, (0, 0));
    };
    if p.start().is_err() {
        return (1, (0, 0));
    }
    let mut rng = Rng(3);
    let total = scale.stream_mib << 20;
    let (mut sent_bytes, mut seq, mut failures) = (0u64, 0u64, 0u64);
    let mut next_echo = 0u64;
    while sent_bytes < total {
        let size = 1 + rng.below(64 << 10) as usize;
        let data: Vec<u8> = (0..size).map(|i| (seq as usize + i) as u8).collect();
        let sum = checksum(&data);
        // Half the chunks are echoed back: both directions busy at once.
        let command = if seq % 2 == 0 { "echo" } else { "chunk" };
        let msg = message!(command, seq = seq, sum = sum).with("data", data);
        if p.feed(msg).is_err() {
            failures += 1;
            break;
        }
        sent_bytes += size as u64;
        seq += 1;
        if seq % 64 == 0 {
            let _ = p.flush();
        }
        while let Ok(reply) = p.try_recv() {
            failures += check_echo(&reply, &mut next_echo);
        }
    }
    let _ = p.flush();
    let echoes = seq.div_ceil(2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while next_echo < echoes * 2 && Instant::now() < deadline {
        match p.recv_timeout(Duration::from_secs(5)) {
            Ok(reply) => failures += check_echo(&reply, &mut next_echo),
            Err(_) => break,
        }
    }
    let missing = (echoes * 2).saturating_sub(next_echo) / 2;
    let lane = p.large_messages_sent();
    let _ = p.stop();
    (failures + missing, (lane, seq))
}

/// Checks an echoed chunk (even sequence numbers, in order, intact).
fn check_echo(reply: &Message, next: &mut u64) -> u64 {
    if reply.command() == "corrupt" {
        return 1;
    }
    let (Ok(seq), Ok(sum)) = (reply.param::<u64>("seq"), reply.param::<u64>("sum")) else {
        return 1;
    };
    let intact = reply["data"].as_bytes().is_some_and(|d| checksum(d) == sum);
    let in_order = seq == *next;
    *next = seq + 2;
    u64::from(!(intact && in_order))
}

static STORM: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn on_storm(_: libc::c_int) {
    STORM.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// SIGINT/SIGTERM/SIGCHLD storms at the parent (handlers without
/// SA_RESTART) during round trips, timed receives and selects: no wrong
/// result, no timeout returning early.
fn signals(scale: &Scale) -> Outcome {
    let sigs = [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD];
    for sig in sigs {
        // SAFETY: the handler only bumps an atomic; the struct is zeroed
        // then filled; SA_RESTART is left out on purpose (EINTR everywhere).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_storm as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    let Ok(mut p) = MessageProcess::new("calm", Worker) else {
        return Outcome::failures("signals", 1, "could not build".into());
    };
    let Ok(mut storm) = MessageProcess::new("storm", Storm) else {
        return Outcome::failures("signals", 1, "could not build".into());
    };
    let mut failures = 0;
    if p.start().is_err() || storm.start().is_err() {
        failures += 1;
    }
    let me = std::process::id() as i32;
    let _ = storm.send(message!("storm", pid = me, ms = scale.storm_ms));
    let started = Instant::now();
    let (mut rounds, mut early) = (0u64, 0u64);
    while started.elapsed() < Duration::from_millis(scale.storm_ms) {
        // A round trip must return the right reply.
        let _ = p.send(message!("echo", n = rounds));
        match p.recv_timeout(Duration::from_secs(5)) {
            Ok(m) if m.param::<u64>("n").ok() == Some(rounds) => {}
            _ => failures += 1,
        }
        // A timed wait on nothing must take its whole time.
        let t = Instant::now();
        match p.recv_timeout(Duration::from_millis(3)) {
            Err(e) if e.is_timeout() && t.elapsed() >= Duration::from_millis(3) => {}
            Err(e) if e.is_timeout() => early += 1,
            _ => failures += 1,
        }
        let (reader, _writer) = std::io::pipe().expect("pipe");
        let t = Instant::now();
        match forkbridge::select(&[reader.as_fd()], &[], &[], Some(Duration::from_millis(2))) {
            Ok(r) if r.is_empty() && t.elapsed() >= Duration::from_millis(2) => {}
            Ok(r) if r.is_empty() => early += 1,
            _ => failures += 1,
        }
        rounds += 1;
    }
    let _ = storm.stop();
    let _ = p.stop();
    for sig in sigs {
        // SAFETY: restores the default disposition.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let received = STORM.load(std::sync::atomic::Ordering::Relaxed);
    Outcome::failures(
        "signals",
        failures + early,
        format!(
            "{received} signals during {rounds} rounds of round trip + timed recv + select: {failures} wrong, {early} early"
        ),
    )
}

/// A backend that sends signals to a pid for a while.
#[derive(Debug)]
struct Storm;

impl Backend for Storm {
    fn register(h: &mut Handlers<Self>) {
        h.on(
            "storm",
            |_: &mut Storm, _: &mut BackendContext, m: Message| {
                let pid: i32 = m.param("pid")?;
                let until = Instant::now() + Duration::from_millis(m.param("ms")?);
                let sigs = [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD];
                let mut i = 0;
                while Instant::now() < until {
                    kill(pid, sigs[i % 3]);
                    i += 1;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Ok(())
            },
        );
    }
}

/// A middle backend starts backends of every kind, is SIGKILLed, and none of
/// its backends may be alive a second later.
fn parent_kill(_: &Scale) -> Outcome {
    // SAFETY: PR_SET_CHILD_SUBREAPER only sets a flag on this process, so
    // orphaned grandchildren are re-parented to us and can be reaped.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let Ok(mut middle) = MessageProcess::new("middle", Middle::default()) else {
        return Outcome::failures("parent_kill", 1, "could not build".into());
    };
    if middle.start().is_err() || middle.send(Message::new("spawn")).is_err() {
        return Outcome::failures("parent_kill", 1, "could not start".into());
    }
    let pids: Vec<i32> = match middle.recv_timeout(Duration::from_secs(10)) {
        Ok(m) => m
            .param::<Vec<i64>>("pids")
            .unwrap_or_default()
            .into_iter()
            .map(|p| p as i32)
            .collect(),
        Err(_) => Vec::new(),
    };
    kill(middle.pid().unwrap_or(0), libc::SIGKILL);
    let _ = middle.join_timeout(Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    let alive_after: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    for &pid in &pids {
        kill(pid, libc::SIGKILL);
        // SAFETY: reaps a re-parented grandchild; a null status is allowed.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    let missing = u64::from(pids.len() != 6);
    Outcome::failures(
        "parent_kill",
        alive_after.len() as u64 + missing,
        format!(
            "{} backends (blocking idle, blocking mid-handler, blocked on a full socket, async idle, async mid-task, blocked in an event wait); alive 1 s after their parent's SIGKILL: {alive_after:?}",
            pids.len()
        ),
    )
}

/// Starts one backend of each kind and state, then reports their pids.
#[derive(Default)]
struct Middle {
    kept: Vec<MessageProcess>,
    event: Option<forkbridge::Event>,
}

impl Backend for Middle {
    fn register(h: &mut Handlers<Self>) {
        h.on(
            "spawn",
            |m: &mut Middle, ctx: &mut BackendContext, _: Message| {
                let mut started = Vec::new();
                let mut idle = MessageProcess::new("idle", Worker)?;
                idle.start()?;
                started.push(idle);
                let mut busy = MessageProcess::new("busy", Worker)?;
                busy.start()?;
                busy.send(message!("sleep", ms = 600_000))?;
                started.push(busy);
                let mut full = MessageProcess::new("full", Worker)?;
                full.start()?;
                full.send(message!("burst", n = 10_000_000))?; // never read: blocks on the socket
                started.push(full);
                let mut async_idle =
                    MessageProcess::builder("async-idle").build_async(AsyncWorker)?;
                async_idle.start()?;
                started.push(async_idle);
                let mut async_busy =
                    MessageProcess::builder("async-busy").build_async(AsyncWorker)?;
                async_busy.start()?;
                async_busy.send(message!("nap", ms = 600_000))?;
                started.push(async_busy);
                let event = forkbridge::Event::new()?;
                let mut waiter = MessageProcess::new("waiter", EventWaiter(event.clone()))?;
                waiter.start()?;
                waiter.send(Message::new("wait"))?;
                started.push(waiter);
                let pids: Vec<i64> = started
                    .iter()
                    .filter_map(|p| p.pid())
                    .map(i64::from)
                    .collect();
                ctx.send(Message::new("spawned").with("pids", pids))?;
                m.kept = started;
                m.event = Some(event);
                Ok(())
            },
        );
    }
}

/// Waits on an event nobody sets.
struct EventWaiter(forkbridge::Event);

impl Backend for EventWaiter {
    fn register(h: &mut Handlers<Self>) {
        h.on(
            "wait",
            |w: &mut EventWaiter, _: &mut BackendContext, _: Message| {
                w.0.wait();
                Ok(())
            },
        );
    }
}

type Scenario = fn(&Scale) -> Outcome;

const SCENARIOS: &[(&str, Scenario)] = &[
    ("cycles", cycles),
    ("backend_kill", backend_kill),
    ("parent_kill", parent_kill),
    ("stream_integrity", stream_integrity),
    ("backpressure", backpressure),
    ("stop_bound", stop_bound),
    ("signals", signals),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let wanted: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    for w in &wanted {
        if !SCENARIOS.iter().any(|(n, _)| n == w) {
            let names: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
            eprintln!("unknown scenario '{w}'; known: {}", names.join(", "));
            std::process::exit(2);
        }
    }
    let scale = if quick { &QUICK } else { &FULL };
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for (name, run) in SCENARIOS {
        if wanted.is_empty() || wanted.contains(name) {
            eprintln!("running {name}{}", if quick { " (quick)" } else { "" });
            let t = Instant::now();
            let outcome = run(scale);
            eprintln!("  {} ({:.1?})", outcome.detail, t.elapsed());
            outcomes.push(outcome);
        }
    }
    println!();
    println!("{:<18} {:>12} {:>10}  what", "scenario", "value", "target");
    for o in &outcomes {
        println!(
            "{:<18} {:>12} {:>10}  {}",
            o.name,
            format!("{:.0} {}", o.value, o.unit),
            o.target,
            o.detail
        );
    }
    println!("\n(all in {:.1?})\n", started.elapsed());
    let mut failed = false;
    for o in &outcomes {
        let ratio = if o.baseline > 0.0 {
            o.value / o.baseline
        } else {
            o.value
        };
        println!(
            "RESULT scenario={} value={:.0} unit={} baseline={:.0} ratio={:.3} target={}",
            o.name, o.value, o.unit, o.baseline, ratio, o.target
        );
        failed |= if o.target == "0" {
            o.value > 0.0
        } else {
            ratio > 1.0
        };
    }
    if failed {
        std::process::exit(1);
    }
}
