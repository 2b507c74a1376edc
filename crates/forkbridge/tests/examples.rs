//! Runs the examples (built by `cargo test`) and checks they succeed, so the
//! README's demo is tested by the README's test command.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Each example with its arguments and a string its output must contain.
const EXAMPLES: &[(&str, &[&str], &str)] = &[
    ("ping", &[], "backend stopped: exit status: 0"),
    ("sync_index", &[], "backend stopped: exit status: 0"),
    ("shm_frames", &[], "camera stopped: exit status: 0"),
    #[cfg(feature = "tokio")]
    ("async_backend", &[], "(they overlapped)"),
    #[cfg(feature = "macros")]
    ("typed", &[], "backend stopped: exit status: 0"),
    // The demo, short, with the fault drill: no frame may be lost.
    #[cfg(feature = "tokio")]
    (
        "pipeline",
        &["--seconds", "1.5", "--quiet", "--kill-one"],
        "frames lost: 0",
    ),
];

fn examples_dir() -> PathBuf {
    // target/<profile>/deps/examples-<hash> → target/<profile>/examples
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples"))
        .expect("target layout")
}

fn main() {
    let dir = examples_dir();
    let mut failed = 0;
    for (name, args, expect) in EXAMPLES {
        let path = dir.join(name);
        let started = Instant::now();
        let mut child = match Command::new(&path)
            .args(*args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                println!(
                    "example {name} ... FAILED: cannot run {}: {e}",
                    path.display()
                );
                failed += 1;
                continue;
            }
        };
        // Bounded wait: an example that hangs is killed after 60 s.
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = child.wait_with_output().expect("output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        match status {
            Some(s) if s.success() && stdout.contains(expect) => {
                println!("example {name} ... ok ({:.0?})", started.elapsed())
            }
            _ => {
                println!(
                    "example {name} ... FAILED ({status:?})\n--- stdout\n{stdout}\n--- stderr\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                failed += 1;
            }
        }
    }
    println!(
        "\ntest result: {}. {failed} failed\n",
        if failed == 0 { "ok" } else { "FAILED" }
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
