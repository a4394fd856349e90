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
    /// The members' weights (0 for a negative or NaN one).
    weights: Vec<f64>,
    /// `cumulative[i]` is the sum of the weights of members `0..=i`.
    cumulative: Vec<f64>,
}

// === impl WeightedRandom ===

impl WeightedRandom {
    /// A table over `weights` (member `i` has weight `weights[i]`, a real; 0, negative or
    /// NaN = never picked).
    pub fn new(weights: &[f64]) -> Self {
        let weights: Vec<f64> = weights
            .iter()
            .map(|&w| if w > 0.0 { w } else { 0.0 })
            .collect();
        let cumulative = weights
            .iter()
            .scan(0f64, |sum, &w| {
                *sum += w;
                Some(*sum)
            })
            .collect();
        WeightedRandom {
            weights,
            cumulative,
        }
    }

    fn total(&self) -> f64 {
        self.cumulative.last().copied().unwrap_or(0.0)
    }

    /// The member for the random number `r` (uniform over `u64`); `None` if all weights are 0.
    ///
    /// Member `i` is returned for a `weight[i] / sum` fraction of the `u64` range (to the
    /// 2^-53 resolution of an `f64`).
    pub fn pick(&self, r: u64) -> Option<usize> {
        let total = self.total();
        if total <= 0.0 {
            return None;
        }
        // The top 53 bits of r as a fraction in [0, 1), scaled onto the cumulative weights.
        let target = (r >> 11) as f64 / (1u64 << 53) as f64 * total;
        let i = self.cumulative.partition_point(|&c| c <= target);
        // Rounding may put the target at the total: the last member that has a weight.
        Some(if i < self.weights.len() {
            i
        } else {
            self.weights.iter().rposition(|&w| w > 0.0)?
        })
    }

    /// [`WeightedRandom::pick`]`(r)` first, then every other member with weight > 0 once, in
    /// index order after it (wrapping), for failover.
    pub fn order(&self, r: u64) -> impl Iterator<Item = usize> {
        let first = self.pick(r);
        let rest = after(first.unwrap_or(usize::MAX), self.weights.len())
            .filter(|&i| self.weights[i] > 0.0);
        first.into_iter().chain(rest)
    }
}
