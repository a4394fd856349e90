//! The config model of clusters, backends and routes, and its validation.
//!
//! These types deserialize from the `[clusters.*]` and `[[routes]]` parts of Director's TOML
//! config (kebab-case keys, unknown keys refused). [`crate::registry::Snapshot::build`] turns
//! them into live clusters; every refusal names the key path that caused it, so the binary can
//! point at the file and line.

use std::{collections::BTreeMap, fmt, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use crate::schedule::SchedulerKind;
use crate::shaper::ShaperMode;

/// A duration in the config: a number of seconds (`10`, `0.25`) or a string with a unit
/// (`"250ms"`, `"10s"`, `"2m"`, `"1h"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// Parses `"250ms"`, `"10s"`, `"1.5s"`, `"2m"`, `"1h"` or a bare number of seconds.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration such as \"10s\" or \"250ms\""))?;
        let scale = match unit.trim() {
            "" | "s" | "sec" | "secs" => 1.0,
            "ms" => 0.001,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "unknown duration unit {other:?}; use ms, s, m or h"
                ));
            }
        };
        Duration::try_from_secs_f64(value * scale)
            .map(ConfigDuration)
            .map_err(|_| format!("{text:?} is out of range"))
    }
}

impl fmt::Display for ConfigDuration {
    /// The shortest exact form: `"250ms"`, `"10s"`, `"1.5s"`, `"2m"`, `"1h"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let ms = d.as_millis();
        if !d.subsec_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}s", d.as_secs_f64())
        } else if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else if ms != 0 && ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms != 0 && ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration: seconds as a number, or a string such as \"10s\" or \"250ms\"",
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ConfigDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(|v| ConfigDuration(Duration::from_secs(v)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Duration::try_from_secs_f64(v)
                    .map(ConfigDuration)
                    .map_err(|_| E::custom("a duration must be a non-negative number of seconds"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                ConfigDuration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn is_false(b: &bool) -> bool {
    !b
}

fn yes() -> bool {
    true
}

/// Connection timeouts and pool settings shared by clusters and direct routes.
///
/// The same keys appear flat in `[clusters.NAME]` and `[[routes]]` (serde cannot refuse unknown
/// keys through `flatten`, so each of those structs lists them and hands out this view).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpstreamSettings {
    /// How long connecting to a backend may take (default 5s).
    pub connect_timeout: Option<ConfigDuration>,
    /// How long a backend may stay silent while Director waits for response bytes (default 60s).
    pub read_timeout: Option<ConfigDuration>,
    /// How long a write to a backend may make no progress (default 30s).
    pub write_timeout: Option<ConfigDuration>,
    /// Idle keep-alive connections kept per backend (default 128).
    pub max_idle_connections: Option<usize>,
    /// How long an idle keep-alive connection is kept (default 60s).
    pub idle_timeout: Option<ConfigDuration>,
}

/// What happens to a backend's exchange when the client goes away before the response is
/// complete (x0's `on-client-abort`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAbort {
    /// Close the backend connection; the backend's slot is free at once.
    #[default]
    Close,
    /// FastCGI: send `ABORT_REQUEST` and read until the application ends the request. HTTP has
    /// no abort message, so HTTP backends are closed.
    Notify,
    /// Read the response to its end and discard it, so the backend never notices; the request
    /// keeps its slot of the backend's capacity until then.
    Ignore,
}

impl ClientAbort {
    /// Whether this is the default, `close`.
    pub fn is_close(&self) -> bool {
        *self == ClientAbort::Close
    }
}

/// A cluster: `[clusters.NAME]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterConfig {
    /// Whether the cluster takes requests (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The scheduler: `rr` (default), `chance` or `least-load`.
    #[serde(default)]
    pub scheduler: SchedulerKind,
    /// `Retry-After` seconds sent with a 503 (default 10; 0 sends none).
    #[serde(default = "default_retry_after")]
    pub retry_after: u32,
    /// Requests that may wait in one bucket's queue (default 128).
    #[serde(default = "default_queue_limit")]
    pub queue_limit: usize,
    /// How long a request may wait in a queue before it gets 504 (default 60s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_timeout: Option<ConfigDuration>,
    /// Queue requests while no backend is available, instead of answering 503 at once
    /// (default false).
    #[serde(default)]
    pub enqueue_on_unavailable: bool,
    /// What happens to the backend's exchange when the client goes away before the response
    /// is complete (x0's `on-client-abort`; default `close`).
    #[serde(default, skip_serializing_if = "ClientAbort::is_close")]
    pub on_client_abort: ClientAbort,
    /// Attempts after the first when a backend fails before answering (default 3).
    #[serde(default = "default_max_retry_count")]
    pub max_retry_count: u32,
    /// Request bodies up to this many bytes are kept so a retry can send them again
    /// (default 65536).
    #[serde(default = "default_replay_body_limit")]
    pub replay_body_limit: usize,
    /// Send `X-Director-Backend` and `X-Director-Bucket` response headers (default true).
    #[serde(default = "yes")]
    pub response_headers: bool,
    /// Read response bodies into a buffer so the backend's slot is freed before a slow client
    /// has read them (nginx's `proxy_buffering`): `false` (default), `true` (1 MiB of memory
    /// per response) or the memory per response in bytes; beyond it a temporary file.
    #[serde(default, skip_serializing_if = "BufferResponses::is_off")]
    pub buffer_responses: BufferResponses,
    /// The most a buffered response writes to its temporary file, in bytes (default 1 GiB;
    /// 0: memory only); the rest streams at the client's pace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_temp_file_size: Option<u64>,
    /// How buckets share the capacity: `htb` (default: rates assured, idle tokens borrowed up
    /// to the ceil) or `x0` (x0's arithmetic: borrowing only from unreserved tokens).
    #[serde(default, skip_serializing_if = "ShaperMode::is_htb")]
    pub shaper: ShaperMode,
    /// Buckets partitioning the cluster's capacity: `[[clusters.NAME.buckets]]`.
    #[serde(default)]
    pub buckets: Vec<BucketConfig>,
    /// The request key of `hash` and `shard`: `url`, `path`, `host`, `client-ip`,
    /// `header:NAME`, `cookie:NAME`, joined with `+` (default `host+url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<String>,
    /// Points on the hash ring per unit of weight (default 67, as Varnish's shard).
    #[serde(default = "default_replicas")]
    pub ring_replicas: u32,
    /// Shard: take the n-th alternative backend instead of the key's owner (default 0).
    #[serde(default)]
    pub shard_alt: usize,
    /// Shard: the fraction of requests sent to the next backend, to keep it warm (default 0).
    #[serde(default)]
    pub shard_warmup: f64,
    /// Shard: a backend that just came up gets its share gradually over this long (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_rampup: Option<ConfigDuration>,
    /// Shard: `chosen` (default), `ignore` or `all` (Varnish's `healthy`).
    #[serde(default = "default_shard_healthy")]
    pub shard_healthy: String,
    /// Fallback: keep using the current backend while it stays available (default false).
    #[serde(default)]
    pub fallback_sticky: bool,
    /// The status when no backend can take a request: 503 (default) or 502.
    #[serde(default = "default_unavailable_status")]
    pub unavailable_status: u16,
    /// How long connecting to a backend may take (default 5s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<ConfigDuration>,
    /// How long a backend may stay silent while Director waits for response bytes (default 60s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_timeout: Option<ConfigDuration>,
    /// How long a write to a backend may make no progress (default 30s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_timeout: Option<ConfigDuration>,
    /// Idle keep-alive connections kept per backend (default 128).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_idle_connections: Option<usize>,
    /// How long an idle keep-alive connection is kept (default 60s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<ConfigDuration>,
    /// Its members, in order: `[[clusters.NAME.backends]]`.
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    /// How its FastCGI backends map requests to scripts: `[clusters.NAME.fastcgi]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fastcgi: Option<FastCgiSettings>,
    /// Health checking of its backends: `[clusters.NAME.health]` (none: every backend counts as
    /// online).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSettings>,
    /// The object cache in front of the cluster: `[clusters.NAME.cache]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSettings>,
    /// X-Sendfile: backends may have Director serve files under these roots
    /// (`[clusters.NAME.sendfile]`; none: the headers are stripped and never honoured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sendfile: Option<SendfileSettings>,
}

/// `buffer-responses`: `false`, `true` or the memory per response in bytes.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum BufferResponses {
    /// `false`: stream (the default); `true`: buffer with 1 MiB of memory per response.
    Switch(bool),
    /// Buffer with this many bytes of memory per response.
    Memory(u64),
}

impl Default for BufferResponses {
    fn default() -> Self {
        BufferResponses::Switch(false)
    }
}

impl BufferResponses {
    /// Whether responses stream (the default).
    pub fn is_off(&self) -> bool {
        *self == BufferResponses::Switch(false)
    }
}

/// X-Sendfile and X-Accel-Redirect: `[clusters.NAME.sendfile]`.
///
/// A backend answering `X-Sendfile: /srv/files/a.bin` (or `X-Accel-Redirect: /protected/a.bin`
/// with `"/protected/" = "/srv/files/"`) gets the file served by Director, provided it lies
/// inside one of `roots` once symlinks and `..` are resolved.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SendfileSettings {
    /// Directories files may be served from (at least one; absolute; must exist).
    pub roots: Vec<String>,
    /// nginx's X-Accel-Redirect: URI prefix → directory (inside a root) it maps to.
    #[serde(default)]
    pub accel_redirect: BTreeMap<String, String>,
}

/// The object cache in front of a cluster: `[clusters.NAME.cache]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheSettings {
    /// Whether the cache is used (default true when the table is present).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Answer requests from the cache (x0's `deliver-active`; default true). Off, the cache
    /// only keeps copies for shadow delivery.
    #[serde(default = "yes")]
    pub deliver_active: bool,
    /// Serve a stale copy when no backend can answer (x0's `deliver-shadow`; default true).
    #[serde(default = "yes")]
    pub deliver_shadow: bool,
    /// Freshness for responses that carry none, where RFC 9111 allows a heuristic (default 20s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_ttl: Option<ConfigDuration>,
    /// How long past its lifetime a stale copy may be served when no backend can answer, or
    /// while a refresh runs under `shadowed` (default 60s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_ttl: Option<ConfigDuration>,
    /// `locked` (default: others wait for the one refresh) or `shadowed` (others get the stale
    /// copy while one refresh runs).
    #[serde(default = "default_strategy")]
    pub strategy: String,
    /// How long a request waits for another request's fetch of the same object before going
    /// upstream itself, or serving a stale copy (default 10s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_timeout: Option<ConfigDuration>,
    /// Bytes the cache may hold, headers and bookkeeping included (default 64 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<usize>,
    /// Larger responses stream through uncached (default 1 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_object_size: Option<usize>,
    /// Client IPs allowed to `PURGE` (default none).
    #[serde(default)]
    pub purge_allow: Vec<std::net::IpAddr>,
    /// A response to a request carrying a cookie is stored only when it says `public` or
    /// `s-maxage` (default true); false: RFC 9111's rules alone, heuristics included.
    #[serde(default = "yes")]
    pub cookie_requests_private: bool,
    /// Cookie names that do not make a request private; a trailing `*` matches a prefix
    /// (default none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_cookies: Vec<String>,
}

fn default_strategy() -> String {
    "locked".into()
}

/// Health checking of a cluster's backends: `[clusters.NAME.health]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HealthSettings {
    /// `paranoid` (always probe; default), `opportunistic` (live successes count as probes;
    /// probe idle backends only) or `lazy` (probe only after a failure, until the backend is back).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Time between probes (default 2s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<ConfigDuration>,
    /// Time between probes while offline (default: `interval`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline_interval: Option<ConfigDuration>,
    /// Random extra delay up to this before each probe (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<ConfigDuration>,
    /// How long one probe may take (default 2s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<ConfigDuration>,
    /// Consecutive successes that bring a backend online (default 2).
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures that take it offline (default 1, as x0).
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// `http` (default for HTTP backends; FastCGI backends get a FastCGI probe) or `tcp`
    /// (connect only).
    #[serde(default = "default_probe")]
    pub probe: String,
    /// HTTP probe: method (default `GET`).
    #[serde(default = "default_method")]
    pub method: String,
    /// HTTP and FastCGI probe: the path asked for (default `/`).
    #[serde(default = "default_probe_path")]
    pub path: String,
    /// HTTP probe: the `Host` header (default `backend-healthcheck`, as x0).
    #[serde(default = "default_probe_host")]
    pub host: String,
    /// Statuses that count as healthy (default 200..=399).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<Vec<u16>>,
    /// FastCGI probe: the `SCRIPT_FILENAME` to run (default: document root + path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script_filename: Option<String>,
    /// A backend that went offline and came back stays disabled until enabled again
    /// (default false).
    #[serde(default)]
    pub sticky_offline: bool,
    /// Failed live requests count towards `fall` (default true).
    #[serde(default = "yes")]
    pub passive: bool,
    /// Live 5xx responses count as failures too (default false: a 5xx is often the
    /// application's answer rather than a sick server).
    #[serde(default)]
    pub passive_5xx: bool,
    /// Live failures may hold out at most this percentage of the cluster's backends in service
    /// (default 50, as Envoy's `max_ejection_percent`); the last available one never leaves
    /// on live failures alone. Probes are not capped.
    #[serde(default = "default_max_ejection_percent")]
    pub max_ejection_percent: u8,
    /// While some but fewer than this percentage of the active backends in service are
    /// available, the cluster balances over all of them, offline ones included (default 50, as
    /// Envoy's `healthy_panic_threshold`; 0 turns panic mode off).
    #[serde(default = "default_panic_threshold")]
    pub panic_threshold: u8,
}

impl Default for HealthSettings {
    /// The settings of an empty `[health]` table.
    fn default() -> Self {
        HealthSettings {
            mode: default_mode(),
            interval: None,
            offline_interval: None,
            jitter: None,
            timeout: None,
            rise: default_rise(),
            fall: default_fall(),
            probe: default_probe(),
            method: default_method(),
            path: default_probe_path(),
            host: default_probe_host(),
            expect: None,
            script_filename: None,
            sticky_offline: false,
            passive: true,
            passive_5xx: false,
            max_ejection_percent: default_max_ejection_percent(),
            panic_threshold: default_panic_threshold(),
        }
    }
}

fn default_mode() -> String {
    "paranoid".into()
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    1
}
fn default_max_ejection_percent() -> u8 {
    50
}
fn default_panic_threshold() -> u8 {
    50
}
fn default_probe() -> String {
    "http".into()
}
fn default_method() -> String {
    "GET".into()
}
fn default_probe_path() -> String {
    "/".into()
}
fn default_probe_host() -> String {
    "backend-healthcheck".into()
}

/// FastCGI settings of a cluster or road-warrior route: `[clusters.NAME.fastcgi]` or
/// `[routes.fastcgi]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FastCgiSettings {
    /// The application's document root as the application sees it (`DOCUMENT_ROOT`, and the
    /// prefix of `SCRIPT_FILENAME`).
    pub document_root: String,
    /// Appended to paths that end in `/` (default `index.php`; `""` appends nothing).
    #[serde(default = "default_index")]
    pub index: String,
    /// The script is the path up to the first segment ending in one of these; the rest is
    /// `PATH_INFO` (default `[".php"]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script_extensions: Option<Vec<String>>,
    /// Instead: every request runs this script (such as `/index.php`), and the whole path is
    /// `PATH_INFO`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub front_controller: Option<String>,
    /// Extra CGI parameters sent with every request.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Ask the application to keep connections open between requests (`FCGI_KEEP_CONN`,
    /// default true).
    #[serde(default = "yes")]
    pub keep_connections: bool,
    /// Idle connections kept per backend (default 1). Each one holds an application worker
    /// (a php-fpm child) until it is closed, so the sum over everything sharing a php-fpm
    /// pool must stay well below its `pm.max_children`.
    #[serde(default = "default_fastcgi_idle")]
    pub max_idle_connections: usize,
    /// Pass request headers whose names contain `_` (nginx's `underscores_in_headers`,
    /// default false): `X_Forwarded_For` would otherwise reach the application as a twin of
    /// `X-Forwarded-For`.
    #[serde(default)]
    pub underscores_in_headers: bool,
    /// Answer 404 without asking the application when `SCRIPT_FILENAME` is not a regular file
    /// (nginx's `try_files $uri =404`). Default: on when the document root is a directory on
    /// Director's own filesystem, off otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_script: Option<bool>,
    /// A request body of unknown length (chunked, or HTTP/2 without `content-length`) is read
    /// whole before the application is asked, since CGI needs its `CONTENT_LENGTH`: this many
    /// bytes in memory (default 65536), the rest in a temporary file in `spool-dir`.
    #[serde(default = "default_request_buffer_memory")]
    pub request_buffer_memory: usize,
    /// The directory of those temporary files (default: the system's, `$TMPDIR` or `/tmp`).
    /// Each file is unlinked as soon as it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_dir: Option<String>,
}

fn default_request_buffer_memory() -> usize {
    64 * 1024
}

impl FastCgiSettings {
    /// The settings with every default, for `document_root`.
    pub fn new(document_root: impl Into<String>) -> Self {
        FastCgiSettings {
            document_root: document_root.into(),
            index: default_index(),
            script_extensions: None,
            front_controller: None,
            params: BTreeMap::new(),
            keep_connections: true,
            max_idle_connections: default_fastcgi_idle(),
            underscores_in_headers: false,
            check_script: None,
            request_buffer_memory: default_request_buffer_memory(),
            spool_dir: None,
        }
    }
}

/// One idle connection per backend: it keeps traffic on a warm connection (saving a connect
/// and php-fpm's accept, about 0.1 ms on loopback; more idle connections measured no faster),
/// while pinning at most one php-fpm child per backend and cluster when traffic stops.
fn default_fastcgi_idle() -> usize {
    1
}

fn default_index() -> String {
    "index.php".into()
}

fn default_retry_after() -> u32 {
    10
}
fn default_replicas() -> u32 {
    67
}
fn default_shard_healthy() -> String {
    "chosen".into()
}
fn default_unavailable_status() -> u16 {
    503
}
fn default_queue_limit() -> usize {
    128
}
fn default_max_retry_count() -> u32 {
    3
}
fn default_replay_body_limit() -> usize {
    64 * 1024
}

/// A bucket: `[[clusters.NAME.buckets]]`. `rate` is the share of the parent's capacity the
/// bucket is assured of, `ceil` the most it may use by borrowing from its parent.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BucketConfig {
    /// Unique in the cluster (`root` is the implicit top bucket).
    pub name: String,
    /// Assured fraction of the parent, 0..=1.
    pub rate: f64,
    /// Upper fraction of the parent, rate..=1 (default: the rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceil: Option<f64>,
    /// The parent bucket (default `root`); it must be listed earlier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

macro_rules! upstream_view {
    ($ty:ty) => {
        impl $ty {
            /// The timeout and pool keys of this table.
            pub fn upstream(&self) -> UpstreamSettings {
                UpstreamSettings {
                    connect_timeout: self.connect_timeout,
                    read_timeout: self.read_timeout,
                    write_timeout: self.write_timeout,
                    max_idle_connections: self.max_idle_connections,
                    idle_timeout: self.idle_timeout,
                }
            }
        }
    };
}
upstream_view!(ClusterConfig);
upstream_view!(RouteConfig);

/// A cluster member: `[[clusters.NAME.backends]]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackendConfig {
    /// Unique within the cluster.
    pub name: String,
    /// Where it is: `http://host:port`, `http://[v6]:port`, `unix:/path`.
    pub url: String,
    /// Whether it takes requests (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Concurrent requests it takes (default 0: no limit).
    #[serde(default)]
    pub capacity: u32,
    /// Its weight for `wrr`, `random`, `hash` and `shard` (default 1): a real number,
    /// `0..=1000000`; 0 takes it out of balancing.
    #[serde(default)]
    pub weight: crate::weight::Weight,
    /// `active` (default) or `backup` (x0's `standby` is accepted too).
    #[serde(default)]
    pub role: crate::backend::Role,
    /// Refuse to drain and remove it (default false).
    #[serde(default)]
    pub terminate_protection: bool,
    /// HAProxy's soft drain: it stays a member and is health-checked, but gets no new balanced
    /// requests (pinned ones still reach it). Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub drain: bool,
    /// Its own time between probes, over the cluster's `health.interval` (x0 scheduled probes
    /// per backend). Setting it on a cluster without `[health]` checks this backend only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_interval: Option<ConfigDuration>,
    /// Its own probe mode, over the cluster's `health.mode`; as `health-interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_mode: Option<String>,
}

impl BackendConfig {
    /// A backend `name` at `url` with every default.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        BackendConfig {
            name: name.into(),
            url: url.into(),
            enabled: true,
            capacity: 0,
            weight: crate::weight::Weight::ONE,
            role: crate::backend::Role::default(),
            terminate_protection: false,
            drain: false,
            health_interval: None,
            health_mode: None,
        }
    }

    /// The health settings that apply to this backend in `cluster`: the cluster's table with
    /// this backend's own interval and mode over it; `None` when nothing checks it.
    pub fn health(&self, cluster: &ClusterConfig) -> Option<HealthSettings> {
        if cluster.health.is_none() && self.health_interval.is_none() && self.health_mode.is_none()
        {
            return None;
        }
        let mut health = cluster.health.clone().unwrap_or_default();
        if let Some(interval) = self.health_interval {
            health.interval = Some(interval);
        }
        if let Some(mode) = &self.health_mode {
            health.mode.clone_from(mode);
        }
        Some(health)
    }
}

/// A route: `[[routes]]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RouteConfig {
    /// Host pattern: `example.com`, `*.example.com` or `*` (default: any host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path prefix (default `/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Balance over this cluster...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// ...or send straight to this backend URL (road warrior)...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// ...or answer 403 for every request it matches (no `cluster` or `backend`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub deny: bool,
    /// The largest request body this route takes, in bytes, over `[server]`'s
    /// `max-request-body` (0: no limit). Larger ones get 413.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_body: Option<u64>,
    /// FastCGI settings when `backend` is a FastCGI URL: `[routes.fastcgi]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fastcgi: Option<FastCgiSettings>,
    /// X-Sendfile for a `backend` route: `[routes.sendfile]`, as a cluster's (none: the headers
    /// are stripped and never honoured). A cluster route uses its cluster's table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sendfile: Option<SendfileSettings>,
    /// The bucket of this route's requests (default: the root bucket)...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// ...or the bucket named by this request header...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_header: Option<String>,
    /// ...or by this cookie (falling back to `bucket`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_cookie: Option<String>,
    /// Client-side routing: a backend named by this cookie gets the request directly,
    /// ignoring its capacity (x0's `director.pass`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_cookie: Option<String>,
    /// The same, by request header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_header: Option<String>,
    /// The same, by query parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_query: Option<String>,
    /// How long connecting to a backend may take (for a `backend` route; default 10s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<ConfigDuration>,
    /// How long a backend may stay silent while Director waits for response bytes (default 120s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_timeout: Option<ConfigDuration>,
    /// How long a write to a backend may make no progress (default 10s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_timeout: Option<ConfigDuration>,
    /// Idle keep-alive connections kept per backend (default 128).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_idle_connections: Option<usize>,
    /// How long an idle keep-alive connection is kept (default 60s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<ConfigDuration>,
    /// Serve files from this directory (absolute, must exist) before the route's `cluster` or
    /// `backend`, which gets what no file answers (see [`crate::files`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// The files tried for a request under `root`, in order: `$uri` is the request path
    /// (default `["$uri"]`; `"$uri/index.html"` serves a directory's index).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub try_files: Option<Vec<String>>,
    /// File name endings never served from `root`: such requests go to the route's target
    /// (default `[".php", ".phtml", ".phar"]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub never_serve: Option<Vec<String>>,
    /// Whether paths with a segment starting with `.` may be served or passed on (default
    /// false: 403 for `/.git/config`, `/.htaccess`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub dotfiles: bool,
    /// Directories outside `root` that symlinks under it may lead into (absolute; they must
    /// exist). Default none: a symlink leading out of `root` gets 403.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_symlinks_to: Option<Vec<String>>,
    /// Serve a file's `.br` or `.gz` sibling when the client accepts that encoding (default
    /// false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub precompressed: bool,
    /// Rewrite rules tried after the files, before the request is passed on:
    /// `[[routes.rewrites]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<RewriteConfig>,
}

/// A rewrite rule of a route with a `root`: `[[routes.rewrites]]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RewriteConfig {
    /// A regular expression over the request path (no look-around).
    pub r#match: String,
    /// The new path and query: `$1`..`$9`, `${name}`, `$0`, `$$`.
    pub to: String,
    /// Apply only when no file is at the path under `root` (default false).
    #[serde(default)]
    pub if_missing: bool,
    /// Stop at this rule when it matched (default true, nginx's `last`).
    #[serde(default = "yes")]
    pub last: bool,
    /// Append the client's query to the new one (default true).
    #[serde(default = "yes")]
    pub keep_query: bool,
}

/// The clusters and routes of a config.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProxyConfig {
    /// Clusters by name.
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// Routes in config order.
    pub routes: Vec<RouteConfig>,
}

/// A config value Director refuses, and where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The key path, such as `clusters.app.backends[1].url`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_defaults_are_an_empty_table() {
        let empty: HealthSettings = toml::from_str("").unwrap();
        assert_eq!(empty, HealthSettings::default());
        let backend: BackendConfig = toml::from_str("name = \"a\"\nurl = \"http://x:1\"").unwrap();
        assert_eq!(backend, BackendConfig::new("a", "http://x:1"));
    }

    #[test]
    fn a_backend_overrides_the_clusters_interval_and_mode() {
        let cluster: ClusterConfig = toml::from_str(
            "[health]\nmode = \"lazy\"\ninterval = \"5s\"\nrise = 3\n\
             [[backends]]\nname = \"a\"\nurl = \"http://x:1\"\n\
             [[backends]]\nname = \"b\"\nurl = \"http://x:2\"\nhealth-interval = \"250ms\"\nhealth-mode = \"paranoid\"\n",
        )
        .unwrap();
        let a = cluster.backends[0].health(&cluster).unwrap();
        assert_eq!(a, cluster.health.clone().unwrap());
        let b = cluster.backends[1].health(&cluster).unwrap();
        assert_eq!(
            (b.mode.as_str(), b.interval, b.rise),
            (
                "paranoid",
                Some(ConfigDuration(Duration::from_millis(250))),
                3
            )
        );

        // Without a [health] table only the backend that asks for probes gets them.
        let mut bare = cluster.clone();
        bare.health = None;
        assert_eq!(bare.backends[0].health(&bare), None);
        let b = bare.backends[1].health(&bare).unwrap();
        assert_eq!((b.mode.as_str(), b.rise), ("paranoid", 2));
    }

    #[test]
    fn durations() {
        let d = |s| ConfigDuration::parse(s).map(|d| d.0);
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(d("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(d("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(d("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(d("7"), Ok(Duration::from_secs(7)));
        assert!(d("ten").is_err());
        assert!(d("10 parsecs").is_err());
        assert!(d("-1s").is_err());
    }

    #[test]
    fn durations_print_as_they_parse() {
        for text in ["250ms", "10s", "1.5s", "2m", "1h", "0s", "90s", "1500ms"] {
            let d = ConfigDuration::parse(text).unwrap();
            let printed = d.to_string();
            assert_eq!(
                ConfigDuration::parse(&printed),
                Ok(d),
                "{text} printed as {printed}"
            );
        }
        assert_eq!(
            ConfigDuration(Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
        assert_eq!(ConfigDuration(Duration::from_secs(120)).to_string(), "2m");
    }
}
