//! Shared buffers made after the fork and passed to a running backend as
//! fds over the intercom (SCM_RIGHTS), on real processes.

mod common;

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use common::{error_field, recv};
use forkbridge::{
    Backend, BackendContext, ErrorKind, HandlerResult, Handlers, Message, MessageProcess,
    SharedArray, SharedBuffer, Value, message,
};
use forkbridge_testkit::{alive, fd_links, open_fds, shared_mappings, wait_until};

test_main!(
    a_buffer_made_after_the_fork_reaches_the_running_backend,
    fds_arrive_with_their_message_in_order,
    a_frame_announcing_missing_fds_is_a_typed_error,
    out_of_range_access_is_a_typed_error,
    buffers_leak_no_fd_or_mapping_on_either_side,
    a_backend_sends_a_buffer_back,
    large_messages_take_the_lane_in_order_both_ways,
    one_kept_value_leaves_the_lane_its_other_slot,
    a_backend_killed_holding_lane_slots_is_disconnected,
    received_large_bytes_are_read_in_the_slot_while_held,
    a_shaped_array_is_filled_by_the_backend,
    shapes_and_indices_are_checked_with_their_kind,
    buffers_leave_nothing_in_dev_shm_on_either_side,
);

#[derive(Debug, Default)]
struct BufferWorker {
    kept: Vec<SharedBuffer>,
}

impl BufferWorker {
    /// Maps every fd that came along, sums its bytes, stamps 0xAB over its
    /// first 16 bytes, and reports.
    fn attach(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let mut sums = Vec::new();
        for fd in ctx.take_fds() {
            let buffer = SharedBuffer::from_fd(fd)?;
            let mut bytes = vec![0u8; buffer.len()];
            buffer.read_at(0, &mut bytes)?;
            sums.push(bytes.iter().map(|&b| u64::from(b)).sum::<u64>());
            buffer.write_at(0, &[0xAB; 16])?;
            if msg.contains("keep") {
                self.kept.push(buffer);
            }
        }
        ctx.send(message!(
            "attached",
            tag = msg.param::<String>("tag")?,
            sums = sums
        ))?;
        Ok(())
    }

    /// Makes a buffer in the child, fills it, and sends it to the frontend.
    fn make(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let len: usize = msg.param("len")?;
        let buffer = SharedBuffer::new(len)?;
        let values: Vec<u32> = (0..len as u32 / 4).collect();
        buffer.write_slice(0, &values)?;
        ctx.send_with_fds(message!("made", len = len), &[buffer.fd()])?;
        Ok(())
    }

    /// Views the buffer it got as an f32 array of the given shape and
    /// writes `row * 100 + column` into every cell.
    fn fill_array(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let (rows, cols): (usize, usize) = (msg.param("rows")?, msg.param("cols")?);
        let fd = ctx.take_fds().pop().ok_or("no buffer")?;
        let array = SharedArray::<f32>::from_buffer(SharedBuffer::from_fd(fd)?, &[rows, cols])?;
        for r in 0..rows {
            let row: Vec<f32> = (0..cols).map(|c| (r * 100 + c) as f32).collect();
            array.write_range(&[r, 0], &row)?;
        }
        ctx.send(Message::new("filled"))?;
        Ok(())
    }

    fn drop_all(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        self.kept.clear();
        ctx.send(Message::new("dropped"))?;
        Ok(())
    }

    fn fds(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        let n = open_fds();
        let maps = shared_mappings();
        ctx.send(message!("fds", n = n, maps = maps))?;
        Ok(())
    }
}

impl Backend for BufferWorker {
    fn register(h: &mut Handlers<Self>) {
        h.on("attach", Self::attach)
            .on("drop_all", Self::drop_all)
            .on("fds", Self::fds)
            .on("make", Self::make)
            .on("fill_array", Self::fill_array)
            .on(
                "tag",
                |_: &mut Self, ctx: &mut BackendContext, m: Message| {
                    ctx.send(message!("tagged", tag = m.param::<String>("tag")?))?;
                    Ok(())
                },
            );
    }
}

fn start() -> MessageProcess {
    let mut p = MessageProcess::new("buffers", BufferWorker::default()).unwrap();
    p.start().unwrap();
    p
}

fn a_buffer_made_after_the_fork_reaches_the_running_backend() {
    let mut p = start();
    let buffer = SharedBuffer::new(8 << 20).unwrap();
    let pattern: Vec<u8> = (0..buffer.len()).map(|i| (i % 251) as u8).collect();
    buffer.write_at(0, &pattern).unwrap();
    p.send_with_fds(message!("attach", tag = "big"), &[buffer.fd()])
        .unwrap();
    let reply = recv(&mut p);
    assert_eq!(reply.command(), "attached", "{reply}");
    let expected: u64 = pattern.iter().map(|&b| u64::from(b)).sum();
    assert_eq!(reply.param::<Vec<u64>>("sums").unwrap(), [expected]);
    // The backend wrote into the same pages.
    let mut head = [0u8; 17];
    buffer.read_at(0, &mut head).unwrap();
    assert_eq!(&head[..16], &[0xAB; 16]);
    assert_eq!(head[16], 16);
    assert!(p.stop().unwrap().success());
}

fn fds_arrive_with_their_message_in_order() {
    let mut p = start();
    let a = SharedBuffer::new(4096).unwrap();
    let b = SharedBuffer::new(8192).unwrap();
    a.write_at(0, &[1; 10]).unwrap();
    b.write_at(0, &[2; 10]).unwrap();
    // Plain messages before, between and after, some only buffered.
    p.feed(message!("tag", tag = "first")).unwrap();
    p.send_with_fds(message!("attach", tag = "two"), &[a.fd(), b.fd()])
        .unwrap();
    p.feed(message!("tag", tag = "middle")).unwrap();
    p.send_with_fds(message!("attach", tag = "one"), &[b.fd()])
        .unwrap();
    p.send(message!("tag", tag = "last")).unwrap();
    let tags: Vec<(String, String)> = (0..5)
        .map(|_| {
            let m = recv(&mut p);
            (m.command().to_owned(), m.param::<String>("tag").unwrap())
        })
        .collect();
    assert_eq!(
        tags,
        [
            ("tagged".into(), "first".into()),
            ("attached".into(), "two".into()),
            ("tagged".into(), "middle".into()),
            ("attached".into(), "one".into()),
            ("tagged".into(), "last".into()),
        ]
    );
    let none: [std::os::fd::BorrowedFd<'_>; 0] = [];
    let err = p.send_with_fds(Message::new("attach"), &none).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidArgument);
    p.stop().unwrap();
}

fn a_frame_announcing_missing_fds_is_a_typed_error() {
    let mut p = start();
    // A hand-made "message with 3 fds" frame that carries none.
    let mut body = vec![4u8, 3];
    body.extend(postcard::to_stdvec(&Message::new("attach")).unwrap());
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend(body);
    let mut raw = UnixStream::from(p.as_fd().try_clone_to_owned().unwrap());
    raw.write_all(&frame).unwrap();
    let e = recv(&mut p);
    assert_eq!(error_field(&e, "kind"), "decode");
    p.send(message!("tag", tag = "still alive")).unwrap();
    assert_eq!(recv(&mut p).command(), "tagged");
    p.stop().unwrap();
}

fn out_of_range_access_is_a_typed_error() {
    let buffer = SharedBuffer::new(100).unwrap();
    let mut dst = [0u8; 10];
    assert_eq!(
        buffer.read_at(95, &mut dst).unwrap_err().kind(),
        &ErrorKind::InvalidArgument
    );
    assert_eq!(
        buffer.write_at(usize::MAX, &dst).unwrap_err().kind(),
        &ErrorKind::InvalidArgument
    );
    assert!(buffer.read_vec::<u64>(96, 1).is_err());
    assert_eq!(
        SharedBuffer::new(0).unwrap_err().kind(),
        &ErrorKind::InvalidArgument
    );
    // A non-memfd fd that cannot be mapped: a pipe.
    let (reader, _writer) = std::io::pipe().unwrap();
    assert!(SharedBuffer::from_fd(reader.into()).is_err());
}

fn buffers_leak_no_fd_or_mapping_on_either_side() {
    let mut p = start();
    let counts = |p: &mut MessageProcess| {
        p.send(Message::new("fds")).unwrap();
        let m = recv(p);
        (
            m.param::<u64>("n").unwrap(),
            m.param::<u64>("maps").unwrap(),
        )
    };
    // Warm up both sides.
    let warm = SharedBuffer::new(4096).unwrap();
    p.send_with_fds(message!("attach", tag = "warm", keep = true), &[warm.fd()])
        .unwrap();
    recv(&mut p);
    p.send(Message::new("drop_all")).unwrap();
    recv(&mut p);
    drop(warm);
    let (fds_before, maps_before) = counts(&mut p);
    let (mine, my_maps) = (open_fds(), shared_mappings());
    for i in 0..100 {
        let buffer = SharedBuffer::new(64 << 10).unwrap();
        p.send_with_fds(
            message!("attach", tag = "cycle", keep = i % 2 == 0),
            &[buffer.fd()],
        )
        .unwrap();
        recv(&mut p);
        if i % 10 == 9 {
            p.send(Message::new("drop_all")).unwrap();
            recv(&mut p);
        }
    }
    let (fds_after, maps_after) = counts(&mut p);
    assert_eq!(fds_after, fds_before, "backend fds leaked");
    assert!(maps_after <= maps_before + 4, "backend mappings grew");
    assert_eq!(open_fds(), mine, "frontend fds leaked");
    assert!(shared_mappings() <= my_maps + 4, "frontend mappings grew");
    p.stop().unwrap();
}

fn a_backend_sends_a_buffer_back() {
    let mut p = start();
    p.send(message!("make", len = 1 << 20)).unwrap();
    let (msg, mut fds) = p.recv_with_fds(common::WAIT).unwrap();
    assert_eq!(msg.command(), "made");
    assert_eq!(fds.len(), 1);
    let buffer = SharedBuffer::from_fd(fds.pop().unwrap()).unwrap();
    assert_eq!(buffer.len(), 1 << 20);
    let values = buffer.read_vec::<u32>(0, (1 << 20) / 4).unwrap();
    assert!(values.iter().enumerate().all(|(i, &v)| v == i as u32));
    drop(buffer);
    // `recv` closes the fds of a message it returns: nothing leaks.
    let before = open_fds();
    for _ in 0..20 {
        p.send(message!("make", len = 4096)).unwrap();
        assert_eq!(recv(&mut p).command(), "made");
    }
    assert_eq!(open_fds(), before);
    // A message without fds through recv_with_fds: an empty list.
    p.send(message!("tag", tag = "plain")).unwrap();
    let (msg, fds) = p.recv_with_fds(common::WAIT).unwrap();
    assert_eq!((msg.command(), fds.len()), ("tagged", 0));
    p.stop().unwrap();
}

/// A started echo backend whose messages of 64 KiB or more take a lane of
/// `slot_size` slots.
fn lane_echo(slot_size: usize) -> MessageProcess {
    let mut p = MessageProcess::builder("lane")
        .large_messages(64 << 10, slot_size)
        .build(common::Probe::default())
        .unwrap();
    p.start().unwrap();
    p
}

fn large_messages_take_the_lane_in_order_both_ways() {
    let mut p = lane_echo(4 << 20);
    // Large (lane), small (socket), too large for a slot (socket), and a
    // burst of large ones while both slots are busy (socket): all echoed
    // back intact and in order.
    let sizes: Vec<usize> = vec![
        1 << 20,
        10,
        6 << 20,
        3 << 20,
        2 << 20,
        1 << 20,
        100,
        4 << 20,
    ];
    for (i, &size) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..size).map(|j| (i + j) as u8).collect();
        p.feed(message!("echo", i = i).with("data", data)).unwrap();
    }
    p.flush().unwrap();
    let through_lane = p.large_messages_sent();
    assert!(
        (1..=5).contains(&through_lane),
        "{through_lane} went through the lane"
    );
    for (i, &size) in sizes.iter().enumerate() {
        let m = recv(&mut p);
        assert_eq!(m.param::<usize>("i").unwrap(), i, "out of order");
        let data = m["data"].as_bytes().unwrap();
        assert_eq!(data.len(), size);
        assert!(
            data.iter().enumerate().all(|(j, &b)| b == (i + j) as u8),
            "corrupt {i}"
        );
    }
    assert!(p.stop().unwrap().success());
}

/// A backend that owns a copy of a message made in its parent and drops
/// it on request: in the child, the copy is not the parent's to release.
struct Holder {
    held: Option<Message>,
}

impl Holder {
    fn release(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        self.held = None;
        ctx.send(Message::new("released"))?;
        Ok(())
    }
}

impl Backend for Holder {
    fn register(h: &mut Handlers<Self>) {
        h.on("release", Self::release);
    }
}

fn received_large_bytes_are_read_in_the_slot_while_held() {
    let mut p = lane_echo(2 << 20);
    let pattern =
        |i: usize, len: usize| -> Vec<u8> { (0..len).map(|j| (i * 7 + j) as u8).collect() };
    // Keep every echo: the first ones hold both of the backend's lane
    // slots, so the later ones come back through the socket (after one
    // short wait), intact and in order, while the held ones stay unchanged.
    let mut kept = Vec::new();
    for i in 0..8 {
        p.send(message!("echo", i = i).with("data", pattern(i, 1 << 20)))
            .unwrap();
        kept.push(recv(&mut p));
    }
    let lent = |m: &Message| matches!(&m["data"], Value::Bytes(b) if b.is_lent());
    assert!(lent(&kept[0]), "the first echo was copied out of the lane");
    assert!(!lent(&kept[7]), "both slots are held: the socket took it");
    for (i, m) in kept.iter().enumerate() {
        assert_eq!(m.param::<usize>("i").unwrap(), i, "out of order");
        assert!(
            m["data"].as_bytes().unwrap() == pattern(i, 1 << 20),
            "echo {i} changed"
        );
    }
    // A message held across a fork: moved into a backend, so both the
    // parent's copy (dropped by `start`) and the child's (dropped in a
    // handler) go, in two processes. Neither may free the slot — the child
    // may still read it when the parent drops — so the slot stays taken and
    // the echoes below come through the socket. Had either copy freed it,
    // they would come through the lane again.
    let first = kept.remove(0);
    let mut child = MessageProcess::new("holder", Holder { held: Some(first) }).unwrap();
    child.start().unwrap();
    child.send(Message::new("release")).unwrap();
    assert_eq!(recv(&mut child).command(), "released");
    assert!(child.stop().unwrap().success());
    kept.clear(); // received before the fork, too: their slot is kept
    for i in 8..12 {
        p.send(message!("echo", i = i).with("data", pattern(i, 1 << 20)))
            .unwrap();
        let m = recv(&mut p);
        assert!(!lent(&m), "echo {i} took a slot freed by a copy");
        assert!(
            m["data"].as_bytes().unwrap() == pattern(i, 1 << 20),
            "echo {i} changed"
        );
    }
    assert!(p.stop().unwrap().success());

    // Without a fork, a dropped message frees its slot: the lane is used
    // again.
    let mut p = lane_echo(2 << 20);
    for i in 0..6 {
        p.send(message!("echo", i = i).with("data", pattern(i, 1 << 20)))
            .unwrap();
        let m = recv(&mut p);
        assert!(lent(&m), "echo {i} not through the lane");
        assert!(
            m["data"].as_bytes().unwrap() == pattern(i, 1 << 20),
            "echo {i} changed"
        );
    }
    assert!(p.stop().unwrap().success());
}

fn one_kept_value_leaves_the_lane_its_other_slot() {
    // A receiver that keeps one frame (the previous one, to compare with)
    // and drops the rest: every frame still takes the lane, intact.
    let mut p = lane_echo(2 << 20);
    let frame = |i: usize| vec![i as u8; 1 << 20];
    p.send(message!("echo", i = 0).with("data", frame(0)))
        .unwrap();
    let kept = recv(&mut p);
    for i in 1..10 {
        p.send(message!("echo", i = i).with("data", frame(i)))
            .unwrap();
        let m = recv(&mut p);
        assert!(
            matches!(&m["data"], Value::Bytes(b) if b.is_lent()),
            "echo {i} took the socket"
        );
        assert!(
            m["data"].as_bytes().unwrap() == frame(i),
            "echo {i} changed"
        );
    }
    assert!(
        kept["data"].as_bytes().unwrap() == frame(0),
        "the kept echo changed"
    );
    assert_eq!(p.large_messages_sent(), 10);
    drop(kept);
    assert!(p.stop().unwrap().success());
}

fn a_backend_killed_holding_lane_slots_is_disconnected() {
    // The backend is busy in a handler, so two large messages fill both
    // its slots; it dies without freeing them. The sender is told, bounded,
    // instead of waiting for a slot forever.
    use std::os::unix::process::ExitStatusExt;
    let mut p = lane_echo(2 << 20);
    let pid = p.pid().unwrap();
    p.send(message!("sleep", ms = 60_000)).unwrap();
    for i in 0..2 {
        p.send(message!("echo", i = i).with("data", vec![1u8; 1 << 20]))
            .unwrap();
    }
    assert_eq!(p.large_messages_sent(), 2);
    // SAFETY: plain integers; `pid` is our unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(wait_until(common::WAIT, || !alive(pid)));
    let started = std::time::Instant::now();
    let err = p
        .send(message!("echo", i = 2).with("data", vec![1u8; 1 << 20]))
        .unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    assert!(started.elapsed() < common::WAIT, "waited for a dead reader");
    assert_eq!(p.stop().unwrap().signal(), Some(libc::SIGKILL));
}

fn a_shaped_array_is_filled_by_the_backend() {
    let mut p = start();
    let array = SharedArray::<f32>::new(&[6, 9]).unwrap();
    p.send_with_fds(
        message!("fill_array", rows = 6, cols = 9),
        &[array.buffer().fd()],
    )
    .unwrap();
    assert_eq!(recv(&mut p).command(), "filled");
    assert_eq!(array.get(&[5, 8]).unwrap(), 508.0);
    assert_eq!(array.read_range(&[2, 0], 9).unwrap()[3], 203.0);
    assert!(array.get(&[6, 0]).is_err());
    assert!(array.get(&[0]).is_err());
    assert!(array.read_range(&[5, 1], 9).is_err(), "runs past the end");
    let too_small = SharedBuffer::new(16).unwrap();
    assert!(SharedArray::<f32>::from_buffer(too_small, &[6, 9]).is_err());
    p.stop().unwrap();
}

fn shapes_and_indices_are_checked_with_their_kind() {
    use forkbridge::{ErrorKind, SharedArray, SharedBuffer};
    for shape in [&[][..], &[0], &[4, 0], &[usize::MAX, 2]] {
        let err = SharedArray::<f32>::new(shape).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidArgument, "{shape:?}");
    }
    let a = SharedArray::<u16>::new(&[2, 3]).unwrap();
    let invalid = |r: forkbridge::Result<()>| r.unwrap_err().kind() == &ErrorKind::InvalidArgument;
    assert!(invalid(a.set(&[2, 0], 1)), "row past the end");
    assert!(invalid(a.set(&[0, 3], 1)), "column past the end");
    assert!(invalid(a.set(&[0], 1)), "too few dimensions");
    assert!(invalid(a.get(&[1, 2, 0]).map(drop)), "too many dimensions");
    assert!(
        invalid(a.write_range(&[1, 1], &[1, 2, 3])),
        "a range past the end"
    );
    assert!(invalid(a.read_range(&[0, 0], 7).map(drop)), "7 of 6 values");
    a.write_range(&[0, 0], &[1, 2, 3, 4, 5, 6]).unwrap();
    assert_eq!(a.get(&[1, 0]).unwrap(), 4, "row-major");
    let small = SharedBuffer::new(8).unwrap();
    let err = SharedArray::<u64>::from_buffer(small, &[2]).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidArgument);
}

/// The names in `/dev/shm`.
fn dev_shm_names() -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn buffers_leave_nothing_in_dev_shm_on_either_side() {
    // A buffer unlinked at once would not show in `/dev/shm` either, but
    // its fd would still point there: check both, in both processes, while
    // the buffers live and after they are gone.
    let before = dev_shm_names();
    let mut p = start();
    let pid = p.pid().unwrap();
    let mut mine = Vec::new();
    for i in 0..10 {
        let buffer = SharedBuffer::new(64 << 10).unwrap();
        p.send_with_fds(
            message!("attach", tag = "kept", keep = true),
            &[buffer.fd()],
        )
        .unwrap();
        assert_eq!(recv(&mut p).command(), "attached", "buffer {i}");
        mine.push(buffer);
        p.send(message!("make", len = 4096)).unwrap();
        let (msg, mut fds) = p.recv_with_fds(common::WAIT).unwrap();
        assert_eq!((msg.command(), fds.len()), ("made", 1));
        mine.push(SharedBuffer::from_fd(fds.pop().unwrap()).unwrap());
    }
    let shm_links = |pid: i32| fd_links(pid, "/dev/shm");
    let memfds = |pid: i32| fd_links(pid, "/memfd:").len();
    assert_eq!(shm_links(pid), Vec::<String>::new(), "backend");
    assert_eq!(shm_links(std::process::id() as i32), Vec::<String>::new());
    assert!(memfds(pid) >= 10, "the backend holds no memfd");
    assert!(memfds(std::process::id() as i32) >= 20, "we hold no memfd");
    let during: Vec<String> = dev_shm_names().difference(&before).cloned().collect();
    assert_eq!(during, Vec::<String>::new(), "named while alive");
    p.send(Message::new("drop_all")).unwrap();
    assert_eq!(recv(&mut p).command(), "dropped");
    assert_eq!(memfds(pid), 0, "the backend kept a buffer's fd");
    drop(mine);
    assert!(p.stop().unwrap().success());
    assert_eq!(
        memfds(std::process::id() as i32),
        0,
        "we kept a buffer's fd"
    );
    let after: Vec<String> = dev_shm_names().difference(&before).cloned().collect();
    assert_eq!(after, Vec::<String>::new(), "left in /dev/shm");
}
