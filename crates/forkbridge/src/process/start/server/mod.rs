//! The fork-server start method, the frontend's side: one server per
//! program, spawned when first needed, asked to fork each worker.
//!
//! # Design
//!
//! The server is this executable spawned again ([`serve`] runs in it from
//! `init`), so it holds nothing of the caller: one thread, little memory.
//! Forking it costs the same whether the caller has one thread or forty
//! and megabytes or gigabytes, and its child inherits no lock held by a
//! thread that does not exist there.
//!
//! The program talks to it over a `SOCK_SEQPACKET` socketpair (the
//! control socket: no path in the file system, so no other user can ask
//! it for anything). A request is one packet carrying the worker's name
//! and two fds: the backend's end of the intercom and one end of a new
//! packet pair, the worker's *status channel*. The server forks, and
//! answers on the status channel with the pid and a pidfd (`SCM_RIGHTS`);
//! when the worker exits, the server reaps it and writes its wait status
//! there, then closes it. The frontend holds the other end:
//!
//! * the pidfd polls readable at the worker's death even though the
//!   worker is not our child, so death is still seen at once, in the same
//!   poll; signals go through it (`pidfd_send_signal`);
//! * the exit status comes from the status channel, because only the real
//!   parent can reap (`waitid` on the pidfd is `ECHILD` here);
//! * end of stream on the status channel without a status means the
//!   server died: the worker dies too (its parent-death signal, relative
//!   to the server), and the frontend reports `Disconnected` without a
//!   status.
//!
//! Each request gets its own status channel, so the lock on the control
//! socket is held only for one `sendmsg`: starts from many threads at once
//! wait for their own replies side by side. When the program dies, the
//! server reads end of stream on the control socket and exits, and its
//! workers follow.
//!
//! Rejected: `clone(CLONE_PARENT)` from the server, which would make the
//! worker our child (glibc in the worker would keep the server's cached
//! thread id, so `pthread_self` would name another process's thread); a
//! unix socket with a path (another local user could connect: Python's
//! CVE-2022-42919).

pub(crate) mod serve;

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::sys::pidfd::{self, Reap};
use crate::sys::{fork, poll, socket, spawn};

use super::super::registry::Registered;
use super::super::{Config, KILL_WAIT};
use super::{Failed, Pending, Started, boot, init};

/// Names the inherited control socket in a spawned fork server.
pub(super) const SERVER_ENV: &str = "FORKBRIDGE_SERVER_FD";

/// How long a server has to say hello after it is spawned.
const SERVER_START: Duration = Duration::from_secs(10);

/// The running server, as the program holds it.
struct Server {
    pid: libc::pid_t,
    pidfd: Registered,
    control: Registered,
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// The program the server runs, with its arguments, when not this
/// executable (a binding's interpreter).
static COMMAND: Mutex<Option<Vec<OsString>>> = Mutex::new(None);

/// Makes later servers run `command` (program and arguments) instead of
/// this executable; the program calls `serve` there.
pub(crate) fn set_command(command: Vec<OsString>) {
    *COMMAND.lock().unwrap_or_else(|e| e.into_inner()) = Some(command);
}

/// The control socket, in a process spawned as a fork server (`None`
/// otherwise).
pub(crate) fn take_control() -> Option<OwnedFd> {
    let fd = spawn::take_env(SERVER_ENV)?;
    Some(init::adopt(SERVER_ENV, &fd, libc::SOCK_SEQPACKET))
}

/// Whether the server runs a program of another language.
pub(super) fn is_foreign() -> bool {
    COMMAND.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

fn server() -> MutexGuard<'static, Option<Server>> {
    SERVER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the fork server now rather than at the first
/// [`StartMethod::ForkServer`](crate::StartMethod::ForkServer) start, so
/// that the first start costs no more than the next. Does nothing if it
/// runs.
///
/// # Errors
///
/// [`ErrorKind::InitMissing`] without [`init`](crate::init);
/// [`ErrorKind::Io`] if it cannot be spawned.
pub fn start_fork_server() -> Result<()> {
    if !is_foreign() {
        init::check()?;
    }
    let mut guard = server();
    ensure(&mut guard)?;
    Ok(())
}

/// Stops the fork server, if one runs, and reaps it: it exits when its
/// control socket closes, and the workers it forked end with it (their
/// parent-death signal: in order within 900 ms, or killed). A later
/// [`StartMethod::ForkServer`](crate::StartMethod::ForkServer) start
/// spawns a new one. For a program that wants it gone before it exits
/// (it goes with the program otherwise), and for tests.
///
/// # Errors
///
/// [`ErrorKind::Io`] if it could not be reaped within 5 s even after
/// `SIGKILL`.
pub fn stop_fork_server() -> Result<()> {
    let Some(server) = server().take() else {
        return Ok(());
    };
    let Server {
        pid,
        pidfd,
        control,
        ..
    } = server;
    drop(control);
    match reap_within(pidfd.as_fd(), KILL_WAIT).map_err(Error::io)? {
        Reap::Running => {
            log::warn!("the fork server (pid {pid}) did not exit: sending SIGKILL");
            let _ = pidfd::send_signal(pidfd.as_fd(), libc::SIGKILL);
            match reap_within(pidfd.as_fd(), KILL_WAIT).map_err(Error::io)? {
                Reap::Running => Err(Error::new(ErrorKind::Io).with_source(io::Error::other(
                    format!("the fork server (pid {pid}) survived SIGKILL for 5 s"),
                ))),
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// In a forked child: forget the parent's server without closing its fds
/// (the child closed them already, and their numbers may be reused). The
/// child starts its own server if it needs one.
pub(in crate::process) fn forget_in_child() {
    let taken = match SERVER.try_lock() {
        Ok(mut guard) => guard.take(),
        Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner().take(),
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    if let Some(server) = taken {
        std::mem::forget(server.pidfd.into_child());
        std::mem::forget(server.control.into_child());
    }
}

/// The server, spawned if there is none or it died.
fn ensure(guard: &mut Option<Server>) -> Result<&Server> {
    if let Some(server) = guard.as_ref() {
        let mut pfd = [poll::PollFd::new(server.pidfd.as_fd(), poll::POLLIN)];
        if poll::poll(&mut pfd, Some(Instant::now())).map_err(Error::io)? != 0 {
            let dead = guard.take().expect("checked");
            let _ = pidfd::try_reap_fd(dead.pidfd.as_fd());
            log::warn!("the fork server (pid {}) died: starting another", dead.pid);
        }
    }
    if guard.is_none() {
        *guard = Some(spawn_server()?);
    }
    Ok(guard.as_ref().expect("set above"))
}

fn spawn_server() -> Result<Server> {
    let (mine, theirs) = socket::packet_pair().map_err(Error::io)?;
    let command = COMMAND.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (exe, args): (OsString, Vec<OsString>) = match command.as_deref() {
        Some([program, args @ ..]) => (program.clone(), args.to_vec()),
        _ => (
            "/proc/self/exe".into(),
            std::env::args_os().skip(1).collect(),
        ),
    };
    let env = [(SERVER_ENV, spawn::INHERITED_FD.to_string())];
    let pid = spawn::spawn(exe.as_ref(), &args, &env, theirs.as_fd()).map_err(Error::io)?;
    drop(theirs);
    let pidfd = match pidfd::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = fork::kill(pid, libc::SIGKILL);
            return Err(Error::io(e));
        }
    };
    let server = Server {
        pid,
        pidfd: Registered::new(pidfd),
        control: Registered::new(mine),
    };
    // The server's hello: a program whose `main` does not reach `init`
    // never sends it.
    let hello = read_packet(server.control.as_fd(), Some(Instant::now() + SERVER_START));
    match hello {
        Ok((bytes, _)) if bytes == b"ready" => Ok(server),
        other => {
            let _ = pidfd::send_signal(server.pidfd.as_fd(), libc::SIGKILL);
            let _ = reap_within(server.pidfd.as_fd(), KILL_WAIT);
            let why = match other {
                Ok(_) => "the fork server ended before it reported".to_string(),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    "the fork server did not report within 10 s".to_string()
                }
                Err(e) => format!("the fork server did not report: {e}"),
            };
            Err(Error::new(ErrorKind::InitMissing).with_source(io::Error::other(why)))
        }
    }
}

fn reap_within(pidfd: BorrowedFd<'_>, wait: Duration) -> io::Result<Reap> {
    let mut pfd = [poll::PollFd::new(pidfd, poll::POLLIN)];
    poll::poll(&mut pfd, Some(Instant::now() + wait))?;
    pidfd::try_reap_fd(pidfd)
}

/// Asks the server for a worker and sends it its boot frame.
pub(super) fn start(
    name: &str,
    config: &Config,
    front: BorrowedFd<'_>,
    pending: Box<Pending>,
) -> std::result::Result<Started, Failed> {
    let portable = pending.portable.as_ref().expect("checked by start");
    let deadline = Instant::now() + config.start_timeout;
    let (boot, fds) = match portable.boot(&pending.info, None, false, config.ignore_sigint) {
        Ok(boot) => boot,
        Err(error) => return Err(Failed::NotStarted { error, pending }),
    };
    // The boot frame first, into the socket's buffer: the worker reads it
    // as soon as it is forked, while the reply with its pid is on its way.
    if let Err(e) = boot::send(front, &boot, &fds, deadline) {
        drain(pending.backend_end.as_fd());
        return Err(Failed::NotStarted {
            error: Error::io(e),
            pending,
        });
    }
    let (pid, pidfd, status) = match ask(name, pending.backend_end.as_fd(), deadline) {
        Ok(reply) => reply,
        Err(error) => {
            // Nobody read the frame: take it back, so that the next start
            // sends it once.
            drain(pending.backend_end.as_fd());
            return Err(Failed::NotStarted { error, pending });
        }
    };
    drop(pending);
    // No hello to wait for: the server itself proved that `init` runs, and
    // a worker that cannot decode its backend reports it as an error
    // message, then exits.
    Ok(Started {
        pid,
        pidfd,
        status: Some(status),
    })
}

/// Discards what waits to be read on `fd` (and the fds that came with it).
fn drain(fd: BorrowedFd<'_>) {
    let mut buf = Vec::new();
    let mut fds = Vec::new();
    while matches!(socket::recv_into(fd, &mut buf, 64 * 1024, false, &mut fds), Ok(n) if n > 0) {
        buf.clear();
        fds.clear();
    }
}

/// Sends one request; returns the worker's pid, its pidfd and our end of
/// its status channel.
fn ask(
    name: &str,
    backend_end: BorrowedFd<'_>,
    deadline: Instant,
) -> Result<(libc::pid_t, OwnedFd, OwnedFd)> {
    let (status, theirs) = socket::packet_pair().map_err(Error::io)?;
    let name = if name.is_empty() { "worker" } else { name };
    {
        let mut guard = server();
        let mut retried = false;
        loop {
            let server = ensure(&mut guard)?;
            let fds = [backend_end, theirs.as_fd()];
            match socket::send_with_fds(server.control.as_fd(), name.as_bytes(), &fds) {
                Ok(_) => break,
                // The server died since `ensure` looked: once more, with a new one.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) && !retried => {
                    retried = true;
                    let dead = guard.take().expect("ensured");
                    let _ = reap_within(dead.pidfd.as_fd(), KILL_WAIT);
                }
                Err(e) => return Err(Error::io(e)),
            }
        }
    }
    drop(theirs);
    let (bytes, mut fds) = match read_packet(status.as_fd(), Some(deadline)) {
        Ok(reply) => reply,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            return Err(Error::new(ErrorKind::Timeout));
        }
        Err(e) => return Err(Error::io(e)),
    };
    match (bytes.first(), fds.pop()) {
        (Some(0), Some(pidfd)) if bytes.len() == 5 => {
            let pid = i32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes"));
            Ok((pid, pidfd, status))
        }
        (Some(1), _) => Err(
            Error::new(ErrorKind::Io).with_source(io::Error::other(format!(
                "the fork server could not fork: {}",
                String::from_utf8_lossy(&bytes[1..])
            ))),
        ),
        _ => Err(Error::new(ErrorKind::Disconnected)
            .with_source(io::Error::other("the fork server ended before it answered"))),
    }
}

/// Reads the exit status from a status channel: `Running` if it has not
/// come yet (by `deadline`), `Gone` if the server died first.
pub(in crate::process) fn read_status(
    status: BorrowedFd<'_>,
    deadline: Option<Instant>,
) -> io::Result<Reap> {
    match read_packet(status, deadline) {
        Ok((bytes, _)) if bytes.len() == 4 => Ok(Reap::Exited(ExitStatus::from_raw(
            i32::from_le_bytes(bytes[..].try_into().expect("4 bytes")),
        ))),
        Ok(_) => Ok(Reap::Gone),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(Reap::Running),
        Err(e) => Err(e),
    }
}

/// One packet (and its fds); `deadline` bounds the wait (`Some(now)`: do
/// not wait). End of stream is an empty packet.
pub(in crate::process) fn read_packet(
    fd: BorrowedFd<'_>,
    deadline: Option<Instant>,
) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    loop {
        if let Some(deadline) = deadline {
            let mut pfd = [poll::PollFd::new(fd, poll::POLLIN)];
            if poll::poll(&mut pfd, Some(deadline))? == 0 {
                return Err(io::ErrorKind::TimedOut.into());
            }
        }
        let mut buf = Vec::new();
        let mut fds = Vec::new();
        match socket::recv_into(fd, &mut buf, 4096, deadline.is_none(), &mut fds) {
            Ok(_) => return Ok((buf, fds)),
            Err(e) if socket::is_transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
}
