//! Varnish's shard director pick (`vmod_directors_shard_dir.c`, `sharddir_pick_be_locked`),
//! over a [`Ring`].
//!
//! Our reading of Varnish, which [`shard_order`] follows:
//!
//! - The walk is [`Ring::candidates`]: the key's owner, then the next distinct members
//!   clockwise.
//! - `alt = n` (clamped to `members - 1`) skips `n` members of the walk, then takes the first
//!   eligible member from there. Which members count as skipped and which are eligible depends
//!   on `healthy`:
//!   - [`Healthy::Chosen`] (Varnish's default): the skipped members are counted whatever their
//!     health; the chosen one must be healthy, so the walk goes on to the next healthy member.
//!   - [`Healthy::Ignore`]: health plays no part; the member at position `alt` of the walk is
//!     chosen. Warmup and rampup are off too.
//!   - [`Healthy::All`]: only healthy members count as skipped, and the chosen one is healthy:
//!     the `alt`-th healthy member of the walk (counting from 0).
//! - If the walk runs out before an eligible member is found, Varnish returns the last healthy
//!   member it passed; so do we. With no healthy member at all (and not `Ignore`) the result
//!   is empty: no backend.
//! - `warmup` and `rampup` apply only with `alt == 0`, not under `Ignore`, and only when there is
//!   a next healthy member after the chosen one (the "alternative"):
//!   - rampup: a chosen member that has been healthy for `elapsed < rampup` keeps a
//!     `elapsed / rampup` share of its requests; the rest go to the alternative (a linear slow
//!     start). Nothing is diverted while the alternative is itself in rampup.
//!   - warmup: otherwise, a `warmup` fraction of the requests goes to the alternative so its
//!     cache stays warm (`warmup = 0.5` spreads every key over two members). As the Varnish
//!     documentation says, it is not applied while either member is in rampup.
//!
//! Varnish returns one backend; we return the chosen member first and then the fallbacks, so a
//! caller can spill over when the chosen member is full: the rest of the walk after the chosen
//! member, wrapping, healthy members only (every member under `Ignore`). When warmup or
//! rampup diverts a request, the alternative comes first and the chosen member second.

use std::time::Duration;

use super::Ring;

/// Varnish's `healthy=` policies for the shard director.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Healthy {
    /// Only the chosen member must be healthy; members skipped by `alt` are counted whatever
    /// their health (Varnish's default).
    Chosen,
    /// Ignore health: the `alt`-th member of the walk, healthy or not; no warmup, no rampup.
    Ignore,
    /// The members skipped by `alt` must be healthy too: `alt` counts healthy members only.
    All,
}

/// The shard director's per-request parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShardParams {
    /// Pick the `alt`-th alternative instead of the owner (usually the retry count), clamped to
    /// the number of members minus one.
    pub alt: usize,
    /// The fraction (0..=1) of requests sent to the next member after the chosen one, to keep
    /// its cache warm. Values at or below 0 (and NaN) disable it; Varnish's "-1 = director
    /// default" is resolved by the caller.
    pub warmup: f64,
    /// Slow start: a member healthy for less than this gets `elapsed / rampup` of its traffic.
    /// Zero disables it.
    pub rampup: Duration,
    /// Which members must be healthy.
    pub healthy: Healthy,
}

/// Varnish's shard director pick over a ring.
///
/// `healthy(i)`: member i is healthy; `up_for(i)`: how long member i has been healthy (None:
/// unknown/long ago); `r`: a uniform random number in [0,1) used for warmup and rampup
/// decisions. Returns the ordered candidates: the chosen member first, then fallbacks (so a
/// caller can spill over when the chosen one is full). See the module docs for the exact rules.
pub fn shard_order(
    ring: &Ring,
    key: u64,
    p: &ShardParams,
    healthy: impl Fn(usize) -> bool,
    up_for: impl Fn(usize) -> Option<Duration>,
    r: f64,
) -> Vec<usize> {
    let walk: Vec<usize> = ring.candidates(key).collect();
    if walk.is_empty() {
        return Vec::new();
    }
    let up: Vec<bool> = walk.iter().map(|&m| healthy(m)).collect();
    let ignore = p.healthy == Healthy::Ignore;
    let alt = p.alt.min(walk.len() - 1);
    let chosen = match p.healthy {
        Healthy::Ignore => Some(alt),
        Healthy::Chosen => (alt..walk.len()).find(|&k| up[k]),
        Healthy::All => (0..walk.len()).filter(|&k| up[k]).nth(alt),
    };
    // Varnish: when the walk runs out, the last healthy member passed on the way.
    let Some(chosen) = chosen.or_else(|| (0..walk.len()).rev().find(|&k| up[k])) else {
        return Vec::new();
    };
    let mut order = Vec::with_capacity(walk.len());
    order.push(walk[chosen]);
    order.extend(
        (1..walk.len())
            .map(|d| (chosen + d) % walk.len())
            .filter(|&k| ignore || up[k])
            .map(|k| walk[k]),
    );
    if p.alt == 0 && !ignore && order.len() > 1 && divert(order[0], order[1], p, &up_for, r) {
        order.swap(0, 1);
    }
    order
}

/// Whether warmup or rampup sends this request to `next` instead of `chosen`.
fn divert(
    chosen: usize,
    next: usize,
    p: &ShardParams,
    up_for: &impl Fn(usize) -> Option<Duration>,
    r: f64,
) -> bool {
    let ramping = |i: usize| {
        up_for(i)
            .filter(|&elapsed| elapsed < p.rampup)
            .map(|elapsed| elapsed.as_secs_f64() / p.rampup.as_secs_f64())
    };
    let next_ramping = ramping(next).is_some();
    match ramping(chosen) {
        // Keep the chosen member with probability elapsed / rampup.
        Some(share) => !next_ramping && r >= share,
        None => !next_ramping && p.warmup > 0.0 && r < p.warmup,
    }
}
