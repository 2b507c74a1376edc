//! Async backends on tokio, on real forks (feature "tokio").

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::{WAIT, alive, become_subreaper, error_field, open_fds, recv, try_reap, wait_until};
use forkbridge::{
    AsyncBackend, AsyncContext, AsyncHandlers, Backend, BackendContext, ErrorKind, HandlerResult,
    Handlers, Message, MessageProcess, RuntimeFlavor, message,
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
);

#[derive(Default)]
struct Worker {
    served: u64,
    fail_pre_run: bool,
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

    async fn threads(&mut self, ctx: &mut AsyncContext, _: Message) -> HandlerResult {
        let n = std::fs::read_dir("/proc/self/task")?.count();
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
            .on("block", Self::block);
    }

    async fn pre_run(&mut self, _: &mut AsyncContext) -> HandlerResult {
        if self.fail_pre_run {
            return Err("no camera list".into());
        }
        Ok(())
    }

    async fn post_run(&mut self, ctx: &mut AsyncContext) {
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
        );
    }
}

fn frontend_sigkill_takes_async_backend_along() {
    become_subreaper();
    let mut middle = MessageProcess::new("middle", Middle::default()).unwrap();
    middle.start().unwrap();
    middle.send(Message::new("spawn")).unwrap();
    let grandchild: i32 = recv(&mut middle).param("pid").unwrap();
    assert!(alive(grandchild));
    // SAFETY: plain integers; `middle` holds the unreaped child.
    unsafe { libc::kill(middle.pid().unwrap(), libc::SIGKILL) };
    assert!(
        wait_until(Duration::from_secs(1), || try_reap(grandchild)),
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
    assert_eq!(std::fs::read_dir("/proc/self/task").unwrap().count(), 1);
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
    assert!(wait_until(WAIT, || std::fs::read_dir("/proc/self/task")
        .unwrap()
        .count()
        == 1));
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
        let killer = common::signal_later(pid, libc::SIGKILL, Duration::from_millis(50));
        let err = tokio::time::timeout(WAIT, p.recv())
            .await
            .unwrap()
            .unwrap_err();
        common::reap(killer);
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
