//! An HTTP object cache as a Tower layer: freshness per RFC 9111 for a shared cache, `Vary`
//! variants, conditional requests, stale serving (RFC 5861), request coalescing, purge and bans.
//!
//! # Where it sits
//!
//! In Director a request goes: listener → error-to-response layer → router → **cache layer** →
//! X-Sendfile layer → cluster service (bucket, scheduler, backend transport). This crate is the
//! cache layer. It depends on no other Director crate: it wraps any
//! `Service<http::Request<B>, Response = http::Response<R>>` where `R: http_body::Body<Data = Bytes>`,
//! and it is the successor of x0's `ObjectCache` (its settings, key pattern, headers and
//! statistics), with x0's quirks fixed (see `x0-director.md` §10 and §16 item 23).
//!
//! # Layout
//!
//! * `service`: [`CacheLayer`], [`Cache`] and its `ResponseFuture`: lookup, coalescing,
//!   background refresh, shadow delivery, PURGE. The only async code, and thin.
//! * `body`: [`CacheBody`], a stored body or the upstream body, captured while it streams.
//! * `handle`: [`CacheHandle`], the shared state and the admin side (config, purge, ban, stats).
//! * `config`: [`CacheConfig`] and [`UpdateStrategy`], swappable at runtime.
//! * `key`: [`KeyPattern`] (`%h#%r#%q`) and the xxh3 primary-key hash.
//! * `vary`: the secondary key: which stored variant a request selects.
//! * `directives`: `Cache-Control` parsing for requests and responses.
//! * `policy`: pure freshness math: storability, lifetime, age, stale windows, what to do with a
//!   stored variant.
//! * `conditional`: `If-None-Match` / `If-Modified-Since` (and `If-Match`,
//!   `If-Unmodified-Since`) answered from the cache.
//! * `object`: stored objects and variants, and how a delivery is rendered.
//! * `store`: the sharded, byte-budgeted map with CLOCK eviction.
//! * `collapse`: one fetch per object at a time; the others wait.
//! * `stats`: counters, [`CacheStats`] snapshots and `metrics` export.
//!
//! # Integrating
//!
//! * Build one [`CacheHandle`] per cluster (`CacheHandle::with_label(config, name)`), put
//!   `handle.layer()` in the cluster's stack *inside* the error-to-response layer (the cache
//!   must see upstream failures as errors or 502/503/504 responses), and keep a clone of the
//!   handle for the admin API: `set_config`/`update_config`, `purge`, `ban_prefix`, `ban`,
//!   `clear`, `remove_expired`, `stats`.
//! * [`Cache<S>`](Cache) is always ready (hits never wait for backends); requests that go
//!   upstream clone `S` and wait for its readiness in their own future, so `S` should be a
//!   cheap clone (a buffer or a handle) and report "no backend" from `poll_ready` or `call`
//!   as an error, or from `call` as a 503.
//! * [`Cache<S>`](Cache) has `Error = S::Error`: an inner error comes out unchanged unless a
//!   shadow copy answered instead. Every inner error counts as "no backend could answer".
//! * Statuses the cache itself produces: 304/412 for conditional requests answered from the
//!   cache; 504 for `only-if-cached` without a usable copy and for a `must-revalidate` copy
//!   whose refresh failed; 200/404 for an allowed `PURGE` and 405 for any other `PURGE`.
//! * Request extensions the integrator may set: [`PurgeAllowed`], [`CacheBypass`],
//!   [`DefaultTtl`], and a [`KeyPattern`] for a per-route key.
//! * Spawning a future whose *type* names `<Cache<S> as Service>::Future` through a projection
//!   (such as `tower::util::Oneshot<Cache<S>, _>`) can trip rustc's higher-ranked lifetime bug
//!   when the inner types carry `Box<dyn Error>`; box the service
//!   (`BoxCloneService`) or call `ready()` then `call()` as the tests do.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use director_cache::{CacheConfig, CacheHandle};
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Empty, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), director_cache::BoxError> {
//! let cache = CacheHandle::new(CacheConfig::default());
//! let origin = tower::service_fn(|_req: Request<Empty<Bytes>>| async {
//!     let res = Response::builder()
//!         .header("cache-control", "max-age=60")
//!         .body(Full::new(Bytes::from_static(b"hello")))
//!         .unwrap();
//!     Ok::<_, Infallible>(res)
//! });
//! let svc = ServiceBuilder::new().layer(cache.layer()).service(origin);
//!
//! let get = || Request::get("http://example.com/").body(Empty::new()).unwrap();
//! let miss = svc.clone().oneshot(get()).await?;
//! assert_eq!(miss.headers()["x-cache"], "MISS");
//! miss.into_body().collect().await?; // the object is stored when its body has streamed
//!
//! let hit = svc.oneshot(get()).await?;
//! assert_eq!(hit.headers()["x-cache"], "HIT");
//! assert_eq!(hit.into_body().collect().await?.to_bytes(), "hello");
//! assert_eq!(cache.stats().hits, 1);
//! # Ok(())
//! # }
//! ```

mod body;
mod collapse;
mod conditional;
mod config;
mod directives;
mod handle;
mod key;
mod object;
mod policy;
mod service;
mod stats;
mod store;
mod vary;

pub use body::CacheBody;
pub use config::{CacheConfig, UpdateStrategy};
pub use directives::{RequestDirectives, ResponseDirectives};
pub use handle::CacheHandle;
pub use key::{DEFAULT_PATTERN, KeyPattern};
pub use object::{
    HEADER_OVERHEAD, OBJECT_OVERHEAD, VARIANT_OVERHEAD, X_CACHE, X_CACHE_HITS, X_CACHE_LOOKUP,
    X_DIRECTOR_CACHE,
};
pub use service::{Cache, CacheBypass, CacheLayer, DefaultTtl, PurgeAllowed, ResponseFuture};
pub use stats::CacheStats;

/// The boxed error type at service boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
