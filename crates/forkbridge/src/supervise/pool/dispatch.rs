//! [`Dispatch`]: which worker takes a call, and the keys that stick to one.

use std::collections::HashMap;

/// How a pool chooses the worker for a request without a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// Each worker in turn, skipping those at their in-flight bound.
    #[default]
    RoundRobin,
    /// The worker with the fewest calls in flight (ties: in turn): calls of
    /// uneven cost spread better.
    LeastOutstanding,
}

/// The worker each key went to, by the worker's incarnation: a key stays
/// while that incarnation lives and moves when it ends.
#[derive(Debug, Default)]
pub(super) struct Keys {
    owner: HashMap<u64, u64>,
}

impl Keys {
    pub(super) fn owner(&self, key: u64) -> Option<u64> {
        self.owner.get(&key).copied()
    }

    pub(super) fn assign(&mut self, key: u64, incarnation: u64) {
        self.owner.insert(key, incarnation);
    }

    /// Forgets the keys of an incarnation that ended or left.
    pub(super) fn release(&mut self, incarnation: u64) {
        self.owner.retain(|_, owner| *owner != incarnation);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.owner.len()
    }
}

/// The worker for a request, among `n`: `load(i)` is `None` for a worker
/// that takes no work now, else its calls in flight. `next` is the
/// round-robin cursor, advanced past the choice. Allocates nothing: it runs
/// for every call.
pub(super) fn choose(
    dispatch: Dispatch,
    n: usize,
    load: impl Fn(usize) -> Option<usize>,
    bound: usize,
    next: &mut usize,
) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let start = *next % n;
    let open = |i: usize| load(i).filter(|&l| l < bound);
    let pick = match dispatch {
        Dispatch::RoundRobin => (0..n).map(|k| (start + k) % n).find(|&i| open(i).is_some()),
        Dispatch::LeastOutstanding => (0..n)
            .map(|k| (start + k) % n)
            .filter_map(|i| open(i).map(|l| (l, i)))
            .min_by_key(|&(l, _)| l)
            .map(|(_, i)| i),
    }?;
    *next = pick + 1;
    Some(pick)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(d: Dispatch, loads: &[Option<usize>], bound: usize, next: &mut usize) -> Option<usize> {
        choose(d, loads.len(), |i| loads[i], bound, next)
    }

    #[test]
    fn round_robin_skips_full_and_absent_workers() {
        let loads = [Some(0), None, Some(4), Some(1)];
        let mut next = 0;
        let picks: Vec<_> = (0..4)
            .map(|_| pick(Dispatch::RoundRobin, &loads, 4, &mut next))
            .collect();
        assert_eq!(picks, [Some(0), Some(3), Some(0), Some(3)]);
        assert_eq!(
            pick(Dispatch::RoundRobin, &[None, Some(4)], 4, &mut next),
            None
        );
        assert_eq!(pick(Dispatch::RoundRobin, &[], 4, &mut next), None);
    }

    #[test]
    fn least_outstanding_takes_the_idlest() {
        let mut next = 0;
        let loads = [Some(3), Some(1), Some(2)];
        assert_eq!(
            pick(Dispatch::LeastOutstanding, &loads, 8, &mut next),
            Some(1)
        );
        let tie = [Some(1), Some(1)];
        let a = pick(Dispatch::LeastOutstanding, &tie, 8, &mut next);
        let b = pick(Dispatch::LeastOutstanding, &tie, 8, &mut next);
        assert_ne!(a, b, "ties go in turn");
    }

    #[test]
    fn keys_move_only_when_their_worker_ends() {
        let mut keys = Keys::default();
        keys.assign(7, 100);
        keys.assign(8, 101);
        assert_eq!(keys.owner(7), Some(100));
        keys.release(100);
        assert_eq!(keys.owner(7), None);
        assert_eq!(keys.owner(8), Some(101));
        assert_eq!(keys.len(), 1);
    }
}
