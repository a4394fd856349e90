//! The smaller gaps x0 users meet (issue 16, item 10), through the `director` binary: the public
//! monitor page, the FastCGI probe's x0 params, X-Accel-Redirect to no location, and per-cluster
//! files.

mod support;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use director_fastcgi::{
    FastCgiAddr,
    test_util::{FakeResponder, Script},
};
use http::Request;
use http_body_util::Full;
use support::*;

fn admin_addr(director: &Director) -> SocketAddr {
    director
        .admin()
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_page_needs_no_token_nor_our_host() {
    let director = Director::start(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\nadmin-token = \"s3cret-s3cret-s3cret\"\n",
    );
    let admin = director.admin();
    let addr = admin_addr(&director);

    // An outside load balancer: no token.
    let reply = get(&format!("{admin}/haproxy/monitor")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("Service ready"), "{}", reply.text());
    // HAProxy's `option httpchk` sends HTTP/1.0 without a Host; others name a VIP of theirs.
    let answer = raw(
        addr,
        b"GET /haproxy/monitor HTTP/1.0\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let reply = send(
        Request::get(format!("{admin}/haproxy/monitor"))
            .header("host", "lb-vip.example:80")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
    // It changes nothing.
    let reply = send(
        Request::post(format!("{admin}/haproxy/monitor"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 405);

    // Everything else stays behind the token and the Host check.
    for path in [
        "/haproxy/stats;csv",
        "/haproxy/monitor/",
        "/haproxy?stats",
        "/api/",
    ] {
        let reply = get(&format!("{admin}{path}")).await;
        assert_eq!(reply.status, 401, "{path}: {}", reply.text());
    }
    let reply = send(
        Request::get(format!("{admin}/haproxy/stats;csv"))
            .header("host", "evil.example")
            .header("authorization", "Bearer s3cret-s3cret-s3cret")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 421);
    let reply = send(
        Request::get(format!("{admin}/haproxy/stats;csv"))
            .header("authorization", "Bearer s3cret-s3cret-s3cret")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
}

fn fastcgi_url(addr: FastCgiAddr) -> String {
    match addr {
        FastCgiAddr::Tcp(sa) => format!("fastcgi://{sa}"),
        FastCgiAddr::Unix(path) => format!("fastcgi+unix:{}", path.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fastcgi_probe_names_cluster_and_backend_as_x0_did() {
    let app = FakeResponder::tcp(Script::respond("Content-Type: text/plain\r\n\r\nok"))
        .await
        .unwrap();
    let director = Director::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n\
         [clusters.shop]\n\n[clusters.shop.fastcgi]\ndocument-root = \"/srv/www\"\n\n\
         [clusters.shop.health]\ninterval = \"100ms\"\npath = \"/ping.php\"\n\n\
         [[clusters.shop.backends]]\nname = \"php1\"\nurl = \"{}\"\n\n\
         [[routes]]\ncluster = \"shop\"\n",
        fastcgi_url(app.addr())
    ));
    wait_until("a probe reached the application", || {
        app.requests()
            .iter()
            .any(|r| r.param("HTTP_X0_HEALTH_CHECK").is_some())
    })
    .await;
    let probe = app
        .requests()
        .into_iter()
        .find(|r| r.param("HTTP_X0_HEALTH_CHECK").is_some())
        .unwrap();
    assert_eq!(probe.param("HTTP_X0_HEALTH_CHECK"), Some("yes"));
    assert_eq!(probe.param("HTTP_X0_DIRECTOR"), Some("shop"));
    assert_eq!(probe.param("HTTP_X0_BACKEND"), Some("php1"));
    assert_eq!(probe.param("SCRIPT_NAME"), Some("/ping.php"));
    drop(director);
}

/// `director` with warnings logged to a file.
struct Logged {
    child: std::process::Child,
    base: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Logged {
    fn start(config: &str) -> Logged {
        use std::io::BufRead as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("director.toml");
        std::fs::write(&path, with_admin(config)).unwrap();
        let log = dir.path().join("stderr.log");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_director"))
            .args(["--config", path.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("director: listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("director listens");
        Logged {
            child,
            base,
            log,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accel_redirect_to_no_location_is_a_logged_404() {
    use director_core::testing::TestBackend;
    let files = tempfile::tempdir().unwrap();
    std::fs::create_dir(files.path().join("protected")).unwrap();
    std::fs::write(files.path().join("protected/a.txt"), "from disk").unwrap();
    let root = files.path().display();
    let backend = TestBackend::tcp("b0", "127.0.0.1:0").await.unwrap();
    // `plain` serves X-Sendfile but maps no X-Accel-Redirect location; `mapped` maps
    // /protected/ (host mapped.test).
    let director = Logged::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n\
         [clusters.plain]\n[clusters.plain.sendfile]\nroots = [\"{root}\"]\n\
         [[clusters.plain.backends]]\nname = \"p0\"\nurl = \"{url}\"\n\n\
         [clusters.mapped]\n[clusters.mapped.sendfile]\nroots = [\"{root}\"]\n\
         accel-redirect = {{ \"/protected/\" = \"{root}/protected\" }}\n\
         [[clusters.mapped.backends]]\nname = \"m0\"\nurl = \"{url}\"\n\n\
         [[routes]]\nhost = \"mapped.test\"\ncluster = \"mapped\"\n\n\
         [[routes]]\ncluster = \"plain\"\n",
        url = backend.url()
    ));
    let accel = |uri: &str, host: &str| {
        Request::get(director.url(&format!("/accel?uri={uri}")))
            .header("host", host)
            .body(Full::default())
            .unwrap()
    };
    // Mapped: the file.
    let reply = send(accel("/protected/a.txt", "mapped.test")).await;
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (200, "from disk")
    );
    // No location at all, and a location that does not match: 404, not the backend's body.
    for (uri, host) in [
        ("/protected/a.txt", "plain.test"),
        ("/elsewhere/a.txt", "mapped.test"),
    ] {
        let reply = send(accel(uri, host)).await;
        assert_eq!(reply.status, 404, "{uri} via {host}");
        assert!(!reply.text().contains("backend's own body"), "{uri}");
        assert!(reply.header("x-accel-redirect").is_none());
    }
    wait_until("both warnings are logged", || {
        director
            .log()
            .matches("maps to no accel-redirect location")
            .count()
            >= 2
    })
    .await;
    let log = director.log();
    let warned = |cluster: &str, uri: &str| {
        log.lines().any(|l| {
            l.contains("X-Accel-Redirect")
                && l.contains(&format!("cluster={cluster}"))
                && l.contains(uri)
                && l.contains("WARN")
        })
    };
    assert!(warned("plain", "/protected/a.txt"), "{log}");
    assert!(warned("mapped", "/elsewhere/a.txt"), "{log}");
}

async fn admin_call(method: &str, url: &str, form: &str) -> Reply {
    send(
        Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form.to_owned())))
            .unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_file_anywhere_is_created_changed_through_the_api_and_reloaded() {
    use director_core::testing::TestBackend;
    let backend = TestBackend::tcp("b0", "127.0.0.1:0").await.unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let own = elsewhere.path().join("shop.db.toml");
    // x0's director.load("shop" => "/etc/x0/shop.db"): the file does not exist yet.
    let director = Director::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\
         cluster-files = {{ shop = \"{}\" }}\n",
        own.display()
    ));
    let api = format!("{}/api", director.admin());
    assert!(own.exists(), "created when missing");
    let reply = get(&format!("{api}/shop")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // Changed through the API: written to its own file, atomically (nothing else beside it).
    let reply = admin_call(
        "PUT",
        &format!("{api}/shop/backends/b0"),
        &format!("url={}&capacity=3", backend.url()),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let text = std::fs::read_to_string(&own).unwrap();
    assert!(
        text.contains(&backend.url()) && text.contains("capacity = 3"),
        "{text}"
    );
    let names: Vec<_> = std::fs::read_dir(elsewhere.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["shop.db.toml"]);
    // Served by its name as host, as every dynamic cluster.
    let reply = send(
        Request::get(director.url("/"))
            .header("host", "shop")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // Edited on disk (an editor's write and rename): reloaded.
    let edited = text.replace("capacity = 3", "capacity = 5");
    let tmp = elsewhere.path().join("shop.db.toml.swp");
    std::fs::write(&tmp, &edited).unwrap();
    std::fs::rename(&tmp, &own).unwrap();
    let capacity = || async {
        let reply = get(&format!("{api}/shop/backends/b0")).await;
        let doc: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        doc["capacity"].as_u64()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while capacity().await != Some(5) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edit was never reloaded"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // It cannot be deleted at runtime: the config names it.
    let reply = admin_call("DELETE", &format!("{api}/shop"), "").await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(own.exists());

    // A file removed by hand does not empty the cluster: the reload is refused.
    std::fs::remove_file(&own).unwrap();
    director.signal("HUP");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = get(&format!("{api}/_status")).await;
        if reply.text().contains("is gone") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload error: {}",
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(capacity().await, Some(5));
}

#[test]
fn bad_cluster_files_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let clusters = dir.path().join("clusters");
    std::fs::create_dir(&clusters).unwrap();
    std::fs::write(clusters.join("shop.toml"), "").unwrap();
    let cases = [
        // the directory is not made up
        (
            format!(
                "cluster-files = {{ shop = \"{}/nope/shop.toml\" }}",
                dir.path().display()
            ),
            "cannot be used",
        ),
        // a name the cluster directory has
        (
            "cluster-dir = \"clusters\"\ncluster-files = { shop = \"shop-own.toml\" }".to_owned(),
            "cluster directory has a cluster \"shop\" too",
        ),
        // a file in the cluster directory
        (
            "cluster-dir = \"clusters\"\ncluster-files = { blog = \"clusters/blog.toml\" }"
                .to_owned(),
            "is in the cluster directory",
        ),
        // two clusters, one file
        (
            "cluster-files = { a = \"same.toml\", b = \"./same.toml\" }".to_owned(),
            "is the file of cluster \"a\" already",
        ),
        // an unsafe name
        (
            "cluster-files = { \"-rf\" = \"x.toml\" }".to_owned(),
            "does not start",
        ),
    ];
    for (server, message) in cases {
        let path = dir.path().join("director.toml");
        std::fs::write(&path, format!("[server]\n{server}\n")).unwrap();
        let (ok, text) = check(&path);
        assert!(!ok, "{server}");
        // File, line (the cluster-files line) and key.
        let line = 2 + server
            .lines()
            .position(|l| l.starts_with("cluster-files"))
            .unwrap();
        assert!(
            text.contains(&format!("director.toml:{line}:"))
                && text.contains("server.cluster-files."),
            "{server}: {text}"
        );
        assert!(text.contains(message), "{server}: {text}");
    }
    // `check` accepts a missing file (an empty cluster) and writes nothing.
    let path = dir.path().join("director.toml");
    std::fs::write(
        &path,
        "[server]\ncluster-files = { shop = \"shop.toml\" }\n",
    )
    .unwrap();
    let (ok, text) = check(&path);
    assert!(ok, "{text}");
    assert!(!dir.path().join("shop.toml").exists());
    assert!(!dir.path().join("same.toml").exists());
}
