//! [`init`]: where a re-executed program becomes a worker or a fork server.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, ErrorKind};
use crate::sys::{fork, socket, spawn};

use super::server::{self, SERVER_ENV};
use super::spawn::WORKER_ENV;

static CALLED: AtomicBool = AtomicBool::new(false);

/// Lets this program be started again as a worker or a fork server: call
/// it first in `main`. Needed by [`StartMethod::Spawn`](crate::StartMethod::Spawn)
/// and [`StartMethod::ForkServer`](crate::StartMethod::ForkServer); harmless
/// otherwise.
///
/// In the program as the user started it, `init` only notes that it ran
/// and returns. In a process forkbridge started from it (the environment
/// says which), it never returns: the process runs its backend, or serves
/// forks, and exits. **Code before the call runs again in every such
/// process**, so keep it to nothing (parse arguments, set up logging, and
/// start threads, after it).
///
/// ```no_run
/// // The first line of `main`:
/// forkbridge::init();
/// // then the program, as before.
/// ```
///
/// A program that starts a process with these methods without having
/// called `init` gets [`ErrorKind::InitMissing`] before anything is
/// started; a worker that runs `main` without reaching `init` (called only
/// on some path) is killed, and its start fails with the same kind, after
/// the start timeout or as soon as it exits, and such a worker cannot
/// start workers of its own: no storm of processes.
pub fn init() {
    if let Some(sock) = take_worker_socket() {
        super::boot::worker(sock);
    }
    if let Some(control) = server::take_control() {
        server::serve::run(control);
    }
    CALLED.store(true, Ordering::SeqCst);
}

/// The intercom end, in a process spawned as a worker (`None` otherwise).
pub(crate) fn take_worker_socket() -> Option<std::os::fd::OwnedFd> {
    let fd = spawn::take_env(WORKER_ENV)?;
    Some(adopt(WORKER_ENV, &fd, libc::SOCK_STREAM))
}

pub(super) fn adopt(
    name: &str,
    value: &std::ffi::OsStr,
    kind: libc::c_int,
) -> std::os::fd::OwnedFd {
    let fd = value.to_str().and_then(|v| v.parse().ok());
    match fd.map(|fd| socket::adopt_inherited(fd, kind)) {
        Some(Ok(sock)) => sock,
        other => {
            let why = match other {
                Some(Err(e)) => e.to_string(),
                _ => "not an fd number".to_string(),
            };
            eprintln!("forkbridge: {name}={value:?}: {why}");
            fork::exit_now(2)
        }
    }
}

/// `Ok` if processes may be started by a method that re-runs the program.
pub(super) fn check() -> Result<(), Error> {
    let source = if std::env::var_os(WORKER_ENV).is_some() || std::env::var_os(SERVER_ENV).is_some()
    {
        "this process was started as a worker and ran main without reaching forkbridge::init()"
    } else if !CALLED.load(Ordering::SeqCst) {
        "forkbridge::init() was not called in this process"
    } else {
        return Ok(());
    };
    Err(Error::new(ErrorKind::InitMissing).with_source(std::io::Error::other(source)))
}
