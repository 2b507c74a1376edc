//! forkbridge's benchmark harness.
//!
//! ```text
//! cargo run --release -p forkbridge-bench -- [SCENARIO...] [--quick]
//! ```
//!
//! Every scenario measures forkbridge and a baseline (the raw mechanism
//! between the same kind of forked processes) in the same run, alternating
//! them, and reports the medians of several runs as a table, then one line
//! `RESULT scenario=.. value=.. unit=.. baseline=.. ratio=.. target=..`.
//! `--quick` runs fewer iterations (a smoke run for CI; its figures are not
//! the ones to report).

mod raw;

use std::time::{Duration, Instant};

use forkbridge::{Backend, BackendContext, HandlerResult, Handlers, Message, MessageProcess};

/// A backend that answers pings (built in) and counts ticks.
struct Sink {
    ticks: u64,
}

impl Sink {
    fn tick(&mut self, _: &mut BackendContext, _: Message) -> HandlerResult {
        self.ticks += 1;
        Ok(())
    }

    fn report(&mut self, ctx: &mut BackendContext, _: Message) -> HandlerResult {
        ctx.send(Message::new("count").with("n", self.ticks))?;
        self.ticks = 0;
        Ok(())
    }
}

impl Backend for Sink {
    fn register(handlers: &mut Handlers<Self>) {
        handlers.on("tick", Self::tick).on("report", Self::report);
    }
}

/// The seed's typical small message: a command and four parameters.
fn small_message(i: u64) -> Message {
    Message::new("tick")
        .with("frame", i)
        .with("score", 0.75)
        .with("camera", "camera-01")
        .with("valid", true)
}

struct Scale {
    runs: usize,
    roundtrips: u32,
    oneway: u64,
    starts: u32,
}

const FULL: Scale = Scale {
    runs: 9,
    roundtrips: 20_000,
    oneway: 1_000_000,
    starts: 300,
};

const QUICK: Scale = Scale {
    runs: 3,
    roundtrips: 500,
    oneway: 20_000,
    starts: 20,
};

/// One scenario's figures.
struct Outcome {
    name: &'static str,
    unit: &'static str,
    value: Vec<f64>,
    baseline: Vec<f64>,
    target: &'static str,
    what: &'static str,
    baseline_what: &'static str,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn started_sink(name: &str) -> MessageProcess {
    let mut p = MessageProcess::new(name, Sink { ticks: 0 }).expect("build");
    p.start().expect("start");
    p
}

fn roundtrip(scale: &Scale) -> Outcome {
    let mut value = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..scale.runs {
        baseline.push(micros(raw::roundtrip(scale.roundtrips)));
        let mut p = started_sink("roundtrip");
        let ping = Message::new("ping");
        for _ in 0..scale.roundtrips / 10 {
            p.send(ping.clone()).unwrap();
            p.recv().unwrap();
        }
        let t = Instant::now();
        for _ in 0..scale.roundtrips {
            p.send(ping.clone()).unwrap();
            p.recv().unwrap();
        }
        value.push(micros(t.elapsed()) / f64::from(scale.roundtrips));
        p.stop().unwrap();
    }
    Outcome {
        name: "roundtrip",
        unit: "us",
        value,
        baseline,
        target: "<=1.10",
        what: "MessageProcess send(ping) + recv(pong)",
        baseline_what: "8-byte write + read over a socketpair with a forked echo child",
    }
}

fn oneway_small(scale: &Scale) -> Outcome {
    let mut value = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..scale.runs {
        baseline.push(raw::oneway(scale.oneway, small_message));
        let mut p = started_sink("oneway");
        let t = Instant::now();
        for i in 0..scale.oneway {
            p.feed(small_message(i)).unwrap();
        }
        p.send(Message::new("report")).unwrap();
        let count = p.recv().unwrap();
        let rate = scale.oneway as f64 / t.elapsed().as_secs_f64();
        assert_eq!(count.param::<u64>("n").unwrap(), scale.oneway);
        value.push(rate);
        p.stop().unwrap();
    }
    Outcome {
        name: "oneway_small",
        unit: "msgs/s",
        value,
        baseline,
        target: ">=0.60",
        what: "feed() of command + 4 params, dispatched and counted by the backend",
        baseline_what: "same messages, postcard frames through 64 KiB buffers, decoded and counted by a forked child",
    }
}

fn start_stop(scale: &Scale) -> Outcome {
    let mut value = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..scale.runs {
        baseline.push(micros(raw::fork_exit_wait(scale.starts)));
        let mut total = Duration::ZERO;
        for _ in 0..scale.starts {
            let mut p = MessageProcess::new("idle", Sink { ticks: 0 }).unwrap();
            let t = Instant::now();
            p.start().unwrap();
            p.stop().unwrap();
            total += t.elapsed();
        }
        value.push(micros(total) / f64::from(scale.starts));
    }
    Outcome {
        name: "start_stop",
        unit: "us",
        value,
        baseline,
        target: "<=1.50",
        what: "start() + stop() of an idle backend (stop request, reaped)",
        baseline_what: "fork + _exit + waitpid",
    }
}

type Scenario = fn(&Scale) -> Outcome;

const SCENARIOS: &[(&str, Scenario)] = &[
    ("roundtrip", roundtrip),
    ("oneway_small", oneway_small),
    ("start_stop", start_stop),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let wanted: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    for w in &wanted {
        if !SCENARIOS.iter().any(|(name, _)| name == w) {
            let names: Vec<_> = SCENARIOS.iter().map(|(n, _)| *n).collect();
            eprintln!("unknown scenario '{w}'; known: {}", names.join(", "));
            std::process::exit(2);
        }
    }
    let scale = if quick { &QUICK } else { &FULL };
    let mut outcomes = Vec::new();
    for (name, run) in SCENARIOS {
        if wanted.is_empty() || wanted.contains(name) {
            eprintln!(
                "running {name} ({} runs{})",
                scale.runs,
                if quick { ", quick" } else { "" }
            );
            outcomes.push(run(scale));
        }
    }

    println!();
    println!(
        "{:<14} {:>14} {:>14} {:>8} {:>8}  runs (value / baseline)",
        "scenario", "value", "baseline", "ratio", "target"
    );
    for o in &outcomes {
        let (v, b) = (median(&o.value), median(&o.baseline));
        let runs: Vec<String> = o
            .value
            .iter()
            .zip(&o.baseline)
            .map(|(v, b)| format!("{} / {}", fmt(*v), fmt(*b)))
            .collect();
        println!(
            "{:<14} {:>14} {:>14} {:>8.3} {:>8}  {}",
            o.name,
            format!("{} {}", fmt(v), o.unit),
            format!("{} {}", fmt(b), o.unit),
            v / b,
            o.target,
            runs.join(", ")
        );
        println!(
            "{:<14} value: {}; baseline: {}",
            "", o.what, o.baseline_what
        );
    }
    println!();
    for o in &outcomes {
        let (v, b) = (median(&o.value), median(&o.baseline));
        println!(
            "RESULT scenario={} value={} unit={} baseline={} ratio={:.3} target={}",
            o.name,
            fmt(v),
            o.unit,
            fmt(b),
            v / b,
            o.target
        );
    }
}

fn fmt(x: f64) -> String {
    if x >= 1000.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}
