//! Importing x0's cluster files: the classic `.db` INI files (`director.load`) and the
//! rewrite's `.cluster.conf` dialect (spec sections 2.1–2.5), into Director's dynamic cluster
//! TOML.
//!
//! `director import-x0 FILE` prints the TOML (or writes it into the cluster directory with
//! `--into DIR`). The import is strict where x0 was lenient: a number that does not parse is an
//! error naming file, line and key, rather than x0's silent 0. Keys x0 had and Director does not
//! (`transfer-mode`, ...) are reported as notes, not errors; missing keys
//! take x0's defaults of the dialect, as x0 filled them in on load.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use director_core::config::{ClusterConfig, ConfigDuration};
use toml::{Table, Value};

/// Which x0 wrote the file: they differ in time units and defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// x0's classic director plugin (`*.db`): durations in seconds.
    Classic,
    /// x0d's rewrite (`*.cluster.conf`): timeouts and probe intervals in milliseconds.
    Rewrite,
}

impl Dialect {
    /// The dialect a file name suggests (`.cluster.conf` → rewrite, anything else classic).
    pub fn of(file: &Path) -> Dialect {
        if file.to_string_lossy().ends_with(".cluster.conf") {
            Dialect::Rewrite
        } else {
            Dialect::Classic
        }
    }
}

/// A cluster imported from an x0 file.
#[derive(Clone, Debug)]
pub struct Imported {
    /// Its name (the file name without `.db` / `.cluster.conf`).
    pub name: String,
    /// The cluster.
    pub config: ClusterConfig,
    /// What was dropped or guessed, for the operator to read.
    pub notes: Vec<String>,
}

/// An x0 file that cannot be imported.
#[derive(Debug, PartialEq, Eq)]
pub struct ImportError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when the problem is the file as a whole).
    pub line: usize,
    /// The section and key (`backend=app01.port`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.key,
            self.message
        )
    }
}

impl std::error::Error for ImportError {}

/// One INI section: its keys with their values and line numbers.
#[derive(Debug, Default)]
struct Section {
    line: usize,
    keys: BTreeMap<String, (String, usize)>,
}

/// Parses x0's INI dialect (spec 2.1): sections in a sorted map, last duplicate key wins.
fn parse_ini(text: &str, file: &Path) -> Result<BTreeMap<String, Section>, ImportError> {
    let mut sections: BTreeMap<String, Section> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(title) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.entry(title.to_owned()).or_insert(Section {
                line: i + 1,
                ..Section::default()
            });
            current = Some(title.to_owned());
            continue;
        }
        let Some(section) = &current else {
            return Err(ImportError {
                file: file.to_owned(),
                line: i + 1,
                key: "(document)".into(),
                message: "a key before the first [section]".into(),
            });
        };
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        sections
            .get_mut(section)
            .expect("entered above")
            .keys
            .insert(key.trim().to_owned(), (value.trim().to_owned(), i + 1));
    }
    Ok(sections)
}

struct Reader<'a> {
    file: &'a Path,
    title: &'a str,
    section: &'a Section,
}

impl Reader<'_> {
    fn error(&self, key: &str, message: impl Into<String>) -> ImportError {
        ImportError {
            file: self.file.to_owned(),
            line: self
                .section
                .keys
                .get(key)
                .map_or(self.section.line, |(_, l)| *l),
            key: format!("{}.{key}", self.title),
            message: message.into(),
        }
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.section.keys.get(key).map(|(v, _)| v.as_str())
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, ImportError> {
        self.text(key)
            .map(|v| match v {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                other => Err(self.error(key, format!("{other:?} is not true or false"))),
            })
            .transpose()
    }

    fn int(&self, key: &str) -> Result<Option<i64>, ImportError> {
        self.text(key)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| self.error(key, format!("{v:?} is not a whole number")))
            })
            .transpose()
    }

    fn count(&self, key: &str) -> Result<Option<i64>, ImportError> {
        match self.int(key)? {
            Some(n) if n < 0 => Err(self.error(key, "cannot be negative")),
            other => Ok(other),
        }
    }

    fn float(&self, key: &str) -> Result<Option<f64>, ImportError> {
        self.text(key)
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| self.error(key, format!("{v:?} is not a number")))
            })
            .transpose()
    }

    /// A duration in the dialect's unit, as Director writes durations.
    fn duration(&self, key: &str, millis: bool) -> Result<Option<Value>, ImportError> {
        Ok(self.count(key)?.map(|n| {
            let n = n.unsigned_abs();
            let d = if millis {
                std::time::Duration::from_millis(n)
            } else {
                std::time::Duration::from_secs(n)
            };
            Value::String(ConfigDuration(d).to_string())
        }))
    }
}

/// Imports the x0 cluster file `text` (read from `file`). FastCGI backends need
/// `document_root`, which x0 took from its virtual host rather than from this file.
pub fn import(
    text: &str,
    file: &Path,
    dialect: Dialect,
    document_root: Option<&str>,
) -> Result<Imported, ImportError> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| {
            n.trim_end_matches(".cluster.conf")
                .trim_end_matches(".db")
                .to_owned()
        })
        .unwrap_or_else(|| "imported".into());
    let sections = parse_ini(text, file)?;
    let rewrite = dialect == Dialect::Rewrite;
    let mut notes = Vec::new();
    let mut cluster = Table::new();
    let mut health = Table::new();
    let empty = Section::default();

    let director = sections.get("director").unwrap_or(&empty);
    let d = Reader {
        file,
        title: "director",
        section: director,
    };
    if let Some(v) = d.bool("enabled")? {
        cluster.insert("enabled".into(), v.into());
    }
    // Missing required keys take x0's defaults of the dialect (spec 2.5).
    let (limit, timeout, retry_after, retries) = if rewrite {
        (1000, 30_000, 30, 3)
    } else {
        (128, 60, 10, 6)
    };
    cluster.insert(
        "queue-limit".into(),
        d.count("queue-limit")?.unwrap_or(limit).into(),
    );
    cluster.insert(
        "queue-timeout".into(),
        d.duration("queue-timeout", rewrite)?.unwrap_or_else(|| {
            let t = if rewrite {
                std::time::Duration::from_millis(timeout as u64)
            } else {
                std::time::Duration::from_secs(timeout as u64)
            };
            Value::String(ConfigDuration(t).to_string())
        }),
    );
    cluster.insert(
        "retry-after".into(),
        d.count("retry-after")?.unwrap_or(retry_after).into(),
    );
    cluster.insert(
        "max-retry-count".into(),
        d.count("max-retry-count")?.unwrap_or(retries).into(),
    );
    // x0's classic loader read this key into allow-x-sendfile (quirk 4); it means what it says.
    cluster.insert(
        "enqueue-on-unavailable".into(),
        d.bool("enqueue-on-unavailable")?.unwrap_or(rewrite).into(),
    );
    let timeouts = if rewrite {
        [4_000, 30_000, 8_000]
    } else {
        [10, 120, 10]
    };
    for (key, default) in ["connect-timeout", "read-timeout", "write-timeout"]
        .into_iter()
        .zip(timeouts)
    {
        let value = match d.duration(key, rewrite)? {
            Some(v) => v,
            None => {
                let t = if rewrite {
                    std::time::Duration::from_millis(default)
                } else {
                    std::time::Duration::from_secs(default)
                };
                Value::String(ConfigDuration(t).to_string())
            }
        };
        cluster.insert(key.into(), value);
    }
    match d.text("on-client-abort") {
        None | Some("close") => {}
        Some(value @ ("notify" | "ignore")) => {
            cluster.insert("on-client-abort".into(), value.into());
        }
        Some(other) => {
            return Err(d.error(
                "on-client-abort",
                format!("{other:?} is not close, notify or ignore"),
            ));
        }
    }
    match d.text("scheduler") {
        None | Some("rr") => {}
        Some("chance") => {
            cluster.insert("scheduler".into(), "chance".into());
        }
        Some(other) => notes.push(format!(
            "director.scheduler {other:?} is unknown to x0; using rr as x0 did"
        )),
    }
    if let Some(v) = d.bool("sticky-offline-mode")? {
        health.insert("sticky-offline".into(), v.into());
    }
    if let Some(host) = d.text("health-check-host-header") {
        health.insert("host".into(), host.into());
    } else {
        health.insert(
            "host".into(),
            if rewrite {
                "healthcheck"
            } else {
                "backend-healthcheck"
            }
            .into(),
        );
    }
    if let Some(path) = d.text("health-check-request-path") {
        if !path.starts_with('/') {
            return Err(d.error("health-check-request-path", "a path starts with '/'"));
        }
        health.insert("path".into(), path.into());
    }
    if let Some(script) = d
        .text("health-check-fcgi-script-filename")
        .filter(|s| !s.is_empty())
    {
        health.insert("script-filename".into(), script.into());
    }
    if let Some(n) = d.count("health-check-success-threshold")? {
        if n == 0 {
            return Err(d.error("health-check-success-threshold", "must be at least 1"));
        }
        health.insert("rise".into(), n.into());
    } else {
        health.insert("rise".into(), if rewrite { 3 } else { 2 }.into());
    }
    // x0 took a backend offline at its first failed probe.
    health.insert("fall".into(), 1.into());
    let expect: Vec<Value> = if rewrite {
        [200, 204, 301, 302, 307, 308].map(Value::from).to_vec()
    } else {
        vec![200.into()]
    };
    health.insert("expect".into(), Value::Array(expect));
    if d.bool("allow-x-sendfile")? == Some(true) {
        notes.push(
            "director.allow-x-sendfile was true: X-Sendfile needs allowed roots in Director; \
             add a [sendfile] table by hand"
                .into(),
        );
    }
    for key in director.keys.keys() {
        if !KNOWN_DIRECTOR_KEYS.contains(&key.as_str()) {
            notes.push(format!("director.{key} is not used by Director; dropped"));
        }
    }

    if let Some(section) = sections.get("cache") {
        let c = Reader {
            file,
            title: "cache",
            section,
        };
        let mut cache = Table::new();
        cache.insert("enabled".into(), c.bool("enabled")?.unwrap_or(false).into());
        if let Some(v) = c.duration("default-ttl", rewrite)? {
            cache.insert("default-ttl".into(), v);
        }
        if let Some(v) = c.duration("default-shadow-ttl", rewrite)? {
            cache.insert("shadow-ttl".into(), v);
        }
        for key in ["deliver-active", "deliver-shadow"] {
            if let Some(v) = c.bool(key)? {
                cache.insert(key.into(), v.into());
            }
        }
        cluster.insert("cache".into(), Value::Table(cache));
    }

    let mut buckets = Vec::new();
    let mut backends = Vec::new();
    for (title, section) in &sections {
        let r = Reader {
            file,
            title,
            section,
        };
        if let Some(bucket) = title.strip_prefix("bucket=") {
            let rate = r
                .float("rate")?
                .ok_or_else(|| r.error("rate", "required"))?;
            let ceil = r
                .float("ceil")?
                .ok_or_else(|| r.error("ceil", "required"))?;
            let mut t = Table::new();
            t.insert("name".into(), bucket.into());
            t.insert("rate".into(), rate.into());
            t.insert("ceil".into(), ceil.into());
            buckets.push(Value::Table(t));
        } else if let Some(backend) = title.strip_prefix("backend=") {
            let mut t = Table::new();
            t.insert("name".into(), backend.into());
            let protocol = r.text("protocol").unwrap_or("http");
            let url = match (protocol, r.text("path").filter(|p| !p.is_empty())) {
                ("http", Some(path)) => format!("unix:{path}"),
                ("fastcgi", Some(path)) => format!("fastcgi+unix:{path}"),
                ("http" | "fastcgi", None) => {
                    let host = r
                        .text("host")
                        .or_else(|| r.text("hostname"))
                        .ok_or_else(|| r.error("host", "required (or path)"))?;
                    let ip: std::net::IpAddr = host.parse().map_err(|_| {
                        r.error(
                            "host",
                            format!("{host:?} is not an IP address (x0 used it as one)"),
                        )
                    })?;
                    let port = r.int("port")?.ok_or_else(|| r.error("port", "required"))?;
                    if !(1..=65535).contains(&port) {
                        return Err(r.error("port", format!("{port} is not a port")));
                    }
                    let addr = std::net::SocketAddr::new(ip, port as u16);
                    if protocol == "http" {
                        format!("http://{addr}")
                    } else {
                        format!("fastcgi://{addr}")
                    }
                }
                (other, _) => {
                    return Err(r.error("protocol", format!("{other:?} is not http or fastcgi")));
                }
            };
            if protocol == "fastcgi" && !cluster.contains_key("fastcgi") {
                let root = document_root.ok_or_else(|| ImportError {
                    file: file.to_owned(),
                    line: section.line,
                    key: format!("{title}.protocol"),
                    message: "a FastCGI backend needs the document root, which x0 took from \
                              its virtual host: give --document-root DIR"
                        .into(),
                })?;
                let mut f = Table::new();
                f.insert("document-root".into(), root.into());
                cluster.insert("fastcgi".into(), Value::Table(f));
            }
            t.insert("url".into(), url.into());
            if let Some(v) = r.bool("enabled")? {
                t.insert("enabled".into(), v.into());
            }
            if let Some(n) = r.count("capacity")? {
                t.insert("capacity".into(), n.into());
            }
            match r.text("role") {
                None | Some("active") => {}
                Some("backup" | "standby") => {
                    t.insert("role".into(), "backup".into());
                }
                Some(other) => {
                    return Err(r.error("role", format!("{other:?} is not active or backup")));
                }
            }
            if let Some(v) = r.bool("terminate-protection")? {
                t.insert("terminate-protection".into(), v.into());
            }
            if let Some(mode) = r.text("health-check-mode") {
                t.insert("health-mode".into(), mode.into());
            }
            if let Some(v) = r.duration("health-check-interval", rewrite)? {
                t.insert("health-interval".into(), v);
            }
            backends.push(Value::Table(t));
        } else if title != "director" && title != "cache" {
            return Err(ImportError {
                file: file.to_owned(),
                line: section.line,
                key: title.clone(),
                message: "not a section of an x0 cluster file (director, cache, bucket=NAME, \
                          backend=NAME)"
                    .into(),
            });
        }
    }
    // x0 set probe mode and interval per backend; Director per cluster.
    // x0 set probe mode and interval per backend. The first backend's become the cluster's;
    // a backend that differs keeps its own.
    for (x0_key, key) in [("mode", "health-mode"), ("interval", "health-interval")] {
        let first = backends
            .iter()
            .find_map(|b| b.as_table().and_then(|t| t.get(key)).cloned());
        if let Some(first) = first {
            for b in backends.iter_mut().filter_map(Value::as_table_mut) {
                if b.get(key) == Some(&first) {
                    b.remove(key);
                }
            }
            health.insert(x0_key.into(), first);
        }
    }
    cluster.insert("health".into(), Value::Table(health));
    if let Some(note) = root_starved(&buckets) {
        notes.push(note);
    }
    if !buckets.is_empty() {
        cluster.insert("buckets".into(), Value::Array(buckets));
    }
    cluster.insert("backends".into(), Value::Array(backends));

    let config = ClusterConfig::deserialize(Value::Table(cluster)).map_err(|e| ImportError {
        file: file.to_owned(),
        line: 0,
        key: "(cluster)".into(),
        message: e.to_string(),
    })?;
    Ok(Imported {
        name,
        config,
        notes,
    })
}

use serde::Deserialize as _;

/// A note when the buckets' rates add up to 1: x0 then reserved every token for them and left
/// none to the root bucket, so a request no bucket claimed waited for `queue-timeout` and got 504
/// (x0's own `app_cluster.db` fixture does this). What Director does depends on the shaper.
fn root_starved(buckets: &[Value]) -> Option<String> {
    let rates: Vec<f64> = buckets
        .iter()
        .filter_map(|b| b.get("rate").and_then(Value::as_float))
        .collect();
    let sum: f64 = rates.iter().sum();
    // The same tolerance as the shaper's sibling check: 0.1 + 0.2 + 0.7 counts as 1.
    if rates.is_empty() || sum < 1.0 - 1e-9 {
        return None;
    }
    let names: Vec<&str> = buckets
        .iter()
        .filter_map(|b| b.get("name").and_then(Value::as_str))
        .collect();
    Some(format!(
        "the rates of buckets {} add up to 1: x0 left the root bucket no tokens, so requests \
         that no bucket claims waited for queue-timeout and got 504. Under Director's default \
         shaper (htb) they are served from whatever capacity the buckets leave idle; with \
         shaper = \"x0\" they still get 504 (keep the rates' sum below 1 there)",
        names.join(", ")
    ))
}

const KNOWN_DIRECTOR_KEYS: &[&str] = &[
    "enabled",
    "queue-limit",
    "queue-timeout",
    "retry-after",
    "max-retry-count",
    "sticky-offline-mode",
    "allow-x-sendfile",
    "enqueue-on-unavailable",
    "on-client-abort",
    "connect-timeout",
    "read-timeout",
    "write-timeout",
    "health-check-host-header",
    "health-check-request-path",
    "health-check-fcgi-script-filename",
    "health-check-success-threshold",
    "scheduler",
];

#[cfg(test)]
mod tests;
