//! A small test harness for tests that fork, and the backends they share.
//!
//! # Why not libtest
//!
//! libtest runs every test on a spawned thread, so a test process is
//! multi-threaded when it forks, and forkbridge refuses that by default
//! (see `MessageProcessBuilder::allow_threads`). Rather than opting in
//! everywhere (and so never testing the default a user gets), the test
//! binaries that fork use `harness = false`: `main` runs each case in turn
//! on the main thread of a single-threaded process, exactly like a user's
//! program, and the parent-death signal is armed as it is in production.
//!
//! Every case runs under `alarm(2)`: a case that hangs is killed by
//! `SIGALRM` after [`CASE_BOUND_SECS`] and the binary fails, so no test
//! waits forever. After each case the harness checks that no child process
//! is left (no zombie, no orphan of ours). Cases run one after another, so
//! they never see each other's processes. Pass substrings as arguments to
//! run only the matching cases: `cargo test --test faults -- sigkill`.
//!
//! What is about processes in general (children, liveness, fds, mappings,
//! signals, reaping, bounded polling) lives in `forkbridge-testkit`, which
//! the bench and the soak suite share; this module keeps what only these
//! tests need: the harness, the [`Probe`] backend and the fixtures built
//! on forkbridge's own types.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a subset.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use forkbridge::{Backend, BackendContext, HandlerResult, Handlers, Message, MessageProcess};
use forkbridge_testkit::{
    alarm, children_but_the_fork_server, ignore, kill, kill_and_reap, reap, restore_default,
    signal_later, sleep_until_killed, try_reap, wait_until,
};

/// The hard bound of one case, in seconds.
pub const CASE_BOUND_SECS: u32 = 60;

/// The bound used for every wait inside a case.
pub const WAIT: Duration = Duration::from_secs(10);

/// Runs the named cases; exits non-zero if any failed.
pub fn run(cases: &[(&str, fn())]) {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<_> = cases
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!(
        "\nrunning {} tests (harness = false, one process, main thread)",
        selected.len()
    );
    let mut failed = Vec::new();
    let started = Instant::now();
    for (name, case) in selected {
        // SIGALRM keeps its default action (terminate), which is the point.
        alarm(CASE_BOUND_SECS);
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(case));
        // The fork server stays for the program's life, like in a user's.
        let leftovers = children_but_the_fork_server();
        alarm(0);
        match (outcome, leftovers.is_empty()) {
            (Ok(()), true) => println!("test {name} ... ok ({:.0?})", t.elapsed()),
            (Ok(()), false) => {
                println!("test {name} ... FAILED: left child processes {leftovers:?}");
                kill_and_reap(&leftovers);
                failed.push(*name);
            }
            (Err(_), _) => {
                println!("test {name} ... FAILED");
                kill_and_reap(&leftovers);
                failed.push(*name);
            }
        }
    }
    println!(
        "\ntest result: {}. {} failed; finished in {:.2?}\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        started.elapsed()
    );
    if !failed.is_empty() {
        for name in &failed {
            println!("    {name}");
        }
        std::process::exit(1);
    }
}

/// `test_main!(case_a, case_b)` defines `main` running those functions.
#[macro_export]
macro_rules! test_main {
    ($($case:ident),* $(,)?) => {
        fn main() {
            // Every test binary can start spawned and served workers.
            forkbridge::init();
            common::run(&[$((stringify!($case), $case as fn())),*]);
        }
    };
}

/// Receives the next message that is not `skip`-ped, within [`WAIT`].
pub fn recv(p: &mut MessageProcess) -> Message {
    p.recv_timeout(WAIT).expect("a message within the bound")
}

/// A backend with one handler per behaviour the tests need.
#[derive(Debug, Default)]
pub struct Probe {
    pub count: u64,
    pub say_bye: bool,
    pub fail_pre_run: bool,
    pub grandchild: Option<MessageProcess>,
    pub pipe: Option<std::io::PipeReader>,
    pub held: Vec<std::os::fd::OwnedFd>,
}

impl Probe {
    fn echo(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let mut reply = Message::new("echo");
        for (k, v) in msg.params() {
            reply.set(k, v.clone());
        }
        ctx.send(reply)?;
        Ok(())
    }

    fn fail(&mut self, _: &mut BackendContext, _: Message) -> HandlerResult {
        Err("boom".into())
    }

    fn panic(&mut self, _: &mut BackendContext, _: Message) -> HandlerResult {
        panic!("kaboom");
    }

    fn exit(&mut self, _: &mut BackendContext, msg: Message) -> HandlerResult {
        let code: i32 = msg.param("code")?;
        // SAFETY: `_exit` ends the process at once; nothing is left half-done
        // that the test relies on.
        unsafe { libc::_exit(code) }
    }

    fn abort(&mut self, _: &mut BackendContext, _: Message) -> HandlerResult {
        std::process::abort();
    }

    fn sleep(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        std::thread::sleep(Duration::from_millis(msg.param("ms")?));
        ctx.send(Message::new("slept"))?;
        Ok(())
    }

    fn tick(&mut self, _: &mut BackendContext, _: Message) -> HandlerResult {
        self.count += 1;
        Ok(())
    }

    fn report(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        ctx.send(Message::new("count").with("n", self.count))?;
        Ok(())
    }

    fn whoami(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        let reply = Message::new("me")
            .with("name", ctx.name())
            .with("target", ctx.log_target())
            .with("pid", std::process::id());
        ctx.send(reply)?;
        Ok(())
    }

    fn big(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let n: usize = msg.param("n")?;
        ctx.send(Message::new("big").with("data", vec![0xA5u8; n]))?;
        Ok(())
    }

    fn burst(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let n: u64 = msg.param("n")?;
        for i in 0..n {
            ctx.send(Message::new("item").with("i", i))?;
        }
        Ok(())
    }

    fn burst_then_exit(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        self.burst(ctx, msg)?;
        ctx.flush()?;
        // SAFETY: as in `exit`.
        unsafe { libc::_exit(7) }
    }

    fn ignore_term_and_block(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        block_ignoring_sigterm(ctx)
    }

    fn stop_me(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        ctx.request_stop();
        Ok(())
    }

    fn spawn_grandchild(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let from_thread: bool = msg.param("from_thread")?;
        // A user fd opened in this backend: a child it forks inherits it.
        let (r, w) = std::io::pipe()?;
        self.held.push(r.into());
        self.held.push(w.into());
        let mut p = if from_thread {
            // Fork from a short-lived thread: the parent-death signal must
            // not be armed (it would fire when that thread exits).
            std::thread::spawn(|| {
                let mut p = MessageProcess::builder("grandchild")
                    .allow_threads(true)
                    .build(Probe::default())?;
                p.start().map(|()| p)
            })
            .join()
            .expect("thread")?
        } else {
            let mut p = MessageProcess::new("grandchild", Probe::default())?;
            p.start()?;
            p
        };
        p.send(Message::new("ping"))?;
        p.recv_timeout(WAIT)?;
        ctx.send(Message::new("grandchild").with("pid", p.pid().unwrap_or(0)))?;
        self.grandchild = Some(p);
        Ok(())
    }
}

impl Backend for Probe {
    fn register(h: &mut Handlers<Self>) {
        h.on("echo", Self::echo)
            .on("fail", Self::fail)
            .on("panic", Self::panic)
            .on("exit", Self::exit)
            .on("abort", Self::abort)
            .on("sleep", Self::sleep)
            .on("tick", Self::tick)
            .on("report", Self::report)
            .on("whoami", Self::whoami)
            .on("big", Self::big)
            .on("burst", Self::burst)
            .on("burst_then_exit", Self::burst_then_exit)
            .on("ignore_term_and_block", Self::ignore_term_and_block)
            .on("stop_me", Self::stop_me)
            .on("spawn_grandchild", Self::spawn_grandchild);
    }

    fn pre_run(&mut self, ctx: &mut BackendContext) -> HandlerResult {
        if self.fail_pre_run {
            return Err("no model file".into());
        }
        if let Some(pipe) = &self.pipe {
            use std::os::fd::AsFd;
            ctx.watch(pipe.as_fd(), forkbridge::Interest::Readable);
        }
        Ok(())
    }

    fn post_run(&mut self, ctx: &mut BackendContext) {
        if self.say_bye {
            let _ = ctx.send(Message::new("bye").with("count", self.count));
        }
    }

    fn on_ready(
        &mut self,
        ctx: &mut BackendContext,
        source: forkbridge::SourceId,
        ready: forkbridge::Ready,
    ) -> HandlerResult {
        use std::io::Read;
        let mut buf = [0u8; 256];
        let n = match &mut self.pipe {
            Some(pipe) if ready.is_readable() => pipe.read(&mut buf)?,
            _ => 0,
        };
        if n == 0 {
            ctx.unwatch(source);
            ctx.send(Message::new("pipe_closed"))?;
        } else {
            ctx.send(Message::new("pipe").with("data", &buf[..n]))?;
        }
        Ok(())
    }
}

/// A handler's body that ignores `SIGTERM`, says `"blocking"`, and blocks
/// until killed: a backend only `SIGKILL` stops.
pub fn block_ignoring_sigterm(ctx: &mut BackendContext) -> HandlerResult {
    ignore(libc::SIGTERM);
    ctx.send(Message::new("blocking"))?;
    ctx.flush()?;
    sleep_until_killed()
}

/// A started [`Probe`] process.
pub fn probe(name: &str) -> MessageProcess {
    let mut p = MessageProcess::new(name, Probe::default()).expect("build");
    p.start().expect("start");
    p
}

/// The error message's parameter as a string.
pub fn error_field(msg: &Message, field: &str) -> String {
    assert!(msg.is_error(), "expected an error message, got {msg}");
    msg.param::<String>(field).unwrap()
}

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// Installs a SIGUSR1 handler *without* SA_RESTART, so a blocking call is
/// interrupted with EINTR; returns a guard that restores the default.
pub fn with_sigusr1_handler<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: the handler only touches an atomic (async-signal-safe); the
    // sigaction struct is zeroed then filled before use.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = count_signal as *const () as libc::sighandler_t;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
    let out = f();
    restore_default(libc::SIGUSR1);
    out
}

/// Runs `wait` (a 300 ms bounded wait on something that never becomes
/// ready) while a helper process sends us SIGUSR1 after 50 ms, and checks
/// the signal arrived, the wait reported nothing ready, and took its whole
/// time but no more than a bound.
pub fn assert_signal_loses_no_time(wait: impl FnOnce(Duration) -> bool) {
    let before = SIGNALS.load(Ordering::SeqCst);
    let me = std::process::id() as i32;
    let (ready, took) = with_sigusr1_handler(|| {
        let helper = signal_later(me, libc::SIGUSR1, Duration::from_millis(50));
        let t = Instant::now();
        let ready = wait(Duration::from_millis(300));
        let took = t.elapsed();
        reap(helper);
        (ready, took)
    });
    assert_eq!(
        SIGNALS.load(Ordering::SeqCst),
        before + 1,
        "the signal arrived"
    );
    assert!(!ready, "nothing was ready");
    assert!(
        took >= Duration::from_millis(300),
        "returned early after {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "lost the remaining time: {took:?}"
    );
}

/// Forks a plain child of the backend that keeps the intercom open (it
/// inherits the socket, as a process a C library starts would) and tells
/// the frontend its pid in a `"holder"` message; the child sleeps 30 s.
/// Only the backend's pidfd then tells the frontend that the backend died.
pub fn fork_holder(ctx: &mut BackendContext) -> HandlerResult {
    // SAFETY: the backend is single-threaded; the child only sleeps and
    // `_exit`s.
    let holder = match unsafe { libc::fork() } {
        0 => {
            std::thread::sleep(Duration::from_secs(30));
            // SAFETY: ends the holder without running anything else.
            unsafe { libc::_exit(0) }
        }
        pid => pid,
    };
    ctx.send(Message::new("holder").with("pid", holder))?;
    ctx.flush()?;
    Ok(())
}

/// Kills `middle`, the frontend of `orphan` (a backend busy in a handler,
/// whose `post_run` writes `post_run` to the pipe `marker` reads), and
/// checks that the orphan ends in order: by itself, within a second, with
/// a normal exit, after `post_run` ran. Needs `set_subreaper(true)`.
pub fn kill_frontend_and_expect_an_orderly_end(
    middle: &mut MessageProcess,
    orphan: i32,
    marker: &mut std::io::PipeReader,
) {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    kill(middle.pid().unwrap(), libc::SIGKILL).expect("SIGKILL the frontend");
    let t = Instant::now();
    let mut reaped = None;
    let ended = wait_until(Duration::from_secs(2), || {
        reaped = try_reap(orphan);
        reaped.is_some()
    });
    assert!(ended, "the orphan still runs after {:?}", t.elapsed());
    let status = reaped.expect("reaped");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        libc::WIFEXITED(status),
        "killed, not ended in order: {status:#x}"
    );
    // Every write end is closed by now: the read ends at once.
    let mut text = String::new();
    marker.read_to_string(&mut text).unwrap();
    assert_eq!(text, "post_run", "post_run did not run");
    let err = middle.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.exit_status().unwrap().signal(), Some(libc::SIGKILL));
}
