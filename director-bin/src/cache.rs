//! The object cache: `director-cache`'s layer put in front of clusters that ask for it.
//!
//! `[clusters.NAME.cache]` builds a [`CacheHandle`] and a front service (cache layer over the
//! cluster) that the router sends the cluster's requests through. `PURGE` is honoured only for
//! clients listed in `purge-allow`; for everyone else it is refused (405) and never reaches a
//! backend.

use std::{net::IpAddr, sync::Arc};

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

/// Builds cache fronts for clusters with a `[clusters.NAME.cache]` table.
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheFronts;

impl FrontFactory for CacheFronts {
    fn front(
        &self,
        cluster: &Arc<Cluster>,
        settings: &ClusterConfig,
    ) -> Result<Option<ClusterFront>, String> {
        let Some(cache) = settings.cache.as_ref().filter(|c| c.enabled) else {
            return Ok(None);
        };
        let handle = CacheHandle::with_label(cache_config(cache)?, &**cluster.name());
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
        default_ttl: s.default_ttl.map_or(defaults.default_ttl, |d| d.0),
        shadow_ttl: s.shadow_ttl.map_or(defaults.shadow_ttl, |d| d.0),
        strategy,
        budget: s.budget.unwrap_or(defaults.budget),
        max_object_size: s.max_object_size.unwrap_or(defaults.max_object_size),
        ..defaults
    })
}
