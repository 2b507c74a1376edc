//! The start methods under churn: workers started by `Fork`, `ForkServer`
//! and `Spawn` in turn, ended in order, by `SIGKILL`, or by the death of
//! the fork server itself, with nothing left behind.

use std::time::Duration;

use forkbridge::{ErrorKind, Message, MessageProcess, StartMethod};
use forkbridge_testkit::{FORK_SERVER_COMM, children, comm, kill, mappings, open_fds, wait_until};

use crate::{Outcome, Rng, Scale, Worker};

const METHODS: [StartMethod; 3] = [
    StartMethod::Fork,
    StartMethod::ForkServer,
    StartMethod::Spawn,
];

fn fork_server() -> Option<i32> {
    children()
        .into_iter()
        .find(|&pid| comm(pid) == FORK_SERVER_COMM)
}

pub(crate) fn start_methods(scale: &Scale) -> Outcome {
    // Warm: the server and lazily made statics exist before the count.
    for method in METHODS {
        if let Ok(mut p) = MessageProcess::builder("warm")
            .start_method(method)
            .build_portable(Worker)
        {
            let _ = p.start();
            let _ = p.stop();
        }
    }
    let (fds, maps) = (open_fds(), mappings());
    let mut rng = Rng(7);
    let (mut failures, mut server_kills) = (0u64, 0u64);
    let rounds = scale.cycles / 2;
    for i in 0..rounds {
        let method = METHODS[(i % 3) as usize];
        let built = MessageProcess::builder("churn")
            .start_method(method)
            .stop_timeout(Duration::from_secs(2))
            .build_portable(Worker);
        let Ok(mut p) = built else {
            failures += 1;
            continue;
        };
        if p.start().is_err() {
            failures += 1;
            continue;
        }
        let ok = match rng.below(8) {
            0..=3 => {
                let _ = p.send(Message::new("ping"));
                p.recv_timeout(Duration::from_secs(5)).is_ok()
                    && p.stop().is_ok_and(|s| s.success())
            }
            4..=6 => {
                let _ = kill(p.pid().unwrap_or(0), libc::SIGKILL);
                let err = p.recv_timeout(Duration::from_secs(5));
                err.is_err_and(|e| e.kind() == &ErrorKind::Disconnected)
                    && p.join_timeout(Duration::from_secs(5)).is_ok()
            }
            // The fork server dies under its worker: the worker goes too
            // and the frontend is told; the next start makes a new server.
            _ => match (method, fork_server()) {
                (StartMethod::ForkServer, Some(server)) => {
                    server_kills += 1;
                    let _ = kill(server, libc::SIGKILL);
                    let seen = p
                        .recv_timeout(Duration::from_secs(5))
                        .is_err_and(|e| e.is_disconnected());
                    let _ = p.stop();
                    // Reap the old server (our child) before counting.
                    wait_until(Duration::from_secs(5), || {
                        fork_server() != Some(server) || {
                            forkbridge_testkit::try_reap(server);
                            false
                        }
                    });
                    seen
                }
                _ => p.stop().is_ok(),
            },
        };
        failures += u64::from(!ok);
    }
    // The killed servers were reaped by the next start (or above); what
    // remains is the live server alone.
    let left: Vec<i32> = children()
        .into_iter()
        .filter(|&pid| comm(pid) != FORK_SERVER_COMM)
        .collect();
    let servers = children().len() - left.len();
    let leaked_fds = open_fds().saturating_sub(fds) as u64;
    let leaked_maps = mappings().saturating_sub(maps + 8) as u64;
    let extra = left.len() as u64 + servers.saturating_sub(1) as u64;
    Outcome::failures(
        "start_methods",
        failures + extra + leaked_fds + leaked_maps,
        format!(
            "{rounds} starts (Fork, ForkServer, Spawn in turn), {server_kills} fork servers killed: \
             {failures} failed, {} children and {} extra servers left, {leaked_fds} fds and \
             {leaked_maps} mappings leaked",
            left.len(),
            servers.saturating_sub(1)
        ),
    )
}
