//! Health monitoring: `director-health`'s monitors wired into `director-core`'s clusters.
//!
//! For every backend of a cluster with a `[clusters.NAME.health]` table, one monitor probes it
//! (HTTP, TCP, or FastCGI for FastCGI backends) and follows x0's rules (rise/fall, modes, sticky
//! offline). Each state change is applied to the backend and then to its cluster, which resizes
//! its shaper and dispatches queued requests at once. Live outcomes flow the other way: the
//! cluster reports each attempt to the backend's [`HealthObserver`], so a backend that fails a
//! live request leaves rotation without waiting for the next probe (passive health), unless that
//! would hold out more than the cluster's `max-ejection-percent` or its last available backend
//! ([`Cluster::try_passive_ejection`]).

use std::{collections::HashMap, net::ToSocketAddrs, sync::Arc, time::Duration};

use director_core::{
    ErrorKind,
    addr::{BackendAddr, Protocol},
    backend::{Backend, Health, HealthObserver},
    cluster::Cluster,
    config::{ClusterConfig, FastCgiSettings, HealthSettings, ProxyConfig},
    registry::Snapshot,
    stats::{CheckInfo, CheckLayer, CheckStatus},
};
use director_health::{
    ExpectedStatus, FailureKind, HealthConfig, HealthHandle, HealthState, HttpProbe, Mode, Monitor,
    PassiveConfig, Probe, ProbeError, ProbeFailure, Target, TcpProbe, probe_fn,
};
use tokio::task::JoinHandle;

use crate::config::Config;

/// The running monitors, one per monitored backend; dropping this stops them.
///
/// [`HealthMonitors::sync`] follows config changes: a backend kept across a change keeps its
/// monitor (and so its health) unless its health settings changed; a cluster rebuilt around it
/// only gets a new follower.
#[derive(Debug, Default)]
pub struct HealthMonitors {
    entries: HashMap<(Arc<str>, Arc<str>), Entry>,
}

#[derive(Debug)]
struct Entry {
    backend: Arc<Backend>,
    cluster: Arc<Cluster>,
    settings: (HealthSettings, Option<FastCgiSettings>),
    handle: HealthHandle,
    observer: Arc<Observer>,
    _monitor: Monitor,
    follower: JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl HealthMonitors {
    /// The health handle of `backend` in `cluster`, if it is monitored.
    pub fn handle(&self, cluster: &str, backend: &str) -> Option<&HealthHandle> {
        self.entries
            .get(&(Arc::from(cluster), Arc::from(backend)))
            .map(|e| &e.handle)
    }

    /// How many backends are monitored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no backend is monitored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Brings the monitors in line with `snapshot` (built from `config`): starts monitors for
    /// new backends, restarts those whose settings changed, stops those of removed backends.
    /// Call inside a Tokio runtime.
    pub fn sync(&mut self, config: &ProxyConfig, snapshot: &Snapshot) -> Result<(), String> {
        let mut next = HashMap::new();
        for (name, cluster_config) in &config.clusters {
            let Some(cluster) = snapshot.cluster(name) else {
                continue;
            };
            for backend in cluster.backends() {
                // A nested cluster is as healthy as its own members; it has no address to probe.
                if backend.url().protocol == Protocol::Cluster {
                    continue;
                }
                // A removed backend that still drains keeps the cluster's settings.
                let settings = match cluster_config
                    .backends
                    .iter()
                    .find(|b| b.name == **backend.name())
                {
                    Some(configured) => configured.health(cluster_config),
                    None => cluster_config.health.clone(),
                };
                let Some(settings) = settings else {
                    continue;
                };
                let wanted = (settings, cluster_config.fastcgi.clone());
                let key = (cluster.name().clone(), backend.name().clone());
                match self.entries.remove(&key) {
                    Some(mut entry)
                        if Arc::ptr_eq(&entry.backend, &backend) && entry.settings == wanted =>
                    {
                        if !Arc::ptr_eq(&entry.cluster, cluster) {
                            entry.follower.abort();
                            entry.follower = tokio::spawn(follow(
                                entry.handle.clone(),
                                backend.clone(),
                                cluster.clone(),
                            ));
                            entry.cluster = cluster.clone();
                            entry.observer.set_cluster(cluster);
                        }
                        next.insert(key, entry);
                    }
                    _ => {
                        let entry = start_one(name, cluster, &backend, &wanted)?;
                        next.insert(key, entry);
                    }
                }
            }
        }
        // What is left was removed or lost its health table.
        for (_, entry) in self.entries.drain() {
            if !next
                .values()
                .any(|e: &Entry| Arc::ptr_eq(&e.backend, &entry.backend))
            {
                entry.backend.observe(None);
            }
        }
        self.entries = next;
        Ok(())
    }
}

fn start_one(
    name: &str,
    cluster: &Arc<Cluster>,
    backend: &Arc<Backend>,
    settings: &(HealthSettings, Option<FastCgiSettings>),
) -> Result<Entry, String> {
    let health = health_config(&settings.0)?;
    let handle = HealthHandle::new(format!("{name}/{}", backend.name()), health);
    let probe = probe_for(name, backend, &settings.0, settings.1.as_ref())?;
    let observer = Arc::new(Observer {
        handle: handle.clone(),
        layer: if settings.0.probe == "tcp" {
            CheckLayer::L4
        } else {
            CheckLayer::L7
        },
        backend: Arc::downgrade(backend),
        cluster: std::sync::RwLock::new(Arc::downgrade(cluster)),
        max_ejection_percent: settings.0.max_ejection_percent,
    });
    backend.observe(Some(observer.clone()));
    Ok(Entry {
        observer,
        backend: backend.clone(),
        cluster: cluster.clone(),
        settings: settings.clone(),
        follower: tokio::spawn(follow(handle.clone(), backend.clone(), cluster.clone())),
        _monitor: Monitor::spawn(handle.clone(), probe),
        handle,
    })
}

/// Starts a monitor for every backend of every cluster that has health settings (call inside
/// a Tokio runtime).
pub fn start(config: &Config, snapshot: &Snapshot) -> Result<HealthMonitors, String> {
    let mut monitors = HealthMonitors::default();
    monitors.sync(&config.proxy(), snapshot)?;
    Ok(monitors)
}

/// Checks the health settings of a cluster: its `[health]` table and its backends' own
/// `health-mode` and `health-interval`. The error names the key under the cluster
/// (`health.rise`, `backends[1].health-mode`).
pub fn check_cluster(cluster: &ClusterConfig) -> Result<(), (String, String)> {
    if let Some(health) = &cluster.health {
        check(health).map_err(|(field, message)| (format!("health.{field}"), message))?;
    }
    for (i, backend) in cluster.backends.iter().enumerate() {
        if let Some(mode) = &backend.health_mode {
            mode.parse::<Mode>()
                .map_err(|_| (format!("backends[{i}].health-mode"), unknown_mode(mode)))?;
        }
        if let Some(d) = backend.health_interval {
            check_interval("health-interval", d.0)
                .map_err(|(_, m)| (format!("backends[{i}].health-interval"), m))?;
        }
    }
    Ok(())
}

/// The shortest probe interval: a probe every 50 ms is 20 a second per backend, already more
/// than any backend needs; below that health checks become load (1 ms was 650 probes a second).
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// The shortest probe timeout: below 10 ms even a loopback backend under load fails probes.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(10);
/// The longest probe timeout: a probe that waits longer has found a hung backend.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);

fn check_interval(key: &'static str, d: Duration) -> Result<(), (&'static str, String)> {
    if d < MIN_INTERVAL {
        return Err((
            key,
            format!("a health interval is at least {MIN_INTERVAL:?} (not {d:?})"),
        ));
    }
    Ok(())
}

fn unknown_mode(mode: &str) -> String {
    format!("unknown health mode {mode:?} (paranoid, opportunistic, lazy)")
}

/// Checks a `[clusters.NAME.health]` table; the error names the key.
pub fn check(s: &HealthSettings) -> Result<(), (&'static str, String)> {
    health_config(s).map_err(|m| ("mode", m))?;
    for (key, value) in [
        ("interval", s.interval),
        ("offline-interval", s.offline_interval),
    ] {
        if let Some(d) = value {
            check_interval(key, d.0)?;
        }
    }
    if let Some(d) = s.timeout
        && !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&d.0)
    {
        return Err((
            "timeout",
            format!(
                "a probe timeout is between {MIN_TIMEOUT:?} and {MAX_TIMEOUT:?} (not {:?})",
                d.0
            ),
        ));
    }
    if s.probe != "http" && s.probe != "tcp" {
        return Err((
            "probe",
            format!("unknown health probe {:?} (http, tcp)", s.probe),
        ));
    }
    if s.method.parse::<http::Method>().is_err() {
        return Err(("method", format!("invalid method {:?}", s.method)));
    }
    // The path and host go into the probe's request head: a CR/LF would inject headers, and
    // a space or control byte makes the request line invalid.
    if !s.path.starts_with('/') || !s.path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err((
            "path",
            "the probe path starts with '/' and has no spaces, control or non-ASCII characters \
             (percent-encode them)"
                .into(),
        ));
    }
    if s.host.is_empty() || !s.host.bytes().all(|b| b.is_ascii_graphic()) {
        return Err((
            "host",
            "the probe's Host is not empty and has no spaces, control or non-ASCII characters"
                .into(),
        ));
    }
    if s.script_filename
        .as_ref()
        .is_some_and(|f| f.chars().any(char::is_control))
    {
        return Err((
            "script-filename",
            "the probe's script-filename has no control characters".into(),
        ));
    }
    for (key, value) in [
        ("max-ejection-percent", s.max_ejection_percent),
        ("panic-threshold", s.panic_threshold),
    ] {
        if value > 100 {
            return Err((key, format!("a percentage from 0 to 100 (not {value})")));
        }
    }
    if s.rise == 0 || s.fall == 0 {
        return Err(("rise", "rise and fall are at least 1".into()));
    }
    if let Some(bad) = s
        .expect
        .iter()
        .flatten()
        .find(|c| !(100..=599).contains(*c))
    {
        return Err(("expect", format!("{bad} is not an HTTP status")));
    }
    Ok(())
}

fn health_config(s: &HealthSettings) -> Result<HealthConfig, String> {
    let mode: Mode = s.mode.parse().map_err(|_| unknown_mode(&s.mode))?;
    let mut config = HealthConfig::default()
        .mode(mode)
        .thresholds(s.rise.max(1), s.fall.max(1))
        .sticky_offline(s.sticky_offline)
        .passive(PassiveConfig {
            enabled: s.passive,
            server_errors: s.passive_5xx,
            ..PassiveConfig::default()
        });
    if let Some(d) = s.interval {
        config = config.interval(d.0);
    }
    if let Some(d) = s.offline_interval {
        config = config.offline_interval(d.0);
    }
    if let Some(d) = s.jitter {
        config = config.jitter(d.0);
    }
    if let Some(d) = s.timeout {
        config = config.timeout(d.0);
    }
    Ok(config)
}

fn target(addr: &BackendAddr) -> Result<Target, String> {
    match addr {
        BackendAddr::Tcp(sa) => Ok(Target::Tcp(*sa)),
        BackendAddr::Unix(path) => Ok(Target::Unix(path.clone())),
        BackendAddr::Cluster(name) => Err(format!("cluster:{name} has no address to probe")),
        BackendAddr::Host(host, port) => (&**host, *port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(Target::Tcp)
            .ok_or_else(|| format!("cannot resolve {host}:{port} for health checks")),
    }
}

fn probe_for(
    cluster: &str,
    backend: &Backend,
    s: &HealthSettings,
    fastcgi: Option<&FastCgiSettings>,
) -> Result<Box<dyn Probe>, String> {
    let target = target(&backend.url().addr)?;
    let timeout = s.timeout.map_or(Duration::from_secs(2), |d| d.0);
    if s.probe == "tcp" {
        return Ok(Box::new(TcpProbe::new(target)));
    }
    if s.probe != "http" {
        return Err(format!("unknown health probe {:?} (http, tcp)", s.probe));
    }
    let expect = match &s.expect {
        Some(codes) => ExpectedStatus::codes(codes.iter().copied()),
        None => ExpectedStatus::default(),
    };
    match backend.url().protocol {
        Protocol::Cluster => Err("a nested cluster has no address to probe".into()),
        Protocol::Http => {
            let method = s
                .method
                .parse()
                .map_err(|_| format!("invalid health-check method {:?}", s.method))?;
            // A backend with a base path is probed under it, as its requests are.
            let path = match &backend.url().base_path {
                Some(base) => format!("{base}{}", s.path),
                None => s.path.clone(),
            };
            let probe = HttpProbe::builder(target)
                .method(method)
                .path(path)
                .host(s.host.clone())
                .director(cluster)
                .backend(&**backend.name())
                .expect(expect)
                .timeout(timeout)
                .build()
                .map_err(|e| format!("invalid health check: {e}"))?;
            Ok(Box::new(probe))
        }
        Protocol::FastCgi => {
            let addr = match &backend.url().addr {
                BackendAddr::Tcp(sa) => director_fastcgi::FastCgiAddr::Tcp(*sa),
                BackendAddr::Unix(p) => director_fastcgi::FastCgiAddr::Unix(p.clone()),
                BackendAddr::Host(..) | BackendAddr::Cluster(_) => {
                    return Err("a FastCGI backend needs an address".into());
                }
            };
            let root = fastcgi.map_or("", |f| f.document_root.trim_end_matches('/'));
            let config = director_fastcgi::ProbeConfig {
                request_path: s.path.clone(),
                script_filename: Some(
                    s.script_filename
                        .clone()
                        .unwrap_or_else(|| format!("{root}{}", s.path)),
                ),
                // x0's probe headers (spec 7.5), as HTTP_HOST, HTTP_X0_HEALTH_CHECK,
                // HTTP_X0_DIRECTOR and HTTP_X0_BACKEND: an application tells probes apart by them.
                headers: vec![
                    ("Host".to_owned(), s.host.clone()),
                    ("x0-Health-Check".to_owned(), "yes".to_owned()),
                    ("x0-Director".to_owned(), cluster.to_owned()),
                    ("x0-Backend".to_owned(), backend.name().to_string()),
                ],
                connect_timeout: timeout,
                read_timeout: timeout,
                write_timeout: timeout,
                ..director_fastcgi::ProbeConfig::default()
            };
            Ok(Box::new(probe_fn(move || {
                let (addr, config, expect) = (addr.clone(), config.clone(), expect.clone());
                async move {
                    let outcome = director_fastcgi::probe(&addr, &config)
                        .await
                        .map_err(ProbeError::other)?;
                    if expect.matches(outcome.status) {
                        Ok(())
                    } else {
                        Err(ProbeError::Status(outcome.status))
                    }
                }
            })))
        }
    }
}

/// Applies every health change of `handle` to `backend` and its cluster.
async fn follow(handle: HealthHandle, backend: Arc<Backend>, cluster: Arc<Cluster>) {
    let mut statuses = handle.subscribe();
    loop {
        let status = *statuses.borrow_and_update();
        let health = match status.state {
            HealthState::Online => Health::Online,
            HealthState::Offline => Health::Offline,
            HealthState::Undefined => Health::Undefined,
        };
        backend.set_health(health);
        if !status.enabled {
            // Sticky offline (or a disable through the handle): out until an operator enables it.
            backend.set_enabled(false);
        }
        // Resizes the shaper and, when capacity came back, dispatches queued requests at once.
        cluster.refresh();
        if statuses.changed().await.is_err() {
            return;
        }
    }
}

/// Passes live outcomes and operator switches from the cluster to a health handle, under the
/// cluster's ejection cap.
#[derive(Debug)]
struct Observer {
    handle: HealthHandle,
    layer: CheckLayer,
    // Weak: the backend holds this observer. The cluster changes when a config change
    // rebuilds it around a kept backend.
    backend: std::sync::Weak<Backend>,
    cluster: std::sync::RwLock<std::sync::Weak<Cluster>>,
    max_ejection_percent: u8,
}

impl Observer {
    fn set_cluster(&self, cluster: &Arc<Cluster>) {
        *self
            .cluster
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::downgrade(cluster);
    }

    /// Reports a live failure; one that would take the backend offline needs its cluster's
    /// leave (`max-ejection-percent`, never the last available backend).
    fn report_failure(&self, kind: FailureKind) {
        self.handle.report_failure_capped(kind, || {
            let cluster = self
                .cluster
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .upgrade();
            match (cluster, self.backend.upgrade()) {
                (Some(cluster), Some(backend)) => {
                    cluster.try_passive_ejection(&backend, self.max_ejection_percent)
                }
                // Gone from the config: nothing left to protect.
                _ => true,
            }
        });
    }
}

impl HealthObserver for Observer {
    fn response(&self, status: http::StatusCode) {
        if status.is_server_error() {
            // Counts only with `passive-5xx`; otherwise a 5xx is neither success nor failure.
            self.report_failure(FailureKind::ServerError);
        } else {
            self.handle.report_success();
        }
    }

    fn failure(&self, kind: ErrorKind) {
        let kind = match kind {
            ErrorKind::ConnectFailed => FailureKind::Connect,
            ErrorKind::ConnectTimeout | ErrorKind::Timeout => FailureKind::Timeout,
            ErrorKind::UpstreamBroken => FailureKind::Reset,
            // Not the backend's fault, or not a sign of sickness.
            _ => return,
        };
        self.report_failure(kind);
    }

    fn enabled(&self, enabled: bool) {
        if enabled {
            self.handle.enable();
        } else {
            self.handle.disable();
        }
    }

    fn check_info(&self) -> Option<CheckInfo> {
        let snap = self.handle.snapshot();
        let config = self.handle.config();
        let last = snap.last_probe.as_ref();
        let (status, code) = match last {
            None => (CheckStatus::Init, None),
            Some(probe) => check_status(self.layer, probe.ok, probe.failure),
        };
        Some(CheckInfo {
            status,
            code,
            duration: last.map(|p| p.latency),
            detail: last.and_then(|p| p.error.clone()),
            rise: config.rise,
            fall: config.fall,
            consecutive_successes: snap.consecutive_successes,
            consecutive_failures: snap.consecutive_failures,
            checks: snap.probes_sent,
            failed_checks: snap.probes_failed,
        })
    }
}

/// A probe result in HAProxy's words: a TCP probe is a layer-4 check, HTTP and FastCGI probes
/// are layer-7 checks.
fn check_status(
    layer: CheckLayer,
    ok: bool,
    failure: Option<ProbeFailure>,
) -> (CheckStatus, Option<u16>) {
    match (layer, ok, failure) {
        (CheckLayer::L4, true, _) => (CheckStatus::L4Ok, None),
        (CheckLayer::L7, true, _) => (CheckStatus::L7Ok, None),
        (_, false, Some(ProbeFailure::Connect)) => (CheckStatus::L4Connect, None),
        (CheckLayer::L4, false, Some(ProbeFailure::Timeout)) => (CheckStatus::L4Timeout, None),
        (CheckLayer::L7, false, Some(ProbeFailure::Timeout)) => (CheckStatus::L7Timeout, None),
        (_, false, Some(ProbeFailure::Status(code))) => (CheckStatus::L7Status, Some(code)),
        (CheckLayer::L4, false, _) => (CheckStatus::L4Connect, None),
        (CheckLayer::L7, false, _) => (CheckStatus::L7Response, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut HealthSettings)) -> Result<(), (&'static str, String)> {
        let mut s = HealthSettings::default();
        f(&mut s);
        check(&s)
    }

    fn ms(n: u64) -> Option<director_core::config::ConfigDuration> {
        Some(director_core::config::ConfigDuration(
            Duration::from_millis(n),
        ))
    }

    #[test]
    fn defaults_and_sane_values_pass() {
        assert_eq!(with(|_| {}), Ok(()));
        assert_eq!(
            with(|s| {
                s.interval = ms(50);
                s.offline_interval = ms(500);
                s.timeout = ms(10);
                s.path = "/health?full=1&x=%20".into();
            }),
            Ok(())
        );
    }

    #[test]
    fn an_interval_below_the_floor_is_refused() {
        assert_eq!(with(|s| s.interval = ms(1)).unwrap_err().0, "interval");
        assert_eq!(with(|s| s.interval = ms(49)).unwrap_err().0, "interval");
        assert_eq!(with(|s| s.interval = ms(0)).unwrap_err().0, "interval");
        assert_eq!(
            with(|s| s.offline_interval = ms(1)).unwrap_err().0,
            "offline-interval"
        );
    }

    #[test]
    fn a_backend_health_interval_below_the_floor_is_refused() {
        let cluster: ClusterConfig = toml::from_str(
            "backends = [{ name = \"a\", url = \"http://127.0.0.1:9\", health-interval = \"1ms\" }]",
        )
        .unwrap();
        let (key, message) = check_cluster(&cluster).unwrap_err();
        assert_eq!(key, "backends[0].health-interval");
        assert!(message.contains("at least 50ms"), "{message}");
    }

    #[test]
    fn timeouts_that_make_no_sense_are_refused() {
        assert_eq!(with(|s| s.timeout = ms(0)).unwrap_err().0, "timeout");
        assert_eq!(with(|s| s.timeout = ms(1)).unwrap_err().0, "timeout");
        assert_eq!(with(|s| s.timeout = ms(301_000)).unwrap_err().0, "timeout");
    }

    #[test]
    fn a_path_with_cr_lf_or_control_characters_is_refused() {
        for bad in [
            "/x\r\nX-Injected: 1",
            "/x\n",
            "/a\0b",
            "/a b",
            "/\u{7f}",
            "/é",
            "health",
            "",
        ] {
            assert_eq!(
                with(|s| s.path = bad.into()).unwrap_err().0,
                "path",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_host_or_script_filename_with_control_characters_is_refused() {
        assert_eq!(with(|s| s.host = "a\r\nb".into()).unwrap_err().0, "host");
        assert_eq!(with(|s| s.host = String::new()).unwrap_err().0, "host");
        assert_eq!(
            with(|s| s.script_filename = Some("/x.php\n".into()))
                .unwrap_err()
                .0,
            "script-filename"
        );
    }
}
