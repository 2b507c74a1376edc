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

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use forkbridge::{
    AsyncBackend, AsyncContext, AsyncHandlers, Backend, BackendContext, HandlerResult, Handlers,
    Message, MessageProcess, message,
};
use forkbridge_testkit::{
    ScenarioArgs, alarm, alive, children, ignore, kill, kill_and_reap, mappings, open_fds,
    reap_within, restore_default, rss_kib, set_subreaper, shared_mappings, sleep_until_killed,
    wait_until,
};

mod start_methods;
mod supervise;

/// A blocking backend with the behaviours the scenarios need; it crosses
/// as data, so every start method can run it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
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
        ignore(libc::SIGTERM);
        ctx.send(Message::new("blocking"))?;
        ctx.flush()?;
        sleep_until_killed()
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

    /// Puts `items` in a random order (Fisher–Yates).
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
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
    edges_ms: u64,
}

const FULL: Scale = Scale {
    cycles: 10_000,
    kills: 1_000,
    stream_mib: 1024,
    stops: 30,
    storm_ms: 10_000,
    edges_ms: 60_000,
};

const QUICK: Scale = Scale {
    cycles: 500,
    kills: 100,
    stream_mib: 64,
    stops: 3,
    storm_ms: 1_000,
    edges_ms: 5_000,
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
                let _ = kill(p.pid().unwrap_or(0), libc::SIGKILL);
                p.join_timeout(Duration::from_secs(5)).is_ok()
            }
            _ => {
                drop(p);
                true
            }
        };
        failures += u64::from(!ok);
    }
    let zombies = children().len() as u64;
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
    let (mut late, mut hangs, mut broken, mut worst) = (0, 0, 0, Duration::ZERO);
    for _ in 0..scale.kills {
        let Ok(mut p) = MessageProcess::new("victim", Worker) else {
            hangs += 1;
            continue;
        };
        if p.start().is_err() || p.send(message!("burst", n = 100_000)).is_err() {
            hangs += 1;
            continue;
        }
        // Every item received, before the kill and after it, must be the
        // next one: what the backend sent before dying arrives whole and
        // in order.
        let mut next = 0u64;
        let mut in_order = |msg: Message| {
            let ok = msg.param::<u64>("i").is_ok_and(|i| i == next);
            next += 1;
            ok
        };
        let mut intact = true;
        let before = rng.below(2_000);
        for _ in 0..before {
            match p.recv_timeout(Duration::from_secs(5)) {
                Ok(msg) => intact &= in_order(msg),
                Err(_) => break,
            }
        }
        let _ = kill(p.pid().unwrap_or(0), libc::SIGKILL);
        let killed = Instant::now();
        // Drain what was sent before the kill, then the disconnection.
        let result = loop {
            match p.recv_timeout(Duration::from_secs(5)) {
                Ok(msg) => intact &= in_order(msg),
                Err(e) => break e,
            }
        };
        broken += u64::from(!intact);
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
        late + hangs + broken,
        format!(
            "{} kills: {late} seen later than 50 ms, {hangs} not seen, {broken} with items lost or out of order; worst {worst:.1?}",
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
        // A stop that fails fast is as wrong as one that is late.
        if stopped.is_err() || took > bound {
            failures += 1;
        }
    }
    Outcome::failures(
        "stop_bound",
        failures,
        format!(
            "{} stops (SIGTERM ignored, blocked, spinning): {failures} failed or over the bound; worst {worst:.0?} against {bound:?}",
            scale.stops * 3
        ),
    )
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
        restore_default(sig);
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
                    let _ = kill(pid, sigs[i % 3]);
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
    // Orphaned grandchildren are re-parented to us and can be reaped.
    set_subreaper(true);
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
    let _ = kill(middle.pid().unwrap_or(0), libc::SIGKILL);
    let _ = middle.join_timeout(Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    let alive_after: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    kill_and_reap(&pids);
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

/// The bound of every wait inside an `edges` round.
const EDGE_WAIT: Duration = Duration::from_secs(5);

/// The hard bound of one `edges` round, in seconds: a few edges wait
/// without a limit on purpose (`Duration::MAX`, a ring's `recv()`), so a
/// hang there would hang the suite; `alarm` ends it instead, naming the edge.
const EDGE_ROUND_BOUND_SECS: u32 = 30;

/// The edges the `edges` scenario mixes, each a check that says why it
/// failed.
const EDGES: &[(&str, EdgeCheck)] = &[
    ("call_before_start", edge_call_before_start),
    ("duration_max", edge_duration_max),
    ("zero_durations", edge_zero_durations),
    ("after_death", edge_after_death),
    ("exit_vs_kill", edge_exit_vs_kill),
    ("frame_limit", edge_frame_limit),
    ("ring_roles", edge_ring_roles),
    ("stale_index", edge_stale_index),
    ("buffer_resize", edge_buffer_resize),
    ("frontend_killed", edge_frontend_killed),
];

type EdgeCheck = fn(&mut EdgeState) -> Result<(), String>;

/// What the edge rounds share: the random source, the event group whose
/// generations climb over the whole run, and grandchildren to reap.
struct EdgeState {
    rng: Rng,
    /// One group for the whole run, so a stale index is checked against
    /// every later reservation (tens of thousands in the full run, past
    /// where a 16-bit generation wrapped), with the index of its first
    /// reservation.
    group: Option<(forkbridge::EventGroup, forkbridge::EventIndex)>,
    /// Plain grandchildren re-parented to us, killed if still alive after
    /// the round and reaped.
    strays: Vec<i32>,
}

/// The edge running now, for the hang guard's message.
static EDGE_NOW: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn on_edge_hang(_: libc::c_int) {
    let name = EDGES
        .get(EDGE_NOW.load(std::sync::atomic::Ordering::Relaxed))
        .map_or("?", |e| e.0);
    let parts: [&[u8]; 3] = [
        b"\nedges: a round of ",
        name.as_bytes(),
        b" hung past its bound; the suite ends here\n",
    ];
    for part in parts {
        // SAFETY: `write` is async-signal-safe and reads from static bytes.
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
    // SAFETY: `_exit` is async-signal-safe; our backends end with us (their
    // parent-death signal), the suite fails with a status the test sees.
    unsafe { libc::_exit(1) }
}

/// Returns `Err(why)` from an edge check unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

/// Turns a failed operation into an edge failure naming it.
trait OrFail<T> {
    fn or_fail(self, what: &str) -> Result<T, String>;
}

impl<T, E: std::fmt::Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// The fixed edges, mixed at random for a fixed wall time: each round runs
/// one on real processes and checks what the core promises there. The
/// order is a sequence of shuffled decks, so every edge runs about as often
/// as the others (in `--quick` too) while neighbours still vary. Leaked fds,
/// shared mappings and leftover children count as failures.
fn edges(scale: &Scale) -> Outcome {
    // The plain children a backend leaves and the orphans of a killed
    // middle are re-parented to us and can be reaped.
    set_subreaper(true);
    // SAFETY: the handler only writes static bytes and `_exit`s, both
    // async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGALRM,
            on_edge_hang as *const () as libc::sighandler_t,
        )
    };
    drop(MessageProcess::new("warm", EdgeWorker::default()));
    let (fds, maps) = (open_fds(), shared_mappings());
    let group = forkbridge::EventGroup::new(1).and_then(|g| {
        let (stale, event) = g.reserve()?;
        g.release(&event)?;
        Ok((g, stale))
    });
    let mut state = EdgeState {
        rng: Rng(10),
        group: group.ok(),
        strays: Vec::new(),
    };
    let mut tally = [(0u64, 0u64); EDGES.len()];
    let mut deck: Vec<usize> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(scale.edges_ms) {
        if deck.is_empty() {
            deck = (0..EDGES.len()).collect();
            state.rng.shuffle(&mut deck);
        }
        let Some(i) = deck.pop() else { break };
        let (name, check) = EDGES[i];
        EDGE_NOW.store(i, std::sync::atomic::Ordering::Relaxed);
        // Its handler is installed above.
        alarm(EDGE_ROUND_BOUND_SECS);
        let held = check(&mut state);
        for pid in std::mem::take(&mut state.strays) {
            let _ = reap_within(pid, Duration::ZERO);
        }
        tally[i].0 += 1;
        if let Err(why) = held {
            tally[i].1 += 1;
            if tally[i].1 <= 3 {
                eprintln!("  {name} failed: {why}");
            }
        }
    }
    alarm(0);
    restore_default(libc::SIGALRM);
    drop(state);
    let leftovers = children();
    kill_and_reap(&leftovers);
    let leaked_fds = open_fds().saturating_sub(fds) as u64;
    let leaked_maps = shared_mappings().saturating_sub(maps) as u64;
    set_subreaper(false);
    let rounds: u64 = tally.iter().map(|t| t.0).sum();
    let failures: u64 = tally.iter().map(|t| t.1).sum();
    let per_edge: Vec<String> = EDGES
        .iter()
        .zip(&tally)
        .map(|((name, _), (n, failed))| format!("{name} {n}/{failed}"))
        .collect();
    Outcome::failures(
        "edges",
        failures + leftovers.len() as u64 + leaked_fds + leaked_maps,
        format!(
            "{rounds} rounds (rounds/failures): {}; {} children left, {leaked_fds} fds and {leaked_maps} shared mappings leaked",
            per_edge.join(", "),
            leftovers.len()
        ),
    )
}

/// A started [`EdgeWorker`] process.
fn edge_process(name: &str) -> Result<MessageProcess, String> {
    let mut p = MessageProcess::new(name, EdgeWorker::default()).or_fail("build")?;
    p.start().or_fail("start")?;
    Ok(p)
}

/// Stops `p`, which must end with success.
fn stopped_ok(p: &mut MessageProcess) -> Result<(), String> {
    let status = p.stop().or_fail("stop")?;
    ensure!(status.success(), "stop gave {status}");
    Ok(())
}

/// Checks that `op` fails with `Disconnected` within a second.
fn disconnected_at_once<T: std::fmt::Debug>(
    what: &str,
    op: impl FnOnce() -> forkbridge::Result<T>,
) -> Result<(), String> {
    let t = Instant::now();
    let result = op();
    let took = t.elapsed();
    match result {
        Err(e) if e.is_disconnected() => {
            ensure!(took < Duration::from_secs(1), "{what} took {took:?}");
            Ok(())
        }
        other => Err(format!("{what} gave {other:?}, not Disconnected")),
    }
}

/// The signal that ended the process a `Disconnected` error reports.
fn signal_of(e: &forkbridge::Error) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    e.exit_status().and_then(|s| s.signal())
}

/// A call before `start` is `NotStarted` and has no effect: the first call
/// after it counts 1.
fn edge_call_before_start(s: &mut EdgeState) -> Result<(), String> {
    let mut p = MessageProcess::new("unstarted", EdgeWorker::default()).or_fail("build")?;
    for _ in 0..=s.rng.below(3) {
        match p.call::<_, u64>("incr", &(), EDGE_WAIT) {
            Err(e) if e.kind() == &forkbridge::ErrorKind::NotStarted => {}
            other => return Err(format!("a call before start gave {other:?}")),
        }
    }
    p.start().or_fail("start")?;
    let n = p
        .call::<_, u64>("incr", &(), EDGE_WAIT)
        .or_fail("the first call after start")?;
    ensure!(
        n == 1,
        "the first call after start returned {n}: a failed call ran"
    );
    stopped_ok(&mut p)
}

/// `Duration::MAX` means no limit, never an overflow: in receives, calls,
/// and a stop or drop whose stop and kill timeouts are both `MAX`.
fn edge_duration_max(s: &mut EdgeState) -> Result<(), String> {
    let max = Duration::MAX;
    let build = || {
        MessageProcess::builder("patient")
            .stop_timeout(max)
            .kill_timeout(max)
            .build(EdgeWorker::default())
            .or_fail("build")
    };
    let mut p = build()?;
    p.start().or_fail("start")?;
    let n = s.rng.below(1 << 40);
    let sent = if s.rng.below(2) == 0 {
        p.send(message!("echo", n = n))
    } else {
        p.send_timeout(message!("echo", n = n), max)
    };
    sent.or_fail("send")?;
    let echo = p.recv_timeout(max).or_fail("recv_timeout(MAX)")?;
    ensure!(
        echo.param::<u64>("n").ok() == Some(n),
        "recv_timeout(MAX) gave {echo}"
    );
    let count = p
        .call::<_, u64>("incr", &(), max)
        .or_fail("call(.., MAX)")?;
    ensure!(count == 1, "call(.., MAX) returned {count}");
    stopped_ok(&mut p).map_err(|why| format!("with MAX timeouts: {why}"))?;
    let mut q = build()?;
    q.start().or_fail("start")?;
    let pid = q.pid().ok_or("started without a pid")?;
    drop(q);
    ensure!(
        !alive(pid) && !children().contains(&pid),
        "dropped with MAX timeouts, its backend {pid} remains"
    );
    Ok(())
}

/// Zero waits on an idle backend return at once: `Timeout`, `Empty`,
/// `Timeout`.
fn edge_zero_durations(s: &mut EdgeState) -> Result<(), String> {
    let mut p = edge_process("idle")?;
    let mut order = [0, 1, 2];
    s.rng.shuffle(&mut order);
    for check in order {
        match check {
            0 => match p.recv_timeout(Duration::ZERO) {
                Err(e) if e.is_timeout() => {}
                other => return Err(format!("recv_timeout(ZERO) gave {other:?}")),
            },
            1 => match p.try_recv() {
                Err(e) if e.is_empty() => {}
                other => return Err(format!("try_recv gave {other:?}")),
            },
            _ => match p.join_timeout(Duration::ZERO) {
                Err(e) if e.is_timeout() => {}
                other => return Err(format!("join_timeout(ZERO) gave {other:?}")),
            },
        }
    }
    stopped_ok(&mut p)
}

/// A backend exits with 5 while a plain child of its keeps the socket
/// open: the exit is seen with its code, then every send, feed, call and
/// cast is `Disconnected` at once instead of filling the socket and
/// blocking. And the plain case: a send after SIGKILL.
fn edge_after_death(s: &mut EdgeState) -> Result<(), String> {
    let mut p = edge_process("leaver")?;
    p.send(message!("leave_a_holder", ms = 300))
        .or_fail("send")?;
    let holder: i32 = p
        .recv_timeout(EDGE_WAIT)
        .or_fail("the holder's pid")?
        .param("pid")
        .or_fail("the holder's pid")?;
    s.strays.push(holder);
    match p.recv_timeout(EDGE_WAIT) {
        Err(e) if e.is_disconnected() => {
            let code = e.exit_status().and_then(|s| s.code());
            ensure!(code == Some(5), "exit code {code:?}, not 5: {e}");
        }
        other => return Err(format!("recv after the exit gave {other:?}")),
    }
    // The holder keeps the socket open: nothing may fill it and block.
    let big = || Message::new("big").with("data", vec![0u8; 64 << 10]);
    let mut ops = vec![0u8; 8];
    ops.extend([1, 2, 3]);
    s.rng.shuffle(&mut ops);
    for op in ops {
        match op {
            0 => disconnected_at_once("send of 64 KiB", || p.send(big()))?,
            1 => disconnected_at_once("feed", || p.feed(big()))?,
            2 => disconnected_at_once("call", || p.call::<_, u64>("incr", &(), EDGE_WAIT))?,
            _ => disconnected_at_once("cast", || p.cast("incr", &()))?,
        }
    }
    let code = p.stop().or_fail("stop after the exit")?.code();
    ensure!(code == Some(5), "stop after the exit gave code {code:?}");
    // The plain case: killed, then a send.
    let mut q = edge_process("gone")?;
    let pid = q.pid().ok_or("started without a pid")?;
    kill(pid, libc::SIGKILL).or_fail("SIGKILL")?;
    ensure!(
        wait_until(Duration::from_secs(1), || !alive(pid)),
        "{pid} alive 1 s after SIGKILL"
    );
    disconnected_at_once("send after SIGKILL", || q.send(Message::new("ping")))
}

/// An orderly stop succeeds, a SIGKILL shows as signal 9; neither leaves a
/// child behind.
fn edge_exit_vs_kill(s: &mut EdgeState) -> Result<(), String> {
    let mut p = edge_process("orderly")?;
    let pid = p.pid().ok_or("started without a pid")?;
    stopped_ok(&mut p)?;
    ensure!(
        !alive(pid) && !children().contains(&pid),
        "stopped, {pid} remains"
    );
    let mut q = edge_process("killed")?;
    let pid = q.pid().ok_or("started without a pid")?;
    if s.rng.below(2) == 0 {
        q.send(message!("echo", n = 1)).or_fail("send")?;
        q.recv_timeout(EDGE_WAIT).or_fail("echo")?;
    }
    kill(pid, libc::SIGKILL).or_fail("SIGKILL")?;
    match q.recv_timeout(EDGE_WAIT) {
        Err(e) if e.is_disconnected() => {
            ensure!(
                signal_of(&e) == Some(libc::SIGKILL),
                "killed, the status says {e}"
            );
        }
        other => return Err(format!("recv after SIGKILL gave {other:?}")),
    }
    ensure!(
        !alive(pid) && !children().contains(&pid),
        "killed, {pid} remains"
    );
    Ok(())
}

/// The frame limit holds on the large-message lane too: a 4 MiB message is
/// `FrameTooLarge` every time and never counted as sent, while 1000 KiB
/// crosses the lane intact.
fn edge_frame_limit(s: &mut EdgeState) -> Result<(), String> {
    let mut p = MessageProcess::builder("limited")
        .max_frame_size(1 << 20)
        .large_messages(64 << 10, 8 << 20)
        .build(EdgeWorker::default())
        .or_fail("build")?;
    p.start().or_fail("start")?;
    for i in 0..2 + s.rng.below(2) {
        let sent = p.send(Message::new("echo").with("data", vec![1u8; 4 << 20]));
        match sent {
            Err(e) if matches!(e.kind(), forkbridge::ErrorKind::FrameTooLarge { max, .. } if *max == 1 << 20) =>
                {}
            other => return Err(format!("send {i} of 4 MiB gave {other:?}")),
        }
    }
    let lane = p.large_messages_sent();
    ensure!(
        lane == 0,
        "{lane} refused messages counted as sent by the lane"
    );
    let seed = s.rng.next() as usize;
    let data: Vec<u8> = (0..1000 << 10)
        .map(|i| (seed.wrapping_add(i * 7)) as u8)
        .collect();
    p.send(Message::new("echo").with("data", data.clone()))
        .or_fail("send of 1000 KiB")?;
    let echo = p.recv_timeout(EDGE_WAIT).or_fail("the echo of 1000 KiB")?;
    ensure!(
        echo["data"].as_bytes() == Some(&data[..]),
        "the 1000 KiB echo came back altered"
    );
    let lane = p.large_messages_sent();
    ensure!(lane == 1, "the lane counted {lane} messages, not 1");
    stopped_ok(&mut p)
}

/// Frame `i` of a ring round: 1 to 64 bytes, each depending on the seed,
/// the frame and its place, so a lost, repeated or torn frame shows.
fn ring_frame(seed: u64, i: u64) -> Vec<u8> {
    let len = 1 + (seed.wrapping_mul(i + 1) >> 7) % 64;
    (0..len).map(|j| (seed ^ (i << 8) ^ j) as u8).collect()
}

/// A ring producer whose process exits in order after dropping its role:
/// the consumer reads every committed frame, then a `recv()` without a
/// timeout ends with `Disconnected` instead of waiting forever.
fn edge_ring_roles(s: &mut EdgeState) -> Result<(), String> {
    let slots = 2 + s.rng.below(7) as u32;
    let n = 1 + s.rng.below(u64::from(slots));
    let seed = s.rng.below(1 << 40);
    let mut ring = forkbridge::FrameRing::new(slots, 64).or_fail("ring")?;
    if s.rng.below(2) == 0 {
        ring = ring.with_spin(Duration::ZERO);
    }
    let backend = EdgeWorker {
        ring: Some(ring.clone()),
        ..EdgeWorker::default()
    };
    let mut p = MessageProcess::new("producer", backend).or_fail("build")?;
    p.start().or_fail("start")?;
    let early = s.rng.below(2) == 0;
    let mut consumer = if early {
        Some(ring.consumer().or_fail("consumer before the producer")?)
    } else {
        None
    };
    p.send(message!("produce", n = n, seed = seed))
        .or_fail("send")?;
    let done = p.recv_timeout(EDGE_WAIT).or_fail("produced")?;
    ensure!(done.command() == "produced", "the producer said {done}");
    stopped_ok(&mut p)?;
    let mut consumer = match consumer.take() {
        Some(c) => c,
        None => ring
            .consumer()
            .or_fail("consumer after the producer's exit")?,
    };
    for i in 0..n {
        let frame = consumer
            .recv_timeout(EDGE_WAIT)
            .or_fail(&format!("frame {i} of {n}"))?;
        ensure!(
            frame[..] == ring_frame(seed, i)[..],
            "frame {i} of {n} altered"
        );
    }
    // No timeout: the promise is that it returns; the round's alarm bounds
    // a hang.
    let t = Instant::now();
    let after = consumer.recv().map(|f| f.len());
    let took = t.elapsed();
    match after {
        Err(e) if e.is_disconnected() => {
            ensure!(took < Duration::from_secs(1), "recv took {took:?}");
            Ok(())
        }
        other => Err(format!(
            "recv after the producer's orderly exit gave {other:?}"
        )),
    }
}

/// An index of an earlier reservation never sets a later one, however many
/// reservations came between (the group lives for the whole run).
fn edge_stale_index(s: &mut EdgeState) -> Result<(), String> {
    let EdgeState { rng, group, .. } = s;
    let (group, stale) = group.as_ref().ok_or("no event group")?;
    let mut previous = None;
    for cycle in 0..200 + rng.below(800) {
        let (index, event) = group.reserve().or_fail("reserve")?;
        let held = stale_cycle(group, *stale, previous, index, &event, rng);
        let released = if rng.below(2) == 0 {
            group.release(&event)
        } else {
            group.release_index(index)
        };
        held.map_err(|why| format!("cycle {cycle}: {why}"))?;
        released.or_fail("release")?;
        previous = Some(index);
    }
    Ok(())
}

/// One reservation: sets by earlier indices fail and set nothing, a set by
/// the current one (before, after or never) succeeds.
fn stale_cycle(
    group: &forkbridge::EventGroup,
    stale: forkbridge::EventIndex,
    previous: Option<forkbridge::EventIndex>,
    index: forkbridge::EventIndex,
    event: &forkbridge::Event,
    rng: &mut Rng,
) -> Result<(), String> {
    let current = rng.below(3);
    if current == 0 {
        ensure!(
            group.set(index).or_fail("set")?,
            "set({index}) of the current reservation returned false"
        );
    }
    for old in [Some(stale), previous].into_iter().flatten() {
        ensure!(
            !group.set(old).or_fail("set")?,
            "set({old}) of an earlier reservation returned true"
        );
        ensure!(
            current == 0 || !event.is_set(),
            "set({old}) of an earlier reservation set the current event ({index})"
        );
    }
    if current == 1 {
        ensure!(
            group.set(index).or_fail("set")?,
            "set({index}) of the current reservation returned false"
        );
    }
    ensure!(
        event.is_set() == (current != 2),
        "the event is {}set after {}",
        if event.is_set() { "" } else { "not " },
        if current == 2 {
            "no set of its own"
        } else {
            "its own set"
        }
    );
    Ok(())
}

/// The 16 bytes the backend writes at 512 KiB of a lent buffer.
fn buffer_pattern(seed: u64) -> [u8; 16] {
    let mut pattern = [0u8; 16];
    pattern[..8].copy_from_slice(&seed.to_le_bytes());
    pattern[8..].copy_from_slice(&(!seed).to_le_bytes());
    pattern
}

/// A peer cannot shrink a buffer under its reader: `from_fd` seals the
/// memfd, the backend's `ftruncate` fails, and a read past the would-be
/// end succeeds (no SIGBUS). A count that overflows is `InvalidArgument`.
fn edge_buffer_resize(s: &mut EdgeState) -> Result<(), String> {
    let mut p = edge_process("shrinker")?;
    let seed = s.rng.below(1 << 40);
    p.send(message!("lend_buffer", seed = seed))
        .or_fail("send")?;
    let (msg, mut fds) = p.recv_with_fds(EDGE_WAIT).or_fail("the buffer")?;
    ensure!(
        msg.command() == "buffer" && fds.len() == 1,
        "the backend sent {msg} with {} fds",
        fds.len()
    );
    let fd = fds.pop().ok_or("no fd")?;
    let buffer = forkbridge::SharedBuffer::from_fd(fd).or_fail("from_fd")?;
    ensure!(
        buffer.len() == 1 << 20,
        "mapped {} bytes, not 1 MiB",
        buffer.len()
    );
    p.send(Message::new("shrink_buffer")).or_fail("send")?;
    let shrunk = p
        .recv_timeout(EDGE_WAIT)
        .or_fail("the shrink")?
        .param::<bool>("shrunk")
        .or_fail("the shrink")?;
    ensure!(!shrunk, "the backend shrank the mapped buffer to 4 KiB");
    let mut bytes = [0u8; 16];
    buffer
        .read_at(512 << 10, &mut bytes)
        .or_fail("read_at(512 KiB)")?;
    ensure!(bytes == buffer_pattern(seed), "read {bytes:?} at 512 KiB");
    match buffer.read_vec::<u8>(0, usize::MAX) {
        Err(e) if e.kind() == &forkbridge::ErrorKind::InvalidArgument => {}
        other => {
            return Err(format!(
                "read_vec(0, usize::MAX) gave {:?}",
                other.map(|v| v.len())
            ));
        }
    }
    stopped_ok(&mut p)
}

/// A backend whose frontend is SIGKILLed mid-handler ends in order by
/// itself (an exit, not a signal) within a second.
fn edge_frontend_killed(s: &mut EdgeState) -> Result<(), String> {
    let mut middle = edge_process("middle")?;
    let ms = 300 + s.rng.below(201);
    middle
        .send(message!("spawn_orphan", ms = ms))
        .or_fail("send")?;
    let orphan: i32 = middle
        .recv_timeout(EDGE_WAIT)
        .or_fail("the orphan's pid")?
        .param("pid")
        .or_fail("the orphan's pid")?;
    s.strays.push(orphan);
    std::thread::sleep(Duration::from_millis(s.rng.below(100)));
    kill(middle.pid().ok_or("started without a pid")?, libc::SIGKILL).or_fail("SIGKILL")?;
    let killed = Instant::now();
    match middle.recv_timeout(EDGE_WAIT) {
        Err(e) if e.is_disconnected() && signal_of(&e) == Some(libc::SIGKILL) => {}
        other => return Err(format!("recv after the middle's SIGKILL gave {other:?}")),
    }
    let reaped = reap_within(orphan, Duration::from_secs(2));
    let took = killed.elapsed();
    s.strays.retain(|&pid| pid != orphan);
    let status = reaped.map_err(|why| format!("the orphan {why}"))?;
    ensure!(
        took < Duration::from_secs(1),
        "the orphan ended {took:?} after its frontend's SIGKILL"
    );
    ensure!(
        libc::WIFEXITED(status),
        "the orphan was killed, not ended in order: status {status:#x}"
    );
    Ok(())
}

/// A backend for the `edges` scenario: a typed counter and the handlers
/// that put each edge in place.
#[derive(Default)]
struct EdgeWorker {
    count: u64,
    ring: Option<forkbridge::FrameRing>,
    orphan: Option<MessageProcess>,
    buffer: Option<std::fs::File>,
}

impl EdgeWorker {
    fn incr(&mut self, _: &mut BackendContext, (): ()) -> Result<u64, forkbridge::BoxError> {
        self.count += 1;
        Ok(self.count)
    }

    fn echo(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        ctx.send(msg)?;
        Ok(())
    }

    fn sleep(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        std::thread::sleep(Duration::from_millis(msg.param("ms")?));
        ctx.send(Message::new("slept"))?;
        Ok(())
    }

    /// Forks a plain child that keeps the intercom open for `ms`, tells the
    /// frontend its pid, then exits with status 5: the frontend must see
    /// the death although the socket stays open.
    fn leave_a_holder(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let ms: u64 = msg.param("ms")?;
        // SAFETY: the backend is single-threaded; the child only sleeps and
        // `_exit`s.
        let holder = unsafe { libc::fork() };
        if holder == 0 {
            std::thread::sleep(Duration::from_millis(ms));
            // SAFETY: ends the holder without running anything of the
            // backend's (no destructors, no atexit).
            unsafe { libc::_exit(0) }
        }
        if holder < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        ctx.send(Message::new("holder").with("pid", holder))?;
        ctx.flush()?;
        // SAFETY: ends the backend at once, with status 5.
        unsafe { libc::_exit(5) }
    }

    /// Claims the producer role, commits `n` frames, drops the role.
    fn produce(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let ring = self.ring.as_ref().ok_or("no ring")?;
        let seed: u64 = msg.param("seed")?;
        let mut producer = ring.producer()?;
        for i in 0..msg.param::<u64>("n")? {
            let frame = ring_frame(seed, i);
            let mut slot = producer.acquire_timeout(EDGE_WAIT)?;
            slot[..frame.len()].copy_from_slice(&frame);
            slot.commit(frame.len())?;
        }
        drop(producer);
        ctx.send(Message::new("produced"))?;
        Ok(())
    }

    /// Lends a new 1 MiB memfd that allows sealing but is not sealed, with
    /// the seed's pattern at 512 KiB.
    fn lend_buffer(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        use std::os::unix::fs::FileExt;
        let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        // SAFETY: a NUL-terminated name and plain flags.
        let raw = unsafe { libc::memfd_create(c"soak-edge".as_ptr(), flags) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: a new fd nobody else owns.
        let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
        file.set_len(1 << 20)?;
        file.write_all_at(&buffer_pattern(msg.param("seed")?), 512 << 10)?;
        ctx.send_with_fds(Message::new("buffer"), &[file.as_fd()])?;
        self.buffer = Some(file);
        Ok(())
    }

    /// Tries to cut the lent buffer to 4 KiB; says whether it could.
    fn shrink_buffer(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        let file = self.buffer.take().ok_or("no buffer")?;
        let shrunk = file.set_len(4096).is_ok();
        ctx.send(Message::new("shrink").with("shrunk", shrunk))?;
        Ok(())
    }

    /// Starts a backend of its own and leaves it in an `ms` handler.
    fn spawn_orphan(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let ms: u64 = msg.param("ms")?;
        let mut orphan = MessageProcess::new("orphan", EdgeWorker::default())?;
        orphan.start()?;
        orphan.send(message!("sleep", ms = ms))?;
        ctx.send(Message::new("orphan").with("pid", orphan.pid().unwrap_or(0)))?;
        self.orphan = Some(orphan);
        Ok(())
    }
}

impl Backend for EdgeWorker {
    fn register(h: &mut Handlers<Self>) {
        h.typed("incr", Self::incr)
            .on("echo", Self::echo)
            .on("sleep", Self::sleep)
            .on("leave_a_holder", Self::leave_a_holder)
            .on("produce", Self::produce)
            .on("lend_buffer", Self::lend_buffer)
            .on("shrink_buffer", Self::shrink_buffer)
            .on("spawn_orphan", Self::spawn_orphan);
    }
}

type Scenario = fn(&Scale) -> Outcome;

const SCENARIOS: &[(&str, Scenario)] = &[
    ("cycles", cycles),
    ("start_methods", start_methods::start_methods),
    ("backend_kill", backend_kill),
    ("parent_kill", parent_kill),
    ("stream_integrity", stream_integrity),
    ("backpressure", backpressure),
    ("stop_bound", stop_bound),
    ("signals", signals),
    ("edges", edges),
    ("supervise", supervise::supervise),
];

const USAGE: &str = "\
forkbridge's soak-and-fault suite: every scenario, or those named.

usage: cargo run --release -p forkbridge-soak -- [SCENARIO...] [--quick]

  --quick   every scenario in well under two minutes (the test command runs this)
  --help    this text

Each scenario prints a RESULT line; the value counts failures (target 0)
unless the scenario says otherwise. The exit status is 1 if any missed.";

fn main() {
    // Spawned workers and the fork server run this program up to here.
    forkbridge::init();
    let args = ScenarioArgs::from_env(USAGE, SCENARIOS);
    let quick = args.quick;
    let scale = if quick { &QUICK } else { &FULL };
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for (name, run) in args.selected(SCENARIOS) {
        eprintln!("running {name}{}", if quick { " (quick)" } else { "" });
        let t = Instant::now();
        let outcome = run(scale);
        eprintln!("  {} ({:.1?})", outcome.detail, t.elapsed());
        outcomes.push(outcome);
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
