//! The relay seam end to end: a handle made by `attach` talks to a real
//! backend process through a `Relay`, with a transport of plain threads
//! between them (what a network transport does, without the network).

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Probe, WAIT, recv};
use forkbridge::relay::{FrameCheck, FrameReader, Relay, Remote};
use forkbridge::{
    Backend, BackendContext, ErrorKind, EventGroup, EventIndex, HandlerResult, Handlers, Message,
    MessageProcess, ProcessState, message,
};
use forkbridge_testkit::{threads, wait_until};

test_main!(
    messages_errors_and_stop_cross_the_relay,
    a_killed_backend_is_disconnected_with_its_signal,
    an_exiting_backends_messages_come_before_its_status,
    stop_escalates_through_signal_requests,
    a_lost_host_ends_waits_with_host_lost,
    a_transport_gone_without_a_word_is_disconnected,
    frames_that_cannot_cross_are_refused_and_the_stream_goes_on,
    into_relay_refuses_what_it_would_lose,
    an_attached_handle_has_no_local_pid,
    sync_indices_work_across_the_relay,
    a_late_set_across_the_relay_sets_nothing,
    event_groups_are_bound_to_the_right_side,
    delivering_never_waits_for_the_reader,
    an_end_comes_after_the_frames_queued_before_it,
    a_relay_stops_a_backend_that_does_not_read,
);

/// The two ends joined by threads: frames both ways, the exit reported
/// once the backend's stream ends, signal requests delivered.
struct Loopback {
    threads: Vec<JoinHandle<()>>,
    relay: Arc<Mutex<Relay>>,
}

fn clone(stream: &UnixStream) -> UnixStream {
    stream.try_clone().expect("a second handle on the stream")
}

fn join(relay: Relay, remote: Remote) -> Loopback {
    let remote = Arc::new(remote);
    let to_back = relay.writer().clone();
    let from_back = clone(relay.stream());
    let (check_back, check_front) = (relay.frames(), remote.frames());
    let sets = relay.events().unwrap();
    let relay = Arc::new(Mutex::new(relay));
    let done = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    if let Some(mut sets) = sets {
        let (remote, done) = (remote.clone(), done.clone());
        threads.push(std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if let Some(payload) = sets.next_timeout(Duration::from_millis(20)).unwrap() {
                    let _ = remote.deliver_sets(&payload);
                }
            }
        }));
    }
    let front = clone(remote.stream());
    threads.push(std::thread::spawn(move || {
        let mut frames = FrameReader::new(front, check_front);
        loop {
            match frames.next_run() {
                Ok(Some(run)) => {
                    if to_back.deliver(run).is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) if e.kind() == &ErrorKind::Io => return,
                Err(_) => {} // refused: dropped, the next frames go on
            }
        }
    }));
    {
        let (remote, relay, done) = (remote.clone(), relay.clone(), done.clone());
        threads.push(std::thread::spawn(move || {
            let mut frames = FrameReader::new(from_back, check_back);
            let to_front = remote.writer().clone();
            loop {
                match frames.next_run() {
                    Ok(Some(run)) => {
                        let _ = to_front.deliver(run);
                    }
                    Ok(None) => break,
                    Err(e) if e.kind() == &ErrorKind::Io => break,
                    Err(_) => {}
                }
            }
            let status = relay.lock().unwrap().wait_timeout(WAIT);
            if let Ok(status) = status {
                let _ = remote.report_exit(status);
            }
            done.store(true, Ordering::SeqCst);
        }));
    }
    {
        let relay = relay.clone();
        threads.push(std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                match remote.next_signal(Duration::from_millis(20)) {
                    Ok(Some(sig)) => {
                        let _ = relay.lock().unwrap().signal(sig);
                    }
                    Ok(None) => {}
                    Err(_) => return,
                }
            }
        }));
    }
    Loopback { threads, relay }
}

impl Loopback {
    /// Joins the threads (the handle must be gone, or its backend ended).
    fn finish(self) {
        for t in self.threads {
            t.join().expect("a transport thread");
        }
        drop(self.relay);
        // A joined thread's task leaves the kernel a moment later; the
        // next case forks, which needs one thread.
        assert!(wait_until(WAIT, || threads() == 1));
    }
}

fn started_relay(name: &str) -> Relay {
    let mut p = MessageProcess::new(name, Probe::default()).unwrap();
    p.start().unwrap();
    p.into_relay().unwrap()
}

fn attached(name: &str) -> (MessageProcess, Loopback) {
    let relay = started_relay(name);
    let (p, remote) = MessageProcess::builder(name)
        .stop_timeout(Duration::from_millis(300))
        .kill_timeout(Duration::from_millis(300))
        .attach()
        .unwrap();
    (p, join(relay, remote))
}

fn messages_errors_and_stop_cross_the_relay() {
    let (mut p, link) = attached("relayed");
    for i in 0..100 {
        p.feed(message!("echo", n = i)).unwrap();
    }
    p.flush().unwrap();
    for i in 0..100 {
        let m = recv(&mut p);
        assert_eq!((m.command(), m.param::<i64>("n").unwrap()), ("echo", i));
    }
    p.send(Message::new("fail")).unwrap();
    assert_eq!(recv(&mut p).command(), "error");
    let status = p.stop().unwrap();
    assert!(status.success(), "{status}");
    drop(p);
    link.finish();
}

fn a_killed_backend_is_disconnected_with_its_signal() {
    let (mut p, link) = attached("killed");
    p.send(message!("echo", n = 1)).unwrap();
    recv(&mut p);
    let pid = link.relay.lock().unwrap().pid().unwrap();
    // SAFETY: plain integers; the relay holds the unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    assert_eq!(
        err.exit_status().and_then(|s| s.signal()),
        Some(libc::SIGKILL)
    );
    assert!(!err.is_host_lost());
    drop(p);
    link.finish();
}

fn an_exiting_backends_messages_come_before_its_status() {
    let (mut p, link) = attached("exiting");
    p.send(message!("burst_then_exit", n = 500u64)).unwrap();
    for i in 0..500u64 {
        let m = recv(&mut p);
        assert_eq!((m.command(), m.param::<u64>("i").unwrap()), ("item", i));
    }
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    assert_eq!(err.exit_status().and_then(|s| s.code()), Some(7));
    drop(p);
    link.finish();
}

fn stop_escalates_through_signal_requests() {
    let (mut p, link) = attached("stubborn");
    p.send(Message::new("ignore_term_and_block")).unwrap();
    recv(&mut p); // it says it is blocking
    let t = Instant::now();
    let status = p.stop().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert!(t.elapsed() < WAIT, "stop took {:?}", t.elapsed());
    drop(p);
    link.finish();
}

fn a_lost_host_ends_waits_with_host_lost() {
    let relay = started_relay("lost");
    let (mut p, remote) = MessageProcess::builder("lost").attach().unwrap();
    let waiter = std::thread::spawn(move || {
        let err = p.recv_timeout(WAIT).unwrap_err();
        (err, p)
    });
    std::thread::sleep(Duration::from_millis(50));
    remote.report_lost("no word within the 1 s lease").unwrap();
    let (err, mut p) = waiter.join().unwrap();
    assert!(wait_until(WAIT, || threads() == 1));
    assert!(err.is_disconnected() && err.is_host_lost(), "{err}");
    assert!(err.to_string().contains("host lost"), "{err}");
    assert_eq!(err.exit_status(), None);
    // Later calls say the same, at once.
    assert!(p.send(Message::new("echo")).unwrap_err().is_host_lost());
    assert!(p.stop().unwrap_err().is_host_lost());
    drop(relay); // its backend is stopped on drop
}

fn a_transport_gone_without_a_word_is_disconnected() {
    let relay = started_relay("gone");
    let (mut p, remote) = MessageProcess::builder("gone").attach().unwrap();
    drop(remote);
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected() && !err.is_host_lost(), "{err}");
    assert_eq!(err.exit_status(), None);
    drop(relay);
}

fn frames_that_cannot_cross_are_refused_and_the_stream_goes_on() {
    let relay = started_relay("refusing");
    let (mut p, remote) = MessageProcess::builder("refusing")
        .max_frame_size(1024)
        .attach()
        .unwrap();
    let check = remote.frames();
    assert_eq!(check, FrameCheck::new(1024));
    // A frame over the limit (its body never sent), then a good one.
    let mut garbage = 4096u32.to_le_bytes().to_vec();
    garbage.extend_from_slice(&[0; 4096]);
    assert!(matches!(
        check.check(&garbage).unwrap_err().kind(),
        ErrorKind::FrameTooLarge {
            len: 4096,
            max: 1024
        }
    ));
    assert_eq!(
        check.check(&[1, 0, 0]).unwrap_err().kind(),
        &ErrorKind::Decode
    );
    p.send(message!("echo", n = 7)).unwrap();
    let mut reader = FrameReader::new(clone(remote.stream()), check);
    let good = reader.next_run().unwrap().unwrap().to_vec();
    // The stream a reader sees: refused frame, then the good one.
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(&garbage).unwrap();
    a.write_all(&good).unwrap();
    drop(a);
    let mut reader = FrameReader::new(b, check);
    assert!(matches!(
        reader.next_run().unwrap_err().kind(),
        ErrorKind::FrameTooLarge { .. }
    ));
    assert_eq!(reader.next_run().unwrap(), Some(&good[..]));
    assert_eq!(reader.next_run().unwrap(), None);
    drop((remote, p, relay));
}

fn into_relay_refuses_what_it_would_lose() {
    let p = MessageProcess::new("idle", Probe::default()).unwrap();
    assert_eq!(p.into_relay().unwrap_err().kind(), &ErrorKind::NotStarted);
    let mut p = MessageProcess::new("talked", Probe::default()).unwrap();
    p.start().unwrap();
    p.send(message!("echo", n = 1)).unwrap();
    recv(&mut p);
    assert_eq!(
        p.into_relay().unwrap_err().kind(),
        &ErrorKind::InvalidArgument
    );
    let mut p = MessageProcess::builder("lane")
        .large_messages(1024, 4096)
        .build(Probe::default())
        .unwrap();
    p.start().unwrap();
    assert_eq!(
        p.into_relay().unwrap_err().kind(),
        &ErrorKind::InvalidArgument
    );
}

fn an_attached_handle_has_no_local_pid() {
    let (mut p, link) = attached("status");
    assert_eq!((p.pid(), p.pidfd().is_none()), (None, true));
    let s = p.status();
    assert_eq!(
        (s.state, s.pid, s.rss_bytes),
        (ProcessState::Running, None, None)
    );
    assert!(p.is_alive());
    assert!(p.stop().unwrap().success());
    assert_eq!(p.status().state, ProcessState::Exited);
    drop(p);
    link.finish();
}

/// Sets the event whose index a message carries, after `after_ms`.
struct Acker {
    events: EventGroup,
}

impl Acker {
    fn ack(&mut self, _: &mut BackendContext, msg: Message) -> HandlerResult {
        if let Ok(ms) = msg.param::<u64>("after_ms") {
            std::thread::sleep(Duration::from_millis(ms));
        }
        self.events.set(msg.param::<EventIndex>("sync")?)?;
        Ok(())
    }
}

impl Backend for Acker {
    fn register(h: &mut Handlers<Self>) {
        h.on("ack", Self::ack);
    }
}

/// A handle on an `Acker` across the relay, and the frontend's group.
fn acker(n: usize) -> (MessageProcess, Loopback, EventGroup) {
    let relayed = EventGroup::relayed(n).unwrap();
    let mut served = MessageProcess::builder("acker")
        .events(&relayed)
        .build(Acker {
            events: relayed.clone(),
        })
        .unwrap();
    served.start().unwrap();
    let relay = served.into_relay().unwrap();
    let events = EventGroup::new(n).unwrap();
    let (p, remote) = MessageProcess::builder("acker")
        .events(&events)
        .stop_timeout(Duration::from_millis(300))
        .attach()
        .unwrap();
    (p, join(relay, remote), events)
}

fn sync_indices_work_across_the_relay() {
    let (mut p, link, events) = acker(2);
    for _ in 0..50 {
        let sync = events.sync_index().unwrap();
        p.send(Message::new("ack").with("sync", sync.index()))
            .unwrap();
        sync.wait_timeout(WAIT).unwrap();
    }
    assert_eq!(events.free(), 2);
    assert!(p.stop().unwrap().success());
    drop(p);
    link.finish();
}

fn a_late_set_across_the_relay_sets_nothing() {
    let (mut p, link, events) = acker(1);
    let sync = events.sync_index().unwrap();
    let late = sync.index();
    p.send(
        Message::new("ack")
            .with("sync", late)
            .with("after_ms", 200u64),
    )
    .unwrap();
    assert_eq!(
        sync.wait_timeout(Duration::from_millis(20))
            .unwrap_err()
            .kind(),
        &ErrorKind::Timeout
    );
    // The same event, reserved again: the late set must not wake it.
    let again = events.sync_index().unwrap();
    assert_eq!(again.index().slot(), late.slot());
    assert!(!again.event().wait_timeout(Duration::from_millis(600)));
    p.send(Message::new("ack").with("sync", again.index()))
        .unwrap();
    again.wait_timeout(WAIT).unwrap();
    assert!(p.stop().unwrap().success());
    drop(p);
    link.finish();
}

fn event_groups_are_bound_to_the_right_side() {
    let relayed = EventGroup::relayed(2).unwrap();
    assert!(relayed.is_relayed());
    assert_eq!(
        relayed.reserve().unwrap_err().kind(),
        &ErrorKind::InvalidArgument
    );
    let refused = MessageProcess::builder("front").events(&relayed).attach();
    assert_eq!(refused.unwrap_err().kind(), &ErrorKind::InvalidArgument);
    let plain = EventGroup::new(2).unwrap();
    let mut served = MessageProcess::builder("served")
        .events(&plain)
        .build(Probe::default())
        .unwrap();
    served.start().unwrap();
    assert_eq!(
        served.into_relay().unwrap_err().kind(),
        &ErrorKind::InvalidArgument
    );
    let (_p, unbound) = MessageProcess::builder("unbound").attach().unwrap();
    let (_q, bound) = MessageProcess::builder("bound")
        .events(&plain)
        .attach()
        .unwrap();
    let index = plain.reserve().unwrap().0;
    let set = forkbridge::Value::from(index)
        .as_u64()
        .unwrap()
        .to_le_bytes();
    assert_eq!(
        unbound.deliver_sets(&set).unwrap_err().kind(),
        &ErrorKind::InvalidArgument
    );
    assert_eq!(
        bound.deliver_sets(&set[..5]).unwrap_err().kind(),
        &ErrorKind::InvalidArgument
    );
    assert_eq!(
        bound
            .deliver_sets(&u64::MAX.to_le_bytes())
            .unwrap_err()
            .kind(),
        &ErrorKind::InvalidArgument
    );
    assert_eq!(bound.deliver_sets(&set).unwrap(), 1);
    assert_eq!(bound.deliver_sets(&[]).unwrap(), 0);
}

/// 8 MiB of echo frames: more than any socket buffer holds.
fn many_frames() -> (Vec<u8>, usize) {
    let (mut p, remote) = MessageProcess::builder("measure").attach().unwrap();
    let mut frames = FrameReader::new(clone(remote.stream()), remote.frames());
    let count = 2048;
    let mut all = Vec::new();
    for i in 0..count {
        // One at a time: nobody else reads this stream.
        p.send(message!("echo", n = i, pad = vec![7u8; 4096]))
            .unwrap();
        let run = frames.next_run().unwrap().unwrap();
        assert_eq!(count_frames(run), 1);
        all.extend_from_slice(run);
    }
    (all, count)
}

/// The length of the frame `bytes` starts with, its header included.
fn frame_len(bytes: &[u8]) -> usize {
    4 + u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize
}

fn count_frames(run: &[u8]) -> usize {
    let (mut at, mut n) = (0, 0);
    while at < run.len() {
        at += frame_len(&run[at..]);
        n += 1;
    }
    n
}

fn delivering_never_waits_for_the_reader() {
    let (bytes, count) = many_frames();
    let (mut p, remote) = MessageProcess::builder("slow reader").attach().unwrap();
    let t = Instant::now();
    let mut at = 0;
    while at < bytes.len() {
        let len = frame_len(&bytes[at..]);
        remote.writer().deliver(&bytes[at..at + len]).unwrap();
        at += len;
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "deliver waited: {:?}",
        t.elapsed()
    );
    assert!(remote.writer().queued() > 0, "the socket cannot hold 8 MiB");
    assert_eq!(
        remote
            .writer()
            .wait_delivered(bytes.len() as u64, Duration::ZERO)
            .unwrap(),
        None
    );
    for i in 0..count {
        let m = recv(&mut p);
        assert_eq!(m.param::<i64>("n").unwrap(), i as i64, "in order");
    }
    let total = remote
        .writer()
        .wait_delivered(bytes.len() as u64, WAIT)
        .unwrap();
    assert_eq!(total, Some(bytes.len() as u64));
    assert_eq!(remote.writer().queued(), 0);
    // The stream ended, a delivery says so.
    remote.report_exit(ExitStatus::from_raw(0)).unwrap();
    assert!(p.join().unwrap().success());
    drop(p);
    let first = &bytes[..frame_len(&bytes)];
    assert!(wait_until(WAIT, || remote.writer().deliver(first).is_err()));
    drop(remote);
    assert!(
        wait_until(WAIT, || threads() == 1),
        "the writer's thread ends"
    );
}

fn a_relay_stops_a_backend_that_does_not_read() {
    let mut p = MessageProcess::builder("deaf")
        .stop_timeout(Duration::from_millis(300))
        .kill_timeout(Duration::from_millis(300))
        .build(Probe::default())
        .unwrap();
    p.start().unwrap();
    let mut relay = p.into_relay().unwrap();
    let (bytes, _) = many_frames();
    let (mut front, remote) = MessageProcess::builder("deaf").attach().unwrap();
    // The backend sleeps in a handler while 8 MiB wait for it.
    front.send(message!("sleep", ms = 60_000u64)).unwrap();
    let mut frames = FrameReader::new(clone(remote.stream()), remote.frames());
    let sleep = frames.next_run().unwrap().unwrap().to_vec();
    relay.writer().deliver(&sleep).unwrap();
    relay.writer().deliver(&bytes).unwrap();
    assert!(relay.writer().queued() > 0);
    let t = Instant::now();
    let status = relay.stop().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
    assert!(t.elapsed() < WAIT, "stop took {:?}", t.elapsed());
    // The handle only lent its frames; it ends here.
    remote.report_exit(status).unwrap();
    assert!(front.join().is_ok());
    drop((relay, front, remote));
    assert!(wait_until(WAIT, || threads() == 1));
}

fn an_end_comes_after_the_frames_queued_before_it() {
    let (bytes, count) = many_frames();
    for lost in [false, true] {
        let (mut p, remote) = MessageProcess::builder("ending").attach().unwrap();
        remote.writer().deliver(&bytes).unwrap();
        assert!(remote.writer().queued() > 0, "the socket cannot hold 8 MiB");
        if lost {
            remote.report_lost("cut").unwrap();
        } else {
            remote.report_exit(ExitStatus::from_raw(3 << 8)).unwrap();
        }
        for i in 0..count {
            let m = recv(&mut p);
            assert_eq!(m.param::<i64>("n").unwrap(), i as i64, "every frame first");
        }
        let end = p.recv_timeout(WAIT).unwrap_err();
        assert!(end.is_disconnected(), "{end}");
        if lost {
            assert!(end.is_host_lost(), "{end}");
        } else {
            assert_eq!(end.exit_status().and_then(|s| s.code()), Some(3), "{end}");
        }
        drop((p, remote));
    }
    assert!(wait_until(WAIT, || threads() == 1));
}
