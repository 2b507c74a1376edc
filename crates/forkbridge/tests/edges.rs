//! The edges a demanding user reaches first, on real processes: maximal
//! durations, operations before start and after death, an orderly exit as
//! well as a kill, a backend's own children holding inherited fds, peers
//! that resize shared memory, sizes at and past every limit.

mod common;

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::{WAIT, probe, recv};
use forkbridge::binding::ProcessExt;
use forkbridge::{
    Backend, BackendContext, BoxError, ErrorKind, Event, EventGroup, EventKind, FrameRing,
    HandlerResult, Handlers, Message, MessageProcess, SharedBuffer, SyncIndex, message, select,
};
use forkbridge_testkit::{alive, reap, set_subreaper};

test_main!(
    a_call_before_start_has_no_effect,
    duration_max_means_no_limit_in_every_wait,
    stop_and_drop_with_duration_max_timeouts_return,
    a_crash_loses_nothing_that_earlier_handlers_sent,
    every_operation_after_death_is_disconnected_at_once,
    post_run_runs_when_the_frontend_is_killed,
    the_frame_limit_holds_on_the_lane_both_ways,
    release_index_out_of_range_is_not_reserved,
    a_stale_index_never_wakes_a_later_reservation,
    a_ring_consumer_sees_an_orderly_producer_exit,
    a_ring_producer_sees_an_orderly_consumer_exit,
    read_vec_of_a_huge_count_is_invalid_argument,
    a_peer_cannot_shrink_a_buffer_under_its_reader,
    only_sealable_memfds_are_mapped,
);

/// A counter with a typed command, and handlers for the edge cases.
#[derive(Default)]
struct Edge {
    count: u64,
    ring: Option<FrameRing>,
    marker: Option<OwnedFd>,
    orphan: Option<MessageProcess>,
    buffer: Option<OwnedFd>,
}

impl Edge {
    fn incr(&mut self, _: &mut BackendContext, (): ()) -> Result<u64, BoxError> {
        self.count += 1;
        Ok(self.count)
    }

    /// Forks a plain child that keeps the intercom open, tells the
    /// frontend its pid, then exits with status 5.
    fn leave_a_holder(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        common::fork_holder(ctx)?;
        // SAFETY: ends the backend at once.
        unsafe { libc::_exit(5) }
    }

    /// Produces `n` frames into the ring, then drops the producer role.
    fn produce(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let ring = self.ring.as_ref().ok_or("no ring")?;
        let mut producer = ring.producer()?;
        for i in 0..msg.param::<u8>("n")? {
            let mut slot = producer.acquire_timeout(WAIT)?;
            slot[0] = i;
            slot.commit(1)?;
        }
        drop(producer);
        ctx.send(Message::new("produced"))?;
        Ok(())
    }

    /// Reads `n` frames from the ring, then drops the consumer role.
    fn consume(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let ring = self.ring.as_ref().ok_or("no ring")?;
        let mut consumer = ring.consumer()?;
        for _ in 0..msg.param::<u8>("n")? {
            drop(consumer.recv_timeout(WAIT)?);
        }
        drop(consumer);
        ctx.send(Message::new("consumed"))?;
        Ok(())
    }

    /// Starts a backend of its own and leaves it in a 500 ms handler.
    fn spawn_orphan(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        let orphan = Edge {
            marker: self.marker.take(),
            ..Edge::default()
        };
        let mut p = MessageProcess::new("orphan", orphan)?;
        p.start()?;
        p.send(message!("sleep", ms = 500))?;
        ctx.send(Message::new("orphan").with("pid", p.pid().unwrap_or(0)))?;
        self.orphan = Some(p);
        Ok(())
    }

    fn sleep(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        std::thread::sleep(Duration::from_millis(msg.param("ms")?));
        ctx.send(Message::new("slept"))?;
        Ok(())
    }

    /// Sends a new 1 MiB memfd that allows sealing but is not sealed.
    fn lend_buffer(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        let fd = raw_memfd(libc::MFD_ALLOW_SEALING, 1 << 20);
        ctx.send_with_fds(Message::new("buffer"), &[fd.as_fd()])?;
        self.buffer = Some(fd);
        Ok(())
    }

    /// Tries to cut the lent buffer to 4 KiB; says whether it could.
    fn shrink_buffer(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        let fd = self.buffer.as_ref().ok_or("no buffer")?;
        // SAFETY: plain integers on our own fd.
        let shrunk = unsafe { libc::ftruncate(fd.as_raw_fd(), 4096) } == 0;
        ctx.send(Message::new("shrink").with("shrunk", shrunk))?;
        Ok(())
    }
}

impl Backend for Edge {
    fn register(h: &mut Handlers<Self>) {
        h.typed("incr", Self::incr)
            .on("leave_a_holder", Self::leave_a_holder)
            .on("produce", Self::produce)
            .on("consume", Self::consume)
            .on("spawn_orphan", Self::spawn_orphan)
            .on("sleep", Self::sleep)
            .on("lend_buffer", Self::lend_buffer)
            .on("shrink_buffer", Self::shrink_buffer);
    }

    fn post_run(&mut self, _: &mut BackendContext) {
        if let Some(marker) = &self.marker {
            // SAFETY: writes from a live local to our own pipe end.
            unsafe { libc::write(marker.as_raw_fd(), b"post_run".as_ptr().cast(), 8) };
        }
    }
}

fn edge(name: &str) -> MessageProcess {
    let mut p = MessageProcess::new(name, Edge::default()).unwrap();
    p.start().unwrap();
    p
}

fn raw_memfd(flags: libc::c_uint, len: i64) -> OwnedFd {
    // SAFETY: a NUL-terminated name and plain flags.
    let raw = unsafe { libc::memfd_create(c"edge".as_ptr(), libc::MFD_CLOEXEC | flags) };
    assert!(
        raw >= 0,
        "memfd_create: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a new fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: plain integers on our own fd.
    assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), len) }, 0);
    fd
}

/// Asserts that `op` fails at once with `Disconnected`.
fn disconnected_at_once<T: std::fmt::Debug>(
    what: &str,
    op: impl FnOnce() -> forkbridge::Result<T>,
) {
    let t = Instant::now();
    let err = op().expect_err(what);
    assert!(err.is_disconnected(), "{what}: {err}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "{what} took {:?}",
        t.elapsed()
    );
}

fn a_call_before_start_has_no_effect() {
    let mut p = MessageProcess::new("counter", Edge::default()).unwrap();
    let err = p.call::<_, u64>("incr", &(), WAIT).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::NotStarted);
    p.start().unwrap();
    assert_eq!(
        p.call::<_, u64>("incr", &(), WAIT).unwrap(),
        1,
        "the failed call ran"
    );
    assert!(p.stop().unwrap().success());
}

fn duration_max_means_no_limit_in_every_wait() {
    let max = Duration::MAX;
    let mut p = edge("max");
    p.send_timeout(message!("sleep", ms = 1), max).unwrap();
    assert_eq!(p.recv_timeout(max).unwrap().command(), "slept");
    assert_eq!(p.call::<_, u64>("incr", &(), max).unwrap(), 1);
    p.feed(message!("sleep", ms = 1)).unwrap();
    p.flush_timeout(max).unwrap();
    let (msg, fds) = p.recv_with_fds(max).unwrap();
    assert_eq!((msg.command(), fds.len()), ("slept", 0));

    p.send(message!("sleep", ms = 1)).unwrap();
    assert_eq!(
        forkbridge::wait_any(&[&p], &[], Some(max))
            .unwrap()
            .processes,
        [0]
    );
    p.recv().unwrap();

    let event = Event::with_kind(EventKind::Pollable).unwrap();
    event.set();
    assert!(event.wait_timeout(max));
    let fd = event.fd().unwrap();
    assert_eq!(select(&[fd], &[], &[], Some(max)).unwrap().read, [0]);
    let group = EventGroup::new(1).unwrap();
    let sync = SyncIndex::new(&group).unwrap();
    assert!(group.set(sync.index()).unwrap());
    sync.wait_timeout(max).unwrap();

    let ring = FrameRing::new(1, 64).unwrap().with_spin(max);
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    tx.acquire_timeout(max).unwrap().commit(1).unwrap();
    assert_eq!(rx.recv_timeout(max).unwrap().len(), 1);

    p.request_stop().unwrap();
    assert!(p.join_timeout(max).unwrap().success());
    assert!(p.join_timeout(max).unwrap().success(), "again, after exit");
}

fn stop_and_drop_with_duration_max_timeouts_return() {
    let build = || {
        MessageProcess::builder("patient")
            .stop_timeout(Duration::MAX)
            .kill_timeout(Duration::MAX)
            .spin_before_sleep(Duration::ZERO)
            .build(Edge::default())
            .unwrap()
    };
    let mut p = build();
    p.start().unwrap();
    assert!(p.stop().unwrap().success());
    let mut p = build();
    p.start().unwrap();
    let pid = p.pid().unwrap();
    drop(p);
    assert!(!alive(pid), "dropped without stopping its backend");
}

fn a_crash_loses_nothing_that_earlier_handlers_sent() {
    let mut p = probe("crasher");
    // 27 handlers each send 8 KiB while the frontend does not read: more
    // than the socket holds.
    for _ in 0..27 {
        p.send(message!("big", n = 8192)).unwrap();
    }
    p.send(Message::new("abort")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..27 {
        let msg = p
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("message {i} of 27 lost: {e}"));
        assert_eq!(msg.command(), "big");
    }
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert_eq!(
        err.exit_status().unwrap().signal(),
        Some(libc::SIGABRT),
        "{err}"
    );
}

fn every_operation_after_death_is_disconnected_at_once() {
    set_subreaper(true);
    let mut p = edge("leaver");
    p.send(Message::new("leave_a_holder")).unwrap();
    let holder: i32 = recv(&mut p).param("pid").unwrap();
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.exit_status().unwrap().code(), Some(5), "{err}");
    // The holder keeps the socket open: sends must not fill it and block.
    let big = || Message::new("big").with("data", vec![0u8; 64 << 10]);
    for _ in 0..8 {
        disconnected_at_once("send", || p.send(big()));
    }
    disconnected_at_once("feed", || p.feed(big()));
    disconnected_at_once("send_timeout", || p.send_timeout(big(), WAIT));
    disconnected_at_once("flush", || p.flush());
    disconnected_at_once("flush_timeout", || p.flush_timeout(WAIT));
    disconnected_at_once("call", || p.call::<_, u64>("incr", &(), WAIT));
    disconnected_at_once("cast", || p.cast("incr", &()));
    disconnected_at_once("send_with_fds", || {
        let fd = raw_memfd(0, 4096);
        p.send_with_fds(Message::new("x"), &[fd.as_fd()])
    });
    disconnected_at_once("recv", || p.recv());
    assert_eq!(p.stop().unwrap().code(), Some(5));
    // SAFETY: plain integers; the holder is our child (subreaper).
    unsafe { libc::kill(holder, libc::SIGKILL) };
    reap(holder);
}

fn post_run_runs_when_the_frontend_is_killed() {
    set_subreaper(true);
    let (mut read, write) = std::io::pipe().unwrap();
    let middle_backend = Edge {
        marker: Some(write.into()),
        ..Edge::default()
    };
    let mut middle = MessageProcess::new("middle", middle_backend).unwrap();
    middle.start().unwrap();
    middle.send(Message::new("spawn_orphan")).unwrap();
    let orphan: i32 = recv(&mut middle).param("pid").unwrap();
    // The orphan is in its 500 ms handler when its frontend is killed.
    std::thread::sleep(Duration::from_millis(50));
    common::kill_frontend_and_expect_an_orderly_end(&mut middle, orphan, &mut read);
}

fn the_frame_limit_holds_on_the_lane_both_ways() {
    let mut p = MessageProcess::builder("limited")
        .max_frame_size(1 << 20)
        .large_messages(64 << 10, 8 << 20)
        .build(common::Probe::default())
        .unwrap();
    p.start().unwrap();
    for i in 0..3 {
        let err = p
            .send(Message::new("echo").with("data", vec![1u8; 4 << 20]))
            .unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::FrameTooLarge { max, .. } if *max == 1 << 20),
            "send {i}: {err}"
        );
    }
    assert_eq!(p.large_messages_sent(), 0);
    // Just under the limit crosses, through the lane.
    p.send(Message::new("echo").with("data", vec![2u8; 1000 << 10]))
        .unwrap();
    assert_eq!(recv(&mut p)["data"].as_bytes().unwrap().len(), 1000 << 10);
    assert_eq!(p.large_messages_sent(), 1);
    // The backend's send of 4 MiB fails there, as a handler error.
    p.send(message!("big", n = 4usize << 20)).unwrap();
    let e = recv(&mut p);
    assert_eq!(common::error_field(&e, "kind"), "handler_error");
    assert!(
        common::error_field(&e, "error").contains("exceeds the maximum"),
        "{e}"
    );
    assert!(p.stop().unwrap().success());
}

fn release_index_out_of_range_is_not_reserved() {
    let group = EventGroup::new(2).unwrap();
    let other = EventGroup::new(8).unwrap();
    for _ in 0..8 {
        let (index, _) = other.reserve().unwrap();
        if index.slot() >= 2 {
            let err = group.release_index(index).unwrap_err();
            assert_eq!(err.kind(), &ErrorKind::NotReserved, "{err}");
        }
    }
    assert!(
        EventGroup::new((1 << 20) + 1).is_err(),
        "more events than an index names"
    );
}

fn a_stale_index_never_wakes_a_later_reservation() {
    let group = EventGroup::new(1).unwrap();
    let (stale, event) = group.reserve().unwrap();
    group.release(&event).unwrap();
    // Every later reservation, well past where a 16-bit generation wrapped
    // (32 768 cycles), ignores the stale index.
    for cycle in 0..70_000 {
        let (_, event) = group.reserve().unwrap();
        assert!(!group.set(stale).unwrap(), "cycle {cycle}: a stale set");
        assert!(!event.is_set(), "cycle {cycle}: woken by a stale index");
        group.release(&event).unwrap();
    }
}

fn a_ring_consumer_sees_an_orderly_producer_exit() {
    let ring = FrameRing::new(4, 64).unwrap();
    let backend = Edge {
        ring: Some(ring.clone()),
        ..Edge::default()
    };
    let mut p = MessageProcess::new("producer", backend).unwrap();
    p.start().unwrap();
    let mut consumer = ring.consumer().unwrap();
    p.send(message!("produce", n = 2)).unwrap();
    assert_eq!(recv(&mut p).command(), "produced");
    for i in 0..2 {
        assert_eq!(consumer.recv_timeout(WAIT).unwrap()[0], i);
    }
    // The producer dropped its role but its process lives: waited for.
    let err = consumer
        .recv_timeout(Duration::from_millis(200))
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(p.stop().unwrap().success());
    let t = Instant::now();
    let err = consumer.recv().unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
}

fn a_ring_producer_sees_an_orderly_consumer_exit() {
    let ring = FrameRing::new(1, 64).unwrap();
    let backend = Edge {
        ring: Some(ring.clone()),
        ..Edge::default()
    };
    let mut p = MessageProcess::new("consumer", backend).unwrap();
    p.start().unwrap();
    let mut producer = ring.producer().unwrap();
    p.send(message!("consume", n = 1)).unwrap();
    producer.acquire_timeout(WAIT).unwrap().commit(1).unwrap();
    assert_eq!(recv(&mut p).command(), "consumed");
    assert!(p.stop().unwrap().success());
    producer.acquire_timeout(WAIT).unwrap().commit(1).unwrap();
    // The ring is full and its consumer's process ended in order.
    let t = Instant::now();
    let err = producer.acquire().unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
}

fn read_vec_of_a_huge_count_is_invalid_argument() {
    let buffer = SharedBuffer::new(4096).unwrap();
    for (offset, count) in [(0, usize::MAX), (1, usize::MAX / 2), (usize::MAX, 1)] {
        let err = buffer.read_vec::<u8>(offset, count).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidArgument);
    }
    let err = buffer.read_vec::<u64>(0, usize::MAX / 4).unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::InvalidArgument,
        "overflowing byte count"
    );
    assert_eq!(
        buffer.read_vec::<u64>(0, 512).unwrap().len(),
        512,
        "the whole buffer"
    );
    assert_eq!(
        buffer.read_vec::<u8>(4096, 0).unwrap().len(),
        0,
        "nothing at the end"
    );
}

fn a_peer_cannot_shrink_a_buffer_under_its_reader() {
    let mut p = edge("shrinker");
    p.send(Message::new("lend_buffer")).unwrap();
    let (msg, mut fds) = p.recv_with_fds(WAIT).unwrap();
    assert_eq!(msg.command(), "buffer");
    let buffer = SharedBuffer::from_fd(fds.pop().unwrap()).unwrap();
    assert_eq!(buffer.len(), 1 << 20);
    p.send(Message::new("shrink_buffer")).unwrap();
    assert!(
        !recv(&mut p).param::<bool>("shrunk").unwrap(),
        "the peer shrank it"
    );
    let mut bytes = [1u8; 16];
    buffer.read_at(512 << 10, &mut bytes).unwrap();
    assert_eq!(bytes, [0; 16]);
    // A buffer made here is sealed at birth.
    let ours = SharedBuffer::new(1 << 20).unwrap();
    // SAFETY: plain integers on an fd the buffer owns.
    assert_ne!(unsafe { libc::ftruncate(ours.fd().as_raw_fd(), 4096) }, 0);
    assert!(p.stop().unwrap().success());
}

fn only_sealable_memfds_are_mapped() {
    let err = SharedBuffer::from_fd(raw_memfd(0, 4096)).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidArgument, "{err}");
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(std::env::temp_dir().join(format!("forkbridge-edge-{}", std::process::id())))
        .unwrap();
    file.set_len(4096).unwrap();
    let err = SharedBuffer::from_fd(file.into()).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidArgument, "{err}");
    let _ = std::fs::remove_file(
        std::env::temp_dir().join(format!("forkbridge-edge-{}", std::process::id())),
    );
    let empty = raw_memfd(libc::MFD_ALLOW_SEALING, 0);
    assert_eq!(
        SharedBuffer::from_fd(empty).unwrap_err().kind(),
        &ErrorKind::InvalidArgument
    );
    assert_eq!(
        SharedBuffer::from_fd(raw_memfd(libc::MFD_ALLOW_SEALING, 4096))
            .unwrap()
            .len(),
        4096
    );
}
