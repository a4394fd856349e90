//! Fixtures for end-to-end tests: the real `director` binary on loopback, and a small client.

#![allow(dead_code, unreachable_pub)]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running `director` process; killed when dropped.
pub struct Director {
    child: Child,
    pub addrs: Vec<String>,
    pub dir: tempfile::TempDir,
    admin: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl Director {
    /// Writes `config` to a temp file and runs `director --config` on it, waiting until it
    /// announces its listeners.
    pub fn start(config: &str) -> Director {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("director.toml");
        std::fs::write(&path, with_admin(config)).unwrap();
        Self::spawn(dir, &["--config", path.to_str().unwrap()], 1)
    }

    /// Runs the binary with `args`, waiting for `listeners` "listening on" lines.
    pub fn spawn(dir: tempfile::TempDir, args: &[&str], listeners: usize) -> Director {
        let mut child = Command::new(env!("CARGO_BIN_EXE_director"))
            .args(args)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("director starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let admin = std::sync::Arc::new(std::sync::Mutex::new(None));
        let admin_seen = admin.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("director: listening on ") {
                    let _ = tx.send(addr.to_owned());
                } else if let Some(addr) = line.strip_prefix("director: admin on ") {
                    *admin_seen.lock().unwrap() = Some(addr.to_owned());
                }
            }
        });
        let mut addrs = Vec::new();
        for _ in 0..listeners {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(addr) => addrs.push(addr),
                Err(_) => {
                    let _ = child.kill();
                    panic!("director did not start listening: {:?}", child.wait());
                }
            }
        }
        Director {
            child,
            addrs,
            dir,
            admin,
        }
    }

    /// `http://127.0.0.1:port` of the admin listener (waits for its announcement).
    pub fn admin(&self) -> String {
        for _ in 0..200 {
            if let Some(a) = self.admin.lock().unwrap().clone() {
                return a;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("director announced no admin listener");
    }

    /// Sends `signal` (e.g. "HUP", "KILL") to the process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal}");
    }

    /// `http://127.0.0.1:port` of the first listener.
    pub fn base(&self) -> &str {
        &self.addrs[0]
    }

    /// The first listener's socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        self.base().trim_start_matches("http://").parse().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory of the process so far, in KiB (Linux `VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits for the process to exit (bounded), returning whether it exited successfully.
    pub fn wait(&mut self, limit: Duration) -> Option<bool> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `req` and reads the whole response.
pub async fn send(req: Request<Full<Bytes>>) -> Reply {
    let response = tokio::time::timeout(Duration::from_secs(30), client().request(req))
        .await
        .expect("response within 30s")
        .expect("request succeeds");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str) -> Reply {
    send(Request::get(url).body(Full::default()).unwrap()).await
}

/// Writes raw bytes to `addr` and reads until the server closes or `limit` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], limit: Duration) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits (at most 10 s) until `cond` holds: tests wait for the state they need (a request in
/// flight, a probe seen) instead of sleeping for a time a loaded machine may stretch.
pub async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The queued requests of `cluster` now, read through the admin API.
pub async fn queued(director: &Director, cluster: &str) -> u64 {
    let reply = get(&format!("{}/api/{cluster}", director.admin())).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let doc: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    doc["stats"]["queued"]["current"].as_u64().unwrap()
}

/// The health state ("online", "offline", ...) of `backend` in `cluster`, read through the admin
/// API (the config needs an admin listener: see [`with_admin`]).
pub async fn health_state(director: &Director, cluster: &str, backend: &str) -> String {
    let reply = get(&format!(
        "{}/api/{cluster}/backends/{backend}",
        director.admin()
    ))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let doc: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    doc["health"]["state"]
        .as_str()
        .unwrap_or_else(|| panic!("no health state in {doc}"))
        .to_owned()
}

/// Waits (at most 10 s) until `backend` in `cluster` is in health `state`. Tests wait for the
/// state itself rather than for a guessed number of intervals, which a loaded machine stretches.
pub async fn wait_for_health(director: &Director, cluster: &str, backend: &str, state: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = health_state(director, cluster, backend).await;
        if now == state {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{cluster}/{backend} stayed {now}, never {state}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A TCP port nothing listens on.
pub fn dead_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Whether this machine has an IPv6 loopback.
pub fn has_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// A path for a UNIX socket inside `dir`.
pub fn sock(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// `config` with its admin listener on an ephemeral loopback port (unless it sets one), so that
/// tests running at once do not fight over the default 127.0.0.1:8081.
pub fn with_admin(config: &str) -> String {
    if config.contains("admin-listen") {
        config.to_owned()
    } else if let Some(at) = config.find("[server]\n") {
        let at = at + "[server]\n".len();
        format!(
            "{}admin-listen = [\"127.0.0.1:0\"]\n{}",
            &config[..at],
            &config[at..]
        )
    } else {
        format!("[server]\nadmin-listen = [\"127.0.0.1:0\"]\n\n{config}")
    }
}

/// A config with one cluster `app` over `urls` and a catch-all route to it; `extra` is inserted
/// into `[clusters.app]`, `server` into `[server]`.
pub fn cluster_config(urls: &[String], server: &str, extra: &str) -> String {
    let mut c = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n{server}\n\n[clusters.app]\n{extra}\n"
    );
    for (i, url) in urls.iter().enumerate() {
        c.push_str(&format!(
            "[[clusters.app.backends]]\nname = \"b{i}\"\nurl = \"{url}\"\n"
        ));
    }
    c.push_str("\n[[routes]]\ncluster = \"app\"\n");
    c
}

/// Runs `director check --config path`: whether it accepted the file, and what it printed.
pub fn check(path: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_director"))
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// php-fpm's binary: `DIRECTOR_PHP_FPM`, else the newest `php-fpm*` in `/usr/sbin` or `PATH`.
/// Without one, `what` is reported as skipped, unless `DIRECTOR_REQUIRE_PHP_FPM=1` (as in CI),
/// which makes the test fail.
pub fn php_fpm(what: &str) -> Option<PathBuf> {
    let found = match std::env::var("DIRECTOR_PHP_FPM") {
        Ok(p) => Path::new(&p).is_file().then(|| PathBuf::from(p)),
        Err(_) => {
            let mut dirs: Vec<PathBuf> = vec!["/usr/sbin".into(), "/usr/local/sbin".into()];
            if let Some(path) = std::env::var_os("PATH") {
                dirs.extend(std::env::split_paths(&path));
            }
            dirs.iter().find_map(|dir| {
                let mut names: Vec<String> = std::fs::read_dir(dir)
                    .ok()?
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| {
                        n == "php-fpm" || n.starts_with("php-fpm8") || n.starts_with("php-fpm7")
                    })
                    .collect();
                names.sort();
                names.pop().map(|n| dir.join(n))
            })
        }
    };
    if found.is_none() {
        assert!(
            std::env::var("DIRECTOR_REQUIRE_PHP_FPM").as_deref() != Ok("1"),
            "DIRECTOR_REQUIRE_PHP_FPM=1 but no php-fpm binary was found"
        );
        eprintln!("php-fpm not found: {what} SKIPPED");
    }
    found
}

/// A backend's counters from the HAProxy CSV page, by column name.
pub async fn csv_counters(
    director: &Director,
    cluster: &str,
    backend: &str,
) -> std::collections::HashMap<String, u64> {
    let reply = get(&format!("{}/haproxy?stats;csv", director.admin())).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.first() == Some(&cluster) && fields.get(1) == Some(&backend) {
            return header
                .iter()
                .zip(fields)
                .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
                .collect();
        }
    }
    panic!("no row for {cluster}/{backend} in\n{text}");
}
