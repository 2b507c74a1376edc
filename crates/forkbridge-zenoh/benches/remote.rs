//! Remote backends against raw TCP between the same two processes, in the
//! same run: `cargo bench -p forkbridge-zenoh` (`-- --quick` for a smoke
//! run). Prints `RESULT scenario=.. value=.. unit=.. baseline=.. ratio=..
//! target=..` lines, as the core's bench harness does.
//!
//! The serving program is this binary run again; it is pinned to CPU 1
//! (its backend, its Zenoh threads and the raw TCP echo inherit that), and
//! this process to CPU 0 before its link opens, so every hop crosses CPUs
//! alike for both sides of a ratio.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use forkbridge::relay::{FrameCheck, FrameReader};
use forkbridge::{
    Backend, BackendContext, HandlerResult, Handlers, Message, MessageProcess, message,
};
use forkbridge_testkit::{free_port, kill, pin};
use forkbridge_zenoh::{Config, Link, serve};
use zenoh::Wait;
use zenoh::qos::CongestionControl;

const SERVE_ENV: &str = "FB_ZENOH_BENCH_SERVE";
const WAIT: Duration = Duration::from_secs(10);
/// Backends served for `remote_death_seen`, one per kill.
const VICTIMS: usize = 10;

#[derive(Debug, Default)]
struct Echo {
    counted: u64,
}

#[forkbridge::handlers(custom_backend)]
impl Echo {
    /// The backend's pid on its host.
    pub(crate) fn host_pid(&mut self) -> i32 {
        std::process::id() as i32
    }
}

impl Echo {
    fn ping(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        ctx.send(msg)?;
        Ok(())
    }

    fn count(&mut self, _: &mut BackendContext, _: Message) -> HandlerResult {
        self.counted += 1;
        Ok(())
    }

    fn counted(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        ctx.send(message!("counted", n = self.counted))?;
        Ok(())
    }
}

impl Backend for Echo {
    fn register(handlers: &mut Handlers<Self>) {
        Self::register_typed(handlers);
        handlers.on("ping", Self::ping);
        handlers.on("count", Self::count);
        handlers.on("counted", Self::counted);
    }
}

fn raw_config(listen: Option<&str>, connect: Option<&str>) -> zenoh::Config {
    let mut c = zenoh::Config::default();
    c.insert_json5("mode", "\"peer\"").unwrap();
    c.insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    if let Some(l) = listen {
        c.insert_json5("listen/endpoints", &format!("[\"{l}\"]"))
            .unwrap();
    }
    if let Some(e) = connect {
        c.insert_json5("connect/endpoints", &format!("[\"{e}\"]"))
            .unwrap();
    }
    c
}

/// The serving program: the backends, then a raw TCP echo (ping-pong) and
/// sink (decodes each frame's message, as the backend does, and answers
/// one byte) on the same CPU.
fn serve_main(namespace: &str) -> ! {
    pin(0, 1);
    let mut processes = vec![MessageProcess::new("echo", Echo::default()).unwrap()];
    for i in 0..VICTIMS {
        processes.push(MessageProcess::new(format!("victim-{i}"), Echo::default()).unwrap());
    }
    let endpoint = format!("tcp/127.0.0.1:{}", free_port("127.0.0.1"));
    let served = serve(Config::listen(&endpoint).namespace(namespace), processes).unwrap();
    // Zenoh alone, for the record: a session of its own whose callback
    // publishes each sample back.
    let raw_endpoint = format!("tcp/127.0.0.1:{}", free_port("127.0.0.1"));
    let raw = zenoh::open(raw_config(Some(&raw_endpoint), None))
        .wait()
        .unwrap();
    let pong = raw
        .declare_publisher(format!("fbbench/{namespace}/pong"))
        .congestion_control(CongestionControl::Block)
        .wait()
        .unwrap();
    let _ping = raw
        .declare_subscriber(format!("fbbench/{namespace}/ping"))
        .callback(move |sample| {
            let _ = pong.put(sample.payload().to_bytes().to_vec()).wait();
        })
        .wait()
        .unwrap();
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let sink = TcpListener::bind("127.0.0.1:0").unwrap();
    println!(
        "ENDPOINT {endpoint} {} {} {raw_endpoint}",
        echo.local_addr().unwrap().port(),
        sink.local_addr().unwrap().port()
    );
    std::thread::spawn(move || {
        for conn in echo.incoming() {
            let mut conn = conn.unwrap();
            conn.set_nodelay(true).unwrap();
            let mut len = [0u8; 4];
            conn.read_exact(&mut len).unwrap();
            let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
            while conn.read_exact(&mut buf).is_ok() {
                if conn.write_all(&buf).is_err() {
                    break;
                }
            }
        }
    });
    std::thread::spawn(move || {
        for conn in sink.incoming() {
            let mut conn = conn.unwrap();
            conn.set_nodelay(true).unwrap();
            let mut head = [0u8; 8];
            conn.read_exact(&mut head).unwrap();
            let frames = u64::from_le_bytes(head);
            let mut reader = FrameReader::new(&conn, FrameCheck::new(64 << 20));
            let mut decoded = 0u64;
            while decoded < frames {
                let Some(run) = reader.next_run().unwrap() else {
                    panic!("the stream ended after {decoded} of {frames} frames");
                };
                let mut at = 0;
                while at < run.len() {
                    let len = u32::from_le_bytes(run[at..at + 4].try_into().unwrap()) as usize;
                    // Past the length and the kind byte: the message.
                    let msg: Message = postcard::from_bytes(&run[at + 5..at + 4 + len]).unwrap();
                    std::hint::black_box(msg);
                    at += 4 + len;
                    decoded += 1;
                }
            }
            (&conn).write_all(&[1]).unwrap();
        }
    });
    served.wait();
    std::process::exit(0)
}

struct Host {
    child: Child,
    endpoint: String,
    raw_endpoint: String,
    echo_port: u16,
    sink_port: u16,
    namespace: String,
}

fn host() -> Host {
    let namespace = format!("bench{}", std::process::id());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(SERVE_ENV, &namespace)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let parts: Vec<&str> = line.split_whitespace().collect();
    let ["ENDPOINT", endpoint, echo, sink, raw] = parts[..] else {
        panic!("the serving program said {line:?}");
    };
    Host {
        endpoint: endpoint.to_owned(),
        raw_endpoint: raw.to_owned(),
        echo_port: echo.parse().unwrap(),
        sink_port: sink.parse().unwrap(),
        child,
        namespace,
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bytes `msg` takes on the wire: read from a handle's far end.
fn frame_of(msg: &Message) -> Vec<u8> {
    let (mut p, remote) = MessageProcess::builder("measure").attach().unwrap();
    p.send(msg.clone()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = remote.stream().read(&mut buf).unwrap();
    buf.truncate(n);
    drop(remote);
    let _ = p.join_timeout(Duration::ZERO);
    buf
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn result(name: &str, value: f64, unit: &str, baseline: f64, target: &str, what: &str) {
    println!("{name}: {what}");
    println!(
        "RESULT scenario={name} value={value:.2} unit={unit} baseline={baseline:.2} ratio={:.3} target={target}",
        value / baseline
    );
}

fn main() {
    if let Ok(namespace) = std::env::var(SERVE_ENV) {
        serve_main(&namespace);
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    // Frames are measured before anything runs threads here.
    let ping = message!("ping", n = 1u64);
    let ping_frame = frame_of(&ping);
    let count = Message::new("count").with("camera", 3).with("ts", 1.5);
    let count_frame = frame_of(&count);
    let host = host();
    pin(0, 0);
    let link = Link::open(Config::connect(&host.endpoint).namespace(&host.namespace)).unwrap();
    let mut echo = link.attach("echo").unwrap();
    if wanted("remote_roundtrip") {
        let mut tcp = TcpStream::connect(("127.0.0.1", host.echo_port)).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.write_all(&(ping_frame.len() as u32).to_le_bytes())
            .unwrap();
        let mut back = vec![0u8; ping_frame.len()];
        let (blocks, per_block) = if quick { (3, 50) } else { (20, 500) };
        // Warm-up, then alternating blocks.
        for _ in 0..per_block {
            echo.send(ping.clone()).unwrap();
            echo.recv_timeout(WAIT).unwrap();
            tcp.write_all(&ping_frame).unwrap();
            tcp.read_exact(&mut back).unwrap();
        }
        let raw = zenoh::open(raw_config(None, Some(&host.raw_endpoint)))
            .wait()
            .unwrap();
        let ping_pub = raw
            .declare_publisher(format!("fbbench/{}/ping", host.namespace))
            .congestion_control(CongestionControl::Block)
            .wait()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let _pong = raw
            .declare_subscriber(format!("fbbench/{}/pong", host.namespace))
            .callback(move |sample| {
                let _ = tx.send(sample.payload().to_bytes().len());
            })
            .wait()
            .unwrap();
        let raw_round = || {
            ping_pub.put(ping_frame.clone()).wait().unwrap();
            rx.recv_timeout(WAIT).unwrap();
        };
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..per_block {
            raw_round();
        }
        let (mut ours, mut theirs, mut zenoh_only) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..blocks {
            let t = Instant::now();
            for _ in 0..per_block {
                tcp.write_all(&ping_frame).unwrap();
                tcp.read_exact(&mut back).unwrap();
            }
            theirs.push(t.elapsed().as_secs_f64() * 1e6 / per_block as f64);
            let t = Instant::now();
            for _ in 0..per_block {
                raw_round();
            }
            zenoh_only.push(t.elapsed().as_secs_f64() * 1e6 / per_block as f64);
            let t = Instant::now();
            for _ in 0..per_block {
                echo.send(ping.clone()).unwrap();
                echo.recv_timeout(WAIT).unwrap();
            }
            ours.push(t.elapsed().as_secs_f64() * 1e6 / per_block as f64);
        }
        let theirs_copy = theirs.clone();
        result(
            "remote_roundtrip",
            median(ours),
            "us",
            median(theirs),
            "<=2.0",
            "send + recv of a small message to a remote backend over Zenoh on loopback TCP; \
             baseline: TCP_NODELAY ping-pong of the same frame bytes between the same two processes",
        );
        let theirs_median = median(theirs_copy);
        result(
            "remote_roundtrip_zenoh_only",
            median(zenoh_only),
            "us",
            theirs_median,
            "(for the record)",
            "Zenoh alone: put + a subscriber callback that puts back, between the same two \
             processes, no forkbridge; baseline: the same TCP ping-pong",
        );
    }
    if wanted("remote_oneway") {
        let n: u64 = if quick { 2_000 } else { 1_000_000 };
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..if quick { 1 } else { 5 } {
            let t = Instant::now();
            for _ in 0..n {
                echo.feed(count.clone()).unwrap();
            }
            echo.send(Message::new("counted")).unwrap();
            let reply = echo.recv_timeout(WAIT * 6).unwrap();
            let elapsed = t.elapsed().as_secs_f64();
            assert!(reply.param::<u64>("n").unwrap() > 0);
            ours.push(n as f64 / elapsed);
            let t = Instant::now();
            let tcp = TcpStream::connect(("127.0.0.1", host.sink_port)).unwrap();
            tcp.set_nodelay(true).unwrap();
            let mut out = BufWriter::with_capacity(64 << 10, &tcp);
            out.write_all(&n.to_le_bytes()).unwrap();
            for _ in 0..n {
                out.write_all(&count_frame).unwrap();
            }
            out.flush().unwrap();
            drop(out);
            let mut ack = [0u8; 1];
            (&tcp).read_exact(&mut ack).unwrap();
            theirs.push(n as f64 / t.elapsed().as_secs_f64());
        }
        result(
            "remote_oneway",
            median(ours),
            "msgs/s",
            median(theirs),
            ">=0.30",
            "feed of small messages to a remote backend that counts them, until its answer; \
             baseline: the same frames through a 64 KiB-buffered TCP stream to a reader in the \
             serving program that decodes each message",
        );
    }
    if wanted("remote_death_seen") {
        let mut seen = Vec::new();
        for i in 0..if quick { 2 } else { VICTIMS } {
            let mut p = link.attach(&format!("victim-{i}")).unwrap();
            let pid: i32 = p.call("host_pid", &(), WAIT).unwrap();
            let t = Instant::now();
            kill(pid, libc::SIGKILL).unwrap();
            let err = p.recv_timeout(WAIT).unwrap_err();
            seen.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(
                err.is_disconnected() && err.exit_status().is_some(),
                "{err}"
            );
        }
        let value = median(seen);
        // The target is absolute (50 ms): the ratio is against it.
        result(
            "remote_death_seen",
            value,
            "ms",
            50.0,
            "<=1.0 (50 ms)",
            "kill -9 of a remote backend until recv returns Disconnected with its status",
        );
    }
    drop(echo);
    drop(link);
    drop(host);
}
