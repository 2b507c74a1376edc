//! valkka-multiprocess's asyncio example, in Rust on tokio.
//!
//! valkka-multiprocess's `AsyncBackMessageProcess` docs show a `c__myStuff`
//! coroutine that, to avoid blocking the loop, starts `myStuff__` as a task
//! (wrapped in `@exclog` so a failure is logged). Here each `my_stuff`
//! command starts a slow "I/O" task (a sleep standing in for a camera or a
//! web request) with `ctx.spawn`, and the frontend sees quick commands
//! answered while the slow ones are still running; a failing task is
//! reported back as an `"error"` message; the stop gives running tasks a
//! grace period. The frontend itself is async too.
//!
//! Run it with `cargo run --example async_backend --features tokio`.

use std::time::{Duration, Instant};

use forkbridge::{
    AsyncBackend, AsyncContext, AsyncHandlers, HandlerResult, Message, MessageProcess, message,
};

struct MyProcess {
    started: u32,
}

impl MyProcess {
    /// valkka-multiprocess's `c__myStuff`: hands the slow part to a background task and
    /// returns at once, so the loop keeps serving.
    async fn my_stuff(&mut self, ctx: &mut AsyncContext, msg: Message) -> HandlerResult {
        let parameter: String = msg.param("parameter")?;
        let io_ms: u64 = msg.param("io_ms")?;
        self.started += 1;
        let out = ctx.sender();
        ctx.spawn(format!("my_stuff {parameter}"), async move {
            // DO SOME BLOCKING-ISH I/O HERE (awaited, so nothing blocks).
            tokio::time::sleep(Duration::from_millis(io_ms)).await;
            if parameter == "broken-camera" {
                return Err(format!("{parameter} did not answer").into());
            }
            out.send(message!("my_stuff_done", parameter = parameter))
                .await?;
            Ok(())
        });
        Ok(())
    }

    /// A quick command, answered while the slow tasks run.
    async fn status(&mut self, ctx: &mut AsyncContext, _: Message) -> HandlerResult {
        let reply = message!(
            "status",
            started = self.started,
            running = ctx.tasks_running()
        );
        ctx.send(reply)?;
        Ok(())
    }
}

impl AsyncBackend for MyProcess {
    fn register(handlers: &mut AsyncHandlers<Self>) {
        handlers
            .on("my_stuff", Self::my_stuff)
            .on("status", Self::status);
    }

    async fn pre_run(&mut self, ctx: &mut AsyncContext) -> HandlerResult {
        log::info!(target: ctx.log_target(), "asyncio-style loop up");
        Ok(())
    }

    async fn post_run(&mut self, ctx: &mut AsyncContext) {
        log::info!(target: ctx.log_target(), "served {} slow commands", self.started);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    forkbridge::format_logger(log::LevelFilter::Info);
    // Processes first, while this process is single-threaded...
    let mut p = MessageProcess::builder("my-process")
        .task_grace(Duration::from_millis(500))
        .build_async(MyProcess { started: 0 })?;
    p.start()?;
    // ...then the runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut p = p.into_async()?;
        let t = Instant::now();
        for camera in ["camera-1", "camera-2", "camera-3", "broken-camera"] {
            p.send(message!("my_stuff", parameter = camera, io_ms = 300))
                .await?;
        }
        p.send(Message::new("status")).await?;
        let mut done = 0;
        while done < 4 {
            let msg = p.recv_timeout(Duration::from_secs(5)).await?;
            println!("{:>6.0?}  {msg}", t.elapsed());
            if msg.command() == "my_stuff_done" || msg.is_error() {
                done += 1;
            }
        }
        println!(
            "four 300 ms tasks finished after {:.0?} (they overlapped)",
            t.elapsed()
        );
        let status = p.stop().await?;
        println!("backend stopped: {status}");
        Ok::<(), forkbridge::Error>(())
    })?;
    Ok(())
}
