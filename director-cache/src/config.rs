//! Runtime configuration of one cache (x0's `[cache]` section, plus what RFC 9111 needs).
//!
//! A [`CacheConfig`] is held in an `ArcSwap` by the [`CacheHandle`](crate::CacheHandle): every
//! request loads the current one once, and the admin side swaps in a new one at any time.

use std::fmt;
use std::time::Duration;

use http::StatusCode;

use crate::key::KeyPattern;

/// What other requests do while one request refreshes a stale object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UpdateStrategy {
    /// Wait for the refreshing request's response (request coalescing); after the lock timeout,
    /// serve the stale copy if allowed, else go upstream. x0's `lock-on-update = true`.
    #[default]
    Locked,
    /// Serve the stale copy at once (within the shadow TTL or the response's
    /// `stale-while-revalidate`) while one background refresh runs.
    Shadowed,
}

/// The configuration of one cache. Build it with `CacheConfig::default()` and struct update.
#[derive(Clone)]
pub struct CacheConfig {
    /// Master switch. Off: every request passes through untouched, nothing is stored or purged.
    pub enabled: bool,
    /// Serve normal requests from the cache (hits, coalescing). Off: requests go upstream and
    /// nothing new is stored, but shadow delivery still works from what is stored.
    pub deliver_active: bool,
    /// Serve a stale copy, marked `X-Director-Cache: shadow`, when the upstream fails.
    pub deliver_shadow: bool,
    /// Heuristic freshness for responses without explicit expiry (RFC 9111 §4.2.2 allows it
    /// only for heuristically cacheable statuses or `public`). Zero disables it. x0: 20 s.
    pub default_ttl: Duration,
    /// How long past its lifetime a stale copy may still be served when the upstream fails
    /// (with the response's `stale-if-error`, whichever is longer), and, under
    /// [`UpdateStrategy::Shadowed`], while a refresh runs (with `stale-while-revalidate`).
    pub shadow_ttl: Duration,
    /// How long a stale object with validators is kept after every window has passed, so it
    /// can be revalidated with a conditional request instead of fetched again.
    pub keep: Duration,
    /// The update strategy.
    pub strategy: UpdateStrategy,
    /// How long a request waits for another request's fetch of the same object.
    pub lock_timeout: Duration,
    /// Byte budget of the store (headers, body and bookkeeping of every stored variant).
    pub budget: usize,
    /// Responses with bodies larger than this are streamed through and not stored.
    pub max_object_size: usize,
    /// Most variants kept per key; the oldest goes first.
    pub max_variants: usize,
    /// The key pattern (x0's `%h#%r#%q` by default).
    pub key: KeyPattern,
    /// Upstream statuses that mean "no backend can answer" (shadow delivery, never stored).
    /// Every error of the inner service means it too.
    pub unavailable_statuses: Vec<StatusCode>,
    /// A response to a request carrying a cookie is stored only when it is explicitly meant
    /// for shared caches (`public` or `s-maxage`), as for `Authorization` (RFC 9111 §3.5).
    /// Browsers send a site's cookies with every request, and a backend that personalises a
    /// page often sends no cache headers at all: stored on heuristics, one user's page would be
    /// served to everyone. Off: RFC 9111's rules alone (the cookie does not matter).
    pub cookie_requests_private: bool,
    /// Cookies that do not make a request private (e.g. analytics cookies the backend never
    /// reads). An entry ending in `*` matches every name it is a prefix of. Names are
    /// case-sensitive (RFC 6265).
    pub ignore_cookies: Vec<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            deliver_active: true,
            deliver_shadow: true,
            default_ttl: Duration::from_secs(20),
            shadow_ttl: Duration::from_secs(60),
            keep: Duration::from_secs(60),
            strategy: UpdateStrategy::Locked,
            lock_timeout: Duration::from_secs(10),
            budget: 64 << 20,
            max_object_size: 1 << 20,
            max_variants: 16,
            key: KeyPattern::default(),
            unavailable_statuses: vec![
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::GATEWAY_TIMEOUT,
            ],
            cookie_requests_private: true,
            ignore_cookies: Vec::new(),
        }
    }
}

impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("enabled", &self.enabled)
            .field("deliver_active", &self.deliver_active)
            .field("deliver_shadow", &self.deliver_shadow)
            .field("default_ttl", &self.default_ttl)
            .field("shadow_ttl", &self.shadow_ttl)
            .field("keep", &self.keep)
            .field("strategy", &self.strategy)
            .field("lock_timeout", &self.lock_timeout)
            .field("budget", &self.budget)
            .field("max_object_size", &self.max_object_size)
            .field("max_variants", &self.max_variants)
            .field("key", &self.key)
            .field("unavailable_statuses", &self.unavailable_statuses)
            .field("cookie_requests_private", &self.cookie_requests_private)
            .field("ignore_cookies", &self.ignore_cookies)
            .finish_non_exhaustive()
    }
}
