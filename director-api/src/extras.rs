//! What the API can do beyond the store: the object cache's statistics, purges and bans.
//!
//! `director-api` does not depend on `director-cache`; the binary implements [`Extras`] over its
//! cache handles and passes it to [`crate::Api::new`].

use std::fmt;

/// Cache operations of the embedding application. `None` means the cluster has no cache.
pub trait Extras: Send + Sync + 'static {
    /// The cache statistics of `cluster` (shown as `cache.stats` in its document).
    fn cache_stats(&self, cluster: &str) -> Option<serde_json::Value>;
    /// Removes the cached object of `url` (every variant); returns how many were removed.
    fn purge(&self, cluster: &str, url: &str) -> Option<usize>;
    /// Removes every cached object whose URL starts with `prefix`; returns how many.
    fn ban_prefix(&self, cluster: &str, prefix: &str) -> Option<usize>;
    /// Removes every cached object whose key `predicate` accepts; returns how many. The
    /// default knows no cache.
    fn ban_matching(
        &self,
        _cluster: &str,
        _predicate: &(dyn Fn(&str) -> bool + Sync),
    ) -> Option<usize> {
        None
    }
}

impl fmt::Debug for dyn Extras {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn Extras")
    }
}

/// No cache anywhere: the cache routes answer 404.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoExtras;

impl Extras for NoExtras {
    fn cache_stats(&self, _: &str) -> Option<serde_json::Value> {
        None
    }
    fn purge(&self, _: &str, _: &str) -> Option<usize> {
        None
    }
    fn ban_prefix(&self, _: &str, _: &str) -> Option<usize> {
        None
    }
}
