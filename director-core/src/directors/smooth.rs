//! Smooth weighted round-robin (nginx's `ngx_http_upstream_get_peer`).
//!
//! Each pick adds every member's weight to its running score, takes the member with the highest
//! score (the first one on ties) and subtracts the sum of the weights from it. Over `sum`
//! picks every member is chosen exactly `weight` times, and heavy members are spread out
//! instead of bunched: weights 5, 1, 1 give `a a b a c a a`, not `a a a a a b c`.
//!
//! The sequence is periodic, so we compute one period when the members change and the hot
//! path is `picks[n % period]` with `n` from the caller's atomic counter: no lock, no shared
//! mutable scores.

use super::after;

/// The longest period we precompute; larger weight sums are scaled down (see
/// [`SmoothWeighted::new`]).
const MAX_PERIOD: u64 = 65_536;

/// Smooth weighted round-robin (nginx's algorithm), precomputed as one period of picks so the
/// hot path is an atomic counter modulo the period (no lock).
#[derive(Debug, Clone)]
pub struct SmoothWeighted {
    picks: Vec<usize>,
    active: Vec<bool>,
}

// === impl SmoothWeighted ===

impl SmoothWeighted {
    /// One period of picks over `weights` (member `i` has weight `weights[i]`; 0, negative or
    /// NaN = never picked).
    ///
    /// Real weights are first made whole: each is multiplied by the smallest power of ten up
    /// to 10^6 that makes every weight whole (0.5 and 1.0 become 5 and 10), rounding at 10^6
    /// (a positive weight stays at least 1). The whole weights are then divided by their
    /// greatest common divisor, so the period is `sum / gcd` (0.5 and 1.0: 1 and 2, a period
    /// of 3). When that exceeds 65 536 picks the weights are scaled down proportionally (each
    /// non-zero weight stays at least 1, so nobody is starved): the period is then at most
    /// 65 536 plus the number of members, and the shares are exact up to the rounding of that
    /// scaling. Building costs one pass over the members per pick of the period; it happens
    /// when the members change, never on the request path.
    pub fn new(weights: &[f64]) -> Self {
        let active: Vec<bool> = weights.iter().map(|&w| w > 0.0).collect();
        let whole = whole_weights(weights);
        let g = whole.iter().fold(0u64, |g, &w| gcd(g, w));
        if g == 0 {
            return SmoothWeighted {
                picks: Vec::new(),
                active,
            };
        }
        let mut w: Vec<u64> = whole.iter().map(|&x| x / g).collect();
        let sum: u64 = w.iter().sum();
        if sum > MAX_PERIOD {
            for x in w.iter_mut().filter(|x| **x > 0) {
                *x = (*x * MAX_PERIOD / sum).max(1);
            }
        }
        let total: u64 = w.iter().sum();
        let total_i = i64::try_from(total).unwrap_or(i64::MAX);
        let mut current = vec![0i64; w.len()];
        let mut picks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for _ in 0..total {
            for (c, &wi) in current.iter_mut().zip(&w) {
                // At most 10^15 each (`whole_weights`) and at most 65 536 + members additions
                // before the subtraction, so this cannot wrap.
                *c += i64::try_from(wi).unwrap_or(i64::MAX);
            }
            // nginx takes the first member with the strictly highest score.
            let mut best: Option<usize> = None;
            for (i, &c) in current.iter().enumerate() {
                if w[i] > 0 && best.is_none_or(|b| c > current[b]) {
                    best = Some(i);
                }
            }
            let Some(best) = best else { break };
            current[best] -= total_i;
            picks.push(best);
        }
        SmoothWeighted { picks, active }
    }

    /// The period length: how many picks before the sequence repeats (0 when all weights are 0).
    pub fn len(&self) -> usize {
        self.picks.len()
    }

    /// Whether no member can be picked (all weights are 0).
    pub fn is_empty(&self) -> bool {
        self.picks.is_empty()
    }

    /// The member for the `n`-th pick (`n` modulo the period).
    ///
    /// # Panics
    ///
    /// When the period is empty (all weights 0): check [`SmoothWeighted::is_empty`] first, or use
    /// [`SmoothWeighted::order`], which yields nothing then.
    pub fn at(&self, n: usize) -> usize {
        self.picks[n % self.picks.len()]
    }

    /// The candidates for the `n`-th pick: [`SmoothWeighted::at`]`(n)` first, then every other
    /// member with weight > 0 once, in index order after it (wrapping), for failover. Indices
    /// at or beyond the weights given to [`SmoothWeighted::new`] count as weight 0; nothing is
    /// yielded when all weights are 0.
    pub fn order(&self, n: usize, members: usize) -> impl Iterator<Item = usize> {
        let first = (!self.is_empty()).then(|| self.at(n));
        let rest = after(first.unwrap_or(usize::MAX), members)
            .filter(|&i| self.active.get(i).copied().unwrap_or(false));
        first.into_iter().chain(rest)
    }
}

/// The largest whole weight [`whole_weights`] makes: sums over a period stay far from
/// `i64::MAX`.
const MAX_WHOLE: f64 = 1e15;

/// `weights` as whole numbers with the same ratios: scaled by the smallest power of ten
/// (up to 10^6) that makes all of them whole, rounded at 10^6; positive weights stay >= 1,
/// others (0, negative, NaN) are 0.
fn whole_weights(weights: &[f64]) -> Vec<u64> {
    let positive = |w: f64| if w > 0.0 { w.min(MAX_WHOLE) } else { 0.0 };
    let whole = |x: f64| (x - x.round()).abs() <= 1e-9 * x.max(1.0);
    let scale = (0..=6)
        .map(|d| 10f64.powi(d))
        .find(|&k| weights.iter().all(|&w| whole(positive(w) * k)))
        .unwrap_or(1e6);
    weights
        .iter()
        .map(|&w| {
            let w = positive(w);
            if w > 0.0 {
                // Saturating float-to-int cast; at least 1 so a tiny weight is still picked.
                ((w * scale).round().min(MAX_WHOLE) as u64).max(1)
            } else {
                0
            }
        })
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}
