//! `fork(2)` and what the child does before any user code runs.
//!
//! The steps in [`child_setup`] follow the rule in the module docs of
//! `sys`: no allocation, no lock, only async-signal-safe calls, because the
//! child may come from a process that had other threads (when the caller
//! opted in).

use std::io;
use std::os::fd::RawFd;

use super::syscall;

/// What `fork` returned on this side.
#[derive(Debug)]
pub(crate) enum Forked {
    /// We are the parent; the child has this pid.
    Parent(libc::pid_t),
    /// We are the child.
    Child,
}

/// `fork(2)` through libc, so `pthread_atfork` handlers (malloc's) run.
///
/// Every signal is blocked across the fork, so a signal sent to the new pid
/// before [`child_setup`] has set the child's dispositions (a Ctrl-C right
/// after `start`) waits, pending, until they are set, instead of acting on
/// the parent's. The parent's mask is restored at once; the child's is
/// emptied by `child_setup`.
pub(crate) fn fork() -> io::Result<Forked> {
    FORKS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    // SAFETY: an all-zero `sigset_t` is a valid value for `sigfillset` to
    // initialise; `pthread_sigmask` reads `all` and writes the old mask into
    // `old`, both live locals.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: `fork` has no memory-safety preconditions of its own; what the
    // child may do afterwards is restricted by the callers (see the module
    // docs), which run only `child_setup` before the backend's code, and the
    // backend's code runs only after the single-thread check or an explicit
    // opt-in by the user.
    let res = syscall!(fork());
    if !matches!(res, Ok(0)) {
        // SAFETY: restores the mask saved above; `old` is initialised.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    }
    Ok(match res? {
        0 => Forked::Child,
        pid => Forked::Parent(pid),
    })
}

/// Leaves the process at once: no atexit handlers, no destructors, no
/// unwinding into the parent's frames.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and takes any status.
    unsafe { libc::_exit(code) }
}

/// How many times this process has forked (or tried to) through
/// [`fork`]: a value made before a fork may have a copy in a child.
static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The number of forks this process has made so far (see `FORKS`).
pub(crate) fn forks() -> u64 {
    FORKS.load(std::sync::atomic::Ordering::SeqCst)
}

/// The process id of the caller.
pub(crate) fn getpid() -> libc::pid_t {
    // SAFETY: `getpid` cannot fail and has no preconditions.
    unsafe { libc::getpid() }
}

/// Whether the calling thread is the process's main thread.
pub(crate) fn is_main_thread() -> bool {
    // SAFETY: `gettid` cannot fail and has no preconditions.
    let tid = unsafe { libc::gettid() };
    tid == getpid()
}

/// What a fork needs to know of the process, from one read of
/// `/proc/self/status`: its thread count, and which signals it catches or
/// ignores (bit `n - 1` for signal `n`), so the child resets only those
/// instead of every signal, one system call each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcStatus {
    pub(crate) threads: usize,
    /// Signals with a handler or `SIG_IGN`: the ones a child must reset.
    pub(crate) not_default: u64,
}

impl ProcStatus {
    pub(crate) fn read() -> io::Result<ProcStatus> {
        // One `read` into a buffer the file fits in (about 1.5 KiB), where
        // `read_to_string` would `statx` and then read in growing pieces.
        use std::io::Read;
        let mut buf = [0u8; 8192];
        let mut file = std::fs::File::open("/proc/self/status")?;
        let mut len = 0;
        while len < buf.len() {
            match file.read(&mut buf[len..])? {
                0 => break,
                n => len += n,
            }
        }
        let text = std::str::from_utf8(&buf[..len])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .ok_or_else(|| io::Error::other(format!("/proc/self/status has no {name}")))
        };
        let mask = |name: &str| {
            field(name).and_then(|v| {
                u64::from_str_radix(v, 16).map_err(|e| io::Error::other(format!("{name} {v}: {e}")))
            })
        };
        let threads = field("Threads:")?
            .parse()
            .map_err(|e| io::Error::other(format!("Threads: {e}")))?;
        Ok(ProcStatus {
            threads,
            not_default: mask("SigCgt:")? | mask("SigIgn:")?,
        })
    }
}

/// Settings the child applies right after the fork.
#[derive(Debug)]
pub(crate) struct ChildSetup<'a> {
    /// The pid of the parent, read before the fork.
    pub(crate) parent: libc::pid_t,
    /// Signal to receive when the parent dies, if any (set only when the
    /// fork happened on the main thread: `PR_SET_PDEATHSIG` fires when the
    /// forking *thread* exits).
    pub(crate) parent_death_signal: Option<libc::c_int>,
    /// Ignore `SIGINT` (valkka-multiprocess's `ignoreSIGINT`).
    pub(crate) ignore_sigint: bool,
    /// Keep the parent's signal handlers instead of restoring defaults (an
    /// embedded interpreter's handlers must survive into the child).
    pub(crate) keep_handlers: bool,
    /// The signals whose disposition is not the default in the parent
    /// ([`ProcStatus::not_default`]); all of them when another thread could
    /// have changed one since it was read.
    pub(crate) not_default: u64,
    /// Descriptors that belong to the parent or to other processes.
    pub(crate) close: &'a [RawFd],
    /// The thread name `ps`, `top` and `/proc/<pid>/comm` show for the
    /// child (at most 15 bytes and a NUL, prepared before the fork).
    pub(crate) comm: [u8; 16],
}

/// The child's first steps. Returns `false` if the parent already died
/// before the parent-death signal was armed; the caller then leaves.
pub(crate) fn child_setup(setup: &ChildSetup<'_>) -> bool {
    if let Some(sig) = setup.parent_death_signal {
        // SAFETY: `prctl(PR_SET_PDEATHSIG, sig)` only stores a signal number
        // in the calling process; the remaining arguments are unused.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    }
    // SAFETY: `getppid` cannot fail and has no preconditions.
    if unsafe { libc::getppid() } != setup.parent {
        return false;
    }
    // SAFETY: `comm` is a NUL-terminated array of 16 bytes, the size
    // PR_SET_NAME reads.
    unsafe {
        libc::prctl(
            libc::PR_SET_NAME,
            setup.comm.as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    reset_signals(setup.ignore_sigint, setup.keep_handlers, setup.not_default);
    if let Some(sig) = setup.parent_death_signal {
        on_parent_death(sig);
    }
    unblock_signals();
    for &fd in setup.close {
        // SAFETY: the fds in `close` were owned by the parent's forkbridge
        // objects; in the child nothing owns its copies, so closing them
        // cannot invalidate a live `OwnedFd` that the child will use.
        unsafe { libc::close(fd) };
    }
    true
}

/// How long a backend whose parent died may take to end in order (finish
/// its handler, run `post_run`) before it is killed: under the one second
/// in which a dead frontend's backends are promised to be gone.
pub(crate) const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_millis(900);

/// The parent-death signal: a real-time signal, so that no default action
/// or handler of the program's own (`SIGTERM`, `SIGHUP`) is taken over.
pub(crate) fn parent_death_signal() -> libc::c_int {
    libc::SIGRTMAX()
}

/// Makes `sig` (the parent-death signal) arm a one-shot timer that sends
/// `SIGKILL` after [`ORPHAN_GRACE`], instead of ending the process at
/// once: the backend sees its parent's end of the socket close and ends
/// in order — its handler finishes, `post_run` runs — and the timer bounds
/// how long that may take (a handler stuck forever, or a socket that a
/// process the parent forked keeps open).
fn on_parent_death(sig: libc::c_int) {
    // SAFETY: a zeroed sigaction is valid to fill; the handler is an
    // `extern "C" fn(c_int)` making only system calls (async-signal-safe).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = arm_orphan_timer as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, std::ptr::null_mut());
    }
}

/// The parent-death signal's handler (see [`on_parent_death`]): raw
/// `timer_create` and `timer_settime` system calls, no allocation, no lock.
extern "C" fn arm_orphan_timer(_: libc::c_int) {
    // SAFETY: a zeroed sigevent is a valid value to fill.
    let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
    event.sigev_notify = libc::SIGEV_SIGNAL;
    event.sigev_signo = libc::SIGKILL;
    let mut timer: libc::c_int = 0;
    let grace = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: ORPHAN_GRACE.as_secs() as libc::time_t,
            tv_nsec: ORPHAN_GRACE.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: `event`, `timer` and `grace` are live locals the kernel
    // reads or writes; a failure leaves the process as it was (it then
    // ends when its loop sees the parent's end of the socket close).
    unsafe {
        if libc::syscall(
            libc::SYS_timer_create,
            libc::CLOCK_MONOTONIC,
            &mut event as *mut libc::sigevent,
            &mut timer as *mut libc::c_int,
        ) == 0
        {
            libc::syscall(
                libc::SYS_timer_settime,
                timer,
                0,
                &grace as *const libc::itimerspec,
                std::ptr::null_mut::<libc::itimerspec>(),
            );
        }
    }
}

/// Restores every signal disposition to its default (unless
/// `keep_handlers`), so the backend starts like a fresh program; the mask
/// (blocked by `fork` until now) is emptied by [`unblock_signals`]. `SIGPIPE` stays
/// ignored as Rust's runtime sets it up (writes return `EPIPE` instead of
/// killing).
fn reset_signals(ignore_sigint: bool, keep_handlers: bool, not_default: u64) {
    let bit = |sig: libc::c_int| 1u64 << (sig - 1);
    // Signals already at their default need no call; SIGPIPE and (if
    // asked) SIGINT are ignored whatever they were.
    let mut reset = if keep_handlers { 0 } else { not_default };
    reset |= bit(libc::SIGPIPE);
    if ignore_sigint {
        reset |= bit(libc::SIGINT);
    }
    for sig in 1..=libc::SIGRTMAX().min(64) {
        if reset & bit(sig) == 0 || sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        if keep_handlers && sig == libc::SIGPIPE {
            continue;
        }
        let action = match sig {
            libc::SIGPIPE => libc::SIG_IGN,
            libc::SIGINT if ignore_sigint => libc::SIG_IGN,
            _ => libc::SIG_DFL,
        };
        // SAFETY: installing SIG_DFL or SIG_IGN involves no handler code;
        // signals that cannot be changed (reserved by libc) return EINVAL,
        // which is harmless and ignored.
        unsafe { libc::signal(sig, action) };
    }
}

/// Empties the signal mask: signals sent since the fork are delivered now,
/// to the dispositions just set.
fn unblock_signals() {
    // SAFETY: an all-zero `sigset_t` is a valid value to pass to `sigemptyset`,
    // which initialises it; `sigprocmask` reads it and writes nothing back
    // (null old set).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Sets the name `ps` and `top` show for this thread (the first 15 bytes).
pub(crate) fn set_name(name: &str) {
    let comm = comm(name);
    // SAFETY: `comm` is a NUL-terminated array of 16 bytes, the size
    // PR_SET_NAME reads.
    unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// The parent's pid.
pub(crate) fn getppid() -> libc::pid_t {
    // SAFETY: `getppid` cannot fail and has no preconditions.
    unsafe { libc::getppid() }
}

/// Ignores `SIGINT` from now on (valkka-multiprocess's `ignoreSIGINT`), in a
/// worker whose other dispositions were already set.
pub(crate) fn ignore_sigint() {
    // SAFETY: installing SIG_IGN involves no handler code.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
}

/// Sends `sig` to process `pid`.
pub(crate) fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: `kill` takes plain integers; a stale pid only yields ESRCH.
    // Callers hold an unreaped child (or its pidfd), so the pid is not reused.
    syscall!(kill(pid, sig)).map(drop)
}

/// A process name as `PR_SET_NAME` takes it: the first 15 bytes of `name`
/// (cut at a character boundary) and a NUL.
pub(crate) fn comm(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&name.as_bytes()[..end]);
    out
}
