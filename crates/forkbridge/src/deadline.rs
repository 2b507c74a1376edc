//! Deadlines from user-given timeouts.
//!
//! Every bounded wait takes a `Duration` and turns it into a deadline once,
//! so signals and spurious wake-ups never stretch or shorten it. A timeout
//! too long for an `Instant` to hold (`Duration::MAX`, as std's
//! `Receiver::recv_timeout` accepts) means "no limit", never an overflow
//! panic.

use std::time::{Duration, Instant};

/// The instant `timeout` from now; `None` (no limit) when it lies beyond
/// what an `Instant` can represent.
pub(crate) fn after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The earlier of `deadline` (`None`: never) and `timeout` from now.
pub(crate) fn min_after(deadline: Option<Instant>, timeout: Duration) -> Option<Instant> {
    match (deadline, after(timeout)) {
        (Some(d), Some(t)) => Some(d.min(t)),
        (d, t) => d.or(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_past_what_an_instant_holds_is_no_limit() {
        assert_eq!(after(Duration::MAX), None);
        assert!(after(Duration::ZERO).is_some());
        assert!(after(Duration::from_secs(100 * 365 * 86_400)).is_some());
        let d = Instant::now() + Duration::from_secs(1);
        assert_eq!(min_after(Some(d), Duration::MAX), Some(d));
        assert!(min_after(None, Duration::from_millis(1)).is_some_and(|t| t < d));
        assert_eq!(min_after(None, Duration::MAX), None);
    }
}
