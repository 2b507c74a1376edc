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
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    match status {
        Some(s) if s.success() => println!("soak --quick ... ok ({:.1?})", started.elapsed()),
        other => {
            println!("soak --quick ... FAILED ({other:?})");
            std::process::exit(1);
        }
    }
}
