//! [`MainContext`]: the four duties of a multiprocess program's main
//! process, and [`run_main`], which performs them in the only safe order and
//! closes on every way out (valkka-multiprocess's `MainContext`).
//!
//! # Design
//!
//! valkka-multiprocess's `MainContext.__init__` calls `startProcesses()` then
//! `startThreads()`, leaves the main loop and `close()` to the user, and
//! installs no signal handler (Ctrl-C is a `KeyboardInterrupt` the user's
//! loop must catch; SIGTERM kills the program and leaves its workers). Here
//! [`run_main`] owns the sequence:
//!
//! 1. install handlers for `SIGINT` and `SIGTERM` that only write a byte to
//!    a pipe (async-signal-safe), so the main loop sees a signal as a
//!    readable fd in its own wait ([`Shutdown`]);
//! 2. `start_processes` — while the program is still single-threaded, so
//!    every fork is safe;
//! 3. `start_threads`;
//! 4. `run`, the main loop, until it returns, fails, panics, or a signal
//!    arrives;
//! 5. `close`, on every one of those ways out; a second `SIGINT`/`SIGTERM`
//!    during `close` makes every [`MessageProcess::stop`] skip its grace
//!    periods and kill at once, so closing is bounded and can be hurried,
//!    never hung.
//!
//! Backends should [ignore SIGINT](crate::MessageProcessBuilder::ignore_sigint):
//! a Ctrl-C in a terminal reaches the whole process group, and the parent
//! then stops them in order.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::app::select::select;
use crate::error::{Error, ErrorKind, Result};
use crate::process::MessageProcess;
use crate::process::registry::Registered;
use crate::supervise::Supervisor;
use crate::sys::signal::{self, ShutdownSignals};

/// The four duties of a program's main process (valkka-multiprocess's `MainContext`).
///
/// ```rust,standalone_crate
/// use std::time::Duration;
/// use forkbridge::{Backend, Handlers, MainContext, Message, MessageProcess, Shutdown, run_main, wait_any};
///
/// struct Worker;
/// impl Backend for Worker { fn register(_: &mut Handlers<Self>) {} }
///
/// #[derive(Default)]
/// struct Manager { workers: Vec<MessageProcess>, pongs: usize }
///
/// impl MainContext for Manager {
///     fn start_processes(&mut self) -> forkbridge::Result<()> {
///         for i in 0..2 {
///             let mut p = MessageProcess::builder(format!("worker-{i}"))
///                 .ignore_sigint(true)
///                 .build(Worker)?;
///             p.start()?;
///             self.workers.push(p);
///         }
///         Ok(())
///     }
///
///     fn run(&mut self, shutdown: &Shutdown) -> forkbridge::Result<()> {
///         for w in &mut self.workers {
///             w.send(Message::new("ping"))?;
///         }
///         while self.pongs < 2 && !shutdown.is_requested() {
///             let workers: Vec<&MessageProcess> = self.workers.iter().collect();
///             let ready = wait_any(&workers, &[shutdown.fd()], Some(Duration::from_secs(5)))?;
///             for i in ready.processes {
///                 self.workers[i].recv()?;
///                 self.pongs += 1;
///             }
///         }
///         Ok(())
///     }
///
///     fn close(&mut self) {
///         for w in &mut self.workers {
///             let _ = w.request_stop();
///         }
///         for w in &mut self.workers {
///             let _ = w.stop();
///         }
///     }
/// }
///
/// let mut manager = Manager::default();
/// let outcome = run_main(&mut manager)?;
/// assert_eq!(manager.pongs, 2);
/// assert_eq!(outcome.exit_code(), 0);
/// # Ok::<(), forkbridge::Error>(())
/// ```
pub trait MainContext {
    /// Creates and starts every process (valkka-multiprocess's `startProcesses`).
    /// Runs while the program is single-threaded: fork here, load big
    /// things later.
    fn start_processes(&mut self) -> Result<()>;

    /// Starts the program's threads, after every process was forked
    /// (valkka-multiprocess's `startThreads`).
    fn start_threads(&mut self) -> Result<()> {
        Ok(())
    }

    /// The main loop (valkka-multiprocess's `__call__`). Return to finish; watch
    /// `shutdown` (its [`fd`](Shutdown::fd) in your wait) to leave on Ctrl-C
    /// or SIGTERM.
    fn run(&mut self, shutdown: &Shutdown) -> Result<()>;

    /// Stops every process and joins the threads (valkka-multiprocess's `close`). Runs
    /// on every way out of `run`, once.
    fn close(&mut self);

    /// The [`Supervisor`] this program's processes live under, if it keeps
    /// them in one: [`run_main`] stops it (every child, in reverse start
    /// order, within its bound) right after `close`, on every way out.
    fn supervisor(&mut self) -> Option<&mut Supervisor> {
        None
    }
}

/// How a [`run_main`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The signal that ended the run (`SIGINT`, `SIGTERM`), if one did.
    pub signal: Option<i32>,
}

impl Outcome {
    /// The conventional exit code: 0, or 128 + the signal number.
    pub fn exit_code(&self) -> i32 {
        self.signal.map_or(0, |s| 128 + s)
    }
}

/// Tells the main loop that the program should stop: a `SIGINT` or
/// `SIGTERM` arrived, or [`request`](Shutdown::request) was called.
#[derive(Debug, Clone)]
pub struct Shutdown {
    signals: Arc<ShutdownSignals>,
}

impl Shutdown {
    fn new(handle_signals: bool) -> Result<Shutdown> {
        let list: &[libc::c_int] = if handle_signals {
            &[libc::SIGINT, libc::SIGTERM]
        } else {
            &[]
        };
        let signals = ShutdownSignals::install(list)?;
        Ok(Shutdown {
            signals: Arc::new(signals),
        })
    }

    /// An fd that is readable once a stop was requested: put it in your
    /// [`select`] or [`wait_any`] next to your processes.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.signals.fd()
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        select(&[self.fd()], &[], &[], Some(Duration::ZERO)).is_ok_and(|r| !r.is_empty())
    }

    /// Waits until a stop is requested or `timeout` passes; returns whether
    /// one was requested.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        select(&[self.fd()], &[], &[], Some(timeout)).is_ok_and(|r| !r.is_empty())
    }

    /// Requests a stop, as a signal would.
    pub fn request(&self) {
        self.signals.request();
    }

    /// The signal that requested the stop, if a signal did.
    pub fn signal(&self) -> Option<i32> {
        match signal::last_signal() {
            0 => None,
            s => Some(s),
        }
    }
}

/// Runs a [`MainContext`]: installs the `SIGINT`/`SIGTERM` handlers, starts
/// the processes, then the threads, runs the main loop, and closes on every
/// way out (see the module docs). A panic in any duty is re-raised after
/// `close` ran.
///
/// # Errors
///
/// The first error of `start_processes`, `start_threads` or `run` (after
/// `close` ran); [`ErrorKind::Io`] if the signal pipe cannot be made.
pub fn run_main<C: MainContext + ?Sized>(ctx: &mut C) -> Result<Outcome> {
    let shutdown = Shutdown::new(true)?;
    // Keeps the shutdown pipe out of every child forked meanwhile; dropped
    // before `shutdown` closes it.
    let _listed = Registered::new(shutdown.fd().as_raw_fd());
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        ctx.start_processes()?;
        ctx.start_threads()?;
        if !shutdown.is_requested() {
            ctx.run(&shutdown)?;
        }
        Ok(())
    }));
    signal::set_closing();
    let closed = catch_unwind(AssertUnwindSafe(|| close(ctx)));
    let outcome = Outcome {
        signal: shutdown.signal(),
    };
    match (result, closed) {
        (Err(panic), _) | (Ok(_), Err(panic)) => resume_unwind(panic),
        (Ok(Err(e)), Ok(())) => Err(e),
        (Ok(Ok(())), Ok(())) => Ok(outcome),
    }
}

/// `close`, then the supervisor's stop.
fn close<C: MainContext + ?Sized>(ctx: &mut C) {
    ctx.close();
    if let Some(supervisor) = ctx.supervisor() {
        supervisor.stop();
    }
}

/// A [`MainContext`] whose main loop runs on a thread (valkka-multiprocess's
/// `runAsThread`), for tests and for programs whose main thread belongs to
/// something else (a GUI). No signal handlers are installed.
#[derive(Debug)]
pub struct MainThread<C> {
    shutdown: Shutdown,
    handle: JoinHandle<(C, Result<()>)>,
    done: std::sync::mpsc::Receiver<()>,
}

/// Starts the processes and threads of `ctx` here, then runs its main loop
/// on a new thread until [`MainThread::stop`].
///
/// # Errors
///
/// The error of `start_processes` or `start_threads` (after `close` ran).
pub fn run_as_thread<C: MainContext + Send + 'static>(mut ctx: C) -> Result<MainThread<C>> {
    let shutdown = Shutdown::new(false)?;
    let started = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        ctx.start_processes()?;
        ctx.start_threads()
    }));
    match started {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            close(&mut ctx);
            return Err(e);
        }
        Err(panic) => {
            close(&mut ctx);
            resume_unwind(panic);
        }
    }
    let (tx, done) = std::sync::mpsc::channel();
    let thread_shutdown = shutdown.clone();
    let handle = std::thread::Builder::new()
        .name("forkbridge-main".into())
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(|| ctx.run(&thread_shutdown)))
                .unwrap_or_else(|panic| {
                    Err(Error::new(ErrorKind::Io).with_source(format!(
                        "main loop panicked: {}",
                        crate::error::panic_message(&*panic)
                    )))
                });
            let _ = tx.send(());
            (ctx, result)
        })
        .map_err(Error::io)?;
    Ok(MainThread {
        shutdown,
        handle,
        done,
    })
}

impl<C: MainContext> MainThread<C> {
    /// The shutdown handle the loop watches.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Requests the stop, waits up to `timeout` for the loop to return,
    /// then runs `close` and returns the context with the loop's result
    /// (valkka-multiprocess's `stopThread`, which waits forever).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if the loop does not return in time (it keeps
    /// running; `close` has not run).
    pub fn stop(self, timeout: Duration) -> Result<(C, Result<()>)> {
        self.shutdown.request();
        if self.done.recv_timeout(timeout).is_err() {
            return Err(Error::new(ErrorKind::Timeout)
                .with_source("the main loop did not return; it keeps running"));
        }
        let (mut ctx, result) = self
            .handle
            .join()
            .map_err(|_| Error::new(ErrorKind::Io).with_source("the main thread panicked"))?;
        close(&mut ctx);
        Ok((ctx, result))
    }
}

/// What [`wait_any`] found ready.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadySet {
    /// Positions of processes with a message to receive, or that ended
    /// (their `recv` returns at once either way).
    pub processes: Vec<usize>,
    /// Positions of the extra fds that are readable.
    pub extra: Vec<usize>,
}

impl ReadySet {
    /// Whether nothing is ready (the wait timed out).
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty() && self.extra.is_empty()
    }
}

/// Waits until one of the processes has a message or ended, or an extra
/// fd (a [`Shutdown::fd`], a pollable event, a socket) is readable, and says
/// which; the main-loop helper of valkka-multiprocess's tutorial (`safe_select` over a
/// dict of pipes), including messages already buffered in a handle.
///
/// # Errors
///
/// [`ErrorKind::Io`] if the wait fails.
pub fn wait_any(
    processes: &[&MessageProcess],
    extra: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> Result<ReadySet> {
    use std::os::fd::AsFd;
    let buffered: Vec<usize> = processes
        .iter()
        .enumerate()
        .filter(|(_, p)| p.has_read_ahead())
        .map(|(i, _)| i)
        .collect();
    let timeout = if buffered.is_empty() {
        timeout
    } else {
        Some(Duration::ZERO)
    };
    // Each process twice: its intercom and (while it runs) its pidfd.
    let mut fds: Vec<BorrowedFd<'_>> = Vec::with_capacity(processes.len() * 2 + extra.len());
    let mut owner: Vec<usize> = Vec::with_capacity(fds.capacity());
    for (i, p) in processes.iter().enumerate() {
        fds.push(p.as_fd());
        owner.push(i);
        if let Some(pidfd) = p.pidfd() {
            fds.push(pidfd);
            owner.push(i);
        }
    }
    let first_extra = fds.len();
    fds.extend_from_slice(extra);
    let selected = select(&fds, &[], &[], timeout)?;
    let mut ready = ReadySet {
        processes: buffered,
        extra: Vec::new(),
    };
    for pos in selected.read {
        if pos >= first_extra {
            ready.extra.push(pos - first_extra);
        } else if !ready.processes.contains(&owner[pos]) {
            ready.processes.push(owner[pos]);
        }
    }
    ready.processes.sort_unstable();
    Ok(ready)
}
