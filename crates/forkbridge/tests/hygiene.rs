//! Fd and process hygiene on real forks: fds nobody takes are closed, fds
//! are close-on-exec, the child is named and inherits no other child's
//! pidfd, watched fds that fail or close do not stop or spin the loop, an
//! idle backend sleeps, and the lifecycle calls' documented corner cases.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use common::{WAIT, error_field, recv};
use forkbridge::{
    Backend, BackendContext, ErrorKind, Event, EventKind, HandlerResult, Handlers, Interest,
    Message, MessageProcess, Ready, SharedBuffer, SourceId, message,
};
use forkbridge_testkit::{alive, fd_links, open_fds};

test_main!(
    fds_a_handler_does_not_take_are_closed,
    two_fds_arrive_in_the_order_sent,
    on_ready_errors_and_panics_are_reported_and_the_loop_goes_on,
    a_watched_fd_closed_without_unwatch_neither_kills_nor_spins_the_loop,
    an_idle_backend_uses_no_cpu,
    every_fd_forkbridge_makes_or_receives_is_close_on_exec,
    the_child_is_named_after_the_first_15_bytes_of_the_process_name,
    join_and_stop_after_the_child_was_reaped_elsewhere_are_disconnected_without_status,
    join_timeout_leaves_an_idle_backend_running,
    set_ignore_sigint_works_before_start_and_is_refused_after,
    send_with_fds_refuses_17_fds_and_none,
    a_worker_inherits_no_pidfd_of_another_worker,
    stray_fds_neither_pile_up_nor_reach_a_later_message,
);

/// The backend of these cases.
#[derive(Default)]
struct Hygiene {
    /// A pipe reader the loop watches from `pre_run` on.
    pipe: Option<std::io::PipeReader>,
}

impl Hygiene {
    fn fd_count(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        ctx.send(message!("fds", n = open_fds() as u64))?;
        Ok(())
    }

    /// Leaves the message's fds where they are; reports the open fd count.
    fn ignore(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        self.fd_count(ctx, msg)
    }

    /// Reads one byte from each fd taken, in the order `take_fds` gives.
    fn read_each(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        let mut seen = String::new();
        for fd in ctx.take_fds() {
            let mut byte = [0u8; 1];
            std::fs::File::from(fd).read_exact(&mut byte)?;
            seen.push(char::from(byte[0]));
        }
        ctx.send(message!("read", bytes = seen))?;
        Ok(())
    }

    /// Reports how many fds it took and whether all are close-on-exec.
    fn cloexec(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        let fds = ctx.take_fds();
        let all = fds.iter().all(|fd| is_cloexec(fd.as_fd()));
        ctx.send(message!("cloexec", n = fds.len() as u64, all = all))?;
        Ok(())
    }

    /// Sends the reader of a new pipe made *without* close-on-exec.
    fn lend_pipe(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        let (r, _w) = inheritable_pipe();
        assert!(!is_cloexec(r.as_fd()), "the sent fd is inheritable here");
        ctx.send_with_fds(Message::new("pipe"), &[r.as_fd()])?;
        Ok(())
    }

    /// Closes the watched pipe without unwatching it.
    fn close_watched(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        // Nothing may open an fd between this close and the loop's next
        // poll: it would reuse the number, and the stale entry would watch
        // that instead of being reported invalid.
        drop(self.pipe.take());
        ctx.send(Message::new("closed"))?;
        Ok(())
    }

    fn exit(&mut self, _: &mut BackendContext, msg: Message) -> HandlerResult {
        let code: i32 = msg.param("code")?;
        // SAFETY: `_exit` ends the process at once; nothing half-done
        // matters to the test.
        unsafe { libc::_exit(code) }
    }
}

impl Backend for Hygiene {
    fn register(h: &mut Handlers<Self>) {
        h.on("fd_count", Self::fd_count)
            .on("ignore", Self::ignore)
            .on("read_each", Self::read_each)
            .on("cloexec", Self::cloexec)
            .on("lend_pipe", Self::lend_pipe)
            .on("close_watched", Self::close_watched)
            .on("exit", Self::exit);
    }

    fn pre_run(&mut self, ctx: &mut BackendContext) -> HandlerResult {
        if let Some(pipe) = &self.pipe {
            ctx.watch(pipe.as_fd(), Interest::Readable);
        }
        Ok(())
    }

    /// Each byte the frontend writes decides the outcome: `e` fails, `p`
    /// panics, anything else is echoed back.
    fn on_ready(&mut self, ctx: &mut BackendContext, source: SourceId, _: Ready) -> HandlerResult {
        let mut byte = [0u8; 1];
        let n = match &mut self.pipe {
            Some(pipe) => pipe.read(&mut byte)?,
            None => 0,
        };
        match (n, byte[0]) {
            (0, _) => {
                ctx.unwatch(source);
                ctx.send(Message::new("pipe_closed"))?;
            }
            (_, b'e') => return Err("a bad byte".into()),
            (_, b'p') => panic!("on_ready exploded"),
            (_, b) => ctx.send(message!("byte", b = u64::from(b)))?,
        }
        Ok(())
    }
}

fn start(name: &str, backend: Hygiene) -> MessageProcess {
    let mut p = MessageProcess::new(name, backend).expect("build");
    p.start().expect("start");
    p
}

fn is_cloexec(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: plain integer arguments on a borrowed, hence open, fd.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    assert!(flags >= 0, "F_GETFD: {}", std::io::Error::last_os_error());
    flags & libc::FD_CLOEXEC != 0
}

/// A pipe whose ends are *not* close-on-exec, so a received copy being
/// close-on-exec is the receiver's doing.
fn inheritable_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a writable array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: two new fds nobody else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// CPU time (user + system) `pid` has used so far.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // Fields after the parenthesised name start at the state (field 3);
    // utime and stime are fields 14 and 15.
    let fields: Vec<u64> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    // SAFETY: `sysconf` only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis((fields[0] + fields[1]) * 1000 / ticks)
}

/// The CPU time `pid` uses over one idle second.
fn cpu_over_a_second(pid: i32) -> Duration {
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(1));
    cpu_time(pid).saturating_sub(before)
}

/// A busy-polling loop would use about the whole second.
const IDLE_CPU: Duration = Duration::from_millis(100);

fn ping(p: &mut MessageProcess) {
    p.send(message!("ping", n = 1)).unwrap();
    assert_eq!(recv(p).command(), "pong");
}

fn fds_a_handler_does_not_take_are_closed() {
    let mut p = start("ignorer", Hygiene::default());
    p.send(Message::new("fd_count")).unwrap();
    let idle: u64 = recv(&mut p).param("n").unwrap();
    let (a, b) = inheritable_pipe();
    for i in 0..100 {
        p.send_with_fds(Message::new("ignore"), &[a.as_fd(), b.as_fd()])
            .unwrap();
        // The handler runs with this message's two fds still open.
        let during: u64 = recv(&mut p).param("n").unwrap();
        assert_eq!(during, idle + 2, "message {i}: earlier fds were kept");
    }
    p.send(Message::new("fd_count")).unwrap();
    assert_eq!(recv(&mut p).param::<u64>("n").unwrap(), idle);
    assert!(p.stop().unwrap().success());
}

fn two_fds_arrive_in_the_order_sent() {
    let mut p = start("order", Hygiene::default());
    let (a_r, a_w) = inheritable_pipe();
    let (b_r, b_w) = inheritable_pipe();
    std::fs::File::from(a_w).write_all(b"a").unwrap();
    std::fs::File::from(b_w).write_all(b"b").unwrap();
    p.send_with_fds(Message::new("read_each"), &[a_r.as_fd(), b_r.as_fd()])
        .unwrap();
    assert_eq!(recv(&mut p).param::<String>("bytes").unwrap(), "ab");
    // And reversed: the order is the sender's, not the fds' numbers.
    let (a_r2, a_w2) = inheritable_pipe();
    let (b_r2, b_w2) = inheritable_pipe();
    std::fs::File::from(a_w2).write_all(b"a").unwrap();
    std::fs::File::from(b_w2).write_all(b"b").unwrap();
    p.send_with_fds(Message::new("read_each"), &[b_r2.as_fd(), a_r2.as_fd()])
        .unwrap();
    assert_eq!(recv(&mut p).param::<String>("bytes").unwrap(), "ba");
    assert!(p.stop().unwrap().success());
}

fn on_ready_errors_and_panics_are_reported_and_the_loop_goes_on() {
    let (r, mut w) = std::io::pipe().unwrap();
    let mut p = start("watcher", Hygiene { pipe: Some(r) });
    w.write_all(b"x").unwrap();
    let echoed = recv(&mut p);
    assert_eq!(
        (echoed.command(), echoed.param::<u64>("b").unwrap()),
        ("byte", u64::from(b'x'))
    );

    w.write_all(b"e").unwrap();
    let err = recv(&mut p);
    assert_eq!(error_field(&err, "kind"), "handler_error");
    assert_eq!(error_field(&err, "command"), "on_ready");
    assert_eq!(error_field(&err, "error"), "a bad byte");
    assert_eq!(error_field(&err, "process"), "watcher");

    w.write_all(b"p").unwrap();
    let err = recv(&mut p);
    assert_eq!(error_field(&err, "kind"), "panic");
    assert_eq!(error_field(&err, "command"), "on_ready");
    assert_eq!(error_field(&err, "error"), "on_ready exploded");

    ping(&mut p);
    // The watch itself survived both.
    w.write_all(b"y").unwrap();
    assert_eq!(recv(&mut p).param::<u64>("b").unwrap(), u64::from(b'y'));
    assert!(alive(p.pid().unwrap()));
    assert!(p.stop().unwrap().success());
}

fn a_watched_fd_closed_without_unwatch_neither_kills_nor_spins_the_loop() {
    let (r, mut w) = std::io::pipe().unwrap();
    let mut p = start("closer", Hygiene { pipe: Some(r) });
    let pid = p.pid().unwrap();
    // The pipe is watched.
    w.write_all(b"x").unwrap();
    assert_eq!(recv(&mut p).command(), "byte");
    p.send(Message::new("close_watched")).unwrap();
    assert_eq!(recv(&mut p).command(), "closed");
    ping(&mut p);
    let used = cpu_over_a_second(pid);
    assert!(used < IDLE_CPU, "the loop spun: {used:?} of CPU in 1 s");
    ping(&mut p);
    assert_eq!(p.stop().unwrap().code(), Some(0));
}

fn an_idle_backend_uses_no_cpu() {
    let mut p = start("idle", Hygiene::default());
    ping(&mut p);
    let used = cpu_over_a_second(p.pid().unwrap());
    assert!(
        used < IDLE_CPU,
        "idle blocking backend: {used:?} of CPU in 1 s"
    );
    ping(&mut p);
    assert!(p.stop().unwrap().success());

    #[cfg(feature = "tokio")]
    {
        let mut p = MessageProcess::builder("idle-async")
            .build_async(IdleAsync)
            .unwrap();
        p.start().unwrap();
        ping(&mut p);
        let used = cpu_over_a_second(p.pid().unwrap());
        assert!(
            used < IDLE_CPU,
            "idle async backend: {used:?} of CPU in 1 s"
        );
        ping(&mut p);
        assert!(p.stop().unwrap().success());
    }
}

/// An async backend with nothing but the built-in ping.
#[cfg(feature = "tokio")]
struct IdleAsync;

#[cfg(feature = "tokio")]
impl forkbridge::AsyncBackend for IdleAsync {
    fn register(_: &mut forkbridge::AsyncHandlers<Self>) {}
}

fn every_fd_forkbridge_makes_or_receives_is_close_on_exec() {
    let mut p = start("cloexec", Hygiene::default());
    assert!(is_cloexec(p.as_fd()), "the intercom");
    assert!(is_cloexec(p.pidfd().unwrap()), "the pidfd");
    let event = Event::with_kind(EventKind::Pollable).unwrap();
    assert!(is_cloexec(event.fd().unwrap()), "a pollable event");
    let buffer = SharedBuffer::new(4096).unwrap();
    assert!(is_cloexec(buffer.fd()), "a shared buffer");

    p.send(Message::new("lend_pipe")).unwrap();
    let (msg, fds) = p.recv_with_fds(WAIT).unwrap();
    assert_eq!((msg.command(), fds.len()), ("pipe", 1));
    assert!(is_cloexec(fds[0].as_fd()), "an fd from recv_with_fds");

    let (r, w) = inheritable_pipe();
    assert!(!is_cloexec(r.as_fd()));
    p.send_with_fds(Message::new("cloexec"), &[r.as_fd(), w.as_fd()])
        .unwrap();
    let reply = recv(&mut p);
    assert_eq!(reply.param::<u64>("n").unwrap(), 2);
    assert!(
        reply.param::<bool>("all").unwrap(),
        "an fd from take_fds is inheritable"
    );
    assert!(p.stop().unwrap().success());
}

fn the_child_is_named_after_the_first_15_bytes_of_the_process_name() {
    let mut p = start("a-name-longer-than-fifteen", Hygiene::default());
    // Answering means the setup, naming included, is done.
    ping(&mut p);
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", p.pid().unwrap())).unwrap();
    assert_eq!(comm.trim_end_matches('\n'), "a-name-longer-t");
    assert!(p.stop().unwrap().success());
}

/// Reaps `pid` the way other code in the program might; returns its exit
/// code.
fn reap_behind_its_back(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; `pid` is our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status));
    libc::WEXITSTATUS(status)
}

fn assert_disconnected_at_once<T: std::fmt::Debug>(
    what: &str,
    op: impl FnOnce() -> forkbridge::Result<T>,
) {
    let t = Instant::now();
    let err = op().expect_err(what);
    assert_eq!(err.kind(), &ErrorKind::Disconnected, "{what}: {err}");
    assert!(err.exit_status().is_none(), "{what}: a status from nowhere");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "{what} took {:?}",
        t.elapsed()
    );
}

fn join_and_stop_after_the_child_was_reaped_elsewhere_are_disconnected_without_status() {
    let mut p = start("reaped-join", Hygiene::default());
    p.send(message!("exit", code = 3)).unwrap();
    assert_eq!(reap_behind_its_back(p.pid().unwrap()), 3);
    assert_disconnected_at_once("join", || p.join());

    let mut p = start("reaped-stop", Hygiene::default());
    p.send(message!("exit", code = 4)).unwrap();
    assert_eq!(reap_behind_its_back(p.pid().unwrap()), 4);
    assert_disconnected_at_once("stop", || p.stop());
    assert_disconnected_at_once("a second stop", || p.stop());
}

fn join_timeout_leaves_an_idle_backend_running() {
    let mut p = start("joined", Hygiene::default());
    ping(&mut p);
    let err = p.join_timeout(Duration::from_millis(50)).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Timeout);
    assert!(p.is_alive());
    assert!(alive(p.pid().unwrap()));
    ping(&mut p);
    assert!(p.stop().unwrap().success());
}

fn sigint(p: &MessageProcess) {
    // SAFETY: plain integers; the pid is our running child.
    assert_eq!(unsafe { libc::kill(p.pid().unwrap(), libc::SIGINT) }, 0);
}

fn set_ignore_sigint_works_before_start_and_is_refused_after() {
    use std::os::unix::process::ExitStatusExt;

    let mut p = MessageProcess::new("stoic", Hygiene::default()).unwrap();
    p.set_ignore_sigint(true).unwrap();
    p.start().unwrap();
    ping(&mut p);
    sigint(&p);
    // The signal is delivered before the backend handles the next message.
    ping(&mut p);
    assert!(p.is_alive());
    let err = p.set_ignore_sigint(false).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::AlreadyStarted);
    // Refused, so it changed nothing.
    sigint(&p);
    ping(&mut p);
    assert!(p.stop().unwrap().success());

    // Without it, the same signal ends a backend.
    let mut p = start("mortal", Hygiene::default());
    ping(&mut p);
    sigint(&p);
    let status = p.join_timeout(WAIT).unwrap();
    assert_eq!(status.signal(), Some(libc::SIGINT));
}

fn send_with_fds_refuses_17_fds_and_none() {
    let mut p = start("fd-limits", Hygiene::default());
    let (r, _w) = std::io::pipe().unwrap();
    let seventeen = [r.as_fd(); 17];
    let err = p
        .send_with_fds(Message::new("ignore"), &seventeen)
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidArgument);
    let err = p.send_with_fds(Message::new("ignore"), &[]).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidArgument);
    // Neither put anything on the wire: the next reply is the ping's.
    ping(&mut p);
    // Sixteen is the limit, not past it.
    p.send_with_fds(Message::new("cloexec"), &seventeen[..16])
        .unwrap();
    assert_eq!(recv(&mut p).param::<u64>("n").unwrap(), 16);
    assert!(p.stop().unwrap().success());
}

fn pidfds(pid: i32) -> usize {
    fd_links(pid, "anon_inode:[pidfd]").len()
}

fn a_worker_inherits_no_pidfd_of_another_worker() {
    let mut a = start("worker-a", Hygiene::default());
    let mut b = start("worker-b", Hygiene::default());
    ping(&mut a);
    ping(&mut b);
    let me = std::process::id() as i32;
    // The frontend holds both (so the link name is right on this kernel).
    assert!(pidfds(me) >= 2, "the frontend's pidfds: {}", pidfds(me));
    assert_eq!(pidfds(b.pid().unwrap()), 0, "worker B holds a pidfd");
    assert_eq!(pidfds(a.pid().unwrap()), 0, "worker A holds a pidfd");
    assert!(b.stop().unwrap().success());
    assert!(a.stop().unwrap().success());
}

/// One frame: length, `kind`, `head` (the fd count of kind 4), message.
fn raw_frame(kind: u8, head: &[u8], msg: &Message) -> Vec<u8> {
    let body = postcard::to_stdvec(msg).unwrap();
    let len = (1 + head.len() + body.len()) as u32;
    let mut frame = len.to_le_bytes().to_vec();
    frame.push(kind);
    frame.extend_from_slice(head);
    frame.extend_from_slice(&body);
    frame
}

/// Writes `frame` with `fds` attached (`SCM_RIGHTS`), whatever the frame
/// announces: what a buggy backend could do on its raw socket.
fn send_raw(socket: BorrowedFd<'_>, frame: &[u8], fds: &[BorrowedFd<'_>]) {
    let raw: Vec<libc::c_int> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let payload = std::mem::size_of_val(raw.as_slice()) as u32;
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: frame.as_ptr() as *mut libc::c_void,
        iov_len: frame.len(),
    };
    // SAFETY: a zeroed msghdr is a valid empty header, filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: `CMSG_SPACE` only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(payload) } as _;
    assert!(msg.msg_controllen <= std::mem::size_of_val(&control));
    // SAFETY: the control buffer holds one header and its fds (checked
    // above); `sendmsg` only reads `frame` through the iovec and the
    // socket is blocking, so it writes the whole small frame.
    let n = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
        std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(cmsg).cast(), raw.len());
        libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    assert_eq!(
        n,
        frame.len() as isize,
        "{}",
        std::io::Error::last_os_error()
    );
}

fn inode(fd: BorrowedFd<'_>) -> u64 {
    // SAFETY: a zeroed stat is a valid out-buffer for `fstat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live out-pointer; `fd` is open.
    assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
    st.st_ino
}

fn stray_fds_neither_pile_up_nor_reach_a_later_message() {
    let mut p = MessageProcess::builder("stray")
        .build_fn(|mut intercom| {
            let _ = intercom.send(Message::new("ready"));
            if !matches!(intercom.recv(), Ok(Some(_))) {
                return 2;
            }
            let (r, w) = std::io::pipe().unwrap();
            for i in 0..200u64 {
                let frame = raw_frame(0, &[], &message!("plain", i = i));
                send_raw(intercom.as_fd(), &frame, &[r.as_fd(), w.as_fd()]);
            }
            // A frame that announces one fd and carries two, then one
            // that carries its own.
            let (x, y, z) = (
                std::io::pipe().unwrap(),
                std::io::pipe().unwrap(),
                std::io::pipe().unwrap(),
            );
            let first = message!("first", ino = inode(x.0.as_fd()));
            send_raw(
                intercom.as_fd(),
                &raw_frame(4, &[1], &first),
                &[x.0.as_fd(), y.0.as_fd()],
            );
            let second = message!("second", ino = inode(z.0.as_fd()));
            send_raw(
                intercom.as_fd(),
                &raw_frame(4, &[1], &second),
                &[z.0.as_fd()],
            );
            while let Ok(Some(_)) = intercom.recv() {}
            0
        })
        .unwrap();
    p.start().unwrap();
    assert_eq!(recv(&mut p).command(), "ready");
    let before = open_fds();
    p.send(Message::new("go")).unwrap();
    for i in 0..200u64 {
        let msg = recv(&mut p);
        assert_eq!(
            (msg.command(), msg.param::<u64>("i").unwrap()),
            ("plain", i)
        );
    }
    let after = open_fds();
    // A frame whose bytes carried another number of fds than it announced
    // is a decode error, and its fds are closed.
    let err = p.recv_with_fds(WAIT).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Decode, "{err}");
    let (second, fds) = p.recv_with_fds(WAIT).unwrap();
    assert_eq!(second.command(), "second");
    assert_eq!(fds.len(), 1);
    let got = inode(fds[0].as_fd());
    let want = second.param::<u64>("ino").unwrap();
    drop(fds);
    assert_eq!(open_fds(), before, "the lying frame's fds stayed open");
    assert!(p.stop().unwrap().success());
    assert_eq!(after, before, "stray fds piled up in the frontend");
    assert_eq!(got, want, "the second message got another frame's fd");
}
