//! [`CacheHandle`]: the shared state of one cache, and the admin side's grip on it.
//!
//! Every [`Cache`](crate::Cache) service made from the same handle (or from its layer) shares one
//! store, one set of in-flight fetches, one configuration and one set of counters. The admin
//! API keeps a clone of the handle to swap the configuration, purge, ban and read statistics.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderMap, Request};
use tokio::time::Instant;

use crate::collapse::{FlightGuard, Flights};
use crate::config::CacheConfig;
use crate::key::{KeyPattern, hash_key};
use crate::object::{Object, Variant};
use crate::service::CacheLayer;
use crate::stats::{CacheStats, Stats};
use crate::store::{Expiring, Removed, Store};
use crate::vary::VaryKey;

/// A cache: configuration, store, in-flight fetches and statistics. Cheap to clone.
#[derive(Clone)]
pub struct CacheHandle {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: ArcSwap<CacheConfig>,
    pub(crate) store: Store<Object>,
    pub(crate) flights: Arc<Flights>,
    pub(crate) stats: Stats,
    label: String,
}

// === impl CacheHandle ===

impl CacheHandle {
    /// A cache whose metrics carry the label `cache="default"`.
    pub fn new(config: CacheConfig) -> Self {
        Self::with_label(config, "default")
    }

    /// A cache whose metrics carry `cache="<label>"` (e.g. the cluster name).
    pub fn with_label(config: CacheConfig, label: impl Into<String>) -> Self {
        let label = label.into();
        Self {
            shared: Arc::new(Shared {
                config: ArcSwap::from_pointee(config),
                store: Store::new(),
                flights: Arc::new(Flights::new()),
                stats: Stats::new(&label),
                label,
            }),
        }
    }

    /// A layer that puts this cache in front of a service.
    pub fn layer(&self) -> CacheLayer {
        CacheLayer::new(self.clone())
    }

    /// Whether `self` and `other` are the same cache (clones of one handle).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The label given at construction.
    pub fn label(&self) -> &str {
        &self.shared.label
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<CacheConfig> {
        self.shared.config.load_full()
    }

    /// Replaces the configuration. The next request uses it, with the objects already stored
    /// (tested setting by setting); requests already running keep the one they loaded. A
    /// smaller budget is enforced at once. Turning the cache off does not empty it. A longer
    /// shadow TTL or `keep` lengthens the retention only of objects stored from then on (how
    /// long an object is kept is fixed when it is stored); a shorter one applies at once.
    pub fn set_config(&self, config: CacheConfig) {
        let budget = config.budget;
        self.shared.config.store(Arc::new(config));
        let removed = self.shared.store.enforce(budget);
        self.shared.removed(removed, false);
    }

    /// Changes the configuration with a function of the current one.
    pub fn update_config(&self, f: impl Fn(&CacheConfig) -> CacheConfig) {
        let new = self.shared.config.rcu(|old| Arc::new(f(old)));
        drop(new);
        let budget = self.shared.config.load().budget;
        let removed = self.shared.store.enforce(budget);
        self.shared.removed(removed, false);
    }

    /// The key a request would be stored under, with the current pattern (or the request's
    /// own `KeyPattern` extension).
    pub fn key_for<B>(&self, req: &Request<B>) -> String {
        let config = self.shared.config.load();
        req.extensions()
            .get::<KeyPattern>()
            .unwrap_or(&config.key)
            .render(req)
    }

    /// Removes every variant of `key`. Returns whether there was anything.
    pub fn purge(&self, key: &str) -> bool {
        self.shared.purge_hash(hash_key(key))
    }

    /// Removes every object whose key starts with `prefix`. Returns how many.
    pub fn ban_prefix(&self, prefix: &str) -> usize {
        self.ban(|key| key.starts_with(prefix))
    }

    /// Removes every object whose key satisfies `predicate`. Returns how many.
    pub fn ban(&self, predicate: impl Fn(&str) -> bool) -> usize {
        let removed = self.shared.store.remove_if(|o| predicate(&o.key));
        self.shared.removed(removed, true);
        removed.objects
    }

    /// Drops objects whose every variant is past its retention (they are never served, but
    /// count in the budget until evicted or replaced). Call it from a periodic task if the
    /// store rarely fills up. Returns how many.
    pub fn remove_expired(&self) -> usize {
        let now = Instant::now();
        let removed = self.shared.store.remove_if(|o| o.is_expired(now));
        self.shared.removed(removed, false);
        removed.objects
    }

    /// Removes everything. Returns how many objects.
    pub fn clear(&self) -> usize {
        self.ban(|_| true)
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> CacheStats {
        let mut s = self.shared.stats.snapshot();
        s.bytes = self.shared.store.weight() as u64;
        s.objects = self.shared.store.len() as u64;
        s
    }
}

impl fmt::Debug for CacheHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheHandle")
            .field("label", &self.shared.label)
            .field("store", &self.shared.store)
            .finish_non_exhaustive()
    }
}

// === impl Shared ===

impl Shared {
    /// Books a removal: purge counters or eviction counters, and the size gauges.
    fn removed(&self, removed: Removed, purge: bool) {
        if removed.objects > 0 {
            if purge {
                self.stats.purges(removed.objects as u64);
            } else {
                self.stats.evictions(removed.objects as u64);
            }
        }
        self.stats.set_size(self.store.weight(), self.store.len());
    }

    pub(crate) fn purge_hash(&self, hash: u128) -> bool {
        let found = self.store.remove(hash);
        self.removed(
            Removed {
                objects: usize::from(found),
                bytes: 0,
            },
            true,
        );
        found
    }

    /// The newest live variant of `hash` that the request selects.
    pub(crate) fn lookup(
        &self,
        hash: u128,
        request: &HeaderMap,
        now: Instant,
    ) -> Option<Arc<Variant>> {
        self.store.get(hash)?.select(request, now).cloned()
    }

    /// Stores a variant under `hash`, within the current budget.
    pub(crate) fn commit(&self, hash: u128, key: &str, variant: Variant) {
        let config = self.config.load();
        if variant.weight > config.budget {
            return;
        }
        let now = Instant::now();
        let variant = Arc::new(variant);
        let removed = self.store.update(hash, config.budget, |old| {
            let object = Object::with_variant(
                old.map(|o| &**o),
                key,
                Arc::clone(&variant),
                config.max_variants,
                now,
            );
            let weight = object.weight();
            Some((Arc::new(object), weight))
        });
        self.stats.stores(1);
        self.removed(removed, false);
    }

    /// Drops the variant stored under `vary` (its response is not cacheable any more).
    pub(crate) fn drop_variant(&self, hash: u128, vary: &VaryKey) {
        let budget = self.config.load().budget;
        let removed = self.store.update(hash, budget, |old| {
            old.and_then(|o| o.without(vary)).map(|o| {
                let w = o.weight();
                (Arc::new(o), w)
            })
        });
        self.removed(removed, false);
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// What storing a fetched response needs once its body is complete.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) shared: Arc<Shared>,
    pub(crate) hash: u128,
    pub(crate) key: String,
    pub(crate) vary: VaryKey,
    pub(crate) status: http::StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) freshness: crate::policy::Freshness,
    pub(crate) received_at: Instant,
    pub(crate) retention: std::time::Duration,
    pub(crate) guard: Option<FlightGuard>,
}

impl Pending {
    /// Stores the response with its complete body, then wakes the waiters (guard dropped).
    pub(crate) fn commit(self, body: bytes::Bytes) {
        let variant = Variant::new(
            self.vary,
            self.status,
            self.headers,
            body,
            self.freshness,
            self.received_at,
            self.retention,
        );
        self.shared.commit(self.hash, &self.key, variant);
        drop(self.guard);
    }
}
