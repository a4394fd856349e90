//! Schedulers: which backends a request should try, in order.
//!
//! A scheduler is pure: given how many members a cluster has and its own cursor, it yields the
//! candidate order. The cluster filters out members that cannot take the request and, when
//! connecting to one fails, moves on to the next candidate.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;

/// The scheduling policy of a cluster, as named in the config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum SchedulerKind {
    /// Round-robin: each request starts one member further than the last.
    #[default]
    #[serde(rename = "rr")]
    RoundRobin,
}

/// Round-robin over the members of a cluster.
#[derive(Debug, Default)]
pub struct RoundRobin {
    cursor: AtomicUsize,
}

impl RoundRobin {
    /// The candidate order for the next request over `len` members: every member once, starting
    /// one further than the previous request started.
    pub fn candidates(&self, len: usize) -> impl Iterator<Item = usize> + use<> {
        let start = if len == 0 {
            0
        } else {
            self.cursor.fetch_add(1, Ordering::Relaxed) % len
        };
        rotation(start, len)
    }
}

/// `start, start+1, …` wrapping around `len`, each index once.
pub fn rotation(start: usize, len: usize) -> impl Iterator<Item = usize> {
    (0..len).map(move |i| (start + i) % len)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn round_robin_alternates() {
        let rr = RoundRobin::default();
        let firsts: Vec<usize> = (0..6).map(|_| rr.candidates(3).next().unwrap()).collect();
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
        assert_eq!(rr.candidates(0).count(), 0);
    }

    proptest! {
        #[test]
        fn every_member_exactly_once(start in 0usize..1000, len in 0usize..50) {
            let mut seen: Vec<usize> = rotation(start % len.max(1), len).collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..len).collect::<Vec<_>>());
        }

        #[test]
        fn shares_are_even(len in 1usize..20, rounds in 1usize..20) {
            let rr = RoundRobin::default();
            let mut counts = vec![0usize; len];
            for _ in 0..len * rounds {
                counts[rr.candidates(len).next().unwrap()] += 1;
            }
            prop_assert!(counts.iter().all(|&c| c == rounds));
        }
    }
}
