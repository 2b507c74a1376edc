//! Backend *programs*: a Rust frontend forks with `build_fn`, the child
//! replaces itself with `examples/square_backend` through `Intercom::exec`,
//! and the program adopts the intercom with `Intercom::from_env`.
//!
//! The example is built by `main` before the cases run (`cargo build
//! --example`, bounded): `cargo test --test program` alone does not build
//! examples, and a stale binary would test old code.

mod common;

use std::os::fd::{AsRawFd, IntoRawFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{WAIT, recv};
use forkbridge::{ErrorKind, INTERCOM_FD_ENV, Intercom, Message, MessageProcess, message};
use forkbridge_testkit::{open_fds, reap};

static SQUARE_BACKEND: OnceLock<PathBuf> = OnceLock::new();

/// How long building the example may take (the library is usually built
/// already; the bound is for a machine busy with other builds).
const BUILD_BOUND: Duration = Duration::from_secs(600);

fn main() {
    let path = build_example("square_backend");
    SQUARE_BACKEND.set(path).expect("set once");
    common::run(&[
        (
            "a_program_started_with_exec_answers_and_stops_in_order",
            a_program_started_with_exec_answers_and_stops_in_order,
        ),
        (
            "exec_returns_only_when_the_exec_failed",
            exec_returns_only_when_the_exec_failed,
        ),
        (
            "from_env_adopts_a_named_stream_socket_once_and_refuses_the_rest",
            from_env_adopts_a_named_stream_socket_once_and_refuses_the_rest,
        ),
    ]);
}

/// Builds example `name` of this package with the profile, target
/// directory and features this test binary was built with, and returns
/// its path.
fn build_example(name: &str) -> PathBuf {
    // target/<profile>/deps/program-<hash> → target/<profile>
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target layout")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("target layout");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("no profile in {}", profile_dir.display()),
    };
    let mut features = Vec::new();
    if cfg!(feature = "tokio") {
        features.push("tokio");
    }
    if cfg!(feature = "macros") {
        features.push("macros");
    }
    let started = Instant::now();
    let mut cargo = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "forkbridge", "--example", name])
        .args(["--profile", profile, "--features", &features.join(",")])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cargo runs");
    let status = loop {
        if let Some(status) = cargo.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > BUILD_BOUND {
            let _ = cargo.kill();
            let _ = cargo.wait();
            panic!("building example {name} took over {BUILD_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut errors = String::new();
    if let Some(mut stderr) = cargo.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut errors);
    }
    assert!(
        status.success(),
        "building example {name}: {status}\n{errors}"
    );
    let path = profile_dir.join("examples").join(name);
    assert!(path.is_file(), "no {}", path.display());
    path
}

/// A frontend whose backend `exec`s `program`; the function's exit code
/// says why `exec` came back (42: an `Io` error).
fn exec_process(name: &str, program: PathBuf) -> MessageProcess {
    let mut p = MessageProcess::builder(name)
        .build_fn(move |intercom| {
            let err = intercom.exec(&mut Command::new(&program));
            if err.kind() == &ErrorKind::Io { 42 } else { 43 }
        })
        .unwrap();
    p.start().unwrap();
    p
}

/// The flags of fd `fd` of process `pid`, from `/proc/<pid>/fdinfo`.
fn fd_flags(pid: i32, fd: &str) -> u32 {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .expect("a flags line");
    u32::from_str_radix(flags.trim(), 8).unwrap()
}

fn a_program_started_with_exec_answers_and_stops_in_order() {
    let program = SQUARE_BACKEND.get().unwrap().clone();
    let mut p = exec_process("square", program.clone());
    let pid = p.pid().unwrap();
    p.send(message!("square", x = 12.0)).unwrap();
    let reply = recv(&mut p);
    assert_eq!(reply.command(), "squared", "{reply}");
    assert_eq!(reply.param::<f64>("x").unwrap(), 12.0);
    assert_eq!(reply.param::<f64>("y").unwrap(), 144.0);
    // The forked child became the program: same pid, the example's image.
    let image = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(image, program.canonicalize().unwrap());
    // The program adopted the fd named in its environment, close-on-exec
    // again, so programs it starts would not inherit it.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let prefix = format!("{INTERCOM_FD_ENV}=");
    let fd = environ
        .split(|&b| b == 0)
        .find_map(|var| var.strip_prefix(prefix.as_bytes()))
        .map(|fd| String::from_utf8(fd.to_vec()).unwrap())
        .expect("the fd is named in the program's environment");
    assert_ne!(fd_flags(pid, &fd) & libc::O_CLOEXEC as u32, 0, "fd {fd}");
    // More commands, in order, through the same intercom.
    p.feed(message!("describe", n = 3i64)).unwrap();
    p.feed(Message::new("cube")).unwrap();
    p.send(message!("square", x = -1.5)).unwrap();
    let described = recv(&mut p);
    assert_eq!(described.command(), "described", "{described}");
    assert!(described.param::<String>("n").unwrap().contains('3'));
    assert_eq!(recv(&mut p).param::<String>("command").unwrap(), "cube");
    assert_eq!(recv(&mut p).param::<f64>("y").unwrap(), 2.25);
    // The stop request reaches the program as `Ok(None)`: it leaves by
    // itself, with status 0, long before the 5 s stop bound would send
    // SIGTERM.
    let t = Instant::now();
    let status = p.stop().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
}

fn exec_returns_only_when_the_exec_failed() {
    let mut p = exec_process("nowhere", "/nonexistent/forkbridge-no-such-program".into());
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    assert_eq!(err.exit_status().unwrap().code(), Some(42), "{err}");
}

/// A message frame as the frontend writes it: length, kind 0, the body.
fn message_frame(msg: &Message) -> Vec<u8> {
    let body = postcard::to_stdvec(msg).unwrap();
    let mut frame = u32::try_from(body.len() + 1)
        .unwrap()
        .to_le_bytes()
        .to_vec();
    frame.push(0);
    frame.extend_from_slice(&body);
    frame
}

/// Sets the intercom variable (`None`: removes it).
fn set_fd_env(value: Option<&str>) {
    // SAFETY: the test process is single-threaded (the harness runs every
    // case on the main thread), so nothing reads the environment meanwhile.
    unsafe {
        match value {
            Some(v) => std::env::set_var(INTERCOM_FD_ENV, v),
            None => std::env::remove_var(INTERCOM_FD_ENV),
        }
    }
}

fn from_env_adopts_a_named_stream_socket_once_and_refuses_the_rest() {
    use std::io::{Read, Write};
    let invalid = |r: forkbridge::Result<Intercom>| {
        let err = r.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidArgument, "{err}");
        std::error::Error::source(&err).map_or_else(String::new, ToString::to_string)
    };
    // An fd that is not a socket, in a child of its own: the first
    // adoption attempt uses up this process's one chance.
    let (pipe, _pipe_w) = std::io::pipe().unwrap();
    // SAFETY: the test process is single-threaded; the child only calls
    // `from_env` and `_exit`s with the outcome, never returning into the
    // harness.
    match unsafe { libc::fork() } {
        0 => {
            set_fd_env(Some(&pipe.as_raw_fd().to_string()));
            let code = match Intercom::from_env() {
                Err(e) if e.kind() == &ErrorKind::InvalidArgument => 0,
                Err(_) => 1,
                Ok(_) => 2,
            };
            // SAFETY: ends the child without running anything else.
            unsafe { libc::_exit(code) }
        }
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        child => {
            let status = reap(child);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "a pipe was not refused: {status:#x}"
            );
        }
    }
    drop(pipe);
    let fds = open_fds();
    set_fd_env(None);
    invalid(Intercom::from_env());
    set_fd_env(Some("three"));
    invalid(Intercom::from_env());

    let (mut front, back) = std::os::unix::net::UnixStream::pair().unwrap();
    let back = back.into_raw_fd();
    // SAFETY: clears close-on-exec on our own open fd, as `exec` does.
    assert_eq!(unsafe { libc::fcntl(back, libc::F_SETFD, 0) }, 0);
    set_fd_env(Some(&back.to_string()));
    let mut intercom = Intercom::from_env().expect("adopts the socket");
    // SAFETY: reads the flags of the fd the intercom now owns.
    let flags = unsafe { libc::fcntl(back, libc::F_GETFD) };
    assert_eq!(
        flags & libc::FD_CLOEXEC,
        libc::FD_CLOEXEC,
        "not close-on-exec"
    );
    // The same wire as any intercom, both ways.
    front
        .write_all(&message_frame(&Message::new("hello")))
        .unwrap();
    let got = intercom.recv_timeout(WAIT).unwrap().expect("a message");
    assert_eq!(got.command(), "hello");
    intercom.send(message!("hi", n = 7)).unwrap();
    front.set_read_timeout(Some(WAIT)).unwrap();
    let mut len = [0u8; 4];
    front.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    front.read_exact(&mut body).unwrap();
    assert_eq!(body[0], 0, "a message frame");
    let hi: Message = postcard::from_bytes(&body[1..]).unwrap();
    assert_eq!((hi.command(), hi.param::<u64>("n").unwrap()), ("hi", 7));
    // Only the first adoption succeeds; the variable stays set.
    let again = invalid(Intercom::from_env());
    assert!(again.contains("already adopted"), "{again}");
    assert_eq!(
        std::env::var(INTERCOM_FD_ENV).unwrap(),
        back.to_string(),
        "the variable was cleared"
    );
    set_fd_env(None);
    drop((intercom, front));
    assert_eq!(open_fds(), fds, "an fd leaked");
}
