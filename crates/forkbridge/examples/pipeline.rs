//! The demo: a multi-process video-analysis pipeline, in one command.
//!
//! ```text
//! cargo run --release --example pipeline --features tokio -- [--workers N] [--seconds S]
//!                                                              [--frames N] [--chaos] [--quiet]
//! ```
//!
//! - A **source** backend (async: each frame renders in a blocking task)
//!   draws synthetic video (moving bright squares on a noisy scrolling
//!   background) into the free slots of one shared-memory frame store, and
//!   says which slot holds which frame.
//! - A [`Pool`] of **detector** backends (as many as CPUs by default) takes
//!   each frame as a typed call, `DETECT(seq, slot)`: the detector reads
//!   the slot, subtracts the known background, thresholds, and counts the
//!   blobs with a flood fill — real per-pixel work — and returns a typed
//!   `Detection`. The call is marked idempotent: a detector that dies with a
//!   frame in hand costs nothing but time, because the pool sends that frame
//!   once more to another detector.
//! - A [`Supervisor`] keeps the source, restarting it if it fails.
//! - The frontend is a [`MainContext`]: processes are forked before any
//!   thread, the main loop waits on the detectors, the source and Ctrl-C in
//!   one poll, and everything stops on every way out (a second Ctrl-C
//!   hurries it). Mid-run it asks one detector for a **snapshot** through a
//!   pair of process-shared [`Event`]s, without a message.
//! - The live line shows each detector's status: state, restarts, calls in
//!   flight; one spare detector waits, started, to take a dead one's place.
//! - `--chaos` SIGKILLs a random detector every half-second: the pool
//!   replaces it at once, and the closing table shows the frames lost (0),
//!   the restarts, and the time from each kill to the replacement serving.
//! - At the end: frames, frames/s, p50/p99 latency from "frame ready" to
//!   "result received", and the speed-up against the same work done in one
//!   process, measured in the same run.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use forkbridge::{
    AsyncBackend, AsyncContext, AsyncHandlers, Backend, BackendContext, BoxError, Command, Event,
    HandlerResult, Handlers, MainContext, Message, MessageProcess, Pool, ProcessState,
    RestartPolicy, SharedBuffer, Shutdown, Supervisor, SupervisorEvent, Ticket, message, run_main,
};

const WIDTH: usize = 320;
const HEIGHT: usize = 240;
const HEADER: usize = 16; // sequence number + render time (µs since the epoch)
const FRAME: usize = HEADER + WIDTH * HEIGHT;
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

/// A detector's result: the call's typed return value.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Detection {
    seq: u64,
    blobs: u32,
    /// When the source finished the frame, µs since the epoch.
    born: u64,
}

/// Analyse the frame `seq` in slot `slot`. Idempotent: analysing a frame
/// twice changes nothing, so the pool may send it once more.
const DETECT: Command<(u64, u32), Detection> = Command::new("detect").idempotent();

fn header(frame: &[u8]) -> (u64, u64) {
    let seq = u64::from_le_bytes(frame[..8].try_into().expect("8 bytes"));
    let born = u64::from_le_bytes(frame[8..16].try_into().expect("8 bytes"));
    (seq, born)
}

// ===== the source =====

/// Renders each frame it is asked for into its slot of the frame store.
struct Source {
    frames: SharedBuffer,
}

impl Source {
    async fn render(&mut self, ctx: &mut AsyncContext, msg: Message) -> HandlerResult {
        let seq: u64 = msg.param("seq")?;
        let slot: u32 = msg.param("slot")?;
        let frames = self.frames.clone();
        let out = ctx.sender();
        ctx.spawn("render", async move {
            tokio::task::spawn_blocking(move || -> HandlerResult {
                let mut px = vec![0u8; FRAME];
                render(seq, &mut px[HEADER..]);
                let born = now_micros();
                px[..8].copy_from_slice(&seq.to_le_bytes());
                px[8..16].copy_from_slice(&born.to_le_bytes());
                frames.write_at(slot as usize * FRAME, &px)?;
                out.blocking_send(message!("rendered", seq = seq, slot = slot))?;
                Ok(())
            })
            .await?
        });
        Ok(())
    }
}

impl AsyncBackend for Source {
    fn register(h: &mut AsyncHandlers<Self>) {
        h.on("render", Self::render);
    }
}

// ===== the detectors =====

/// A pool worker: analyses the frames it is called with.
struct Detector {
    frames: SharedBuffer,
    snapshot_asked: Event,
    snapshot_done: Event,
    px: Vec<u8>,
    mask: Vec<bool>,
    stack: Vec<usize>,
    last_blobs: u32,
}

impl Detector {
    fn detect(
        &mut self,
        ctx: &mut BackendContext,
        (seq, slot): (u64, u32),
    ) -> Result<Detection, BoxError> {
        if self.snapshot_asked.is_set() {
            self.snapshot_asked.clear();
            ctx.send(message!(
                "snapshot",
                blobs = self.last_blobs,
                pid = std::process::id()
            ))?;
            self.snapshot_done.set();
        }
        self.px.resize(FRAME, 0);
        self.frames.read_at(slot as usize * FRAME, &mut self.px)?;
        let (stored, born) = header(&self.px);
        if stored != seq {
            return Err(format!("slot {slot} holds frame {stored}, not {seq}").into());
        }
        self.last_blobs = detect(seq, &self.px[HEADER..], &mut self.mask, &mut self.stack);
        Ok(Detection {
            seq,
            blobs: self.last_blobs,
            born,
        })
    }
}

impl Backend for Detector {
    fn register(h: &mut Handlers<Self>) {
        h.typed("detect", Self::detect);
    }
}

// ===== the frontend =====

#[derive(Debug, Clone)]
struct Options {
    workers: usize,
    seconds: f64,
    frames: u64,
    chaos: bool,
    quiet: bool,
}

fn parse_options() -> Result<Options, lexopt::Error> {
    use lexopt::prelude::*;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut o = Options {
        workers: cores,
        seconds: 3.0,
        frames: u64::MAX,
        chaos: false,
        quiet: false,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('w') | Long("workers") => o.workers = parser.value()?.parse()?,
            Short('s') | Long("seconds") => o.seconds = parser.value()?.parse()?,
            Short('f') | Long("frames") => o.frames = parser.value()?.parse()?,
            Long("chaos") => o.chaos = true,
            Short('q') | Long("quiet") => o.quiet = true,
            Short('h') | Long("help") => {
                println!(
                    "pipeline: a multi-process video-analysis demo on forkbridge\n\n\
                     Options:\n  \
                     -w, --workers N   detector processes in the pool (default: CPUs = {cores})\n  \
                     -s, --seconds S   how long to stream (default 3)\n  \
                     -f, --frames N    stop after N frames\n      \
                     --chaos       SIGKILL a random detector every half-second\n  \
                     -q, --quiet       no live status line\n  \
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

/// Frame slots in the store: enough to keep every detector and the source
/// busy while results travel.
fn slots(workers: usize) -> usize {
    2 * workers + 2
}

struct Pipeline {
    options: Options,
    frames: SharedBuffer,
    snapshot_asked: Event,
    snapshot_done: Event,
    supervisor: Supervisor,
    pool: Option<Pool>,
    /// Slots free for the source to fill.
    free: Vec<u32>,
    /// Slots being rendered, with their frame.
    rendering: HashMap<u32, u64>,
    /// Frames being analysed, with their slot.
    analysing: Vec<(u32, Ticket<Detection>)>,
    next_seq: u64,
    rendered: u64,
    results: u64,
    failed: u64,
    latencies: Vec<u64>,
    seen: HashMap<u64, u32>,
    kills: Vec<(Instant, String)>,
    restarts: Arc<Mutex<Vec<(Instant, String)>>>,
    snapshot: Option<String>,
    elapsed: Duration,
    /// Every process's status as the stream ended.
    last_status: Vec<forkbridge::Status>,
}

impl Pipeline {
    fn pool(&mut self) -> &mut Pool {
        self.pool.as_mut().expect("started")
    }

    /// Asks the source to fill every free slot, while the stream lasts.
    fn request_frames(&mut self, until: Instant) -> forkbridge::Result<()> {
        while self.next_seq < self.options.frames && Instant::now() < until {
            let Some(source) = self.supervisor.process("source") else {
                return Ok(()); // restarting: asked again when it is back
            };
            let Some(slot) = self.free.pop() else {
                return Ok(());
            };
            source.send(message!("render", seq = self.next_seq, slot = slot))?;
            self.rendering.insert(slot, self.next_seq);
            self.next_seq += 1;
        }
        Ok(())
    }

    /// What the source said or went through.
    fn on_source(&mut self, event: SupervisorEvent) -> forkbridge::Result<()> {
        match event {
            SupervisorEvent::Message { message, .. } if message.command() == "rendered" => {
                let seq: u64 = message.param("seq")?;
                let slot: u32 = message.param("slot")?;
                self.rendering.remove(&slot);
                self.rendered += 1;
                let ticket = self.pool().submit(DETECT.with((seq, slot)))?;
                self.analysing.push((slot, ticket));
            }
            SupervisorEvent::Message { message, .. } if message.command() == "error" => {
                eprintln!("\nsource: {message}");
            }
            SupervisorEvent::Restarted { .. } => {
                // The frames it was rendering died with it: ask again.
                for (slot, seq) in std::mem::take(&mut self.rendering) {
                    let source = self.supervisor.process("source").expect("restarted");
                    source.send(message!("render", seq = seq, slot = slot))?;
                    self.rendering.insert(slot, seq);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Takes every answered frame; its slot is free again.
    fn collect(&mut self) -> forkbridge::Result<()> {
        let mut i = 0;
        while i < self.analysing.len() {
            if !self.analysing[i].1.is_ready() {
                i += 1;
                continue;
            }
            let (slot, ticket) = self.analysing.swap_remove(i);
            match self.pool().wait(ticket) {
                Ok(d) => {
                    self.latencies.push(now_micros().saturating_sub(d.born));
                    *self.seen.entry(d.seq).or_default() += 1;
                    self.results += 1;
                }
                Err(e) => {
                    eprintln!("\na frame was lost: {e}");
                    self.failed += 1;
                }
            }
            self.free.push(slot);
        }
        Ok(())
    }

    fn status_line(&mut self, started: Instant) {
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        let workers: Vec<String> = self
            .pool()
            .status()
            .iter()
            .map(|s| {
                let state = match s.state {
                    ProcessState::Running => "up",
                    ProcessState::Standby => "spare",
                    ProcessState::Restarting => "RESTARTING",
                    other => other.as_str(),
                };
                format!(
                    "{} {state} r{} {}",
                    s.name.trim_start_matches("detector-"),
                    s.restarts,
                    s.calls_in_flight
                )
            })
            .collect();
        print!(
            "\r{:>6} frames {:>5.0}/s | {} ",
            self.results,
            self.results as f64 / secs,
            workers.join(" | ")
        );
        let _ = std::io::stdout().flush();
    }

    /// SIGKILLs a random running detector.
    fn chaos(&mut self, dice: &mut u64) {
        let running: Vec<(String, i32)> = self
            .pool()
            .status()
            .into_iter()
            .filter(|s| s.state == ProcessState::Running)
            .filter_map(|s| Some((s.name, s.pid?)))
            .collect();
        if running.is_empty() {
            return;
        }
        *dice ^= *dice << 13;
        *dice ^= *dice >> 7;
        *dice ^= *dice << 17;
        let (name, pid) = &running[(*dice % running.len() as u64) as usize];
        // SAFETY: a plain signal to a pid the pool just reported running.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
        self.kills.push((Instant::now(), name.clone()));
    }

    /// Kill → a spare (or a restart) serving in its place, per kill.
    fn recoveries(&self) -> Vec<Duration> {
        let restarts = self.restarts.lock().expect("restarts");
        self.kills
            .iter()
            .filter_map(|(killed, name)| {
                restarts
                    .iter()
                    .find(|(at, n)| n == name && at >= killed)
                    .map(|(at, _)| at.duration_since(*killed))
            })
            .collect()
    }
}

impl MainContext for Pipeline {
    fn start_processes(&mut self) -> forkbridge::Result<()> {
        let (frames, asked, done) = (
            self.frames.clone(),
            self.snapshot_asked.clone(),
            self.snapshot_done.clone(),
        );
        let restarts = Arc::clone(&self.restarts);
        self.pool = Some(
            Pool::builder("detector")
                .workers(self.options.workers)
                .max_in_flight(2)
                // Chaos kills on purpose: restart at once, every time. A
                // crash loop would deserve the default backoff and limit.
                .restart(
                    RestartPolicy::always()
                        .max_restarts(u32::MAX, Duration::from_secs(60))
                        .backoff(Duration::ZERO, Duration::ZERO),
                )
                // One spare, started and idle: it takes a killed
                // detector's place at once, and the replacement becomes
                // the new spare.
                .spares(1)
                .on_event(move |e| {
                    // When each worker that died was replaced.
                    let replaced = match e {
                        SupervisorEvent::Restarted { name, .. } => name,
                        SupervisorEvent::TookOver { replaces, .. } => replaces,
                        _ => return,
                    };
                    let mut r = restarts.lock().expect("restarts");
                    r.push((Instant::now(), replaced.clone()));
                })
                .build(move |name| {
                    MessageProcess::builder(name)
                        .ignore_sigint(true)
                        .stop_timeout(Duration::from_secs(2))
                        .kill_timeout(Duration::from_millis(500))
                        .build(Detector {
                            frames: frames.clone(),
                            snapshot_asked: asked.clone(),
                            snapshot_done: done.clone(),
                            px: Vec::new(),
                            mask: Vec::new(),
                            stack: Vec::new(),
                            last_blobs: 0,
                        })
                })?,
        );
        let frames = self.frames.clone();
        self.supervisor
            .add("source", RestartPolicy::on_failure(), move |name| {
                MessageProcess::builder(name)
                    .ignore_sigint(true)
                    .stop_timeout(Duration::from_secs(2))
                    .build_async(Source {
                        frames: frames.clone(),
                    })
            })
    }

    fn run(&mut self, shutdown: &Shutdown) -> forkbridge::Result<()> {
        let ms = (self.options.seconds * 1000.0) as u64;
        let started = Instant::now();
        let until = started + Duration::from_millis(ms);
        let mut next_chaos = self
            .options
            .chaos
            .then(|| started + Duration::from_millis(500));
        let mut dice = 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id());
        let mut snapshot_at = Some(started + Duration::from_millis(ms / 2));
        let mut last_line = Instant::now();
        loop {
            if shutdown.is_requested() {
                return Ok(());
            }
            self.request_frames(until)?;
            // One wait: the detectors (inside the pool), the source, Ctrl-C.
            let source = self.supervisor.get("source").map(AsFd::as_fd);
            let mut extra: Vec<BorrowedFd<'_>> = vec![shutdown.fd()];
            extra.extend(source);
            let pool = self.pool.as_mut().expect("started");
            pool.poll_with(&extra, Duration::from_millis(50))?;
            while let Some(event) = self.supervisor.wait_event(Duration::ZERO)? {
                self.on_source(event)?;
            }
            self.collect()?;
            let now = Instant::now();
            if next_chaos.is_some_and(|t| now >= t && now < until) {
                next_chaos = Some(now + Duration::from_millis(500));
                self.chaos(&mut dice);
            }
            if snapshot_at.is_some_and(|t| now >= t) {
                snapshot_at = None;
                self.snapshot_done.clear();
                self.snapshot_asked.set();
            }
            if last_line.elapsed() >= Duration::from_millis(250) {
                last_line = Instant::now();
                while let Ok((name, msg)) = self.pool().try_recv() {
                    if msg.command() == "snapshot" {
                        self.snapshot = Some(format!(
                            "{name} (pid {}) last saw {} blobs",
                            msg.param::<u32>("pid")?,
                            msg.param::<u32>("blobs")?
                        ));
                    }
                }
                if !self.options.quiet {
                    self.status_line(started);
                }
            }
            let streaming = self.next_seq < self.options.frames && Instant::now() < until;
            let done = !streaming && self.rendering.is_empty() && self.analysing.is_empty();
            // Frames the source never delivered? Give it a bound.
            if done || Instant::now() > until + Duration::from_secs(10) {
                self.elapsed = started.elapsed();
                let workers = self.pool().status();
                self.last_status = self.supervisor.status();
                self.last_status.extend(workers);
                return Ok(());
            }
        }
    }

    fn close(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.stop(Duration::from_secs(3));
        }
        // `run_main` stops the supervisor (the source) after this.
    }

    fn supervisor(&mut self) -> Option<&mut Supervisor> {
        Some(&mut self.supervisor)
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

fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
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
    let slots = slots(options.workers);
    let mut pipeline = Pipeline {
        options: options.clone(),
        frames: SharedBuffer::new(slots * FRAME)?,
        snapshot_asked: Event::new()?,
        snapshot_done: Event::new()?,
        supervisor: Supervisor::new().stop_timeout(Duration::from_secs(3)),
        pool: None,
        free: (0..slots as u32).rev().collect(),
        rendering: HashMap::new(),
        analysing: Vec::new(),
        next_seq: 0,
        rendered: 0,
        results: 0,
        failed: 0,
        latencies: Vec::new(),
        seen: HashMap::new(),
        kills: Vec::new(),
        restarts: Arc::default(),
        snapshot: None,
        elapsed: Duration::ZERO,
        last_status: Vec::new(),
    };
    println!(
        "pipeline: 1 async source + a pool of {} detectors, {WIDTH}x{HEIGHT} frames, {} s{}",
        options.workers,
        options.seconds,
        if options.chaos {
            ", chaos: a detector SIGKILLed every 0.5 s"
        } else {
            ""
        }
    );
    let outcome = run_main(&mut pipeline)?;
    if let Some(sig) = outcome.signal {
        println!("\ninterrupted by signal {sig}: every process stopped");
        return Ok(outcome.exit_code());
    }
    let rendered = pipeline.rendered;
    let analysed = pipeline.seen.len() as u64;
    let lost = rendered - analysed;
    let elapsed = pipeline.elapsed.as_secs_f64().max(1e-9);
    let fps = pipeline.results as f64 / elapsed;
    let mut lat = std::mem::take(&mut pipeline.latencies);
    lat.sort_unstable();
    let single = single_process_fps(rendered.clamp(50, 400));
    println!("\n");
    println!("{:<32} {:>12}", "frames rendered", rendered);
    println!("{:<32} {:>12}", "frames analysed", analysed);
    println!("{:<32} {:>12}", "frames lost", lost);
    println!("{:<32} {:>12.0}", "frames/s (pipeline)", fps);
    println!("{:<32} {:>12.0}", "frames/s (one process)", single);
    println!("{:<32} {:>11.2}x", "speed-up", fps / single);
    println!(
        "{:<32} {:>9} µs",
        "latency p50 (ready → result)",
        percentile(&lat, 0.50)
    );
    println!("{:<32} {:>9} µs", "latency p99", percentile(&lat, 0.99));
    for s in &pipeline.last_status {
        println!(
            "{:<32} {:>12}   cpu {:>6.2} s   rss {:>5.1} MiB",
            format!("{} restarts", s.name),
            s.restarts,
            s.cpu_time.unwrap_or_default().as_secs_f64(),
            s.rss_bytes.unwrap_or_default() as f64 / 1048576.0
        );
    }
    if let Some(s) = &pipeline.snapshot {
        println!("snapshot: {s}");
    }
    if options.chaos {
        let mut recoveries = pipeline.recoveries();
        recoveries.sort_unstable();
        println!(
            "chaos: {} kills, {} replacements; kill → replacement serving p50 {:?}, max {:?}",
            pipeline.kills.len(),
            recoveries.len(),
            percentile(&recoveries, 0.5),
            recoveries.last().copied().unwrap_or_default()
        );
    }
    println!("frames lost: {lost}");
    println!(
        "RESULT scenario=pipeline_speedup value={fps:.0} unit=frames/s baseline={single:.0} ratio={:.3} target=>={:.1}",
        fps / single,
        0.7 * options.workers as f64
    );
    Ok(if lost == 0 && pipeline.failed == 0 {
        0
    } else {
        1
    })
}
