//! The registry: the live clusters and routes, swapped as one immutable snapshot.
//!
//! A request loads the current [`Snapshot`] once (an `ArcSwap` load, no lock) and routes with it.
//! A new config builds a whole new snapshot, validated before it is stored, so a request never
//! sees half of a change.

use std::{collections::BTreeMap, sync::Arc};

use arc_swap::{ArcSwap, Guard};

use crate::{
    addr::{BackendAddr, BackendUrl, Protocol},
    backend::{Backend, BackendTransport},
    cluster::{Cluster, ClusterSettings},
    config::{
        BackendConfig, BucketConfig, ClusterConfig, ConfigError, FastCgiSettings, ProxyConfig,
        UpstreamSettings,
    },
    directors::{Healthy, ShardParams},
    key::HashKey,
    route::{Classify, HostPattern, Route, RouteTable, Target},
    shaper::{ROOT, Shaper, ShaperMode},
    transport::{Transport, TransportOptions},
};

/// Builds the transports `director-core` does not have itself (FastCGI), so the core needs no
/// dependency on the crates that implement them.
pub trait TransportFactory {
    /// A FastCGI transport to `addr`, or why it cannot be built.
    fn fastcgi(
        &self,
        addr: &BackendAddr,
        opts: &TransportOptions,
        settings: &FastCgiSettings,
    ) -> Result<Arc<dyn Transport>, String>;
}

/// A service the embedding application puts in front of a cluster (an object cache, say). It
/// receives the cluster's requests with their [`crate::cluster::Dispatch`] as an extension, and
/// should end in a [`crate::cluster::ClusterService`].
pub type ClusterFront = tower::util::BoxCloneSyncService<
    http::Request<crate::body::Body>,
    http::Response<crate::body::Body>,
    crate::error::ProxyError,
>;

/// Builds fronts for clusters whose config asks for one.
pub trait FrontFactory {
    /// The front of `cluster`, if its config (`settings`) asks for one, or why it cannot be built.
    fn front(
        &self,
        cluster: &Arc<Cluster>,
        settings: &crate::config::ClusterConfig,
    ) -> Result<Option<ClusterFront>, String>;
}

/// No fronts.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFronts;

impl FrontFactory for NoFronts {
    fn front(
        &self,
        _: &Arc<Cluster>,
        settings: &crate::config::ClusterConfig,
    ) -> Result<Option<ClusterFront>, String> {
        match &settings.cache {
            Some(c) if c.enabled => Err("a cache needs a build with director-cache".into()),
            _ => Ok(None),
        }
    }
}

/// The factory of a build without FastCGI: refuses FastCGI backends.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpOnly;

impl TransportFactory for HttpOnly {
    fn fastcgi(
        &self,
        _: &BackendAddr,
        _: &TransportOptions,
        _: &FastCgiSettings,
    ) -> Result<Arc<dyn Transport>, String> {
        Err("FastCGI backends are not supported by this build; use http:// or unix:".into())
    }
}

/// Clusters and routes as of one config.
#[derive(Debug, Default)]
pub struct Snapshot {
    clusters: BTreeMap<Arc<str>, Arc<Cluster>>,
    // The config each cluster was built from, so the next build can tell what changed.
    configs: BTreeMap<Arc<str>, ClusterConfig>,
    routes: RouteTable,
}

/// A change to live objects that a build decided on, made only when the build is committed.
type Action = Box<dyn FnOnce() + Send>;

/// A snapshot built against the current one, not yet live.
///
/// Building never touches live objects: clusters and backends whose config did not change are
/// reused as they are (queues, counters, in-flight requests and health carry over), and the
/// changes to reused ones (a capacity, a weight, a member added or drained) wait here until
/// [`Prepared::commit`]. A build that fails therefore changes nothing.
pub struct Prepared {
    snapshot: Snapshot,
    actions: Vec<Action>,
    retired: Vec<Arc<Cluster>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("snapshot", &self.snapshot)
            .field("actions", &self.actions.len())
            .field("retired", &self.retired.len())
            .finish()
    }
}

impl Prepared {
    /// The snapshot that [`Prepared::commit`] will make live.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Applies the pending changes to reused objects and makes the snapshot live. Clusters that
    /// were replaced keep serving the requests already queued in them: a task (when called
    /// inside a Tokio runtime) keeps dispatching their queues until they are empty.
    pub fn commit(self, registry: &Registry) -> Arc<Snapshot> {
        for action in self.actions {
            action();
        }
        for cluster in self.snapshot.clusters.values() {
            cluster.refresh();
        }
        let snapshot = Arc::new(self.snapshot);
        registry.current.store(snapshot.clone());
        for old in self.retired {
            retire(old);
        }
        snapshot
    }

    /// The snapshot, for a first build that has no live objects to change.
    pub fn into_snapshot(self) -> Snapshot {
        for action in self.actions {
            action();
        }
        self.snapshot
    }
}

/// Lets a replaced cluster's queued requests through as capacity frees up (its backends may be
/// shared with the cluster that replaced it, so their releases wake the new one, not this).
fn retire(old: Arc<Cluster>) {
    if old.waiting() == 0 {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let deadline = tokio::time::Instant::now() + old.settings().queue_timeout;
        while old.waiting() > 0 && tokio::time::Instant::now() < deadline {
            old.refresh();
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
}

impl Snapshot {
    /// Builds live clusters and routes from `config` (HTTP backends only), or names the first
    /// key that is wrong.
    pub fn build(config: &ProxyConfig) -> Result<Snapshot, ConfigError> {
        Self::build_with(config, &HttpOnly)
    }

    /// Like [`Snapshot::build`], with `factory` building FastCGI transports.
    pub fn build_with(
        config: &ProxyConfig,
        factory: &dyn TransportFactory,
    ) -> Result<Snapshot, ConfigError> {
        Self::build_full(config, factory, &NoFronts)
    }

    /// Like [`Snapshot::build_with`], with `fronts` building the services in front of
    /// clusters (such as an object cache).
    pub fn build_full(
        config: &ProxyConfig,
        factory: &dyn TransportFactory,
        fronts: &dyn FrontFactory,
    ) -> Result<Snapshot, ConfigError> {
        Self::prepare(config, factory, fronts, None).map(Prepared::into_snapshot)
    }

    /// Builds the snapshot of `config` against `previous` (the live one), reusing what did not
    /// change; see [`Prepared`].
    pub fn prepare(
        config: &ProxyConfig,
        factory: &dyn TransportFactory,
        fronts: &dyn FrontFactory,
        previous: Option<&Snapshot>,
    ) -> Result<Prepared, ConfigError> {
        let mut actions: Vec<Action> = Vec::new();
        let mut clusters: BTreeMap<Arc<str>, Arc<Cluster>> = BTreeMap::new();
        // Nested clusters (`cluster:NAME` members) are built before the clusters using them.
        let mut pending: Vec<(&String, &crate::config::ClusterConfig)> =
            config.clusters.iter().collect();
        while !pending.is_empty() {
            let before = pending.len();
            let mut rest = Vec::new();
            for (name, cluster) in pending {
                let waits = cluster.backends.iter().any(|b| {
                    b.url.strip_prefix("cluster:").is_some_and(|n| {
                        !clusters.contains_key(n) && config.clusters.contains_key(n)
                    })
                });
                if waits {
                    rest.push((name, cluster));
                    continue;
                }
                let old = previous.and_then(|p| {
                    Some((
                        p.clusters.get(name.as_str())?,
                        p.configs.get(name.as_str())?,
                        p,
                    ))
                });
                let built = build_cluster(name, cluster, factory, &clusters, old, &mut actions)?;
                clusters.insert(Arc::<str>::from(name.as_str()), built);
            }
            if rest.len() == before {
                let (name, _) = rest[0];
                return Err(ConfigError::new(
                    format!("clusters.{name}.backends"),
                    "clusters nest in a cycle",
                ));
            }
            pending = rest;
        }

        let mut routes = Vec::with_capacity(config.routes.len());
        for (i, route) in config.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            let host = HostPattern::parse(route.host.as_deref().unwrap_or("*"))
                .map_err(|m| ConfigError::new(format!("{at}.host"), m))?;
            let path = route.path.clone().unwrap_or_else(|| "/".to_owned());
            if !path.starts_with('/') {
                return Err(ConfigError::new(
                    format!("{at}.path"),
                    "a path prefix starts with '/'",
                ));
            }
            // Requests are matched by their normalised path: a prefix in any other spelling
            // would never match (or match only with `normalize-path = false`).
            match crate::normalize::normalize_path(&path) {
                Ok(normal) if normal == path => {}
                Ok(normal) => {
                    return Err(ConfigError::new(
                        format!("{at}.path"),
                        format!("write the path prefix in its normal form: {normal:?}"),
                    ));
                }
                Err(err) => {
                    return Err(ConfigError::new(format!("{at}.path"), err.describe()));
                }
            }
            let target = match (&route.cluster, &route.backend) {
                _ if route.deny => {
                    let routed = route.cluster.is_some()
                        || route.backend.is_some()
                        || route.fastcgi.is_some()
                        || route.sendfile.is_some();
                    if routed {
                        return Err(ConfigError::new(
                            at,
                            "a `deny` route sends nothing anywhere: it takes no `cluster`, \
                             `backend`, `fastcgi` or `sendfile`",
                        ));
                    }
                    Target::Deny
                }
                (Some(name), None) => {
                    if route.sendfile.is_some() {
                        return Err(ConfigError::new(
                            format!("{at}.sendfile"),
                            format!(
                                "a cluster route serves X-Sendfile by its cluster's \
                                 [clusters.{name}.sendfile]"
                            ),
                        ));
                    }
                    let cluster = clusters.get(name.as_str()).ok_or_else(|| {
                        ConfigError::new(
                            format!("{at}.cluster"),
                            format!("no cluster named {name:?}"),
                        )
                    })?;
                    let settings = &config.clusters[name.as_str()];
                    match fronts
                        .front(cluster, settings)
                        .map_err(|m| ConfigError::new(format!("clusters.{name}.cache"), m))?
                    {
                        Some(front) => Target::Front(cluster.clone(), front),
                        // X-Sendfile lives in the cluster's service (see `ClusterService`).
                        None if cluster.sendfile().is_some() => Target::Front(
                            cluster.clone(),
                            ClusterFront::new(crate::cluster::ClusterService::new(cluster.clone())),
                        ),
                        None => Target::Cluster(cluster.clone()),
                    }
                }
                (None, Some(url)) => {
                    let parsed = parse_url(url, &format!("{at}.backend"))?;
                    let opts = transport_options(&route.upstream(), &at, road_warrior_defaults())?;
                    let transport = transport(
                        factory,
                        &parsed,
                        opts,
                        route.fastcgi.as_ref(),
                        &format!("{at}.backend"),
                        &format!("{at}.fastcgi"),
                    )?;
                    let sendfile = match &route.sendfile {
                        Some(s) => Some(Arc::new(crate::sendfile::SendfilePolicy::new(
                            &at,
                            s,
                            &format!("{at}.sendfile"),
                        )?)),
                        None => None,
                    };
                    Target::Direct(
                        Arc::new(Backend::with_transport(url.as_str(), parsed, transport)),
                        sendfile,
                    )
                }
                _ => {
                    return Err(ConfigError::new(
                        at,
                        "a route names either a `cluster` or a `backend` (or sets `deny`), \
                         exactly one of them",
                    ));
                }
            };
            let header =
                |v: &Option<String>, key: &str| -> Result<Option<http::HeaderName>, ConfigError> {
                    v.as_deref()
                        .map(|h| {
                            http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                                ConfigError::new(format!("{at}.{key}"), "not a valid header name")
                            })
                        })
                        .transpose()
                };
            let classify = Classify {
                bucket: route.bucket.clone(),
                bucket_header: header(&route.bucket_header, "bucket-header")?,
                bucket_cookie: route.bucket_cookie.clone(),
                pin_cookie: route.pin_cookie.clone(),
                pin_header: header(&route.pin_header, "pin-header")?,
                pin_query: route.pin_query.clone(),
            };
            if let (Target::Cluster(c) | Target::Front(c, _), Some(bucket)) =
                (&target, &route.bucket)
                && c.shaper().find(bucket).is_none()
            {
                return Err(ConfigError::new(
                    format!("{at}.bucket"),
                    format!("cluster {:?} has no bucket named {bucket:?}", &**c.name()),
                ));
            }
            let files = crate::files::FilesPolicy::new(route, &at)?.map(Arc::new);
            routes.push(Route {
                host,
                path,
                target,
                classify,
                max_request_body: route.max_request_body,
                files,
            });
        }
        let retired = previous
            .map(|p| {
                p.clusters
                    .iter()
                    .filter(|(name, old)| {
                        clusters.get(*name).is_none_or(|new| !Arc::ptr_eq(old, new))
                    })
                    .map(|(_, old)| old.clone())
                    .collect()
            })
            .unwrap_or_default();
        let configs = config
            .clusters
            .iter()
            .map(|(name, c)| (Arc::<str>::from(name.as_str()), c.clone()))
            .collect();
        Ok(Prepared {
            snapshot: Snapshot {
                clusters,
                configs,
                routes: RouteTable::new(routes),
            },
            actions,
            retired,
        })
    }

    /// The config a cluster was built from.
    pub fn cluster_config(&self, name: &str) -> Option<&ClusterConfig> {
        self.configs.get(name)
    }

    /// A cluster by name.
    pub fn cluster(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.clusters.get(name)
    }

    /// All clusters, by name.
    pub fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.clusters.values()
    }

    /// The routes.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }
}

/// The cluster a build may reuse: the live one, the config it was built from, and the snapshot
/// it belongs to.
type Old<'a> = (&'a Arc<Cluster>, &'a ClusterConfig, &'a Snapshot);

/// Builds one cluster; clusters it nests are already in `built`. With `old`, unchanged parts
/// are reused and the changes to them are pushed onto `actions` (see [`Prepared`]).
fn build_cluster(
    name: &str,
    cluster: &ClusterConfig,
    factory: &dyn TransportFactory,
    built: &BTreeMap<Arc<str>, Arc<Cluster>>,
    old: Option<Old<'_>>,
    actions: &mut Vec<Action>,
) -> Result<Arc<Cluster>, ConfigError> {
    let at = format!("clusters.{name}");
    if !valid_name(name) {
        return Err(ConfigError::new(
            at,
            "a cluster name uses letters, digits, '-', '_' and '.' only",
        ));
    }
    let opts = transport_options(
        &cluster.upstream(),
        &at,
        TransportOptions {
            on_client_abort: cluster.on_client_abort,
            ..TransportOptions::default()
        },
    )?;
    let mut backends: Vec<Arc<Backend>> = Vec::with_capacity(cluster.backends.len());
    // Members carried over from `old` with their config then and now; and whether a member
    // could not be carried over although its name is still live there (its address changed).
    let mut reused: Vec<(Arc<Backend>, BackendConfig, BackendConfig)> = Vec::new();
    let mut replaced = false;
    for (i, backend) in cluster.backends.iter().enumerate() {
        let at = format!("{at}.backends[{i}]");
        if !valid_name(&backend.name) {
            return Err(ConfigError::new(
                format!("{at}.name"),
                "a backend name uses letters, digits, '-', '_' and '.' only",
            ));
        }
        if backends.iter().any(|b| **b.name() == *backend.name) {
            return Err(ConfigError::new(
                format!("{at}.name"),
                format!(
                    "backend {:?} appears twice in cluster {name:?}",
                    backend.name
                ),
            ));
        }
        let url = parse_url(&backend.url, &format!("{at}.url"))?;
        let nested = match &url.addr {
            BackendAddr::Cluster(inner) => Some(built.get(&**inner).cloned().ok_or_else(|| {
                ConfigError::new(format!("{at}.url"), format!("no cluster named {inner:?}"))
            })?),
            _ => None,
        };
        if let Some((old_cluster, old_config, old_snapshot)) = old
            && let Some(live) = old_cluster.backend(&backend.name)
        {
            let same_transport = old_config.upstream() == cluster.upstream()
                && old_config.fastcgi == cluster.fastcgi
                && old_config.on_client_abort == cluster.on_client_abort;
            let same_nest = nested.as_ref().is_none_or(|inner| {
                old_snapshot
                    .clusters
                    .get(inner.name())
                    .is_some_and(|o| Arc::ptr_eq(o, inner))
            });
            let was = old_config.backends.iter().find(|b| b.name == backend.name);
            match was {
                Some(was)
                    if was.url == backend.url
                        && same_transport
                        && same_nest
                        && !live.is_draining() =>
                {
                    backends.push(live.clone());
                    reused.push((live, was.clone(), backend.clone()));
                    continue;
                }
                _ => replaced = true,
            }
        }
        let transport = match &nested {
            Some(inner) => {
                BackendTransport::Custom(Arc::new(crate::cluster::Nested::new(inner.clone())))
            }
            None => transport(
                factory,
                &url,
                opts,
                cluster.fastcgi.as_ref(),
                &format!("{at}.url"),
                &format!("clusters.{name}.fastcgi"),
            )?,
        };
        let b = Backend::with_transport(backend.name.as_str(), url, transport);
        if let Some(inner) = &nested {
            b.nest(inner);
        }
        b.configure_weight(backend.weight);
        b.set_enabled(backend.enabled);
        b.set_capacity(backend.capacity);
        b.set_role(backend.role);
        b.set_terminate_protection(backend.terminate_protection);
        b.set_soft_drain(backend.drain);
        backends.push(Arc::new(b));
    }
    let shaper = build_shaper(&cluster.buckets, cluster.shaper, &at)?;
    let queue_timeout = match cluster.queue_timeout {
        Some(d) if d.0.is_zero() => {
            return Err(ConfigError::new(
                format!("{at}.queue-timeout"),
                "a timeout must be greater than zero",
            ));
        }
        Some(d) => d.0,
        None => ClusterSettings::default().queue_timeout,
    };
    let settings = ClusterSettings {
        scheduler: cluster.scheduler,
        retry_after: cluster.retry_after,
        queue_limit: cluster.queue_limit,
        queue_timeout,
        enqueue_on_unavailable: cluster.enqueue_on_unavailable,
        on_client_abort: cluster.on_client_abort,
        max_retry_count: cluster.max_retry_count,
        replay_body_limit: cluster.replay_body_limit,
        response_headers: cluster.response_headers,
        hash_key: Some(
            HashKey::parse(cluster.hash_key.as_deref().unwrap_or("host+url"))
                .map_err(|m| ConfigError::new(format!("{at}.hash-key"), m))?,
        ),
        ring_replicas: cluster.ring_replicas.max(1),
        shard: ShardParams {
            alt: cluster.shard_alt,
            warmup: if (0.0..=1.0).contains(&cluster.shard_warmup) {
                cluster.shard_warmup
            } else {
                return Err(ConfigError::new(
                    format!("{at}.shard-warmup"),
                    "a fraction between 0 and 1",
                ));
            },
            rampup: cluster
                .shard_rampup
                .map_or(std::time::Duration::ZERO, |d| d.0),
            healthy: match cluster.shard_healthy.as_str() {
                "chosen" => Healthy::Chosen,
                "ignore" => Healthy::Ignore,
                "all" => Healthy::All,
                _ => {
                    return Err(ConfigError::new(
                        format!("{at}.shard-healthy"),
                        "chosen, ignore or all",
                    ));
                }
            },
        },
        fallback_sticky: cluster.fallback_sticky,
        // Only health checks take backends offline: without them there is nothing to panic about.
        panic_threshold: cluster.health.as_ref().map_or(0, |h| h.panic_threshold),
        buffer: buffer_limits(cluster, &at)?,
        unavailable_status: match cluster.unavailable_status {
            502 => http::StatusCode::BAD_GATEWAY,
            503 => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => {
                return Err(ConfigError::new(
                    format!("{at}.unavailable-status"),
                    "502 or 503",
                ));
            }
        },
    };
    let sendfile = match &cluster.sendfile {
        Some(s) => Some(Arc::new(crate::sendfile::SendfilePolicy::new(
            name,
            s,
            &format!("{at}.sendfile"),
        )?)),
        None => None,
    };
    let reschedule = reused
        .iter()
        .any(|(_, was, now)| was.role != now.role || was.weight != now.weight);
    for (live, was, now) in reused {
        actions.push(Box::new(move || apply_backend(&live, &was, &now)));
    }
    if let Some((old_cluster, old_config, _)) = old
        && !replaced
        && same_settings(old_config, cluster)
    {
        // Same cluster, members changed at most: keep it (its queues, shaper and counters).
        let live = old_cluster.clone();
        let added: Vec<Arc<Backend>> = backends
            .iter()
            .filter(|b| live.backend(b.name()).is_none())
            .cloned()
            .collect();
        let removed: Vec<String> = old_config
            .backends
            .iter()
            .filter(|b| !cluster.backends.iter().any(|n| n.name == b.name))
            .map(|b| b.name.clone())
            .collect();
        let enabled = (old_config.enabled != cluster.enabled).then_some(cluster.enabled);
        let cluster_live = live.clone();
        actions.push(Box::new(move || {
            for b in added {
                cluster_live.add_backend(b);
            }
            for name in removed {
                if let Some(b) = cluster_live.backend(&name) {
                    // The config no longer has it: protection is for API deletes, not this.
                    b.set_terminate_protection(false);
                }
                cluster_live.drain_backend(&name);
            }
            if let Some(enabled) = enabled {
                cluster_live.set_enabled(enabled);
            }
            if reschedule {
                cluster_live.reschedule();
            }
        }));
        return Ok(live);
    }
    let c = Arc::new(Cluster::new(name, backends, settings, shaper).with_sendfile(sendfile));
    c.set_enabled(cluster.enabled);
    if reschedule {
        let c = c.clone();
        actions.push(Box::new(move || c.reschedule()));
    }
    Ok(c)
}

/// Whether two configs of a cluster differ in their members (and switches) only, so the live
/// cluster can be kept.
fn same_settings(a: &ClusterConfig, b: &ClusterConfig) -> bool {
    let strip = |c: &ClusterConfig| ClusterConfig {
        backends: Vec::new(),
        enabled: true,
        cache: None,
        ..c.clone()
    };
    strip(a) == strip(b)
}

/// Applies what changed between two configs of a live backend.
fn apply_backend(live: &Backend, was: &BackendConfig, now: &BackendConfig) {
    if was.capacity != now.capacity {
        live.set_capacity(now.capacity);
    }
    if was.weight != now.weight {
        live.configure_weight(now.weight);
    }
    if was.role != now.role {
        live.set_role(now.role);
    }
    if was.terminate_protection != now.terminate_protection {
        live.set_terminate_protection(now.terminate_protection);
    }
    if was.enabled != now.enabled {
        live.set_enabled(now.enabled);
        live.notify_enabled(now.enabled);
    }
    if was.drain != now.drain {
        live.set_soft_drain(now.drain);
    }
}

/// The shaper of a cluster with `buckets` (created in order; a parent must come first).
fn build_shaper(
    buckets: &[BucketConfig],
    mode: ShaperMode,
    at: &str,
) -> Result<Shaper, ConfigError> {
    let mut shaper = Shaper::with_mode(0, mode);
    for (i, bucket) in buckets.iter().enumerate() {
        let at = format!("{at}.buckets[{i}]");
        let parent = match &bucket.parent {
            None => ROOT,
            Some(name) => shaper.find(name).ok_or_else(|| {
                ConfigError::new(
                    format!("{at}.parent"),
                    format!("no bucket named {name:?} above this one"),
                )
            })?,
        };
        let ceil = bucket.ceil.unwrap_or(bucket.rate);
        shaper
            .create(&bucket.name, parent, bucket.rate, ceil)
            .map_err(|e| {
                let key = match e {
                    crate::shaper::ShaperError::CeilLimitOverflow => "ceil",
                    crate::shaper::ShaperError::NameConflict => "name",
                    _ => "rate",
                };
                ConfigError::new(format!("{at}.{key}"), e.to_string())
            })?;
    }
    Ok(shaper)
}

/// x0's road-warrior timeouts: connect 10s, read 120s, write 10s.
fn road_warrior_defaults() -> TransportOptions {
    use std::time::Duration;
    TransportOptions {
        connect_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(120),
        write_timeout: Duration::from_secs(10),
        ..TransportOptions::default()
    }
}

/// `buffer-responses` and `max-temp-file-size`: `None` when responses stream.
fn buffer_limits(
    cluster: &ClusterConfig,
    at: &str,
) -> Result<Option<crate::buffer::BufferLimits>, ConfigError> {
    use crate::{buffer::BufferLimits, config::BufferResponses};
    let memory = match cluster.buffer_responses {
        BufferResponses::Switch(false) => return Ok(None),
        BufferResponses::Switch(true) => BufferLimits::DEFAULT_MEMORY,
        BufferResponses::Memory(n) if n > 0 && n <= 1 << 30 => n as usize,
        BufferResponses::Memory(_) => {
            return Err(ConfigError::new(
                format!("{at}.buffer-responses"),
                "false, true, or the memory per response in bytes (1 to 1073741824)",
            ));
        }
    };
    Ok(Some(BufferLimits {
        memory,
        max_temp_file: cluster
            .max_temp_file_size
            .unwrap_or(BufferLimits::DEFAULT_MAX_TEMP_FILE),
    }))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn parse_url(url: &str, at: &str) -> Result<BackendUrl, ConfigError> {
    url.parse()
        .map_err(|e: crate::addr::AddrError| ConfigError::new(at, e.to_string()))
}

fn transport(
    factory: &dyn TransportFactory,
    url: &BackendUrl,
    opts: TransportOptions,
    fastcgi: Option<&FastCgiSettings>,
    url_at: &str,
    fastcgi_at: &str,
) -> Result<BackendTransport, ConfigError> {
    match url.protocol {
        Protocol::Http => Ok(BackendTransport::Http(
            crate::transport::HttpTransport::for_url(url, opts),
        )),
        Protocol::Cluster => Err(ConfigError::new(
            url_at,
            "a nested cluster is not a transport",
        )),
        Protocol::FastCgi => {
            let settings = fastcgi.ok_or_else(|| {
                ConfigError::new(
                    url_at,
                    format!(
                        "a FastCGI backend needs a [{fastcgi_at}] table with its document-root"
                    ),
                )
            })?;
            check_fastcgi(settings, fastcgi_at)?;
            factory
                .fastcgi(&url.addr, &opts, settings)
                .map(BackendTransport::Custom)
                .map_err(|m| ConfigError::new(url_at, m))
        }
    }
}

fn check_fastcgi(settings: &FastCgiSettings, at: &str) -> Result<(), ConfigError> {
    if !settings.document_root.starts_with('/') {
        return Err(ConfigError::new(
            format!("{at}.document-root"),
            "the document root is an absolute path",
        ));
    }
    match (&settings.front_controller, &settings.script_extensions) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            format!("{at}.front-controller"),
            "give either front-controller or script-extensions, not both",
        )),
        (Some(script), None) if !script.starts_with('/') => Err(ConfigError::new(
            format!("{at}.front-controller"),
            "the front controller is a path such as /index.php",
        )),
        (None, Some(exts)) if exts.is_empty() || exts.iter().any(|e| !e.starts_with('.')) => {
            Err(ConfigError::new(
                format!("{at}.script-extensions"),
                "script extensions look like \".php\"",
            ))
        }
        _ => Ok(()),
    }
}

fn transport_options(
    s: &UpstreamSettings,
    at: &str,
    defaults: TransportOptions,
) -> Result<TransportOptions, ConfigError> {
    let positive = |v: Option<crate::config::ConfigDuration>, key: &str, default| match v {
        Some(d) if d.0.is_zero() => Err(ConfigError::new(
            format!("{at}.{key}"),
            "a timeout must be greater than zero",
        )),
        Some(d) => Ok(d.0),
        None => Ok(default),
    };
    Ok(TransportOptions {
        connect_timeout: positive(
            s.connect_timeout,
            "connect-timeout",
            defaults.connect_timeout,
        )?,
        read_timeout: positive(s.read_timeout, "read-timeout", defaults.read_timeout)?,
        write_timeout: positive(s.write_timeout, "write-timeout", defaults.write_timeout)?,
        idle_timeout: positive(s.idle_timeout, "idle-timeout", defaults.idle_timeout)?,
        max_idle: s.max_idle_connections.unwrap_or(defaults.max_idle),
        on_client_abort: defaults.on_client_abort,
    })
}

/// The live snapshot, swappable at runtime.
#[derive(Debug)]
pub struct Registry {
    current: ArcSwap<Snapshot>,
}

impl Registry {
    /// A registry serving `snapshot`.
    pub fn new(snapshot: Snapshot) -> Self {
        Registry {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The current snapshot (cheap; hold it for one request, not longer).
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot, as an `Arc` one can keep.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the snapshot; requests already routed keep the one they loaded.
    pub fn store(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendConfig, ClusterConfig, RouteConfig};

    fn cluster(backends: &[(&str, &str)]) -> ClusterConfig {
        ClusterConfig {
            enabled: true,
            scheduler: Default::default(),
            retry_after: 10,
            queue_limit: 128,
            queue_timeout: None,
            enqueue_on_unavailable: false,
            on_client_abort: Default::default(),
            max_retry_count: 3,
            replay_body_limit: 65536,
            response_headers: true,
            buffer_responses: Default::default(),
            max_temp_file_size: None,
            shaper: Default::default(),
            buckets: vec![],
            hash_key: None,
            ring_replicas: 67,
            shard_alt: 0,
            shard_warmup: 0.0,
            shard_rampup: None,
            shard_healthy: "chosen".into(),
            fallback_sticky: false,
            unavailable_status: 503,
            connect_timeout: None,
            read_timeout: None,
            write_timeout: None,
            max_idle_connections: None,
            idle_timeout: None,
            fastcgi: None,
            health: None,
            cache: None,
            sendfile: None,
            backends: backends
                .iter()
                .map(|(n, u)| BackendConfig::new(*n, *u))
                .collect(),
        }
    }

    fn route(cluster: Option<&str>, backend: Option<&str>) -> RouteConfig {
        RouteConfig {
            cluster: cluster.map(Into::into),
            backend: backend.map(Into::into),
            ..RouteConfig::default()
        }
    }

    fn build(
        clusters: Vec<(&str, ClusterConfig)>,
        routes: Vec<RouteConfig>,
    ) -> Result<Snapshot, ConfigError> {
        Snapshot::build(&ProxyConfig {
            clusters: clusters
                .into_iter()
                .map(|(n, c)| (n.to_owned(), c))
                .collect(),
            routes,
        })
    }

    #[test]
    fn builds_clusters_and_routes() {
        let s = build(
            vec![(
                "app",
                cluster(&[("a", "http://127.0.0.1:1"), ("b", "unix:/tmp/b.sock")]),
            )],
            vec![
                route(Some("app"), None),
                route(None, Some("http://[::1]:2")),
            ],
        )
        .unwrap();
        assert_eq!(s.cluster("app").unwrap().backends().len(), 2);
        assert_eq!(s.routes().routes().len(), 2);
    }

    #[test]
    fn names_the_bad_key() {
        let err = build(
            vec![(
                "app",
                cluster(&[("a", "http://127.0.0.1:1"), ("a", "http://127.0.0.1:2")]),
            )],
            vec![],
        )
        .unwrap_err();
        assert_eq!(err.path, "clusters.app.backends[1].name");

        let err = build(vec![("app", cluster(&[("a", "htp://x")]))], vec![]).unwrap_err();
        assert_eq!(err.path, "clusters.app.backends[0].url");

        let err = build(vec![], vec![route(Some("nope"), None)]).unwrap_err();
        assert_eq!(err.path, "routes[0].cluster");
        assert!(err.message.contains("nope"));

        let err = build(vec![], vec![route(None, None)]).unwrap_err();
        assert_eq!(err.path, "routes[0]");

        let err = build(
            vec![("app", cluster(&[("a", "fastcgi://127.0.0.1:9000")]))],
            vec![],
        )
        .unwrap_err();
        assert!(err.message.contains("FastCGI"));

        let mut c = cluster(&[]);
        c.read_timeout = Some(crate::config::ConfigDuration(std::time::Duration::ZERO));
        let err = build(vec![("app", c)], vec![]).unwrap_err();
        assert_eq!(err.path, "clusters.app.read-timeout");
    }

    #[test]
    fn deny_routes_take_no_target() {
        let deny = RouteConfig {
            path: Some("/inc/".into()),
            deny: true,
            ..RouteConfig::default()
        };
        let s = build(vec![], vec![deny.clone()]).unwrap();
        assert!(matches!(s.routes().routes()[0].target, Target::Deny));

        let err = build(
            vec![],
            vec![RouteConfig {
                backend: Some("http://127.0.0.1:1".into()),
                ..deny
            }],
        )
        .unwrap_err();
        assert_eq!(err.path, "routes[0]");
        assert!(err.message.contains("deny"), "{}", err.message);
    }

    #[test]
    fn route_paths_are_written_in_normal_form() {
        let at = |path: &str| {
            build(
                vec![],
                vec![RouteConfig {
                    path: Some(path.into()),
                    deny: true,
                    ..RouteConfig::default()
                }],
            )
        };
        assert!(at("/inc/").is_ok());
        let err = at("/%69nc//").unwrap_err();
        assert_eq!(err.path, "routes[0].path");
        assert!(err.message.contains("\"/inc/\""), "{}", err.message);
        let err = at("/a%2Fb").unwrap_err();
        assert_eq!(err.path, "routes[0].path");
    }
}
