//! Full sockets on real processes: every wait on one ends when the peer
//! dies, a side that waits to write reads meanwhile so two writers never
//! deadlock, a write cut short leaves the stream whole, and a bad frame from
//! the backend is skipped.

mod common;

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::{WAIT, probe, recv};
use forkbridge::binding::{BuilderExt, ProcessExt};
use forkbridge::{
    BackendContext, ErrorKind, HandlerResult, Handlers, Intercom, Message, MessageProcess, message,
};
use forkbridge_testkit::{alive, reap, set_subreaper, signal_later};

test_main!(
    a_send_blocked_on_a_full_socket_ends_when_the_backend_dies,
    a_flush_blocked_on_a_full_socket_ends_when_the_backend_dies,
    a_send_with_fds_blocked_on_a_full_socket_ends_when_the_backend_dies,
    join_reads_so_a_backend_blocked_on_a_full_socket_can_finish,
    a_waiting_send_reads_ahead_even_with_frame_reads,
    intercom_send_on_a_full_socket_reads_meanwhile,
    a_timed_wait_sees_a_dead_backend_whose_child_holds_the_socket,
    a_wait_without_timeout_sees_a_dead_backend_whose_child_holds_the_socket,
    a_partly_written_send_timeout_stays_buffered_and_the_stream_stays_whole,
    queue_writes_nothing_and_flush_timeout_keeps_the_rest_buffered,
    a_bad_frame_from_the_backend_is_reported_and_skipped,
    request_stop_timeout_gives_up_and_the_request_goes_out_later,
);

/// 64 KiB: the size of the messages that fill sockets here.
const CHUNK: usize = 64 << 10;

/// A backend that stops reading on request: it naps, or leaves a child of
/// its own holding the intercom open (so that only the pidfd can tell the
/// frontend it died) and sleeps or exits.
#[derive(Default)]
struct Stall;

impl Stall {
    /// Leaves a holder, then sleeps `ms` without reading.
    fn hold_and_sleep(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        common::fork_holder(ctx)?;
        std::thread::sleep(Duration::from_millis(msg.param("ms")?));
        Ok(())
    }

    /// Leaves a holder, then exits with `code` at once.
    fn hold_and_exit(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        common::fork_holder(ctx)?;
        let code: i32 = msg.param("code")?;
        // SAFETY: ends the backend at once.
        unsafe { libc::_exit(code) }
    }

    /// Says "napping" (so the frontend knows it reads nothing from now
    /// on), sleeps `ms`, says "woke".
    fn nap(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        ctx.send(Message::new("napping"))?;
        ctx.flush()?;
        std::thread::sleep(Duration::from_millis(msg.param("ms")?));
        ctx.send(Message::new("woke"))?;
        Ok(())
    }

    fn echo(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let (_, params) = msg.into_parts();
        let mut reply = Message::new("echo");
        for (k, v) in params {
            reply.set(k, v);
        }
        ctx.send(reply)?;
        Ok(())
    }
}

impl forkbridge::Backend for Stall {
    fn register(h: &mut Handlers<Self>) {
        h.on("hold_and_sleep", Self::hold_and_sleep)
            .on("hold_and_exit", Self::hold_and_exit)
            .on("nap", Self::nap)
            .on("echo", Self::echo);
    }
}

/// A started [`Stall`] backend that reads nothing for `ms` from now on.
fn napping(name: &str, ms: u64) -> MessageProcess {
    let mut p = MessageProcess::new(name, Stall).unwrap();
    p.start().unwrap();
    p.send(message!("nap", ms = ms)).unwrap();
    assert_eq!(recv(&mut p).command(), "napping");
    p
}

/// A helper process that kills the backend after [`WAIT`], so that a case
/// whose blocking call would hang ends with a failure instead; dropping it
/// disarms it.
struct Watchdog(i32);

impl Watchdog {
    fn arm(p: &MessageProcess) -> Watchdog {
        Watchdog(signal_later(p.pid().unwrap(), libc::SIGKILL, WAIT))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // SAFETY: plain integers; the helper is our unreaped child.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
        reap(self.0);
    }
}

/// A message frame exactly as the wire carries it: length, kind 0, body.
fn frame(msg: &Message) -> Vec<u8> {
    let body = postcard::to_stdvec(msg).unwrap();
    let mut out = u32::try_from(body.len() + 1)
        .unwrap()
        .to_le_bytes()
        .to_vec();
    out.push(0);
    out.extend_from_slice(&body);
    out
}

/// Writes all of `bytes` to the non-blocking socket `fd` and never reads
/// from it; false if the socket took nothing for `bound` (or failed).
fn write_without_reading(fd: RawFd, bytes: &[u8], bound: Duration) -> bool {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: `rest` is a live buffer of `rest.len()` bytes. No SIGPIPE:
        // a backend runs with the default dispositions.
        let n = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) };
        if n > 0 {
            rest = &rest[n as usize..];
            continue;
        }
        match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock => {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                let millis = i32::try_from(bound.as_millis()).unwrap_or(i32::MAX);
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, millis) } == 0 {
                    return false;
                }
            }
            std::io::ErrorKind::Interrupted => {}
            _ => return false,
        }
    }
    true
}

/// Bytes the frontend wrote to its socket that the backend has not read.
fn in_flight(p: &MessageProcess) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ on a socket) writes one int to `n`.
    let rc = unsafe { libc::ioctl(p.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    n
}

/// `len` bytes whose values depend on `i` and on their offset, so that a
/// lost, repeated or displaced piece shows.
fn pattern(i: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (j as u64).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}

fn big_echo(i: u64) -> Message {
    message!("echo", i = i, data = pattern(i, CHUNK))
}

fn assert_echo_of(msg: &Message, i: u64, len: usize) {
    assert_eq!(msg.command(), "echo", "{msg}");
    assert_eq!(msg.param::<u64>("i").unwrap(), i, "out of order");
    let data = msg["data"].as_bytes().unwrap();
    assert_eq!(data.len(), len, "echo {i} cut");
    assert!(data == pattern(i, len).as_slice(), "echo {i} corrupted");
}

/// Starts a [`Stall`] backend that leaves a holder and sleeps for a
/// minute without reading; returns it and the holder's pid.
fn sleeping_with_a_holder(name: &str) -> (MessageProcess, i32) {
    set_subreaper(true);
    let mut p = MessageProcess::new(name, Stall).unwrap();
    p.start().unwrap();
    p.send(message!("hold_and_sleep", ms = 60_000)).unwrap();
    let holder = recv(&mut p).param("pid").unwrap();
    (p, holder)
}

/// Kills the backend 300 ms into `blocked` (a call waiting on a full
/// socket that the backend's child keeps open) and checks that it ends
/// with `Disconnected` and the SIGKILL status soon after.
fn ends_when_killed(
    mut p: MessageProcess,
    holder: i32,
    blocked: impl FnOnce(&mut MessageProcess) -> forkbridge::Result<()>,
) {
    let delay = Duration::from_millis(300);
    let killer = signal_later(p.pid().unwrap(), libc::SIGKILL, delay);
    // Were the pidfd not watched, only the holder's death would end the
    // wait: make that come after WAIT, so such a hang is bounded and fails.
    let bound = signal_later(holder, libc::SIGKILL, WAIT);
    let t = Instant::now();
    let err = blocked(&mut p).unwrap_err();
    let took = t.elapsed();
    reap(killer);
    // SAFETY: plain integers; the helper is our unreaped child.
    unsafe { libc::kill(bound, libc::SIGKILL) };
    reap(bound);
    assert!(err.is_disconnected(), "{err}");
    assert_eq!(err.exit_status().unwrap().signal(), Some(libc::SIGKILL));
    assert!(
        took < delay + Duration::from_secs(2),
        "ended only after {took:?}"
    );
    // The socket was still open: only the death of the backend ended it.
    assert!(alive(holder), "the holder died, closing the socket");
    assert_eq!(p.stop().unwrap().signal(), Some(libc::SIGKILL));
    // SAFETY: plain integers; the holder is our child (subreaper).
    unsafe { libc::kill(holder, libc::SIGKILL) };
    reap(holder);
}

fn a_send_blocked_on_a_full_socket_ends_when_the_backend_dies() {
    let (p, holder) = sleeping_with_a_holder("blocked-send");
    ends_when_killed(p, holder, |p| {
        // Nobody reads: one of these sends is waiting when the kill lands.
        for i in 0.. {
            p.send(big_echo(i))?;
        }
        unreachable!()
    });
}

fn a_flush_blocked_on_a_full_socket_ends_when_the_backend_dies() {
    let (mut p, holder) = sleeping_with_a_holder("blocked-flush");
    for i in 0..64 {
        p.queue(big_echo(i)).unwrap();
    }
    ends_when_killed(p, holder, MessageProcess::flush);
}

fn a_send_with_fds_blocked_on_a_full_socket_ends_when_the_backend_dies() {
    let (mut p, holder) = sleeping_with_a_holder("blocked-fds");
    // Fill the socket with small messages, so the send with fds waits for
    // room for its own first byte (with which the fds travel).
    let small = || message!("x", data = vec![0u8; 1024]);
    let full = (0..100_000).any(|_| {
        p.send_timeout(small(), Duration::from_millis(5))
            .is_err_and(|e| e.is_timeout())
    });
    assert!(full, "the socket never filled");
    let (reader, _writer) = std::io::pipe().unwrap();
    ends_when_killed(p, holder, |p| {
        p.send_with_fds(Message::new("fds"), &[reader.as_fd()])
    });
}

fn join_reads_so_a_backend_blocked_on_a_full_socket_can_finish() {
    // Megabytes of messages, then exit 7: the backend blocks on the full
    // socket unless `join` reads while it waits.
    const N: u64 = 200_000;
    let mut p = probe("joined");
    p.send(message!("burst_then_exit", n = N)).unwrap();
    let watchdog = Watchdog::arm(&p);
    let status = p.join();
    drop(watchdog);
    assert_eq!(status.unwrap().code(), Some(7));
    for i in 0..N {
        let msg = recv(&mut p);
        assert_eq!(msg.command(), "item");
        assert_eq!(msg.param::<u64>("i").unwrap(), i, "out of order");
    }
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    assert_eq!(err.exit_status().unwrap().code(), Some(7));
}

/// Writes 64 chunks of 64 KiB without reading (so it blocks until the
/// frontend reads them all), then counts the frontend's messages.
fn write_first_then_count(mut intercom: Intercom) -> i32 {
    let fd = intercom.as_raw_fd();
    for i in 0..64u64 {
        let chunk = message!("chunk", i = i, data = pattern(i, CHUNK));
        if !write_without_reading(fd, &frame(&chunk), WAIT) {
            return 2;
        }
    }
    let mut n = 0u64;
    loop {
        match intercom.recv() {
            Ok(Some(_)) => {
                n += 1;
                if n == 64 && intercom.send(message!("count", n = n)).is_err() {
                    return 3;
                }
            }
            Ok(None) => return 0,
            Err(_) => return 4,
        }
    }
}

fn a_waiting_send_reads_ahead_even_with_frame_reads() {
    // Both sides write 4 MiB and the backend reads nothing until it has
    // written all of its own: the frontend's sends finish only if, while
    // they wait for room, they read everything the backend sends, not one
    // frame.
    let mut p = MessageProcess::builder("frames-duplex")
        .frame_reads(true)
        .build_fn(write_first_then_count)
        .unwrap();
    p.start().unwrap();
    let watchdog = Watchdog::arm(&p);
    for i in 0..64 {
        p.send(big_echo(i)).unwrap();
    }
    for i in 0..64 {
        let msg = recv(&mut p);
        assert_eq!(msg.command(), "chunk");
        assert_eq!(msg.param::<u64>("i").unwrap(), i, "out of order");
        assert!(msg["data"].as_bytes().unwrap() == pattern(i, CHUNK).as_slice());
    }
    assert_eq!(recv(&mut p).param::<u64>("n").unwrap(), 64);
    drop(watchdog);
    assert_eq!(p.stop().unwrap().code(), Some(0));
}

fn echo_fn(mut intercom: Intercom) -> i32 {
    loop {
        match intercom.recv() {
            Ok(Some(msg)) => {
                let (_, params) = msg.into_parts();
                let mut reply = Message::new("echo");
                for (k, v) in params {
                    reply.set(k, v);
                }
                if intercom.send(reply).is_err() {
                    return 2;
                }
            }
            Ok(None) => return 0,
            Err(_) => return 3,
        }
    }
}

fn intercom_send_on_a_full_socket_reads_meanwhile() {
    // The frontend writes 4 MiB of commands without reading anything (a
    // raw writer: `MessageProcess::send` would read, and so rescue a
    // backend that does not). The function backend's echoes fill the other
    // way: its `send` must read while it waits, or both block.
    let mut p = MessageProcess::builder("fn-duplex")
        .build_fn(echo_fn)
        .unwrap();
    p.start().unwrap();
    let watchdog = Watchdog::arm(&p);
    for i in 0..64 {
        assert!(
            write_without_reading(p.as_raw_fd(), &frame(&big_echo(i)), WAIT),
            "command {i} was never read: the function backend deadlocked"
        );
    }
    for i in 0..64 {
        assert_echo_of(&recv(&mut p), i, CHUNK);
    }
    drop(watchdog);
    assert_eq!(p.stop().unwrap().code(), Some(0));
}

/// Starts a [`Stall`] backend, has it leave a holder of the socket and
/// exit 5; returns it and the holder's pid.
fn dead_with_a_holder(name: &str) -> (MessageProcess, i32) {
    set_subreaper(true);
    let mut p = MessageProcess::new(name, Stall).unwrap();
    p.start().unwrap();
    p.send(message!("hold_and_exit", code = 5)).unwrap();
    let holder = recv(&mut p).param("pid").unwrap();
    (p, holder)
}

fn kill_holder(holder: i32) {
    // SAFETY: plain integers; the holder is our child (subreaper).
    unsafe { libc::kill(holder, libc::SIGKILL) };
    reap(holder);
}

fn a_timed_wait_sees_a_dead_backend_whose_child_holds_the_socket() {
    let (mut p, holder) = dead_with_a_holder("read-waiter");
    // The read cannot see the death (the holder keeps the socket open): the
    // pidfd, looked at after each 100 ms read slice, does — long before
    // the timeout.
    let t = Instant::now();
    let err = p.recv_timeout(WAIT).unwrap_err();
    let took = t.elapsed();
    assert!(err.is_disconnected(), "{err}");
    assert_eq!(err.exit_status().unwrap().code(), Some(5));
    assert!(took < Duration::from_secs(1), "seen after {took:?}");
    // Once seen, every wait ends at once.
    let t = Instant::now();
    let err = p.recv().unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    assert_eq!(err.exit_status().unwrap().code(), Some(5));
    assert!(t.elapsed() < Duration::from_millis(200));
    assert!(alive(holder), "the holder died, closing the socket");
    assert_eq!(p.stop().unwrap().code(), Some(5));
    kill_holder(holder);
}

fn a_wait_without_timeout_sees_a_dead_backend_whose_child_holds_the_socket() {
    let (mut p, holder) = dead_with_a_holder("read-waiter-2");
    // Were this wait in the read alone, only the holder's death would end
    // it: make that come after WAIT, so such a hang is bounded and fails.
    let bound = signal_later(holder, libc::SIGKILL, WAIT);
    let t = Instant::now();
    let err = p.recv().unwrap_err();
    let took = t.elapsed();
    assert!(err.is_disconnected(), "{err}");
    assert_eq!(err.exit_status().unwrap().code(), Some(5));
    assert!(took < Duration::from_secs(1), "seen after {took:?}");
    // SAFETY: plain integers; the helper is our unreaped child.
    unsafe { libc::kill(bound, libc::SIGKILL) };
    reap(bound);
    assert!(alive(holder), "the holder died, closing the socket");
    assert_eq!(p.stop().unwrap().code(), Some(5));
    kill_holder(holder);
}

fn a_partly_written_send_timeout_stays_buffered_and_the_stream_stays_whole() {
    const BIG: usize = 1 << 20;
    let big = |i: u64| message!("echo", i = i, data = pattern(i, BIG));
    let short = Duration::from_millis(20);
    // Nothing below is read before the nap ends.
    let mut p = napping("partial", 1500);
    // Small messages fit in the socket: they return Ok.
    for i in 0..4 {
        p.send_timeout(message!("echo", i = i, data = pattern(i, 1024)), short)
            .unwrap();
    }
    // 1 MiB does not: the socket takes part of it, then the time runs out.
    let before = in_flight(&p);
    let err = p.send_timeout(big(4), short).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(in_flight(&p) > before, "part of message 4 was written");
    // The rest of message 4 still waits, so none of message 5 is written.
    let before = in_flight(&p);
    let err = p.send_timeout(big(5), short).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(in_flight(&p), before, "none of message 5 was written");
    let watchdog = Watchdog::arm(&p);
    p.flush().unwrap();
    p.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut p).command(), "woke");
    for i in 0..4 {
        assert_echo_of(&recv(&mut p), i, 1024);
    }
    // The partly written message arrives whole; the one taken back not at
    // all (the backend would have echoed it before the pong).
    assert_echo_of(&recv(&mut p), 4, BIG);
    let next = recv(&mut p);
    assert_eq!(next.command(), "pong", "got {:?} instead", next.get("i"));
    drop(watchdog);
    assert!(p.stop().unwrap().success());
}

fn queue_writes_nothing_and_flush_timeout_keeps_the_rest_buffered() {
    // Whatever is written stays in flight until the nap ends.
    let mut p = napping("queued", 1000);
    let before = in_flight(&p);
    // 1 MiB: far past the 64 KiB at which `feed` would write.
    for i in 0..16 {
        p.queue(big_echo(i)).unwrap();
    }
    assert_eq!(in_flight(&p), before, "queue wrote");
    let err = p.flush_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(in_flight(&p) > before, "flush_timeout wrote what fit");
    let watchdog = Watchdog::arm(&p);
    p.flush().unwrap();
    assert_eq!(recv(&mut p).command(), "woke");
    for i in 0..16 {
        assert_echo_of(&recv(&mut p), i, CHUNK);
    }
    p.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut p).command(), "pong");
    drop(watchdog);
    assert!(p.stop().unwrap().success());
}

fn a_bad_frame_from_the_backend_is_reported_and_skipped() {
    const MAX: usize = 1024;
    let mut p = MessageProcess::builder("bad-backend")
        .max_frame_size(MAX)
        .build_fn(|mut intercom| {
            let fd = intercom.as_raw_fd();
            // A message frame whose body is not a message.
            let garbage = [3, 0, 0, 0, 0, 0xff, 0xff];
            // A frame larger than the frontend accepts, with all its bytes.
            let mut oversized = (100u32 << 10).to_le_bytes().to_vec();
            oversized.extend(std::iter::repeat_n(0xEEu8, 100 << 10));
            if !write_without_reading(fd, &garbage, WAIT)
                || !write_without_reading(fd, &oversized, WAIT)
            {
                return 2;
            }
            if intercom.send(Message::new("after")).is_err() {
                return 3;
            }
            while let Ok(Some(_)) = intercom.recv() {}
            0
        })
        .unwrap();
    p.start().unwrap();
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Decode, "{err}");
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::FrameTooLarge {
            len: 100 << 10,
            max: MAX
        },
        "{err}"
    );
    assert_eq!(recv(&mut p).command(), "after");
    assert!(p.is_alive());
    assert!(p.stop().unwrap().success());
}

fn request_stop_timeout_gives_up_and_the_request_goes_out_later() {
    let mut p = napping("stop-later", 1000);
    // Fill the socket: the stop request cannot be written while it naps.
    for i in 0..16 {
        p.queue(big_echo(i)).unwrap();
    }
    let t = std::time::Instant::now();
    let err = p
        .request_stop_timeout(Duration::from_millis(20))
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    // Calling again goes on writing the same request: the backend handles
    // everything queued before it, then stops.
    let watchdog = Watchdog::arm(&p);
    p.request_stop_timeout(WAIT).unwrap();
    assert_eq!(recv(&mut p).command(), "woke");
    for i in 0..16 {
        assert_echo_of(&recv(&mut p), i, CHUNK);
    }
    assert!(p.join_timeout(WAIT).unwrap().success());
    drop(watchdog);
}
