//! forkbridge's benchmark harness.
//!
//! ```text
//! cargo run --release -p forkbridge-bench -- [SCENARIO...] [--quick]
//! ```
//!
//! Every scenario measures forkbridge and a baseline (the raw mechanism
//! between the same kind of forked processes) in the same run, alternating
//! them, and reports the medians of several runs as a table, then one line
//! `RESULT scenario=.. value=.. unit=.. baseline=.. ratio=.. target=..`.
//! `--quick` runs fewer iterations (a smoke run for CI; its figures are not
//! the ones to report).

mod raw;
mod start;
mod supervise;

use std::time::{Duration, Instant};

use forkbridge::{
    AsyncBackend, AsyncContext, AsyncHandlers, Backend, BackendContext, Bytes, Event, EventGroup,
    EventIndex, FrameRing, HandlerResult, Handlers, Message, MessageProcess,
};
use forkbridge_testkit::ScenarioArgs;

/// A backend that answers pings (built in), counts ticks, and plays the
/// event scenarios. It crosses as data, so every start method can run it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Sink {
    ticks: u64,
    events: Option<(Event, Event, EventGroup)>,
}

impl Sink {
    fn new() -> Sink {
        Sink {
            ticks: 0,
            events: None,
        }
    }

    fn with_events(ping: &Event, pong: &Event, group: &EventGroup) -> Sink {
        Sink {
            ticks: 0,
            events: Some((ping.clone(), pong.clone(), group.clone())),
        }
    }

    /// `n` rounds of: wait for `ping`, clear it, set `pong`.
    fn bounce(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let (ping, pong, _) = self.events.as_ref().ok_or("no events")?;
        for _ in 0..msg.param::<u32>("n")? {
            ping.wait();
            ping.clear();
            pong.set();
        }
        ctx.send(Message::new("bounced"))?;
        Ok(())
    }

    fn set_index(&mut self, _: &mut BackendContext, msg: Message) -> HandlerResult {
        let (_, _, group) = self.events.as_ref().ok_or("no events")?;
        group.set(msg.param::<EventIndex>("event")?)?;
        Ok(())
    }
}

impl Sink {
    fn tick(&mut self, _: &mut BackendContext, _: Message) -> HandlerResult {
        self.ticks += 1;
        Ok(())
    }

    /// A tick whose handler reads every byte of its `data` first.
    fn read(&mut self, _: &mut BackendContext, msg: Message) -> HandlerResult {
        let data = msg
            .get("data")
            .and_then(|v| v.as_bytes())
            .ok_or("no data")?;
        let sum = data.iter().fold(0u8, |acc, &b| acc.wrapping_add(b));
        std::hint::black_box(sum);
        self.ticks += 1;
        Ok(())
    }

    fn pause(&mut self, _: &mut BackendContext, msg: Message) -> HandlerResult {
        std::thread::sleep(Duration::from_millis(msg.param("ms")?));
        Ok(())
    }

    fn report(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        ctx.send(Message::new("count").with("n", self.ticks))?;
        self.ticks = 0;
        Ok(())
    }
}

impl Backend for Sink {
    fn register(handlers: &mut Handlers<Self>) {
        handlers
            .on("tick", Self::tick)
            .on("read", Self::read)
            .on("report", Self::report)
            .on("pause", Self::pause)
            .on("bounce", Self::bounce)
            .on("set_index", Self::set_index);
    }
}

/// An async backend: answers pings (built in) and sleeps in background
/// tasks.
struct AsyncSink;

impl AsyncSink {
    async fn nap(&mut self, ctx: &mut AsyncContext, msg: Message) -> HandlerResult {
        let ms: u64 = msg.param("ms")?;
        let out = ctx.sender();
        ctx.spawn("nap", async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            out.send(Message::new("napped")).await?;
            Ok(())
        });
        Ok(())
    }
}

impl AsyncBackend for AsyncSink {
    fn register(handlers: &mut AsyncHandlers<Self>) {
        handlers.on("nap", Self::nap);
    }
}

/// A typed backend: the same work as `Sink`, as typed commands.
#[derive(Debug, Default)]
struct TypedSink {
    ticks: u64,
}

#[forkbridge::handlers]
impl TypedSink {
    fn echo(&mut self, x: u64) -> u64 {
        x
    }

    fn tick(&mut self, frame: u64, score: f64, camera: String, valid: bool) {
        let _ = (frame, score, camera, valid);
        self.ticks += 1;
    }

    fn count(&mut self) -> u64 {
        std::mem::take(&mut self.ticks)
    }
}

/// A backend that reads frames from a ring, every byte in place.
struct Drain {
    ring: FrameRing,
}

impl Drain {
    fn drain(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let mut consumer = self.ring.consumer()?;
        let mut check = 0u64;
        for _ in 0..msg.param::<u64>("frames")? {
            let frame = consumer.recv()?;
            // Read every byte: a wrapping sum of the 64-bit words.
            check = frame
                .cast::<u64>()?
                .iter()
                .fold(check, |acc, &w| acc.wrapping_add(w));
        }
        ctx.send(Message::new("drained").with("check", check))?;
        Ok(())
    }
}

impl Backend for Drain {
    fn register(handlers: &mut Handlers<Self>) {
        handlers.on("drain", Self::drain);
    }
}

/// valkka-multiprocess's typical small message: a command and four parameters.
fn small_message(i: u64) -> Message {
    Message::new("tick")
        .with("frame", i)
        .with("score", 0.75)
        .with("camera", "camera-01")
        .with("valid", true)
}

struct Scale {
    runs: usize,
    roundtrips: u32,
    oneway: u64,
    starts: u32,
    sets: u32,
}

const FULL: Scale = Scale {
    runs: 9,
    roundtrips: 20_000,
    oneway: 1_000_000,
    starts: 300,
    sets: 2_000_000,
};

const QUICK: Scale = Scale {
    runs: 3,
    roundtrips: 500,
    oneway: 20_000,
    starts: 20,
    sets: 20_000,
};

/// One scenario's figures.
struct Outcome {
    name: &'static str,
    unit: &'static str,
    value: Vec<f64>,
    baseline: Vec<f64>,
    target: &'static str,
    what: &'static str,
    baseline_what: &'static str,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn started_sink(name: &str) -> MessageProcess {
    let mut p = MessageProcess::new(name, Sink::new()).expect("build");
    p.start().expect("start");
    p
}

/// Runs `ours` and `theirs` in alternating blocks of `block` calls, after a
/// warm-up, and returns the mean time per call of each, in microseconds.
/// Taking turns in blocks, with the same CPU placement for both, keeps a
/// drift of this noisy machine between regimes from favouring one side.
fn interleaved(
    rounds: u32,
    block: u32,
    mut ours: impl FnMut(),
    mut theirs: impl FnMut(),
) -> (f64, f64) {
    let blocks = (rounds / block).max(2);
    for _ in 0..block {
        ours();
        theirs();
    }
    let (mut t_ours, mut t_theirs) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..blocks {
        let t = Instant::now();
        for _ in 0..block {
            theirs();
        }
        t_theirs += t.elapsed();
        let t = Instant::now();
        for _ in 0..block {
            ours();
        }
        t_ours += t.elapsed();
    }
    let n = f64::from(blocks * block);
    (micros(t_ours) / n, micros(t_theirs) / n)
}

/// Pins this process to CPU 0 and the partners to CPU 1, for the duration
/// of `f`: wake-ups then always cross CPUs, the case that costs.
fn pinned<T>(partners: &[libc::pid_t], f: impl FnOnce() -> T) -> T {
    let ok = raw::pin(0, 0) && partners.iter().all(|&pid| raw::pin(pid, 1));
    let out = f();
    if ok {
        raw::unpin(0);
    }
    out
}

fn roundtrip(scale: &Scale) -> Outcome {
    let (value, baseline) = ping_rounds(scale, MessageProcess::builder("roundtrip"));
    Outcome {
        name: "roundtrip",
        unit: "us",
        value,
        baseline,
        target: "<=1.10",
        what: "MessageProcess send(ping) + recv(pong)",
        baseline_what: "8-byte write + read over a socketpair with a forked echo child; interleaved blocks, partners on another CPU",
    }
}

fn roundtrip_forkserver(scale: &Scale) -> Outcome {
    let builder =
        MessageProcess::builder("roundtrip").start_method(forkbridge::StartMethod::ForkServer);
    let (value, baseline) = ping_rounds(scale, builder);
    Outcome {
        name: "roundtrip_forkserver",
        unit: "us",
        value,
        baseline,
        target: "<=1.10",
        what: "roundtrip with a backend started by StartMethod::ForkServer",
        baseline_what: "8-byte write + read over a socketpair with a forked echo child",
    }
}

fn roundtrip_spawn(scale: &Scale) -> Outcome {
    let builder = MessageProcess::builder("roundtrip").start_method(forkbridge::StartMethod::Spawn);
    let (value, baseline) = ping_rounds(scale, builder);
    Outcome {
        name: "roundtrip_spawn",
        unit: "us",
        value,
        baseline,
        target: "<=1.10",
        what: "roundtrip with a backend started by StartMethod::Spawn",
        baseline_what: "8-byte write + read over a socketpair with a forked echo child",
    }
}

fn roundtrip_spin(scale: &Scale) -> Outcome {
    let builder = MessageProcess::builder("spinner").spin_before_sleep(Duration::from_micros(100));
    let (value, baseline) = ping_rounds(scale, builder);
    Outcome {
        name: "roundtrip_spin",
        unit: "us",
        value,
        baseline,
        target: "<=1.0",
        what: "roundtrip with spin_before_sleep(100 µs) on both sides",
        baseline_what: "the blocking 8-byte socketpair round trip (no spinning)",
    }
}

/// Ping round trips through a process built from `builder`, interleaved
/// with raw socketpair round trips: per run, the mean of each in µs.
fn ping_rounds(scale: &Scale, builder: forkbridge::MessageProcessBuilder) -> (Vec<f64>, Vec<f64>) {
    let mut value = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..scale.runs {
        let mut raw = raw::EchoPartner::start();
        let mut p = builder.clone().build_portable(Sink::new()).expect("build");
        p.start().expect("start");
        let ping = Message::new("ping");
        let partners = [raw.pid(), p.pid().unwrap()];
        let (v, b) = pinned(&partners, || {
            interleaved(
                scale.roundtrips,
                500,
                || {
                    p.send(ping.clone()).unwrap();
                    p.recv().unwrap();
                },
                || raw.round(),
            )
        });
        value.push(v);
        baseline.push(b);
        raw.finish();
        p.stop().unwrap();
    }
    (value, baseline)
}

fn oneway_small(scale: &Scale) -> Outcome {
    let mut value = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..scale.runs {
        baseline.push(raw::oneway(scale.oneway, small_message));
        value.push(oneway_dynamic(scale.oneway));
    }
    Outcome {
        name: "oneway_small",
        unit: "msgs/s",
        value,
        baseline,
        target: ">=0.60",
        what: "feed() of command + 4 params, dispatched and counted by the backend",
        baseline_what: "same messages, postcard frames through 64 KiB buffers, decoded and counted by a forked child",
    }
}

/// Messages per second of a burst of `n` dynamic small messages, counted
/// by the backend.
fn oneway_dynamic(n: u64) -> f64 {
    let mut p = started_sink("oneway");
    let t = Instant::now();
    for i in 0..n {
        p.feed(small_message(i)).unwrap();
    }
    p.send(Message::new("report")).unwrap();
    let count = p.recv().unwrap();
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(count.param::<u64>("n").unwrap(), n);
    p.stop().unwrap();
    rate
}

fn start_stop(scale: &Scale) -> Outcome {
    let mut value = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..scale.runs {
        baseline.push(micros(raw::fork_exit_wait(scale.starts)));
        let mut total = Duration::ZERO;
        for _ in 0..scale.starts {
            let mut p = MessageProcess::new("idle", Sink::new()).unwrap();
            let t = Instant::now();
            p.start().unwrap();
            p.stop().unwrap();
            total += t.elapsed();
        }
        value.push(micros(total) / f64::from(scale.starts));
    }
    Outcome {
        name: "start_stop",
        unit: "us",
        value,
        baseline,
        target: "<=1.50",
        what: "start() + stop() of an idle backend (stop request, reaped)",
        baseline_what: "fork + _exit + waitpid",
    }
}

fn event_wakeup(scale: &Scale) -> Outcome {
    let mut value = Vec::new();
    let mut baseline = Vec::new();
    // Enough rounds for the warm-up block and every timed block.
    let rounds = scale.roundtrips + 2 * 500;
    for _ in 0..scale.runs {
        let raw = raw::FutexPingPong::start(rounds);
        let (ping, pong) = (Event::new().unwrap(), Event::new().unwrap());
        let group = EventGroup::new(1).unwrap();
        let mut p = MessageProcess::new("bounce", Sink::with_events(&ping, &pong, &group)).unwrap();
        p.start().unwrap();
        p.send(Message::new("bounce").with("n", rounds)).unwrap();
        let mut done = 0u32;
        let partners = [raw.pid(), p.pid().unwrap()];
        let (v, b) = pinned(&partners, || {
            interleaved(
                scale.roundtrips,
                500,
                || {
                    ping.set();
                    pong.wait();
                    pong.clear();
                    done += 1;
                },
                || raw.round(),
            )
        });
        value.push(v);
        baseline.push(b);
        // Let both partners finish their fixed number of rounds.
        for _ in done..rounds {
            raw.round();
            ping.set();
            pong.wait();
            pong.clear();
        }
        raw.finish();
        assert_eq!(p.recv().unwrap().command(), "bounced");
        p.stop().unwrap();
    }
    Outcome {
        name: "event_wakeup",
        unit: "us",
        value,
        baseline,
        target: "<=1.10",
        what: "Event::set in the frontend -> wait/clear/set in the backend -> Event::wait returns",
        baseline_what: "raw futex ping-pong (store + FUTEX_WAKE, FUTEX_WAIT) with a forked child; interleaved blocks, partners on another CPU",
    }
}

fn event_set_uncontended(scale: &Scale) -> Outcome {
    let mut value = Vec::new();
    let mut baseline = Vec::new();
    let event = Event::new().unwrap();
    for _ in 0..scale.runs {
        baseline.push(micros(raw::futex_wake_alone(scale.sets / 10)) * 1000.0);
        let t = Instant::now();
        for _ in 0..scale.sets {
            event.set();
            event.clear();
        }
        value.push(micros(t.elapsed()) * 1000.0 / f64::from(scale.sets));
    }
    Outcome {
        name: "event_set_uncontended",
        unit: "ns",
        value,
        baseline,
        target: "<=0.10",
        what: "Event::set + Event::clear, nobody waiting",
        baseline_what: "one FUTEX_WAKE syscall, nobody waiting",
    }
}

fn syncindex_call(scale: &Scale) -> Outcome {
    let mut value = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..scale.runs {
        let group = EventGroup::new(16).unwrap();
        let (ping, pong) = (Event::new().unwrap(), Event::new().unwrap());
        let p = MessageProcess::new("sync", Sink::with_events(&ping, &pong, &group)).unwrap();
        let p = std::cell::RefCell::new(p);
        p.borrow_mut().start().unwrap();
        let ping_msg = Message::new("ping");
        let partners = [p.borrow().pid().unwrap()];
        let (v, b) = pinned(&partners, || {
            interleaved(
                scale.roundtrips,
                500,
                || {
                    let sync = group.sync_index().unwrap();
                    p.borrow_mut()
                        .send(Message::new("set_index").with("event", sync.index()))
                        .unwrap();
                    sync.wait();
                },
                || {
                    let mut p = p.borrow_mut();
                    p.send(ping_msg.clone()).unwrap();
                    p.recv().unwrap();
                },
            )
        });
        value.push(v);
        baseline.push(b);
        p.borrow_mut().stop().unwrap();
    }
    Outcome {
        name: "syncindex_call",
        unit: "us",
        value,
        baseline,
        target: "<=1.20",
        what: "SyncIndex: reserve, send the index, backend sets it, wait, release",
        baseline_what: "the roundtrip scenario (send ping + recv pong) on the same process; interleaved blocks",
    }
}

fn async_roundtrip(scale: &Scale) -> Outcome {
    let mut value = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..scale.runs {
        let mut blocking = started_sink("blocking");
        let mut asynchronous = MessageProcess::builder("async")
            .build_async(AsyncSink)
            .unwrap();
        asynchronous.start().unwrap();
        let ping = Message::new("ping");
        let partners = [blocking.pid().unwrap(), asynchronous.pid().unwrap()];
        let (v, b) = pinned(&partners, || {
            interleaved(
                scale.roundtrips,
                500,
                || {
                    asynchronous.send(ping.clone()).unwrap();
                    asynchronous.recv().unwrap();
                },
                || {
                    blocking.send(ping.clone()).unwrap();
                    blocking.recv().unwrap();
                },
            )
        });
        value.push(v);
        baseline.push(b);
        blocking.stop().unwrap();
        asynchronous.stop().unwrap();
    }
    Outcome {
        name: "async_roundtrip",
        unit: "us",
        value,
        baseline,
        target: "<=1.10",
        what: "send(ping) + recv(pong) with an async backend (current-thread tokio in the child)",
        baseline_what: "the same with a blocking backend (roundtrip); interleaved blocks, partners on another CPU",
    }
}

fn async_concurrency(scale: &Scale) -> Outcome {
    const NAP_MS: u64 = 50;
    const COMMANDS: usize = 100;
    let mut value = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..scale.runs.min(5) {
        let mut p = MessageProcess::builder("naps")
            .build_async(AsyncSink)
            .unwrap();
        p.start().unwrap();
        let t = Instant::now();
        for _ in 0..COMMANDS {
            p.feed(Message::new("nap").with("ms", NAP_MS)).unwrap();
        }
        p.flush().unwrap();
        for _ in 0..COMMANDS {
            assert_eq!(p.recv().unwrap().command(), "napped");
        }
        value.push(t.elapsed().as_secs_f64() * 1e3);
        baseline.push(NAP_MS as f64);
        p.stop().unwrap();
    }
    Outcome {
        name: "async_concurrency",
        unit: "ms",
        value,
        baseline,
        target: "<=2.0",
        what: "100 commands whose handlers each start a 50 ms sleep in a background task, until all replied",
        baseline_what: "one handler's 50 ms",
    }
}

fn typed_call(scale: &Scale) -> Outcome {
    let mut value = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..scale.runs {
        let mut dynamic = started_sink("dynamic");
        let mut typed = TypedSinkClient::start("typed", TypedSink::default()).unwrap();
        let ping = Message::new("ping");
        let partners = [dynamic.pid().unwrap(), typed.pid().unwrap()];
        let (v, b) = pinned(&partners, || {
            interleaved(
                scale.roundtrips,
                500,
                || {
                    typed.echo(7).unwrap();
                },
                || {
                    dynamic.send(ping.clone()).unwrap();
                    dynamic.recv().unwrap();
                },
            )
        });
        value.push(v);
        baseline.push(b);
        dynamic.stop().unwrap();
        typed.stop().unwrap();
    }
    Outcome {
        name: "typed_call",
        unit: "us",
        value,
        baseline,
        target: "<=1.05",
        what: "a generated typed call (u64 -> u64) waiting for its reply",
        baseline_what: "the roundtrip scenario (send ping + recv pong); interleaved blocks, partners on another CPU",
    }
}

fn typed_oneway(scale: &Scale) -> Outcome {
    let mut value = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..scale.runs {
        baseline.push(oneway_dynamic(scale.oneway));
        let mut p = TypedSinkClient::start("typed-oneway", TypedSink::default()).unwrap();
        let t = Instant::now();
        for i in 0..scale.oneway {
            p.feed_cast("tick", &(i, 0.75f64, "camera-01".to_string(), true))
                .unwrap();
        }
        let n = p.count().unwrap();
        let rate = scale.oneway as f64 / t.elapsed().as_secs_f64();
        assert_eq!(n, scale.oneway);
        value.push(rate);
        p.stop().unwrap();
    }
    Outcome {
        name: "typed_oneway",
        unit: "msgs/s",
        value,
        baseline,
        target: ">=1.0",
        what: "feed_cast of a typed command with 4 arguments, counted by the backend",
        baseline_what: "oneway_small's dynamic message (command + 4 params) through the same path",
    }
}

fn large_message(scale: &Scale) -> Outcome {
    large_message_outcome(
        scale,
        ("large_message", "tick", ">=5"),
        "4 MiB Message parameters to a backend through the shared-memory lane",
    )
}

fn large_message_read(scale: &Scale) -> Outcome {
    large_message_outcome(
        scale,
        ("large_message_read", "read", ">=1.0"),
        "as large_message, but the handler reads every byte of each message (a receiver that works while the sender copies the next)",
    )
}

/// `large_messages` as the scenario `name`, its messages handled by
/// `command`.
fn large_message_outcome(
    scale: &Scale,
    (name, command, target): (&'static str, &str, &'static str),
    what: &'static str,
) -> Outcome {
    let (value, baseline) = large_messages(scale, command);
    Outcome {
        name,
        unit: "GB/s",
        value,
        baseline,
        target,
        what,
        baseline_what: "the same messages through the socket",
    }
}

/// GB/s of 4 MiB messages handled by `command`, through the lane and
/// (baseline) through the socket.
fn large_messages(scale: &Scale, command: &str) -> (Vec<f64>, Vec<f64>) {
    const SIZE: usize = 4 << 20;
    let count = (scale.oneway / 20_000).clamp(5, 50);
    // Lent, as a program sends a frame it already has: no copy before the
    // encoder's (the same for both paths).
    let payload = std::sync::Arc::new(vec![0x42u8; SIZE]);
    let mut value = Vec::new();
    let mut baseline = Vec::new();
    let rate = |p: &mut MessageProcess| {
        // Steady state: the first messages also fault in the pages of the
        // socket buffers and of the lane's slots (~6 ms a slot here) — both
        // slots: while the backend pauses, the second message finds the
        // first slot busy and takes the other.
        p.send(Message::new("pause").with("ms", 20u64)).unwrap();
        for _ in 0..2 {
            p.send(Message::new(command).with("data", Bytes::lent(payload.clone())))
                .unwrap();
        }
        p.send(Message::new("report")).unwrap();
        p.recv().unwrap();
        let t = Instant::now();
        for _ in 0..count {
            p.send(Message::new(command).with("data", Bytes::lent(payload.clone())))
                .unwrap();
        }
        p.send(Message::new("report")).unwrap();
        assert_eq!(p.recv().unwrap().param::<u64>("n").unwrap(), count);
        count as f64 * SIZE as f64 / t.elapsed().as_secs_f64() / 1e9
    };
    for _ in 0..scale.runs {
        let mut socket = started_sink("socket");
        let mut lane = MessageProcess::builder("lane")
            .large_messages(64 << 10, 8 << 20)
            .build(Sink::new())
            .unwrap();
        lane.start().unwrap();
        baseline.push(rate(&mut socket));
        value.push(rate(&mut lane));
        socket.stop().unwrap();
        lane.stop().unwrap();
    }
    (value, baseline)
}

fn shm_frames(scale: &Scale) -> Outcome {
    const MIB: usize = 1 << 20;
    let frames = (scale.oneway / 500).max(20);
    let source = vec![0x5Au8; MIB];
    let mut value = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..scale.runs {
        // Baseline: memcpy of 1 MiB in this process, the same count.
        let mut dst = vec![0u8; MIB];
        let t = Instant::now();
        for i in 0..frames {
            dst.copy_from_slice(&source);
            dst[0] = i as u8;
            std::hint::black_box(&mut dst);
        }
        baseline.push(frames as f64 * MIB as f64 / t.elapsed().as_secs_f64() / 1e9);

        // Eight slots, not four: with four the producer keeps overwriting the
        // slot the consumer has just read and both cores fight over the same
        // lines (4 slots: 12.8-13.6 GB/s here, 6-16 slots: 15-19 GB/s).
        let ring = FrameRing::new(8, MIB).unwrap();
        let mut p = MessageProcess::new("drain", Drain { ring: ring.clone() }).unwrap();
        p.start().unwrap();
        p.send(Message::new("drain").with("frames", frames))
            .unwrap();
        let mut producer = ring.producer().unwrap();
        let secs = pinned(&[p.pid().unwrap()], || {
            let t = Instant::now();
            for i in 0..frames {
                let mut slot = producer.acquire().unwrap();
                slot.copy_from_slice(&source); // one copy in; the consumer reads in place
                slot[0] = i as u8;
                slot.commit(MIB).unwrap();
            }
            assert_eq!(p.recv().unwrap().command(), "drained");
            t.elapsed().as_secs_f64()
        });
        value.push(frames as f64 * MIB as f64 / secs / 1e9);
        p.stop().unwrap();
    }
    Outcome {
        name: "shm_frames",
        unit: "GB/s",
        value,
        baseline,
        target: ">=0.60",
        what: "1 MiB frames through an 8-slot FrameRing to a backend that reads every byte in place (producer on CPU 0, consumer on CPU 1)",
        baseline_what: "memcpy of 1 MiB in one process",
    }
}

type Scenario = fn(&Scale) -> Outcome;

const SCENARIOS: &[(&str, Scenario)] = &[
    ("roundtrip", roundtrip),
    ("roundtrip_spin", roundtrip_spin),
    ("oneway_small", oneway_small),
    ("start_stop", start_stop),
    ("start_stop_forkserver", start::start_stop_forkserver),
    ("start_stop_spawn", start::start_stop_spawn),
    ("start_big_parent", start::start_big_parent),
    ("roundtrip_forkserver", roundtrip_forkserver),
    ("roundtrip_spawn", roundtrip_spawn),
    ("event_wakeup", event_wakeup),
    ("event_set_uncontended", event_set_uncontended),
    ("syncindex_call", syncindex_call),
    ("async_roundtrip", async_roundtrip),
    ("async_concurrency", async_concurrency),
    ("typed_call", typed_call),
    ("typed_oneway", typed_oneway),
    ("shm_frames", shm_frames),
    ("large_message", large_message),
    ("large_message_read", large_message_read),
    ("restart_latency", supervise::restart_latency),
    ("status_snapshot", supervise::status_snapshot),
    ("restart_latency_spare", supervise::restart_latency_spare),
    (
        "restart_latency_forkserver",
        supervise::restart_latency_forkserver,
    ),
    ("pool_throughput", supervise::pool_throughput),
    ("pool_overhead", supervise::pool_overhead),
];

const USAGE: &str = "\
forkbridge's benchmarks: every scenario, or those named, each against a
baseline measured in the same run.

usage: cargo run --release -p forkbridge-bench -- [SCENARIO...] [--quick]

  --quick   fewer iterations: a smoke run for CI, not figures to report
  --help    this text

Prints a table of medians, then one RESULT line per scenario with the
ratio to its baseline and the target.";

fn main() {
    if std::env::var_os(start::EXIT_AT_ONCE).is_some() {
        return;
    }
    // Spawned and served backends run this program up to here.
    forkbridge::init();
    let args = ScenarioArgs::from_env(USAGE, SCENARIOS);
    let quick = args.quick;
    let scale = if quick { &QUICK } else { &FULL };
    let mut outcomes = Vec::new();
    for (name, run) in args.selected(SCENARIOS) {
        eprintln!(
            "running {name} ({} runs{})",
            scale.runs,
            if quick { ", quick" } else { "" }
        );
        outcomes.push(run(scale));
    }

    println!();
    println!(
        "{:<22} {:>14} {:>14} {:>8} {:>8}  runs (value / baseline)",
        "scenario", "value", "baseline", "ratio", "target"
    );
    for o in &outcomes {
        let (v, b) = (median(&o.value), median(&o.baseline));
        let runs: Vec<String> = o
            .value
            .iter()
            .zip(&o.baseline)
            .map(|(v, b)| format!("{} / {}", fmt(*v), fmt(*b)))
            .collect();
        println!(
            "{:<22} {:>14} {:>14} {:>8.3} {:>8}  {}",
            o.name,
            format!("{} {}", fmt(v), o.unit),
            format!("{} {}", fmt(b), o.unit),
            v / b,
            o.target,
            runs.join(", ")
        );
        println!(
            "{:<14} value: {}; baseline: {}",
            "", o.what, o.baseline_what
        );
    }
    println!();
    for o in &outcomes {
        let (v, b) = (median(&o.value), median(&o.baseline));
        println!(
            "RESULT scenario={} value={} unit={} baseline={} ratio={:.3} target={}",
            o.name,
            fmt(v),
            o.unit,
            fmt(b),
            v / b,
            o.target
        );
    }
}

fn fmt(x: f64) -> String {
    if x >= 1000.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}
