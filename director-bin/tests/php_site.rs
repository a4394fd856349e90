//! A PHP site behind one route with a `root`, `try-files` and DokuWiki's pretty-URL rewrites,
//! through the `director` binary and a real php-fpm (found as in `hostile_fastcgi.rs`; skipped
//! with a message where there is none, a failure under `DIRECTOR_REQUIRE_PHP_FPM=1` as in CI).
//!
//! Static files come from disk with their validators and never reach php-fpm (its access log
//! shows none); pretty URLs reach the front controller with their captures; uploads and
//! sessions work; `.php` source, dotfiles and paths outside the root are never served.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use sha2::{Digest, Sha256};
use support::*;

fn php_fpm() -> Option<PathBuf> {
    support::php_fpm("the PHP site tests")
}

/// The front controller: says what it was asked.
const DOKU_PHP: &str = r#"<?php
header('Content-Type: text/plain');
echo 'FRONT id=', $_GET['id'] ?? '-', ' do=', $_GET['do'] ?? '-', ' uri=', $_SERVER['REQUEST_URI'], "\n";
"#;
const FETCH_PHP: &str = r#"<?php
header('Content-Type: text/plain');
echo 'FETCH media=', $_GET['media'] ?? '-', "\n";
"#;
const UPLOAD_PHP: &str = r#"<?php
header('Content-Type: text/plain');
$f = $_FILES['file'] ?? null;
if (!$f || $f['error'] !== UPLOAD_ERR_OK) { http_response_code(400); echo 'no file'; exit; }
echo $f['name'], ' ', $f['size'], ' ', hash_file('sha256', $f['tmp_name']), "\n";
"#;
const SESSION_PHP: &str = r#"<?php
session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
header('Content-Type: text/plain');
echo 'n=', $_SESSION['n'], "\n";
"#;

/// A php-fpm master over a small PHP site, with an access log of request URIs; terminated on
/// drop.
struct Site {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Site {
    fn start(bin: &Path) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let www = d.join("www");
        for sub in ["lib/exe", "lib/tpl", "data/pages", "sessions"] {
            let at = if sub == "sessions" {
                d.join(sub)
            } else {
                www.join(sub)
            };
            std::fs::create_dir_all(at).unwrap();
        }
        std::fs::write(www.join("doku.php"), DOKU_PHP).unwrap();
        std::fs::write(www.join("lib/exe/fetch.php"), FETCH_PHP).unwrap();
        std::fs::write(www.join("upload.php"), UPLOAD_PHP).unwrap();
        std::fs::write(www.join("session.php"), SESSION_PHP).unwrap();
        std::fs::write(www.join("lib/tpl/style.css"), "body { color: black }\n").unwrap();
        std::fs::write(www.join("lib/tpl/style.css.gz"), b"\x1f\x8b pretend gzip").unwrap();
        std::fs::write(www.join("lib/tpl/script.js"), "var x = 1;\n").unwrap();
        std::fs::write(www.join("data/pages/start.txt"), "private wiki text\n").unwrap();
        std::fs::write(www.join(".htaccess"), "Require all denied\n").unwrap();
        std::fs::write(www.join("lib/.secret"), "dot\n").unwrap();
        std::fs::write(d.join("outside.txt"), "outside the root\n").unwrap();
        std::os::unix::fs::symlink(d.join("outside.txt"), www.join("escape.txt")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = format!(
            "[global]\npid = {pid}\nerror_log = {log}\ndaemonize = no\n\n[www]\nlisten = 127.0.0.1:{port}\n\
             pm = static\npm.max_children = 2\nclear_env = yes\ncatch_workers_output = yes\n\
             access.log = {access}\naccess.format = \"%{{REQUEST_URI}}e %s\"\n\
             php_admin_value[session.save_path] = {sessions}\n",
            pid = d.join("php-fpm.pid").display(),
            log = d.join("php-fpm.log").display(),
            access = d.join("access.log").display(),
            sessions = d.join("sessions").display(),
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
        let mut site = Site { child, port, dir };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return site;
            }
            if let Ok(Some(status)) = site.child.try_wait() {
                panic!("php-fpm exited with {status}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("php-fpm did not start within 5 s");
    }

    fn www(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The config of docs/php.md, on this site.
    fn config(&self) -> String {
        let www = self.www();
        let www = www.display();
        format!(
            r#"[server]
listen = ["127.0.0.1:0"]
access-log = "off"

[clusters.php.fastcgi]
document-root = "{www}"

[[clusters.php.backends]]
name = "fpm"
url = "fastcgi://127.0.0.1:{port}"

[[routes]]
cluster = "php"
root = "{www}"
try-files = ["$uri", "$uri/index.html"]
precompressed = true

[[routes.rewrites]]
match = "^/_media/(.*)"
to = "/lib/exe/fetch.php?media=$1"

[[routes.rewrites]]
match = "^/_detail/(.*)"
to = "/lib/exe/detail.php?media=$1"

[[routes.rewrites]]
match = "^/_export/([^/]+)/(.*)"
to = "/doku.php?do=export_$1&id=$2"

# Not DokuWiki's: shows that a rewrite cannot reach a denied path.
[[routes.rewrites]]
match = "^/private/(.*)"
to = "/data/$1"

# Nor can one whose result is normalised into it.
[[routes.rewrites]]
match = "^/up/(.*)"
to = "/lib/../data/$1"

[[routes.rewrites]]
match = "^/(.*)"
to = "/doku.php?id=$1"
if-missing = true

[[routes]]
path = "/data/"
deny = true
"#,
            port = self.port
        )
    }
}

impl Drop for Site {
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

async fn get_with(director: &Director, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::get(director.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::default()).unwrap()).await
}

/// Asks php-fpm for a marker and waits until it logged it: php-fpm logs requests as it
/// finishes them, so everything asked before is in the log by then.
async fn settled_log(director: &Director, site: &Site, marker: &str) -> String {
    let r = get(&director.url(&format!("/doku.php?{marker}"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    wait_until("php-fpm logged the marker", || {
        site.access_log().contains(marker)
    })
    .await;
    site.access_log()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_come_from_disk_with_validators_and_never_reach_php() {
    let Some(bin) = php_fpm() else { return };
    let site = Site::start(&bin);
    let director = Director::start(&site.config());

    let r = get(&director.url("/lib/tpl/script.js")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "var x = 1;\n");
    assert_eq!(r.header("content-type"), Some("text/javascript"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("vary"), Some("accept-encoding"));
    assert!(r.header("last-modified").is_some());
    let etag = r.header("etag").expect("an ETag").to_owned();

    let r = get_with(&director, "/lib/tpl/script.js", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = get_with(&director, "/lib/tpl/script.js", &[("range", "bytes=4-4")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.text(), "x");
    assert_eq!(r.header("content-range"), Some("bytes 4-4/11"));
    let r = send(
        Request::head(director.url("/lib/tpl/script.js"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("11"));
    assert!(r.body.is_empty());

    // The gzip sibling for a client that takes it, the file itself for one that does not.
    let r = get_with(
        &director,
        "/lib/tpl/style.css",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-type"), Some("text/css"));
    assert_eq!(&r.body[..], b"\x1f\x8b pretend gzip");
    let r = get_with(
        &director,
        "/lib/tpl/style.css",
        &[("accept-encoding", "br")],
    )
    .await;
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.text(), "body { color: black }\n");

    let log = settled_log(&director, &site, "static-marker").await;
    assert!(
        !log.contains("/lib/tpl/"),
        "a static file reached php-fpm:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pretty_urls_reach_the_front_controller() {
    let Some(bin) = php_fpm() else { return };
    let site = Site::start(&bin);
    let director = Director::start(&site.config());

    let r = get(&director.url("/wiki/syntax?do=edit")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "FRONT id=wiki/syntax do=edit uri=/doku.php?id=wiki/syntax&do=edit\n"
    );
    let r = get(&director.url("/_export/raw/wiki/syntax")).await;
    assert_eq!(
        r.text().lines().next(),
        Some("FRONT id=wiki/syntax do=export_raw uri=/doku.php?do=export_raw&id=wiki/syntax")
    );
    let r = get(&director.url("/_media/wiki/logo.png")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "FETCH media=wiki/logo.png\n");
    let r = get(&director.url("/")).await;
    assert!(r.text().starts_with("FRONT id= do=-"), "{}", r.text());
    // An existing script is not rewritten: `if-missing` is the look-ahead DokuWiki's nginx
    // rule needs for `/lib/`.
    let r = get(&director.url("/lib/exe/fetch.php?media=a.png")).await;
    assert_eq!(r.text(), "FETCH media=a.png\n");
    // A POST is rewritten too.
    let r = send(
        Request::post(director.url("/wiki/new?do=save"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from_static(b"wikitext=hi")))
            .unwrap(),
    )
    .await;
    assert!(
        r.text().starts_with("FRONT id=wiki/new do=save"),
        "{}",
        r.text()
    );
    // `.php` source is never a static file: the script runs.
    let r = get(&director.url("/doku.php?id=x")).await;
    assert!(r.text().starts_with("FRONT id=x"), "{}", r.text());
    assert!(!r.text().contains("<?php"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_sessions_work() {
    let Some(bin) = php_fpm() else { return };
    let site = Site::start(&bin);
    let director = Director::start(&site.config());

    let file: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let boundary = "director-php-site-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = send(
        Request::post(director.url("/upload.php"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Full::new(Bytes::from(body)))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sha = format!("{:x}", Sha256::digest(&file));
    assert_eq!(r.text(), format!("a.bin 300000 {sha}\n"));

    let r = get(&director.url("/session.php")).await;
    assert_eq!(r.text(), "n=1\n");
    let cookie = r
        .header_all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("PHPSESSID="))
        .expect("a session cookie");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let r = get_with(&director, "/session.php", &[("cookie", &pair)]).await;
    assert_eq!(r.text(), "n=2\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotfiles_outside_paths_and_denied_paths_are_refused() {
    let Some(bin) = php_fpm() else { return };
    let site = Site::start(&bin);
    let director = Director::start(&site.config());

    for path in [
        "/.htaccess",
        "/lib/.secret",
        "/%2Ehtaccess",
        "/.git/config",
        "/escape.txt",
        "/data/pages/start.txt",
        "/private/pages/start.txt",
        "/up/pages/start.txt",
        "/DATA/../data/pages/start.txt",
    ] {
        let r = get(&director.url(path)).await;
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert!(!r.text().contains("outside the root"), "{path}");
        assert!(!r.text().contains("private wiki text"), "{path}");
    }
    // Above the root: the normaliser's 400.
    let r = raw(
        director.socket_addr(),
        b"GET /../outside.txt HTTP/1.1\r\nHost: php.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let log = settled_log(&director, &site, "refused-marker").await;
    for refused in ["htaccess", "secret", "escape", "start.txt", ".git"] {
        assert!(!log.contains(refused), "{refused} reached php-fpm:\n{log}");
    }
}
