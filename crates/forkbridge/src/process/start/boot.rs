//! The first words between a frontend and a worker that is not its fork:
//! the boot frame that tells the worker what to run, and the hello that
//! says it runs.
//!
//! A forked child finds its backend in its own copy of the parent's
//! memory. A spawned or served worker starts from `main` with nothing, so
//! the frontend writes one frame on the intercom before any message:
//!
//! ```text
//! u32 length, u32 fd count, postcard(Boot), then one byte per 16 fds (SCM_RIGHTS)
//! ```
//!
//! [`Boot`] names the code to run as an offset from a fixed function of
//! the executable (both ends run the same file; the worker checks that),
//! and carries the backend as postcard bytes with the fds of the shared
//! objects it holds beside them (`data::fds`). A spawned worker decodes it
//! and answers with a hello (one status byte, then a length-prefixed error
//! text) before its backend's `pre_run`, so `Spawn`'s `start` returns only
//! once the worker runs this program's `init` and could decode what it was
//! given, and a program that forgot `init` is an error within a bound
//! instead of a frontend waiting forever. A served worker says nothing: its
//! server already proved `init` runs, so `start` returns with the server's
//! reply, and a decode failure reaches the frontend as an `"error"`
//! message (`pre_run`) before the worker exits with status 2.
//!
//! Rejected: a registry of backend types by name (generic backends could
//! not register themselves, and every program would have to list its
//! types); sending the frame through the message protocol (the worker's
//! connection needs the frame size limit, which is in this frame).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::{ChildInfo, endpoint};
use crate::data::fds;
use crate::error::{Error, ErrorKind};
use crate::protocol::fault::FaultKind;
use crate::sys::fork::{self, ChildSetup};
use crate::sys::socket::{self, MAX_FDS};
use crate::sys::{poll, spawn};
use crate::transport::lane::LaneRings;

use super::super::registry;

/// The largest boot frame a worker accepts.
const MAX_BOOT: usize = 1 << 30;

/// What a worker is told to run.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Boot {
    /// `(st_dev, st_ino)` of the frontend's executable.
    pub(crate) executable: (u64, u64),
    /// The entry's offset (`sys::spawn::code_offset`); `None` for a worker
    /// of another language, which reads the payload itself.
    pub(crate) entry: Option<isize>,
    /// The pid whose death ends the worker, when the worker arms the
    /// parent-death signal itself (spawned from a main thread).
    pub(crate) parent: Option<i32>,
    /// Whether the worker is the spawner's child (it sets itself up) or a
    /// fork server's (the server did).
    pub(crate) spawned: bool,
    pub(crate) ignore_sigint: bool,
    pub(crate) name: String,
    pub(crate) target: String,
    pub(crate) max_frame: u64,
    pub(crate) spin: Duration,
    /// postcard of the backend and the rest its entry needs.
    pub(crate) payload: Vec<u8>,
    /// How many of the frame's fds belong to the payload; the rest are
    /// the lane's.
    pub(crate) payload_fds: u32,
    /// postcard of the large-message lane, if the process has one.
    pub(crate) lane: Option<Vec<u8>>,
}

/// A boot frame as the worker received it, with its fds.
#[derive(Debug)]
pub(crate) struct Arrival {
    boot: Boot,
    fds: Vec<OwnedFd>,
}

impl Arrival {
    /// Decodes the payload, handing its fds to the shared objects in it.
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, String> {
        let fds = self.take_payload_fds();
        fds::decode(&self.boot.payload, fds)
            .map_err(|e| format!("the backend does not decode: {e}"))
    }

    /// What the backend's loop needs besides the backend (call after
    /// [`decode`](Arrival::decode)).
    pub(crate) fn info(self) -> Result<ChildInfo, String> {
        let lane = match &self.boot.lane {
            Some(bytes) => Some(
                fds::decode::<LaneRings>(bytes, self.fds)
                    .map_err(|e| format!("the large-message lane does not decode: {e}"))?,
            ),
            None => None,
        };
        Ok(ChildInfo {
            name: self.boot.name,
            target: self.boot.target,
            max_frame: usize::try_from(self.boot.max_frame).unwrap_or(usize::MAX),
            spin: self.boot.spin,
            lane,
        })
    }
}

/// What a worker runs once decoded: the backend's loop over the intercom.
pub(crate) type Runner = Box<dyn FnOnce(OwnedFd) -> i32>;
/// The code a boot frame names: decodes a backend, or says why not.
pub(crate) type PortableEntry = spawn::Entry<Arrival, Result<Runner, String>>;

/// A backend ready to cross: encoded at build, sent at each start.
#[derive(Debug)]
pub(crate) struct Portable {
    entry: Option<isize>,
    /// The program a spawned worker runs, with its arguments (`None`: this
    /// executable, with this process's arguments).
    command: Option<Vec<OsString>>,
    payload: Vec<u8>,
    /// The fds of the shared objects in the payload.
    fds: Vec<OwnedFd>,
}

impl Portable {
    /// Encodes `value` (the backend and what its entry needs) for `entry`.
    pub(crate) fn new<T: Serialize>(
        entry: PortableEntry,
        value: &T,
    ) -> crate::error::Result<Portable> {
        let (payload, fds) = encode(value)?;
        Ok(Portable {
            entry: Some(spawn::code_offset(entry)),
            command: None,
            payload,
            fds,
        })
    }

    /// A backend that a program in another language decodes: `payload` and
    /// `fds` go to it as they are, and a spawned worker runs `command`
    /// (program and arguments) instead of this executable.
    pub(crate) fn foreign(command: Vec<OsString>, payload: Vec<u8>, fds: Vec<OwnedFd>) -> Portable {
        Portable {
            entry: None,
            command: Some(command),
            payload,
            fds,
        }
    }

    /// What a spawned worker runs, if not this executable.
    pub(crate) fn command(&self) -> Option<&[OsString]> {
        self.command.as_deref()
    }

    /// The boot frame for one start, and the fds to send with it: the
    /// payload's, then the lane's (dup'd for this start).
    pub(crate) fn boot(
        &self,
        info: &ChildInfo,
        parent: Option<i32>,
        spawned: bool,
        ignore_sigint: bool,
    ) -> crate::error::Result<(Boot, Vec<OwnedFd>)> {
        let mut fds = self
            .fds
            .iter()
            .map(|fd| fd.try_clone())
            .collect::<io::Result<Vec<_>>>()
            .map_err(Error::io)?;
        let lane = match &info.lane {
            Some(lane) => {
                let (bytes, lane_fds) = encode(lane)?;
                fds.extend(lane_fds);
                Some(bytes)
            }
            None => None,
        };
        let boot = Boot {
            executable: match self.entry {
                Some(_) => spawn::executable_id().map_err(Error::io)?,
                None => (0, 0),
            },
            entry: self.entry,
            parent,
            spawned,
            ignore_sigint,
            name: info.name.clone(),
            target: info.target.clone(),
            max_frame: info.max_frame as u64,
            spin: info.spin,
            payload: self.payload.clone(),
            payload_fds: self.fds.len() as u32,
            lane,
        };
        Ok((boot, fds))
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> crate::error::Result<(Vec<u8>, Vec<OwnedFd>)> {
    fds::encode(value).map_err(|e| Error::new(ErrorKind::Encode).with_source(e))
}

/// Writes the boot frame on the frontend's end of the intercom.
pub(crate) fn send(
    front: BorrowedFd<'_>,
    boot: &Boot,
    fds: &[OwnedFd],
    deadline: Instant,
) -> io::Result<()> {
    let body = postcard::to_allocvec(boot).map_err(io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let count = u32::try_from(fds.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut frame = Vec::with_capacity(8 + body.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&count.to_le_bytes());
    frame.extend_from_slice(&body);
    write_all(front, &frame, deadline)?;
    for chunk in fds.chunks(MAX_FDS) {
        let borrowed: Vec<BorrowedFd<'_>> = chunk.iter().map(AsFd::as_fd).collect();
        loop {
            match socket::send_with_fds(front, b"F", &borrowed) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait(front, poll::POLLOUT, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Reads the boot frame (the worker's side; it blocks, and ends at the
/// frontend's end of stream).
fn recv(sock: BorrowedFd<'_>) -> io::Result<Arrival> {
    let mut fds = Vec::new();
    let head = read_exact(sock, 8, None, &mut fds)?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let count = u32::from_le_bytes(head[4..].try_into().expect("4 bytes")) as usize;
    if len > MAX_BOOT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "boot frame too large",
        ));
    }
    let body = read_exact(sock, len, None, &mut fds)?;
    while fds.len() < count {
        let before = fds.len();
        read_exact(sock, 1, None, &mut fds)?;
        if fds.len() == before {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "boot frame lost its fds",
            ));
        }
    }
    let boot = postcard::from_bytes(&body)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("boot frame: {e}")))?;
    Ok(Arrival { boot, fds })
}

/// Writes the boot frame and waits for the worker's hello: `Ok` once it
/// runs its backend.
pub(crate) fn deliver(
    front: BorrowedFd<'_>,
    pidfd: BorrowedFd<'_>,
    boot: &Boot,
    fds: &[OwnedFd],
    deadline: Instant,
) -> Result<(), Error> {
    send(front, boot, fds, deadline).map_err(|e| match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
            init_missing("ended before it reported")
        }
        io::ErrorKind::TimedOut => {
            init_missing("did not read its backend within the start timeout")
        }
        _ => Error::io(e),
    })?;
    await_hello(front, pidfd, deadline)
}

/// Waits for the worker's hello on the frontend's end, watching `pidfd`
/// for its death meanwhile.
pub(crate) fn await_hello(
    front: BorrowedFd<'_>,
    pidfd: BorrowedFd<'_>,
    deadline: Instant,
) -> Result<(), Error> {
    let mut fds = Vec::new();
    let read = |n| -> Result<Vec<u8>, Error> {
        let mut fds = Vec::new();
        read_exact(front, n, Some(deadline), &mut fds).map_err(|e| hello_error(e, deadline))
    };
    let mut pfds = [
        poll::PollFd::new(front, poll::POLLIN),
        poll::PollFd::new(pidfd, poll::POLLIN),
    ];
    if poll::poll(&mut pfds, Some(deadline)).map_err(Error::io)? == 0 {
        return Err(init_missing("did not report within the start timeout"));
    }
    let status =
        read_exact(front, 1, Some(deadline), &mut fds).map_err(|e| hello_error(e, deadline))?;
    if status[0] == 0 {
        return Ok(());
    }
    let len = u32::from_le_bytes(read(4)?[..].try_into().expect("4 bytes")) as usize;
    let text = read(len.min(64 * 1024))?;
    Err(Error::new(ErrorKind::Boot {
        message: String::from_utf8_lossy(&text).into_owned(),
    }))
}

fn hello_error(e: io::Error, deadline: Instant) -> Error {
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
            init_missing("ended before it reported")
        }
        io::ErrorKind::TimedOut if Instant::now() >= deadline => {
            init_missing("did not report within the start timeout")
        }
        _ => Error::io(e),
    }
}

fn init_missing(what: &str) -> Error {
    Error::new(ErrorKind::InitMissing).with_source(io::Error::other(format!("the worker {what}")))
}

/// The worker's side: reads the boot frame from `sock`, sets the process
/// up, says hello and runs the backend. Never returns.
pub(crate) fn worker(sock: OwnedFd) -> ! {
    let arrival = match accept(sock.as_fd()) {
        Ok(arrival) => arrival,
        Err(message) => fail(sock.as_fd(), message),
    };
    // A spawned worker says hello (its frontend waits for it, to tell a
    // program that forgot `init`); a served one starts at once, and a
    // failure reaches its frontend as an error message.
    let spawned = arrival.boot.spawned;
    let name = arrival.boot.name.clone();
    let run = match arrival.boot.entry {
        Some(offset) => {
            let executable = arrival.boot.executable;
            match spawn::code_at::<Arrival, Result<Runner, String>>(offset, executable) {
                Ok(entry) => entry(arrival),
                Err(e) => Err(format!("cannot find the backend's code: {e}")),
            }
        }
        None => Err("the backend is for a program in another language".to_string()),
    };
    let run = match run {
        Ok(run) => run,
        Err(message) if spawned => fail(sock.as_fd(), message),
        Err(message) => {
            endpoint::report_before_run(sock.as_fd(), &name, FaultKind::PreRun, &message);
            fork::exit_now(2)
        }
    };
    if spawned {
        say_hello(sock.as_fd(), Ok(()));
    }
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(sock))).unwrap_or(101);
    let _ = std::panic::catch_unwind(|| {
        use std::io::Write;
        std::io::stdout().flush()
    });
    fork::exit_now(code)
}

/// Reads the boot frame and sets the process up as it says: what every
/// worker does first, whatever its language.
pub(crate) fn accept(sock: BorrowedFd<'_>) -> Result<Arrival, String> {
    let arrival = recv(sock).map_err(|e| format!("boot frame: {e}"))?;
    let boot = &arrival.boot;
    if boot.spawned {
        let not_default = fork::ProcStatus::read().map_or(u64::MAX, |s| s.not_default);
        let setup = ChildSetup {
            parent: boot.parent.unwrap_or_else(fork::getppid),
            parent_death_signal: boot.parent.map(|_| fork::parent_death_signal()),
            ignore_sigint: boot.ignore_sigint,
            // An interpreter's handlers are its own, installed after the
            // exec: keep them (Python's KeyboardInterrupt).
            keep_handlers: boot.entry.is_none(),
            not_default,
            close: &[],
            comm: fork::comm(&boot.name),
        };
        if !fork::child_setup(&setup) {
            fork::exit_now(1);
        }
    } else if boot.ignore_sigint {
        fork::ignore_sigint();
    }
    registry::reset_in_child(sock.as_raw_fd());
    Ok(arrival)
}

/// Reports `message` to the frontend and exits.
pub(crate) fn fail(sock: BorrowedFd<'_>, message: String) -> ! {
    say_hello(sock, Err(message));
    fork::exit_now(2)
}

impl Arrival {
    /// Tells the frontend why this worker cannot run, the way it listens:
    /// a spawned worker's frontend waits for the hello, a served one's
    /// reads an error message. Exits.
    pub(crate) fn fail(self, sock: BorrowedFd<'_>, message: String) -> ! {
        if self.boot.spawned {
            fail(sock, message)
        }
        endpoint::report_before_run(sock, &self.boot.name, FaultKind::PreRun, &message);
        fork::exit_now(2)
    }

    /// The payload as it came, for a worker that decodes it itself.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.boot.payload
    }

    /// The payload's fds, for a worker that decodes it itself.
    pub(crate) fn take_payload_fds(&mut self) -> Vec<OwnedFd> {
        let rest = self
            .fds
            .split_off((self.boot.payload_fds as usize).min(self.fds.len()));
        std::mem::replace(&mut self.fds, rest)
    }
}

/// A worker of another language, once it decoded its payload: says hello
/// and returns its end of the intercom.
pub(crate) fn foreign_ready(
    sock: OwnedFd,
    arrival: Arrival,
) -> Result<crate::transport::intercom::Intercom, String> {
    let spawned = arrival.boot.spawned;
    let info = arrival.info()?;
    if spawned {
        say_hello(sock.as_fd(), Ok(()));
    }
    let (name, spin) = (info.name.clone(), info.spin);
    Ok(crate::transport::intercom::Intercom::new(
        info.conn(sock),
        name,
        spin,
    ))
}

fn say_hello(sock: BorrowedFd<'_>, outcome: Result<(), String>) {
    let mut frame = Vec::new();
    match outcome {
        Ok(()) => frame.push(0),
        Err(text) => {
            frame.push(1);
            frame.extend_from_slice(&(text.len() as u32).to_le_bytes());
            frame.extend_from_slice(text.as_bytes());
        }
    }
    let _ = write_all(sock, &frame, Instant::now() + Duration::from_secs(5));
}

fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        match socket::send(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(fd, poll::POLLOUT, deadline)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads exactly `n` bytes, collecting the fds that come with them;
/// without a deadline it blocks until they or the end of stream arrive.
fn read_exact(
    fd: BorrowedFd<'_>,
    n: usize,
    deadline: Option<Instant>,
    fds: &mut Vec<OwnedFd>,
) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    while buf.len() < n {
        if let Some(deadline) = deadline {
            wait(fd, poll::POLLIN, deadline)?;
        }
        let want = n - buf.len();
        match socket::recv_into(fd, &mut buf, want, deadline.is_none(), fds) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if socket::is_transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf)
}

fn wait(fd: BorrowedFd<'_>, events: i16, deadline: Instant) -> io::Result<()> {
    let mut pfd = [poll::PollFd::new(fd, events)];
    if poll::poll(&mut pfd, Some(deadline))? == 0 {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(())
}
