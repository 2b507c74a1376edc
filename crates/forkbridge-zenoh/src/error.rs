//! The crate's one error type, shaped like forkbridge's: opaque, with a kind.

use std::fmt;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. Obtain it with [`Error::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A name, namespace, endpoint or setting that cannot be used.
    Config,
    /// Zenoh could not open the session or declare what a link needs.
    Link,
    /// No backend of this name answered within the attach timeout.
    NotFound,
    /// The backend already has a frontend attached.
    Busy,
    /// An agent refused to start a backend; the message says why.
    Refused,
    /// A forkbridge operation failed; [`Error::process_error`] has it.
    Process,
}

/// The error of every fallible operation of this crate.
pub struct Error {
    kind: ErrorKind,
    message: String,
    process: Option<forkbridge::Error>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            process: None,
        }
    }

    pub(crate) fn link(what: &str, e: impl fmt::Display) -> Error {
        Error::new(ErrorKind::Link, format!("{what}: {e}"))
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The forkbridge error behind an [`ErrorKind::Process`].
    pub fn process_error(&self) -> Option<&forkbridge::Error> {
        self.process.as_ref()
    }
}

impl From<forkbridge::Error> for Error {
    fn from(e: forkbridge::Error) -> Error {
        Error {
            kind: ErrorKind::Process,
            message: String::new(),
            process: Some(e),
        }
    }
}

/// For a factory of a [`Pool`](forkbridge::Pool) or a
/// [`Supervisor`](forkbridge::Supervisor) that starts its processes on
/// other hosts (`Ok(link.start_on(...)?)`): the forkbridge error behind an
/// [`ErrorKind::Process`], otherwise an
/// [`Io`](forkbridge::ErrorKind::Io) error with this one's text and the
/// nearest [`std::io::ErrorKind`].
impl From<Error> for forkbridge::Error {
    fn from(e: Error) -> forkbridge::Error {
        use std::io::ErrorKind as Io;
        if let Some(process) = e.process {
            return process;
        }
        let kind = match e.kind {
            ErrorKind::Config => Io::InvalidInput,
            ErrorKind::NotFound => Io::NotFound,
            ErrorKind::Busy => Io::ResourceBusy,
            ErrorKind::Refused => Io::PermissionDenied,
            ErrorKind::Link | ErrorKind::Process => Io::Other,
        };
        std::io::Error::new(kind, e.message).into()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.process {
            Some(e) => write!(f, "{e}"),
            None => f.write_str(&self.message),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.to_string())
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.process
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
