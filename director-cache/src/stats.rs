//! Live counters, their snapshot, and their export through the `metrics` crate.
//!
//! Counters are atomics bumped on the request path; [`CacheStats`] is a plain snapshot for the
//! admin API. Every bump is mirrored to a `metrics` handle named `director_cache_*` with a
//! `cache` label. The handles are registered when the cache is built, so install the metrics
//! recorder before building caches.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use metrics::{Counter, Gauge};

/// A snapshot of one cache's statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Fresh deliveries (including 304s answered from the cache and coalesced waits that
    /// ended in a delivery).
    pub hits: u64,
    /// Lookups that went upstream: absent objects and stale ones being refreshed.
    pub misses: u64,
    /// Stale copies served while a refresh runs, or accepted by the client's `max-stale`.
    pub stale: u64,
    /// Stale copies served because the upstream failed (`X-Director-Cache: shadow`).
    pub shadow: u64,
    /// Requests that waited for another request's fetch of the same object.
    pub coalesced: u64,
    /// Stale objects refreshed by a 304 from the upstream.
    pub revalidated: u64,
    /// Responses that were not storable (passed through).
    pub uncacheable: u64,
    /// Responses stored.
    pub stores: u64,
    /// Objects removed by purge or ban.
    pub purges: u64,
    /// Objects evicted to stay within the budget, or dropped after expiry.
    pub evictions: u64,
    /// Bytes currently accounted in the store.
    pub bytes: u64,
    /// Objects (keys) currently stored.
    pub objects: u64,
}

macro_rules! counters {
    ($($field:ident => $metric:literal),* $(,)?) => {
        #[derive(Debug, Default)]
        struct Atomics { $($field: AtomicU64,)* }

        #[derive(Debug)]
        struct Exported { $($field: Counter,)* }

        impl Exported {
            fn new(label: &str) -> Self {
                Self { $($field: metrics::counter!($metric, "cache" => label.to_owned()),)* }
            }
        }

        impl Stats {
            $(
                pub(crate) fn $field(&self, n: u64) {
                    self.atomics.$field.fetch_add(n, Relaxed);
                    self.exported.$field.increment(n);
                }
            )*

            /// Counter values; `bytes`/`objects` are filled in by the caller.
            pub(crate) fn snapshot(&self) -> CacheStats {
                CacheStats { $($field: self.atomics.$field.load(Relaxed),)* ..CacheStats::default() }
            }
        }
    };
}

counters! {
    hits => "director_cache_hits_total",
    misses => "director_cache_misses_total",
    stale => "director_cache_stale_total",
    shadow => "director_cache_shadow_total",
    coalesced => "director_cache_coalesced_total",
    revalidated => "director_cache_revalidated_total",
    uncacheable => "director_cache_uncacheable_total",
    stores => "director_cache_stores_total",
    purges => "director_cache_purges_total",
    evictions => "director_cache_evictions_total",
}

/// The live statistics of one cache.
#[derive(Debug)]
pub(crate) struct Stats {
    atomics: Atomics,
    exported: Exported,
    bytes: Gauge,
    objects: Gauge,
}

impl Stats {
    pub(crate) fn new(label: &str) -> Self {
        Self {
            atomics: Atomics::default(),
            exported: Exported::new(label),
            bytes: metrics::gauge!("director_cache_bytes", "cache" => label.to_owned()),
            objects: metrics::gauge!("director_cache_objects", "cache" => label.to_owned()),
        }
    }

    /// Mirrors the store's size to the gauges.
    #[allow(clippy::cast_precision_loss)] // gauges are f64 by design; sizes stay far below 2^53
    pub(crate) fn set_size(&self, bytes: usize, objects: usize) {
        self.bytes.set(bytes as f64);
        self.objects.set(objects as f64);
    }
}
