//! Schedulers: which backend of a pool takes a request.
//!
//! A scheduler is a pure ordering of a pool's members: round-robin starts one past the last
//! backend chosen, chance walks the pool in config order (filling backends one after another),
//! least-load prefers the most free capacity. [`pick`] walks that order and admits the request at
//! the first backend that takes it; when none does, it says whether any was merely full
//! ([`Refusal::Overloaded`]: the request may queue) or all were unavailable
//! ([`Refusal::Unavailable`]: try the backup pool).

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use serde::{Deserialize, Serialize};

use crate::{
    backend::{Backend, Refusal},
    directors::{
        Fallback, Healthy, Ring, ShardParams, SmoothWeighted, WeightedRandom, shard_order,
    },
};

/// The scheduling policy of a cluster, as named in the config and the API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum SchedulerKind {
    /// Round-robin: each request starts one past the backend the previous one got.
    #[default]
    #[serde(rename = "rr")]
    RoundRobin,
    /// The first backend, in config order, that takes the request.
    #[serde(rename = "chance")]
    Chance,
    /// The backend with the most free capacity (ties: config order).
    #[serde(rename = "least-load", alias = "leastload")]
    LeastLoad,
    /// Smooth weighted round-robin: each backend gets weight / sum-of-weights of the requests,
    /// evenly interleaved (nginx's algorithm).
    #[serde(rename = "wrr")]
    WeightedRoundRobin,
    /// Weighted random (Varnish's `random`).
    #[serde(rename = "random")]
    Random,
    /// Consistent hashing of a request key (`hash-key`): a backend going away moves only the
    /// keys it owned (unlike Varnish's modulo `hash`).
    #[serde(rename = "hash")]
    Hash,
    /// Varnish's shard director: a consistent-hash ring with `shard-alt`, `shard-warmup`,
    /// `shard-rampup` and `shard-healthy`.
    #[serde(rename = "shard")]
    Shard,
    /// Varnish's fallback director: the first available backend in config order
    /// (`fallback-sticky` keeps the current one while it stays available).
    #[serde(rename = "fallback")]
    Fallback,
}

impl SchedulerKind {
    /// The name used in the config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerKind::RoundRobin => "rr",
            SchedulerKind::Chance => "chance",
            SchedulerKind::LeastLoad => "least-load",
            SchedulerKind::WeightedRoundRobin => "wrr",
            SchedulerKind::Random => "random",
            SchedulerKind::Hash => "hash",
            SchedulerKind::Shard => "shard",
            SchedulerKind::Fallback => "fallback",
        }
    }

    /// Whether it picks by a request key.
    pub fn uses_key(self) -> bool {
        matches!(self, SchedulerKind::Hash | SchedulerKind::Shard)
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => SchedulerKind::Chance,
            2 => SchedulerKind::LeastLoad,
            3 => SchedulerKind::WeightedRoundRobin,
            4 => SchedulerKind::Random,
            5 => SchedulerKind::Hash,
            6 => SchedulerKind::Shard,
            7 => SchedulerKind::Fallback,
            _ => SchedulerKind::RoundRobin,
        }
    }
}

/// `start, start+1, …` wrapping around `len`, each index once.
pub fn rotation(start: usize, len: usize) -> impl Iterator<Item = usize> {
    (0..len).map(move |i| (start + i) % len)
}

/// Indices ordered by free capacity, most first; ties keep their order.
pub fn by_free_capacity(free: &[u64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..free.len()).collect();
    order.sort_by(|&a, &b| free[b].cmp(&free[a]));
    order
}

/// The weighted and hashing directors of one pool, rebuilt whenever its members or their
/// weights change (never on the request path).
#[derive(Debug)]
pub struct PoolDirectors {
    smooth: SmoothWeighted,
    random: WeightedRandom,
    ring: Ring,
    fallback: Fallback,
}

impl PoolDirectors {
    /// The directors over `pool` (names and weights), with `replicas` ring points per weight.
    pub fn new(pool: &[Arc<Backend>], replicas: u32, sticky: bool) -> Self {
        let weights: Vec<f64> = pool.iter().map(|b| b.weight()).collect();
        let names: Vec<(&str, f64)> = pool.iter().map(|b| (&**b.name(), b.weight())).collect();
        PoolDirectors {
            smooth: SmoothWeighted::new(&weights),
            random: WeightedRandom::new(&weights),
            ring: Ring::new(&names, replicas),
            fallback: Fallback::new(sticky),
        }
    }
}

/// Per-request inputs of the key-based and random schedulers.
#[derive(Clone, Copy, Debug, Default)]
pub struct PickContext {
    /// The request's hash key (for `hash` and `shard`).
    pub key: Option<u64>,
    /// The shard director's parameters.
    pub shard: Option<ShardParams>,
    /// The cluster is in panic: offline backends in service are candidates too.
    pub panic: bool,
}

/// A cluster's scheduler: its kind (changeable at runtime) and round-robin cursors.
#[derive(Debug, Default)]
pub struct Scheduler {
    kind: std::sync::atomic::AtomicU8,
    cursors: [AtomicUsize; 2],
}

impl Scheduler {
    /// A scheduler of `kind`.
    pub fn new(kind: SchedulerKind) -> Self {
        let s = Scheduler::default();
        s.set_kind(kind);
        s
    }

    /// The current policy.
    pub fn kind(&self) -> SchedulerKind {
        SchedulerKind::from_u8(self.kind.load(Ordering::Relaxed))
    }

    /// Changes the policy; requests already admitted are not affected.
    pub fn set_kind(&self, kind: SchedulerKind) {
        self.kind.store(kind as u8, Ordering::Relaxed);
    }

    /// Admits a request at one backend of `pool` (`pool_id` 0 = active, 1 = backup), skipping
    /// the backends `skip` rejects (those this request already failed on). The weighted and
    /// hashing kinds order the pool with its `directors` and the request's `ctx`; without
    /// directors they find no backend. A key-based pick whose backend is full moves on to the
    /// next backend on the ring instead of waiting for it.
    pub fn pick(
        &self,
        pool_id: usize,
        pool: &[Arc<Backend>],
        directors: Option<&PoolDirectors>,
        ctx: PickContext,
        skip: impl Fn(&Backend) -> bool,
    ) -> Result<Arc<Backend>, Refusal> {
        let cursor = &self.cursors[pool_id.min(1)];
        let mut overloaded = false;
        let mut try_one = |i: usize| -> Option<Arc<Backend>> {
            let backend = &pool[i];
            if skip(backend) {
                return None;
            }
            match backend.try_acquire_in(false, ctx.panic) {
                Ok(()) => Some(backend.clone()),
                Err(Refusal::Overloaded) => {
                    overloaded = true;
                    None
                }
                Err(Refusal::Unavailable) => None,
            }
        };
        let chosen = match self.kind() {
            SchedulerKind::RoundRobin => {
                let start = cursor.load(Ordering::Relaxed) % pool.len().max(1);
                rotation(start, pool.len()).find_map(|i| {
                    let b = try_one(i)?;
                    // x0's intent, fixed: the next request starts one past this one.
                    cursor.store(i + 1, Ordering::Relaxed);
                    Some(b)
                })
            }
            SchedulerKind::Chance => (0..pool.len()).find_map(&mut try_one),
            SchedulerKind::LeastLoad => {
                let free: Vec<u64> = pool
                    .iter()
                    .map(|b| match b.capacity() {
                        0 => u64::MAX,
                        c => u64::from(c.saturating_sub(b.in_flight())),
                    })
                    .collect();
                by_free_capacity(&free).into_iter().find_map(&mut try_one)
            }
            kind => {
                let Some(d) = directors else {
                    return Err(Refusal::Unavailable);
                };
                let available =
                    |i: usize| pool.get(i).is_some_and(|b| b.is_available_in(ctx.panic));
                let order: Vec<usize> = match kind {
                    SchedulerKind::WeightedRoundRobin => {
                        let n = cursor.fetch_add(1, Ordering::Relaxed);
                        d.smooth.order(n, pool.len()).collect()
                    }
                    SchedulerKind::Random => d.random.order(rand::random::<u64>()).collect(),
                    SchedulerKind::Hash => d.ring.candidates(ctx.key.unwrap_or(0)).collect(),
                    SchedulerKind::Shard => {
                        let params = ctx.shard.unwrap_or(ShardParams {
                            alt: 0,
                            warmup: 0.0,
                            rampup: std::time::Duration::ZERO,
                            healthy: Healthy::Chosen,
                        });
                        shard_order(
                            &d.ring,
                            ctx.key.unwrap_or(0),
                            &params,
                            available,
                            |i| pool.get(i).and_then(|b| b.up_for()),
                            rand::random::<f64>(),
                        )
                    }
                    _ => d.fallback.order(pool.len(), available),
                };
                order.into_iter().find_map(&mut try_one)
            }
        };
        match chosen {
            Some(b) => Ok(b),
            None if overloaded => Err(Refusal::Overloaded),
            None => Err(Refusal::Unavailable),
        }
    }
}

#[cfg(test)]
mod tests;
