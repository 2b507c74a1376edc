//! Polling a condition within a bound.

use std::time::{Duration, Instant};

/// Polls `cond` every 5 ms until it holds or `bound` passes; returns
/// whether it held (checked once more at the bound).
///
/// For what no event announces (a process leaving `/proc`, a thread count
/// falling back to one): every wait in a check must be bounded, and a
/// fixed sleep would be either too short on a loaded machine or slow.
pub fn wait_until(bound: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_as_soon_as_the_condition_does_and_gives_up_at_the_bound() {
        let mut calls = 0;
        assert!(wait_until(Duration::from_secs(10), || {
            calls += 1;
            calls == 3
        }));
        assert_eq!(calls, 3);
        let t = Instant::now();
        assert!(!wait_until(Duration::from_millis(30), || false));
        assert!(t.elapsed() >= Duration::from_millis(30));
    }
}
