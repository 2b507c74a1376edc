//! MainContext on real processes and real signals: order, close on every
//! way out, a hurried close, the thread form, and `wait_any`.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{Probe, WAIT};
use forkbridge::{
    ErrorKind, MainContext, Message, MessageProcess, RestartPolicy, Shutdown, Supervisor,
    SupervisorEvent, run_as_thread, run_main, wait_any,
};
use forkbridge_testkit::{alive, children, reap, signal_later, threads, wait_until};

test_main!(
    duties_run_in_order_and_close_once,
    close_runs_after_an_error_and_after_a_panic,
    sigint_and_sigterm_end_the_loop_and_everything_stops,
    a_second_signal_hurries_a_slow_close,
    run_as_thread_and_stop,
    a_main_thread_that_does_not_return_in_time_is_a_timeout,
    wait_any_reports_messages_deaths_and_extra_fds,
    an_owned_supervisor_restarts_and_is_stopped_on_the_way_out,
);

/// A manager whose behaviour each test picks.
#[derive(Default)]
struct Manager {
    log: Rc<RefCell<Vec<String>>>,
    workers: Vec<MessageProcess>,
    fail_in_run: bool,
    panic_in_run: bool,
    stubborn: bool,
}

impl Manager {
    fn note(&self, what: impl Into<String>) {
        self.log.borrow_mut().push(what.into());
    }
}

impl MainContext for Manager {
    fn start_processes(&mut self) -> forkbridge::Result<()> {
        let threads = threads();
        self.note(format!("start_processes threads={threads}"));
        for i in 0..2 {
            let mut p = MessageProcess::builder(format!("worker-{i}"))
                .ignore_sigint(true)
                .stop_timeout(Duration::from_secs(5))
                .kill_timeout(Duration::from_secs(5))
                .build(Probe::default())?;
            p.start()?;
            self.workers.push(p);
        }
        Ok(())
    }

    fn start_threads(&mut self) -> forkbridge::Result<()> {
        self.note("start_threads");
        Ok(())
    }

    fn run(&mut self, shutdown: &Shutdown) -> forkbridge::Result<()> {
        self.note("run");
        if self.stubborn {
            for w in &mut self.workers {
                w.send(Message::new("ignore_term_and_block"))?;
                w.recv_timeout(WAIT)?;
            }
        }
        if self.fail_in_run {
            return Err(Message::new("x").param::<i32>("missing").unwrap_err());
        }
        if self.panic_in_run {
            panic!("main loop bug");
        }
        // Until a signal: the shutdown fd is in the same wait as the workers.
        while !shutdown.is_requested() {
            let workers: Vec<&MessageProcess> = self.workers.iter().collect();
            wait_any(&workers, &[shutdown.fd()], Some(WAIT))?;
        }
        self.note(format!("run saw {:?}", shutdown.signal()));
        Ok(())
    }

    fn close(&mut self) {
        self.note("close");
        for w in &mut self.workers {
            let _ = w.stop();
        }
    }
}

fn duties_run_in_order_and_close_once() {
    let mut m = Manager::default();
    let pid = std::process::id() as i32;
    let helper = signal_later(pid, libc::SIGTERM, Duration::from_millis(50));
    let outcome = run_main(&mut m).unwrap();
    reap(helper);
    assert_eq!(
        *m.log.borrow(),
        [
            "start_processes threads=1",
            "start_threads",
            "run",
            "run saw Some(15)",
            "close"
        ]
    );
    assert_eq!(outcome.signal, Some(libc::SIGTERM));
    assert_eq!(outcome.exit_code(), 143);
    assert!(m.workers.iter().all(|w| w.pid().is_some_and(|p| !alive(p))));
}

fn close_runs_after_an_error_and_after_a_panic() {
    let mut m = Manager {
        fail_in_run: true,
        ..Manager::default()
    };
    let err = run_main(&mut m).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::MissingParam { .. }));
    assert_eq!(m.log.borrow().last().map(String::as_str), Some("close"));
    assert!(m.workers.iter().all(|w| !alive(w.pid().unwrap())));

    let mut m = Manager {
        panic_in_run: true,
        ..Manager::default()
    };
    let log = m.log.clone();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_main(&mut m)));
    assert!(caught.is_err(), "the panic is re-raised");
    assert_eq!(log.borrow().last().map(String::as_str), Some("close"));
    assert!(m.workers.iter().all(|w| !alive(w.pid().unwrap())));
}

fn sigint_and_sigterm_end_the_loop_and_everything_stops() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let mut m = Manager::default();
        let helper = signal_later(std::process::id() as i32, sig, Duration::from_millis(50));
        let t = Instant::now();
        let outcome = run_main(&mut m).unwrap();
        reap(helper);
        assert_eq!(outcome.signal, Some(sig));
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t.elapsed()
        );
        // Workers ignore SIGINT, so the parent stopped them cleanly.
        for w in &mut m.workers {
            assert!(w.stop().unwrap().success());
        }
        assert!(children().is_empty());
    }
    // The handlers are restored afterwards: SIGINT is default again.
    let mut action: libc::sigaction = unsafe_zeroed();
    // SAFETY: reads the current action into a valid struct.
    unsafe { libc::sigaction(libc::SIGINT, std::ptr::null(), &mut action) };
    assert_eq!(action.sa_sigaction, libc::SIG_DFL);
}

fn unsafe_zeroed() -> libc::sigaction {
    // SAFETY: all-zero is a valid `sigaction` (no handler, empty mask).
    unsafe { std::mem::zeroed() }
}

fn a_second_signal_hurries_a_slow_close() {
    // Workers that ignore SIGTERM and block: a plain close would take
    // stop_timeout + kill_timeout (10 s) per worker.
    let mut m = Manager {
        stubborn: true,
        ..Manager::default()
    };
    let pid = std::process::id() as i32;
    let first = signal_later(pid, libc::SIGINT, Duration::from_millis(100));
    let second = signal_later(pid, libc::SIGINT, Duration::from_millis(600));
    let t = Instant::now();
    let outcome = run_main(&mut m).unwrap();
    reap(first);
    reap(second);
    assert_eq!(outcome.signal, Some(libc::SIGINT));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "close was not hurried: {:?}",
        t.elapsed()
    );
    for w in &mut m.workers {
        let status = w.stop().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
    }
    // Outside the run, stops take their grace periods again: a plain
    // backend answers its stop request and exits 0, not by SIGKILL.
    let mut p = common::probe("after-the-run");
    p.send(Message::new("sleep").with("ms", 100)).unwrap();
    assert!(p.stop().unwrap().success());
}

/// A context that can move to a thread: no `Rc`.
#[derive(Default)]
struct Pinger {
    worker: Option<MessageProcess>,
    pongs: u32,
    closed: bool,
}

impl MainContext for Pinger {
    fn start_processes(&mut self) -> forkbridge::Result<()> {
        let mut p = MessageProcess::new("pinged", Probe::default())?;
        p.start()?;
        self.worker = Some(p);
        Ok(())
    }

    fn run(&mut self, shutdown: &Shutdown) -> forkbridge::Result<()> {
        let worker = self.worker.as_mut().expect("started");
        while !shutdown.is_requested() {
            worker.send(Message::new("ping"))?;
            worker.recv_timeout(WAIT)?;
            self.pongs += 1;
            shutdown.wait_timeout(Duration::from_millis(5));
        }
        Ok(())
    }

    fn close(&mut self) {
        if let Some(w) = &mut self.worker {
            let _ = w.stop();
        }
        self.closed = true;
    }
}

fn run_as_thread_and_stop() {
    let thread = run_as_thread(Pinger::default()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (pinger, result) = thread.stop(Duration::MAX).unwrap();
    result.unwrap();
    assert!(pinger.pongs > 0);
    assert!(pinger.closed);
    let pid = pinger.worker.as_ref().unwrap().pid().unwrap();
    assert!(!alive(pid));
    // The thread is gone: the next case forks from one thread again.
    assert!(wait_until(WAIT, || { threads() == 1 }));
}

fn wait_any_reports_messages_deaths_and_extra_fds() {
    let mut a = common::probe("a");
    let mut b = common::probe("b");
    let shutdown_like = forkbridge::Event::with_kind(forkbridge::EventKind::Pollable).unwrap();
    let ready = wait_any(
        &[&a, &b],
        &[shutdown_like.fd().unwrap()],
        Some(Duration::from_millis(20)),
    )
    .unwrap();
    assert!(ready.is_empty());
    b.send(Message::new("ping")).unwrap();
    let ready = wait_any(&[&a, &b], &[], Some(WAIT)).unwrap();
    assert_eq!(ready.processes, [1]);
    // Two messages read at once: the second stays buffered in the handle
    // and is still reported, though the socket is drained.
    b.send(Message::new("ping")).unwrap();
    b.send(Message::new("ping")).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    b.recv().unwrap();
    b.recv().unwrap();
    let ready = wait_any(&[&a, &b], &[], Some(WAIT)).unwrap();
    assert_eq!(ready.processes, [1], "a buffered message counts");
    b.recv().unwrap();
    // A death counts too.
    a.send(Message::new("abort")).unwrap();
    let ready = wait_any(&[&a, &b], &[], Some(WAIT)).unwrap();
    assert_eq!(ready.processes, [0]);
    assert!(a.recv().unwrap_err().is_disconnected());
    shutdown_like.set();
    let ready = wait_any(&[&b], &[shutdown_like.fd().unwrap()], Some(WAIT)).unwrap();
    assert_eq!(ready.extra, [0]);
    b.stop().unwrap();
}

/// A loop that ignores the shutdown request for a while.
#[derive(Debug)]
struct Stubborn {
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl MainContext for Stubborn {
    fn start_processes(&mut self) -> forkbridge::Result<()> {
        Ok(())
    }

    fn run(&mut self, _: &Shutdown) -> forkbridge::Result<()> {
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    }

    fn close(&mut self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn a_main_thread_that_does_not_return_in_time_is_a_timeout() {
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let thread = run_as_thread(Stubborn {
        closed: closed.clone(),
    })
    .unwrap();
    let t = Instant::now();
    let err = thread.stop(Duration::from_millis(50)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        !closed.load(std::sync::atomic::Ordering::SeqCst),
        "close ran"
    );
    // The loop keeps running and returns by itself; the next case must
    // fork from a single thread again.
    assert!(wait_until(WAIT, || { threads() == 1 }));
    assert!(
        !closed.load(std::sync::atomic::Ordering::SeqCst),
        "close ran later"
    );
}

/// A program whose processes live under a supervisor it owns.
#[derive(Default)]
struct Supervised {
    supervisor: Supervisor,
    pids: Vec<i32>,
    restarted: bool,
}

impl MainContext for Supervised {
    fn start_processes(&mut self) -> forkbridge::Result<()> {
        for name in ["a", "b"] {
            self.supervisor
                .add(name, RestartPolicy::on_failure(), |name| {
                    MessageProcess::builder(name)
                        .ignore_sigint(true)
                        .build(Probe::default())
                })?;
        }
        Ok(())
    }

    fn run(&mut self, shutdown: &Shutdown) -> forkbridge::Result<()> {
        let pid = self
            .supervisor
            .process("a")
            .and_then(|p| p.pid())
            .expect("a runs");
        self.pids.push(pid);
        forkbridge_testkit::kill(pid, libc::SIGKILL).expect("kill");
        let until = Instant::now() + WAIT;
        while Instant::now() < until && !shutdown.is_requested() {
            match self.supervisor.wait_event_with(&[shutdown.fd()], WAIT)? {
                Some(SupervisorEvent::Restarted { name, pid, .. }) if name == "a" => {
                    self.restarted = true;
                    self.pids.push(pid);
                    self.pids
                        .extend(self.supervisor.process("b").and_then(|p| p.pid()));
                    return Ok(());
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn close(&mut self) {}

    fn supervisor(&mut self) -> Option<&mut Supervisor> {
        Some(&mut self.supervisor)
    }
}

fn an_owned_supervisor_restarts_and_is_stopped_on_the_way_out() {
    let mut program = Supervised::default();
    let outcome = run_main(&mut program).expect("runs");
    assert_eq!(outcome.exit_code(), 0);
    assert!(program.restarted, "the killed child came back");
    assert_eq!(program.pids.len(), 3);
    assert!(
        children().is_empty(),
        "run_main stopped the supervisor's children"
    );
    for status in program.supervisor.status() {
        assert!(status.last_exit.is_some_and(|s| s.success()), "{status:?}");
    }
}
