//! The object cache: `director-cache`'s layer put in front of clusters that ask for it.
//!
//! `[clusters.NAME.cache]` gives the cluster a [`CacheHandle`] and a front service (cache layer
//! over the cluster) that the router sends the cluster's requests through. `PURGE` is honoured
//! only for clients listed in `purge-allow`; for everyone else it is refused (405) and never
//! reaches a backend.
//!
//! Cached objects outlive config rebuilds (hot reload, admin-API changes): [`CacheFronts`] keeps
//! one handle per cluster name across builds. A build goes through a [`FrontsBuild`], which stages
//! its choices and applies them only on [`FrontsBuild::commit`], so a rejected config changes no
//! cache:
//!
//! * an unchanged `[cache]` table reuses the handle as it is (runtime changes made through the
//!   admin API stay);
//! * a changed one reuses the handle and applies the new settings with
//!   [`CacheHandle::set_config`] (objects are kept; a smaller budget evicts at once);
//! * a removed or disabled table (or a cluster that is gone or has no route) drops the handle.
//!
//! The map sits behind a `Mutex` because only builds and the admin API touch it; requests go
//! through the front service, which holds its handle directly.
//!
//! ```
//! use director_bin::cache::CacheFronts;
//!
//! let source = "[server]\nlisten = [\"127.0.0.1:0\"]\n[clusters.app]\n[clusters.app.cache]\n\
//!               [[clusters.app.backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n\
//!               [[routes]]\ncluster = \"app\"\n";
//! let fronts = CacheFronts::new(); // held by the binary for as long as it runs
//! let file = std::path::Path::new("director.toml");
//! let first = director_bin::config::parse_with(source, file, &fronts).unwrap();
//! let cache = fronts.handle("app").expect("cluster app has a cache");
//! // A reload (or an admin-API change) builds again: the same cache, objects and all.
//! let again = director_bin::config::parse_with(source, file, &fronts).unwrap();
//! assert!(fronts.handle("app").unwrap().ptr_eq(&cache));
//! # drop((first, again));
//! ```

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use director_cache::{CacheConfig, CacheHandle, PurgeAllowed, UpdateStrategy};
use director_core::{
    Body,
    client_info::ClientInfo,
    cluster::{Cluster, ClusterService},
    config::{CacheSettings, ClusterConfig},
    registry::{ClusterFront, FrontFactory},
};
use http::Request;
use tower::ServiceBuilder;

/// The caches in front of clusters, one [`CacheHandle`] per cluster name, kept across builds.
/// Cheap to clone: clones share the map.
#[derive(Clone, Debug, Default)]
pub struct CacheFronts {
    live: Arc<Mutex<BTreeMap<String, Entry>>>,
}

/// One cluster's cache and the settings it was last built from.
#[derive(Clone, Debug)]
struct Entry {
    /// The `[cache]` table without `purge-allow` (which lives in the front, not the handle).
    settings: CacheSettings,
    handle: CacheHandle,
}

/// One build of cache fronts: a [`FrontFactory`] for [`Snapshot::build_full`] that stages which
/// handle each cluster gets. Nothing changes until [`FrontsBuild::commit`]; dropping it instead
/// (the build failed) leaves every cache as it was.
///
/// [`Snapshot::build_full`]: director_core::registry::Snapshot::build_full
#[derive(Debug)]
#[must_use = "a build changes nothing until it is committed"]
pub struct FrontsBuild {
    fronts: CacheFronts,
    staged: Mutex<BTreeMap<String, Staged>>,
}

#[derive(Debug)]
struct Staged {
    entry: Entry,
    /// New settings for a reused handle, applied on commit.
    apply: Option<CacheConfig>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps hold plain data; a panic elsewhere cannot leave them half-written.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl CacheFronts ===

impl CacheFronts {
    /// No caches yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a build: pass the result to `Snapshot::build_full`, then commit it once the
    /// snapshot is live.
    pub fn build(&self) -> FrontsBuild {
        FrontsBuild {
            fronts: self.clone(),
            staged: Mutex::default(),
        }
    }

    /// The cache in front of `cluster`, if it has one (for stats, purge, ban, runtime config).
    pub fn handle(&self, cluster: &str) -> Option<CacheHandle> {
        lock(&self.live).get(cluster).map(|e| e.handle.clone())
    }

    /// Every cluster's cache, by cluster name.
    pub fn handles(&self) -> Vec<(String, CacheHandle)> {
        lock(&self.live)
            .iter()
            .map(|(name, e)| (name.clone(), e.handle.clone()))
            .collect()
    }
}

// === impl FrontsBuild ===

impl FrontsBuild {
    /// Makes this build's caches the live ones: applies changed settings to reused handles and
    /// drops the handles of clusters that no longer have a cache.
    pub fn commit(self) {
        let staged = self
            .staged
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let mut live = lock(&self.fronts.live);
        *live = staged
            .into_iter()
            .map(|(name, Staged { entry, apply })| {
                if let Some(config) = apply {
                    entry.handle.set_config(config);
                }
                (name, entry)
            })
            .collect();
    }

    /// The handle `cluster` gets in this build (staging it on first use; several routes to one
    /// cluster share it).
    fn handle(&self, cluster: &str, settings: &CacheSettings) -> Result<CacheHandle, String> {
        let mut staged = lock(&self.staged);
        if let Some(s) = staged.get(cluster) {
            return Ok(s.entry.handle.clone());
        }
        let config = cache_config(settings)?;
        let settings = CacheSettings {
            purge_allow: Vec::new(),
            ..settings.clone()
        };
        let live = lock(&self.fronts.live).get(cluster).cloned();
        let (handle, apply) = match live {
            Some(e) if e.settings == settings => (e.handle, None),
            Some(e) => (e.handle, Some(config)),
            None => (CacheHandle::with_label(config, cluster), None),
        };
        let entry = Entry {
            settings,
            handle: handle.clone(),
        };
        staged.insert(cluster.to_owned(), Staged { entry, apply });
        Ok(handle)
    }
}

impl FrontFactory for FrontsBuild {
    fn front(
        &self,
        cluster: &Arc<Cluster>,
        settings: &ClusterConfig,
    ) -> Result<Option<ClusterFront>, String> {
        let Some(cache) = settings.cache.as_ref().filter(|c| c.enabled) else {
            return Ok(None);
        };
        let handle = self.handle(cluster.name(), cache)?;
        let allow: Arc<[IpAddr]> = cache
            .purge_allow
            .iter()
            .map(|ip| ip.to_canonical())
            .collect();
        let service = ServiceBuilder::new()
            .map_request(move |mut req: Request<Body>| {
                if req.method().as_str() == "PURGE" && purge_allowed(&req, &allow) {
                    req.extensions_mut().insert(PurgeAllowed);
                }
                req
            })
            .map_response(|r: http::Response<director_cache::CacheBody<Body>>| {
                r.map(director_core::body::boxed)
            })
            .layer(handle.layer())
            .service(ClusterService::new(cluster.clone()));
        Ok(Some(ClusterFront::new(service)))
    }
}

fn purge_allowed(req: &Request<Body>, allow: &[IpAddr]) -> bool {
    req.extensions()
        .get::<ClientInfo>()
        .and_then(|c| c.remote)
        .is_some_and(|r| allow.contains(&r.ip().to_canonical()))
}

/// The cache settings of a `[clusters.NAME.cache]` table.
pub fn cache_config(s: &CacheSettings) -> Result<CacheConfig, String> {
    let defaults = CacheConfig::default();
    let strategy = match s.strategy.as_str() {
        "locked" => UpdateStrategy::Locked,
        "shadowed" => UpdateStrategy::Shadowed,
        other => return Err(format!("unknown strategy {other:?} (locked, shadowed)")),
    };
    Ok(CacheConfig {
        enabled: true,
        deliver_active: s.deliver_active,
        deliver_shadow: s.deliver_shadow,
        default_ttl: s.default_ttl.map_or(defaults.default_ttl, |d| d.0),
        shadow_ttl: s.shadow_ttl.map_or(defaults.shadow_ttl, |d| d.0),
        strategy,
        lock_timeout: s.lock_timeout.map_or(defaults.lock_timeout, |d| d.0),
        budget: s.budget.unwrap_or(defaults.budget),
        max_object_size: s.max_object_size.unwrap_or(defaults.max_object_size),
        cookie_requests_private: s.cookie_requests_private,
        ignore_cookies: ignore_cookies(&s.ignore_cookies)?,
        ..defaults
    })
}

/// `ignore-cookies`: cookie names (RFC 6265 tokens), each optionally ending in `*`.
fn ignore_cookies(names: &[String]) -> Result<Vec<String>, String> {
    for name in names {
        let stem = name.strip_suffix('*').unwrap_or(name);
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if stem.is_empty() && !name.is_empty() {
            return Err("ignore-cookies: \"*\" would ignore every cookie; set \
                        cookie-requests-private = false instead"
                .into());
        }
        if stem.is_empty() || !stem.bytes().all(|b| token(b) && b != b'*') {
            return Err(format!(
                "ignore-cookies: {name:?} is not a cookie name (optionally ending in '*')"
            ));
        }
    }
    Ok(names.to_vec())
}

#[cfg(test)]
mod tests;

// === impl director_api::Extras for CacheFronts ===

/// The admin API's cache routes and `cache.stats`, over the live caches.
impl director_api::Extras for CacheFronts {
    fn cache_stats(&self, cluster: &str) -> Option<serde_json::Value> {
        let s = self.handle(cluster)?.stats();
        // x0's four counters first (`shadow-hits` for shadow deliveries), then the rest.
        Some(serde_json::json!({
            "hits": s.hits,
            "misses": s.misses,
            "shadow-hits": s.shadow,
            "purges": s.purges,
            "stale": s.stale,
            "coalesced": s.coalesced,
            "revalidated": s.revalidated,
            "uncacheable": s.uncacheable,
            "stores": s.stores,
            "evictions": s.evictions,
            "bytes": s.bytes,
            "objects": s.objects,
        }))
    }

    /// `url` is a request URL (`http://host/path?query`); its key is rendered with the cache's
    /// key pattern, as a request for it would be.
    fn purge(&self, cluster: &str, url: &str) -> Option<usize> {
        let handle = self.handle(cluster)?;
        let uri: http::Uri = url.parse().ok()?;
        let mut req = Request::get(uri.clone()).body(()).ok()?;
        if let Some(host) = uri.authority() {
            req.headers_mut()
                .insert(http::header::HOST, host.as_str().parse().ok()?);
        }
        Some(usize::from(handle.purge(&handle.key_for(&req))))
    }

    /// `prefix` is matched against stored keys (the key pattern's rendering, by default
    /// `host#path#query`).
    fn ban_prefix(&self, cluster: &str, prefix: &str) -> Option<usize> {
        Some(self.handle(cluster)?.ban_prefix(prefix))
    }

    fn ban_matching(
        &self,
        cluster: &str,
        predicate: &(dyn Fn(&str) -> bool + Sync),
    ) -> Option<usize> {
        Some(self.handle(cluster)?.ban(predicate))
    }
}
