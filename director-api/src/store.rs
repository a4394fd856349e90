//! TEMPORARY stand-in for `director_core::store` until the integrator's cluster store lands on
//! main: the same interface, kept in memory without files. Deleted at the merge.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use director_core::{
    cluster::Cluster,
    config::{ClusterConfig, ConfigError, ProxyConfig},
    registry::{Registry, Snapshot},
};

/// A cluster as the store knows it.
#[derive(Debug, Clone)]
pub struct ClusterEntry {
    /// Its name.
    pub name: String,
    /// Its config.
    pub config: ClusterConfig,
    /// Whether it lives in the cluster directory.
    pub dynamic: bool,
    /// Its version tag.
    pub etag: String,
    /// The live cluster.
    pub live: Arc<Cluster>,
}

/// Why the store refused a change.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Unknown cluster or backend.
    #[error("{0}")]
    NotFound(String),
    /// A static cluster.
    #[error("{0}")]
    Immutable(String),
    /// Name taken or If-Match mismatch.
    #[error("{0}")]
    Conflict(String),
    /// The config does not build.
    #[error("{0}")]
    Invalid(ConfigError),
    /// Writing failed.
    #[error("{0}")]
    Persist(std::io::Error),
    /// Not allowed (terminate protection).
    #[error("{0}")]
    Forbidden(String),
}

/// The last failed reload.
#[derive(Debug, Clone)]
pub struct ReloadError {
    /// When.
    pub at: SystemTime,
    /// What.
    pub message: String,
}

#[derive(Debug, Default)]
struct State {
    clusters: BTreeMap<String, (ClusterConfig, bool, u64)>,
    version: u64,
}

/// The cluster store (in memory).
#[derive(Debug)]
pub struct Store {
    registry: Arc<Registry>,
    state: Mutex<State>,
}

impl Store {
    /// A store over static clusters.
    pub fn new(
        statics: BTreeMap<String, ClusterConfig>,
        dynamics: BTreeMap<String, ClusterConfig>,
    ) -> Result<Self, ConfigError> {
        let mut state = State {
            version: 1,
            ..State::default()
        };
        for (n, c) in statics {
            state.clusters.insert(n, (c, false, 1));
        }
        for (n, c) in dynamics {
            state.clusters.insert(n, (c, true, 1));
        }
        let snapshot = build(&state)?;
        Ok(Store {
            registry: Arc::new(Registry::new(snapshot)),
            state: Mutex::new(state),
        })
    }

    /// The live registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    fn entry(&self, state: &State, name: &str) -> Option<ClusterEntry> {
        let (config, dynamic, version) = state.clusters.get(name)?;
        Some(ClusterEntry {
            name: name.to_owned(),
            config: config.clone(),
            dynamic: *dynamic,
            etag: format!("v{version}"),
            live: self.registry.load().cluster(name)?.clone(),
        })
    }

    /// All clusters by name.
    pub fn list(&self) -> Vec<ClusterEntry> {
        let state = self.state.lock().unwrap();
        state
            .clusters
            .keys()
            .filter_map(|n| self.entry(&state, n))
            .collect()
    }

    /// One cluster.
    pub fn get(&self, name: &str) -> Option<ClusterEntry> {
        self.entry(&self.state.lock().unwrap(), name)
    }

    fn commit(&self, state: &mut State, name: &str) -> Result<ClusterEntry, StoreError> {
        let snapshot = build(state).map_err(StoreError::Invalid)?;
        self.registry.store(snapshot);
        Ok(self.entry(state, name).expect("just stored"))
    }

    /// Creates a dynamic cluster.
    pub fn create(&self, name: &str, config: ClusterConfig) -> Result<ClusterEntry, StoreError> {
        let mut state = self.state.lock().unwrap();
        if state.clusters.contains_key(name) {
            return Err(StoreError::Conflict(format!("cluster {name:?} exists")));
        }
        state.version += 1;
        let v = state.version;
        state.clusters.insert(name.to_owned(), (config, true, v));
        match self.commit(&mut state, name) {
            Ok(e) => Ok(e),
            Err(e) => {
                state.clusters.remove(name);
                Err(e)
            }
        }
    }

    /// Edits a dynamic cluster.
    pub fn update(
        &self,
        name: &str,
        if_match: Option<&str>,
        edit: impl FnOnce(&mut ClusterConfig) -> Result<(), StoreError>,
    ) -> Result<ClusterEntry, StoreError> {
        let mut state = self.state.lock().unwrap();
        let (config, dynamic, version) = state
            .clusters
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("no cluster {name:?}")))?;
        if !dynamic {
            return Err(StoreError::Immutable(format!("cluster {name:?} is static")));
        }
        if let Some(tag) = if_match
            && tag != format!("v{version}")
        {
            return Err(StoreError::Conflict("If-Match does not match".into()));
        }
        let mut new = config.clone();
        edit(&mut new)?;
        state.version += 1;
        let v = state.version;
        state.clusters.insert(name.to_owned(), (new, true, v));
        match self.commit(&mut state, name) {
            Ok(e) => Ok(e),
            Err(e) => {
                state
                    .clusters
                    .insert(name.to_owned(), (config, true, version));
                Err(e)
            }
        }
    }

    /// Deletes a dynamic cluster.
    pub fn delete(&self, name: &str, if_match: Option<&str>) -> Result<(), StoreError> {
        let mut state = self.state.lock().unwrap();
        let (_, dynamic, version) = state
            .clusters
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("no cluster {name:?}")))?;
        if !dynamic {
            return Err(StoreError::Immutable(format!("cluster {name:?} is static")));
        }
        if let Some(tag) = if_match
            && tag != format!("v{version}")
        {
            return Err(StoreError::Conflict("If-Match does not match".into()));
        }
        state.clusters.remove(name);
        let snapshot = build(&state).map_err(StoreError::Invalid)?;
        self.registry.store(snapshot);
        Ok(())
    }

    /// Enables or disables a cluster.
    pub fn set_cluster_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<ClusterEntry, StoreError> {
        let e = self
            .get(name)
            .ok_or_else(|| StoreError::NotFound(format!("no cluster {name:?}")))?;
        e.live.set_enabled(enabled);
        let mut state = self.state.lock().unwrap();
        if let Some(c) = state.clusters.get_mut(name) {
            c.0.enabled = enabled;
        }
        Ok(self.entry(&state, name).expect("present"))
    }

    /// Enables or disables a backend.
    pub fn set_backend_enabled(
        &self,
        cluster: &str,
        backend: &str,
        enabled: bool,
    ) -> Result<ClusterEntry, StoreError> {
        let e = self
            .get(cluster)
            .ok_or_else(|| StoreError::NotFound(format!("no cluster {cluster:?}")))?;
        if !e.live.set_backend_enabled(backend, enabled) {
            return Err(StoreError::NotFound(format!("no backend {backend:?}")));
        }
        let mut state = self.state.lock().unwrap();
        if let Some(c) = state.clusters.get_mut(cluster)
            && let Some(b) = c.0.backends.iter_mut().find(|b| b.name == backend)
        {
            b.enabled = enabled;
        }
        Ok(self.entry(&state, cluster).expect("present"))
    }

    /// The last reload error.
    pub fn last_reload_error(&self) -> Option<ReloadError> {
        None
    }
}

fn build(state: &State) -> Result<Snapshot, ConfigError> {
    let config = ProxyConfig {
        clusters: state
            .clusters
            .iter()
            .map(|(n, (c, _, _))| (n.clone(), c.clone()))
            .collect(),
        routes: Vec::new(),
    };
    Snapshot::build(&config)
}
