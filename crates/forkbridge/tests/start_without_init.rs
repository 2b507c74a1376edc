//! A program that forgot `forkbridge::init()`: a typed error with the fix
//! in its text, never a hang, never a storm of processes.
//!
//! This binary's `main` does not call `init` first. A worker spawned from
//! it therefore runs `main` again; the environment tells that run which
//! forgetful program to play.

mod common;

use std::time::{Duration, Instant};

use forkbridge::{Backend, ErrorKind, Handlers, MessageProcess, StartMethod};
use forkbridge_testkit::children;
use serde::{Deserialize, Serialize};

/// Set for a spawned run: `exit` (main ends at once) or `hang` (main runs
/// on without reaching `init`).
const ROLE: &str = "FORKBRIDGE_TEST_FORGETFUL";
/// Where a spawned run writes what its own start attempt returned.
const REPORT: &str = "FORKBRIDGE_TEST_REPORT";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Worker;

impl Backend for Worker {
    fn register(_: &mut Handlers<Self>) {}
}

fn spawnable(timeout: Duration) -> MessageProcess {
    MessageProcess::builder("forgetful")
        .start_method(StartMethod::Spawn)
        .start_timeout(timeout)
        .build_portable(Worker)
        .unwrap()
}

fn without_init_nothing_starts_and_the_error_says_what_to_add() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let mut p = MessageProcess::builder("w")
            .start_method(method)
            .build_portable(Worker)
            .unwrap();
        let err = p.start().unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InitMissing, "{method:?}");
        let text = err.to_string();
        assert!(text.contains("forkbridge::init()"), "{text}");
        assert!(children().is_empty(), "{method:?}: something was started");
        assert!(forkbridge::start_fork_server().is_err());
    }
}

/// Runs `case` with `init` noted and `ROLE` set for the spawned run.
fn as_forgetful(role: &str, case: impl FnOnce(&std::path::Path)) {
    forkbridge::init();
    let report = std::env::temp_dir().join(format!("fb-forgetful-{}", std::process::id()));
    let _ = std::fs::remove_file(&report);
    // SAFETY: this test process is single-threaded here.
    unsafe {
        std::env::set_var(ROLE, role);
        std::env::set_var(REPORT, &report);
    }
    case(&report);
    // SAFETY: as above.
    unsafe {
        std::env::remove_var(ROLE);
        std::env::remove_var(REPORT);
    }
    let _ = std::fs::remove_file(&report);
}

fn a_worker_whose_main_ends_without_init_fails_the_start_at_once() {
    as_forgetful("exit", |report| {
        let mut p = spawnable(Duration::from_secs(30));
        let t = Instant::now();
        let err = p.start().unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InitMissing, "{err}");
        assert!(
            err.to_string().contains("ended before it reported"),
            "{err}"
        );
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        // The forgetful run tried to start a worker of its own, and was
        // refused: no storm.
        let said = std::fs::read_to_string(report).unwrap_or_default();
        assert!(
            said.starts_with("refused: "),
            "the worker's own start: {said:?}"
        );
        assert!(
            said.contains("without reaching forkbridge::init()"),
            "{said}"
        );
    });
}

fn a_worker_whose_main_runs_on_without_init_is_killed_after_the_start_timeout() {
    as_forgetful("hang", |_| {
        let mut p = spawnable(Duration::from_millis(500));
        let t = Instant::now();
        let err = p.start().unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InitMissing, "{err}");
        assert!(err.to_string().contains("start timeout"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(
            children().is_empty(),
            "the worker was left: {:?}",
            children()
        );
        assert_eq!(p.start().unwrap_err().kind(), &ErrorKind::AlreadyStarted);
    });
}

fn main() {
    if let Some(role) = std::env::var_os(ROLE) {
        // A spawned run of this program, which "forgot" init: its own
        // start must be refused rather than spawn again.
        let outcome = match spawnable(Duration::from_secs(1)).start() {
            Ok(()) => "started".to_string(),
            Err(e) => format!(
                "refused: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            ),
        };
        if let Some(report) = std::env::var_os(REPORT) {
            let _ = std::fs::write(report, outcome);
        }
        if role == "hang" {
            std::thread::sleep(Duration::from_secs(60));
        }
        return;
    }
    common::run(&[
        (
            "without_init_nothing_starts_and_the_error_says_what_to_add",
            without_init_nothing_starts_and_the_error_says_what_to_add,
        ),
        (
            "a_worker_whose_main_ends_without_init_fails_the_start_at_once",
            a_worker_whose_main_ends_without_init_fails_the_start_at_once,
        ),
        (
            "a_worker_whose_main_runs_on_without_init_is_killed_after_the_start_timeout",
            a_worker_whose_main_runs_on_without_init_is_killed_after_the_start_timeout,
        ),
    ]);
}
