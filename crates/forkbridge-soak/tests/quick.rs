//! Runs the soak suite's quick form as part of the test command: every
//! scenario, bounded, zero failures.

use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_forkbridge-soak"))
        .arg("--quick")
        .spawn()
        .expect("run the soak suite");
    match forkbridge_testkit::wait_within(&mut child, Duration::from_secs(300)) {
        Some(s) if s.success() => println!("soak --quick ... ok ({:.1?})", started.elapsed()),
        other => {
            println!("soak --quick ... FAILED ({other:?})");
            std::process::exit(1);
        }
    }
}
