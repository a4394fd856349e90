//! Weighted random choice (Varnish's `random` director).
//!
//! Varnish gives each healthy backend about `weight / sum(healthy weights)` of the traffic. We
//! keep the cumulative weights and map a uniform 64-bit number onto them; the caller passes
//! the number, so tests are reproducible. Health is not filtered here: the caller walks
//! [`WeightedRandom::order`] and skips unavailable members, which gives a dead member's share
//! to the next member in index order instead of rebuilding the table on every health change.

use super::after;

/// Weighted random choice.
#[derive(Debug, Clone)]
pub struct WeightedRandom {
    /// `cumulative[i]` is the sum of the weights of members `0..=i`.
    cumulative: Vec<u64>,
}

// === impl WeightedRandom ===

impl WeightedRandom {
    /// A table over `weights` (member `i` has weight `weights[i]`; 0 = never picked).
    pub fn new(weights: &[u32]) -> Self {
        let cumulative = weights
            .iter()
            .scan(0u64, |sum, &w| {
                *sum += u64::from(w);
                Some(*sum)
            })
            .collect();
        WeightedRandom { cumulative }
    }

    fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    fn weight(&self, i: usize) -> u64 {
        let below = if i == 0 { 0 } else { self.cumulative[i - 1] };
        self.cumulative[i] - below
    }

    /// The member for the random number `r` (uniform over `u64`); `None` if all weights are 0.
    ///
    /// Member `i` is returned for a `weight[i] / sum` fraction of the `u64` range.
    pub fn pick(&self, r: u64) -> Option<usize> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        // Scale r into 0..total without the bias of a modulo.
        let target = u64::try_from((u128::from(r) * u128::from(total)) >> 64).unwrap_or(0);
        Some(self.cumulative.partition_point(|&c| c <= target))
    }

    /// [`WeightedRandom::pick`]`(r)` first, then every other member with weight > 0 once, in
    /// index order after it (wrapping), for failover.
    pub fn order(&self, r: u64) -> impl Iterator<Item = usize> {
        let first = self.pick(r);
        let rest = after(first.unwrap_or(usize::MAX), self.cumulative.len())
            .filter(|&i| self.weight(i) > 0);
        first.into_iter().chain(rest)
    }
}
