//! Function backends (`build_fn` + `Intercom`), frame reads for foreign
//! `select` loops, fork hooks and inherited signal handlers: what the Python
//! binding builds on, checked on real forks.

mod common;

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::WAIT;
use forkbridge::binding::{BuilderExt, IntercomExt};
use forkbridge::{ErrorKind, ForkHooks, Intercom, Message, MessageProcess, Value};

test_main!(
    function_backend_echoes_and_sees_the_stop_request,
    function_backend_exit_status_is_its_return_value,
    intercom_try_recv_and_timeout,
    frame_reads_keep_the_fd_readable_per_message,
    fork_hooks_run_on_each_side,
    signal_handlers_are_kept_when_asked,
    tuples_and_pickled_values_cross_unchanged,
    a_typed_call_to_a_function_backend_is_unknown_command,
    a_function_backend_sees_its_frontend_go,
    format_logger_writes_one_valkka_line_per_record,
    sigint_is_ignored_when_asked_even_with_kept_handlers,
    set_max_frame_size_bounds_what_the_intercom_takes_and_sends,
);

fn echo(mut intercom: Intercom) -> i32 {
    loop {
        match intercom.recv() {
            Ok(Some(msg)) => {
                let mut reply = Message::new("echoed").with("of", msg.command());
                for (k, v) in msg.params() {
                    reply = reply.with(k, v.clone());
                }
                if intercom.send(reply).is_err() {
                    return 2;
                }
            }
            Ok(None) => {
                let _ = intercom.send(Message::new("bye"));
                return 0;
            }
            Err(_) => return 3,
        }
    }
}

fn function_backend_echoes_and_sees_the_stop_request() {
    let mut p = MessageProcess::builder("echo").build_fn(echo).unwrap();
    p.start().unwrap();
    for i in 0..100i64 {
        p.send(Message::new("n").with("i", i)).unwrap();
    }
    for i in 0..100i64 {
        let got = p.recv_timeout(WAIT).unwrap();
        assert_eq!(got.command(), "echoed");
        assert_eq!(got.param::<i64>("i").unwrap(), i);
    }
    p.request_stop().unwrap();
    assert_eq!(p.recv_timeout(WAIT).unwrap().command(), "bye");
    assert_eq!(p.join_timeout(WAIT).unwrap().code(), Some(0));
}

fn function_backend_exit_status_is_its_return_value() {
    let mut p = MessageProcess::builder("seven")
        .build_fn(|_intercom| 7)
        .unwrap();
    p.start().unwrap();
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Disconnected);
    assert_eq!(p.join_timeout(WAIT).unwrap().code(), Some(7));
}

fn intercom_try_recv_and_timeout() {
    let mut p = MessageProcess::builder("timeouts")
        .build_fn(|mut intercom| {
            let empty = matches!(
                intercom.try_recv().map_err(|e| e.kind().clone()),
                Err(ErrorKind::Empty)
            );
            let timed_out = matches!(
                intercom
                    .recv_timeout(Duration::from_millis(20))
                    .map_err(|e| e.kind().clone()),
                Err(ErrorKind::Timeout)
            );
            // Duration::MAX means no limit, never an overflow panic.
            let max = Duration::MAX;
            let unbounded = intercom.send_timeout(Message::new("max"), max).is_ok()
                && intercom.flush_timeout(max).is_ok();
            let ok = empty && timed_out && unbounded;
            let _ = intercom.send(Message::new("checked").with("ok", ok));
            // The stop request ends the unbounded wait.
            match intercom.recv_timeout(max) {
                Ok(None) => 0,
                _ => 1,
            }
        })
        .unwrap();
    p.start().unwrap();
    assert_eq!(p.recv_timeout(WAIT).unwrap().command(), "max");
    let got = p.recv_timeout(WAIT).unwrap();
    assert!(got.param::<bool>("ok").unwrap());
    assert_eq!(p.stop().unwrap().code(), Some(0));
}

fn readable(fd: std::os::fd::BorrowedFd<'_>, ms: i32) -> bool {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, length 1.
    unsafe { libc::poll(&mut pfd, 1, ms) == 1 }
}

fn frame_reads_keep_the_fd_readable_per_message() {
    let mut p = MessageProcess::builder("burst")
        .frame_reads(true)
        .build_fn(|mut intercom| {
            // Three messages in one write.
            for i in 0..3i64 {
                intercom.feed(Message::new("m").with("i", i)).unwrap();
            }
            intercom.flush().unwrap();
            while let Ok(Some(_)) = intercom.recv() {}
            0
        })
        .unwrap();
    p.start().unwrap();
    for i in 0..3i64 {
        // A `select` loop reading one message per wake-up sees all three.
        assert!(readable(p.as_fd(), 5000), "message {i} not signalled");
        let got = p.try_recv().unwrap();
        assert_eq!(got.param::<i64>("i").unwrap(), i);
    }
    assert!(!readable(p.as_fd(), 50));
    assert!(p.stop().unwrap().success());
}

#[derive(Debug, Default)]
struct Counting {
    before: AtomicUsize,
    parent: AtomicUsize,
}

static CHILD_HOOK_RAN: AtomicUsize = AtomicUsize::new(0);

impl ForkHooks for Counting {
    fn before_fork(&self) {
        self.before.fetch_add(1, Ordering::SeqCst);
    }
    fn after_fork_child(&self) {
        CHILD_HOOK_RAN.fetch_add(1, Ordering::SeqCst);
    }
    fn after_fork_parent(&self) {
        self.parent.fetch_add(1, Ordering::SeqCst);
    }
}

fn fork_hooks_run_on_each_side() {
    let hooks = Arc::new(Counting::default());
    let mut p = MessageProcess::builder("hooked")
        .fork_hooks(hooks.clone())
        .build_fn(|mut intercom| {
            let ran = CHILD_HOOK_RAN.load(Ordering::SeqCst) as i64;
            let _ = intercom.send(Message::new("child").with("ran", ran));
            0
        })
        .unwrap();
    p.start().unwrap();
    assert_eq!(hooks.before.load(Ordering::SeqCst), 1);
    assert_eq!(hooks.parent.load(Ordering::SeqCst), 1);
    assert_eq!(
        CHILD_HOOK_RAN.load(Ordering::SeqCst),
        0,
        "child hook ran in the parent"
    );
    let got = p.recv_timeout(WAIT).unwrap();
    assert_eq!(got.param::<i64>("ran").unwrap(), 1);
    assert!(p.join_timeout(WAIT).unwrap().success());
}

static USR1: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    USR1.fetch_add(1, Ordering::SeqCst);
}

fn raise_usr1_in_child(keep: bool) -> std::process::ExitStatus {
    let mut p = MessageProcess::builder("signals")
        .keep_signal_handlers(keep)
        .build_fn(|_intercom| {
            // SAFETY: raising a signal at ourselves has no preconditions.
            unsafe { libc::raise(libc::SIGUSR1) };
            if USR1.load(Ordering::SeqCst) == 1 {
                0
            } else {
                4
            }
        })
        .unwrap();
    p.start().unwrap();
    p.join_timeout(WAIT).unwrap()
}

fn signal_handlers_are_kept_when_asked() {
    use std::os::unix::process::ExitStatusExt;
    // SAFETY: the handler only touches an atomic (async-signal-safe).
    unsafe { libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t) };
    assert_eq!(raise_usr1_in_child(true).code(), Some(0));
    // By default the child starts with default dispositions: SIGUSR1 kills.
    assert_eq!(raise_usr1_in_child(false).signal(), Some(libc::SIGUSR1));
    forkbridge_testkit::restore_default(libc::SIGUSR1);
}

fn tuples_and_pickled_values_cross_unchanged() {
    let mut p = MessageProcess::builder("values").build_fn(echo).unwrap();
    p.start().unwrap();
    let tuple = Value::Tuple(vec![Value::from(1), Value::from("x")]);
    let pickled = Value::Pickled {
        type_name: "builtins.set".into(),
        data: vec![0x80, 5, 0x95, 0, 1, 2],
        buffers: vec![vec![7; 3].into()],
    };
    p.send(
        Message::new("v")
            .with("t", tuple.clone())
            .with("p", pickled.clone()),
    )
    .unwrap();
    let got = p.recv_timeout(WAIT).unwrap();
    assert_eq!(got.get("t"), Some(&tuple));
    assert_eq!(got.get("p"), Some(&pickled));
    // A Rust reader sees a tuple as a list; a pickled value is typed.
    assert_eq!(got.param::<Vec<Value>>("t").unwrap().len(), 2);
    assert_eq!(tuple.to_string(), "(1, 'x')");
    assert_eq!(pickled.to_string(), "<pickled builtins.set, 9 bytes>");
    assert!(p.stop().unwrap().success());
}

fn a_typed_call_to_a_function_backend_is_unknown_command() {
    let mut p = MessageProcess::builder("fn-typed").build_fn(echo).unwrap();
    p.start().unwrap();
    let t = std::time::Instant::now();
    let err = p.call::<_, u64>("incr", &(), WAIT).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Remote { kind, .. } if kind == "unknown_command"),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    // The loop goes on.
    p.send(Message::new("hello")).unwrap();
    assert_eq!(p.recv_timeout(WAIT).unwrap().command(), "echoed");
    assert!(p.stop().unwrap().success());
}

fn a_function_backend_sees_its_frontend_go() {
    let mut p = MessageProcess::builder("fn-orphan")
        .build_fn(|mut intercom| match intercom.recv_timeout(WAIT) {
            Err(e) if e.is_disconnected() => 0,
            _ => 1,
        })
        .unwrap();
    p.start().unwrap();
    // The frontend's end goes away (as when its process dies): the
    // backend's receive ends with Disconnected, not its timeout.
    use std::os::fd::AsRawFd;
    // SAFETY: shuts down our own socket end; the fd stays open and owned.
    let shut = unsafe { libc::shutdown(p.as_fd().as_raw_fd(), libc::SHUT_RDWR) };
    assert_eq!(shut, 0);
    let t = std::time::Instant::now();
    assert_eq!(p.join_timeout(WAIT).unwrap().code(), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
}

fn format_logger_writes_one_valkka_line_per_record() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let (mut read, write) = std::io::pipe().unwrap();
    let mut p = MessageProcess::builder("logger")
        .build_fn(move |_| {
            // SAFETY: points this child's stderr at the pipe; plain fds.
            unsafe { libc::dup2(write.as_raw_fd(), 2) };
            drop(write);
            let first = forkbridge::format_logger(log::LevelFilter::Info);
            // A second call keeps the installed logger and says so.
            let second = forkbridge::format_logger(log::LevelFilter::Info);
            log::info!(target: "Worker.logger", "hello");
            log::debug!(target: "Worker.logger", "below the level");
            if first && !second { 0 } else { 1 }
        })
        .unwrap();
    p.start().unwrap();
    assert_eq!(p.join_timeout(WAIT).unwrap().code(), Some(0));
    let mut text = String::new();
    read.read_to_string(&mut text).unwrap();
    assert_eq!(text, "Worker.logger - INFO - hello\n");
}

fn sigint_is_ignored_when_asked_even_with_kept_handlers() {
    // SAFETY: the handler only touches an atomic (async-signal-safe).
    unsafe { libc::signal(libc::SIGINT, on_usr1 as *const () as libc::sighandler_t) };
    let mut p = MessageProcess::builder("sigint")
        .keep_signal_handlers(true)
        .ignore_sigint(true)
        .build_fn(|_| {
            let before = USR1.load(Ordering::SeqCst);
            // SAFETY: raising a signal at ourselves has no preconditions.
            unsafe { libc::raise(libc::SIGINT) };
            // The kept handler would have counted it.
            if USR1.load(Ordering::SeqCst) == before {
                0
            } else {
                4
            }
        })
        .unwrap();
    p.start().unwrap();
    let status = p.join_timeout(WAIT).unwrap();
    forkbridge_testkit::restore_default(libc::SIGINT);
    assert_eq!(status.code(), Some(0), "{status}");
}

fn set_max_frame_size_bounds_what_the_intercom_takes_and_sends() {
    fn big() -> Message {
        Message::new("big").with("data", vec![7u8; 100 << 10])
    }
    let mut p = MessageProcess::builder("fn-limit")
        .max_frame_size(1 << 20)
        .build_fn(|mut intercom| {
            intercom.set_max_frame_size(64 << 10);
            // Over the new limit: skipped and reported, the next one decodes.
            let skipped = matches!(
                intercom.recv_timeout(WAIT).map_err(|e| e.kind().clone()),
                Err(ErrorKind::FrameTooLarge { max: 65536, .. })
            );
            let next = matches!(
                intercom.recv_timeout(WAIT),
                Ok(Some(m)) if m.command() == "small"
            );
            let refused = matches!(
                intercom.send(big()).map_err(|e| e.kind().clone()),
                Err(ErrorKind::FrameTooLarge { max: 65536, .. })
            );
            // Raised again: a frame that may already wait in the buffer
            // is read under the new limit, and sends take it too.
            intercom.set_max_frame_size(1 << 20);
            let raised = match intercom.recv_timeout(WAIT) {
                Ok(Some(m)) => m["data"].as_bytes().map(<[u8]>::len) == Some(100 << 10),
                _ => false,
            };
            let sent = intercom.send(big()).is_ok();
            let report = Message::new("checked")
                .with("skipped", skipped)
                .with("next", next)
                .with("refused", refused)
                .with("raised", raised)
                .with("sent", sent);
            let _ = intercom.send(report);
            match intercom.recv_timeout(WAIT) {
                Ok(None) => 0,
                _ => 1,
            }
        })
        .unwrap();
    p.start().unwrap();
    p.send(big()).unwrap();
    p.send(Message::new("small")).unwrap();
    p.send(big()).unwrap();
    assert_eq!(p.recv_timeout(WAIT).unwrap().command(), "big");
    let got = p.recv_timeout(WAIT).unwrap();
    for check in ["skipped", "next", "refused", "raised", "sent"] {
        assert!(got.param::<bool>(check).unwrap(), "{check}: {got:?}");
    }
    assert_eq!(p.stop().unwrap().code(), Some(0));
}
