//! Detectors on another host: the same pipeline, local or remote, where
//! only the way the detectors start differs.
//!
//! ```sh
//! # both "hosts" on this machine (the detectors' host is a second process, on loopback):
//! cargo run --release -p forkbridge-zenoh --example remote
//! # the same pipeline with local detectors, for comparison:
//! cargo run --release -p forkbridge-zenoh --example remote -- local
//! # two machines: on the detectors' host, then on the frontend's host:
//! cargo run --release -p forkbridge-zenoh --example remote -- serve tcp/0.0.0.0:7447
//! cargo run --release -p forkbridge-zenoh --example remote -- frontend tcp/<detectors-host>:7447
//! ```
//!
//! The frontend makes synthetic 160×120 grey frames and sends each to a
//! detector as a typed call; the detector counts the bright blobs and
//! answers. Frames cross as bytes in messages (shared memory stays on its
//! host); at this size that is 19 KB a frame. With real video, let the
//! detectors' host read and decode the camera itself and send back only
//! the results.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use forkbridge::{MessageProcess, Result};
use forkbridge_zenoh::{Config, Link, serve};
use serde::{Deserialize, Serialize};

const WIDTH: usize = 160;
const HEIGHT: usize = 120;
const DETECTORS: usize = 2;
const FRAMES: u64 = 2_000;
const NAMESPACE: &str = "remote-example";

/// What a detector finds in a frame.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Detection {
    pub seq: u64,
    pub blobs: u32,
}

/// A detector: the same backend, wherever it runs.
#[derive(Debug, Default)]
pub struct Detector {
    frames: u64,
}

#[forkbridge::handlers(frontend = DetectorClient)]
impl Detector {
    /// Counts 8×8 tiles brighter than 200 on average.
    pub fn detect(&mut self, seq: u64, frame: Vec<u8>) -> Detection {
        self.frames += 1;
        let mut blobs = 0;
        for ty in 0..HEIGHT / 8 {
            for tx in 0..WIDTH / 8 {
                let mut sum = 0u32;
                for y in 0..8 {
                    let row = (ty * 8 + y) * WIDTH + tx * 8;
                    sum += frame[row..row + 8]
                        .iter()
                        .map(|&p| u32::from(p))
                        .sum::<u32>();
                }
                if sum / 64 > 200 {
                    blobs += 1;
                }
            }
        }
        Detection { seq, blobs }
    }

    /// Frames seen so far.
    pub fn frames(&mut self) -> u64 {
        self.frames
    }
}

/// The pipeline: frames round-robin over the detectors, one thread per
/// detector, every answer checked. It neither knows nor cares where the
/// detectors run.
fn pipeline(detectors: Vec<DetectorClient>) -> Result<()> {
    let t = Instant::now();
    let n = detectors.len() as u64;
    let workers: Vec<_> = detectors
        .into_iter()
        .enumerate()
        .map(|(i, mut d)| {
            std::thread::spawn(move || -> Result<(u64, u64)> {
                d.set_timeout(Duration::from_secs(10));
                let mut blobs = 0u64;
                let mut seq = i as u64;
                while seq < FRAMES {
                    let found = d.detect(seq, frame(seq))?;
                    assert_eq!(found.seq, seq);
                    blobs += u64::from(found.blobs);
                    seq += n;
                }
                let seen = d.frames()?;
                d.into_process().stop()?;
                Ok((seen, blobs))
            })
        })
        .collect();
    let mut frames = 0;
    let mut blobs = 0;
    for w in workers {
        let (seen, found) = w.join().expect("a detector thread")?;
        frames += seen;
        blobs += found;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{frames} frames ({:.1} MB) through {n} detectors in {secs:.2} s: {:.0} frames/s, {blobs} blobs",
        (frames as usize * WIDTH * HEIGHT) as f64 / 1e6,
        frames as f64 / secs
    );
    Ok(())
}

/// A synthetic frame: dark, with a bright square that moves.
fn frame(seq: u64) -> Vec<u8> {
    let mut f = vec![20u8; WIDTH * HEIGHT];
    let x0 = (seq as usize * 3) % (WIDTH - 24);
    for y in 40..64 {
        for x in x0..x0 + 24 {
            f[y * WIDTH + x] = 250;
        }
    }
    f
}

fn names() -> Vec<String> {
    (0..DETECTORS).map(|i| format!("detector-{i}")).collect()
}

/// The detectors' host: serves them until their frontend stops them.
fn serve_detectors(endpoint: &str) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let processes = names()
        .into_iter()
        .map(|name| MessageProcess::new(name, Detector::default()))
        .collect::<Result<Vec<_>>>()?;
    let served = serve(Config::listen(endpoint).namespace(NAMESPACE), processes)?;
    eprintln!("serving {DETECTORS} detectors on {endpoint}");
    for (name, status) in served.wait() {
        eprintln!("{name} ended: {status:?}");
    }
    Ok(())
}

/// The frontend's host: attaches to the detectors, then runs the pipeline.
fn frontend(endpoint: &str) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let link = Link::open(Config::connect(endpoint).namespace(NAMESPACE))?;
    let detectors = names()
        .iter()
        .map(|name| link.attach(name).map(DetectorClient::new))
        .collect::<forkbridge_zenoh::Result<Vec<_>>>()?;
    println!("remote detectors on {endpoint}:");
    pipeline(detectors)?;
    Ok(())
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", endpoint] => serve_detectors(endpoint),
        ["frontend", endpoint] => frontend(endpoint),
        ["local"] => {
            let detectors = names()
                .into_iter()
                .map(|name| DetectorClient::start(name, Detector::default()))
                .collect::<Result<Vec<_>>>()?;
            println!("local detectors:");
            Ok(pipeline(detectors)?)
        }
        [] => {
            // Both hosts here: the detectors' host is this program again.
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let endpoint = format!("tcp/127.0.0.1:{port}");
            let mut host = Command::new(std::env::current_exe()?)
                .args(["serve", &endpoint])
                .stdin(Stdio::null())
                .spawn()?;
            let outcome = frontend(&endpoint);
            // The detectors were stopped by the pipeline; their host ends.
            let status = host.wait()?;
            outcome?;
            if !status.success() {
                return Err(format!("the detectors' host ended with {status}").into());
            }
            Ok(())
        }
        _ => Err("usage: remote [local | serve <endpoint> | frontend <endpoint>]".into()),
    }
}
