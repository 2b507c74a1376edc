//! Runs the examples (built by `cargo test`) and checks they succeed, so the
//! README's demo is tested by the README's test command.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use forkbridge_testkit::wait_within;

/// Each example with its arguments and a string its output must contain.
const EXAMPLES: &[(&str, &[&str], &str)] = &[
    ("ping", &[], "backend stopped: exit status: 0"),
    ("sync_index", &[], "backend stopped: exit status: 0"),
    ("shm_frames", &[], "camera stopped: exit status: 0"),
    #[cfg(feature = "tokio")]
    ("async_backend", &[], "(they overlapped)"),
    #[cfg(feature = "macros")]
    ("typed", &[], "backend stopped: exit status: 0"),
    #[cfg(feature = "tokio")]
    ("threaded_parent", &[], "all detectors stopped"),
    // The demo, short, under chaos: no frame may be lost.
    #[cfg(feature = "tokio")]
    (
        "pipeline",
        &["--seconds", "1.5", "--quiet", "--chaos"],
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
        let status = wait_within(&mut child, Duration::from_secs(60));
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
    #[cfg(feature = "tokio")]
    {
        failed += demo_signal_case(&dir, libc::SIGINT, "Ctrl-C", Some(130));
        failed += demo_signal_case(&dir, libc::SIGKILL, "SIGKILL of the demo", None);
    }
    println!(
        "\ntest result: {}. {failed} failed\n",
        if failed == 0 { "ok" } else { "FAILED" }
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

/// Pids of processes whose name (`/proc/<pid>/comm`, which forkbridge sets
/// to the process name) is one of the demo's, and that are not zombies.
#[cfg(feature = "tokio")]
fn demo_processes() -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let comm = comm.trim();
        if (comm == "source" || comm.starts_with("detector-")) && forkbridge_testkit::alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Starts the demo, sends it `sig` after a second, and checks how it ends
/// (`code`: its exit code; `None`: killed) and that none of its processes
/// is left a second later.
#[cfg(feature = "tokio")]
fn demo_signal_case(dir: &std::path::Path, sig: i32, what: &str, code: Option<i32>) -> usize {
    use std::os::unix::process::ExitStatusExt;
    let before = demo_processes();
    let mut child = match Command::new(dir.join("pipeline"))
        .args(["--seconds", "30", "--quiet"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            println!("demo {what} ... FAILED: {e}");
            return 1;
        }
    };
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: plain integers; `child` is our unreaped child.
    unsafe { libc::kill(child.id() as i32, sig) };
    let started = Instant::now();
    let status = wait_within(&mut child, Duration::from_secs(20));
    let ended_right = match (status, code) {
        (Some(s), Some(c)) => s.code() == Some(c),
        (Some(s), None) => s.signal() == Some(sig),
        (None, _) => false,
    };
    // Nothing left behind (the demo's children exit within a second).
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut left = demo_processes();
    while Instant::now() < deadline {
        left = demo_processes()
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if ended_right && left.is_empty() {
        println!("demo {what} ... ok ({:.0?})", started.elapsed());
        0
    } else {
        println!("demo {what} ... FAILED: status {status:?}, processes left {left:?}");
        1
    }
}
