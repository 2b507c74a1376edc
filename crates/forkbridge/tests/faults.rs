//! Faults on real processes: each is reported, typed and bounded.

mod common;

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::{Probe, WAIT, error_field, probe, recv};
use forkbridge::{ErrorKind, Message, MessageProcess, message};
use forkbridge_testkit::{alive, reap, set_subreaper, signal_later, try_reap, wait_until};

test_main!(
    handler_error_is_reported_and_loop_continues,
    handler_panic_is_reported_and_loop_continues,
    unknown_command_is_reported_and_loop_continues,
    pre_run_error_is_reported_and_process_exits,
    backend_exit_is_disconnected_with_its_code,
    backend_abort_is_disconnected_with_sigabrt,
    sigkill_during_blocked_recv_is_disconnected_at_once,
    messages_sent_before_death_are_delivered_first,
    send_to_dead_backend_is_disconnected,
    malformed_frame_is_reported_and_skipped,
    oversized_frame_is_skipped_without_allocation,
    oversized_message_is_refused_at_send,
    backend_ignoring_sigterm_is_stopped_within_bound,
    blocked_handler_is_stopped_within_bound,
    stop_is_bounded_when_the_socket_is_full,
    frontend_sigkill_takes_backends_along,
    frontend_sigkill_takes_backends_forked_from_a_thread_along,
    fork_with_threads_is_refused_unless_allowed,
    panic_outside_handlers_ends_child_with_101,
    panics_in_pre_run_and_post_run_end_the_child_with_1,
);

fn handler_error_is_reported_and_loop_continues() {
    let mut p = probe("err");
    p.send(Message::new("fail")).unwrap();
    let e = recv(&mut p);
    assert_eq!(error_field(&e, "kind"), "handler_error");
    assert_eq!(error_field(&e, "command"), "fail");
    assert_eq!(error_field(&e, "error"), "boom");
    assert_eq!(error_field(&e, "process"), "err");
    // A parameter of the wrong type is a handler error too, not a crash.
    p.send(message!("sleep", ms = "soon")).unwrap();
    let e = recv(&mut p);
    assert_eq!(
        error_field(&e, "error"),
        "parameter 'ms' is string, not u64"
    );
    p.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut p).command(), "pong");
    assert!(p.stop().unwrap().success());
}

fn handler_panic_is_reported_and_loop_continues() {
    let mut p = probe("panicky");
    p.send(Message::new("panic")).unwrap();
    let e = recv(&mut p);
    assert_eq!(error_field(&e, "kind"), "panic");
    assert_eq!(error_field(&e, "command"), "panic");
    assert_eq!(error_field(&e, "error"), "kaboom");
    p.send(Message::new("tick")).unwrap();
    p.send(Message::new("report")).unwrap();
    assert_eq!(recv(&mut p).param::<u64>("n").unwrap(), 1);
    assert!(p.stop().unwrap().success());
}

fn unknown_command_is_reported_and_loop_continues() {
    let mut p = probe("unknown");
    p.send(Message::new("no_such_thing")).unwrap();
    let e = recv(&mut p);
    assert_eq!(error_field(&e, "kind"), "unknown_command");
    assert_eq!(error_field(&e, "command"), "no_such_thing");
    assert_eq!(error_field(&e, "error"), "unknown command 'no_such_thing'");
    p.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut p).command(), "pong");
    p.stop().unwrap();
}

fn pre_run_error_is_reported_and_process_exits() {
    let backend = Probe {
        fail_pre_run: true,
        say_bye: true,
        ..Probe::default()
    };
    let mut p = MessageProcess::new("no-model", backend).unwrap();
    p.start().unwrap();
    let e = recv(&mut p);
    assert_eq!(error_field(&e, "kind"), "pre_run");
    assert_eq!(error_field(&e, "error"), "no model file");
    // post_run does not run after a failed pre_run: no "bye".
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    assert_eq!(err.exit_status().unwrap().code(), Some(1));
}

fn backend_exit_is_disconnected_with_its_code() {
    let mut p = probe("exiter");
    p.send(message!("sleep", ms = 50)).unwrap();
    p.send(message!("exit", code = 3)).unwrap();
    assert_eq!(p.recv().unwrap().command(), "slept");
    // `recv` without a timeout: blocked while the child exits.
    let err = p.recv().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Disconnected);
    assert_eq!(err.exit_status().unwrap().code(), Some(3));
    assert!(err.to_string().contains("exit status: 3"), "{err}");
    // join and stop return at once with the same status.
    assert_eq!(p.join_timeout(Duration::ZERO).unwrap().code(), Some(3));
    assert_eq!(p.stop().unwrap().code(), Some(3));
    assert!(p.recv().unwrap_err().is_disconnected());
}

fn backend_abort_is_disconnected_with_sigabrt() {
    let mut p = probe("aborter");
    p.send(Message::new("abort")).unwrap();
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected());
    assert_eq!(err.exit_status().unwrap().signal(), Some(libc::SIGABRT));
}

fn sigkill_during_blocked_recv_is_disconnected_at_once() {
    let mut p = probe("victim");
    let pid = p.pid().unwrap();
    let killer = signal_later(pid, libc::SIGKILL, Duration::from_millis(100));
    let t = Instant::now();
    let err = p.recv().unwrap_err();
    let waited = t.elapsed();
    reap(killer);
    assert!(err.is_disconnected());
    assert_eq!(err.exit_status().unwrap().signal(), Some(libc::SIGKILL));
    // A functional bound (no hang, no polling period), not a speed figure.
    assert!(waited < Duration::from_secs(2), "took {waited:?}");
    assert_eq!(p.stop().unwrap().signal(), Some(libc::SIGKILL));
    assert!(!alive(pid));
}

fn messages_sent_before_death_are_delivered_first() {
    let mut p = probe("last-words");
    p.send(message!("burst_then_exit", n = 5000)).unwrap();
    for i in 0..5000u64 {
        assert_eq!(recv(&mut p).param::<u64>("i").unwrap(), i);
    }
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected());
    assert_eq!(err.exit_status().unwrap().code(), Some(7));
}

fn send_to_dead_backend_is_disconnected() {
    let mut p = probe("gone");
    let pid = p.pid().unwrap();
    // SAFETY: plain integers; `pid` is our unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(wait_until(WAIT, || !alive(pid)));
    let err = p.send(Message::new("ping")).unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    assert_eq!(err.exit_status().unwrap().signal(), Some(libc::SIGKILL));
    assert_eq!(err.process_name(), Some("gone"));
}

fn raw_writer(p: &MessageProcess) -> UnixStream {
    UnixStream::from(p.as_fd().try_clone_to_owned().unwrap())
}

fn write_all_blocking(w: &mut UnixStream, bytes: &[u8]) {
    // The shared description is non-blocking: retry until all is written.
    let mut rest = bytes;
    while !rest.is_empty() {
        match w.write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn malformed_frame_is_reported_and_skipped() {
    let mut p = probe("garbled");
    let mut w = raw_writer(&p);
    // A message frame whose body is not a message, then an unknown kind.
    write_all_blocking(&mut w, &[3, 0, 0, 0, 0, 0xff, 0xff]);
    write_all_blocking(&mut w, &[1, 0, 0, 0, 9]);
    for _ in 0..2 {
        let e = recv(&mut p);
        assert_eq!(error_field(&e, "kind"), "decode");
    }
    p.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut p).command(), "pong");
    assert!(p.stop().unwrap().success());
}

fn oversized_frame_is_skipped_without_allocation() {
    let mut p = MessageProcess::builder("small-frames")
        .max_frame_size(1024)
        // The stop request is swallowed with the 3 GiB being skipped.
        .stop_timeout(Duration::from_millis(100))
        .build(Probe::default())
        .unwrap();
    p.start().unwrap();
    let mut w = raw_writer(&p);
    // Announce 3 GiB: the backend must not try to allocate it. Then a
    // 100 KiB frame, which it skips byte by byte and stays in step.
    write_all_blocking(&mut w, &(3u32 << 30).to_le_bytes()[..]);
    let e = recv(&mut p);
    assert_eq!(error_field(&e, "kind"), "decode");
    assert!(error_field(&e, "error").contains("3221225472 bytes exceeds the maximum of 1024"));
    drop(p);

    let mut p = MessageProcess::builder("small-frames-2")
        .max_frame_size(1024)
        .build(Probe::default())
        .unwrap();
    p.start().unwrap();
    let mut w = raw_writer(&p);
    let mut frame = (100u32 << 10).to_le_bytes().to_vec();
    frame.extend(std::iter::repeat_n(0xEEu8, 100 << 10));
    write_all_blocking(&mut w, &frame);
    assert_eq!(error_field(&recv(&mut p), "kind"), "decode");
    p.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut p).command(), "pong");
    assert!(p.stop().unwrap().success());
}

fn oversized_message_is_refused_at_send() {
    let mut p = MessageProcess::builder("limits")
        .max_frame_size(1024)
        .build(Probe::default())
        .unwrap();
    p.start().unwrap();
    let err = p
        .send(Message::new("echo").with("data", vec![0u8; 2000]))
        .unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::FrameTooLarge { max: 1024, .. }
    ));
    // The backend's own oversized reply is refused in the child and
    // reported as that handler's error.
    p.send(message!("big", n = 2000)).unwrap();
    let e = recv(&mut p);
    assert_eq!(error_field(&e, "command"), "big");
    assert!(error_field(&e, "error").contains("exceeds the maximum of 1024"));
    assert!(p.stop().unwrap().success());
}

fn backend_ignoring_sigterm_is_stopped_within_bound() {
    let mut p = MessageProcess::builder("stubborn")
        .stop_timeout(Duration::from_millis(200))
        .kill_timeout(Duration::from_millis(200))
        .build(Probe::default())
        .unwrap();
    p.start().unwrap();
    let pid = p.pid().unwrap();
    p.send(Message::new("ignore_term_and_block")).unwrap();
    assert_eq!(recv(&mut p).command(), "blocking");
    let t = Instant::now();
    let status = p.stop().unwrap();
    let took = t.elapsed();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    // The bound is stop_timeout + kill_timeout + reaping.
    assert!(took < Duration::from_secs(3), "stop took {took:?}");
    assert!(!alive(pid));
}

fn blocked_handler_is_stopped_within_bound() {
    let mut p = MessageProcess::builder("sleepy")
        .stop_timeout(Duration::from_millis(200))
        .build(Probe::default())
        .unwrap();
    p.start().unwrap();
    p.send(message!("sleep", ms = 60_000)).unwrap();
    let t = Instant::now();
    assert_eq!(p.stop().unwrap().signal(), Some(libc::SIGTERM));
    assert!(t.elapsed() < Duration::from_secs(3));
}

fn stop_is_bounded_when_the_socket_is_full() {
    let mut p = MessageProcess::builder("jammed")
        .stop_timeout(Duration::from_millis(200))
        .build(Probe::default())
        .unwrap();
    p.start().unwrap();
    p.send(message!("sleep", ms = 60_000)).unwrap();
    // Fill the socket while the backend sleeps: send_timeout gives up
    // (the message stays buffered) instead of blocking.
    let chunk = Message::new("echo").with("data", vec![0u8; 64 << 10]);
    let mut timed_out = false;
    for _ in 0..1000 {
        match p.send_timeout(chunk.clone(), Duration::from_millis(20)) {
            Ok(()) => {}
            Err(e) => {
                assert!(e.is_timeout(), "{e}");
                timed_out = true;
                break;
            }
        }
    }
    assert!(timed_out, "the socket never filled up");
    let t = Instant::now();
    assert_eq!(p.stop().unwrap().signal(), Some(libc::SIGTERM));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        t.elapsed()
    );
}

fn frontend_sigkill_takes_backends_along_impl(from_thread: bool) {
    set_subreaper(true);
    let mut middle = probe("middle");
    middle
        .send(message!("spawn_grandchild", from_thread = from_thread))
        .unwrap();
    let m = recv(&mut middle);
    assert_eq!(m.command(), "grandchild", "{m}");
    let grandchild: i32 = m.param("pid").unwrap();
    assert!(alive(grandchild));
    if from_thread {
        // The forking thread has exited; without a parent-death signal
        // armed on it, the grandchild lives on.
        std::thread::sleep(Duration::from_millis(100));
        assert!(alive(grandchild));
    }
    // SAFETY: plain integers; `middle` is our unreaped child.
    unsafe { libc::kill(middle.pid().unwrap(), libc::SIGKILL) };
    let t = Instant::now();
    let gone = wait_until(Duration::from_secs(1), || try_reap(grandchild).is_some());
    assert!(
        gone,
        "grandchild {grandchild} still alive after {:?}",
        t.elapsed()
    );
    let err = middle.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.exit_status().unwrap().signal(), Some(libc::SIGKILL));
}

fn frontend_sigkill_takes_backends_along() {
    frontend_sigkill_takes_backends_along_impl(false);
}

fn frontend_sigkill_takes_backends_forked_from_a_thread_along() {
    frontend_sigkill_takes_backends_along_impl(true);
}

fn fork_with_threads_is_refused_unless_allowed() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || rx.recv());
    let mut p = MessageProcess::new("threaded", Probe::default()).unwrap();
    let err = p.start().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::ForkWithThreads { threads: 2 });
    assert!(err.to_string().contains("has 2 threads"), "{err}");
    assert!(p.pid().is_none());

    let mut p = MessageProcess::builder("threaded-ok")
        .allow_threads(true)
        .build(Probe::default())
        .unwrap();
    p.start().unwrap();
    p.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut p).command(), "pong");
    p.stop().unwrap();
    tx.send(()).unwrap();
    thread.join().unwrap().unwrap();
}

/// A backend whose `register` panics: outside any handler, so the child's
/// entry must catch it and `_exit`, never unwind into the test's frames.
struct BrokenRegistry;

impl forkbridge::Backend for BrokenRegistry {
    fn register(_: &mut forkbridge::Handlers<Self>) {
        panic!("broken dispatch table");
    }
}

fn panic_outside_handlers_ends_child_with_101() {
    let mut p = MessageProcess::new("broken", BrokenRegistry).unwrap();
    p.start().unwrap();
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected());
    assert_eq!(err.exit_status().unwrap().code(), Some(101));
    // Had the child unwound into this function, it would run the rest of
    // the test suite as a second copy; the harness would see its output.
}

/// Panics where they may be planted: `pre_run` (reported, no loop, no
/// `post_run`) or `post_run` (what it sent still arrives).
#[derive(Default)]
struct PanicsAt {
    pre_run: bool,
}

impl forkbridge::Backend for PanicsAt {
    fn register(_: &mut forkbridge::Handlers<Self>) {}

    fn pre_run(&mut self, _: &mut forkbridge::BackendContext) -> forkbridge::HandlerResult {
        assert!(!self.pre_run, "no model file");
        Ok(())
    }

    fn post_run(&mut self, ctx: &mut forkbridge::BackendContext) {
        let _ = ctx.send(Message::new("bye"));
        panic!("post_run broke");
    }
}

fn panics_in_pre_run_and_post_run_end_the_child_with_1() {
    let mut p = MessageProcess::new("pre", PanicsAt { pre_run: true }).unwrap();
    p.start().unwrap();
    let e = recv(&mut p);
    assert_eq!(error_field(&e, "kind"), "pre_run");
    assert!(error_field(&e, "error").contains("no model file"), "{e}");
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.exit_status().unwrap().code(), Some(1), "{err}");

    let mut p = MessageProcess::new("post", PanicsAt::default()).unwrap();
    p.start().unwrap();
    p.request_stop().unwrap();
    assert_eq!(recv(&mut p).command(), "bye");
    assert_eq!(p.join_timeout(WAIT).unwrap().code(), Some(1));
}
