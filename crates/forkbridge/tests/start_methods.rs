//! The start methods: every promise of `Fork` under `ForkServer` and
//! `Spawn` too, and what only they can do (a threaded parent).
//!
//! This binary calls `forkbridge::init()` first in `main`: spawned workers
//! and the fork server are this binary run again.

mod common;

use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use forkbridge::{
    Backend, BackendContext, ErrorKind, Event, HandlerResult, Handlers, Message, MessageProcess,
    SharedBuffer, StartMethod,
};
use forkbridge_testkit::{
    FORK_SERVER_COMM, alive, children, comm, kill, mappings, open_fds, set_subreaper, try_reap,
    wait_until,
};
use serde::{Deserialize, Serialize};

use common::WAIT;

const METHODS: [StartMethod; 3] = [
    StartMethod::Fork,
    StartMethod::ForkServer,
    StartMethod::Spawn,
];

/// Held most of the time by the threaded parent's tasks.
static CONTENDED: Mutex<u64> = Mutex::new(0);

/// A backend that crosses as data.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Worker {
    greeting: String,
    done: Option<Event>,
    buffer: Option<SharedBuffer>,
    /// Take `CONTENDED` in `pre_run` (the threaded-parent case).
    lock_in_pre_run: bool,
    #[serde(skip)]
    report: Option<Message>,
}

impl Worker {
    fn echo(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let mut reply = Message::new("echo").with("greeting", self.greeting.as_str());
        for (k, v) in msg.params() {
            reply.set(k, v.clone());
        }
        ctx.send(reply)?;
        Ok(())
    }

    fn add(
        &mut self,
        _: &mut BackendContext,
        (a, b): (u32, u32),
    ) -> Result<u32, forkbridge::BoxError> {
        Ok(a.checked_add(b).ok_or("overflow")?)
    }

    fn big(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let n: usize = msg.param("n")?;
        ctx.send(Message::new("big").with("data", vec![0xA5u8; n]))?;
        Ok(())
    }

    fn touch(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        if let Some(buffer) = &self.buffer {
            buffer.write_at(0, b"from the worker")?;
        }
        if let Some(done) = &self.done {
            done.set();
        }
        ctx.send(Message::new("touched"))?;
        Ok(())
    }

    fn report(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        ctx.send(self.report.take().unwrap_or_else(|| Message::new("report")))?;
        Ok(())
    }

    fn ignore_term_and_block(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        common::block_ignoring_sigterm(ctx)
    }

    fn start_worker(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let method = method_named(&msg.param::<String>("method")?);
        let mut p = MessageProcess::builder("grandchild")
            .start_method(method)
            .build_portable(Worker::default())?;
        p.start()?;
        ctx.send(Message::new("started").with("pid", p.pid().unwrap_or(0)))?;
        // Kept running until this process dies.
        std::mem::forget(p);
        Ok(())
    }
}

impl Backend for Worker {
    fn register(h: &mut Handlers<Self>) {
        h.on("echo", Self::echo)
            .on("fail", |_, _, _| Err("boom".into()))
            .on("panic", |_, _, _| panic!("kaboom"))
            .on("big", Self::big)
            .on("touch", Self::touch)
            .on("report", Self::report)
            .on("ignore_term_and_block", Self::ignore_term_and_block)
            .on("start_worker", Self::start_worker)
            .typed("add", Self::add);
    }

    fn pre_run(&mut self, _: &mut BackendContext) -> HandlerResult {
        let mut report = Message::new("report")
            .with("threads", forkbridge_testkit::threads())
            .with("fds", own_fds().join(" "))
            .with("blocked", blocked_signals());
        if self.lock_in_pre_run {
            // In a fork of a threaded parent this may never return.
            let guard = CONTENDED.lock().unwrap_or_else(|e| e.into_inner());
            report.set("locked", *guard);
        }
        self.report = Some(report);
        Ok(())
    }
}

fn method_named(name: &str) -> StartMethod {
    match name {
        "ForkServer" => StartMethod::ForkServer,
        "Spawn" => StartMethod::Spawn,
        _ => StartMethod::Fork,
    }
}

/// What this process's fds above stderr are (`/proc/self/fd` links).
fn own_fds() -> Vec<String> {
    let mut links = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let fd: i32 = entry.file_name().to_string_lossy().parse().unwrap_or(0);
        if let (true, Ok(link)) = (fd > 2, std::fs::read_link(entry.path())) {
            links.push(link.to_string_lossy().into_owned());
        }
    }
    links
}

fn blocked_signals() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(u64::MAX)
}

fn started(method: StartMethod, worker: Worker) -> MessageProcess {
    let mut p = MessageProcess::builder(format!("{method:?}").to_lowercase())
        .start_method(method)
        .large_messages(64 * 1024, 1 << 20)
        .stop_timeout(Duration::from_millis(300))
        .kill_timeout(Duration::from_millis(300))
        .build_portable(worker)
        .expect("build");
    p.start().unwrap_or_else(|e| panic!("{method:?}: {e}"));
    p
}

fn messages_calls_and_the_lane_under_every_method() {
    for method in METHODS {
        let mut p = started(
            method,
            Worker {
                greeting: "hi".into(),
                ..Worker::default()
            },
        );
        // The handle's fd is readable when the reply is there.
        p.send(Message::new("echo").with("n", 7)).unwrap();
        let mut pfd = [libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&p.as_fd()),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd, bounded wait.
        assert_eq!(unsafe { libc::poll(pfd.as_mut_ptr(), 1, 10_000) }, 1);
        let echo = p.recv_timeout(WAIT).unwrap();
        assert_eq!(
            echo.param::<String>("greeting").unwrap(),
            "hi",
            "{method:?}"
        );
        assert_eq!(echo.param::<i64>("n").unwrap(), 7);
        assert_eq!(p.call::<_, u32>("add", &(2u32, 3u32), WAIT).unwrap(), 5);
        let err = p
            .call::<_, u32>("add", &(u32::MAX, 1u32), WAIT)
            .unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Remote { .. }), "{err}");
        // Large messages both ways, through the lane.
        let blob = vec![7u8; 512 * 1024];
        p.send(Message::new("echo").with("blob", blob.as_slice()))
            .unwrap();
        let back = p.recv_timeout(WAIT).unwrap();
        assert_eq!(back.param::<Vec<u8>>("blob").unwrap(), blob);
        p.send(Message::new("big").with("n", 300_000)).unwrap();
        let big = p.recv_timeout(WAIT).unwrap();
        assert_eq!(big.param::<Vec<u8>>("data").unwrap().len(), 300_000);
        assert!(
            p.large_messages_sent() > 0,
            "{method:?}: the lane was not used"
        );
        assert!(p.stop().unwrap().success(), "{method:?}");
    }
}

fn handler_errors_and_panics_are_reported_under_every_method() {
    for method in METHODS {
        let mut p = started(method, Worker::default());
        p.send(Message::new("fail")).unwrap();
        let err = p.recv_timeout(WAIT).unwrap();
        assert_eq!(err.command(), "error", "{method:?}");
        p.send(Message::new("panic")).unwrap();
        let err = p.recv_timeout(WAIT).unwrap();
        assert_eq!(err.command(), "error", "{method:?}");
        p.send(Message::new("echo")).unwrap();
        assert_eq!(p.recv_timeout(WAIT).unwrap().command(), "echo");
        assert!(p.stop().unwrap().success());
    }
}

fn a_killed_worker_is_seen_at_once_with_its_signal_under_every_method() {
    for method in METHODS {
        let mut p = started(method, Worker::default());
        let pid = p.pid().unwrap();
        kill(pid, libc::SIGKILL).unwrap();
        let t = Instant::now();
        let err = p.recv_timeout(WAIT).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Disconnected, "{method:?}");
        assert_eq!(
            err.exit_status().and_then(|s| s.signal()),
            Some(libc::SIGKILL),
            "{method:?}: {err:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert!(!alive(pid) || method == StartMethod::Spawn && try_reap(pid).is_none());
    }
}

fn the_async_frontend_works_under_every_method() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for method in METHODS {
        rt.block_on(async {
            let mut a = started(method, Worker::default()).into_async().unwrap();
            a.send(Message::new("echo").with("n", 1)).await.unwrap();
            assert_eq!(a.recv().await.unwrap().command(), "echo", "{method:?}");
            let sum: u32 = a.call("add", &(20u32, 22u32), WAIT).await.unwrap();
            assert_eq!(sum, 42);
            assert!(a.stop().await.unwrap().success(), "{method:?}");
            let p = started(method, Worker::default());
            let pid = p.pid().unwrap();
            let mut a = p.into_async().unwrap();
            kill(pid, libc::SIGKILL).unwrap();
            let err = a.recv_timeout(WAIT).await.unwrap_err();
            assert_eq!(err.kind(), &ErrorKind::Disconnected, "{method:?}");
            let status = a.join().await.unwrap();
            assert_eq!(status.signal(), Some(libc::SIGKILL), "{method:?}");
        });
    }
}

fn a_backend_ignoring_sigterm_is_stopped_within_the_bound_under_every_method() {
    for method in METHODS {
        let mut p = started(method, Worker::default());
        p.send(Message::new("ignore_term_and_block")).unwrap();
        assert_eq!(p.recv_timeout(WAIT).unwrap().command(), "blocking");
        let t = Instant::now();
        let status = p.stop().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{method:?}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }
}

fn two_hundred_starts_and_stops_leak_nothing_under_every_method() {
    for method in METHODS {
        // One start first: the fork server and lazy statics exist after it.
        started(method, Worker::default()).stop().unwrap();
        let (fds, maps) = (open_fds(), mappings());
        for i in 0..200 {
            let mut p = started(method, Worker::default());
            if i % 50 == 0 {
                p.send(Message::new("echo")).unwrap();
                p.recv_timeout(WAIT).unwrap();
            }
            assert!(p.stop().unwrap().success());
        }
        assert_eq!(open_fds(), fds, "{method:?}: fds leaked");
        assert_eq!(mappings(), maps, "{method:?}: mappings leaked");
    }
}

fn shared_objects_cross_with_the_backend_under_every_method() {
    for method in METHODS {
        let done = Event::new().unwrap();
        let buffer = SharedBuffer::new(4096).unwrap();
        let worker = Worker {
            done: Some(done.clone()),
            buffer: Some(buffer.clone()),
            ..Worker::default()
        };
        let mut p = started(method, worker);
        p.send(Message::new("touch")).unwrap();
        assert!(done.wait_timeout(WAIT), "{method:?}: the event was not set");
        let mut text = [0u8; 15];
        buffer.read_at(0, &mut text).unwrap();
        assert_eq!(&text, b"from the worker", "{method:?}");
        p.stop().unwrap();
    }
}

fn a_backend_that_cannot_cross_is_refused_with_the_fix_in_the_error() {
    #[derive(Debug)]
    struct Local;
    impl Backend for Local {
        fn register(_: &mut Handlers<Self>) {}
    }
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        let mut p = MessageProcess::builder("local")
            .start_method(method)
            .build(Local)
            .unwrap();
        let err = p.start().unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::NotPortable);
        assert!(err.to_string().contains("build_portable"), "{err}");
        // Still startable once the method fits.
        assert!(p.pid().is_none());
    }
}

/// A backend whose bytes do not decode in the worker (its `Deserialize`
/// refuses them), as a mismatch between two builds would.
#[derive(Debug, Serialize)]
struct Refused;

impl<'de> Deserialize<'de> for Refused {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Refused, D::Error> {
        Err(serde::de::Error::custom("refused on purpose"))
    }
}

impl Backend for Refused {
    fn register(_: &mut Handlers<Self>) {}
}

fn a_backend_that_does_not_decode_is_reported_under_every_method() {
    // Spawn: `start` itself fails, with the worker's reason.
    let mut p = MessageProcess::builder("refused")
        .start_method(StartMethod::Spawn)
        .build_portable(Refused)
        .unwrap();
    let err = p.start().unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Boot { message } if message.contains("does not decode")),
        "{err}"
    );
    assert!(children().iter().all(|&pid| comm(pid) == FORK_SERVER_COMM));
    // ForkServer: `start` does not wait for the worker; its first message
    // is the error, then it is gone with status 2.
    let mut p = MessageProcess::builder("refused")
        .start_method(StartMethod::ForkServer)
        .build_portable(Refused)
        .unwrap();
    p.start().unwrap();
    let msg = p.recv_timeout(WAIT).unwrap();
    assert_eq!(msg.command(), "error");
    assert_eq!(msg.param::<String>("kind").unwrap(), "pre_run");
    assert!(
        msg.param::<String>("error")
            .unwrap()
            .contains("does not decode"),
        "{msg:?}"
    );
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Disconnected);
    assert_eq!(err.exit_status().and_then(|s| s.code()), Some(2));
}

/// The case the start methods exist for: a parent running a tokio
/// multi-thread runtime whose tasks hold a mutex most of the time.
fn a_threaded_parent_starts_workers_with_forkserver_and_spawn() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_all()
        .build()
        .unwrap();
    // An fd the parent leaves inheritable, as a careless library might.
    let mut ends = [0; 2];
    // SAFETY: `ends` is a writable array of two ints; no flags: inheritable.
    assert_eq!(unsafe { libc::pipe(ends.as_mut_ptr()) }, 0);
    let marker = std::fs::read_link(format!("/proc/self/fd/{}", ends[0]))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for _ in 0..3 {
        let stop = stop.clone();
        rt.spawn_blocking(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut guard = CONTENDED.lock().unwrap();
                // Churn the allocator while holding the lock.
                let v: Vec<u64> = (0..256).collect();
                *guard = guard.wrapping_add(v.iter().sum::<u64>());
                std::thread::sleep(Duration::from_micros(200));
            }
        });
    }
    let reports = rt.block_on(async {
        tokio::task::spawn_blocking(|| {
            let mut reports = Vec::new();
            // Fork is refused, and names the way out.
            let mut p = MessageProcess::builder("refused")
                .build_portable(Worker::default())
                .unwrap();
            let err = p.start().unwrap_err();
            assert!(matches!(err.kind(), ErrorKind::ForkWithThreads { threads } if *threads > 1));
            assert!(err.to_string().contains("ForkServer"), "{err}");
            for method in [StartMethod::ForkServer, StartMethod::Spawn] {
                let worker = Worker {
                    lock_in_pre_run: true,
                    ..Worker::default()
                };
                let mut p = started(method, worker);
                p.send(Message::new("report")).unwrap();
                reports.push((method, p.recv_timeout(WAIT).unwrap()));
                assert!(p.stop().unwrap().success());
            }
            reports
        })
        .await
        .unwrap()
    });
    for (method, report) in reports {
        assert_eq!(report.param::<i64>("threads").unwrap(), 1, "{method:?}");
        assert_eq!(report.param::<i64>("blocked").unwrap(), 0, "{method:?}");
        // The intercom, the lane's memfds and eventfds, the directory
        // being read: nothing of the parent's (its inheritable pipe, its
        // runtime's epoll, the other workers' sockets).
        let fds = report.param::<String>("fds").unwrap();
        let sockets = fds.split(' ').filter(|l| l.starts_with("socket:")).count();
        assert_eq!(sockets, 1, "{method:?}: {fds}");
        assert!(
            !fds.contains(&marker),
            "{method:?}: the parent's pipe leaked: {fds}"
        );
        assert!(!fds.contains("eventpoll"), "{method:?}: {fds}");
        assert!(report.param::<i64>("locked").is_ok(), "{method:?}");
    }
    // Fork with `allow_threads` from the same parent: the child's copy of
    // the mutex may be locked by a thread that does not exist there. Hold
    // it for sure during the fork to show the hang, with a bound.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let _guard = CONTENDED.lock().unwrap();
        held_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(1));
    });
    held_rx.recv().unwrap();
    let mut p = MessageProcess::builder("hangs")
        .allow_threads(true)
        .stop_timeout(Duration::from_millis(100))
        .kill_timeout(Duration::from_millis(100))
        .build_portable(Worker {
            lock_in_pre_run: true,
            ..Worker::default()
        })
        .unwrap();
    p.start().unwrap();
    p.send(Message::new("report")).unwrap();
    let err = p.recv_timeout(Duration::from_secs(2)).unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::Timeout,
        "pre_run did not hang: {err}"
    );
    // Still stopped within the bound: SIGTERM ends it.
    assert_eq!(p.stop().unwrap().signal(), Some(libc::SIGTERM));
    holder.join().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rt.shutdown_timeout(Duration::from_secs(5));
    // SAFETY: the two fds `pipe` made, owned by nothing else.
    unsafe {
        libc::close(ends[0]);
        libc::close(ends[1]);
    }
}

fn fifty_starts_at_once_from_several_threads() {
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        let threads: Vec<_> = (0..5)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut ps: Vec<MessageProcess> = (0..10)
                        .map(|_| started(method, Worker::default()))
                        .collect();
                    for p in &mut ps {
                        p.send(Message::new("echo")).unwrap();
                    }
                    for p in &mut ps {
                        assert_eq!(p.recv_timeout(WAIT).unwrap().command(), "echo");
                        assert!(p.stop().unwrap().success());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a starting thread failed");
        }
    }
}

fn fork_server_pid() -> i32 {
    children()
        .into_iter()
        .find(|&pid| comm(pid) == FORK_SERVER_COMM)
        .expect("a fork server runs")
}

fn killing_the_fork_server_disconnects_its_workers_and_a_new_one_starts() {
    let mut a = started(StartMethod::ForkServer, Worker::default());
    let mut b = started(StartMethod::ForkServer, Worker::default());
    let workers = [a.pid().unwrap(), b.pid().unwrap()];
    let server = fork_server_pid();
    kill(server, libc::SIGKILL).unwrap();
    for p in [&mut a, &mut b] {
        let err = p.recv_timeout(WAIT).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Disconnected, "{err}");
        let _ = p.stop();
    }
    assert!(
        wait_until(WAIT, || workers.iter().all(|&pid| !alive(pid))),
        "workers outlived their server"
    );
    let mut c = started(StartMethod::ForkServer, Worker::default());
    assert_ne!(fork_server_pid(), server);
    c.send(Message::new("echo")).unwrap();
    assert_eq!(c.recv_timeout(WAIT).unwrap().command(), "echo");
    c.stop().unwrap();
}

fn stopping_the_fork_server_ends_its_workers_and_a_new_one_starts_later() {
    let mut a = started(StartMethod::ForkServer, Worker::default());
    let (worker, server) = (a.pid().unwrap(), fork_server_pid());
    forkbridge::stop_fork_server().unwrap();
    assert!(!children().contains(&server), "the server was not reaped");
    let err = a.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Disconnected, "{err}");
    let _ = a.stop();
    assert!(
        wait_until(WAIT, || !alive(worker)),
        "the worker outlived its server"
    );
    // Nothing runs: stopping again is a no-op; starting makes a new one.
    forkbridge::stop_fork_server().unwrap();
    let mut b = started(StartMethod::ForkServer, Worker::default());
    assert_ne!(fork_server_pid(), server);
    b.send(Message::new("echo")).unwrap();
    assert_eq!(b.recv_timeout(WAIT).unwrap().command(), "echo");
    assert!(b.stop().unwrap().success());
}

/// Set while a case wants this program to start a thread before `init`,
/// as a careless `main` would: the fork server then runs with two.
const THREAD_BEFORE_INIT: &str = "FORKBRIDGE_TEST_THREAD_BEFORE_INIT";

fn a_fork_server_with_a_thread_refuses_to_fork_and_says_why() {
    forkbridge::stop_fork_server().unwrap();
    // SAFETY: this test process is single-threaded here.
    unsafe { std::env::set_var(THREAD_BEFORE_INIT, "1") };
    let mut p = MessageProcess::builder("refused")
        .start_method(StartMethod::ForkServer)
        .build_portable(Worker::default())
        .unwrap();
    let err = p.start().unwrap_err();
    // SAFETY: as above.
    unsafe { std::env::remove_var(THREAD_BEFORE_INIT) };
    assert!(
        err.to_string()
            .contains("threads (code before forkbridge::init()"),
        "{err}"
    );
    assert!(p.pid().is_none(), "a worker was started");
    forkbridge::stop_fork_server().unwrap();
    // A server without the thread forks again.
    let mut q = started(StartMethod::ForkServer, Worker::default());
    assert!(q.stop().unwrap().success());
}

fn a_killed_frontend_takes_its_workers_along_under_every_method() {
    forkbridge::start_fork_server().unwrap();
    let own_server = fork_server_pid();
    // Reaps what was re-parented to us (the middle's workers, and its fork
    // server), leaving our own fork server alone.
    let reap_orphans = || {
        for pid in children() {
            if pid != own_server {
                try_reap(pid);
            }
        }
    };
    set_subreaper(true);
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        // The frontend is itself a backend, forked by this process.
        let mut middle = started(StartMethod::Fork, Worker::default());
        middle
            .send(Message::new("start_worker").with("method", format!("{method:?}")))
            .unwrap();
        let reply = middle.recv_timeout(WAIT).unwrap();
        let worker = reply.param::<i64>("pid").unwrap() as i32;
        assert!(alive(worker));
        kill(middle.pid().unwrap(), libc::SIGKILL).unwrap();
        let t = Instant::now();
        let gone = wait_until(Duration::from_secs(2), || {
            reap_orphans();
            !alive(worker)
        });
        assert!(gone, "{method:?}: the worker outlived its frontend");
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t.elapsed()
        );
        let _ = middle.stop();
        let clean = wait_until(WAIT, || {
            reap_orphans();
            children() == [own_server]
        });
        assert!(clean, "{method:?}: left {:?}", children());
    }
    set_subreaper(false);
}

fn main() {
    if std::env::var_os(THREAD_BEFORE_INIT).is_some() {
        std::thread::spawn(|| std::thread::sleep(Duration::from_secs(3600)));
    }
    forkbridge::init();
    common::run(&[
        (
            "messages_calls_and_the_lane_under_every_method",
            messages_calls_and_the_lane_under_every_method,
        ),
        (
            "handler_errors_and_panics_are_reported_under_every_method",
            handler_errors_and_panics_are_reported_under_every_method,
        ),
        (
            "a_killed_worker_is_seen_at_once_with_its_signal_under_every_method",
            a_killed_worker_is_seen_at_once_with_its_signal_under_every_method,
        ),
        (
            "the_async_frontend_works_under_every_method",
            the_async_frontend_works_under_every_method,
        ),
        (
            "a_backend_ignoring_sigterm_is_stopped_within_the_bound_under_every_method",
            a_backend_ignoring_sigterm_is_stopped_within_the_bound_under_every_method,
        ),
        (
            "two_hundred_starts_and_stops_leak_nothing_under_every_method",
            two_hundred_starts_and_stops_leak_nothing_under_every_method,
        ),
        (
            "shared_objects_cross_with_the_backend_under_every_method",
            shared_objects_cross_with_the_backend_under_every_method,
        ),
        (
            "a_backend_that_cannot_cross_is_refused_with_the_fix_in_the_error",
            a_backend_that_cannot_cross_is_refused_with_the_fix_in_the_error,
        ),
        (
            "a_backend_that_does_not_decode_is_reported_under_every_method",
            a_backend_that_does_not_decode_is_reported_under_every_method,
        ),
        (
            "a_threaded_parent_starts_workers_with_forkserver_and_spawn",
            a_threaded_parent_starts_workers_with_forkserver_and_spawn,
        ),
        (
            "fifty_starts_at_once_from_several_threads",
            fifty_starts_at_once_from_several_threads,
        ),
        (
            "killing_the_fork_server_disconnects_its_workers_and_a_new_one_starts",
            killing_the_fork_server_disconnects_its_workers_and_a_new_one_starts,
        ),
        (
            "stopping_the_fork_server_ends_its_workers_and_a_new_one_starts_later",
            stopping_the_fork_server_ends_its_workers_and_a_new_one_starts_later,
        ),
        (
            "a_fork_server_with_a_thread_refuses_to_fork_and_says_why",
            a_fork_server_with_a_thread_refuses_to_fork_and_says_why,
        ),
        (
            "a_killed_frontend_takes_its_workers_along_under_every_method",
            a_killed_frontend_takes_its_workers_along_under_every_method,
        ),
    ]);
}
