//! The main config file: `[server]`, `[clusters.*]` and `[[routes]]`, in TOML.
//!
//! Loading never half-succeeds: the file is parsed, every key checked (unknown keys are refused),
//! and the clusters and routes built, before anything is used. Every refusal names the file, the
//! line and column, and the key path, e.g.
//! `director.toml:12:7: clusters.app.backends[1].url: invalid backend URL ...`.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use director_core::{
    config::{ClusterConfig, ConfigDuration, ConfigError, ProxyConfig, RouteConfig},
    registry::Snapshot,
};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};

/// The whole config file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Listener and process settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Clusters by name.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// Routes.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// `[server]`: listeners, headers, timeouts, logging.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// Addresses to listen on: `127.0.0.1:8080`, `[::]:8080` (dual-stack), `unix:/path`.
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    /// Worker threads (default: one per CPU). 1 runs everything on a single thread.
    pub threads: Option<usize>,
    /// The `Via` pseudonym; an empty string sends no `Via`.
    #[serde(default = "default_pseudonym")]
    pub pseudonym: String,
    /// Keep clients' own `X-Forwarded-Proto`/`-Host` (only when every client is a trusted proxy).
    #[serde(default)]
    pub trust_forwarded_headers: bool,
    /// How long a client may take to send a request head.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: ConfigDuration,
    /// How long a client may send no request body bytes while Director waits for them (408).
    #[serde(default = "default_client_body_timeout")]
    pub client_body_timeout: ConfigDuration,
    /// How long an upgraded connection (WebSocket…) may carry nothing either way before both
    /// sides are closed.
    #[serde(default = "default_tunnel_idle_timeout")]
    pub tunnel_idle_timeout: ConfigDuration,
    /// The largest request head accepted, in bytes (larger ones get 431).
    #[serde(default = "default_max_header_size")]
    pub max_header_size: usize,
    /// The most header fields in an HTTP/1 request head (more get 431).
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// How long a write to a client may make no progress while it is sent a response (the
    /// client stopped reading); then the connection is closed.
    #[serde(default = "default_send_timeout")]
    pub send_timeout: ConfigDuration,
    /// How long a connection may stay idle between requests (HTTP/1 keep-alive, or HTTP/2 with
    /// no open stream, then closed with GOAWAY).
    #[serde(default = "default_keep_alive_timeout")]
    pub keep_alive_timeout: ConfigDuration,
    /// The most connections each listener holds at once; accepting pauses at this many.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// The most concurrent streams a client may open on one HTTP/2 connection.
    #[serde(default = "default_h2_max_concurrent_streams")]
    pub h2_max_concurrent_streams: u32,
    /// How often an HTTP/2 connection is pinged to find a dead peer; `"0s"` sends no pings.
    #[serde(default = "default_h2_ping_interval")]
    pub h2_ping_interval: ConfigDuration,
    /// How long a ping may go unanswered before the HTTP/2 connection is closed.
    #[serde(default = "default_h2_ping_timeout")]
    pub h2_ping_timeout: ConfigDuration,
    /// The largest request body accepted, in bytes (larger ones get 413; 0: no limit); a
    /// route's own `max-request-body` overrides it.
    #[serde(default = "default_max_request_body")]
    pub max_request_body: u64,
    /// Normalise request paths before routing and forwarding (percent-encoding, slashes, dot
    /// segments; refusing `%2F`, `%00`, control bytes and paths above the root).
    #[serde(default = "yes")]
    pub normalize_path: bool,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: ConfigDuration,
    /// Access log: `human`, `json` or `off`.
    #[serde(default)]
    pub access_log: AccessLogFormat,
    /// Log filter, as `RUST_LOG` takes it (the environment variable wins).
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Where the admin listener (JSON API, stats, metrics, web UI) listens; `[]` turns it off.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: Vec<String>,
    /// The bearer token that may read and change everything through the admin listener;
    /// required when it listens beyond loopback.
    pub admin_token: Option<String>,
    /// A bearer token that may only read (GET) through the admin listener.
    pub admin_read_token: Option<String>,
    /// Extra `Host` values the admin listener answers to (`admin.example.com` on any port,
    /// `admin.example.com:8081` on that one); beside these it answers only to its own address
    /// (and `localhost` on loopback), so a DNS-rebinding web page cannot reach it.
    #[serde(default)]
    pub admin_hosts: Vec<String>,
    /// Permission bits of the admin listener's UNIX sockets and of `stats-socket` (default
    /// `0o600`: only the owner connects, whatever the umask).
    #[serde(default = "default_admin_socket_mode")]
    pub admin_socket_mode: u32,
    /// The directory of dynamic clusters (one `NAME.toml` each), relative to this file.
    pub cluster_dir: Option<PathBuf>,
    /// Dynamic clusters with a file of their own anywhere on disk, as x0's
    /// `director.load(name => path)`: name → file, relative to this file; a missing file is
    /// created (an empty cluster). Changed through the API like any dynamic cluster.
    #[serde(default)]
    pub cluster_files: BTreeMap<String, PathBuf>,
    /// HAProxy's runtime API on this UNIX socket (`show stat`, `disable server`, …); none by
    /// default.
    #[serde(default)]
    pub stats_socket: Option<std::path::PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            threads: None,
            pseudonym: default_pseudonym(),
            trust_forwarded_headers: false,
            header_read_timeout: default_header_read_timeout(),
            client_body_timeout: default_client_body_timeout(),
            tunnel_idle_timeout: default_tunnel_idle_timeout(),
            max_header_size: default_max_header_size(),
            max_headers: default_max_headers(),
            keep_alive_timeout: default_keep_alive_timeout(),
            send_timeout: default_send_timeout(),
            max_connections: default_max_connections(),
            h2_max_concurrent_streams: default_h2_max_concurrent_streams(),
            h2_ping_interval: default_h2_ping_interval(),
            h2_ping_timeout: default_h2_ping_timeout(),
            max_request_body: default_max_request_body(),
            normalize_path: true,
            shutdown_timeout: default_shutdown_timeout(),
            access_log: AccessLogFormat::default(),
            log_level: default_log_level(),
            admin_listen: default_admin_listen(),
            admin_token: None,
            admin_read_token: None,
            admin_hosts: Vec::new(),
            admin_socket_mode: default_admin_socket_mode(),
            cluster_dir: None,
            cluster_files: BTreeMap::new(),
            stats_socket: None,
        }
    }
}

/// How access log lines are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AccessLogFormat {
    /// One human-readable line per request.
    #[default]
    Human,
    /// One JSON object per request.
    Json,
    /// No access log.
    Off,
}

fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:8080".into()]
}
fn default_pseudonym() -> String {
    "director".into()
}
fn default_header_read_timeout() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(10))
}
fn default_max_header_size() -> usize {
    64 * 1024
}
fn default_max_headers() -> usize {
    100
}
fn default_send_timeout() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(60))
}
fn default_keep_alive_timeout() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(60))
}
fn default_max_connections() -> usize {
    10_000
}
fn default_h2_max_concurrent_streams() -> u32 {
    100
}
fn default_h2_ping_interval() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(30))
}
fn default_h2_ping_timeout() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(20))
}
fn default_client_body_timeout() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(60))
}
fn default_tunnel_idle_timeout() -> ConfigDuration {
    ConfigDuration(director_core::transport::TunnelIdleTimeout::DEFAULT)
}
/// 100 MiB: far above what PHP takes by default (`post_max_size = 8M`) and what ordinary
/// uploads need, so it rarely surprises an operator (nginx's 1 MiB does), yet an anonymous client
/// cannot stream an unbounded body into a backend (php-fpm spools it to disk).
fn default_max_request_body() -> u64 {
    100 << 20
}
fn yes() -> bool {
    true
}
fn default_shutdown_timeout() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(30))
}
fn default_admin_listen() -> Vec<String> {
    vec!["127.0.0.1:8081".into()]
}
fn default_admin_socket_mode() -> u32 {
    director_haproxy::socket::DEFAULT_MODE
}
fn default_log_level() -> String {
    "info".into()
}

/// Where a listener accepts connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// TCP; `[::]` listens dual-stack (IPv4 too).
    Tcp(SocketAddr),
    /// A UNIX socket path.
    Unix(PathBuf),
}

impl ListenAddr {
    /// Parses `127.0.0.1:8080`, `[::1]:8080`, `[::]:8080`, `unix:/path`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err("a UNIX socket path must be absolute".into());
            }
            return Ok(ListenAddr::Unix(path.into()));
        }
        text.parse().map(ListenAddr::Tcp).map_err(|_| {
            format!("{text:?} is not an address such as 127.0.0.1:8080, [::]:8080 or unix:/path")
        })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "http://{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Config {
    /// The clusters and routes, as `director-core` takes them.
    pub fn proxy(&self) -> ProxyConfig {
        ProxyConfig {
            clusters: self.clusters.clone(),
            routes: self.routes.clone(),
        }
    }

    /// The parsed listener addresses.
    pub fn listen_addrs(&self) -> Vec<ListenAddr> {
        self.server
            .listen
            .iter()
            .filter_map(|l| ListenAddr::parse(l).ok())
            .collect()
    }
}

/// Checks the admin settings of `server`: listener addresses (one reachable beyond loopback
/// needs `admin-token`), token shapes, `admin-hosts` and `admin-socket-mode`. The error is the
/// key below `server` (`admin-listen[0]`) and the message. The command line's `--admin` goes
/// through this check too.
pub fn check_admin(server: &ServerConfig) -> Result<(), (String, String)> {
    for (i, listen) in server.admin_listen.iter().enumerate() {
        let key = format!("admin-listen[{i}]");
        match ListenAddr::parse(listen) {
            Err(message) => return Err((key, message)),
            Ok(ListenAddr::Tcp(addr))
                if !addr.ip().is_loopback() && server.admin_token.is_none() =>
            {
                return Err((
                    key,
                    format!(
                        "the admin listener on {addr} is reachable beyond loopback, so it \
                         needs `admin-token` (and may have `admin-read-token`)"
                    ),
                ));
            }
            Ok(_) => {}
        }
    }
    for (key, token) in [
        ("admin-token", &server.admin_token),
        ("admin-read-token", &server.admin_read_token),
    ] {
        if let Some(token) = token
            && (token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err((
                key.to_owned(),
                "a token is at least 16 printable characters without spaces".into(),
            ));
        }
    }
    for (i, host) in server.admin_hosts.iter().enumerate() {
        if let Err(message) = crate::admin::AdminHost::parse(host) {
            return Err((format!("admin-hosts[{i}]"), message));
        }
    }
    if server.admin_socket_mode > 0o777 {
        return Err((
            "admin-socket-mode".into(),
            format!(
                "{:#o} is not a permission mode (0o000 to 0o777, such as 0o600 or 0o660)",
                server.admin_socket_mode
            ),
        ));
    }
    Ok(())
}

/// A config file Director refuses, located.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key or value is wrong.
    #[error("{file}:{line}:{column}: {key}: {message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The key path (`clusters.app.backends[0].url`), or `(document)` for a syntax error.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// A checked config, with the snapshot built from it.
#[derive(Debug)]
pub struct Loaded {
    /// The config as written.
    pub config: Config,
    /// The dynamic clusters of the cluster directory.
    pub dynamic: BTreeMap<String, ClusterConfig>,
    /// The cluster directory (`server.cluster-dir`, resolved against the file's directory).
    pub cluster_dir: Option<PathBuf>,
    /// The clusters with files of their own (`server.cluster-files`, resolved the same way);
    /// their configs are in `dynamic`.
    pub cluster_files: BTreeMap<String, PathBuf>,
    /// The config file, when it came from one (hot reload watches it).
    pub file: Option<PathBuf>,
    /// Its clusters and routes, ready to serve.
    pub snapshot: Snapshot,
}

/// Reads and checks the config file at `path`, and the cluster directory it names.
///
/// The path is made absolute first (against the working directory, symlinks kept), so hot
/// reload watches the right directories whatever the working directory later is.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let path = &std::path::absolute(path).map_err(|source| LoadError::Io {
        file: path.to_owned(),
        source,
    })?;
    let source = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        file: path.to_owned(),
        source,
    })?;
    let mut loaded = parse(&source, path)?;
    loaded.file = Some(path.to_owned());
    Ok(loaded)
}

/// Whether `source` holds no key and no table at all (empty, whitespace, comments): what an
/// editor leaves for a moment when it truncates a file to write it in place.
pub fn is_blank(source: &str) -> bool {
    source.parse::<toml::Table>().is_ok_and(|t| t.is_empty())
}

/// Reads every `NAME.toml` of the cluster directory `dir` (creating `dir` if it is missing):
/// the dynamic clusters, by name.
pub fn load_cluster_dir(dir: &Path) -> Result<BTreeMap<String, ClusterConfig>, LoadError> {
    let io = |source| LoadError::Io {
        file: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut clusters = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".toml"))
        else {
            continue;
        };
        // Temp files of an atomic write in progress start with a dot.
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        // The API never writes such a name; a hand-made file gets the same rule.
        if let Err(message) = director_core::store::check_name(name, "cluster") {
            return Err(LoadError::Invalid {
                file: path.clone(),
                line: 1,
                column: 1,
                key: "(file name)".into(),
                message,
            });
        }
        let source = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
            file: path.clone(),
            source,
        })?;
        clusters.insert(name.to_owned(), parse_cluster(&source, &path)?);
    }
    Ok(clusters)
}

/// Why [`load_cluster_files`] refused: a bad `server.cluster-files` entry (key path and
/// message), or a cluster file that cannot be read or is invalid (naming that file).
#[derive(Debug)]
pub enum FileError {
    /// `server.cluster-files.NAME`, and what is wrong with it.
    Config(String, String),
    /// The file itself.
    Load(LoadError),
}

/// Reads the clusters of `server.cluster-files` (`files`, paths resolved) into `dynamic`. A
/// missing file is an empty cluster (x0's `director.load` created it; here the store writes it
/// at start, see `Store::with_cluster_files`, so `director check` writes nothing). Refused: an
/// unsafe name, a name the cluster directory `dir` has too, two names sharing a file, a file in
/// the cluster directory (it would be loaded twice), a directory that does not exist.
pub fn load_cluster_files(
    files: &BTreeMap<String, PathBuf>,
    dir: Option<&Path>,
    dynamic: &mut BTreeMap<String, ClusterConfig>,
) -> Result<(), FileError> {
    let real_dir = dir.and_then(|d| std::fs::canonicalize(d).ok());
    let mut seen: BTreeMap<PathBuf, &str> = BTreeMap::new();
    // Every entry is checked before any file is read.
    for (name, file) in files {
        let bad =
            |message: String| FileError::Config(format!("server.cluster-files.{name}"), message);
        director_core::store::check_name(name, "cluster").map_err(bad)?;
        if dynamic.contains_key(name) {
            return Err(bad(format!(
                "the cluster directory has a cluster {name:?} too ({})",
                dir.map(|d| director_core::store::cluster_file(d, name)
                    .display()
                    .to_string())
                    .unwrap_or_default()
            )));
        }
        let parent = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let Some(file_name) = file.file_name() else {
            return Err(bad(format!("{} names no file", file.display())));
        };
        let real_parent = std::fs::canonicalize(parent)
            .ok()
            .filter(|p| p.is_dir())
            .ok_or_else(|| {
                bad(format!(
                    "the directory of {} cannot be used: it does not exist (it is not created; \
                     the file is)",
                    file.display()
                ))
            })?;
        if real_dir.as_deref() == Some(real_parent.as_path())
            && file_name.to_string_lossy().ends_with(".toml")
        {
            return Err(bad(format!(
                "{} is in the cluster directory, which loads it already; give the cluster a \
                 file elsewhere or leave it to the cluster directory",
                file.display()
            )));
        }
        if let Some(other) = seen.insert(real_parent.join(file_name), name) {
            return Err(bad(format!(
                "{} is the file of cluster {other:?} already",
                file.display()
            )));
        }
    }
    for (name, file) in files {
        let source = match std::fs::read_to_string(file) {
            Ok(source) => source,
            // As x0's director.load: a missing file is a new, empty cluster.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(FileError::Load(LoadError::Io {
                    file: file.clone(),
                    source,
                }));
            }
        };
        let cluster = parse_cluster(&source, file).map_err(FileError::Load)?;
        dynamic.insert(name.clone(), cluster);
    }
    Ok(())
}

/// Checks the text of one dynamic cluster file, naming `file` in errors.
pub fn parse_cluster(source: &str, file: &Path) -> Result<ClusterConfig, LoadError> {
    let invalid = located(source, file);
    let cluster: ClusterConfig = deserialize(source, file)?;
    if let Err((key, message)) = crate::health::check_cluster(&cluster) {
        return Err(invalid(locate(source, &key), key, message));
    }
    Ok(cluster)
}

/// Builds the error for a span of `source` (in `file`) and a key path.
fn located<'a>(
    source: &'a str,
    file: &'a Path,
) -> impl Fn(Option<std::ops::Range<usize>>, String, String) -> LoadError + 'a {
    move |span, key, message| {
        let (line, column) = span.map(|s| line_col(source, s.start)).unwrap_or((1, 1));
        LoadError::Invalid {
            file: file.to_owned(),
            line,
            column,
            key,
            message,
        }
    }
}

/// Reads `source` as a `T`; a syntax error, unknown key or wrong type names its line and key.
fn deserialize<T: serde::de::DeserializeOwned>(source: &str, file: &Path) -> Result<T, LoadError> {
    let invalid = located(source, file);
    let deserializer = toml::Deserializer::parse(source)
        .map_err(|e| invalid(e.span(), "(document)".into(), e.message().to_owned()))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        // Prefer the span of the key path itself: toml's own span can point at the enclosing
        // table for errors raised after it was read.
        let span = locate(source, &key).or_else(|| inner.span());
        invalid(span, key, inner.message().to_owned())
    })
}

/// Checks `source`, naming `file` in errors.
pub fn parse(source: &str, file: &Path) -> Result<Loaded, LoadError> {
    parse_with(source, file, &crate::cache::CacheFronts::default())
}

/// Like [`parse`], with the cluster caches kept in `fronts`: a cluster whose cache was built
/// before keeps its stored objects (see [`crate::cache`]). The caches change only if the
/// whole config is accepted.
pub fn parse_with(
    source: &str,
    file: &Path,
    fronts: &crate::cache::CacheFronts,
) -> Result<Loaded, LoadError> {
    let invalid = located(source, file);
    let config: Config = deserialize(source, file)?;
    for (i, listen) in config.server.listen.iter().enumerate() {
        if let Err(message) = ListenAddr::parse(listen) {
            let key = format!("server.listen[{i}]");
            return Err(invalid(locate(source, &key), key, message));
        }
    }
    if config.server.listen.is_empty() {
        let key = "server.listen".to_owned();
        return Err(invalid(
            locate(source, &key),
            key,
            "at least one listener is needed".into(),
        ));
    }
    if let Err(err) = crate::stack::header_policy(&config.server) {
        let key = "server.pseudonym".to_owned();
        return Err(invalid(locate(source, &key), key, err.to_string()));
    }
    if let Err((key, message)) = check_connection_limits(&config.server) {
        let key = format!("server.{key}");
        return Err(invalid(locate(source, &key), key, message));
    }
    for (key, value) in [
        ("client-body-timeout", config.server.client_body_timeout),
        ("tunnel-idle-timeout", config.server.tunnel_idle_timeout),
    ] {
        if value.0.is_zero() {
            let key = format!("server.{key}");
            return Err(invalid(
                locate(source, &key),
                key,
                "a timeout must be greater than zero".into(),
            ));
        }
    }
    if config.server.threads == Some(0) {
        let key = "server.threads".to_owned();
        return Err(invalid(
            locate(source, &key),
            key,
            "threads must be at least 1".into(),
        ));
    }
    for (name, cluster) in &config.clusters {
        if let Err((key, message)) = crate::health::check_cluster(cluster) {
            let key = format!("clusters.{name}.{key}");
            return Err(invalid(locate(source, &key), key, message));
        }
    }
    // A spool directory is checked here too (the transport checks it again when it is built,
    // for clusters from the API), so the error names the key.
    let fastcgi_tables = config
        .clusters
        .iter()
        .map(|(name, c)| (format!("clusters.{name}.fastcgi"), c.fastcgi.as_ref()))
        .chain(
            (config.routes.iter().enumerate())
                .map(|(i, r)| (format!("routes[{i}].fastcgi"), r.fastcgi.as_ref())),
        );
    for (table, settings) in fastcgi_tables {
        if let Some(dir) = settings.and_then(|s| s.spool_dir.as_ref())
            && !Path::new(dir).is_dir()
        {
            let key = format!("{table}.spool-dir");
            let message = format!("{dir:?} is not a directory");
            return Err(invalid(locate(source, &key), key, message));
        }
    }
    if let Err((key, message)) = check_admin(&config.server) {
        let key = format!("server.{key}");
        return Err(invalid(locate(source, &key), key, message));
    }
    let resolve = |d: &PathBuf| {
        file.parent()
            .filter(|p| !p.as_os_str().is_empty() && file.is_file())
            .map_or_else(|| d.clone(), |p| p.join(d))
    };
    let cluster_dir = config.server.cluster_dir.as_ref().map(resolve);
    let cluster_files: BTreeMap<String, PathBuf> = config
        .server
        .cluster_files
        .iter()
        .map(|(name, f)| (name.clone(), resolve(f)))
        .collect();
    let mut dynamic = match &cluster_dir {
        Some(dir) => load_cluster_dir(dir)?,
        None => BTreeMap::new(),
    };
    load_cluster_files(&cluster_files, cluster_dir.as_deref(), &mut dynamic).map_err(
        |e| match e {
            FileError::Config(key, message) => invalid(locate(source, &key), key, message),
            FileError::Load(e) => e,
        },
    )?;
    let merged = director_core::store::merge(&config.proxy(), &dynamic)
        .map_err(|ConfigError { path, message }| invalid(locate(source, &path), path, message))?;
    let caches = fronts.build();
    let snapshot = Snapshot::build_full(&merged, &crate::fastcgi::FastCgiFactory, &caches)
        .map_err(|ConfigError { path, message }| {
            // An error in a dynamic cluster points into its own file.
            if let Some(rest) = path.strip_prefix("clusters.")
                && let Some((name, key)) = rest.split_once('.').or(Some((rest, "")))
                && dynamic.contains_key(name)
                && !config.clusters.contains_key(name)
                && let Some(file) = cluster_files.get(name).cloned().or_else(|| {
                    cluster_dir
                        .as_deref()
                        .map(|dir| director_core::store::cluster_file(dir, name))
                })
            {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                let (line, column) = locate(&text, key)
                    .map(|s| line_col(&text, s.start))
                    .unwrap_or((1, 1));
                return LoadError::Invalid {
                    file,
                    line,
                    column,
                    key: key.to_owned(),
                    message,
                };
            }
            invalid(locate(source, &path), path, message)
        })?;
    caches.commit();
    Ok(Loaded {
        config,
        dynamic,
        cluster_dir,
        cluster_files,
        file: None,
        snapshot,
    })
}

/// 1-based line and column of byte `offset`.
/// The client-facing limits of `[server]` that must be positive: a zero timeout would close
/// every connection at once, a zero limit would serve nobody.
fn check_connection_limits(server: &ServerConfig) -> Result<(), (&'static str, String)> {
    let durations = [
        ("header-read-timeout", server.header_read_timeout),
        ("keep-alive-timeout", server.keep_alive_timeout),
        ("send-timeout", server.send_timeout),
        ("h2-ping-timeout", server.h2_ping_timeout),
    ];
    for (key, value) in durations {
        if value.0.is_zero() {
            return Err((key, format!("{key} must be longer than 0s")));
        }
    }
    let counts = [
        ("max-connections", server.max_connections),
        ("max-headers", server.max_headers),
        (
            "h2-max-concurrent-streams",
            server.h2_max_concurrent_streams as usize,
        ),
    ];
    for (key, value) in counts {
        if value == 0 {
            return Err((key, format!("{key} must be at least 1")));
        }
    }
    Ok(())
}

fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The span of the value at a key path such as `clusters.app.backends[1].url`, or of the
/// deepest part of it that exists.
fn locate(source: &str, path: &str) -> Option<std::ops::Range<usize>> {
    let root = DeTable::parse(source).ok()?;
    let mut span = None;
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    let mut value: Option<&DeValue<'_>> = None;
    for segment in path_segments(path) {
        match segment {
            Segment::Key(key) => {
                let t = match (table, value) {
                    (Some(t), _) => t,
                    (None, Some(DeValue::Table(t))) => t,
                    _ => break,
                };
                let Some((k, v)) = t.iter().find(|(k, _)| k.get_ref().as_ref() == key) else {
                    break;
                };
                // The key is what the message names, so point at it (a table's value span would be
                // the whole block anyway).
                span = Some(k.span());
                table = None;
                value = Some(v.get_ref());
            }
            Segment::Index(i) => {
                let Some(DeValue::Array(items)) = value else {
                    break;
                };
                let Some(item) = items.get(i) else { break };
                span = Some(item.span());
                table = None;
                value = Some(item.get_ref());
            }
        }
    }
    span
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn path_segments(path: &str) -> impl Iterator<Item = Segment<'_>> {
    path.split('.').flat_map(|part| {
        let (key, rest) = part.split_once('[').unwrap_or((part, ""));
        let key = (!key.is_empty()).then_some(Segment::Key(key));
        let indexes = rest
            .split('[')
            .filter_map(|i| i.trim_end_matches(']').parse().ok())
            .map(Segment::Index);
        key.into_iter().chain(indexes).collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests;
