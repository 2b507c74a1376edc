//! Messages both ways through real forked backends.

mod common;

use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

use common::{Probe, WAIT, probe, recv};
use forkbridge::{ErrorKind, Message, MessageProcess, ProcessState, StartMethod, Value, message};
use forkbridge_testkit::{open_fds, shared_mappings};

test_main!(
    ping_pong_echoes_parameters,
    every_value_type_round_trips,
    burst_of_fed_messages_arrives_complete_and_in_order,
    backend_burst_arrives_in_order,
    messages_sent_before_start_are_delivered,
    post_run_message_arrives_before_disconnect,
    backend_can_stop_itself,
    name_and_log_target,
    extra_fd_is_polled_with_the_intercom,
    handle_fd_works_in_a_foreign_poll,
    large_messages_both_ways,
    try_recv_and_recv_timeout,
    timed_waits_in_the_read_keep_their_time,
    misuse_before_and_after_start,
    both_sides_writing_at_once_do_not_deadlock,
    spinning_processes_answer_like_sleeping_ones,
    a_registered_ping_and_a_later_registration_win,
    build_at_the_fd_limit_is_an_io_error_and_leaks_nothing,
    status_reports_state_traffic_and_usage,
);

fn ping_pong_echoes_parameters() {
    let mut p = probe("pinger");
    p.send(message!("ping", lis = vec![1i64, 2, 3])).unwrap();
    let pong = recv(&mut p);
    assert_eq!(pong.command(), "pong");
    assert_eq!(pong.param::<Vec<i64>>("lis").unwrap(), [1, 2, 3]);
    assert!(p.stop().unwrap().success());
}

fn every_value_type_round_trips() {
    let mut p = probe("values");
    let nested = Value::Map(vec![
        (
            Value::from("k"),
            Value::from(vec![Value::Null, Value::from(true)]),
        ),
        (Value::from(7), Value::from(-1.5)),
    ]);
    let sent = Message::new("echo")
        .with("null", Value::Null)
        .with("bool", false)
        .with("neg", i64::MIN)
        .with("big", u64::MAX)
        .with("float", std::f64::consts::PI)
        .with("str", "gotcha! ünïcode")
        .with("bytes", vec![0u8, 1, 2, 255])
        .with("list", vec!["a", "b"])
        .with("map", nested);
    p.send(sent.clone()).unwrap();
    let got = recv(&mut p);
    assert_eq!(got.command(), "echo");
    let sent_params: Vec<_> = sent.params().collect();
    let got_params: Vec<_> = got.params().collect();
    assert_eq!(sent_params, got_params);
    p.stop().unwrap();
}

fn burst_of_fed_messages_arrives_complete_and_in_order() {
    let mut p = probe("burst-in");
    for i in 0..20_000u64 {
        p.feed(Message::new("tick").with("i", i)).unwrap();
    }
    p.send(Message::new("report")).unwrap();
    let count = recv(&mut p);
    assert_eq!(count.param::<u64>("n").unwrap(), 20_000);
    p.stop().unwrap();
}

fn backend_burst_arrives_in_order() {
    let mut p = probe("burst-out");
    p.send(message!("burst", n = 50_000)).unwrap();
    for i in 0..50_000u64 {
        let m = recv(&mut p);
        assert_eq!(m.param::<u64>("i").unwrap(), i);
    }
    assert!(p.try_recv().unwrap_err().is_empty());
    p.stop().unwrap();
}

fn messages_sent_before_start_are_delivered() {
    let mut p = MessageProcess::new("early", Probe::default()).unwrap();
    p.send(Message::new("tick")).unwrap();
    p.feed(Message::new("tick")).unwrap();
    p.send(Message::new("report")).unwrap();
    p.start().unwrap();
    assert_eq!(recv(&mut p).param::<u64>("n").unwrap(), 2);
    p.stop().unwrap();
}

fn post_run_message_arrives_before_disconnect() {
    let backend = Probe {
        say_bye: true,
        ..Probe::default()
    };
    let mut p = MessageProcess::new("bye", backend).unwrap();
    p.start().unwrap();
    p.send(Message::new("tick")).unwrap();
    assert!(p.stop().unwrap().success());
    let bye = recv(&mut p);
    assert_eq!(bye.command(), "bye");
    assert_eq!(bye.param::<u64>("count").unwrap(), 1);
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    assert!(err.exit_status().unwrap().success());
}

fn backend_can_stop_itself() {
    let backend = Probe {
        say_bye: true,
        ..Probe::default()
    };
    let mut p = MessageProcess::new("self-stop", backend).unwrap();
    p.start().unwrap();
    p.send(Message::new("stop_me")).unwrap();
    assert_eq!(recv(&mut p).command(), "bye");
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected());
    assert_eq!(err.exit_status().unwrap().code(), Some(0));
    assert!(p.join_timeout(WAIT).unwrap().success());
}

fn name_and_log_target() {
    let mut p = probe("worker-1");
    assert_eq!(p.name(), "worker-1");
    assert_eq!(p.log_target(), "Probe.worker-1");
    p.send(Message::new("whoami")).unwrap();
    let me = recv(&mut p);
    assert_eq!(me.param::<String>("name").unwrap(), "worker-1");
    assert_eq!(me.param::<String>("target").unwrap(), "Probe.worker-1");
    assert_eq!(me.param::<i32>("pid").unwrap(), p.pid().unwrap());
    assert_ne!(p.pid().unwrap(), std::process::id() as i32);
    p.stop().unwrap();
}

fn extra_fd_is_polled_with_the_intercom() {
    let (reader, mut writer) = std::io::pipe().unwrap();
    let backend = Probe {
        pipe: Some(reader),
        ..Probe::default()
    };
    let mut p = MessageProcess::new("piped", backend).unwrap();
    p.start().unwrap();
    writer.write_all(b"frame-1").unwrap();
    let m = recv(&mut p);
    assert_eq!(m.command(), "pipe");
    assert_eq!(m["data"].as_bytes(), Some(&b"frame-1"[..]));
    // The intercom still works while the pipe is watched.
    p.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut p).command(), "pong");
    // (The child holds a copy of `writer` too, inherited by the fork, so
    // closing ours would not hang the pipe up: keep writing instead.)
    writer.write_all(b"frame-2").unwrap();
    assert_eq!(recv(&mut p)["data"].as_bytes(), Some(&b"frame-2"[..]));
    p.stop().unwrap();
}

fn handle_fd_works_in_a_foreign_poll() {
    let mut a = probe("poll-a");
    let mut b = probe("poll-b");
    b.send(Message::new("ping")).unwrap();
    let mut fds = [
        libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&a.as_fd()),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&b.as_fd()),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a valid array of two pollfds for the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 10_000) };
    assert_eq!(n, 1);
    assert_eq!(fds[0].revents, 0);
    assert_ne!(fds[1].revents & libc::POLLIN, 0);
    assert_eq!(b.try_recv().unwrap().command(), "pong");
    assert!(b.try_recv().unwrap_err().is_empty());
    assert!(a.try_recv().unwrap_err().is_empty());
    a.stop().unwrap();
    b.stop().unwrap();
}

fn large_messages_both_ways() {
    let mut p = probe("large");
    let payload = vec![0x5Au8; 8 << 20];
    p.send(Message::new("echo").with("data", payload.clone()))
        .unwrap();
    let got = recv(&mut p);
    assert_eq!(got["data"].as_bytes().unwrap(), &payload[..]);
    p.send(message!("big", n = 3usize << 20)).unwrap();
    let big = recv(&mut p);
    assert_eq!(big["data"].as_bytes().unwrap().len(), 3 << 20);
    p.stop().unwrap();
}

fn try_recv_and_recv_timeout() {
    let mut p = probe("timeouts");
    assert_eq!(p.try_recv().unwrap_err().kind(), &ErrorKind::Empty);
    let err = p.recv_timeout(Duration::from_millis(50)).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Timeout);
    assert_eq!(err.process_name(), Some("timeouts"));
    p.send(message!("sleep", ms = 100)).unwrap();
    assert!(
        p.recv_timeout(Duration::from_millis(10))
            .unwrap_err()
            .is_timeout()
    );
    assert_eq!(recv(&mut p).command(), "slept");
    p.stop().unwrap();
}

fn timed_waits_in_the_read_keep_their_time() {
    // A timed receive blocks in the socket read (bounded by the socket's
    // receive timeout, in slices), not in poll. It delivers, times out
    // neither early nor late, and a signal neither shortens nor stretches
    // it.
    let mut p = probe("read_waits");
    p.send(message!("sleep", ms = 100)).unwrap();
    assert!(
        p.recv_timeout(Duration::from_millis(10))
            .unwrap_err()
            .is_timeout()
    );
    assert_eq!(
        p.recv_timeout(Duration::from_secs(5)).unwrap().command(),
        "slept"
    );
    common::assert_signal_loses_no_time(|timeout| p.recv_timeout(timeout).is_ok());
    for i in 0..100 {
        p.send(message!("echo", i = i)).unwrap();
        let m = p.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(m.param::<i64>("i").unwrap(), i);
    }
    assert!(p.stop().unwrap().success());
}

fn misuse_before_and_after_start() {
    let mut p = MessageProcess::new("misuse", Probe::default()).unwrap();
    assert_eq!(p.recv().unwrap_err().kind(), &ErrorKind::NotStarted);
    assert_eq!(p.join().unwrap_err().kind(), &ErrorKind::NotStarted);
    assert_eq!(p.stop().unwrap_err().kind(), &ErrorKind::NotStarted);
    p.go().unwrap();
    assert_eq!(p.start().unwrap_err().kind(), &ErrorKind::AlreadyStarted);
    assert!(p.is_alive());
    p.stop().unwrap();
    assert!(!p.is_alive());
    assert_eq!(p.start().unwrap_err().kind(), &ErrorKind::AlreadyStarted);
}

fn both_sides_writing_at_once_do_not_deadlock() {
    // The backend answers each 64 KiB echo with 64 KiB while the frontend
    // keeps sending without reading: both socket buffers fill up. Each
    // side reads while it waits to write, so both finish.
    let mut p = probe("duplex");
    let chunk = vec![1u8; 64 << 10];
    for _ in 0..64 {
        p.send(Message::new("echo").with("data", chunk.clone()))
            .unwrap();
    }
    for _ in 0..64 {
        assert_eq!(recv(&mut p)["data"].as_bytes().unwrap().len(), 64 << 10);
    }
    p.stop().unwrap();
}

fn spinning_processes_answer_like_sleeping_ones() {
    let mut p = MessageProcess::builder("spinner")
        .spin_before_sleep(Duration::from_micros(200))
        .build(Probe::default())
        .unwrap();
    p.start().unwrap();
    for i in 0..200u64 {
        p.send(message!("echo", i = i)).unwrap();
        assert_eq!(recv(&mut p).param::<u64>("i").unwrap(), i);
    }
    // try_recv does not spin: it answers at once.
    let t = std::time::Instant::now();
    assert!(p.try_recv().unwrap_err().is_empty());
    assert!(t.elapsed() < Duration::from_millis(100));
    // Sleeping after the spin still wakes for a late message.
    p.send(message!("sleep", ms = 30)).unwrap();
    assert_eq!(recv(&mut p).command(), "slept");
    assert!(p.stop().unwrap().success());
}

/// Registers its own `"ping"`, and `"twice"` two times.
struct Overrides;

impl forkbridge::Backend for Overrides {
    fn register(h: &mut forkbridge::Handlers<Self>) {
        h.on("ping", |_, ctx, _| Ok(ctx.send(Message::new("mine"))?))
            .on("twice", |_, ctx, _| Ok(ctx.send(Message::new("first"))?))
            .on("twice", |_, ctx, _| Ok(ctx.send(Message::new("second"))?));
    }
}

fn a_registered_ping_and_a_later_registration_win() {
    let mut p = MessageProcess::new("overrides", Overrides).unwrap();
    p.start().unwrap();
    p.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut p).command(), "mine", "the built-in pong answered");
    p.send(Message::new("twice")).unwrap();
    assert_eq!(
        recv(&mut p).command(),
        "second",
        "the earlier registration ran"
    );
    assert!(p.stop().unwrap().success());
}

/// Whether fd number `fd` is open here (`F_GETFD` allocates nothing).
fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; a closed number
    // fails with EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

fn build_at_the_fd_limit_is_an_io_error_and_leaks_nothing() {
    // The soft limit bounds fd *numbers*: set it just above the lowest free
    // number, so exactly one more fd can be opened and a socketpair (two)
    // cannot. (The count of open fds + 1 could leave more room when the
    // numbers have holes.)
    let free: Vec<i32> = (0..4096).filter(|&fd| !fd_is_open(fd)).take(2).collect();
    let some_fd = (0..4096).find(|&fd| fd_is_open(fd)).unwrap();
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-pointer.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0);
    let saved = limit;
    let (fds, maps) = (open_fds(), shared_mappings());
    let tight = libc::rlimit {
        rlim_cur: free[1] as libc::rlim_t,
        rlim_max: saved.rlim_max,
    };
    // SAFETY: lowers only the soft limit of this process, restored below.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &tight) }, 0);
    // Nothing below may open an fd until the limit is restored (no
    // formatting of errors into files, no /proc reads).
    // SAFETY: duplicates an open fd and closes the copy again.
    let (one, two) = unsafe {
        let one = libc::dup(some_fd);
        let two = libc::dup(some_fd);
        libc::close(one);
        (one, two)
    };
    let plain = MessageProcess::new("at-the-limit", Probe::default()).map(drop);
    // The lane's rings are mapped before the socketpair fails.
    let lane = MessageProcess::builder("at-the-limit")
        .large_messages(64 << 10, 1 << 20)
        .build(Probe::default())
        .map(drop);
    // SAFETY: restores the limit saved above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &saved) }, 0);
    assert!(one >= 0 && two == -1, "the limit leaves room for one fd");
    for (what, result) in [("plain", plain), ("lane", lane)] {
        let err = result.expect_err(what);
        assert_eq!(err.kind(), &ErrorKind::Io, "{what}: {err}");
        let errno = std::error::Error::source(&err)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .and_then(std::io::Error::raw_os_error);
        assert_eq!(errno, Some(libc::EMFILE), "{what}: {err:?}");
    }
    assert_eq!(open_fds(), fds, "an fd leaked");
    assert_eq!(shared_mappings(), maps, "a mapping leaked");
    // With room again, the same build works.
    let mut p = probe("after-the-limit");
    p.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut p).command(), "pong");
    assert!(p.stop().unwrap().success());
}

fn status_reports_state_traffic_and_usage() {
    const N: u64 = 5;
    let mut p = MessageProcess::new("status", Probe::default()).unwrap();
    let idle = p.status();
    assert_eq!(idle.state, ProcessState::Idle);
    assert_eq!((idle.name.as_str(), idle.pid), ("status", None));
    assert_eq!(idle.start_method, StartMethod::Fork);
    assert_eq!((idle.rss_bytes, idle.cpu_time), (None, None));
    p.start().unwrap();
    for n in 0..N {
        p.send(message!("ping", n = n)).unwrap();
    }
    for _ in 0..N {
        assert_eq!(recv(&mut p).command(), "pong");
    }
    let s = p.status();
    assert_eq!(s.state, ProcessState::Running);
    assert_eq!(s.pid, p.pid());
    assert!(s.messages_sent >= N, "{s:?}");
    assert_eq!(s.messages_received, N, "{s:?}");
    assert!(s.bytes_sent > 0 && s.bytes_received > 0, "{s:?}");
    assert!(s.rss_bytes.is_some_and(|rss| rss > 0), "{s:?}");
    assert!(s.cpu_time.is_some(), "{s:?}");
    assert_eq!((s.restarts, s.calls_in_flight), (0, 0));
    assert_eq!((s.queued_out_bytes, s.queued_in), (0, 0));
    assert_eq!(s.last_exit, None);

    assert!(p.stop().unwrap().success());
    let s = p.status();
    assert_eq!(s.state, ProcessState::Exited);
    assert!(s.last_exit.is_some_and(|e| e.success()), "{s:?}");
    assert_eq!((s.rss_bytes, s.cpu_time), (None, None));
    assert!(s.pid.is_some());
    assert_eq!(s.state.to_string(), "exited");
}
