//! Async backends on tokio, on real forks (feature "tokio").

mod common;

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::{WAIT, error_field, recv};
use forkbridge::{
    AsyncBackend, AsyncContext, AsyncHandlers, Backend, BackendContext, BoxError, ErrorKind,
    HandlerResult, Handlers, Intercom, Message, MessageProcess, RuntimeFlavor, message,
};
use forkbridge_testkit::{
    alive, open_fds, reap, set_subreaper, signal_later, threads, threads_of, try_reap, wait_until,
};

test_main!(
    async_handler_awaits_and_replies,
    builtin_ping_is_answered,
    background_tasks_overlap_and_loop_keeps_serving,
    task_error_and_panic_are_reported_with_their_label,
    handler_error_panic_and_unknown_command_are_reported,
    malformed_frames_are_reported_and_skipped,
    stop_gives_tasks_grace_then_cancels_and_runs_post_run,
    pre_run_error_exits_with_1,
    backend_exit_and_sigkill_are_disconnected,
    frontend_sigkill_takes_async_backend_along,
    multi_thread_runtime_runs_in_the_child_only,
    cycles_leak_no_fds,
    handler_blocking_the_runtime_is_stopped_within_bound,
    async_frontend_in_a_multi_thread_runtime,
    async_recv_is_cancel_safe,
    async_frontend_sees_backend_death,
    starting_after_a_multi_thread_runtime_is_refused,
    frames_past_two_kept_ones_take_the_socket_intact,
    an_async_crash_loses_nothing_that_earlier_handlers_sent,
    an_async_backend_ends_in_order_when_its_frontend_is_killed,
    async_flush_reads_while_it_waits_so_two_writers_never_deadlock,
    async_stop_escalates_to_sigkill_without_blocking_the_runtime,
    a_dropped_async_send_leaves_its_message_for_the_next_flush_or_send,
    a_dropped_async_call_loses_no_message_and_its_late_reply_is_dropped,
    async_recv_timeout_times_out_and_into_async_needs_a_started_process,
    the_default_runtime_is_current_thread_and_runs_commands_in_order,
    request_stop_ends_the_loop_after_the_handler_and_post_run_runs,
    take_fds_gives_the_fds_sent_in_order_and_closes_the_rest,
    a_task_sender_is_disconnected_once_the_loop_has_ended,
    a_handler_send_over_the_frame_limit_is_frame_too_large,
);

#[derive(Default)]
struct Worker {
    served: u64,
    fail_pre_run: bool,
    /// A pipe end `post_run` writes "post_run" to.
    marker: Option<OwnedFd>,
}

impl Worker {
    async fn sleep_reply(&mut self, ctx: &mut AsyncContext, msg: Message) -> HandlerResult {
        let ms: u64 = msg.param("ms")?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.served += 1;
        ctx.send(message!("slept", ms = ms))?;
        Ok(())
    }

    async fn slow_task(&mut self, ctx: &mut AsyncContext, msg: Message) -> HandlerResult {
        let ms: u64 = msg.param("ms")?;
        let id: u64 = msg.param("id")?;
        let out = ctx.sender();
        ctx.spawn(format!("slow {id}"), async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            out.send(message!("task_done", id = id)).await?;
            Ok(())
        });
        Ok(())
    }

    async fn failing_task(&mut self, ctx: &mut AsyncContext, msg: Message) -> HandlerResult {
        let panic: bool = msg.param("panic")?;
        ctx.spawn("camera-3 probe", async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if panic {
                panic!("task exploded");
            }
            Err("camera unreachable".into())
        });
        Ok(())
    }

    async fn fail(&mut self, _: &mut AsyncContext, _: Message) -> HandlerResult {
        tokio::task::yield_now().await;
        Err("async boom".into())
    }

    async fn panic(&mut self, _: &mut AsyncContext, _: Message) -> HandlerResult {
        tokio::task::yield_now().await;
        panic!("async kaboom");
    }

    async fn exit(&mut self, _: &mut AsyncContext, msg: Message) -> HandlerResult {
        let code: i32 = msg.param("code")?;
        // SAFETY: ends the child at once, which is the point of the test.
        unsafe { libc::_exit(code) }
    }

    /// Blocks the runtime's only thread: nothing async can save it.
    async fn block(&mut self, ctx: &mut AsyncContext, _: Message) -> HandlerResult {
        ctx.send(Message::new("blocking"))?;
        ctx.flush().await?;
        std::thread::sleep(Duration::from_secs(3600));
        Ok(())
    }

    /// Sends `n` items; after every `every` of them, flushes and pauses
    /// `pause_ms`, so the frontend regularly finds nothing to read.
    async fn burst(&mut self, ctx: &mut AsyncContext, msg: Message) -> HandlerResult {
        let every: u64 = msg.param("every")?;
        let pause: u64 = msg.param("pause_ms")?;
        for i in 0..msg.param::<u64>("n")? {
            ctx.send(message!("item", i = i))?;
            if (i + 1) % every == 0 {
                ctx.flush().await?;
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
        Ok(())
    }

    /// Sends `n` frames of 1 MiB, frame `i` filled with byte `i`.
    async fn frames(&mut self, ctx: &mut AsyncContext, msg: Message) -> HandlerResult {
        for i in 0..msg.param::<u8>("n")? {
            ctx.send(message!("frame", i = i).with("data", vec![i; 1 << 20]))?;
        }
        Ok(())
    }

    async fn big(&mut self, ctx: &mut AsyncContext, msg: Message) -> HandlerResult {
        let n: usize = msg.param("n")?;
        ctx.send(Message::new("big").with("data", vec![0xA5u8; n]))?;
        Ok(())
    }

    async fn abort(&mut self, _: &mut AsyncContext, _: Message) -> HandlerResult {
        std::process::abort();
    }

    /// Says which message it got and how much data came with it.
    async fn note(&mut self, ctx: &mut AsyncContext, msg: Message) -> HandlerResult {
        let seq: u64 = msg.param("seq")?;
        let len = msg["data"].as_bytes().ok_or("no data")?.len();
        ctx.send(message!("noted", seq = seq, len = len))?;
        Ok(())
    }

    /// A typed call that reports three steps of progress before it
    /// sleeps `ms` and returns `tag * 10`.
    async fn work(
        &mut self,
        ctx: &mut AsyncContext,
        (tag, ms): (u64, u64),
    ) -> Result<u64, BoxError> {
        for step in 0..3u64 {
            ctx.send(message!("progress", tag = tag, step = step))?;
            ctx.flush().await?;
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(tag * 10)
    }

    async fn threads(&mut self, ctx: &mut AsyncContext, _: Message) -> HandlerResult {
        let n = threads();
        ctx.send(message!("threads", n = n))?;
        Ok(())
    }
}

impl AsyncBackend for Worker {
    fn register(h: &mut AsyncHandlers<Self>) {
        h.on("sleep_reply", Self::sleep_reply)
            .on("slow_task", Self::slow_task)
            .on("failing_task", Self::failing_task)
            .on("fail", Self::fail)
            .on("panic", Self::panic)
            .on("exit", Self::exit)
            .on("threads", Self::threads)
            .on("burst", Self::burst)
            .on("frames", Self::frames)
            .on("block", Self::block)
            .on("big", Self::big)
            .on("abort", Self::abort)
            .on("note", Self::note)
            .typed("work", Self::work);
    }

    async fn pre_run(&mut self, _: &mut AsyncContext) -> HandlerResult {
        if self.fail_pre_run {
            return Err("no camera list".into());
        }
        Ok(())
    }

    async fn post_run(&mut self, ctx: &mut AsyncContext) {
        if let Some(marker) = &self.marker {
            // SAFETY: writes from a live local to our own pipe end.
            unsafe { libc::write(marker.as_raw_fd(), b"post_run".as_ptr().cast(), 8) };
        }
        let running = ctx.tasks_running();
        let _ = ctx.send(message!("bye", served = self.served, running = running));
    }
}

fn start(worker: Worker) -> MessageProcess {
    let mut p = MessageProcess::builder("async-worker")
        .task_grace(Duration::from_millis(200))
        .build_async(worker)
        .unwrap();
    p.start().unwrap();
    p
}

fn frames_past_two_kept_ones_take_the_socket_intact() {
    // The frontend keeps the first two frames, which lend from both of the
    // lane's slots: the async backend's later frames take the socket and
    // arrive intact. (That it does not wait for a slot first is checked by
    // the lane's unit tests: here it would only show as time.)
    let mut p = MessageProcess::builder("async-frames")
        .large_messages(64 << 10, 2 << 20)
        .build_async(Worker::default())
        .unwrap();
    p.start().unwrap();
    p.send(message!("frames", n = 5u8)).unwrap();
    let frames: Vec<Message> = (0..5).map(|_| recv(&mut p)).collect();
    for (i, frame) in frames.iter().enumerate() {
        let data = frame["data"].as_bytes().unwrap();
        assert!(
            data.len() == 1 << 20 && data.iter().all(|&b| usize::from(b) == i),
            "frame {i} changed"
        );
    }
    let lent = |m: &Message| matches!(&m["data"], forkbridge::Value::Bytes(b) if b.is_lent());
    assert!(
        lent(&frames[0]) && lent(&frames[1]),
        "the first two took the lane"
    );
    assert!(!frames[2..].iter().any(lent), "a frame took a kept slot");
    drop(frames);
    p.send(message!("sleep_reply", ms = 1)).unwrap();
    assert_eq!(recv(&mut p).command(), "slept");
    assert!(p.stop().unwrap().success());
}

fn async_handler_awaits_and_replies() {
    let mut p = start(Worker::default());
    p.send(message!("sleep_reply", ms = 20)).unwrap();
    assert_eq!(recv(&mut p).param::<u64>("ms").unwrap(), 20);
    assert_eq!(p.log_target(), "Worker.async-worker");
    assert!(p.stop().unwrap().success());
    assert_eq!(recv(&mut p).command(), "bye");
}

fn builtin_ping_is_answered() {
    let mut p = start(Worker::default());
    p.send(message!("ping", lis = vec![1i64, 2])).unwrap();
    let pong = recv(&mut p);
    assert_eq!(pong.command(), "pong");
    assert_eq!(pong.param::<Vec<i64>>("lis").unwrap(), [1, 2]);
    p.stop().unwrap();
}

fn background_tasks_overlap_and_loop_keeps_serving() {
    let mut p = start(Worker::default());
    let t = Instant::now();
    for id in 0..20u64 {
        p.send(message!("slow_task", ms = 300, id = id)).unwrap();
    }
    // The loop is free while the tasks sleep: a ping comes back first.
    p.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut p).command(), "pong");
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "ping waited for the tasks"
    );
    let mut ids: Vec<u64> = (0..20).map(|_| recv(&mut p).param("id").unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
    // Twenty 300 ms tasks overlapped: far less than 20 × 300 ms.
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "tasks ran one after another"
    );
    p.stop().unwrap();
}

fn task_error_and_panic_are_reported_with_their_label() {
    let mut p = start(Worker::default());
    p.send(message!("failing_task", panic = false)).unwrap();
    let e = recv(&mut p);
    assert_eq!(error_field(&e, "kind"), "task_error");
    assert_eq!(error_field(&e, "command"), "camera-3 probe");
    assert_eq!(error_field(&e, "error"), "camera unreachable");
    p.send(message!("failing_task", panic = true)).unwrap();
    let e = recv(&mut p);
    assert_eq!(error_field(&e, "kind"), "task_panic");
    assert_eq!(error_field(&e, "error"), "task exploded");
    p.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut p).command(), "pong");
    assert!(p.stop().unwrap().success());
}

fn handler_error_panic_and_unknown_command_are_reported() {
    let mut p = start(Worker::default());
    p.send(Message::new("fail")).unwrap();
    assert_eq!(error_field(&recv(&mut p), "error"), "async boom");
    p.send(Message::new("panic")).unwrap();
    let e = recv(&mut p);
    assert_eq!(error_field(&e, "kind"), "panic");
    assert_eq!(error_field(&e, "error"), "async kaboom");
    p.send(Message::new("nope")).unwrap();
    assert_eq!(error_field(&recv(&mut p), "kind"), "unknown_command");
    p.send(message!("sleep_reply", ms = 1)).unwrap();
    assert_eq!(recv(&mut p).command(), "slept");
    assert!(p.stop().unwrap().success());
}

fn malformed_frames_are_reported_and_skipped() {
    use std::io::Write;
    use std::os::fd::AsFd;
    let mut p = MessageProcess::builder("garbled-async")
        .max_frame_size(1024)
        .build_async(Worker::default())
        .unwrap();
    p.start().unwrap();
    let mut raw = std::os::unix::net::UnixStream::from(p.as_fd().try_clone_to_owned().unwrap());
    // A message frame whose body is garbage, then a frame over the limit
    // followed by its 2 KiB of junk, which must be skipped, not buffered.
    raw.write_all(&[3, 0, 0, 0, 0, 0xff, 0xff]).unwrap();
    raw.write_all(&2048u32.to_le_bytes()).unwrap();
    raw.write_all(&[0xEE; 2048]).unwrap();
    for _ in 0..2 {
        assert_eq!(error_field(&recv(&mut p), "kind"), "decode");
    }
    p.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut p).command(), "pong");
    assert!(p.stop().unwrap().success());
}

fn stop_gives_tasks_grace_then_cancels_and_runs_post_run() {
    let mut p = start(Worker::default());
    p.send(message!("slow_task", ms = 50, id = 1)).unwrap(); // finishes in grace
    p.send(message!("slow_task", ms = 60_000, id = 2)).unwrap(); // cancelled
    p.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut p).command(), "pong");
    let t = Instant::now();
    assert!(
        p.stop().unwrap().success(),
        "stopped by request, not by signal"
    );
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    assert_eq!(recv(&mut p).param::<u64>("id").unwrap(), 1);
    let bye = recv(&mut p);
    assert_eq!(bye.command(), "bye");
    assert_eq!(
        bye.param::<u64>("running").unwrap(),
        0,
        "the slow task was cancelled"
    );
}

fn pre_run_error_exits_with_1() {
    let mut p = start(Worker {
        fail_pre_run: true,
        ..Worker::default()
    });
    let e = recv(&mut p);
    assert_eq!(error_field(&e, "kind"), "pre_run");
    assert_eq!(error_field(&e, "error"), "no camera list");
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.exit_status().unwrap().code(), Some(1));
}

fn backend_exit_and_sigkill_are_disconnected() {
    let mut p = start(Worker::default());
    p.send(message!("exit", code = 4)).unwrap();
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.exit_status().unwrap().code(), Some(4));

    let mut p = start(Worker::default());
    // SAFETY: plain integers; `p` holds the unreaped child.
    unsafe { libc::kill(p.pid().unwrap(), libc::SIGKILL) };
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.exit_status().unwrap().signal(), Some(libc::SIGKILL));
}

/// A blocking backend that starts an async backend of its own.
#[derive(Default)]
struct Middle {
    child: Option<MessageProcess>,
    /// Handed to the async backend `spawn_orphan` starts.
    marker: Option<OwnedFd>,
}

impl Backend for Middle {
    fn register(h: &mut Handlers<Self>) {
        h.on(
            "spawn",
            |m: &mut Middle, ctx: &mut BackendContext, _: Message| {
                let mut p = MessageProcess::builder("grandchild").build_async(Worker::default())?;
                p.start()?;
                p.send(Message::new("ping"))?;
                p.recv_timeout(WAIT)?;
                ctx.send(message!("spawned", pid = p.pid().unwrap_or(0)))?;
                m.child = Some(p);
                Ok(())
            },
        )
        .on(
            "spawn_orphan",
            |m: &mut Middle, ctx: &mut BackendContext, _: Message| {
                let orphan = Worker {
                    marker: m.marker.take(),
                    ..Worker::default()
                };
                let mut p = MessageProcess::builder("orphan").build_async(orphan)?;
                p.start()?;
                // Leaves it in a 500 ms handler.
                p.send(message!("sleep_reply", ms = 500u64))?;
                ctx.send(message!("orphan", pid = p.pid().unwrap_or(0)))?;
                m.child = Some(p);
                Ok(())
            },
        );
    }
}

fn frontend_sigkill_takes_async_backend_along() {
    set_subreaper(true);
    let mut middle = MessageProcess::new("middle", Middle::default()).unwrap();
    middle.start().unwrap();
    middle.send(Message::new("spawn")).unwrap();
    let grandchild: i32 = recv(&mut middle).param("pid").unwrap();
    assert!(alive(grandchild));
    // SAFETY: plain integers; `middle` holds the unreaped child.
    unsafe { libc::kill(middle.pid().unwrap(), libc::SIGKILL) };
    assert!(
        wait_until(Duration::from_secs(1), || try_reap(grandchild).is_some()),
        "async grandchild outlived its parent"
    );
    assert!(middle.recv_timeout(WAIT).unwrap_err().is_disconnected());
}

fn multi_thread_runtime_runs_in_the_child_only() {
    let mut p = MessageProcess::builder("pool")
        .runtime(RuntimeFlavor::MultiThread { workers: Some(2) })
        .build_async(Worker::default())
        .unwrap();
    p.start().unwrap();
    p.send(Message::new("threads")).unwrap();
    assert!(recv(&mut p).param::<u64>("n").unwrap() >= 3);
    // The parent is still single-threaded: it can start more processes.
    assert_eq!(threads(), 1);
    let mut q = start(Worker::default());
    q.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut q).command(), "pong");
    assert!(p.stop().unwrap().success());
    assert!(q.stop().unwrap().success());
}

fn handler_blocking_the_runtime_is_stopped_within_bound() {
    let mut p = MessageProcess::builder("stuck")
        .stop_timeout(Duration::from_millis(200))
        .build_async(Worker::default())
        .unwrap();
    p.start().unwrap();
    p.send(Message::new("block")).unwrap();
    // Flushed explicitly before the handler blocked.
    assert_eq!(recv(&mut p).command(), "blocking");
    let t = Instant::now();
    assert_eq!(p.stop().unwrap().signal(), Some(libc::SIGTERM));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        t.elapsed()
    );
}

fn cycles_leak_no_fds() {
    drop(start(Worker::default()));
    let fds = open_fds();
    for i in 0..50 {
        let mut p = start(Worker::default());
        p.send(message!("slow_task", ms = 5, id = i)).unwrap();
        recv(&mut p);
        p.stop().unwrap();
    }
    assert_eq!(open_fds(), fds);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Drops a runtime and waits (bounded) until its threads are gone, so the
/// next case forks from a single-threaded process again.
fn shut_down(rt: tokio::runtime::Runtime) {
    rt.shutdown_timeout(Duration::from_secs(5));
    assert!(wait_until(WAIT, || threads() == 1));
}

fn async_frontend_in_a_multi_thread_runtime() {
    // The order rule: processes first, then the runtime.
    let a = start(Worker::default());
    let mut b = MessageProcess::new("blocking", Middle::default()).unwrap();
    b.start().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let mut a = a.into_async().unwrap();
        let mut b = b.into_async().unwrap();
        a.send(message!("sleep_reply", ms = 30)).await.unwrap();
        b.send(Message::new("ping")).await.unwrap();
        // Whichever answers first: b's pong comes before a's 30 ms sleep.
        let first = tokio::select! {
            m = a.recv() => ("a", m.unwrap()),
            m = b.recv() => ("b", m.unwrap()),
        };
        assert_eq!((first.0, first.1.command()), ("b", "pong"));
        let slept = tokio::time::timeout(WAIT, a.recv()).await.unwrap().unwrap();
        assert_eq!(slept.command(), "slept");
        assert!(a.stop().await.unwrap().success());
        assert_eq!(a.recv().await.unwrap().command(), "bye");
        assert!(a.recv().await.unwrap_err().is_disconnected());
        assert!(b.stop().await.unwrap().success());
    });
    shut_down(rt);
}

fn async_recv_is_cancel_safe() {
    let p = start(Worker::default());
    let rt = runtime();
    rt.block_on(async {
        let mut p = p.into_async().unwrap();
        // 20 bursts of 250, with 25 ms pauses between them: the 500 µs timer
        // branch wins during every pause, dropping a recv future mid-wait.
        // (5 ms pauses were too short under ASan on a slow VM: the frontend
        // was still draining the last burst when the next one began.)
        p.send(message!("burst", n = 5_000, every = 250, pause_ms = 25))
            .await
            .unwrap();
        let mut next = 0u64;
        let mut timeouts = 0u64;
        let deadline = tokio::time::Instant::now() + WAIT;
        while next < 5_000 && tokio::time::Instant::now() < deadline {
            tokio::select! {
                m = p.recv() => {
                    assert_eq!(m.unwrap().param::<u64>("i").unwrap(), next, "lost or reordered");
                    next += 1;
                }
                () = tokio::time::sleep(Duration::from_micros(500)) => timeouts += 1,
            }
        }
        assert_eq!(next, 5_000);
        assert!(
            timeouts >= 10,
            "recv futures were dropped only {timeouts} times"
        );
        p.stop().await.unwrap();
    });
    shut_down(rt);
}

fn async_frontend_sees_backend_death() {
    let p = start(Worker::default());
    let pid = p.pid().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let mut p = p.into_async().unwrap();
        let killer = signal_later(pid, libc::SIGKILL, Duration::from_millis(50));
        let err = tokio::time::timeout(WAIT, p.recv())
            .await
            .unwrap()
            .unwrap_err();
        reap(killer);
        assert_eq!(err.exit_status().unwrap().signal(), Some(libc::SIGKILL));
        assert_eq!(p.stop().await.unwrap().signal(), Some(libc::SIGKILL));
        let err = p.send(Message::new("ping")).await.unwrap_err();
        assert!(err.is_disconnected());
    });
    shut_down(rt);
}

fn starting_after_a_multi_thread_runtime_is_refused() {
    let rt = runtime();
    let mut p = MessageProcess::builder("too-late")
        .build_async(Worker::default())
        .unwrap();
    let err = p.start().unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::ForkWithThreads { threads } if *threads >= 3));
    shut_down(rt);
    // Once the runtime is gone, starting works again.
    p.start().unwrap();
    p.stop().unwrap();
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn an_async_crash_loses_nothing_that_earlier_handlers_sent() {
    let mut p = start(Worker::default());
    // 27 handlers each send 8 KiB while the frontend does not read: more
    // than the socket holds, so the loop must wait for room after each.
    for _ in 0..27 {
        p.send(message!("big", n = 8192usize)).unwrap();
    }
    p.send(Message::new("abort")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..27 {
        let msg = p
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("message {i} of 27 lost: {e}"));
        assert_eq!(msg.command(), "big");
        assert_eq!(msg["data"].as_bytes().unwrap().len(), 8192);
    }
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert_eq!(
        err.exit_status().unwrap().signal(),
        Some(libc::SIGABRT),
        "{err}"
    );
}

fn an_async_backend_ends_in_order_when_its_frontend_is_killed() {
    set_subreaper(true);
    let (mut read, write) = std::io::pipe().unwrap();
    let mut middle = MessageProcess::new(
        "middle",
        Middle {
            marker: Some(write.into()),
            ..Middle::default()
        },
    )
    .unwrap();
    middle.start().unwrap();
    middle.send(Message::new("spawn_orphan")).unwrap();
    let orphan: i32 = recv(&mut middle).param("pid").unwrap();
    // The orphan is in its 500 ms handler when its frontend is killed.
    std::thread::sleep(Duration::from_millis(50));
    common::kill_frontend_and_expect_an_orderly_end(&mut middle, orphan, &mut read);
}

/// Writes all of `bytes` to `fd`, waiting for room without ever reading:
/// a peer that does not read while it waits for room.
fn write_without_reading(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one live pollfd; a bounded wait.
        match unsafe { libc::poll(&mut pfd, 1, WAIT.as_millis() as i32) } {
            0 => return Err(std::io::ErrorKind::TimedOut.into()),
            n if n < 0 => return Err(std::io::Error::last_os_error()),
            _ => {}
        }
        // SAFETY: sends from a live slice; MSG_NOSIGNAL turns a gone peer
        // into EPIPE instead of SIGPIPE.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::WouldBlock
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            continue;
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// Echoes every message back as a raw message frame (length, kind 0, the
/// postcard body) written without reading meanwhile; so the frontend's
/// socket stays full until the frontend itself reads.
fn stubborn_echo(mut intercom: Intercom) -> i32 {
    use std::os::fd::AsFd;
    while let Ok(Some(msg)) = intercom.recv() {
        let mut reply = Message::new("echo");
        for (k, v) in msg.params() {
            reply.set(k, v.clone());
        }
        let body = postcard::to_stdvec(&reply).expect("a message encodes");
        let mut frame = u32::try_from(body.len() + 1)
            .unwrap()
            .to_le_bytes()
            .to_vec();
        frame.push(0);
        frame.extend_from_slice(&body);
        if write_without_reading(intercom.as_fd(), &frame).is_err() {
            return 1;
        }
    }
    0
}

fn async_flush_reads_while_it_waits_so_two_writers_never_deadlock() {
    const N: u64 = 128;
    let mut p = MessageProcess::builder("stubborn")
        .build_fn(stubborn_echo)
        .unwrap();
    p.start().unwrap();
    let rt = current_thread();
    rt.block_on(async {
        let mut p = p.into_async().unwrap();
        // 8 MiB of echoes without receiving: the backend stops reading once
        // the frontend's socket is full, so the sends finish only if the
        // frontend's flush reads the echoes while it waits for room.
        let sent = tokio::time::timeout(WAIT, async {
            for i in 0..N {
                p.send(message!("echo", i = i).with("data", vec![i as u8; 64 << 10]))
                    .await?;
            }
            Ok::<_, forkbridge::Error>(())
        })
        .await;
        sent.expect("the two writers deadlocked").unwrap();
        for i in 0..N {
            let echo = tokio::time::timeout(WAIT, p.recv())
                .await
                .expect("an echo within the bound")
                .unwrap();
            assert_eq!(echo.param::<u64>("i").unwrap(), i, "lost or reordered");
            let data = echo["data"].as_bytes().unwrap();
            assert!(data.len() == 64 << 10 && data.iter().all(|&b| b == i as u8));
        }
        let status = tokio::time::timeout(WAIT, p.stop()).await.unwrap().unwrap();
        assert!(status.success(), "{status:?}");
    });
    shut_down(rt);
}

fn async_stop_escalates_to_sigkill_without_blocking_the_runtime() {
    let mut p = MessageProcess::builder("stuck-blocking")
        .stop_timeout(Duration::from_millis(200))
        .kill_timeout(Duration::from_millis(200))
        .build(common::Probe::default())
        .unwrap();
    p.start().unwrap();
    p.send(Message::new("ignore_term_and_block")).unwrap();
    assert_eq!(recv(&mut p).command(), "blocking");
    let rt = current_thread();
    rt.block_on(async {
        let mut p = p.into_async().unwrap();
        let t = Instant::now();
        // The runtime's only thread must stay free during the ≥ 400 ms the
        // escalation takes: a 100 ms ticker beside it finishes first.
        let ticker = async {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Instant::now()
        };
        let stop = async {
            let status = tokio::time::timeout(WAIT, p.stop()).await;
            (status, Instant::now())
        };
        let (ticked, (status, stopped)) = tokio::join!(ticker, stop);
        let status = status.expect("stop returned").unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "stop took {:?}",
            t.elapsed()
        );
        assert!(ticked < stopped, "stop blocked the runtime");
    });
    shut_down(rt);
}

fn a_dropped_async_send_leaves_its_message_for_the_next_flush_or_send() {
    let p = start(Worker::default());
    let rt = current_thread();
    rt.block_on(async {
        let mut p = p.into_async().unwrap();
        for (seq, by_flush) in [(1u64, true), (2, false)] {
            // The backend sleeps, not reading: an 8 MiB send cannot finish
            // within 1 ms, and its future is dropped half-written.
            p.send(message!("sleep_reply", ms = 300u64)).await.unwrap();
            let big = message!("note", seq = seq).with("data", vec![7u8; 8 << 20]);
            let cut = tokio::select! {
                biased;
                r = p.send(big) => {
                    r.unwrap();
                    false
                }
                () = tokio::time::sleep(Duration::from_millis(1)) => true,
            };
            assert!(cut, "the send finished while the backend slept");
            let small = message!("note", seq = seq + 100).with("data", vec![1u8; 3]);
            if by_flush {
                tokio::time::timeout(WAIT, p.flush())
                    .await
                    .unwrap()
                    .unwrap();
                p.send(small).await.unwrap();
            } else {
                tokio::time::timeout(WAIT, p.send(small))
                    .await
                    .unwrap()
                    .unwrap();
            }
            let mut got = Vec::new();
            for _ in 0..3 {
                let m = p.recv_timeout(WAIT).await.unwrap();
                if m.command() == "noted" {
                    got.push((
                        m.param::<u64>("seq").unwrap(),
                        m.param::<u64>("len").unwrap(),
                    ));
                } else {
                    assert_eq!(m.command(), "slept");
                }
            }
            assert_eq!(got, [(seq, 8 << 20), (seq + 100, 3)], "by_flush {by_flush}");
        }
        let err = p
            .recv_timeout(Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::Timeout,
            "a message came twice: {err}"
        );
        assert!(p.stop().await.unwrap().success());
    });
    shut_down(rt);
}

fn a_dropped_async_call_loses_no_message_and_its_late_reply_is_dropped() {
    let p = start(Worker::default());
    let rt = current_thread();
    rt.block_on(async {
        let mut p = p.into_async().unwrap();
        // The call reads the progress messages while it waits for its
        // reply, then is dropped before the reply comes.
        tokio::select! {
            r = p.call::<_, u64>("work", &(1u64, 300u64), WAIT) => {
                panic!("the call ended before it was dropped: {r:?}");
            }
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        for step in 0..3u64 {
            let m = p.recv_timeout(WAIT).await.unwrap();
            assert_eq!(m.command(), "progress");
            assert_eq!(m.param::<u64>("tag").unwrap(), 1);
            assert_eq!(m.param::<u64>("step").unwrap(), step);
        }
        // The late reply (10) arrives while this call waits: it is dropped.
        let value = p.call::<_, u64>("work", &(2u64, 0u64), WAIT).await.unwrap();
        assert_eq!(value, 20, "a later call got the dropped call's reply");
        for step in 0..3u64 {
            let m = p.recv_timeout(WAIT).await.unwrap();
            assert_eq!(m.command(), "progress");
            assert_eq!(m.param::<u64>("tag").unwrap(), 2);
            assert_eq!(m.param::<u64>("step").unwrap(), step);
        }
        let err = p
            .recv_timeout(Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
        assert!(p.stop().await.unwrap().success());
    });
    shut_down(rt);
}

fn async_recv_timeout_times_out_and_into_async_needs_a_started_process() {
    let p = start(Worker::default());
    let unstarted = MessageProcess::builder("never-started")
        .build_async(Worker::default())
        .unwrap();
    let rt = current_thread();
    rt.block_on(async {
        let err = unstarted.into_async().unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::NotStarted, "{err}");
        let mut p = p.into_async().unwrap();
        let t = Instant::now();
        let err = p
            .recv_timeout(Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "returned early after {:?}",
            t.elapsed()
        );
        // Nothing was lost to the timeout: the backend still answers.
        p.send(Message::new("ping")).await.unwrap();
        assert_eq!(p.recv_timeout(WAIT).await.unwrap().command(), "pong");
        assert!(p.stop().await.unwrap().success());
    });
    shut_down(rt);
}

fn the_default_runtime_is_current_thread_and_runs_commands_in_order() {
    let mut p = MessageProcess::builder("defaults")
        .build_async(Worker::default())
        .unwrap();
    p.start().unwrap();
    // Answered from inside the loop: the runtime is built and running.
    p.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut p).command(), "pong");
    let pid = p.pid().unwrap();
    let threads = threads_of(pid);
    assert_eq!(threads, 1, "the child runs {threads} threads");
    // A slow command then a fast one: handled one after the other.
    p.send(message!("sleep_reply", ms = 300u64)).unwrap();
    p.send(message!("sleep_reply", ms = 1u64)).unwrap();
    assert_eq!(recv(&mut p).param::<u64>("ms").unwrap(), 300);
    assert_eq!(recv(&mut p).param::<u64>("ms").unwrap(), 1);
    assert!(p.stop().unwrap().success());
}

/// An async backend for the context's smaller promises.
#[derive(Default)]
struct Chores {
    /// A pipe end a blocking task reports to after the loop ended.
    marker: Option<OwnedFd>,
}

impl Chores {
    async fn stop_me(&mut self, ctx: &mut AsyncContext, _: Message) -> HandlerResult {
        ctx.request_stop();
        // The handler still runs to its end, and what it sent goes out.
        tokio::task::yield_now().await;
        ctx.send(Message::new("stopping"))?;
        Ok(())
    }

    async fn echo(&mut self, ctx: &mut AsyncContext, _: Message) -> HandlerResult {
        ctx.send(Message::new("echoed"))?;
        Ok(())
    }

    /// Writes its position into each fd it got (pipe write ends).
    async fn take(&mut self, ctx: &mut AsyncContext, _: Message) -> HandlerResult {
        use std::io::Write;
        let fds = ctx.take_fds();
        let again = ctx.take_fds().len();
        for (i, fd) in fds.iter().enumerate() {
            std::fs::File::from(fd.try_clone()?).write_all(i.to_string().as_bytes())?;
        }
        ctx.send(message!("took", n = fds.len(), again = again))?;
        Ok(())
    }

    /// Leaves its fds where they are.
    async fn ignore(&mut self, ctx: &mut AsyncContext, _: Message) -> HandlerResult {
        ctx.send(Message::new("ignored"))?;
        Ok(())
    }

    /// Starts a blocking task that sends ticks through a `TaskSender`
    /// until a send fails, then reports through the marker pipe whether
    /// that send and a `blocking_send` after it were `Disconnected`.
    async fn outlive(&mut self, ctx: &mut AsyncContext, _: Message) -> HandlerResult {
        use std::io::Write;
        let out = ctx.sender();
        let mut marker = std::fs::File::from(self.marker.take().ok_or("no marker")?);
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let failed = loop {
                if let Err(e) = handle.block_on(out.send(Message::new("tick"))) {
                    break e;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            let again = out.blocking_send(Message::new("tick"));
            let _ = write!(
                marker,
                "{} {}",
                failed.is_disconnected(),
                again.is_err_and(|e| e.is_disconnected())
            );
        });
        ctx.send(Message::new("outliving"))?;
        Ok(())
    }

    /// Sends `n` bytes (over the 4 KiB limit): reports whether the refusal
    /// was `FrameTooLarge`, then sends it again with `?`.
    async fn oversize(&mut self, ctx: &mut AsyncContext, msg: Message) -> HandlerResult {
        let big = Message::new("huge").with("data", vec![7u8; msg.param::<usize>("n")?]);
        ctx.send(Message::new("before"))?;
        let err = ctx.send(big.clone()).expect_err("sent over the limit");
        let too_large = matches!(err.kind(), ErrorKind::FrameTooLarge { max: 4096, .. });
        ctx.send(message!("refused", too_large = too_large))?;
        ctx.send(big)?;
        Ok(())
    }
}

impl AsyncBackend for Chores {
    fn register(h: &mut AsyncHandlers<Self>) {
        h.on("stop_me", Self::stop_me)
            .on("echo", Self::echo)
            .on("take", Self::take)
            .on("ignore", Self::ignore)
            .on("outlive", Self::outlive)
            .on("oversize", Self::oversize);
    }

    async fn post_run(&mut self, ctx: &mut AsyncContext) {
        let _ = ctx.send(Message::new("bye"));
    }
}

fn chores(chores: Chores) -> MessageProcess {
    let mut p = MessageProcess::builder("chores")
        .max_frame_size(4096)
        .build_async(chores)
        .unwrap();
    p.start().unwrap();
    p
}

/// Reads `reader` to its end, which must come within [`WAIT`] (every
/// write end closed).
fn read_to_end_within(reader: std::io::PipeReader) -> String {
    use std::io::Read;
    let fd = OwnedFd::from(reader);
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = Instant::now() + WAIT;
    let mut text = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // SAFETY: one live pollfd; a bounded wait.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
        assert!(
            n > 0,
            "no end of the pipe within the bound: a write end is open"
        );
        let mut buf = [0u8; 256];
        match std::fs::File::from(fd.try_clone().unwrap())
            .read(&mut buf)
            .unwrap()
        {
            0 => return String::from_utf8(text).unwrap(),
            k => text.extend_from_slice(&buf[..k]),
        }
    }
}

fn request_stop_ends_the_loop_after_the_handler_and_post_run_runs() {
    let mut p = chores(Chores::default());
    // Both commands arrive in one write: the loop must end between them.
    p.feed(Message::new("stop_me")).unwrap();
    p.send(Message::new("echo")).unwrap();
    assert_eq!(recv(&mut p).command(), "stopping");
    assert_eq!(recv(&mut p).command(), "bye", "post_run did not run next");
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected(), "the loop went on: {err}");
    assert!(err.exit_status().unwrap().success(), "{err}");
    assert!(p.stop().unwrap().success());
}

fn take_fds_gives_the_fds_sent_in_order_and_closes_the_rest() {
    use std::os::fd::AsFd;
    let mut p = chores(Chores::default());
    let (first, first_w) = std::io::pipe().unwrap();
    let (second, second_w) = std::io::pipe().unwrap();
    p.send_with_fds(Message::new("take"), &[first_w.as_fd(), second_w.as_fd()])
        .unwrap();
    drop((first_w, second_w));
    let took = recv(&mut p);
    assert_eq!(took.command(), "took", "{took}");
    assert_eq!(took.param::<u64>("n").unwrap(), 2);
    assert_eq!(took.param::<u64>("again").unwrap(), 0, "taken twice");
    assert_eq!(read_to_end_within(first), "0");
    assert_eq!(read_to_end_within(second), "1");
    // Without fds: none to take.
    p.send(Message::new("take")).unwrap();
    assert_eq!(recv(&mut p).param::<u64>("n").unwrap(), 0);
    // Fds the handler leaves are closed once it returns: the pipe ends.
    let (left, left_w) = std::io::pipe().unwrap();
    p.send_with_fds(Message::new("ignore"), &[left_w.as_fd()])
        .unwrap();
    drop(left_w);
    assert_eq!(recv(&mut p).command(), "ignored");
    assert_eq!(read_to_end_within(left), "");
    assert!(p.stop().unwrap().success());
}

fn a_task_sender_is_disconnected_once_the_loop_has_ended() {
    let (read, write) = std::io::pipe().unwrap();
    let mut p = chores(Chores {
        marker: Some(write.into()),
    });
    p.send(Message::new("outlive")).unwrap();
    // While the loop runs, the task's sends go through.
    let (mut outliving, mut ticks) = (false, 0);
    while !outliving || ticks == 0 {
        match recv(&mut p).command() {
            "outliving" => outliving = true,
            "tick" => ticks += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(p.stop().unwrap().success());
    assert_eq!(
        read_to_end_within(read),
        "true true",
        "send and blocking_send after the loop ended"
    );
}

fn a_handler_send_over_the_frame_limit_is_frame_too_large() {
    let mut p = chores(Chores::default());
    p.send(message!("oversize", n = 8192usize)).unwrap();
    assert_eq!(recv(&mut p).command(), "before");
    let refused = recv(&mut p);
    assert_eq!(refused.command(), "refused", "{refused}");
    assert!(
        refused.param::<bool>("too_large").unwrap(),
        "not FrameTooLarge"
    );
    let e = recv(&mut p);
    assert_eq!(error_field(&e, "kind"), "handler_error");
    assert_eq!(error_field(&e, "command"), "oversize");
    assert!(
        error_field(&e, "error").contains("exceeds the maximum of 4096"),
        "{e}"
    );
    // Nothing of the refused message reached the wire: the stream is whole.
    p.send(Message::new("echo")).unwrap();
    assert_eq!(recv(&mut p).command(), "echoed");
    assert!(p.stop().unwrap().success());
}
