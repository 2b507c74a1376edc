//! [`RestartPolicy`]: when a dead process comes back, how often, and how
//! soon; and the bookkeeping that applies it to one process.
//!
//! # Design
//!
//! Erlang/OTP's supervisors count restarts in a sliding window ("intensity"
//! and "period") and give up when the count is exceeded; systemd adds a
//! delay between restarts; Kubernetes doubles that delay after each crash
//! up to a cap. One policy here has all three, because each answers a
//! different failure: the window bounds a crash loop's total cost, the
//! backoff spreads its restarts out, and the first restart is immediate, so
//! a process killed once (the common case: an out-of-memory kill, a crash on
//! one bad input) is back in the time a start takes.

use std::collections::VecDeque;
use std::fmt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};

/// When a process that ended is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Restart {
    /// Never: an ended process stays ended.
    Never,
    /// When it did not exit with status 0: killed by a signal, or a
    /// non-zero exit status (a panic in `pre_run` exits with 1). A clean
    /// exit, such as a stop the backend asked for, ends it for good.
    OnFailure,
    /// Whenever it ends, unless the program stopped it.
    Always,
}

/// How a supervised process is restarted: when ([`Restart`]), at most how
/// often (`max_restarts` within `window`), and after what delay (doubling
/// from `backoff` up to `max_backoff`).
///
/// The first restart within the window is immediate; the `k`-th (k ≥ 2)
/// waits `backoff × 2^(k−2)`, at most `max_backoff`. Restarts older than
/// the window are forgotten. A process that would need more than
/// `max_restarts` restarts within the window is given up: it stays down and
/// its supervisor reports [`ErrorKind::GaveUp`] with its last exit
/// statuses.
///
/// ```
/// use std::time::Duration;
/// use forkbridge::{Restart, RestartPolicy};
///
/// let policy = RestartPolicy::new(Restart::OnFailure)
///     .max_restarts(3, Duration::from_secs(10))
///     .backoff(Duration::from_millis(50), Duration::from_secs(2));
/// assert_eq!(policy.delay(1), Duration::ZERO);
/// assert_eq!(policy.delay(2), Duration::from_millis(50));
/// assert_eq!(policy.delay(4), Duration::from_millis(200));
/// assert_eq!(policy.delay(30), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    when: Restart,
    max_restarts: u32,
    window: Duration,
    backoff: Duration,
    max_backoff: Duration,
}

impl Default for RestartPolicy {
    /// [`Restart::OnFailure`], at most 5 restarts in 60 s, backoff from
    /// 100 ms to 10 s.
    fn default() -> RestartPolicy {
        RestartPolicy::new(Restart::OnFailure)
    }
}

impl RestartPolicy {
    /// `when`, at most 5 restarts in 60 s, backoff from 100 ms to 10 s.
    pub fn new(when: Restart) -> RestartPolicy {
        RestartPolicy {
            when,
            max_restarts: 5,
            window: Duration::from_secs(60),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }

    /// [`Restart::Never`].
    pub fn never() -> RestartPolicy {
        RestartPolicy::new(Restart::Never)
    }

    /// [`Restart::OnFailure`] with the default limits.
    pub fn on_failure() -> RestartPolicy {
        RestartPolicy::new(Restart::OnFailure)
    }

    /// [`Restart::Always`] with the default limits.
    pub fn always() -> RestartPolicy {
        RestartPolicy::new(Restart::Always)
    }

    /// At most `restarts` restarts within any `window`; one more gives the
    /// process up. `u32::MAX` never gives up.
    pub fn max_restarts(mut self, restarts: u32, window: Duration) -> RestartPolicy {
        self.max_restarts = restarts;
        self.window = window;
        self
    }

    /// The delay before the second restart within the window, doubled for
    /// each further one up to `max`. Zero restarts at once every time.
    pub fn backoff(mut self, first: Duration, max: Duration) -> RestartPolicy {
        self.backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// When the process is restarted.
    pub fn when(&self) -> Restart {
        self.when
    }

    /// The delay before the `k`-th restart within the window (k from 1).
    pub fn delay(&self, k: u32) -> Duration {
        if k <= 1 {
            return Duration::ZERO;
        }
        let doublings = (k - 2).min(63);
        self.backoff
            .checked_mul(1u32.checked_shl(doublings).unwrap_or(u32::MAX))
            .unwrap_or(Duration::MAX)
            .min(self.max_backoff)
    }

    /// Whether an exit with `status` (`None`: unknown, or never started)
    /// calls for a restart under this policy.
    pub fn wants(&self, status: Option<ExitStatus>) -> bool {
        match self.when {
            Restart::Never => false,
            Restart::Always => true,
            Restart::OnFailure => !status.is_some_and(|s| s.success()),
        }
    }
}

/// What to do about a process that ended.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Start it again at this instant.
    Restart(Instant),
    /// Leave it ended: the policy does not restart this exit.
    Stay,
    /// The limit is hit: it stays down, with this error.
    GiveUp(Error),
}

/// One process's restart history under a policy.
#[derive(Clone)]
pub(crate) struct Restarts {
    policy: RestartPolicy,
    /// When each restart within the window was decided, oldest first.
    recent: VecDeque<Instant>,
    /// How many restarts in all.
    total: u32,
    /// The last exit statuses, oldest first (at most [`KEPT_STATUSES`]).
    exits: VecDeque<Option<ExitStatus>>,
}

/// How many exit statuses a history keeps for its error.
const KEPT_STATUSES: usize = 16;

impl Restarts {
    pub(crate) fn new(policy: RestartPolicy) -> Restarts {
        Restarts {
            policy,
            recent: VecDeque::new(),
            total: 0,
            exits: VecDeque::new(),
        }
    }

    /// Restarts so far.
    pub(crate) fn total(&self) -> u32 {
        self.total
    }

    /// Records an exit at `now` and decides what follows.
    pub(crate) fn exited(&mut self, status: Option<ExitStatus>, now: Instant) -> Decision {
        self.exits.push_back(status);
        if self.exits.len() > KEPT_STATUSES {
            self.exits.pop_front();
        }
        if !self.policy.wants(status) {
            return Decision::Stay;
        }
        while let Some(&first) = self.recent.front() {
            if now.saturating_duration_since(first) >= self.policy.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= self.policy.max_restarts as usize {
            return Decision::GiveUp(self.given_up());
        }
        self.recent.push_back(now);
        self.total += 1;
        let k = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        Decision::Restart(
            now.checked_add(self.policy.delay(k))
                .unwrap_or(now + Duration::from_secs(86_400 * 365)),
        )
    }

    /// The error of a process given up.
    pub(crate) fn given_up(&self) -> Error {
        Error::new(ErrorKind::GaveUp {
            restarts: self.total,
            exits: self.exits.iter().copied().collect(),
        })
    }
}

impl fmt::Debug for Restarts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restarts")
            .field("policy", &self.policy)
            .field("total", &self.total)
            .field("in_window", &self.recent.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn failed() -> Option<ExitStatus> {
        Some(ExitStatus::from_raw(1 << 8))
    }

    #[test]
    fn gives_up_after_the_limit_with_every_status() {
        let policy = RestartPolicy::on_failure()
            .max_restarts(3, Duration::from_secs(60))
            .backoff(Duration::from_millis(10), Duration::from_secs(1));
        let mut r = Restarts::new(policy);
        let t = Instant::now();
        assert!(matches!(r.exited(failed(), t), Decision::Restart(at) if at == t));
        let ten = t + Duration::from_millis(10);
        assert!(matches!(r.exited(failed(), t), Decision::Restart(at) if at == ten));
        let twenty = t + Duration::from_millis(20);
        assert!(matches!(r.exited(failed(), t), Decision::Restart(at) if at == twenty));
        let Decision::GiveUp(e) = r.exited(failed(), t) else {
            panic!("not given up")
        };
        match e.kind() {
            ErrorKind::GaveUp { restarts, exits } => {
                assert_eq!(*restarts, 3);
                assert_eq!(exits.len(), 4);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_window_forgets_old_restarts() {
        let policy = RestartPolicy::always().max_restarts(1, Duration::from_secs(1));
        let mut r = Restarts::new(policy);
        let t = Instant::now();
        assert!(matches!(r.exited(None, t), Decision::Restart(_)));
        assert!(matches!(r.exited(None, t), Decision::GiveUp(_)));
        let later = t + Duration::from_secs(2);
        assert!(matches!(r.exited(None, later), Decision::Restart(at) if at == later));
    }

    #[test]
    fn on_failure_leaves_a_clean_exit_alone() {
        let mut r = Restarts::new(RestartPolicy::on_failure());
        let ok = Some(ExitStatus::from_raw(0));
        assert!(matches!(r.exited(ok, Instant::now()), Decision::Stay));
        let mut never = Restarts::new(RestartPolicy::never());
        assert!(matches!(
            never.exited(failed(), Instant::now()),
            Decision::Stay
        ));
    }

    #[test]
    fn extreme_settings_do_not_overflow() {
        let p = RestartPolicy::always().backoff(Duration::MAX, Duration::MAX);
        assert_eq!(p.delay(u32::MAX), Duration::MAX);
        let mut r = Restarts::new(p.max_restarts(u32::MAX, Duration::MAX));
        let t = Instant::now();
        for _ in 0..3 {
            assert!(matches!(r.exited(None, t), Decision::Restart(_)));
        }
        let zero = RestartPolicy::always().max_restarts(0, Duration::ZERO);
        assert!(matches!(
            Restarts::new(zero).exited(None, t),
            Decision::GiveUp(_)
        ));
    }
}
