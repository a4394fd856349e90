//! What `director-bin` plugs into the core's cluster store: FastCGI transports, cache fronts,
//! health-setting checks, and health monitors that follow every swap of the registry.

use std::sync::{Arc, Mutex};

use director_core::{
    config::{ClusterConfig, ConfigError, ProxyConfig},
    registry::{FrontFactory, Snapshot, TransportFactory},
    store::Stage,
};

use crate::{
    cache::{CacheFronts, FrontsBuild},
    fastcgi::FastCgiFactory,
    health::HealthMonitors,
};

/// The binary's [`director_core::store::Assembly`].
#[derive(Debug, Default)]
pub struct Assembly {
    fastcgi: FastCgiFactory,
    cache: CacheFronts,
    health: Mutex<HealthMonitors>,
}

impl Assembly {
    /// The cache fronts (to reach the caches' stats, purge and ban).
    pub fn cache(&self) -> &CacheFronts {
        &self.cache
    }

    /// Runs `f` with the health monitors.
    pub fn with_health<T>(&self, f: impl FnOnce(&HealthMonitors) -> T) -> T {
        f(&self.health.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl director_core::store::Assembly for Assembly {
    fn transports(&self) -> &dyn TransportFactory {
        &self.fastcgi
    }

    fn stage(&self) -> Box<dyn Stage + '_> {
        Box::new(self.cache.build())
    }

    fn check(&self, name: &str, cluster: &ClusterConfig) -> Result<(), ConfigError> {
        crate::health::check_cluster(cluster)
            .map_err(|(key, message)| ConfigError::new(format!("clusters.{name}.{key}"), message))
    }

    fn swapped(&self, snapshot: &Arc<Snapshot>, config: &ProxyConfig) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(err) = health.sync(config, snapshot) {
            tracing::error!(error = %err, "cannot start a health monitor");
        }
    }
}

impl Stage for FrontsBuild {
    fn fronts(&self) -> &dyn FrontFactory {
        self
    }

    fn commit(self: Box<Self>) {
        FrontsBuild::commit(*self);
    }
}
