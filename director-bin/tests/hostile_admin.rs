//! The admin side against hostile clients and broken files, end to end: DNS rebinding (a
//! foreign `Host`) on the admin listener, `--admin` beyond loopback without a token, admin
//! socket modes, names that are not safe file names, health settings that would inject headers
//! or flood backends, an empty main config on reload, a relative `--config`, and the temp files
//! of an interrupted write.

mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use director_core::testing::TestBackend;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::{Director, Reply, get, send};

/// A request to the admin listener with an explicit `Host`.
async fn admin_req(director: &Director, method: &str, path: &str, host: &str) -> Reply {
    send(
        Request::builder()
            .method(method)
            .uri(format!("{}{path}", director.admin()))
            .header("host", host)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from_static(b"")))
            .unwrap(),
    )
    .await
}

/// `host:port` of the admin listener.
fn admin_authority(director: &Director) -> String {
    director.admin().trim_start_matches("http://").to_owned()
}

fn port(director: &Director) -> u16 {
    admin_authority(director)
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|_| panic!("not JSON ({}): {}", reply.status, reply.text()))
}

/// A config with one cluster `app` over `backend`, a catch-all route, a cluster directory, and
/// `server` added to `[server]`.
fn config(backend: &TestBackend, server: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\ncluster-dir = \"clusters\"\n\
         {server}\n\n[clusters.app]\n[[clusters.app.backends]]\nname = \"a\"\nurl = \"{}\"\n\n\
         [[routes]]\ncluster = \"app\"\n",
        backend.url()
    )
}

/// Waits (bounded) for `child` to exit; kills it if it does not.
fn exit_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

// --- finding 5: the admin listener and DNS rebinding ---

#[tokio::test]
async fn a_foreign_host_gets_421_on_every_admin_path_and_reaches_nothing() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&backend, ""));
    let evil = format!("rebind.attacker.example:{}", port(&director));
    // A DNS-rebinding page creating a cluster that would serve the whole file system.
    let reply = admin_req(
        &director,
        "PUT",
        "/api/pwned?sendfile-roots=/&url=http://127.0.0.1:9",
        &evil,
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::MISDIRECTED_REQUEST,
        "{}",
        reply.text()
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(json(&reply)["error"], "misdirected request");
    for path in [
        "/",
        "/ui/",
        "/ui/live",
        "/ui/session",
        "/api",
        "/api/_status",
        "/api/app",
        "/metrics",
        "/haproxy?stats;csv",
        "/history",
        "/nothing-here",
    ] {
        let reply = admin_req(&director, "GET", path, &evil).await;
        assert_eq!(reply.status, 421, "GET {path}: {}", reply.text());
    }
    // The name an attacker's DNS gives 127.0.0.1, and the right host on another port.
    for host in ["127.0.0.1.nip.io", "localhost:1", "evil.example"] {
        let reply = admin_req(&director, "GET", "/api", host).await;
        assert_eq!(reply.status, 421, "Host {host}");
    }
    // Nothing was created: not in the store, not on disk.
    let own = admin_authority(&director);
    let reply = admin_req(&director, "GET", "/api/pwned", &own).await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert!(!director.dir.path().join("clusters/pwned.toml").exists());
}

#[tokio::test]
async fn the_listeners_own_address_localhost_and_admin_hosts_are_answered() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(
        &backend,
        "admin-hosts = [\"admin.example.com\", \"ops.example.com:9\"]",
    ));
    let p = port(&director);
    for host in [
        format!("127.0.0.1:{p}"),
        format!("localhost:{p}"),
        format!("[::1]:{p}"),
        "admin.example.com".to_owned(),
        format!("Admin.Example.COM:{p}"),
        "ops.example.com:9".to_owned(),
    ] {
        let reply = admin_req(&director, "GET", "/api/_status", &host).await;
        assert_eq!(reply.status, 200, "Host {host}: {}", reply.text());
    }
    let reply = admin_req(&director, "GET", "/api", &format!("ops.example.com:{p}")).await;
    assert_eq!(reply.status, 421);
    // And the API works through them: a create with the own address goes through.
    let reply = admin_req(&director, "PUT", "/api/shop", &format!("localhost:{p}")).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
}

#[test]
fn admin_flag_beyond_loopback_without_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("director.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin-listen = [\"127.0.0.1:0\"]\n",
    )
    .unwrap();
    let runs: [Vec<&str>; 2] = [
        vec!["--config", path.to_str().unwrap(), "--admin", "0.0.0.0:0"],
        vec![
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
            "--admin",
            "0.0.0.0:0",
        ],
    ];
    for args in runs {
        let mut child = Command::new(env!("CARGO_BIN_EXE_director"))
            .args(&args)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = exit_within(&mut child, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{args:?}: director kept running with a tokenless admin"));
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(!status.success(), "{args:?}");
        assert!(stderr.contains("--admin 0.0.0.0:0"), "{stderr}");
        assert!(stderr.contains("admin-token"), "{stderr}");
    }
}

#[tokio::test]
async fn unix_admin_and_stats_sockets_are_0600_and_answer_any_host() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let sockets = tempfile::tempdir().unwrap();
    let admin = sockets.path().join("admin.sock");
    let stats = sockets.path().join("stats.sock");
    let director = Director::start(&config(
        &backend,
        &format!(
            "admin-listen = [\"unix:{}\"]\nstats-socket = \"{}\"",
            admin.display(),
            stats.display()
        ),
    ));
    assert_eq!(director.admin(), format!("unix:{}", admin.display()));
    for socket in [&admin, &stats] {
        let mode = std::fs::metadata(socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}: {mode:o}", socket.display());
    }
    // No browser reaches a UNIX socket: any Host is answered.
    let mut stream = std::os::unix::net::UnixStream::connect(&admin).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(
            b"GET /api/_status HTTP/1.1\r\nHost: anything.example\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut head = String::new();
    BufReader::new(stream).read_line(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[tokio::test]
async fn admin_socket_mode_is_configurable() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let sockets = tempfile::tempdir().unwrap();
    let admin = sockets.path().join("admin.sock");
    let director = Director::start(&config(
        &backend,
        &format!(
            "admin-listen = [\"unix:{}\"]\nadmin-socket-mode = 0o660",
            admin.display()
        ),
    ));
    director.admin();
    let mode = std::fs::metadata(&admin).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
}

// --- finding 8: names, health settings, reloads, temp files ---

#[tokio::test]
async fn names_that_are_not_safe_file_names_get_400() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&backend, ""));
    let own = admin_authority(&director);
    let long = "n".repeat(300);
    for name in [".", "..", ".hidden", long.as_str()] {
        let reply = admin_req(&director, "PUT", &format!("/api/{name}"), &own).await;
        assert_eq!(reply.status, 400, "{name:?}: {}", reply.text());
        assert_eq!(json(&reply)["detail"]["field"], "name");
    }
    let files: Vec<_> = std::fs::read_dir(director.dir.path().join("clusters"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(files.is_empty(), "{files:?}");
}

#[tokio::test]
async fn a_health_path_with_cr_lf_is_refused_by_the_api_and_the_config() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&backend, ""));
    let own = admin_authority(&director);
    let reply = admin_req(&director, "PUT", "/api/web", &own).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let reply = admin_req(
        &director,
        "POST",
        "/api/web?health-path=/x%0D%0AX-Injected:%201",
        &own,
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(json(&reply)["detail"]["field"], "health-path");
    let file = std::fs::read_to_string(director.dir.path().join("clusters/web.toml")).unwrap();
    assert!(!file.contains("Injected"), "{file}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("director.toml");
    std::fs::write(
        &path,
        format!(
            "{}\n[clusters.app.health]\npath = \"/x\\r\\nX-Injected: 1\"\n",
            config(&backend, "")
        ),
    )
    .unwrap();
    let (ok, text) = support::check(&path);
    assert!(!ok, "{text}");
    assert!(text.contains("clusters.app.health.path"), "{text}");
}

#[tokio::test]
async fn a_1ms_health_interval_is_refused() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("director.toml");
    std::fs::write(
        &path,
        format!(
            "{}\n[clusters.app.health]\ninterval = \"1ms\"\n",
            config(&backend, "")
        ),
    )
    .unwrap();
    let (ok, text) = support::check(&path);
    assert!(!ok, "{text}");
    assert!(text.contains("clusters.app.health.interval"), "{text}");
    assert!(text.contains("at least 50ms"), "{text}");

    let director = Director::start(&config(&backend, ""));
    let own = admin_authority(&director);
    let reply = admin_req(&director, "PUT", "/api/web?health-interval=1ms", &own).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(json(&reply)["detail"]["field"], "health-interval");
    assert_eq!(
        admin_req(&director, "GET", "/api/web", &own).await.status,
        404
    );
}

#[tokio::test]
async fn an_empty_main_config_is_refused_on_reload() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&backend, ""));
    let path = director.dir.path().join("director.toml");
    assert_eq!(get(&director.url("/")).await.status, 200);
    let status = format!("{}/api/_status", director.admin());
    let good = std::fs::read_to_string(&path).unwrap();
    // Truncated in place (as an editor writing in place leaves it), then only a comment.
    for text in ["", "  \n# nothing yet\n\n"] {
        std::fs::write(&path, text).unwrap();
        director.signal("HUP");
        wait_for("the reload is refused", async || {
            let doc = json(&get(&status).await);
            doc["last-reload-error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("is empty"))
        })
        .await;
        let reply = get(&director.url("/")).await;
        assert_eq!(reply.status, 200, "the route went away: {}", reply.text());
        let doc = json(&get(&status).await);
        assert_eq!(doc["clusters"], 1, "{doc}");
        // The whole file back: accepted, the error cleared.
        std::fs::write(&path, &good).unwrap();
        director.signal("HUP");
        wait_for("the good file reloads", async || {
            json(&get(&status).await)["last-reload-error"].is_null()
        })
        .await;
    }
}

#[tokio::test]
async fn a_relative_config_path_watches_its_cluster_directory() {
    let backend = TestBackend::tcp("shop-backend", "127.0.0.1:0")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("director.toml"),
        support::with_admin(
            "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\ncluster-dir = \"clusters\"\n",
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_director"))
        .args(["--config", "director.toml"])
        .current_dir(dir.path())
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _child = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("director: listening on ") {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("director starts");
    write_cluster(
        &dir.path().join("clusters"),
        "shop",
        &format!("[[backends]]\nname = \"a\"\nurl = \"{}\"\n", backend.url()),
    );
    let url = format!("{base}/");
    wait_for("the new cluster serves", async || {
        let reply = send(
            Request::get(&url)
                .header("host", "shop")
                .body(Full::default())
                .unwrap(),
        )
        .await;
        reply.status == 200
    })
    .await;
}

/// Writes a cluster file the way an operator's tool would: complete, then renamed into place.
fn write_cluster(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.part"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.toml"))).unwrap();
}

#[tokio::test]
async fn a_stale_temp_file_is_removed_at_start_up() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clusters = dir.path().join("clusters");
    std::fs::create_dir(&clusters).unwrap();
    let stale = clusters.join(".director-x.tmp");
    std::fs::write(&stale, "# half a cluster file from a crash\n").unwrap();
    let path = dir.path().join("director.toml");
    std::fs::write(&path, support::with_admin(&config(&backend, ""))).unwrap();
    let director = Director::spawn(dir, &["--config", path.to_str().unwrap()], 1);
    assert!(!stale.exists(), "the leftover temp file is still there");
    assert_eq!(get(&director.url("/")).await.status, 200);
}
