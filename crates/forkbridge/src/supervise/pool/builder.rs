//! [`PoolBuilder`]: a pool's size, dispatch, bound and restart policy.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::process::MessageProcess;

use super::super::event::{Hook, SupervisorEvent};
use super::super::policy::{Restart, RestartPolicy};
use super::Pool;
use super::dispatch::{Dispatch, Keys};

/// Configures a [`Pool`].
///
/// Defaults: 2 workers, no spares, [`Dispatch::RoundRobin`], 16 calls in flight per
/// worker, workers restarted [`Always`](Restart::Always) with the default
/// limits of [`RestartPolicy`], no call timeout.
pub struct PoolBuilder {
    name: String,
    workers: usize,
    spares: usize,
    dispatch: Dispatch,
    bound: usize,
    policy: RestartPolicy,
    call_timeout: Option<Duration>,
    hook: Option<Hook>,
}

impl PoolBuilder {
    pub(super) fn new(name: String) -> PoolBuilder {
        PoolBuilder {
            name,
            workers: 2,
            spares: 0,
            dispatch: Dispatch::RoundRobin,
            bound: 16,
            policy: RestartPolicy::new(Restart::Always),
            call_timeout: None,
            hook: None,
        }
    }

    /// How many workers the pool starts with (at least 1).
    pub fn workers(mut self, n: usize) -> PoolBuilder {
        self.workers = n;
        self
    }

    /// How many spares the pool keeps besides its workers (default 0):
    /// started, idle, and ready to take a dying worker's place at once,
    /// so the calls resent from it are answered without waiting for a
    /// start. The dead worker's replacement becomes the new spare. A
    /// spare costs a process (and its memory) but no CPU while it waits.
    pub fn spares(mut self, n: usize) -> PoolBuilder {
        self.spares = n;
        self
    }

    /// How requests without a key choose their worker.
    pub fn dispatch(mut self, dispatch: Dispatch) -> PoolBuilder {
        self.dispatch = dispatch;
        self
    }

    /// At most `n` calls in flight per worker (at least 1): `submit` waits
    /// and `try_submit` refuses beyond it. More keeps a worker fed while
    /// its replies travel; fewer bounds what a death takes with it.
    pub fn max_in_flight(mut self, n: usize) -> PoolBuilder {
        self.bound = n;
        self
    }

    /// How dead workers are replaced. [`Restart::Never`] lets the pool
    /// shrink as workers die.
    pub fn restart(mut self, policy: RestartPolicy) -> PoolBuilder {
        self.policy = policy;
        self
    }

    /// The bound of [`Pool::wait`] and [`Pool::call`]. Default: none (a
    /// call ends when answered or when its worker dies).
    pub fn call_timeout(mut self, timeout: Duration) -> PoolBuilder {
        self.call_timeout = Some(timeout);
        self
    }

    /// Runs `hook` on every worker's exit, restart and give-up, in the
    /// thread that drives the pool, as it happens.
    pub fn on_event(mut self, hook: impl FnMut(&SupervisorEvent) + Send + 'static) -> PoolBuilder {
        self.hook = Some(Box::new(hook));
        self
    }

    /// Starts the workers: `make(name)` returns each one, not yet started
    /// (`MessageProcess::builder(name)…build(backend)`), or running on
    /// another host (`forkbridge-zenoh`'s `Link::start_on`: a pool may
    /// span hosts); it is called again for each replacement.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for zero workers or a zero bound; the
    /// first worker's start error (the ones started before it are
    /// stopped).
    pub fn build<F>(self, make: F) -> Result<Pool>
    where
        F: Fn(&str) -> Result<MessageProcess> + Send + Sync + 'static,
    {
        if self.workers == 0 || self.bound == 0 {
            return Err(Error::new(ErrorKind::InvalidArgument).with_source(
                "a pool needs at least one worker and one call in flight per worker",
            ));
        }
        let mut pool = Pool {
            name: self.name,
            make: Arc::new(make),
            policy: self.policy,
            dispatch: self.dispatch,
            bound: self.bound,
            call_timeout: self.call_timeout,
            workers: Vec::with_capacity(self.workers + self.spares),
            target: self.workers,
            waiting: false,
            numbered: 0,
            cursor: 0,
            keys: Keys::default(),
            retries: VecDeque::new(),
            inbox: VecDeque::new(),
            hook: self.hook,
        };
        for _ in 0..self.workers {
            pool.add_worker(false)?;
        }
        for _ in 0..self.spares {
            pool.add_worker(true)?;
        }
        Ok(pool)
    }
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("name", &self.name)
            .field("workers", &self.workers)
            .field("spares", &self.spares)
            .field("dispatch", &self.dispatch)
            .field("max_in_flight", &self.bound)
            .field("restart", &self.policy)
            .finish()
    }
}
