//! The JSON documents of the API, with x0's key names and shapes (spec 8.4).
//!
//! Settings come from the cluster's config (with the defaults the core applies), live values
//! (enabled flags, health, load and queue counters, bucket tokens) from the live cluster.
//! Durations are seconds (fractions allowed), except a member's `health.interval`, which is
//! milliseconds, as in x0. Director's own settings follow x0's keys under additional names.

use std::time::Duration;

use director_core::{
    addr::{BackendAddr, Protocol},
    backend::{AdminState, Backend, Role},
    cluster::Cluster,
    counter::CounterSnapshot,
    shaper::{BucketId, ROOT},
    transport::TransportOptions,
    weight::Weight,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{Extras, store::ClusterEntry};

/// The default probe interval of a `[health]` table (`director-bin`'s monitors use 2s too).
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// A duration as JSON seconds: an integer when whole, else a fraction.
pub(crate) fn secs(d: Duration) -> Value {
    if d.subsec_nanos() == 0 {
        json!(d.as_secs())
    } else {
        json!(d.as_secs_f64())
    }
}

/// A cluster (x0's director document plus Director's extras).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct ClusterDoc {
    name: String,
    mutable: bool,
    enabled: bool,
    queue_limit: usize,
    queue_timeout: Value,
    retry_after: u32,
    max_retry_count: u32,
    sticky_offline_mode: bool,
    allow_x_sendfile: bool,
    enqueue_on_unavailable: bool,
    on_client_abort: director_core::config::ClientAbort,
    connect_timeout: Value,
    read_timeout: Value,
    write_timeout: Value,
    health_check_host_header: String,
    health_check_request_path: String,
    /// x0 answered `...-name` while its parameter and file key are `...-filename`; kept.
    health_check_fcgi_script_name: String,
    scheduler: &'static str,
    stats: StatsDoc,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<Value>,
    shaper: BucketDoc,
    members: Vec<MemberDoc>,
    // --- Director's extras ---
    dynamic: bool,
    etag: String,
    hash_key: Option<String>,
    replay_body_limit: usize,
    response_headers: bool,
    unavailable_status: u16,
    health: Option<Value>,
}

/// `{load, queued, dropped}`.
#[derive(Debug, Serialize)]
pub(crate) struct StatsDoc {
    load: CounterSnapshot,
    queued: CounterSnapshot,
    dropped: u64,
}

/// A bucket and its subtree.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct BucketDoc {
    name: String,
    rate: f64,
    ceil: f64,
    token_rate: u32,
    token_ceil: u32,
    stats: StatsDoc,
    children: Vec<BucketDoc>,
}

/// A member (backend).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct MemberDoc {
    name: String,
    capacity: u32,
    /// The weight the schedulers use now (integral ones shown as integers).
    weight: Weight,
    terminate_protection: bool,
    enabled: bool,
    /// HAProxy's operator state: `ready`, `drain` (a member that gets no new balanced
    /// requests) or `maint` (disabled).
    admin_state: &'static str,
    protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<String>,
    stats: MemberStats,
    health: Value,
    /// `active`, `backup`, or `terminate` while it drains before removal (x0's roles).
    role: &'static str,
    url: String,
}

#[derive(Debug, Serialize)]
struct MemberStats {
    load: CounterSnapshot,
}

/// The document of one cluster.
pub(crate) fn cluster(entry: &ClusterEntry, extras: &dyn Extras) -> ClusterDoc {
    let live = &entry.live;
    let config = &entry.config;
    let settings = live.settings();
    let transport = TransportOptions::default();
    let health = config.health.as_ref();
    let stats = live.stats();
    ClusterDoc {
        name: entry.name.clone(),
        // Quirk 31 fixed: every file-backed (dynamic) cluster is mutable; static ones only
        // take enable and disable.
        mutable: entry.dynamic,
        enabled: live.is_enabled(),
        queue_limit: settings.queue_limit,
        queue_timeout: secs(settings.queue_timeout),
        retry_after: settings.retry_after,
        max_retry_count: settings.max_retry_count,
        sticky_offline_mode: health.is_some_and(|h| h.sticky_offline),
        allow_x_sendfile: config.sendfile.is_some(),
        enqueue_on_unavailable: settings.enqueue_on_unavailable,
        on_client_abort: settings.on_client_abort,
        connect_timeout: secs(
            config
                .connect_timeout
                .map_or(transport.connect_timeout, |d| d.0),
        ),
        read_timeout: secs(config.read_timeout.map_or(transport.read_timeout, |d| d.0)),
        write_timeout: secs(
            config
                .write_timeout
                .map_or(transport.write_timeout, |d| d.0),
        ),
        health_check_host_header: health.map_or("backend-healthcheck".into(), |h| h.host.clone()),
        health_check_request_path: health.map_or("/".into(), |h| h.path.clone()),
        health_check_fcgi_script_name: health
            .and_then(|h| h.script_filename.clone())
            .unwrap_or_default(),
        scheduler: live.scheduler().kind().as_str(),
        stats: StatsDoc {
            load: stats.load,
            queued: stats.queued,
            dropped: stats.dropped,
        },
        cache: config.cache.as_ref().map(|c| {
            json!({
                "enabled": c.enabled,
                "deliver-active": c.deliver_active,
                "deliver-shadow": c.deliver_shadow,
                "default-ttl": c.default_ttl.map_or(json!(20), |d| secs(d.0)),
                "default-shadow-ttl": c.shadow_ttl.map_or(json!(60), |d| secs(d.0)),
                "strategy": c.strategy,
                "budget": c.budget,
                "max-object-size": c.max_object_size,
                "stats": extras.cache_stats(&entry.name),
            })
        }),
        shaper: bucket(live, ROOT),
        members: members(entry),
        dynamic: entry.dynamic,
        etag: entry.etag.clone(),
        hash_key: config.hash_key.clone(),
        replay_body_limit: settings.replay_body_limit,
        response_headers: settings.response_headers,
        unavailable_status: settings.unavailable_status.as_u16(),
        health: health.map(|h| {
            json!({
                "mode": h.mode,
                "interval": secs(h.interval.map_or(DEFAULT_HEALTH_INTERVAL, |d| d.0)),
                "offline-interval": h.offline_interval.map(|d| secs(d.0)),
                "timeout": h.timeout.map(|d| secs(d.0)),
                "rise": h.rise,
                "fall": h.fall,
                "probe": h.probe,
                "method": h.method,
                "path": h.path,
                "host": h.host,
                "expect": h.expect,
                "sticky-offline": h.sticky_offline,
                "passive": h.passive,
                "passive-5xx": h.passive_5xx,
            })
        }),
    }
}

/// A bucket and its children, by id.
pub(crate) fn bucket(live: &Cluster, id: BucketId) -> BucketDoc {
    let shaper = live.shaper();
    let s = shaper.stats(id);
    let queue = live.bucket_stats(id);
    BucketDoc {
        name: s.name,
        rate: s.rate,
        ceil: s.ceil,
        token_rate: s.token_rate,
        token_ceil: s.token_ceil,
        stats: StatsDoc {
            load: CounterSnapshot {
                current: s.load.current,
                max: s.load.max,
                total: s.load.total,
            },
            queued: queue.map(|q| q.queued).unwrap_or_default(),
            dropped: queue.map_or(0, |q| q.dropped),
        },
        children: shaper
            .children(id)
            .iter()
            .map(|&child| bucket(live, child))
            .collect(),
    }
}

/// Members in x0's order: active, backup, then draining ones, each in config order.
fn members(entry: &ClusterEntry) -> Vec<MemberDoc> {
    let all = entry.live.backends();
    let rank = |b: &Backend| match (b.is_draining(), b.role()) {
        (true, _) => 2,
        (false, Role::Active) => 0,
        (false, Role::Backup) => 1,
    };
    let mut ordered: Vec<&std::sync::Arc<Backend>> = all.iter().collect();
    ordered.sort_by_key(|b| rank(b));
    ordered.into_iter().map(|b| member(entry, b)).collect()
}

/// The document of one member.
pub(crate) fn member(entry: &ClusterEntry, b: &Backend) -> MemberDoc {
    let url = b.url();
    let (mut hostname, mut port, mut path, mut cluster) = (None, None, None, None);
    match &url.addr {
        BackendAddr::Tcp(a) => {
            hostname = Some(a.ip().to_string());
            port = Some(a.port());
        }
        BackendAddr::Host(h, p) => {
            hostname = Some(h.to_string());
            port = Some(*p);
        }
        BackendAddr::Unix(p) => path = Some(p.display().to_string()),
        BackendAddr::Cluster(c) => cluster = Some(c.to_string()),
    }
    let configured = entry.config.backends.iter().find(|c| c.name == **b.name());
    let health =
        match configured.map_or_else(|| entry.config.health.clone(), |c| c.health(&entry.config)) {
            Some(h) => json!({
                "mode": h.mode,
                "state": b.health(),
                "interval": h.interval.map_or(DEFAULT_HEALTH_INTERVAL, |d| d.0).as_millis() as u64,
            }),
            // No [health] table: nothing probes, every backend counts as online.
            None => json!({ "mode": "none", "state": b.health() }),
        };
    MemberDoc {
        name: b.name().to_string(),
        capacity: b.capacity(),
        weight: Weight::new(b.weight()).unwrap_or_default(),
        terminate_protection: b.is_terminate_protected(),
        enabled: b.is_enabled(),
        admin_state: match b.admin_state() {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        },
        protocol: match url.protocol {
            Protocol::Http => "http",
            Protocol::FastCgi => "fastcgi",
            Protocol::Cluster => "cluster",
        },
        hostname,
        port,
        path,
        cluster,
        stats: MemberStats { load: b.load() },
        health,
        role: match (b.is_draining(), b.role()) {
            (true, _) => "terminate",
            (false, Role::Active) => "active",
            (false, Role::Backup) => "backup",
        },
        url: configured.map_or_else(|| url.addr.to_string(), |c| c.url.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_whole_or_fractional() {
        assert_eq!(secs(Duration::from_secs(10)), json!(10));
        assert_eq!(secs(Duration::from_millis(250)), json!(0.25));
        assert_eq!(secs(Duration::ZERO), json!(0));
    }
}
