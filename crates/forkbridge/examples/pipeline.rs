//! The demo: a multi-process video-analysis pipeline, in one command.
//!
//! ```text
//! cargo run --release --example pipeline --features tokio -- [--workers N] [--seconds S]
//!                                                              [--frames N] [--kill-one] [--quiet]
//! ```
//!
//! - A **source** backend renders synthetic video (moving bright squares on a
//!   noisy scrolling background) into one shared-memory [`FrameRing`] per
//!   detector, giving each frame to whichever detector has room.
//! - **Detector** backends (as many as CPUs by default; the last one is an
//!   async backend running its loop in a blocking task) read each frame in
//!   place, subtract the known background, threshold, and count the blobs
//!   with a flood fill — real per-pixel work — and report every result as a
//!   typed `Detection` (`Message::with_typed`).
//! - The frontend is a [`MainContext`]: processes are forked before any
//!   thread, the main loop waits on every process and Ctrl-C at once, and
//!   `close` stops everything on every way out (a second Ctrl-C hurries it).
//!   Mid-run it asks one detector for a **snapshot** through a pair of
//!   process-shared [`Event`]s, without touching its message queue.
//! - `--kill-one` SIGKILLs a detector a third of the way in: the pipeline
//!   reports it, starts a replacement on the same ring, and the frames that
//!   ring had already accepted are analysed by the replacement — none lost.
//! - At the end: frames, frames/s, p50/p99 latency from "frame ready" to
//!   "result received", and the speed-up against the same work done in one
//!   process, measured in the same run.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use forkbridge::{
    AsyncBackend, AsyncContext, AsyncHandlers, Backend, BackendContext, Event, FrameRing,
    HandlerResult, Handlers, MainContext, Message, MessageProcess, Shutdown, message, run_main,
    wait_any,
};

const WIDTH: usize = 320;
const HEIGHT: usize = 240;
const HEADER: usize = 16; // sequence number + render time (µs since the epoch)
const FRAME: usize = HEADER + WIDTH * HEIGHT;
const SLOTS: u32 = 4;
const SQUARES: usize = 5;

// ===== the scene =====

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The background without objects: a gradient that scrolls slowly.
fn background(x: usize, y: usize, seq: u64) -> u8 {
    ((x + y + (seq / 4) as usize) % 96) as u8
}

/// Renders frame `seq` into `px`: background, a little noise, and bright
/// squares that move and bounce.
fn render(seq: u64, px: &mut [u8]) {
    let mut noise = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            px[y * WIDTH + x] = background(x, y, seq) + (noise & 7) as u8;
        }
    }
    for i in 0..SQUARES {
        let size = 10 + 3 * i;
        let span_x = (WIDTH - size) as u64;
        let span_y = (HEIGHT - size) as u64;
        let tx = (seq * (3 + i as u64) + 40 * i as u64) % (2 * span_x);
        let ty = (seq * (2 + i as u64) + 25 * i as u64) % (2 * span_y);
        let x0 = if tx < span_x { tx } else { 2 * span_x - tx } as usize;
        let y0 = if ty < span_y { ty } else { 2 * span_y - ty } as usize;
        for y in y0..y0 + size {
            px[y * WIDTH + x0..y * WIDTH + x0 + size].fill(250);
        }
    }
}

/// The detector's work: background subtraction, a threshold, and a count
/// of 4-connected blobs (squares may overlap, so up to `SQUARES`).
fn detect(seq: u64, px: &[u8], mask: &mut Vec<bool>, stack: &mut Vec<usize>) -> u32 {
    mask.clear();
    mask.extend(px.iter().enumerate().map(|(i, &p)| {
        let bg = background(i % WIDTH, i / WIDTH, seq);
        p.saturating_sub(bg) > 64
    }));
    let mut blobs = 0;
    for start in 0..mask.len() {
        if !mask[start] {
            continue;
        }
        blobs += 1;
        mask[start] = false;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % WIDTH, i / WIDTH);
            let mut visit = |j: usize| {
                if mask[j] {
                    mask[j] = false;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < WIDTH {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - WIDTH);
            }
            if y + 1 < HEIGHT {
                visit(i + WIDTH);
            }
        }
    }
    blobs
}

/// A detector's result, sent back as a typed value inside a message.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Detection {
    seq: u64,
    blobs: u32,
    /// When the source committed the frame, µs since the epoch.
    born: u64,
}

fn header(frame: &[u8]) -> (u64, u64) {
    let seq = u64::from_le_bytes(frame[..8].try_into().expect("8 bytes"));
    let born = u64::from_le_bytes(frame[8..16].try_into().expect("8 bytes"));
    (seq, born)
}

// ===== the source =====

/// Renders frames and hands each to a detector ring with room.
struct Source {
    rings: Vec<FrameRing>,
}

impl Source {
    fn stream(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let frames: u64 = msg.param("frames")?;
        let until = Instant::now() + Duration::from_millis(msg.param("ms")?);
        let mut producers = self
            .rings
            .iter()
            .map(FrameRing::producer)
            .collect::<forkbridge::Result<Vec<_>>>()?;
        let mut next = 0;
        let mut seq = 0;
        while seq < frames && Instant::now() < until {
            // The first ring with room, starting after the last one used.
            let mut placed = false;
            for k in 0..producers.len() {
                let i = (next + k) % producers.len();
                match producers[i].try_acquire() {
                    Ok(mut slot) => {
                        render(seq, &mut slot[HEADER..FRAME]);
                        slot[..8].copy_from_slice(&seq.to_le_bytes());
                        slot[8..16].copy_from_slice(&now_micros().to_le_bytes());
                        slot.commit(FRAME)?;
                        next = i + 1;
                        placed = true;
                        break;
                    }
                    Err(e) if e.kind() == &forkbridge::ErrorKind::Full => {}
                    // A dead detector: skip its ring until it is replaced.
                    Err(e) if e.is_disconnected() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if placed {
                seq += 1;
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        ctx.send(message!("rendered", frames = seq))?;
        Ok(())
    }
}

impl Backend for Source {
    fn register(h: &mut Handlers<Self>) {
        h.on("stream", Self::stream);
    }
}

// ===== the detectors =====

/// What both detector kinds share: the ring, the snapshot events, counters.
#[derive(Clone)]
struct DetectorState {
    ring: FrameRing,
    snapshot_asked: Event,
    snapshot_done: Event,
}

impl DetectorState {
    /// The detection loop: until the ring's producer is gone or `stop` is
    /// set; every result goes out through `report`.
    fn run(&self, mut report: impl FnMut(Message) -> forkbridge::Result<()>) -> HandlerResult {
        let mut consumer = self.ring.consumer()?;
        let (mut mask, mut stack) = (Vec::new(), Vec::new());
        let mut last_blobs = 0;
        loop {
            if self.snapshot_asked.is_set() {
                self.snapshot_asked.clear();
                report(message!(
                    "snapshot",
                    blobs = last_blobs,
                    pid = std::process::id()
                ))?;
                self.snapshot_done.set();
            }
            let frame = match consumer.recv_timeout(Duration::from_millis(50)) {
                Ok(frame) => frame,
                Err(e) if e.is_timeout() => continue,
                Err(e) if e.is_disconnected() => return Ok(()), // the source finished
                Err(e) => return Err(e.into()),
            };
            let (seq, born) = header(&frame);
            last_blobs = detect(seq, &frame[HEADER..], &mut mask, &mut stack);
            drop(frame);
            let detection = Detection {
                seq,
                blobs: last_blobs,
                born,
            };
            report(Message::new("result").with_typed("detection", &detection)?)?;
        }
    }
}

/// A blocking detector.
struct Detector {
    state: DetectorState,
}

impl Detector {
    fn work(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        let state = self.state.clone();
        state.run(|msg| {
            ctx.send(msg)?;
            ctx.flush()
        })
    }
}

impl Backend for Detector {
    fn register(h: &mut Handlers<Self>) {
        h.on("work", Self::work);
    }
}

/// An async detector: the CPU loop runs in a blocking task, results go
/// back through a `TaskSender`, and the async loop stays free.
struct AsyncDetector {
    state: DetectorState,
}

impl AsyncDetector {
    async fn work(&mut self, ctx: &mut AsyncContext, _: Message) -> HandlerResult {
        let state = self.state.clone();
        let out = ctx.sender();
        ctx.spawn("detection loop", async move {
            tokio::task::spawn_blocking(move || state.run(|msg| out.blocking_send(msg)))
                .await
                .map_err(|e| e.to_string())?
        });
        Ok(())
    }
}

impl AsyncBackend for AsyncDetector {
    fn register(h: &mut AsyncHandlers<Self>) {
        h.on("work", Self::work);
    }
}

// ===== the frontend =====

#[derive(Debug, Clone)]
struct Options {
    workers: usize,
    seconds: f64,
    frames: u64,
    kill_one: bool,
    quiet: bool,
}

fn parse_options() -> Result<Options, lexopt::Error> {
    use lexopt::prelude::*;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut o = Options {
        workers: cores,
        seconds: 3.0,
        frames: u64::MAX,
        kill_one: false,
        quiet: false,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('w') | Long("workers") => o.workers = parser.value()?.parse()?,
            Short('s') | Long("seconds") => o.seconds = parser.value()?.parse()?,
            Short('f') | Long("frames") => o.frames = parser.value()?.parse()?,
            Long("kill-one") => o.kill_one = true,
            Short('q') | Long("quiet") => o.quiet = true,
            Short('h') | Long("help") => {
                println!(
                    "pipeline: a multi-process video-analysis demo on forkbridge\n\n\
                     Options:\n  \
                     -w, --workers N   detector processes (default: CPUs = {cores}; the last is async)\n  \
                     -s, --seconds S   how long to stream (default 3)\n  \
                     -f, --frames N    stop after N frames\n      \
                     --kill-one    SIGKILL a detector a third of the way in, then replace it\n  \
                     -q, --quiet       no live progress line\n  \
                     -h, --help        this text\n\n\
                     Ctrl-C stops every process and exits with 130."
                );
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    o.workers = o.workers.max(1);
    Ok(o)
}

struct Pipeline {
    options: Options,
    rings: Vec<FrameRing>,
    snapshot_asked: Event,
    snapshot_done: Event,
    source: Option<MessageProcess>,
    detectors: Vec<MessageProcess>,
    results: u64,
    per_worker: Vec<u64>,
    latencies: Vec<u64>,
    seen: HashMap<u64, u32>,
    rendered: Option<u64>,
    restarted: Option<usize>,
    snapshot: Option<String>,
    elapsed: Duration,
}

impl Pipeline {
    fn detector(&self, i: usize) -> forkbridge::Result<MessageProcess> {
        let state = DetectorState {
            ring: self.rings[i].clone(),
            snapshot_asked: self.snapshot_asked.clone(),
            snapshot_done: self.snapshot_done.clone(),
        };
        let builder = MessageProcess::builder(format!("detector-{i}"))
            .ignore_sigint(true)
            .stop_timeout(Duration::from_secs(2))
            .kill_timeout(Duration::from_millis(500));
        let mut p = if i + 1 == self.options.workers && i > 0 {
            builder.build_async(AsyncDetector { state })?
        } else {
            builder.build(Detector { state })?
        };
        p.start()?;
        p.send(Message::new("work"))?;
        Ok(p)
    }

    fn on_message(&mut self, worker: usize, msg: Message) -> forkbridge::Result<()> {
        match msg.command() {
            "result" => {
                let d: Detection = msg.typed("detection")?;
                self.latencies.push(now_micros().saturating_sub(d.born));
                *self.seen.entry(d.seq).or_default() += 1;
                self.results += 1;
                self.per_worker[worker] += 1;
            }
            "snapshot" => {
                self.snapshot = Some(format!(
                    "detector {worker} (pid {}) last saw {} blobs",
                    msg.param::<u32>("pid")?,
                    msg.param::<u32>("blobs")?
                ));
            }
            "rendered" => self.rendered = Some(msg.param("frames")?),
            "error" => eprintln!("\n{msg}"),
            _ => {}
        }
        Ok(())
    }
}

impl MainContext for Pipeline {
    fn start_processes(&mut self) -> forkbridge::Result<()> {
        for i in 0..self.options.workers {
            let p = self.detector(i)?;
            self.detectors.push(p);
        }
        let mut source = MessageProcess::builder("source")
            .ignore_sigint(true)
            .stop_timeout(Duration::from_secs(2))
            .build(Source {
                rings: self.rings.clone(),
            })?;
        source.start()?;
        self.source = Some(source);
        Ok(())
    }

    fn run(&mut self, shutdown: &Shutdown) -> forkbridge::Result<()> {
        let ms = (self.options.seconds * 1000.0) as u64;
        let started = Instant::now();
        self.source.as_mut().expect("started").send(message!(
            "stream",
            frames = self.options.frames,
            ms = ms
        ))?;
        let mut kill_at = self
            .options
            .kill_one
            .then(|| started + Duration::from_millis(ms / 3));
        let mut snapshot_at = Some(started + Duration::from_millis(ms / 2));
        let mut snapshot_deadline = None;
        let mut last_line = Instant::now();
        loop {
            if shutdown.is_requested() {
                return Ok(());
            }
            let mut all: Vec<&MessageProcess> = self.detectors.iter().collect();
            all.push(self.source.as_ref().expect("started"));
            let ready = wait_any(&all, &[shutdown.fd()], Some(Duration::from_millis(100)))?;
            for i in ready.processes {
                if i == self.detectors.len() {
                    while let Some(Ok(msg)) = self.source.as_mut().map(MessageProcess::try_recv) {
                        self.on_message(i, msg)?;
                    }
                    continue;
                }
                loop {
                    match self.detectors[i].try_recv() {
                        Ok(msg) => self.on_message(i, msg)?,
                        Err(e) if e.is_empty() => break,
                        Err(e) if e.is_disconnected() => {
                            if self.rendered.is_some() {
                                break; // finished with the stream
                            }
                            println!(
                                "\ndetector-{i} died ({e}); starting a replacement on its ring"
                            );
                            self.detectors[i] = self.detector(i)?;
                            self.restarted = Some(i);
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            if kill_at.is_some_and(|t| Instant::now() >= t) {
                kill_at = None;
                if let Some(pid) = self.detectors[0].pid() {
                    println!("\nfault drill: SIGKILL detector-0 (pid {pid})");
                    let _ = std::process::Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status();
                }
            }
            if snapshot_at.is_some_and(|t| Instant::now() >= t) {
                snapshot_at = None;
                self.snapshot_done.clear();
                self.snapshot_asked.set();
                snapshot_deadline = Some(Instant::now() + Duration::from_secs(2));
            }
            if let Some(deadline) = snapshot_deadline {
                if self.snapshot_done.is_set() || Instant::now() >= deadline {
                    snapshot_deadline = None;
                }
            }
            if !self.options.quiet && last_line.elapsed() >= Duration::from_millis(250) {
                last_line = Instant::now();
                let secs = started.elapsed().as_secs_f64();
                let load: Vec<String> = self.per_worker.iter().map(u64::to_string).collect();
                print!(
                    "\r{:>6} frames  {:>6.0} frames/s  per detector [{}]   ",
                    self.results,
                    self.results as f64 / secs,
                    load.join(" ")
                );
                let _ = std::io::stdout().flush();
            }
            if let Some(rendered) = self.rendered {
                // Unique frames: a frame a killed detector was reading is
                // analysed again by its replacement.
                if self.seen.len() as u64 >= rendered {
                    self.elapsed = started.elapsed();
                    return Ok(());
                }
                // Frames rendered but lost? Give the detectors a bound.
                if started.elapsed() > Duration::from_millis(ms) + Duration::from_secs(10) {
                    self.elapsed = started.elapsed();
                    return Ok(());
                }
            }
        }
    }

    fn close(&mut self) {
        if let Some(source) = &mut self.source {
            let _ = source.stop();
        }
        // With the source gone, each detector's ring reports it after the
        // last frame, its loop ends, and the stop request is served.
        for d in &mut self.detectors {
            let _ = d.request_stop();
        }
        for d in &mut self.detectors {
            let _ = d.stop();
        }
    }
}

/// The same work in this process: render, then detect, frame by frame.
fn single_process_fps(frames: u64) -> f64 {
    let mut px = vec![0u8; WIDTH * HEIGHT];
    let (mut mask, mut stack) = (Vec::new(), Vec::new());
    let t = Instant::now();
    for seq in 0..frames {
        render(seq, &mut px);
        std::hint::black_box(detect(seq, &px, &mut mask, &mut stack));
    }
    frames as f64 / t.elapsed().as_secs_f64()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pipeline: {e} (see --help)");
            std::process::exit(2);
        }
    };
    match run(options) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("pipeline: {e}");
            std::process::exit(1);
        }
    }
}

fn run(options: Options) -> forkbridge::Result<i32> {
    // Everything shared is made before the first fork.
    let rings = (0..options.workers)
        .map(|_| FrameRing::new(SLOTS, FRAME))
        .collect::<forkbridge::Result<Vec<_>>>()?;
    let mut pipeline = Pipeline {
        per_worker: vec![0; options.workers],
        options: options.clone(),
        rings,
        snapshot_asked: Event::new()?,
        snapshot_done: Event::new()?,
        source: None,
        detectors: Vec::new(),
        results: 0,
        latencies: Vec::new(),
        seen: HashMap::new(),
        rendered: None,
        restarted: None,
        snapshot: None,
        elapsed: Duration::ZERO,
    };
    println!(
        "pipeline: 1 source + {} detectors ({} blocking, {} async), {WIDTH}x{HEIGHT} frames, {} s",
        options.workers,
        options.workers - usize::from(options.workers > 1),
        usize::from(options.workers > 1),
        options.seconds
    );
    let outcome = run_main(&mut pipeline)?;
    if let Some(sig) = outcome.signal {
        println!("\ninterrupted by signal {sig}: every process stopped");
        return Ok(outcome.exit_code());
    }
    let rendered = pipeline.rendered.unwrap_or(0);
    let analysed = pipeline.seen.len() as u64;
    let elapsed = pipeline.elapsed.as_secs_f64().max(1e-9);
    let fps = pipeline.results as f64 / elapsed;
    let mut lat = std::mem::take(&mut pipeline.latencies);
    lat.sort_unstable();
    let single = single_process_fps(rendered.clamp(50, 400));
    println!("\n");
    println!("{:<32} {:>12}", "frames rendered", rendered);
    println!("{:<32} {:>12}", "frames analysed", analysed);
    println!("{:<32} {:>12}", "results received", pipeline.results);
    println!("{:<32} {:>12.0}", "frames/s (pipeline)", fps);
    println!("{:<32} {:>12.0}", "frames/s (one process)", single);
    println!("{:<32} {:>11.2}x", "speed-up", fps / single);
    println!(
        "{:<32} {:>9} µs",
        "latency p50 (ready → result)",
        percentile(&lat, 0.50)
    );
    println!("{:<32} {:>9} µs", "latency p99", percentile(&lat, 0.99));
    for (i, n) in pipeline.per_worker.iter().enumerate() {
        println!("{:<32} {:>12}", format!("detector-{i} results"), n);
    }
    if let Some(s) = &pipeline.snapshot {
        println!("snapshot: {s}");
    }
    if let Some(i) = pipeline.restarted {
        println!(
            "fault drill: detector-{i} was killed and replaced; frames lost: {}",
            rendered - analysed
        );
    }
    println!(
        "RESULT scenario=pipeline_speedup value={fps:.0} unit=frames/s baseline={single:.0} ratio={:.3} target=>={:.1}",
        fps / single,
        0.7 * options.workers as f64
    );
    Ok(if analysed == rendered { 0 } else { 1 })
}
