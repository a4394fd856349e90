//! Varnish's and fnlb's selection algorithms, as pure functions over member indices.
//!
//! A cluster's scheduler asks one of these for an ordered list of candidates and takes the
//! first one that can take the request; a retry or a full backend moves on to the next one
//! (see `ARCHITECTURE.md`: scheduler picks a backend ─► backend transport). Nothing here knows
//! about backends, health monitors or time sources: members are indices into the caller's
//! slice, weights are reals (`f64`, as Varnish's; 0 = never chosen), health and uptime come in as closures, and
//! randomness comes in as a number, so every decision is reproducible in tests.
//!
//! # Layout
//!
//! - [`SmoothWeighted`]: nginx's smooth weighted round-robin, precomputed as one period.
//! - [`WeightedRandom`]: Varnish's `random` director, weighted.
//! - [`Ring`]: a ketama-style consistent-hash ring. We use it for Varnish's `hash` director
//!   too: Varnish's `hash` maps the key onto the cumulative weights of the healthy backends,
//!   so one health change remaps almost every key; over the ring a health change only moves
//!   the keys of the affected member (peers.md §1, varnish-cache#3276).
//! - [`shard_order`] with [`ShardParams`] and [`Healthy`]: Varnish's `shard` director pick
//!   (`alt`, `warmup`, `rampup`, `healthy=CHOSEN|IGNORE|ALL`) over a [`Ring`].
//! - [`Fallback`]: Varnish's `fallback(sticky)` director.
//! - [`hash_key`]: the stable key hash used by the ring.
//!
//! fnlb's consistent hash is the [`Ring`] without its per-request salt (the counter in its key
//! made the "consistent hash" spread requests at random). fnlb gives a dead node's requests to
//! one deterministic substitute instead of rehashing them; [`Ring::candidates`] does the same per
//! key: the owner's keys go to the next distinct member clockwise, the same one every time.
//!
//! # Example
//!
//! ```
//! use director_core::directors::{Ring, SmoothWeighted, hash_key};
//!
//! // nginx's interleaving for weights 5, 1, 1.
//! let wrr = SmoothWeighted::new(&[5.0, 1.0, 1.0]);
//! let picks: Vec<usize> = (0..wrr.len()).map(|n| wrr.at(n)).collect();
//! assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
//!
//! // A key's owner first, then every other member once for failover.
//! let ring = Ring::new(&[("a", 1.0), ("b", 1.0), ("c", 1.0)], 40);
//! let order: Vec<usize> = ring.candidates(hash_key(b"/index.html")).collect();
//! assert_eq!(order.len(), 3);
//! ```

mod fallback;
mod random;
mod ring;
mod shard;
mod smooth;

pub use fallback::Fallback;
pub use random::WeightedRandom;
pub use ring::Ring;
pub use shard::{Healthy, ShardParams, shard_order};
pub use smooth::SmoothWeighted;

/// Stable 64-bit hash of key bytes (xxh3), the same across processes and restarts.
///
/// Every Director node computes the same ring and the same key hash, so a key lands on the same
/// backend everywhere without shared state (as Varnish's shard director promises).
pub fn hash_key(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// The indices `0..members` starting after `first` and wrapping, without `first`: the failover
/// order shared by the weighted directors.
fn after(first: usize, members: usize) -> impl Iterator<Item = usize> {
    let (start, count) = if first < members {
        (first + 1, members - 1)
    } else {
        (0, members)
    };
    (0..count).map(move |d| (start + d) % members)
}

#[cfg(test)]
mod tests;
