//! A Zenoh session with forkbridge's settings.

use std::time::Duration;

use zenoh::Wait;

use crate::config::Config;
use crate::error::{Error, Result};

/// An open Zenoh session: the frontend's way to its remote backends
/// ([`attach`](Link::attach)), or a serving program's way to its frontends
/// ([`serve`](crate::serve)).
///
/// Opening one starts Zenoh's threads, and a process with threads cannot
/// fork ([`forkbridge::ErrorKind::ForkWithThreads`]): start local
/// processes first, or start them with
/// [`StartMethod::ForkServer`](forkbridge::StartMethod::ForkServer). Open
/// it outside a current-thread tokio runtime (Zenoh runs its own).
pub struct Link {
    pub(crate) session: zenoh::Session,
    pub(crate) config: Config,
}

impl Link {
    /// Opens the session: listens and connects as `config` says.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) for a setting out
    /// of range or an endpoint Zenoh cannot parse;
    /// [`ErrorKind::Link`](crate::ErrorKind::Link) if the session cannot
    /// be opened (a port in use).
    pub fn open(config: Config) -> Result<Link> {
        let session = zenoh::open(config.to_zenoh()?)
            .wait()
            .map_err(|e| Error::link("cannot open the Zenoh session", e))?;
        Ok(Link { session, config })
    }

    /// The lease of this link.
    pub fn lease(&self) -> Duration {
        self.config.lease
    }

    /// The settings it was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("zid", &self.session.zid())
            .field("config", &self.config)
            .finish()
    }
}
