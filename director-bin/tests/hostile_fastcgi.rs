//! Hostile clients against FastCGI backends, through the `director` binary: nothing a client
//! sends may reach PHP as if Director said it, a path PHP would misread is refused, a missing
//! script never reaches php-fpm, and idle connections give their php-fpm worker back.
//!
//! Most tests run a real php-fpm (found as in `sendfile.rs`; skipped with a message where
//! there is none, a failure under `DIRECTOR_REQUIRE_PHP_FPM=1` as in CI). The idle-close and
//! busy-worker tests use the scripted FastCGI responder, which sees exactly what Director does.

mod support;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use director_fastcgi::{
    FastCgiAddr, FastCgiConfig, FastCgiService,
    test_util::{FakeResponder, Script},
};
use http_body_util::{BodyExt, Empty};
use support::*;
use tower::ServiceExt;

// === php-fpm ===

fn php_fpm() -> Option<PathBuf> {
    support::php_fpm("the php-fpm hostile-client tests")
}

/// Dumps `$_SERVER` one `NAME=value` per line.
const VARS_PHP: &str = r#"<?php
header('Content-Type: text/plain');
foreach ($_SERVER as $k => $v) { if (is_string($v)) { echo $k, '=', $v, "\n"; } }
"#;

/// A php-fpm master with one TCP pool of `children` static workers and an access log of
/// request URIs; terminated on drop.
struct PhpFpm {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl PhpFpm {
    fn start(bin: &Path, children: u32) -> PhpFpm {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let www = dir.path().join("www");
        std::fs::create_dir(&www).unwrap();
        std::fs::write(www.join("vars.php"), VARS_PHP).unwrap();
        // An "uploaded" file with PHP in it: it must never run.
        std::fs::write(www.join("upload.txt"), "<?php echo 'UPLOAD RAN';\n").unwrap();
        let d = dir.path();
        let conf = format!(
            "[global]\npid = {pid}\nerror_log = {log}\ndaemonize = no\n\n[www]\nlisten = 127.0.0.1:{port}\n\
             pm = static\npm.max_children = {children}\nclear_env = yes\ncatch_workers_output = yes\n\
             access.log = {access}\naccess.format = \"%{{REQUEST_URI}}e %s\"\n",
            pid = d.join("php-fpm.pid").display(),
            log = d.join("php-fpm.log").display(),
            access = d.join("access.log").display(),
        );
        std::fs::write(d.join("php-fpm.conf"), conf).unwrap();
        let child = Command::new(bin)
            .args(["-F", "-n", "-R", "-y"])
            .arg(d.join("php-fpm.conf"))
            .arg("-p")
            .arg(d)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn php-fpm");
        let mut fpm = PhpFpm { child, port, dir };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return fpm;
            }
            if let Ok(Some(status)) = fpm.child.try_wait() {
                panic!("php-fpm exited with {status}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("php-fpm did not start within 5 s");
    }

    fn docroot(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    /// The request URIs php-fpm has finished, in order.
    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// A cluster `php` on this php-fpm, routed for every request.
    fn config(&self, server: &str, cluster: &str) -> String {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n{server}\n\n\
             [clusters.php]\n{cluster}\n[clusters.php.fastcgi]\ndocument-root = \"{}\"\n\n\
             [[clusters.php.backends]]\nname = \"fpm\"\nurl = \"fastcgi://127.0.0.1:{}\"\n\n\
             [[routes]]\ncluster = \"php\"\n",
            self.docroot().display(),
            self.port
        )
    }
}

impl Drop for PhpFpm {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers; SIGKILL could orphan them.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a raw HTTP/1.1 request head (with `Connection: close`) and splits the answer.
async fn raw_get(director: &Director, target: &str, headers: &[&str]) -> (u16, String) {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: php.test\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    let answer = raw(
        director.socket_addr(),
        req.as_bytes(),
        Duration::from_secs(20),
    )
    .await;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn vars(body: &str) -> HashMap<&str, &str> {
    body.lines().filter_map(|l| l.split_once('=')).collect()
}

// === what reaches PHP ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_underscore_twin_never_reaches_php() {
    let Some(bin) = php_fpm() else { return };
    let fpm = PhpFpm::start(&bin, 2);
    let director = Director::start(&fpm.config("", ""));

    // The real header first, so Director's rewrite keeps its place and the twin comes after
    // it: php-fpm keeps the last of two equal names.
    let (status, body) = raw_get(
        &director,
        "/vars.php",
        &[
            "X-Forwarded-For: 192.0.2.1",
            "X_Forwarded_For: 6.6.6.6",
            "X-Forwarded-Host: real.example",
            "X_Forwarded_Host: evil.example",
            "X-Forwarded-Proto: http",
            "X_Forwarded_Proto: https",
            "X.Forwarded.For: 6.6.6.7",
            "X-Plain: kept",
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v = vars(&body);
    assert_eq!(v["HTTP_X_FORWARDED_FOR"], "192.0.2.1, 127.0.0.1", "{body}");
    assert_eq!(
        v["HTTP_X_FORWARDED_HOST"], "php.test",
        "Director's, not the client's"
    );
    assert_eq!(v["HTTP_X_FORWARDED_PROTO"], "http");
    assert_eq!(v["HTTP_X_PLAIN"], "kept");
    assert!(!v.contains_key("HTTPS"), "{body}");
    for spoof in ["6.6.6.6", "6.6.6.7", "evil.example"] {
        assert!(!body.contains(spoof), "{spoof} reached PHP: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_bytes_in_the_path_give_400() {
    let Some(bin) = php_fpm() else { return };
    let fpm = PhpFpm::start(&bin, 2);
    let director = Director::start(&fpm.config("", ""));

    for target in [
        "/vars.php%00.css",
        "/vars.php%00",
        "/vars%0a.php",
        "/vars.php/%0d",
    ] {
        let (status, body) = raw_get(&director, target, &[]).await;
        assert_eq!(status, 400, "{target}: {body}");
        assert!(
            !body.contains("SCRIPT_FILENAME"),
            "{target} ran PHP: {body}"
        );
    }
    // The same script by its right name still runs.
    let (status, body) = raw_get(&director, "/vars.php", &[]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_script_gives_404_without_reaching_php_fpm() {
    let Some(bin) = php_fpm() else { return };
    let fpm = PhpFpm::start(&bin, 2);
    let director = Director::start(&fpm.config("", ""));

    for target in [
        "/upload.txt/x.php",
        "/nothing-here.php",
        "/a/../missing.php",
    ] {
        let (status, body) = raw_get(&director, target, &[]).await;
        assert_eq!(status, 404, "{target}: {body}");
        assert!(!body.contains("UPLOAD RAN"), "{body}");
    }
    // php-fpm logs requests in the order it finishes them: once this one is logged, the
    // refused ones would have been too.
    let (status, _) = raw_get(&director, "/vars.php?marker", &[]).await;
    assert_eq!(status, 200);
    wait_until("php-fpm logged the marker request", || {
        fpm.access_log().contains("/vars.php?marker")
    })
    .await;
    let log = fpm.access_log();
    for refused in ["upload.txt", "nothing-here", "missing"] {
        assert!(!log.contains(refused), "{refused} reached php-fpm:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_reaches_php_from_a_trusted_x_forwarded_proto_only() {
    let Some(bin) = php_fpm() else { return };
    let fpm = PhpFpm::start(&bin, 2);

    let trusted = Director::start(&fpm.config("trust-forwarded-headers = true", ""));
    let (status, body) = raw_get(&trusted, "/vars.php", &["X-Forwarded-Proto: https"]).await;
    assert_eq!(status, 200, "{body}");
    let v = vars(&body);
    assert_eq!(v.get("HTTPS"), Some(&"on"), "{body}");
    assert_eq!(v["REQUEST_SCHEME"], "https");
    // PHP's own view, as frameworks read it.
    assert_eq!(v["HTTP_X_FORWARDED_PROTO"], "https");

    let (_, body) = raw_get(&trusted, "/vars.php", &["X-Forwarded-Proto: http"]).await;
    assert!(!vars(&body).contains_key("HTTPS"), "{body}");

    // An untrusted client's claim is replaced by Director's own view of the connection.
    let untrusted = Director::start(&fpm.config("", ""));
    let (_, body) = raw_get(&untrusted, "/vars.php", &["X-Forwarded-Proto: https"]).await;
    let v = vars(&body);
    assert!(!v.contains_key("HTTPS"), "{body}");
    assert_eq!(v["REQUEST_SCHEME"], "http");
}

// === idle connections ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_gives_its_php_fpm_worker_back_at_idle_timeout() {
    let Some(bin) = php_fpm() else { return };
    // One worker: while Director's pooled connection holds it, nobody else is served.
    let fpm = PhpFpm::start(&bin, 1);
    let director = Director::start(&fpm.config("", "idle-timeout = \"1s\""));
    let (status, _) = raw_get(&director, "/vars.php", &[]).await;
    assert_eq!(status, 200);

    // Another FastCGI client of the same pool (nginx, another cluster) with no request going
    // through Director meanwhile: it is served once Director closes its idle connection.
    let mut config = FastCgiConfig::default();
    config.cgi.document_root = fpm.docroot().display().to_string();
    config.keep_conn = false;
    config.read_timeout = Duration::from_secs(20);
    let other = FastCgiService::new(FastCgiAddr::Tcp(([127, 0, 0, 1], fpm.port).into()), config);
    let req = http::Request::get("/vars.php?other")
        .header("host", "other.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = other
        .oneshot(req)
        .await
        .expect("the worker was given back (php-fpm answered the other client)");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("QUERY_STRING=other"),
        "{body:?}"
    );
}

fn fastcgi_config(app: &FakeResponder, cluster: &str) -> String {
    let FastCgiAddr::Tcp(addr) = app.addr() else {
        unreachable!("TCP responder")
    };
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n\
         [clusters.php]\n{cluster}\n[clusters.php.fastcgi]\ndocument-root = \"/nonexistent/www\"\n\n\
         [[clusters.php.backends]]\nname = \"f\"\nurl = \"fastcgi://{addr}\"\n\n\
         [[routes]]\ncluster = \"php\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pooled_connection_is_closed_at_idle_timeout_with_no_request() {
    let app = FakeResponder::tcp(Script::respond("Content-Type: text/plain\r\n\r\nok"))
        .await
        .unwrap();
    let director = Director::start(&fastcgi_config(&app, "idle-timeout = \"1s\""));
    assert_eq!(get(&director.url("/index.php")).await.status, 200);
    assert!(app.requests()[0].keep_conn, "pooled");
    assert_eq!(app.connections(), 1);
    // No other request: only the idle timer can close it.
    wait_until("Director closed its idle connection", || {
        app.closed_connections() == 1
    })
    .await;
    // The next request opens a new connection.
    assert_eq!(get(&director.url("/index.php")).await.status, 200);
    assert_eq!(app.connections(), 2);
}

// === a backend that never answers ===

/// `director` with warnings on stderr, collected for the test.
struct LoggedDirector {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl LoggedDirector {
    fn start(config: &str) -> LoggedDirector {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("director.toml");
        std::fs::write(&path, with_admin(config)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_director"))
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("director starts");
        let log = Arc::new(Mutex::new(String::new()));
        let seen = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = seen.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        // Read stdout to its end, so Director never writes to a closed pipe.
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("director: listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("director announces its listener");
        LoggedDirector {
            child,
            addr,
            log,
            _dir: dir,
        }
    }
}

impl Drop for LoggedDirector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_accepts_but_never_answers_is_named_as_maybe_busy() {
    // Like php-fpm with every worker busy: the kernel accepts, nobody reads or answers.
    let app = FakeResponder::tcp(Script::new().read_request().sleep(Duration::from_secs(30)))
        .await
        .unwrap();
    let FastCgiAddr::Tcp(addr) = app.addr() else {
        unreachable!()
    };
    let director = LoggedDirector::start(&fastcgi_config(&app, "read-timeout = \"500ms\""));
    let reply = get(&format!("{}/index.php", director.addr)).await;
    assert_eq!(reply.status, 504);
    wait_until("the warning was logged", || {
        director
            .log
            .lock()
            .unwrap()
            .contains("workers may all be busy")
    })
    .await;
    let log = director.log.lock().unwrap().clone();
    let line = log
        .lines()
        .find(|l| l.contains("workers may all be busy"))
        .unwrap();
    assert!(
        line.contains(&addr.to_string()),
        "names the backend: {line}"
    );
    assert!(line.contains("pm.max_children"), "{line}");
}
