//! The crate's one error type.
//!
//! # Design
//!
//! crossbeam-channel gives every operation its own error enum
//! (`TryRecvError::{Empty, Disconnected}`, `RecvTimeoutError::{Timeout,
//! Disconnected}`). A message process has more ways to fail than a channel
//! (a frame that does not decode, a fork refused, an I/O error), so each of
//! those enums would need a third "other" variant, and `?` across them would
//! need conversions. Instead every operation returns the same opaque
//! [`Error`], and [`Error::kind`] names what happened; each method's docs list
//! the kinds it returns, so the "matching error types" of crossbeam become
//! matching kinds: `try_recv` → [`ErrorKind::Empty`], `recv_timeout` →
//! [`ErrorKind::Timeout`], all of them → [`ErrorKind::Disconnected`].

use std::fmt;
use std::io;
use std::process::ExitStatus;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. Obtain it with [`Error::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `try_recv`, `try_next`: nothing is ready now.
    Empty,
    /// `try_acquire`: every slot of the ring is in use; a pool's
    /// `try_submit`: every worker has its most calls in flight
    /// (back-pressure).
    Full,
    /// A ring role (producer or consumer) is held by a live process.
    RoleTaken,
    /// A `*_timeout` operation ran out of time.
    Timeout,
    /// The other side is gone: the backend exited, was killed, or closed the
    /// intercom. Messages it sent before that were delivered first. The exit
    /// status is in [`Error::exit_status`] when it could be collected.
    Disconnected,
    /// The process was refused a fork because it has `threads` threads; see
    /// [`MessageProcessBuilder::allow_threads`](crate::MessageProcessBuilder::allow_threads).
    ForkWithThreads {
        /// Threads in the process (`/proc/self/status`) just before the fork.
        threads: usize,
    },
    /// `start` was called on a process that was already started.
    AlreadyStarted,
    /// An operation that needs a running backend was called before `start`.
    NotStarted,
    /// A frame is larger than the configured maximum (checked before any
    /// allocation; the frame is skipped, the stream stays usable).
    FrameTooLarge {
        /// Length announced by the frame header, or of the encoded message.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A frame's body is not a valid message (the frame is skipped).
    Decode,
    /// A message could not be encoded.
    Encode,
    /// A message has no parameter of this name.
    MissingParam {
        /// The parameter asked for.
        name: String,
    },
    /// A parameter exists but holds another type than the one asked for.
    ParamType {
        /// The parameter asked for.
        name: String,
        /// The type asked for.
        expected: &'static str,
        /// What the parameter holds.
        found: &'static str,
    },
    /// [`EventGroup::reserve`](crate::EventGroup::reserve): every event is
    /// reserved (valkka-multiprocess's `NotEnoughEvents`).
    NoFreeEvent {
        /// The group's size.
        capacity: usize,
    },
    /// An event released twice, one never reserved, or of another group.
    NotReserved,
    /// An argument out of range (an event slot, a size).
    InvalidArgument,
    /// A typed call failed in the backend: its handler returned an error
    /// (`kind` `"handler_error"`), panicked (`"panic"`), could not decode
    /// the arguments (`"decode"`), or there is no such typed command
    /// (`"unknown_command"`).
    Remote {
        /// What failed, as above.
        kind: String,
        /// The error's text or the panic message.
        message: String,
    },
    /// The backend cannot cross to a worker that is not a fork: it was
    /// built with `build`, `build_fn` or `build_async`, and the start
    /// method is [`StartMethod::Spawn`](crate::StartMethod::Spawn) or
    /// [`StartMethod::ForkServer`](crate::StartMethod::ForkServer). Build
    /// it with `build_portable` (`Backend + Serialize + DeserializeOwned`).
    NotPortable,
    /// A start method that re-runs the program found no
    /// [`forkbridge::init()`](crate::init) at the top of `main`: in this
    /// process (checked before anything starts), or in the worker (which
    /// then ran `main` instead of the backend, and is killed after the
    /// start timeout or as soon as it exits).
    InitMissing,
    /// A worker received its backend and could not set it up: the bytes
    /// did not decode, or it runs another executable than the frontend.
    Boot {
        /// What the worker reported.
        message: String,
    },
    /// A supervised process hit its restart limit
    /// ([`RestartPolicy::max_restarts`](crate::RestartPolicy::max_restarts))
    /// and stays down.
    GaveUp {
        /// How many times it was restarted before.
        restarts: u32,
        /// Its last exit statuses, oldest first (`None`: not collected, or
        /// the start itself failed).
        exits: Vec<Option<ExitStatus>>,
    },
    /// An operating-system call failed; see [`std::error::Error::source`].
    Io,
}

/// The error of every fallible forkbridge operation.
///
/// ```
/// use forkbridge::{ErrorKind, Message};
///
/// let msg = Message::new("resize").with("width", 640);
/// let err = msg.param::<String>("width").unwrap_err();
/// assert!(matches!(err.kind(), ErrorKind::ParamType { .. }));
/// assert_eq!(err.to_string(), "parameter 'width' is int, not string");
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    process: Option<String>,
    status: Option<ExitStatus>,
    /// A `Disconnected` whose cause is a lost host or link.
    host_lost: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                process: None,
                status: None,
                host_lost: false,
                source: None,
            }),
        }
    }

    pub(crate) fn io(err: io::Error) -> Error {
        Error::new(ErrorKind::Io).with_source(err)
    }

    pub(crate) fn disconnected(status: Option<ExitStatus>) -> Error {
        let mut err = Error::new(ErrorKind::Disconnected);
        err.inner.status = status;
        err
    }

    /// `Disconnected` because the backend's host, or the link to it, was
    /// lost; `reason` says what was seen.
    pub(crate) fn host_lost(reason: &str) -> Error {
        let mut err = Error::new(ErrorKind::Disconnected).with_source(reason.to_owned());
        err.inner.host_lost = true;
        err
    }

    pub(crate) fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Error {
        self.inner.source = Some(source.into());
        self
    }

    /// A copy for a second receiver (a source error is copied as its text):
    /// one failure that ends several calls.
    pub(crate) fn duplicate(&self) -> Error {
        Error {
            inner: Box::new(Inner {
                kind: self.inner.kind.clone(),
                process: self.inner.process.clone(),
                status: self.inner.status,
                host_lost: self.inner.host_lost,
                source: self.inner.source.as_ref().map(|s| s.to_string().into()),
            }),
        }
    }

    pub(crate) fn with_process(mut self, name: &str) -> Error {
        if self.inner.process.is_none() {
            self.inner.process = Some(name.to_owned());
        }
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.inner.kind
    }

    /// The name of the process the operation was about, if any.
    pub fn process_name(&self) -> Option<&str> {
        self.inner.process.as_deref()
    }

    /// For [`ErrorKind::Disconnected`]: how the backend ended, if it was
    /// reaped (it is not when something else in the program reaped it).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.inner.status
    }

    /// Shorthand for `kind() == &ErrorKind::Disconnected`.
    pub fn is_disconnected(&self) -> bool {
        self.inner.kind == ErrorKind::Disconnected
    }

    /// A [`ErrorKind::Disconnected`] whose backend ran on another host
    /// that was lost, or whose link to it was: no exit status will come,
    /// and the backend may still be running there until it notices.
    pub fn is_host_lost(&self) -> bool {
        self.inner.host_lost
    }

    /// Shorthand for `kind() == &ErrorKind::Timeout`.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::Timeout
    }

    /// Shorthand for `kind() == &ErrorKind::Empty`.
    pub fn is_empty(&self) -> bool {
        self.inner.kind == ErrorKind::Empty
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.inner.process {
            write!(f, "process '{name}': ")?;
        }
        match &self.inner.kind {
            ErrorKind::Empty => f.write_str("no message ready")?,
            ErrorKind::Timeout => f.write_str("timed out")?,
            ErrorKind::Full => f.write_str("every slot is in use")?,
            ErrorKind::RoleTaken => f.write_str("the ring role is held by a live process")?,
            ErrorKind::Disconnected => match (&self.inner.status, &self.inner.source) {
                (Some(status), _) => write!(f, "backend disconnected ({status})")?,
                (None, Some(source)) if self.inner.host_lost => {
                    write!(f, "backend disconnected: host lost ({source})")?
                }
                (None, Some(source)) => write!(f, "disconnected: {source}")?,
                (None, None) => f.write_str("backend disconnected (exit status unknown)")?,
            },
            ErrorKind::ForkWithThreads { threads } => write!(
                f,
                "refusing to fork: the process has {threads} threads \
                 (use StartMethod::ForkServer or Spawn, start processes before threads, \
                 or opt in with allow_threads)"
            )?,
            ErrorKind::AlreadyStarted => f.write_str("process already started")?,
            ErrorKind::NotStarted => f.write_str("process not started")?,
            ErrorKind::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max} bytes")?
            }
            ErrorKind::Decode => f.write_str("malformed frame")?,
            ErrorKind::Encode => f.write_str("message could not be encoded")?,
            ErrorKind::MissingParam { name } => write!(f, "no parameter '{name}'")?,
            ErrorKind::ParamType {
                name,
                expected,
                found,
            } => write!(f, "parameter '{name}' is {found}, not {expected}")?,
            ErrorKind::NoFreeEvent { capacity } => {
                write!(f, "all {capacity} events of the group are reserved")?
            }
            ErrorKind::NotReserved => f.write_str("event is not reserved")?,
            ErrorKind::InvalidArgument => f.write_str("invalid argument")?,
            ErrorKind::Remote { kind, message } => write!(f, "remote {kind}: {message}")?,
            ErrorKind::NotPortable => f.write_str(
                "this backend cannot cross to a worker that is not a fork: \
                 build it with build_portable (Backend + Serialize + DeserializeOwned)",
            )?,
            ErrorKind::InitMissing => f.write_str(
                "this start method re-runs the program: call forkbridge::init() \
                 first thing in main",
            )?,
            ErrorKind::Boot { message } => write!(f, "the worker could not start: {message}")?,
            ErrorKind::GaveUp { restarts, exits } => {
                write!(f, "given up after {restarts} restarts")?;
                if let Some(Some(last)) = exits.last() {
                    write!(f, " (last exit: {last})")?;
                }
            }
            ErrorKind::Io => f.write_str("I/O error")?,
        }
        if let Some(source) = &self.inner.source {
            if matches!(
                self.inner.kind,
                ErrorKind::Io | ErrorKind::Decode | ErrorKind::Encode | ErrorKind::InitMissing
            ) {
                write!(f, ": {source}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind);
        if let Some(name) = &self.inner.process {
            d.field("process", name);
        }
        if let Some(status) = &self.inner.status {
            d.field("status", status);
        }
        if self.inner.host_lost {
            d.field("host_lost", &true);
        }
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Error {
        Error::io(err)
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match err.kind() {
            ErrorKind::Empty | ErrorKind::Full => io::ErrorKind::WouldBlock,
            ErrorKind::Timeout => io::ErrorKind::TimedOut,
            ErrorKind::Disconnected => io::ErrorKind::BrokenPipe,
            ErrorKind::Decode | ErrorKind::FrameTooLarge { .. } => io::ErrorKind::InvalidData,
            ErrorKind::MissingParam { .. } | ErrorKind::ParamType { .. } | ErrorKind::Encode => {
                io::ErrorKind::InvalidInput
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}

/// The text of a panic's payload (a handler's, a hook's, a thread's).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
