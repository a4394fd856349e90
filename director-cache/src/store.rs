//! The in-memory store: a sharded hash map with a byte budget and CLOCK eviction.
//!
//! Why not moka: the budget must be changeable at runtime, expiry must follow tokio's clock
//! (paused in tests), and the bound must be exact at rest; a small sharded map gives all three
//! without background threads. A hit takes one shard's *read* lock, clones an `Arc` and sets a
//! "referenced" bit; no global lock. Inserting adds the value's weight to a global atomic total,
//! then evicts, shard by shard, with the CLOCK (second chance) policy until the total is back
//! within the budget. Expired values go first regardless of their bit.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock, RwLockWriteGuard};

use tokio::time::Instant;

/// What the store needs to know about a value.
pub(crate) trait Expiring {
    /// Whether the value is of no use any more at `now`.
    fn is_expired(&self, now: Instant) -> bool;
}

const SHARDS: usize = 32;

/// Keys are already uniform xxh3 hashes: hash them by folding, not by hashing again.
#[derive(Default)]
struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        #[allow(clippy::cast_possible_truncation)] // folding on purpose
        {
            self.0 ^= (n as u64) ^ ((n >> 64) as u64);
        }
    }
}

type Map<V> = HashMap<u128, Slot<V>, BuildHasherDefault<FoldHasher>>;

struct Slot<V> {
    value: Arc<V>,
    weight: usize,
    generation: u64,
    referenced: AtomicBool,
}

struct Shard<V> {
    map: Map<V>,
    /// The CLOCK ring; entries whose generation no longer matches are skipped.
    ring: VecDeque<(u128, u64)>,
    next_generation: u64,
}

/// A sharded, byte-budgeted map from key hashes to values.
pub(crate) struct Store<V> {
    shards: Box<[RwLock<Shard<V>>]>,
    total: AtomicUsize,
    objects: AtomicUsize,
    hand: AtomicUsize,
}

/// What a removal or eviction pass freed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Removed {
    pub(crate) objects: usize,
    pub(crate) bytes: usize,
}

// === impl Store ===

impl<V: Expiring> Store<V> {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    RwLock::new(Shard {
                        map: Map::default(),
                        ring: VecDeque::new(),
                        next_generation: 0,
                    })
                })
                .collect(),
            total: AtomicUsize::new(0),
            objects: AtomicUsize::new(0),
            hand: AtomicUsize::new(0),
        }
    }

    #[allow(clippy::cast_possible_truncation)] // the top bits pick the shard
    fn shard_of(hash: u128) -> usize {
        (hash >> 120) as usize % SHARDS
    }

    fn write(&self, i: usize) -> RwLockWriteGuard<'_, Shard<V>> {
        // A panic while holding a shard lock leaves only a cache behind: keep using it.
        self.shards[i]
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Looks a key up: one read lock on one shard.
    pub(crate) fn get(&self, hash: u128) -> Option<Arc<V>> {
        let shard = self.shards[Self::shard_of(hash)]
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = shard.map.get(&hash)?;
        slot.referenced.store(true, Relaxed);
        Some(Arc::clone(&slot.value))
    }

    /// Replaces the value of a key with what `f` makes of the current one (`None`: remove).
    /// Returns what eviction freed to get back within `budget`.
    pub(crate) fn update(
        &self,
        hash: u128,
        budget: usize,
        f: impl FnOnce(Option<&Arc<V>>) -> Option<(Arc<V>, usize)>,
    ) -> Removed {
        {
            let mut shard = self.write(Self::shard_of(hash));
            let shard = &mut *shard;
            let new = f(shard.map.get(&hash).map(|s| &s.value));
            match (new, shard.map.get_mut(&hash)) {
                (Some((value, weight)), Some(slot)) => {
                    self.total.fetch_add(weight, Relaxed);
                    self.total.fetch_sub(slot.weight, Relaxed);
                    slot.value = value;
                    slot.weight = weight;
                    slot.referenced.store(true, Relaxed);
                }
                (Some((value, weight)), None) => {
                    let generation = shard.next_generation;
                    shard.next_generation += 1;
                    shard.map.insert(
                        hash,
                        Slot {
                            value,
                            weight,
                            generation,
                            referenced: AtomicBool::new(false),
                        },
                    );
                    shard.ring.push_back((hash, generation));
                    self.total.fetch_add(weight, Relaxed);
                    self.objects.fetch_add(1, Relaxed);
                }
                (None, Some(_)) => {
                    self.remove_locked(shard, hash);
                }
                (None, None) => {}
            }
            if shard.ring.len() > 2 * shard.map.len() + 32 {
                let map = &shard.map;
                shard
                    .ring
                    .retain(|(h, g)| map.get(h).is_some_and(|s| s.generation == *g));
            }
        }
        self.enforce(budget)
    }

    fn remove_locked(&self, shard: &mut Shard<V>, hash: u128) -> Option<usize> {
        let slot = shard.map.remove(&hash)?;
        self.total.fetch_sub(slot.weight, Relaxed);
        self.objects.fetch_sub(1, Relaxed);
        Some(slot.weight)
    }

    /// Removes a key; returns whether it was there.
    pub(crate) fn remove(&self, hash: u128) -> bool {
        let mut shard = self.write(Self::shard_of(hash));
        self.remove_locked(&mut shard, hash).is_some()
    }

    /// Removes every value for which `pred` is true.
    pub(crate) fn remove_if(&self, mut pred: impl FnMut(&V) -> bool) -> Removed {
        let mut removed = Removed::default();
        for i in 0..SHARDS {
            let mut shard = self.write(i);
            let doomed: Vec<u128> = shard
                .map
                .iter()
                .filter(|(_, s)| pred(&s.value))
                .map(|(h, _)| *h)
                .collect();
            for h in doomed {
                if let Some(w) = self.remove_locked(&mut shard, h) {
                    removed.objects += 1;
                    removed.bytes += w;
                }
            }
        }
        removed
    }

    /// Evicts until the total weight is within `budget`.
    pub(crate) fn enforce(&self, budget: usize) -> Removed {
        let mut removed = Removed::default();
        let mut idle_shards = 0;
        while self.total.load(Relaxed) > budget && idle_shards < SHARDS {
            let i = self.hand.fetch_add(1, Relaxed) % SHARDS;
            let mut shard = self.write(i);
            match self.evict_one(&mut shard) {
                Some(w) => {
                    idle_shards = 0;
                    removed.objects += 1;
                    removed.bytes += w;
                }
                None => idle_shards += 1,
            }
        }
        removed
    }

    /// One CLOCK step in one shard: evicts one value, or returns `None` if the shard is empty.
    fn evict_one(&self, shard: &mut Shard<V>) -> Option<usize> {
        let now = Instant::now();
        // Each live entry is seen at most twice (its bit is cleared the first time).
        let mut budget = 2 * shard.ring.len() + 1;
        while budget > 0 {
            budget -= 1;
            let (hash, generation) = shard.ring.pop_front()?;
            let Some(slot) = shard.map.get(&hash) else {
                continue;
            };
            if slot.generation != generation {
                continue;
            }
            if slot.referenced.swap(false, Relaxed) && !slot.value.is_expired(now) {
                shard.ring.push_back((hash, generation));
                continue;
            }
            return self.remove_locked(shard, hash);
        }
        None
    }

    /// Total accounted weight.
    pub(crate) fn weight(&self) -> usize {
        self.total.load(Relaxed)
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.objects.load(Relaxed)
    }
}

impl<V> std::fmt::Debug for Store<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("bytes", &self.total.load(Relaxed))
            .field("objects", &self.objects.load(Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
