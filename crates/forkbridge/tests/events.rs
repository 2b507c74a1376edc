//! Events, event groups, SyncIndex and select across real forks.

mod common;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use common::{WAIT, assert_signal_loses_no_time, recv};
use forkbridge::{
    Backend, BackendContext, ErrorKind, Event, EventGroup, EventIndex, EventKind, HandlerResult,
    Handlers, Message, MessageProcess, SyncIndex, message, select,
};
use forkbridge_testkit::{open_fds, shared_mappings};

test_main!(
    event_set_in_backend_wakes_frontend,
    pollable_event_fd_is_readable_exactly_while_set,
    wait_timeout_times_out_when_never_set,
    many_waiters_all_wake,
    group_reserve_rotates_and_exhaustion_is_typed,
    group_release_errors_are_typed,
    group_display_and_lookup_like_valkka,
    event_index_travels_in_a_message,
    late_set_after_timeout_does_not_leak_into_next_reservation,
    sync_index_releases_on_error_and_panic,
    sync_index_round_trip_with_backend,
    backend_death_during_event_wait_is_seen_in_one_select,
    signal_during_select_loses_no_time,
    signal_during_wait_timeout_loses_no_time,
    select_sees_processes_and_events_together,
    select_has_no_fd_setsize_limit,
    select_reports_closed_fd_as_error,
    events_survive_many_cycles_without_leaks,
    group_sizes_and_foreign_events_are_checked_with_their_kind,
);

/// A backend that sets, waits on and reports events.
struct Signaller {
    group: EventGroup,
    single: Option<Event>,
}

impl Signaller {
    fn new(group: &EventGroup) -> Signaller {
        Signaller {
            group: group.clone(),
            single: None,
        }
    }

    fn set(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        if let Some(ms) = msg.get("delay_ms").and_then(|v| v.as_u64()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        let applied = self.group.set(msg.param::<EventIndex>("event")?)?;
        if msg.contains("reply") {
            ctx.send(message!("set_done", applied = applied))?;
        }
        Ok(())
    }

    fn set_single(&mut self, _: &mut BackendContext, _: Message) -> HandlerResult {
        self.single.as_ref().ok_or("no event")?.set();
        Ok(())
    }

    fn wait_single(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        let set = self.single.as_ref().ok_or("no event")?.wait_timeout(WAIT);
        ctx.send(message!("woke", set = set))?;
        Ok(())
    }

    fn die(&mut self, _: &mut BackendContext, _: Message) -> HandlerResult {
        std::thread::sleep(Duration::from_millis(50));
        // SAFETY: ends this child at once, which is the point of the test.
        unsafe { libc::_exit(9) }
    }
}

impl Backend for Signaller {
    fn register(h: &mut Handlers<Self>) {
        h.on("set", Self::set)
            .on("set_single", Self::set_single)
            .on("wait_single", Self::wait_single)
            .on("die", Self::die);
    }
}

fn start(backend: Signaller) -> MessageProcess {
    let mut p = MessageProcess::new("signaller", backend).unwrap();
    p.start().unwrap();
    p
}

fn readable_now(fd: BorrowedFd<'_>) -> bool {
    !select(&[fd], &[], &[], Some(Duration::ZERO))
        .unwrap()
        .is_empty()
}

fn event_set_in_backend_wakes_frontend() {
    for kind in [EventKind::Futex, EventKind::Pollable] {
        let event = Event::with_kind(kind).unwrap();
        let group = EventGroup::new(1).unwrap();
        let mut backend = Signaller::new(&group);
        backend.single = Some(event.clone());
        let mut p = start(backend);
        assert!(!event.is_set());
        p.send(Message::new("set_single")).unwrap();
        assert!(event.wait_timeout(WAIT), "{kind:?}");
        assert!(event.is_set());
        event.wait(); // already set: returns at once
        event.clear();
        assert!(!event.is_set());
        p.stop().unwrap();
    }
}

fn pollable_event_fd_is_readable_exactly_while_set() {
    let event = Event::with_kind(EventKind::Pollable).unwrap();
    let fd = event.fd().expect("pollable");
    assert!(!readable_now(fd));
    event.set();
    event.set(); // idempotent: still one transition
    assert!(readable_now(fd));
    event.clear();
    assert!(!readable_now(fd));
    event.clear();
    assert!(!readable_now(fd));
    assert!(Event::new().unwrap().fd().is_none());
}

fn wait_timeout_times_out_when_never_set() {
    let event = Event::new().unwrap();
    let t = Instant::now();
    assert!(!event.wait_timeout(Duration::from_millis(100)));
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert!(!event.wait_timeout(Duration::ZERO));
}

fn many_waiters_all_wake() {
    let event = Event::new().unwrap();
    let group = EventGroup::new(1).unwrap();
    let mut waiters: Vec<MessageProcess> = (0..3)
        .map(|_| {
            let mut backend = Signaller::new(&group);
            backend.single = Some(event.clone());
            start(backend)
        })
        .collect();
    for w in &mut waiters {
        w.send(Message::new("wait_single")).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50)); // let them sleep
    event.set();
    for w in &mut waiters {
        let m = recv(w);
        assert_eq!(m.command(), "woke");
        assert!(m.param::<bool>("set").unwrap());
        w.stop().unwrap();
    }
}

fn group_reserve_rotates_and_exhaustion_is_typed() {
    let group = EventGroup::new(3).unwrap();
    let (a, ea) = group.reserve().unwrap();
    assert_eq!(a.slot(), 0);
    group.release(&ea).unwrap();
    let (b, _) = group.reserve().unwrap();
    assert_eq!(
        b.slot(),
        1,
        "released indices go to the back, as in valkka-multiprocess"
    );
    let (c, _) = group.reserve().unwrap();
    let (d, _) = group.reserve().unwrap();
    assert_eq!((c.slot(), d.slot()), (2, 0));
    assert_ne!(a, d, "a new reservation of slot 0 has a new generation");
    let err = group.reserve().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::NoFreeEvent { capacity: 3 });
    assert_eq!(group.free(), 0);
    group.release_index(b).unwrap();
    assert_eq!(group.free(), 1);
}

fn group_release_errors_are_typed() {
    let group = EventGroup::new(2).unwrap();
    let other = EventGroup::new(2).unwrap();
    let (index, event) = group.reserve().unwrap();
    group.release(&event).unwrap();
    assert_eq!(
        group.release(&event).unwrap_err().kind(),
        &ErrorKind::NotReserved
    );
    assert_eq!(
        group.release_index(index).unwrap_err().kind(),
        &ErrorKind::NotReserved
    );
    let never = group.get(1).unwrap();
    assert_eq!(
        group.release(&never).unwrap_err().kind(),
        &ErrorKind::NotReserved
    );
    let (_, foreign) = other.reserve().unwrap();
    assert_eq!(
        group.release(&foreign).unwrap_err().kind(),
        &ErrorKind::NotReserved
    );
    assert_eq!(
        group.get(2).unwrap_err().kind(),
        &ErrorKind::InvalidArgument
    );
    let out_of_range: EventIndex = Message::new("x").with("e", 7u64).param("e").unwrap();
    assert_eq!(
        group.set(out_of_range).unwrap_err().kind(),
        &ErrorKind::InvalidArgument
    );
    assert_eq!(
        group.free(),
        2,
        "failed releases must not corrupt the free list"
    );
}

fn group_display_and_lookup_like_valkka() {
    let group = EventGroup::new(3).unwrap();
    let (index, event) = group.reserve().unwrap();
    assert_eq!(group.to_string(), "<EventGroup: R0 f1 f2 >");
    assert_eq!(group.len(), 3);
    assert_eq!(group.get(index.slot()).unwrap(), event);
    assert_eq!(group.index_of(&event).unwrap(), index);
    assert!(group.index_of(&Event::new().unwrap()).is_err());
}

fn event_index_travels_in_a_message() {
    let group = EventGroup::new(4).unwrap();
    for _ in 0..5 {
        let (i, e) = group.reserve().unwrap();
        group.release(&e).unwrap();
        let msg = Message::new("ping").with("event", i);
        let bytes = serde_json::to_vec(&msg).unwrap();
        let back: Message = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.param::<EventIndex>("event").unwrap(), i);
    }
    let wrong = Message::new("x").with("event", "zero");
    assert!(matches!(
        wrong.param::<EventIndex>("event").unwrap_err().kind(),
        ErrorKind::ParamType { .. }
    ));
}

fn late_set_after_timeout_does_not_leak_into_next_reservation() {
    let group = EventGroup::new(1).unwrap();
    let mut p = start(Signaller::new(&group));
    let sync = SyncIndex::new(&group).unwrap();
    let stale = sync.index();
    p.send(message!("set", event = stale, delay_ms = 200, reply = true))
        .unwrap();
    // The frontend gives up before the backend sets.
    let err = sync.wait_timeout(Duration::from_millis(20)).unwrap_err();
    assert!(err.is_timeout());
    // Released: a set by the stale index now does nothing.
    assert!(!group.set(stale).unwrap());
    assert!(!group.get(stale.slot()).unwrap().is_set());
    // The only event is reserved again for another request...
    let (fresh, event) = group.reserve().unwrap();
    assert_eq!(fresh.slot(), stale.slot());
    // ...and the late set is ignored instead of waking it.
    let done = recv(&mut p);
    assert!(!done.param::<bool>("applied").unwrap());
    assert!(!event.is_set());
    p.send(message!("set", event = fresh)).unwrap();
    assert!(event.wait_timeout(WAIT));
    group.release(&event).unwrap();
    p.stop().unwrap();
}

fn sync_index_releases_on_error_and_panic() {
    let group = EventGroup::new(2).unwrap();
    // An early return with `?` before anything was sent.
    let early = || -> forkbridge::Result<()> {
        let sync = SyncIndex::new(&group)?;
        let _ = sync.index();
        Err(Message::new("x").param::<i32>("missing").unwrap_err())
    };
    assert!(early().is_err());
    assert_eq!(group.free(), 2);
    // A panic inside the block.
    let result = catch_unwind(AssertUnwindSafe(|| {
        let _sync = SyncIndex::new(&group).unwrap();
        panic!("inside the block");
    }));
    assert!(result.is_err());
    assert_eq!(group.free(), 2);
    // Exhaustion surfaces at creation, before any block runs.
    let (_a, _ea) = group.reserve().unwrap();
    let (_b, _eb) = group.reserve().unwrap();
    assert_eq!(
        SyncIndex::new(&group).unwrap_err().kind(),
        &ErrorKind::NoFreeEvent { capacity: 2 }
    );
}

fn sync_index_round_trip_with_backend() {
    let group = EventGroup::new(8).unwrap();
    let mut p = start(Signaller::new(&group));
    for _ in 0..100 {
        let sync = group.sync_index().unwrap();
        p.send(message!("set", event = sync.index())).unwrap();
        sync.wait_timeout(WAIT).unwrap();
    }
    assert_eq!(group.free(), 8);
    p.stop().unwrap();
}

fn backend_death_during_event_wait_is_seen_in_one_select() {
    let group = EventGroup::with_kind(2, EventKind::Pollable).unwrap();
    let mut p = start(Signaller::new(&group));
    let sync = group.sync_index().unwrap();
    p.send(Message::new("die")).unwrap(); // dies instead of setting
    let t = Instant::now();
    let ready = select(
        &[sync.event().fd().unwrap(), p.pidfd().unwrap()],
        &[],
        &[],
        Some(WAIT),
    )
    .unwrap();
    assert_eq!(ready.read, [1], "the pidfd, not the event");
    assert!(t.elapsed() < WAIT);
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.exit_status().unwrap().code(), Some(9));
    // The bounded wait on the event alone also returns.
    assert!(sync.wait_timeout(Duration::from_millis(10)).is_err());
}

fn signal_during_select_loses_no_time() {
    let (reader, _writer) = std::io::pipe().unwrap(); // never written
    assert_signal_loses_no_time(|timeout| {
        !select(&[reader.as_fd()], &[], &[], Some(timeout))
            .unwrap()
            .is_empty()
    });
}

fn signal_during_wait_timeout_loses_no_time() {
    let event = Event::new().unwrap();
    assert_signal_loses_no_time(|timeout| event.wait_timeout(timeout));
}

fn select_sees_processes_and_events_together() {
    let group = EventGroup::with_kind(4, EventKind::Pollable).unwrap();
    let mut a = start(Signaller::new(&group));
    let mut b = start(Signaller::new(&group));
    let (index, event) = group.reserve().unwrap();
    a.send(message!("set", event = index)).unwrap();
    b.send(Message::new("ping")).unwrap();
    let mut seen_event = false;
    let mut seen_b = false;
    let deadline = Instant::now() + WAIT;
    while !(seen_event && seen_b) && Instant::now() < deadline {
        let ready = select(
            &[a.as_fd(), b.as_fd(), event.fd().unwrap()],
            &[],
            &[],
            Some(WAIT),
        )
        .unwrap();
        assert!(!ready.read.contains(&0), "a sent nothing");
        if ready.read.contains(&1) {
            assert_eq!(b.try_recv().unwrap().command(), "pong");
            seen_b = true;
        }
        if ready.read.contains(&2) {
            assert!(event.is_set());
            event.clear();
            seen_event = true;
        }
    }
    assert!(seen_event && seen_b);
    group.release(&event).unwrap();
    a.stop().unwrap();
    b.stop().unwrap();
}

fn select_has_no_fd_setsize_limit() {
    let event = Event::with_kind(EventKind::Pollable).unwrap();
    // SAFETY: dup2 onto a number this process does not use; the new fd is
    // owned by `high` from here on.
    let high = unsafe {
        let raw = libc::dup2(event.fd().unwrap().as_raw_fd(), 1500);
        assert_eq!(raw, 1500, "dup2: {}", std::io::Error::last_os_error());
        OwnedFd::from_raw_fd(raw)
    };
    assert!(
        select(&[high.as_fd()], &[], &[], Some(Duration::ZERO))
            .unwrap()
            .is_empty()
    );
    event.set();
    assert_eq!(
        select(&[high.as_fd()], &[], &[], Some(WAIT)).unwrap().read,
        [0]
    );
}

fn select_reports_closed_fd_as_error() {
    let (reader, writer) = std::io::pipe().unwrap();
    // SAFETY: only borrowed for the call; closed right after, on purpose,
    // to make the number invalid.
    let raw = reader.as_raw_fd();
    drop(reader);
    // SAFETY: `raw` is closed, so this borrow names no open fd; select must
    // report that as an error, not undefined behaviour.
    let stale = unsafe { BorrowedFd::borrow_raw(raw) };
    let err = select(&[stale], &[], &[], Some(Duration::ZERO)).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Io);
    drop(writer);
}

fn events_survive_many_cycles_without_leaks() {
    let warm = EventGroup::with_kind(100, EventKind::Pollable).unwrap();
    drop(start(Signaller::new(&warm)));
    drop(warm);
    let fds = open_fds();
    let maps = shared_mappings();
    for _ in 0..100 {
        let group = EventGroup::with_kind(100, EventKind::Pollable).unwrap();
        let mut p = start(Signaller::new(&group));
        for _ in 0..5 {
            let sync = group.sync_index().unwrap();
            p.send(message!("set", event = sync.index())).unwrap();
            sync.wait_timeout(WAIT).unwrap();
        }
        p.stop().unwrap();
    }
    assert_eq!(open_fds(), fds, "fds leaked");
    let grown = shared_mappings().saturating_sub(maps);
    assert!(grown < 8, "mappings grew by {grown}");
}

fn group_sizes_and_foreign_events_are_checked_with_their_kind() {
    let err = EventGroup::with_kind((1 << 20) + 1, EventKind::Futex).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidArgument, "{err}");
    let group = EventGroup::new(2).unwrap();
    let other = EventGroup::new(2).unwrap();
    let (_, foreign) = other.reserve().unwrap();
    assert_eq!(
        group.index_of(&foreign).unwrap_err().kind(),
        &ErrorKind::InvalidArgument
    );
    assert_eq!(
        group.release(&foreign).unwrap_err().kind(),
        &ErrorKind::NotReserved
    );
    let lone = Event::new().unwrap();
    assert_eq!(
        group.index_of(&lone).unwrap_err().kind(),
        &ErrorKind::InvalidArgument
    );
    assert_eq!(
        group.get(2).unwrap_err().kind(),
        &ErrorKind::InvalidArgument
    );
}
