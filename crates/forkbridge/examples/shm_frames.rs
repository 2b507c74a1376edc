//! Video-like frames through shared memory: a producer backend renders
//! synthetic frames into a `FrameRing`, the frontend reads them in place.
//!
//! valkka-multiprocess's users put camera frames in shared memory and pass only an
//! index through the pipe; a `FrameRing` is that pattern with back-pressure,
//! in-place reads and crash detection built in. The backend renders a
//! moving gradient with a bright square into each 640×480 RGB slot; the
//! frontend finds the square's centre in every frame and prints frames/s.
//!
//! Run it with `cargo run --release --example shm_frames`.

use std::time::{Duration, Instant};

use forkbridge::{
    Backend, BackendContext, FrameRing, HandlerResult, Handlers, Message, MessageProcess,
};

const WIDTH: usize = 640;
const HEIGHT: usize = 480;
const FRAME: usize = WIDTH * HEIGHT * 3;

/// The producer: a "camera" in its own process.
struct Camera {
    ring: FrameRing,
}

impl Camera {
    fn stream(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let frames: u32 = msg.param("frames")?;
        let mut producer = self.ring.producer()?;
        for n in 0..frames as usize {
            let mut slot = producer.acquire_timeout(Duration::from_secs(5))?;
            render(&mut slot[..FRAME], n);
            slot.commit(FRAME)?;
        }
        log::info!(target: ctx.log_target(), "rendered {frames} frames");
        Ok(())
    }
}

impl Backend for Camera {
    fn register(handlers: &mut Handlers<Self>) {
        handlers.on("stream", Self::stream);
    }
}

/// A gradient that scrolls with `n`, plus a white 32×32 square moving
/// diagonally.
fn render(rgb: &mut [u8], n: usize) {
    let (sx, sy) = ((n * 7) % (WIDTH - 32), (n * 5) % (HEIGHT - 32));
    for (y, row) in rgb.chunks_exact_mut(WIDTH * 3).enumerate() {
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let inside = (sx..sx + 32).contains(&x) && (sy..sy + 32).contains(&y);
            let v = if inside {
                255
            } else {
                ((x + y + n) % 200) as u8
            };
            px.copy_from_slice(&[v, v / 2, v / 3]);
        }
    }
}

/// The centre of the pixels whose red channel is 255.
fn find_square(rgb: &[u8]) -> Option<(usize, usize)> {
    let (mut sx, mut sy, mut count) = (0, 0, 0);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        if px[0] == 255 {
            sx += i % WIDTH;
            sy += i / WIDTH;
            count += 1;
        }
    }
    (count > 0).then(|| (sx / count, sy / count))
}

fn main() -> forkbridge::Result<()> {
    forkbridge::format_logger(log::LevelFilter::Info);
    // Fewer frames in a debug build (the test command runs this example).
    let frames = if cfg!(debug_assertions) { 40 } else { 300 };
    // Made before the fork: 4 slots of one frame each.
    let ring = FrameRing::new(4, FRAME)?;
    let mut camera = MessageProcess::new("camera", Camera { ring: ring.clone() })?;
    camera.start()?;
    camera.send(Message::new("stream").with("frames", frames))?;

    let mut consumer = ring.consumer()?;
    let t = Instant::now();
    let mut last = t;
    for n in 0..frames as usize {
        let frame = consumer.recv_timeout(Duration::from_secs(5))?; // in place: no copy
        let centre = find_square(&frame);
        let expected = ((n * 7) % (WIDTH - 32) + 15, (n * 5) % (HEIGHT - 32) + 15);
        if centre != Some(expected) {
            println!("frame {n}: square at {centre:?}, expected near {expected:?}");
        }
        if last.elapsed() >= Duration::from_millis(500) {
            println!(
                "{n:>4} frames, {:.0} frames/s",
                n as f64 / t.elapsed().as_secs_f64()
            );
            last = Instant::now();
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{frames} frames of {WIDTH}x{HEIGHT} RGB in {secs:.2} s: {:.0} frames/s, {:.2} GB/s through the ring",
        frames as f64 / secs,
        frames as f64 * FRAME as f64 / secs / 1e9
    );
    let status = camera.stop()?;
    println!("camera stopped: {status}");
    Ok(())
}
