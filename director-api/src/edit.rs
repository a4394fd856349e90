//! Parameters onto configs: each API parameter changes one key of a `ClusterConfig`, a
//! `BackendConfig` or a `BucketConfig`.
//!
//! The edits are pure: a handler applies them to a copy first (so a bad value answers 400
//! before anything else happens), then hands the same edit to the store, which validates the
//! whole config by building it, persists it and swaps it in. Unknown names are refused, not
//! ignored.

use director_core::{
    addr::{BackendAddr, BackendUrl, Protocol},
    config::{
        BackendConfig, BucketConfig, CacheSettings, ClusterConfig, FastCgiSettings, HealthSettings,
    },
    schedule::SchedulerKind,
};
use serde_json::json;

use crate::{
    error::ApiError,
    params::{Param, Params},
};

/// x0's and Director's names of cluster settings, for the docs and the unknown-key message.
pub(crate) const CLUSTER_KEYS: &[&str] = &[
    "enabled",
    "scheduler",
    "shaper",
    "queue-limit",
    "queue-timeout",
    "retry-after",
    "max-retry-count",
    "enqueue-on-unavailable",
    "on-client-abort",
    "connect-timeout",
    "read-timeout",
    "write-timeout",
    "sticky-offline-mode",
    "health-check-host-header",
    "health-check-request-path",
    "health-check-fcgi-script-filename",
    "cache-enabled",
    "cache-default-ttl",
    "cache-default-shadow-ttl",
    "cache-deliver-active",
    "cache-deliver-shadow",
    "allow-x-sendfile",
    "replay-body-limit",
    "response-headers",
    "hash-key",
    "ring-replicas",
    "shard-alt",
    "shard-warmup",
    "shard-rampup",
    "shard-healthy",
    "fallback-sticky",
    "unavailable-status",
    "max-idle-connections",
    "idle-timeout",
    "health-enabled",
    "health-mode",
    "health-interval",
    "health-offline-interval",
    "health-jitter",
    "health-timeout",
    "health-rise",
    "health-fall",
    "health-probe",
    "health-method",
    "health-path",
    "health-host",
    "health-expect",
    "health-script-filename",
    "health-sticky-offline",
    "health-passive",
    "health-passive-5xx",
    "cache-shadow-ttl",
    "cache-strategy",
    "cache-budget",
    "cache-max-object-size",
    "cache-purge-allow",
    "sendfile-roots",
    "fastcgi-document-root",
    "fastcgi-index",
    "fastcgi-script-extensions",
    "fastcgi-front-controller",
    "fastcgi-keep-connections",
    "fastcgi-max-idle-connections",
];

const HEALTH_MODES: &[&str] = &["paranoid", "opportunistic", "lazy"];

fn unknown(key: &str, known: &[&str]) -> ApiError {
    let mut e = ApiError::field(key, "unknown parameter");
    e.detail["known"] = json!(known);
    e
}

/// The defaults of a `[health]` table, as if it were written empty.
pub(crate) fn default_health() -> HealthSettings {
    serde_json::from_value(json!({})).expect("every health key has a default")
}

fn default_cache() -> CacheSettings {
    serde_json::from_value(json!({})).expect("every cache key has a default")
}

/// A cluster config with every default (what `PUT /:cluster` starts from).
pub(crate) fn default_cluster() -> ClusterConfig {
    serde_json::from_value(json!({})).expect("every cluster key has a default")
}

fn health(c: &mut ClusterConfig) -> &mut HealthSettings {
    c.health.get_or_insert_with(default_health)
}

fn cache(c: &mut ClusterConfig) -> &mut CacheSettings {
    c.cache.get_or_insert_with(default_cache)
}

fn fastcgi(c: &mut ClusterConfig) -> &mut FastCgiSettings {
    // The document root has no default; building refuses an empty one, naming the key.
    c.fastcgi
        .get_or_insert_with(|| FastCgiSettings::new(String::new()))
}

/// Applies cluster settings. Setting any health key turns health checking on (a cluster without
/// a `[health]` table treats every backend as online); `health-enabled=false` turns it off.
pub(crate) fn apply_cluster(params: &Params, c: &mut ClusterConfig) -> Result<(), ApiError> {
    for p in params.iter() {
        apply_cluster_key(p, c)?;
    }
    Ok(())
}

fn apply_cluster_key(p: Param<'_>, c: &mut ClusterConfig) -> Result<(), ApiError> {
    match p.key {
        "enabled" => c.enabled = p.bool()?,
        "scheduler" => c.scheduler = scheduler(p)?,
        "shaper" => {
            c.shaper = serde_json::from_value(json!(p.choice(&["htb", "x0"])?))
                .expect("the choices are the variants")
        }
        "queue-limit" => c.queue_limit = p.uint()?,
        "queue-timeout" => c.queue_timeout = p.opt_duration()?,
        "retry-after" => c.retry_after = p.whole_secs()?,
        "max-retry-count" => c.max_retry_count = p.uint()?,
        "enqueue-on-unavailable" => c.enqueue_on_unavailable = p.bool()?,
        "on-client-abort" => {
            c.on_client_abort =
                serde_json::from_value(json!(p.choice(&["close", "notify", "ignore"])?))
                    .expect("the choices are the variants")
        }
        "connect-timeout" => c.connect_timeout = p.opt_duration()?,
        "read-timeout" => c.read_timeout = p.opt_duration()?,
        "write-timeout" => c.write_timeout = p.opt_duration()?,
        "idle-timeout" => c.idle_timeout = p.opt_duration()?,
        "max-idle-connections" => {
            c.max_idle_connections = if p.is_unset() { None } else { Some(p.uint()?) }
        }
        "replay-body-limit" => c.replay_body_limit = p.uint()?,
        "response-headers" => c.response_headers = p.bool()?,
        "hash-key" => c.hash_key = p.opt_text()?,
        "ring-replicas" => c.ring_replicas = p.uint()?,
        "shard-alt" => c.shard_alt = p.uint()?,
        "shard-warmup" => c.shard_warmup = p.float()?,
        "shard-rampup" => c.shard_rampup = p.opt_duration()?,
        "shard-healthy" => c.shard_healthy = p.choice(&["chosen", "ignore", "all"])?,
        "fallback-sticky" => c.fallback_sticky = p.bool()?,
        "unavailable-status" => c.unavailable_status = p.uint()?,
        // x0 names of health settings.
        "sticky-offline-mode" | "health-sticky-offline" => {
            let on = p.bool()?;
            if on || c.health.is_some() {
                health(c).sticky_offline = on;
            }
        }
        "health-check-host-header" | "health-host" => health(c).host = p.text()?,
        "health-check-request-path" | "health-path" => health(c).path = p.text()?,
        "health-check-fcgi-script-filename" | "health-script-filename" => {
            let v = p.opt_text()?;
            if v.is_some() || c.health.is_some() {
                health(c).script_filename = v;
            }
        }
        "health-enabled" => {
            if p.bool()? {
                health(c);
            } else {
                c.health = None;
            }
        }
        "health-mode" => health(c).mode = p.choice(HEALTH_MODES)?,
        "health-interval" => health(c).interval = p.opt_duration()?,
        "health-offline-interval" => health(c).offline_interval = p.opt_duration()?,
        "health-jitter" => health(c).jitter = p.opt_duration()?,
        "health-timeout" => health(c).timeout = p.opt_duration()?,
        "health-rise" => health(c).rise = p.uint()?,
        "health-fall" => health(c).fall = p.uint()?,
        "health-probe" => health(c).probe = p.choice(&["http", "tcp"])?,
        "health-method" => health(c).method = p.text()?,
        "health-expect" => {
            health(c).expect = if p.is_unset() {
                None
            } else {
                Some(p.parsed_list("a list of status codes")?)
            }
        }
        "health-passive" => health(c).passive = p.bool()?,
        "health-passive-5xx" => health(c).passive_5xx = p.bool()?,
        // Cache settings (x0's names, and Director's).
        "cache-enabled" => {
            let on = p.bool()?;
            if on || c.cache.is_some() {
                cache(c).enabled = on;
            }
        }
        "cache-default-ttl" => cache(c).default_ttl = p.opt_duration()?,
        "cache-default-shadow-ttl" | "cache-shadow-ttl" => {
            cache(c).shadow_ttl = p.opt_duration()?
        }
        "cache-deliver-active" => cache(c).deliver_active = p.bool()?,
        "cache-deliver-shadow" => cache(c).deliver_shadow = p.bool()?,
        // x0's switch; Director serves files only from configured roots.
        "allow-x-sendfile" => {
            if !p.bool()? {
                c.sendfile = None;
            } else if c.sendfile.is_none() {
                return Err(ApiError::field(
                    p.key,
                    "X-Sendfile needs the directories it may serve: set sendfile-roots",
                ));
            }
        }
        "sendfile-roots" => {
            let roots = p.list()?;
            match (&mut c.sendfile, roots.is_empty()) {
                (_, true) => c.sendfile = None,
                (Some(s), false) => s.roots = roots,
                (None, false) => {
                    c.sendfile = Some(director_core::config::SendfileSettings {
                        roots,
                        accel_redirect: Default::default(),
                    })
                }
            }
        }
        "cache-strategy" => cache(c).strategy = p.choice(&["locked", "shadowed"])?,
        "cache-budget" => cache(c).budget = if p.is_unset() { None } else { Some(p.uint()?) },
        "cache-max-object-size" => {
            cache(c).max_object_size = if p.is_unset() { None } else { Some(p.uint()?) }
        }
        "cache-purge-allow" => cache(c).purge_allow = p.parsed_list("a list of IP addresses")?,
        // FastCGI mapping, needed before FastCGI backends can be added.
        "fastcgi-document-root" => fastcgi(c).document_root = p.text()?,
        "fastcgi-index" => fastcgi(c).index = p.text()?,
        "fastcgi-script-extensions" => {
            fastcgi(c).script_extensions = if p.is_unset() { None } else { Some(p.list()?) }
        }
        "fastcgi-front-controller" => fastcgi(c).front_controller = p.opt_text()?,
        "fastcgi-keep-connections" => fastcgi(c).keep_connections = p.bool()?,
        "fastcgi-max-idle-connections" => fastcgi(c).max_idle_connections = p.uint()?,
        other => return Err(unknown(other, CLUSTER_KEYS)),
    }
    Ok(())
}

fn scheduler(p: Param<'_>) -> Result<SchedulerKind, ApiError> {
    let text = p.text()?;
    serde_json::from_value(json!(text)).map_err(|_| {
        ApiError::field(
            p.key,
            "expected one of rr, chance, least-load, wrr, random, hash, shard, fallback",
        )
    })
}

/// Backend parameters (x0's and Director's).
pub(crate) const BACKEND_KEYS: &[&str] = &[
    "name",
    "role",
    "enabled",
    "capacity",
    "weight",
    "terminate-protection",
    "state",
    "protocol",
    "hostname",
    "host",
    "port",
    "path",
    "transport",
    "url",
    "health-check-interval",
    "health-check-mode",
    "health-interval",
    "health-mode",
];

/// Whether `params` name a backend's address (`url`, `hostname`, `host`, `port`, `path`): no
/// cluster parameter is called so, which tells x0's documented backend create, `PUT /:director`
/// with `hostname` and `port`, from a cluster create.
pub(crate) fn names_backend_address(params: &Params) -> bool {
    ["url", "hostname", "host", "port", "path"]
        .iter()
        .any(|k| params.get(k).is_some())
}

const ADDRESS_KEYS: &[&str] = &[
    "url",
    "protocol",
    "hostname",
    "host",
    "port",
    "path",
    "transport",
];

/// The URL the address parameters describe, if any is given: Director's `url`, or x0's
/// `protocol` with `hostname`/`host` + `port` (TCP) or `path` (UNIX socket). `current` fills in
/// what an update leaves out.
fn address(params: &Params, current: Option<&BackendUrl>) -> Result<Option<String>, ApiError> {
    if !ADDRESS_KEYS.iter().any(|k| params.get(k).is_some()) {
        return Ok(None);
    }
    if let Some(p) = params.get("transport") {
        p.choice(&["tcp", "local", "unix"])?;
    }
    if let Some(url) = params.get("url") {
        if let Some(other) = ["protocol", "hostname", "host", "port", "path"]
            .iter()
            .find(|k| params.get(k).is_some())
        {
            return Err(ApiError::field(
                other,
                "give either url, or protocol with host and port or path",
            ));
        }
        let url = url.text()?;
        url.parse::<BackendUrl>()
            .map_err(|e| ApiError::field("url", e))?;
        return Ok(Some(url));
    }
    let protocol = match params.get("protocol") {
        Some(p) => p.choice(&["http", "fastcgi"])?,
        None => match current.map(|u| u.protocol) {
            Some(Protocol::FastCgi) => "fastcgi".into(),
            _ => "http".into(),
        },
    };
    let host = params.get("hostname").or_else(|| params.get("host"));
    if let Some(path) = params.get("path") {
        if let Some(h) = host.or_else(|| params.get("port")) {
            return Err(ApiError::field(h.key, "give either path, or host and port"));
        }
        let path = path.text()?;
        if !path.starts_with('/') {
            return Err(ApiError::field("path", "a UNIX socket path is absolute"));
        }
        let scheme = if protocol == "fastcgi" {
            "fastcgi+unix"
        } else {
            "unix"
        };
        return Ok(Some(format!("{scheme}:{path}")));
    }
    let (cur_host, cur_port) = match current.map(|u| &u.addr) {
        Some(BackendAddr::Tcp(a)) => (Some(a.ip().to_string()), Some(a.port())),
        Some(BackendAddr::Host(h, p)) => (Some(h.to_string()), Some(*p)),
        _ => (None, None),
    };
    let host = match host {
        Some(h) => h.text()?,
        None => cur_host.ok_or_else(|| {
            ApiError::field("hostname", "missing: give hostname and port, path, or url")
        })?,
    };
    let port: u16 = match params.get("port") {
        Some(p) => p.uint()?,
        None => cur_port.ok_or_else(|| ApiError::field("port", "missing"))?,
    };
    if port == 0 {
        return Err(ApiError::field("port", "must be greater than zero"));
    }
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let url = format!("{protocol}://{host}:{port}");
    url.parse::<BackendUrl>()
        .map_err(|e| ApiError::field(params.get("hostname").map_or("host", |p| p.key), e))?;
    Ok(Some(url))
}

/// A new backend named `name` from `params` (`name` itself is read by the handler).
/// Defaults: enabled, capacity 0 (no limit), weight 1, role active, protocol http.
pub(crate) fn new_backend(name: &str, params: &Params) -> Result<BackendConfig, ApiError> {
    let url = address(params, None)?.ok_or_else(|| {
        ApiError::field("hostname", "missing: give hostname and port, path, or url")
    })?;
    let mut b: BackendConfig = serde_json::from_value(json!({ "name": name, "url": url }))
        .map_err(|e| ApiError::field("url", e))?;
    apply_backend_settings(params, &mut b)?;
    Ok(b)
}

/// Applies backend updates. The address cannot change (x0: create a new backend instead), but
/// sending the current one again is accepted, so a client may post back what it read.
pub(crate) fn apply_backend(params: &Params, b: &mut BackendConfig) -> Result<(), ApiError> {
    let current: Option<BackendUrl> = b.url.parse().ok();
    if let Some(url) = address(params, current.as_ref())? {
        let same = url.parse::<BackendUrl>().ok() == current;
        if !same {
            let key = ADDRESS_KEYS
                .iter()
                .find(|k| params.get(k).is_some())
                .copied()
                .unwrap_or("url");
            return Err(ApiError::field(
                key,
                "a backend's address cannot be changed; create a new backend and delete this one",
            ));
        }
    }
    apply_backend_settings(params, b)
}

fn apply_backend_settings(params: &Params, b: &mut BackendConfig) -> Result<(), ApiError> {
    for p in params.iter() {
        match p.key {
            k if ADDRESS_KEYS.contains(&k) => {}
            "name" => {
                if p.text()? != b.name {
                    return Err(ApiError::field("name", "a backend cannot be renamed"));
                }
            }
            "role" => {
                b.role = serde_json::from_value(json!(p.text()?))
                    .map_err(|_| ApiError::field("role", "expected active or backup"))?
            }
            "enabled" => b.enabled = p.bool()?,
            // HAProxy's operator states: `maint` is disabled, `drain` a soft drain.
            "state" => {
                let state = p.choice(&["ready", "drain", "maint"])?;
                (b.enabled, b.drain) = (state != "maint", state == "drain");
            }
            "capacity" => b.capacity = p.uint()?,
            "weight" => b.weight = p.weight()?,
            "terminate-protection" => b.terminate_protection = p.bool()?,
            // x0 probes each backend on its own schedule: these override the cluster's
            // `health-interval` and `health-mode` for this backend.
            "health-check-interval" | "health-interval" => {
                let interval = p.duration()?;
                if interval.0.is_zero() {
                    return Err(ApiError::field(p.key, "an interval is greater than zero"));
                }
                b.health_interval = Some(interval);
            }
            "health-check-mode" | "health-mode" => b.health_mode = Some(p.choice(HEALTH_MODES)?),
            other => return Err(unknown(other, BACKEND_KEYS)),
        }
    }
    Ok(())
}

/// Bucket parameters.
pub(crate) const BUCKET_KEYS: &[&str] = &["name", "rate", "ceil", "parent"];

/// A new bucket: `rate` is required, `ceil` defaults to the rate, `parent` to the root.
pub(crate) fn new_bucket(name: &str, params: &Params) -> Result<BucketConfig, ApiError> {
    let rate = params
        .get("rate")
        .ok_or_else(|| ApiError::field("rate", "missing"))?
        .float()?;
    let mut bucket = BucketConfig {
        name: name.to_owned(),
        rate,
        ceil: None,
        parent: None,
    };
    for p in params.iter() {
        match p.key {
            "name" | "rate" => {}
            "ceil" => bucket.ceil = Some(p.float()?),
            "parent" => bucket.parent = p.opt_text()?.filter(|p| p != "root"),
            other => return Err(unknown(other, BUCKET_KEYS)),
        }
    }
    Ok(bucket)
}

/// Applies bucket updates (`rate`, `ceil`); the parent cannot change.
pub(crate) fn apply_bucket(params: &Params, bucket: &mut BucketConfig) -> Result<(), ApiError> {
    for p in params.iter() {
        match p.key {
            "rate" => bucket.rate = p.float()?,
            "ceil" => bucket.ceil = Some(p.float()?),
            "name" => {
                if p.text()? != bucket.name {
                    return Err(ApiError::field("name", "a bucket cannot be renamed"));
                }
            }
            "parent" => {
                let parent = p.opt_text()?.filter(|p| p != "root");
                if parent != bucket.parent {
                    return Err(ApiError::field(
                        "parent",
                        "a bucket cannot move; delete it and create it under the new parent",
                    ));
                }
            }
            other => return Err(unknown(other, BUCKET_KEYS)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
