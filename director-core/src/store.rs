//! The cluster store: where clusters come from, how they change at runtime, and how changes
//! survive a restart.
//!
//! Two kinds of clusters live side by side:
//!
//! - **static** clusters come from the main config file. At runtime they may only be enabled or
//!   disabled (and their backends too); those switches are not written anywhere, and the file
//!   stays the operator's.
//! - **dynamic** clusters live one TOML file each in the cluster directory (x0's
//!   `director.load` files). Everything about them can change at runtime, including creating
//!   and deleting them. Each dynamic cluster is also reachable by `Host: <name>` (x0's rewrite
//!   answered a create with `Location: http://<name>/`).
//! - **file-bound** dynamic clusters ([`Store::with_cluster_files`]; `[server] cluster-files`)
//!   are dynamic clusters whose file is named one by one, anywhere on disk, as x0's
//!   `director.load(name => path)` did. They change like any dynamic cluster and are written to
//!   their own file the same way; they cannot be created or deleted at runtime (the config names
//!   them, so they always exist).
//!
//! Every change goes the same way: edit a copy of the config, build a new snapshot against the
//! live one (validation; nothing live is touched yet, see [`Prepared`]), write the cluster's file
//! atomically (temp file, fsync, rename, fsync the directory), and only then make the snapshot
//! live. A refused change or a failed write leaves both the file and the live state as they
//! were. Writers are serialised by one mutex; requests never see it (they read the registry's
//! snapshot).
//!
//! ```
//! use std::{collections::BTreeMap, sync::Arc};
//! use director_core::{config::ProxyConfig, store::{Store, Plain}};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::new(ProxyConfig::default(), BTreeMap::new(), Some(dir.path().into()),
//!     Arc::new(Plain)).unwrap();
//! let config = toml::from_str("backends = [{ name = \"a\", url = \"http://127.0.0.1:9\" }]").unwrap();
//! store.create("shop", config).unwrap();
//! assert!(dir.path().join("shop.toml").exists());
//! assert_eq!(store.get("shop").unwrap().live.backends().len(), 1);
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    io::Write as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use crate::{
    backend::AdminState,
    cluster::Cluster,
    config::{ClusterConfig, ConfigError, ProxyConfig, RouteConfig},
    registry::{FrontFactory, HttpOnly, NoFronts, Prepared, Registry, Snapshot, TransportFactory},
};

/// What the embedding application plugs into builds: transports and fronts, extra checks, and
/// a hook after each swap (to start and stop health monitors, say).
pub trait Assembly: Send + Sync {
    /// Builds FastCGI (and other) transports.
    fn transports(&self) -> &dyn TransportFactory;
    /// Starts one build's fronts (the services in front of clusters, such as caches that
    /// should outlive a rebuild); committed only if the build goes live.
    fn stage(&self) -> Box<dyn Stage + '_>;
    /// Checks a cluster's config beyond what a build checks.
    fn check(&self, _name: &str, _cluster: &ClusterConfig) -> Result<(), ConfigError> {
        Ok(())
    }
    /// Called after `snapshot` went live (with `config`, the whole config it was built from).
    fn swapped(&self, _snapshot: &Arc<Snapshot>, _config: &ProxyConfig) {}
}

/// The fronts of one build, staged until the build goes live.
pub trait Stage {
    /// The factory the build uses.
    fn fronts(&self) -> &dyn FrontFactory;
    /// The build went live: make its fronts the current ones.
    fn commit(self: Box<Self>);
}

impl Stage for NoFronts {
    fn fronts(&self) -> &dyn FrontFactory {
        self
    }
    fn commit(self: Box<Self>) {}
}

/// HTTP backends only, no fronts, no hooks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Assembly for Plain {
    fn transports(&self) -> &dyn TransportFactory {
        &HttpOnly
    }
    fn stage(&self) -> Box<dyn Stage + '_> {
        Box::new(NoFronts)
    }
}

/// Why the store refused a change. Nothing changed, in memory or on disk.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such cluster, backend or bucket.
    #[error("not found: {0}")]
    NotFound(String),
    /// A static cluster (from the main config) allows only enable and disable.
    #[error("cluster {0:?} comes from the main config file and can only be enabled or disabled")]
    Immutable(String),
    /// The change conflicts with the current state (a name taken, an outdated `If-Match`).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The resulting config is invalid.
    #[error("{}: {}", .0.path, .0.message)]
    Invalid(ConfigError),
    /// The change is not allowed (a terminate-protected backend, no cluster directory).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The cluster file could not be written.
    #[error("cannot write {}: {source}", .file.display())]
    Persist {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The last reload that was refused.
#[derive(Clone, Debug, PartialEq)]
pub struct ReloadError {
    /// When.
    pub at: SystemTime,
    /// What was wrong (file, line and key where known).
    pub message: String,
}

/// One cluster as the store sees it.
#[derive(Clone, Debug)]
pub struct ClusterEntry {
    /// Its name.
    pub name: String,
    /// Its config (static clusters: as the main file has it).
    pub config: ClusterConfig,
    /// Whether it lives in the cluster directory or a file of its own (and so can be changed).
    pub dynamic: bool,
    /// Changes with every change of its config; for `If-Match`.
    pub etag: String,
    /// The live cluster.
    pub live: Arc<Cluster>,
}

/// The clusters, their files, and the live registry built from them.
pub struct Store {
    registry: Arc<Registry>,
    dir: Option<PathBuf>,
    // Dynamic clusters with a file of their own (outside `dir`), by name.
    files: BTreeMap<String, PathBuf>,
    assembly: Arc<dyn Assembly>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    main: ProxyConfig,
    dynamic: BTreeMap<String, ClusterConfig>,
    // Runtime switches of static clusters and their backends (dynamic ones are persisted).
    cluster_enabled: HashMap<String, bool>,
    backend_enabled: HashMap<(String, String), bool>,
    last_error: Option<ReloadError>,
}

impl State {
    fn merged(&self) -> Result<ProxyConfig, ConfigError> {
        merge(&self.main, &self.dynamic)
    }
}

/// The main config with the dynamic clusters added, each also routed by `Host: <name>`.
pub fn merge(
    main: &ProxyConfig,
    dynamic: &BTreeMap<String, ClusterConfig>,
) -> Result<ProxyConfig, ConfigError> {
    {
        let mut config = main.clone();
        for (name, cluster) in dynamic {
            check_name(name, "cluster")
                .map_err(|message| ConfigError::new(format!("clusters.{name}"), message))?;
            if config.clusters.contains_key(name) {
                return Err(ConfigError::new(
                    format!("clusters.{name}"),
                    "a dynamic cluster has the name of a cluster in the main config",
                ));
            }
            config.clusters.insert(name.clone(), cluster.clone());
            config.routes.push(RouteConfig {
                host: Some(name.clone()),
                cluster: Some(name.clone()),
                ..RouteConfig::default()
            });
        }
        Ok(config)
    }
}

impl Store {
    /// A store serving `main`'s clusters and routes plus the `dynamic` clusters (read from
    /// `dir`, where changes to them are written).
    pub fn new(
        main: ProxyConfig,
        dynamic: BTreeMap<String, ClusterConfig>,
        dir: Option<PathBuf>,
        assembly: Arc<dyn Assembly>,
    ) -> Result<Store, ConfigError> {
        let state = State {
            main,
            dynamic,
            ..State::default()
        };
        let config = state.merged()?;
        check_all(&*assembly, &config)?;
        let stage = assembly.stage();
        let prepared = Snapshot::prepare(&config, assembly.transports(), stage.fronts(), None)?;
        stage.commit();
        let registry = Arc::new(Registry::new(prepared.into_snapshot()));
        assembly.swapped(&registry.load_full(), &config);
        // Nothing writes yet: whatever temp file is there was left by an earlier process.
        if let Some(dir) = &dir {
            remove_temp_files(dir);
        }
        Ok(Store {
            registry,
            dir,
            files: BTreeMap::new(),
            assembly,
            state: Mutex::new(state),
        })
    }

    /// The live registry (what requests read).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The cluster directory, if there is one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Binds dynamic clusters to files of their own (`name → file`, absolute paths): changes to
    /// such a cluster are written to its file rather than to the cluster directory, and it cannot
    /// be deleted at runtime. Each name must be one of the dynamic clusters the store was built
    /// with. A file that does not exist yet is written now (x0's `director.load` created it), so
    /// it is there to edit; temp files an interrupted write left beside them are removed.
    pub fn with_cluster_files(
        mut self,
        files: BTreeMap<String, PathBuf>,
    ) -> Result<Store, StoreError> {
        for dir in file_dirs(&files) {
            remove_temp_files(dir);
        }
        {
            let state = self.lock();
            for (name, file) in &files {
                let Some(config) = state.dynamic.get(name) else {
                    return Err(StoreError::NotFound(format!(
                        "cluster {name:?} of {} was not loaded",
                        file.display()
                    )));
                };
                if !file.exists() {
                    write_cluster(file, name, config)?;
                    tracing::info!(cluster = %name, file = %file.display(), "created the cluster's file");
                }
            }
        }
        self.files = files;
        Ok(self)
    }

    /// The file a dynamic cluster named `name` is (or would be) written to: its own from
    /// [`Store::with_cluster_files`], else `NAME.toml` in the cluster directory.
    pub fn file_of(&self, name: &str) -> Option<PathBuf> {
        match self.files.get(name) {
            Some(file) => Some(file.clone()),
            None => self.dir.as_deref().map(|d| cluster_file(d, name)),
        }
    }

    /// Every cluster, by name.
    pub fn list(&self) -> Vec<ClusterEntry> {
        let state = self.lock();
        let snapshot = self.registry.load();
        let mut names: Vec<&String> = state
            .main
            .clusters
            .keys()
            .chain(state.dynamic.keys())
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| entry(&state, &snapshot, name))
            .collect()
    }

    /// One cluster.
    pub fn get(&self, name: &str) -> Option<ClusterEntry> {
        let state = self.lock();
        entry(&state, &self.registry.load(), name)
    }

    /// Creates a dynamic cluster and writes its file.
    pub fn create(&self, name: &str, config: ClusterConfig) -> Result<ClusterEntry, StoreError> {
        let mut state = self.lock();
        let Some(dir) = &self.dir else {
            return Err(StoreError::Forbidden(
                "no cluster-dir is configured, so clusters cannot be created at runtime".into(),
            ));
        };
        check_name(name, "cluster")
            .map_err(|message| StoreError::Invalid(ConfigError::new("name", message)))?;
        if state.main.clusters.contains_key(name) || state.dynamic.contains_key(name) {
            return Err(StoreError::Conflict(format!(
                "a cluster named {name:?} exists"
            )));
        }
        if let Some(file) = self.files.get(name) {
            // Not loaded (the loader always loads it): a store built without it.
            return Err(StoreError::Conflict(format!(
                "cluster {name:?} is bound to {} by server.cluster-files",
                file.display()
            )));
        }
        let mut dynamic = state.dynamic.clone();
        dynamic.insert(name.to_owned(), config.clone());
        let file = cluster_file(dir, name);
        self.change(&mut state, dynamic, || write_cluster(&file, name, &config))?;
        Ok(entry(&state, &self.registry.load(), name).expect("just created"))
    }

    /// Edits a dynamic cluster: `edit` changes a copy of its config, which is then validated,
    /// written and applied. With `if_match`, refuses unless it is the cluster's current etag.
    pub fn update(
        &self,
        name: &str,
        if_match: Option<&str>,
        edit: impl FnOnce(&mut ClusterConfig) -> Result<(), StoreError>,
    ) -> Result<ClusterEntry, StoreError> {
        let mut state = self.lock();
        let config = self.dynamic_config(&state, name, if_match)?;
        let mut next = config.clone();
        edit(&mut next)?;
        if next == config {
            return Ok(entry(&state, &self.registry.load(), name).expect("exists"));
        }
        let mut dynamic = state.dynamic.clone();
        dynamic.insert(name.to_owned(), next.clone());
        let file = self
            .file_of(name)
            .expect("dynamic clusters have a dir or a file");
        self.change(&mut state, dynamic, || write_cluster(&file, name, &next))?;
        Ok(entry(&state, &self.registry.load(), name).expect("exists"))
    }

    /// Deletes a dynamic cluster and its file. Requests already in it finish.
    pub fn delete(&self, name: &str, if_match: Option<&str>) -> Result<(), StoreError> {
        let mut state = self.lock();
        self.dynamic_config(&state, name, if_match)?;
        if let Some(file) = self.files.get(name) {
            // Deleting the file would only have the next start create it again, empty.
            return Err(StoreError::Forbidden(format!(
                "cluster {name:?} is bound to {} by server.cluster-files; remove it there to \
                 delete it",
                file.display()
            )));
        }
        let mut dynamic = state.dynamic.clone();
        dynamic.remove(name);
        let dir = self.dir.clone().expect("dynamic clusters have a dir");
        let file = cluster_file(&dir, name);
        self.change(&mut state, dynamic, || {
            std::fs::remove_file(&file)
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })
                .and_then(|()| sync_dir(&dir))
                .map_err(|source| StoreError::Persist { file, source })
        })
    }

    /// Enables or disables a cluster: persisted for a dynamic cluster, a runtime switch for a
    /// static one.
    pub fn set_cluster_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<ClusterEntry, StoreError> {
        {
            let mut state = self.lock();
            if state.main.clusters.contains_key(name) {
                state.cluster_enabled.insert(name.to_owned(), enabled);
                if let Some(live) = self.registry.load().cluster(name) {
                    live.set_enabled(enabled);
                }
                return Ok(entry(&state, &self.registry.load(), name).expect("exists"));
            }
        }
        self.update(name, None, |c| {
            c.enabled = enabled;
            Ok(())
        })
    }

    /// Enables or disables a backend: persisted for a dynamic cluster, a runtime switch for a
    /// static one.
    pub fn set_backend_enabled(
        &self,
        cluster: &str,
        backend: &str,
        enabled: bool,
    ) -> Result<ClusterEntry, StoreError> {
        {
            let mut state = self.lock();
            if let Some(config) = state.main.clusters.get(cluster) {
                if !config.backends.iter().any(|b| b.name == backend) {
                    return Err(StoreError::NotFound(format!(
                        "cluster {cluster:?} has no backend {backend:?}"
                    )));
                }
                state
                    .backend_enabled
                    .insert((cluster.to_owned(), backend.to_owned()), enabled);
                if let Some(live) = self.registry.load().cluster(cluster) {
                    live.set_backend_enabled(backend, enabled);
                }
                return Ok(entry(&state, &self.registry.load(), cluster).expect("exists"));
            }
        }
        self.update_member(cluster, backend, |b| b.enabled = enabled)
    }

    /// Changes backend `backend` of dynamic cluster `cluster` in its config (persisted).
    fn update_member(
        &self,
        cluster: &str,
        backend: &str,
        change: impl FnOnce(&mut crate::config::BackendConfig),
    ) -> Result<ClusterEntry, StoreError> {
        self.update(cluster, None, |c| {
            let b = c
                .backends
                .iter_mut()
                .find(|b| b.name == backend)
                .ok_or_else(|| {
                    StoreError::NotFound(format!("cluster {cluster:?} has no backend {backend:?}"))
                })?;
            change(b);
            Ok(())
        })
    }

    /// Sets HAProxy's operator state of a backend: `Maint` disables it, `Ready` enables it,
    /// `Drain` keeps it enabled but gives it no new balanced requests; `Ready` and `Maint` end a
    /// drain. Persisted (`enabled`, `drain`) for a dynamic cluster, a runtime switch for a
    /// static one.
    pub fn set_backend_state(
        &self,
        cluster: &str,
        backend: &str,
        state: AdminState,
    ) -> Result<ClusterEntry, StoreError> {
        let (enabled, drain) = (state != AdminState::Maint, state == AdminState::Drain);
        if !self.lock().main.clusters.contains_key(cluster) {
            return self.update_member(cluster, backend, |b| {
                (b.enabled, b.drain) = (enabled, drain)
            });
        }
        let entry = self.set_backend_enabled(cluster, backend, enabled)?;
        if let Some(b) = entry.live.backend(backend) {
            b.set_soft_drain(drain);
            entry.live.refresh();
        }
        Ok(entry)
    }

    /// Replaces the whole config (a reload of the main file and the cluster directory). On
    /// error the running config stays, and the error is kept for [`Store::last_reload_error`].
    pub fn reload(
        &self,
        main: ProxyConfig,
        dynamic: BTreeMap<String, ClusterConfig>,
    ) -> Result<(), ConfigError> {
        let mut state = self.lock();
        // Under the lock no write of ours is in progress, so every temp file is a leftover.
        for dir in self
            .dir
            .iter()
            .map(PathBuf::as_path)
            .chain(file_dirs(&self.files))
        {
            remove_temp_files(dir);
        }
        let unchanged = state.main == main && state.dynamic == dynamic;
        if unchanged {
            state.last_error = None;
            return Ok(());
        }
        let old_main = std::mem::replace(&mut state.main, main);
        let result = self
            .change(&mut state, dynamic, || Ok(()))
            .map_err(|e| match e {
                StoreError::Invalid(e) => e,
                other => ConfigError::new("(reload)", other.to_string()),
            });
        match result {
            Ok(()) => {
                state.last_error = None;
                let State {
                    main,
                    cluster_enabled,
                    ..
                } = &mut *state;
                cluster_enabled.retain(|name, _| main.clusters.contains_key(name));
                Ok(())
            }
            Err(e) => {
                state.main = old_main;
                state.last_error = Some(ReloadError {
                    at: SystemTime::now(),
                    message: format!("{}: {}", e.path, e.message),
                });
                Err(e)
            }
        }
    }

    /// Records a reload refused before it reached the store (a file that does not parse).
    pub fn reload_failed(&self, message: String) {
        self.lock().last_error = Some(ReloadError {
            at: SystemTime::now(),
            message,
        });
    }

    /// The last refused reload, until a reload succeeds.
    pub fn last_reload_error(&self) -> Option<ReloadError> {
        self.lock().last_error.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state as it was before the change (changes
        // are assembled on copies), so the poison can be ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dynamic_config(
        &self,
        state: &State,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<ClusterConfig, StoreError> {
        let config = match state.dynamic.get(name) {
            Some(c) => c,
            None if state.main.clusters.contains_key(name) => {
                return Err(StoreError::Immutable(name.to_owned()));
            }
            None => return Err(StoreError::NotFound(format!("no cluster named {name:?}"))),
        };
        if let Some(expected) = if_match {
            let current = etag(config);
            if expected.trim() != "*" && expected.trim() != current {
                return Err(StoreError::Conflict(format!(
                    "cluster {name:?} changed: its ETag is {current}, not {expected}"
                )));
            }
        }
        Ok(config.clone())
    }

    /// Builds `dynamic` with the current main config, runs `persist`, and makes it live; any
    /// failure before the swap changes nothing.
    fn change(
        &self,
        state: &mut State,
        dynamic: BTreeMap<String, ClusterConfig>,
        persist: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let next = State {
            main: state.main.clone(),
            dynamic,
            ..State::default()
        };
        let config = next.merged().map_err(StoreError::Invalid)?;
        check_all(&*self.assembly, &config).map_err(StoreError::Invalid)?;
        let live = self.registry.load_full();
        let stage = self.assembly.stage();
        let prepared = Snapshot::prepare(
            &config,
            self.assembly.transports(),
            stage.fronts(),
            Some(&live),
        )
        .map_err(StoreError::Invalid)?;
        persist()?;
        stage.commit();
        state.dynamic = next.dynamic;
        self.commit(state, prepared, &live, &config);
        Ok(())
    }

    fn commit(&self, state: &State, prepared: Prepared, old: &Snapshot, config: &ProxyConfig) {
        let snapshot = prepared.commit(&self.registry);
        // Runtime switches of static clusters carry over to objects the build made anew.
        for (name, &enabled) in &state.cluster_enabled {
            if let Some(live) = snapshot.cluster(name)
                && old.cluster(name).is_none_or(|o| !Arc::ptr_eq(o, live))
            {
                live.set_enabled(enabled);
            }
        }
        for ((cluster, backend), &enabled) in &state.backend_enabled {
            let Some(live) = snapshot.cluster(cluster) else {
                continue;
            };
            let Some(b) = live.backend(backend) else {
                continue;
            };
            let was = old.cluster(cluster).and_then(|c| c.backend(backend));
            if was.is_none_or(|w| !Arc::ptr_eq(&w, &b)) {
                live.set_backend_enabled(backend, enabled);
            }
        }
        self.assembly.swapped(&snapshot, config);
    }
}

fn check_all(assembly: &dyn Assembly, config: &ProxyConfig) -> Result<(), ConfigError> {
    for (name, cluster) in &config.clusters {
        assembly.check(name, cluster)?;
    }
    Ok(())
}

fn entry(state: &State, snapshot: &Snapshot, name: &str) -> Option<ClusterEntry> {
    let (config, dynamic) = match state.dynamic.get(name) {
        Some(c) => (c, true),
        None => (state.main.clusters.get(name)?, false),
    };
    Some(ClusterEntry {
        name: name.to_owned(),
        etag: etag(config),
        config: config.clone(),
        dynamic,
        live: snapshot.cluster(name)?.clone(),
    })
}

/// The ETag of a cluster config: a hash of its canonical TOML.
pub fn etag(config: &ClusterConfig) -> String {
    let text = toml::to_string(config).unwrap_or_default();
    format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

/// The longest cluster, backend or bucket name, in bytes. Cluster names become file names
/// (`NAME.toml`, at most 255 bytes on common file systems) and `Host` values; 128 leaves room
/// and is longer than any name a person types.
pub const MAX_NAME_LEN: usize = 128;

/// Checks a cluster, backend or bucket name (`what` says which, for the message): 1 to
/// [`MAX_NAME_LEN`] bytes of ASCII letters, digits, `-`, `_` and `.`, not starting with `.` or
/// `-`. A dynamic cluster's name is its file's name: a leading dot would hide the file from the
/// cluster-dir loader (`.`, `..`, `.hidden`), a leading `-` reads as an option to shell tools,
/// and `/`, NUL or control characters cannot be (or should not be) in a file name. The API, the
/// store and the cluster-dir loader all use this one check.
pub fn check_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("a {what} name is not empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "a {what} name is at most {MAX_NAME_LEN} bytes (this one has {})",
            name.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "a {what} name uses letters, digits, '-', '_' and '.' only"
        ));
    }
    if name.starts_with(['.', '-']) {
        return Err(format!("a {what} name does not start with '.' or '-'"));
    }
    Ok(())
}

/// The prefix and suffix of [`write_atomically`]'s temp files.
const TEMP_PREFIX: &str = ".director-";
const TEMP_SUFFIX: &str = ".tmp";

/// Removes the temp files an atomic write left in `dir` when the process died between creating
/// and renaming them (they are never read, only in the way). Call only while no write to `dir`
/// is in progress (the store does so under its lock). Returns the files removed.
pub fn remove_temp_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let temp = name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX);
        if !(temp && entry.file_type().is_ok_and(|t| t.is_file())) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::warn!(file = %path.display(), "removed a temp file left by an interrupted write");
                removed.push(path);
            }
            Err(err) => {
                tracing::warn!(file = %path.display(), error = %err, "cannot remove a leftover temp file");
            }
        }
    }
    removed
}

/// The directories of `files`, each once.
fn file_dirs(files: &BTreeMap<String, PathBuf>) -> impl Iterator<Item = &Path> {
    let dirs: std::collections::BTreeSet<&Path> =
        files.values().filter_map(|f| f.parent()).collect();
    dirs.into_iter()
}

/// The file of dynamic cluster `name` in `dir`.
pub fn cluster_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.toml"))
}

/// The text of a dynamic cluster's file.
pub fn cluster_text(name: &str, config: &ClusterConfig) -> String {
    let body = toml::to_string_pretty(config).expect("a cluster config serializes to TOML");
    format!(
        "# Director cluster {name:?}: written by Director when it changes at runtime.\n\
         # Edit it by hand only while Director is stopped, or it reloads your edit.\n\n{body}"
    )
}

fn write_cluster(file: &Path, name: &str, config: &ClusterConfig) -> Result<(), StoreError> {
    write_atomically(file, cluster_text(name, config).as_bytes()).map_err(|source| {
        StoreError::Persist {
            file: file.to_owned(),
            source,
        }
    })
}

/// Replaces `file` with `contents` so that a crash at any point leaves either the old or the
/// new file: temp file in the same directory, fsync, rename over, fsync the directory.
pub fn write_atomically(file: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(file).map_err(|e| e.error)?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
