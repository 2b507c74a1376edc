//! Typed commands from one definition (`#[forkbridge::handlers]`), on real
//! forks: calls with replies, one-way casts, faults, the dynamic path beside
//! them, the async forms, and the generated `Command` constants through a
//! `Pool`.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::{WAIT, error_field, recv};
use forkbridge::{
    AsyncContext, Backend, BackendContext, Command, ErrorKind, HandlerResult, Handlers, Message,
    MessageProcess, Pool, StartMethod, message,
};
use forkbridge_testkit::{reap, signal_later};
use serde::{Deserialize, Serialize};

test_main!(
    call_returns_the_value,
    cast_is_one_way_and_in_order,
    handler_error_panic_and_bad_arguments_are_typed,
    unknown_typed_command_is_a_remote_error,
    call_times_out_and_a_late_reply_never_mixes_up,
    call_to_a_dead_backend_is_disconnected,
    messages_during_a_call_are_kept_for_recv,
    dynamic_and_typed_handlers_live_side_by_side,
    async_backend_typed_commands,
    async_client_calls,
    async_waits_take_duration_max,
    a_renamed_command_is_called_by_its_wire_name,
    a_skipped_method_makes_no_command,
    typed_clients_start_under_every_start_method,
    generated_commands_call_through_a_pool,
    generated_commands_of_an_async_backend_call_through_a_pool,
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blobs {
    pub count: u32,
    pub largest: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Detector {
    frames: u64,
    threshold: u8,
}

#[forkbridge::handlers(frontend = DetectorClient)]
impl Detector {
    /// Counts pixels above the threshold, in blobs of 16.
    pub fn analyse(&mut self, frame: Frame) -> Blobs {
        self.frames += 1;
        let bright = frame.pixels.iter().filter(|&&p| p > self.threshold).count() as u32;
        Blobs {
            count: bright / 16,
            largest: bright.min(16),
        }
    }

    /// Sets the threshold (one-way).
    pub fn set_threshold(&mut self, threshold: u8) {
        self.threshold = threshold;
    }

    /// How many frames were analysed.
    pub fn frames(&mut self) -> u64 {
        self.frames
    }

    /// Fails on odd input, panics on 13.
    pub fn checked(&mut self, n: i64) -> Result<i64, String> {
        if n == 13 {
            panic!("unlucky {n}");
        }
        if n % 2 == 1 {
            return Err(format!("{n} is odd"));
        }
        Ok(n / 2)
    }

    /// Sleeps, then answers.
    pub fn slow(&mut self, ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }

    /// Sends a dynamic progress message, then returns.
    pub fn with_progress(&mut self, ctx: &mut BackendContext, steps: u32) -> u32 {
        for step in 0..steps {
            let _ = ctx.send(message!("progress", step = step));
        }
        steps
    }

    /// Dies.
    pub fn die(&mut self) {
        std::process::abort();
    }

    #[forkbridge(skip)]
    #[allow(dead_code)]
    fn helper(&mut self) {}
}

fn detector() -> DetectorClient {
    let mut client = DetectorClient::start("detector", Detector::default()).unwrap();
    client.set_timeout(WAIT);
    client
}

fn call_returns_the_value() {
    let mut d = detector();
    let frame = Frame {
        width: 8,
        height: 8,
        pixels: (0..64).map(|i| (i * 4) as u8).collect(),
    };
    let blobs = d.analyse(frame.clone()).unwrap();
    assert_eq!(
        blobs,
        Blobs {
            count: 3,
            largest: 16
        }
    );
    assert_eq!(d.frames().unwrap(), 1);
    assert_eq!(d.log_target(), "Detector.detector");
    assert!(d.stop().unwrap().success());
}

fn cast_is_one_way_and_in_order() {
    let mut d = detector();
    d.set_threshold(250).unwrap();
    let frame = Frame {
        width: 1,
        height: 1,
        pixels: vec![255; 32],
    };
    assert_eq!(d.analyse(frame).unwrap().count, 2);
    d.set_threshold(255).unwrap();
    let frame = Frame {
        width: 1,
        height: 1,
        pixels: vec![255; 32],
    };
    assert_eq!(
        d.analyse(frame).unwrap().count,
        0,
        "the cast arrived before the call"
    );
    d.stop().unwrap();
}

fn handler_error_panic_and_bad_arguments_are_typed() {
    let mut d = detector();
    assert_eq!(d.checked(8).unwrap(), 4);
    let err = d.checked(3).unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::Remote {
            kind: "handler_error".into(),
            message: "3 is odd".into()
        }
    );
    let err = d.checked(13).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Remote { kind, message }
        if kind == "panic" && message == "unlucky 13"));
    // Arguments that do not decode as the handler's types (a string where
    // an i64 is expected), sent through the untyped entry point.
    let err = d.call::<_, i64>("checked", &("eight",), WAIT).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Remote { kind, message }
            if kind == "decode" && message.contains("argument types")),
        "{err}"
    );
    // A reply of another type than asked for: a typed decode error here.
    let err = d.call::<_, String>("frames", &(), WAIT).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Remote { kind, message }
            if kind == "decode" && message.contains("reply types")),
        "{err:?}"
    );
    // The backend kept running through all of it.
    assert_eq!(d.checked(10).unwrap(), 5);
    assert!(d.stop().unwrap().success());
}

fn unknown_typed_command_is_a_remote_error() {
    let mut d = detector();
    let err = d.call::<_, ()>("no_such", &(1,), WAIT).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Remote { kind, .. } if kind == "unknown_command"));
    // One-way: reported as an error message instead.
    d.cast("no_such", &()).unwrap();
    assert_eq!(error_field(&recv(&mut d), "kind"), "unknown_command");
    d.stop().unwrap();
}

fn call_times_out_and_a_late_reply_never_mixes_up() {
    let mut d = detector();
    d.set_timeout(Duration::from_millis(50));
    let t = Instant::now();
    let err = d.slow(300).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(t.elapsed() < Duration::from_millis(250));
    // The late reply (300) arrives while we wait for this call's (1): it
    // must be dropped, not returned.
    d.set_timeout(WAIT);
    assert_eq!(d.slow(1).unwrap(), 1);
    assert_eq!(d.slow(2).unwrap(), 2);
    d.stop().unwrap();
}

fn call_to_a_dead_backend_is_disconnected() {
    let mut d = detector();
    d.die().unwrap();
    let err = d.frames().unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    assert_eq!(err.exit_status().unwrap().signal(), Some(libc::SIGABRT));
    // And a call that is waiting when the backend dies.
    let mut d = detector();
    let pid = d.pid().unwrap();
    let killer = signal_later(pid, libc::SIGKILL, Duration::from_millis(50));
    let err = d.slow(5_000).unwrap_err();
    reap(killer);
    assert!(err.is_disconnected(), "{err}");
}

fn messages_during_a_call_are_kept_for_recv() {
    let mut d = detector();
    assert_eq!(d.with_progress(3).unwrap(), 3);
    for step in 0..3u32 {
        let m = recv(&mut d);
        assert_eq!(m.command(), "progress");
        assert_eq!(m.param::<u32>("step").unwrap(), step);
    }
    d.stop().unwrap();
}

/// A backend with both kinds of handlers and its own hooks.
#[derive(Debug, Default)]
pub struct Mixed {
    greeted: u32,
}

#[forkbridge::handlers(custom_backend)]
impl Mixed {
    pub fn greet(&mut self, who: String) -> String {
        self.greeted += 1;
        format!("hello, {who}")
    }
}

impl Mixed {
    fn count(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        ctx.send(message!("count", n = self.greeted))?;
        Ok(())
    }
}

impl Backend for Mixed {
    fn register(handlers: &mut Handlers<Self>) {
        Self::register_typed(handlers);
        handlers.on("count", Self::count);
    }

    fn post_run(&mut self, ctx: &mut BackendContext) {
        let _ = ctx.send(Message::new("bye"));
    }
}

fn dynamic_and_typed_handlers_live_side_by_side() {
    let mut m = MixedClient::start("mixed", Mixed::default()).unwrap();
    assert_eq!(m.greet("world".into()).unwrap(), "hello, world");
    m.send(Message::new("count")).unwrap();
    assert_eq!(recv(&mut m).param::<u32>("n").unwrap(), 1);
    assert!(m.stop().unwrap().success());
    assert_eq!(recv(&mut m).command(), "bye");
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Camera {
    polls: u32,
}

#[forkbridge::handlers]
impl Camera {
    /// Polls a camera asynchronously.
    pub async fn poll(&mut self, ms: u64) -> u32 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.polls += 1;
        self.polls
    }

    /// Starts a background probe.
    pub async fn probe(&mut self, ctx: &mut AsyncContext, id: u32) {
        let out = ctx.sender();
        ctx.spawn(format!("probe {id}"), async move {
            out.send(message!("probed", id = id)).await?;
            Ok(())
        });
    }

    /// Fails.
    pub async fn broken(&mut self) -> Result<(), String> {
        Err("lens cap on".into())
    }
}

fn async_backend_typed_commands() {
    let mut c = CameraClient::start("camera", Camera::default()).unwrap();
    assert_eq!(c.poll(5).unwrap(), 1);
    assert_eq!(c.poll(1).unwrap(), 2);
    c.probe(7).unwrap();
    assert_eq!(recv(&mut c).param::<u32>("id").unwrap(), 7);
    let err = c.broken().unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Remote { message, .. } if message == "lens cap on"));
    assert!(c.stop().unwrap().success());
}

fn async_client_calls() {
    let d = detector();
    let c = CameraClient::start("camera", Camera::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut d = d.into_async().unwrap();
        let mut c = c.into_async().unwrap();
        let (polls, frames) = tokio::join!(c.poll(10), d.frames());
        assert_eq!((polls.unwrap(), frames.unwrap()), (1, 0));
        assert_eq!(d.checked(4).await.unwrap(), 2);
        assert!(d.checked(5).await.is_err());
        d.set_threshold(1).await.unwrap();
        assert!(d.stop().await.unwrap().success());
        assert!(c.stop().await.unwrap().success());
    });
    let _ = MessageProcess::builder("unused"); // the builder stays usable beside clients
}

/// `Duration::MAX` means no limit in the async frontend's call and stop,
/// as in the blocking one (`tests/edges.rs`).
fn async_waits_take_duration_max() {
    let mut p = MessageProcess::builder("patient")
        .stop_timeout(Duration::MAX)
        .kill_timeout(Duration::MAX)
        .build(Detector::default())
        .unwrap();
    p.start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut p = p.into_async().unwrap();
        let frames: u64 = p.call("frames", &(), Duration::MAX).await.unwrap();
        assert_eq!(frames, 0);
        assert!(p.stop().await.unwrap().success());
    });
}

/// A backend whose commands are renamed or left out.
#[derive(Debug, Default)]
pub struct Divider {
    divisions: u64,
}

#[forkbridge::handlers]
impl Divider {
    /// Divides, refusing zero; on the wire as `checkedDiv`.
    #[forkbridge(command = "checkedDiv")]
    pub fn checked_div(&mut self, a: i64, b: i64) -> Result<i64, String> {
        self.divisions += 1;
        a.checked_div(b).ok_or_else(|| format!("{a} / {b}"))
    }

    /// A handler-shaped method kept out of the table.
    #[forkbridge(skip)]
    pub fn divisions(&mut self) -> u64 {
        self.divisions
    }

    /// How many divisions were made (a command under its own name).
    pub fn count(&mut self) -> u64 {
        self.divisions
    }
}

fn divider() -> DividerClient {
    let mut client = DividerClient::start("divider", Divider::default()).unwrap();
    client.set_timeout(WAIT);
    client
}

fn a_renamed_command_is_called_by_its_wire_name() {
    let mut d = divider();
    // By hand, under the name the attribute gave it.
    assert_eq!(
        d.call::<_, i64>("checkedDiv", &(84i64, 2i64), WAIT)
            .unwrap(),
        42
    );
    let err = d
        .call::<_, i64>("checkedDiv", &(1i64, 0i64), WAIT)
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Remote { kind, message }
            if kind == "handler_error" && message == "1 / 0"),
        "{err}"
    );
    // The Rust name is not a command.
    let err = d
        .call::<_, i64>("checked_div", &(84i64, 2i64), WAIT)
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Remote { kind, .. } if kind == "unknown_command"),
        "{err}"
    );
    // The generated client uses the wire name too.
    assert_eq!(d.checked_div(9, 3).unwrap(), 3);
    assert_eq!(d.count().unwrap(), 3);
    assert!(d.stop().unwrap().success());
}

fn a_skipped_method_makes_no_command() {
    let mut d = divider();
    let err = d.call::<_, u64>("divisions", &(), WAIT).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Remote { kind, .. } if kind == "unknown_command"),
        "{err}"
    );
    // It stays an ordinary method of the backend.
    let mut local = Divider::default();
    local.checked_div(4, 2).unwrap();
    assert_eq!(local.divisions(), 1);
    assert_eq!(d.count().unwrap(), 0);
    assert!(d.stop().unwrap().success());
}

fn typed_clients_start_under_every_start_method() {
    for method in [
        StartMethod::Fork,
        StartMethod::ForkServer,
        StartMethod::Spawn,
    ] {
        let builder = MessageProcess::builder("detector").start_method(method);
        let backend = Detector {
            frames: 0,
            threshold: 100,
        };
        let mut d = DetectorClient::start_with(builder, backend).unwrap();
        d.set_timeout(WAIT);
        let frame = Frame {
            width: 4,
            height: 8,
            pixels: vec![200; 32],
        };
        assert_eq!(d.analyse(frame).unwrap().count, 2, "{method:?}");
        assert_eq!(
            d.checked(3).unwrap_err().kind(),
            &ErrorKind::Remote {
                kind: "handler_error".into(),
                message: "3 is odd".into(),
            }
        );
        assert!(d.stop().unwrap().success());
        let builder = MessageProcess::builder("camera").start_method(method);
        let mut c = CameraClient::start_with(builder, Camera { polls: 40 }).unwrap();
        assert_eq!(c.poll(1).unwrap(), 41, "{method:?}");
        assert!(c.stop().unwrap().success());
    }
}

/// A backend whose generated `Command` constants a pool calls.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    total: i64,
}

#[forkbridge::handlers(frontend = TallyProcess)]
impl Tally {
    /// A value.
    pub fn square(&mut self, x: u64) -> u64 {
        x * x
    }

    /// Several arguments.
    pub fn add(&mut self, a: i64, b: i64) -> i64 {
        a + b
    }

    /// A value or an error.
    pub fn half(&mut self, n: i64) -> Result<i64, String> {
        if n % 2 != 0 {
            return Err(format!("{n} is odd"));
        }
        Ok(n / 2)
    }

    /// One way.
    pub fn record(&mut self, n: i64) {
        self.total += n;
    }

    /// `Self` in a handler's types is the backend, in the constant too.
    pub fn snapshot(&mut self) -> Self {
        self.clone()
    }
}

/// The constants are `const` values: marked idempotent at compile time.
const SQUARE_AGAIN: Command<(u64,), u64> = TallyProcess::SQUARE.idempotent();

fn generated_commands_call_through_a_pool() {
    // The types the constants carry, checked by the compiler.
    let _: Command<(u64,), u64> = TallyProcess::SQUARE;
    let _: Command<(i64, i64), i64> = TallyProcess::ADD;
    let _: Command<(i64,), i64> = TallyProcess::HALF;
    let _: Command<(i64,), ()> = TallyProcess::RECORD;
    let _: Command<(), Tally> = TallyProcess::SNAPSHOT;
    let _: Command<(u64,), u64> = TallyProcessAsync::SQUARE;
    assert_eq!(TallyProcess::SQUARE.name(), "square");
    assert!(!TallyProcess::SQUARE.is_idempotent());
    assert!(SQUARE_AGAIN.is_idempotent());
    // A renamed command's constant has the wire name.
    assert_eq!(DividerClient::CHECKED_DIV.name(), "checkedDiv");
    assert_eq!(TallyProcessAsync::HALF.name(), "half");

    let mut pool = Pool::builder("tally")
        .workers(2)
        .build(|name| MessageProcess::builder(name).build(Tally::default()))
        .unwrap();
    assert_eq!(pool.call(TallyProcess::SQUARE.with((7,))).unwrap(), 49);
    assert_eq!(pool.call(TallyProcess::ADD.with((40, 2))).unwrap(), 42);
    assert_eq!(pool.call(TallyProcess::HALF.with((8,))).unwrap(), 4);
    assert_eq!(
        pool.call(TallyProcess::HALF.with((3,))).unwrap_err().kind(),
        &ErrorKind::Remote {
            kind: "handler_error".into(),
            message: "3 is odd".into(),
        }
    );
    assert_eq!(pool.call(SQUARE_AGAIN.with((12,))).unwrap(), 144);
    // A cast, then a call on the same worker (one key): the call is answered
    // after the cast was handled.
    pool.cast(TallyProcess::RECORD.with((5,)).key("t")).unwrap();
    pool.cast(TallyProcess::RECORD.with((6,)).key("t")).unwrap();
    assert_eq!(
        pool.call(TallyProcess::SNAPSHOT.with(()).key("t")).unwrap(),
        Tally { total: 11 }
    );
    // A hand-made command with other types than the handler's is refused
    // by the backend: the generated ones match it by construction.
    let wrong: Command<(u32,), u64> = Command::new("square");
    let err = pool.call(wrong.with((7,))).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Remote { kind, message }
            if kind == "decode" && message.contains("argument types")),
        "{err}"
    );
    // Many in flight across both workers.
    let tickets: Vec<_> = (0..20u64)
        .map(|x| pool.submit(TallyProcess::SQUARE.with((x,))).unwrap())
        .collect();
    let sum: u64 = tickets.into_iter().map(|t| pool.wait(t).unwrap()).sum();
    assert_eq!(sum, 2470);
    pool.stop(Duration::from_secs(5));
}

fn generated_commands_of_an_async_backend_call_through_a_pool() {
    let mut pool = Pool::builder("cameras")
        .workers(2)
        .build(|name| MessageProcess::builder(name).build_async(Camera::default()))
        .unwrap();
    let polls = pool.call(CameraClient::POLL.with((1,)).key("c")).unwrap();
    assert_eq!(
        pool.call(CameraClient::POLL.with((1,)).key("c")).unwrap(),
        polls + 1
    );
    let err = pool.call(CameraClientAsync::BROKEN.with(())).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Remote { message, .. } if message == "lens cap on"));
    pool.stop(Duration::from_secs(5));
}
