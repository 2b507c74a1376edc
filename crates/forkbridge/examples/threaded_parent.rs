//! A tokio application that starts its worker processes from inside its
//! multi-threaded runtime, the case `Fork` refuses: with
//! `StartMethod::ForkServer` a small single-threaded server forks them,
//! so no lock held by one of the runtime's threads is copied into a worker.
//!
//! ```text
//! cargo run --example threaded_parent --features tokio
//! ```
//!
//! Four detectors count bright pixels in frames; the runtime's tasks send
//! them work concurrently, one blocking thread per detector.

use std::time::{Duration, Instant};

use forkbridge::{
    Backend, BackendContext, ErrorKind, HandlerResult, Handlers, Message, MessageProcess,
    StartMethod,
};
use serde::{Deserialize, Serialize};

/// The detector crosses to its worker as data: its settings only. What is
/// heavy (a model, a decoder) would be built in `pre_run`, in the worker.
#[derive(Serialize, Deserialize)]
struct Detector {
    threshold: u8,
    #[serde(skip)]
    frames: u64,
}

impl Detector {
    fn detect(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let pixels = msg
            .get("pixels")
            .and_then(|v| v.as_bytes())
            .ok_or("no pixels")?;
        let bright = pixels.iter().filter(|&&p| p > self.threshold).count();
        self.frames += 1;
        ctx.send(
            Message::new("detected")
                .with("bright", bright)
                .with("frames", self.frames)
                .with("pid", std::process::id()),
        )?;
        Ok(())
    }
}

impl Backend for Detector {
    fn register(h: &mut Handlers<Self>) {
        h.on("detect", Self::detect);
    }
}

fn main() -> forkbridge::Result<()> {
    // First: a spawned fork server runs this program up to here, then
    // serves forks instead of returning.
    forkbridge::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(forkbridge::Error::from)?;
    runtime.block_on(run())
}

async fn run() -> forkbridge::Result<()> {
    // From inside the runtime, Fork is refused, and says what to use.
    let refused = MessageProcess::builder("refused")
        .build_portable(Detector {
            threshold: 0,
            frames: 0,
        })?
        .start();
    match refused {
        Err(e) if matches!(e.kind(), ErrorKind::ForkWithThreads { .. }) => println!("fork: {e}"),
        other => println!("fork: unexpected {other:?}"),
    }

    let t = Instant::now();
    let mut detectors = Vec::new();
    for i in 0..4 {
        let mut p = MessageProcess::builder(format!("detector-{i}"))
            .start_method(StartMethod::ForkServer)
            .build_portable(Detector {
                threshold: 100 + 10 * i,
                frames: 0,
            })?;
        p.start()?;
        detectors.push(p);
    }
    println!("started 4 detectors with ForkServer in {:.1?}", t.elapsed());

    // Each detector's handle is driven by a blocking task of the runtime.
    let tasks: Vec<_> = detectors
        .into_iter()
        .map(|mut p| {
            tokio::task::spawn_blocking(move || -> forkbridge::Result<String> {
                let frame = vec![128u8; 64 * 1024];
                let mut last = Message::new("none");
                for _ in 0..50 {
                    p.send(Message::new("detect").with("pixels", frame.as_slice()))?;
                    last = p.recv_timeout(Duration::from_secs(10))?;
                }
                let status = p.stop()?;
                Ok(format!(
                    "{}: {} frames, {} bright pixels in the last, pid {}, {status}",
                    p.name(),
                    last.param::<u64>("frames")?,
                    last.param::<u64>("bright")?,
                    last.param::<u32>("pid")?,
                ))
            })
        })
        .collect();
    for task in tasks {
        match task.await {
            Ok(line) => println!("{}", line?),
            Err(e) => println!("task failed: {e}"),
        }
    }
    println!("all detectors stopped");
    Ok(())
}
