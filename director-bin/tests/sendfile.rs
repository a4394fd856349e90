//! X-Sendfile through the `director` binary: HTTP backends (the test backend's `/sendfile` and
//! `/accel` paths) and a real php-fpm setting the header.

mod support;

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use director_core::testing::TestBackend;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::*;

/// A directory tree to serve: `files/` (the root) with a text file, a binary file, a
/// subdirectory, and symlinks; `secret/` beside it, outside the root.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("files");
        std::fs::create_dir_all(files.join("sub")).unwrap();
        std::fs::create_dir_all(files.join("protected")).unwrap();
        std::fs::create_dir_all(dir.path().join("secret")).unwrap();
        std::fs::write(files.join("hello.txt"), "hello, sendfile\n").unwrap();
        std::fs::write(files.join("data.bin"), data()).unwrap();
        std::fs::write(files.join("protected/report.pdf"), "%PDF-1.4 report").unwrap();
        std::fs::write(dir.path().join("secret/key"), "SECRET").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret/key"), files.join("escape")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), files.join("escape-dir")).unwrap();
        Tree { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("files")
    }

    fn path(&self, rel: &str) -> String {
        self.root().join(rel).display().to_string()
    }

    /// `[clusters.NAME.sendfile]` over the root, with `/protected/` mapped for X-Accel-Redirect.
    fn table(&self, cluster: &str) -> String {
        format!(
            "[clusters.{cluster}.sendfile]\nroots = [\"{}\"]\n[clusters.{cluster}.sendfile.accel-redirect]\n\"/protected/\" = \"{}\"\n",
            self.root().display(),
            self.path("protected")
        )
    }
}

/// 100 000 bytes of the binary file.
fn data() -> Vec<u8> {
    (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn sendfile_url(director: &Director, path: &str) -> String {
    director.url(&format!("/sendfile?path={}", enc(path)))
}

async fn get_with(url: &str, fields: &[(&str, &str)]) -> Reply {
    let mut r = Request::get(url);
    for (k, v) in fields {
        r = r.header(*k, *v);
    }
    send(r.body(Full::default()).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_backend_has_director_serve_the_file() {
    let tree = Tree::new();
    let backend = TestBackend::tcp("b0", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(&[backend.url()], "", &tree.table("app")));

    // The whole file, with the backend's cookie and cache headers, not its body.
    let reply = get(&sendfile_url(&director, &tree.path("data.bin"))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], &data()[..]);
    assert_eq!(reply.header("content-length"), Some("100000"));
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(reply.header("accept-ranges"), Some("bytes"));
    assert_eq!(reply.header("set-cookie"), Some("sendfile=1"));
    assert_eq!(reply.header("cache-control"), Some("private, max-age=60"));
    assert_eq!(reply.header("x-backend"), Some("b0"));
    assert!(reply.header("x-sendfile").is_none());
    let etag = reply.header("etag").unwrap().to_owned();
    let modified = reply.header("last-modified").unwrap().to_owned();

    // Content-Type by extension, or the backend's when it sets one.
    let reply = get(&sendfile_url(&director, &tree.path("hello.txt"))).await;
    assert_eq!(reply.text(), "hello, sendfile\n");
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    let reply = get(&format!(
        "{}&type=application/x-custom",
        sendfile_url(&director, &tree.path("hello.txt"))
    ))
    .await;
    assert_eq!(reply.header("content-type"), Some("application/x-custom"));

    // One range.
    let url = sendfile_url(&director, &tree.path("data.bin"));
    let reply = get_with(&url, &[("range", "bytes=1000-1999")]).await;
    assert_eq!(reply.status, 206);
    assert_eq!(
        reply.header("content-range"),
        Some("bytes 1000-1999/100000")
    );
    assert_eq!(&reply.body[..], &data()[1000..2000]);
    let reply = get_with(&url, &[("range", "bytes=-10")]).await;
    assert_eq!(&reply.body[..], &data()[99_990..]);

    // Several ranges: multipart/byteranges with an exact length.
    let reply = get_with(&url, &[("range", "bytes=0-3, 50000-50003")]).await;
    assert_eq!(reply.status, 206);
    let ct = reply.header("content-type").unwrap().to_owned();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").unwrap();
    assert_eq!(
        reply.header("content-length").unwrap(),
        reply.body.len().to_string()
    );
    let mut want = format!(
        "--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-3/100000\r\n\r\n"
    )
    .into_bytes();
    want.extend_from_slice(&data()[0..4]);
    want.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 50000-50003/100000\r\n\r\n").as_bytes());
    want.extend_from_slice(&data()[50000..50004]);
    want.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert_eq!(&reply.body[..], &want[..]);

    // Unsatisfiable.
    let reply = get_with(&url, &[("range", "bytes=100000-")]).await;
    assert_eq!(reply.status, 416);
    assert_eq!(reply.header("content-range"), Some("bytes */100000"));

    // If-Range: a stale validator gets the whole file.
    let reply = get_with(&url, &[("range", "bytes=0-9"), ("if-range", "\"stale\"")]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 100_000);
    let reply = get_with(&url, &[("range", "bytes=0-9"), ("if-range", &etag)]).await;
    assert_eq!(reply.status, 206);

    // Revalidation.
    let reply = get_with(&url, &[("if-none-match", &etag)]).await;
    assert_eq!(reply.status, 304);
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("etag"), Some(etag.as_str()));
    assert_eq!(reply.header("set-cookie"), Some("sendfile=1"));
    let reply = get_with(&url, &[("if-modified-since", &modified)]).await;
    assert_eq!(reply.status, 304);
    let reply = get_with(&url, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(reply.status, 200);

    // HEAD: the headers of the whole file, no body.
    let reply = send(Request::head(&url).body(Full::default()).unwrap()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("100000"));
    assert_eq!(reply.header("etag"), Some(etag.as_str()));
    assert!(reply.body.is_empty());

    // Other methods.
    let reply = send(Request::post(&url).body(Full::default()).unwrap()).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));

    // X-Accel-Redirect through the configured location.
    let reply = get(&director.url("/accel?uri=/protected/report.pdf")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "%PDF-1.4 report");
    assert_eq!(reply.header("content-type"), Some("application/pdf"));
    assert!(reply.header("x-accel-redirect").is_none());
    let reply = get(&director.url("/accel?uri=/elsewhere/report.pdf")).await;
    assert_eq!(reply.status, 404);

    // The backend answered every request above once, and is idle again.
    assert_eq!(backend.in_flight(""), 0);
}

/// A `director` whose warnings go to a file, for the tests that check them.
struct LoggedDirector {
    child: Child,
    base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoggedDirector {
    fn start(config: &str) -> LoggedDirector {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("director.toml");
        // An ephemeral admin port, so it never collides with another Director on 8081.
        std::fs::write(&path, support::with_admin(config)).unwrap();
        let log = dir.path().join("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_director"))
            .args(["--config", path.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
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
        LoggedDirector {
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

impl Drop for LoggedDirector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_outside_the_roots_are_refused_and_logged() {
    let tree = Tree::new();
    let backend = TestBackend::tcp("b0", "127.0.0.1:0").await.unwrap();
    let director = LoggedDirector::start(&cluster_config(&[backend.url()], "", &tree.table("app")));
    let url = |p: &str| director.url(&format!("/sendfile?path={}", enc(p)));
    let secret = tree.dir.path().join("secret/key").display().to_string();
    let cases = [
        // `..` out of the root
        (tree.path("../secret/key"), 403),
        (tree.path("sub/../../secret/key"), 403),
        ("../secret/key".to_owned(), 403),
        // absolute paths outside every root
        (secret.clone(), 403),
        ("/etc/passwd".to_owned(), 403),
        // symlinks inside the root pointing out
        (tree.path("escape"), 403),
        (tree.path("escape-dir/key"), 403),
        // a directory, and a missing file
        (tree.path("sub"), 403),
        (tree.path("missing.txt"), 404),
        // relative paths are under the root
        ("hello.txt".to_owned(), 200),
    ];
    for (path, status) in &cases {
        let reply = get(&url(path)).await;
        assert_eq!(reply.status, *status, "{path}");
        assert!(!reply.text().contains("SECRET"), "{path}");
        assert!(reply.header("x-sendfile").is_none());
    }
    // X-Accel-Redirect: decoded dots cannot climb out either.
    let reply =
        get(&director.url("/accel?uri=/protected/%252e%252e/%252e%252e/%252e%252e/secret/key"))
            .await;
    assert_eq!(reply.status, 403);

    let log = director.log();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("outside the allowed roots"))
        .collect();
    assert!(refusals.len() >= 7, "one warning per refusal:\n{log}");
    assert!(
        refusals.iter().any(|l| l.contains("cluster=app")
            && l.contains("backend=b0")
            && l.contains("/etc/passwd")),
        "warnings name cluster, backend and path:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_that_do_not_allow_it_strip_and_ignore_the_headers() {
    let tree = Tree::new();
    let backend = TestBackend::tcp("b0", "127.0.0.1:0").await.unwrap();
    // `app` allows neither header; `open` (host open.test) allows X-Sendfile but maps no
    // X-Accel-Redirect location.
    let config = format!(
        "{}\n[clusters.open]\n[clusters.open.sendfile]\nroots = [\"{}\"]\n[[clusters.open.backends]]\nname = \"o\"\nurl = \"{}\"\n[[routes]]\nhost = \"open.test\"\ncluster = \"open\"\n",
        cluster_config(&[backend.url()], "", ""),
        tree.root().display(),
        backend.url()
    );
    let director = Director::start(&config);
    let file = sendfile_url(&director, &tree.path("hello.txt"));
    let reply = get(&file).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "the backend's own body\n");
    assert!(reply.header("x-sendfile").is_none(), "stripped");
    assert_eq!(reply.header("set-cookie"), Some("sendfile=1"));

    let reply = get(&director.url("/accel?uri=/protected/report.pdf")).await;
    assert_eq!(reply.text(), "the backend's own body\n");
    assert!(reply.header("x-accel-redirect").is_none());

    // The same backend answers through `open`: X-Sendfile is honoured there...
    let reply = get_with(&file, &[("host", "open.test")]).await;
    assert_eq!(reply.text(), "hello, sendfile\n");
    // ...and X-Accel-Redirect, with no location configured, is a 404 (never the backend's
    // body as a silent 200: see x0_smalls.rs).
    let reply = get_with(
        &director.url("/accel?uri=/protected/report.pdf"),
        &[("host", "open.test")],
    )
    .await;
    assert_eq!(reply.status, 404);
    assert!(reply.header("x-accel-redirect").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_slot_is_released_while_the_file_is_still_streaming() {
    let tree = Tree::new();
    let big = tree.path("big.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    let backend = TestBackend::tcp("b0", "127.0.0.1:0").await.unwrap();
    // One request at a time, and a short queue: a held slot would make the second request 504.
    let mut config = cluster_config(
        &[backend.url()],
        "",
        &format!("queue-timeout = \"1s\"\n{}", tree.table("app")),
    );
    config = config.replace(
        &format!("url = \"{}\"\n", backend.url()),
        &format!("url = \"{}\"\ncapacity = 1\n", backend.url()),
    );
    let director = Director::start(&config);

    // Start the big download and read only its first frame.
    let response = client()
        .request(
            Request::get(sendfile_url(&director, &big))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some_and(|d| !d.is_empty()));

    // The backend is free for the next request while the file is far from sent.
    let reply = get(&director.url("/")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "backend b0\n");
    drop(body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_file_streams_with_flat_memory() {
    const SIZE: u64 = 1 << 30;
    let tree = Tree::new();
    let big = tree.path("big.bin");
    // Sparse, with markers to prove offsets: reading it costs page cache, not the proxy's memory.
    let mut f = std::fs::File::create(&big).unwrap();
    f.set_len(SIZE).unwrap();
    for (at, mark) in [(0u64, b"START"), (SIZE / 2, b"MIDDL"), (SIZE - 5, b"E-N-D")] {
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(at)).unwrap();
        f.write_all(mark).unwrap();
    }
    drop(f);
    let backend = TestBackend::tcp("b0", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(&[backend.url()], "", &tree.table("app")));
    let before = director.peak_rss_kib();
    let started = std::time::Instant::now();
    let response = client()
        .request(
            Request::get(sendfile_url(&director, &big))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let (mut received, mut head, mut middle, mut tail) = (0u64, Vec::new(), Vec::new(), Vec::new());
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.unwrap().into_data() else {
            continue;
        };
        let (start, end) = (received, received + data.len() as u64);
        if start == 0 {
            head.extend_from_slice(&data[..5]);
        }
        if start <= SIZE / 2 && SIZE / 2 + 5 <= end {
            let at = (SIZE / 2 - start) as usize;
            middle.extend_from_slice(&data[at..at + 5]);
        }
        if end == SIZE {
            tail.extend_from_slice(&data[data.len() - 5..]);
        }
        received = end;
    }
    let elapsed = started.elapsed();
    assert_eq!(received, SIZE);
    assert_eq!(head, b"START");
    assert_eq!(middle, b"MIDDL");
    assert_eq!(tail, b"E-N-D");
    let peak = director.peak_rss_kib();
    eprintln!(
        "director peak RSS: {before} KiB before, {peak} KiB after serving a 1 GiB file with X-Sendfile ({:.0} MiB/s)",
        SIZE as f64 / (1 << 20) as f64 / elapsed.as_secs_f64()
    );
    assert!(
        peak < before + 32 * 1024,
        "peak RSS grew from {before} to {peak} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_front_sees_the_file() {
    let tree = Tree::new();
    let backend = TestBackend::tcp("b0", "127.0.0.1:0").await.unwrap();
    let extra = format!(
        "[clusters.app.cache]\ndefault-ttl = \"60s\"\n{}",
        tree.table("app")
    );
    let director = Director::start(&cluster_config(&[backend.url()], "", &extra));
    let url = format!(
        "{}&type=text/plain",
        sendfile_url(&director, &tree.path("hello.txt"))
    );
    for _ in 0..2 {
        let reply = get(&url).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "hello, sendfile\n");
        assert!(reply.header("x-sendfile").is_none());
    }
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[clusters.app]\n[clusters.app.sendfile]\nroots = [\"/no/such/dir\"]\n[[clusters.app.backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    let (ok, text) = check(&path);
    assert!(!ok);
    assert!(
        text.contains(":3:10: clusters.app.sendfile.roots[0]:") && text.contains("/no/such/dir"),
        "{text}"
    );

    std::fs::write(
        &path,
        "[clusters.app]\n[clusters.app.sendfile]\nroots = []\n[[clusters.app.backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    let (ok, text) = check(&path);
    assert!(!ok);
    assert!(text.contains("clusters.app.sendfile.roots: "), "{text}");

    std::fs::write(
        &path,
        "[clusters.app]\n[clusters.app.sendfile]\nroot = \"/tmp\"\n",
    )
    .unwrap();
    let (ok, text) = check(&path);
    assert!(!ok);
    assert!(text.contains("unknown field `root`"), "{text}");
}

// === php-fpm ===

fn php_fpm() -> Option<PathBuf> {
    support::php_fpm("the php-fpm X-Sendfile test")
}

const SEND_PHP: &str = r#"<?php
header('Set-Cookie: php=1');
header('Cache-Control: private');
if (isset($_GET['type'])) { header('Content-Type: ' . $_GET['type']); }
header('X-Sendfile: ' . $_GET['f']);
echo "php's own body, not sent";
"#;

struct PhpFpm {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl PhpFpm {
    fn start(bin: &Path) -> PhpFpm {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::create_dir(dir.path().join("www")).unwrap();
        std::fs::write(dir.path().join("www/send.php"), SEND_PHP).unwrap();
        let d = dir.path();
        let conf = format!(
            "[global]\npid = {pid}\nerror_log = {log}\ndaemonize = no\n\n[www]\nlisten = 127.0.0.1:{port}\n\
             pm = static\npm.max_children = 2\nclear_env = no\ncatch_workers_output = yes\n",
            pid = d.join("php-fpm.pid").display(),
            log = d.join("php-fpm.log").display(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_fpm_sets_x_sendfile() {
    let Some(bin) = php_fpm() else {
        return;
    };
    let fpm = PhpFpm::start(&bin);
    let tree = Tree::new();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n[clusters.php]\n\
         [clusters.php.fastcgi]\ndocument-root = \"{}\"\n{}\
         [[clusters.php.backends]]\nname = \"fpm\"\nurl = \"fastcgi://127.0.0.1:{}\"\n\n[[routes]]\ncluster = \"php\"\n",
        fpm.docroot().display(),
        tree.table("php"),
        fpm.port
    );
    let director = Director::start(&config);
    let url = |f: &str| director.url(&format!("/send.php?f={}", enc(f)));

    // PHP always sends a Content-Type; the script sets the one the file should have.
    let data_url = format!(
        "{}&type=application/octet-stream",
        url(&tree.path("data.bin"))
    );
    let reply = get(&data_url).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(&reply.body[..], &data()[..]);
    assert_eq!(reply.header("content-length"), Some("100000"));
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(reply.header("set-cookie"), Some("php=1"));
    assert_eq!(reply.header("cache-control"), Some("private"));
    assert!(reply.header("x-sendfile").is_none());
    let etag = reply.header("etag").unwrap().to_owned();

    let reply = get_with(&data_url, &[("range", "bytes=10-19")]).await;
    assert_eq!(reply.status, 206);
    assert_eq!(reply.header("content-range"), Some("bytes 10-19/100000"));
    assert_eq!(&reply.body[..], &data()[10..20]);

    let reply = get_with(&data_url, &[("range", "bytes=0-0,-1")]).await;
    assert_eq!(reply.status, 206);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("multipart/byteranges; boundary=")
    );

    let reply = get_with(&data_url, &[("if-none-match", &etag)]).await;
    assert_eq!(reply.status, 304);
    assert!(reply.body.is_empty());

    let reply = send(Request::head(&data_url).body(Full::default()).unwrap()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("100000"));
    assert!(reply.body.is_empty());

    for bad in [
        tree.path("../secret/key"),
        "/etc/passwd".to_owned(),
        tree.path("escape"),
    ] {
        let reply = get(&url(&bad)).await;
        assert_eq!(reply.status, 403, "{bad}");
        assert!(!reply.text().contains("SECRET"));
    }
    assert_eq!(get(&url(&tree.path("nope"))).await.status, 404);

    // The FastCGI connection was handed back: many requests in a row on a pool of two workers.
    for _ in 0..10 {
        assert_eq!(get(&url(&tree.path("hello.txt"))).await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_road_warrior_route_serves_files_only_when_its_own_table_allows() {
    // x0's road warrior had no director setting for X-Sendfile; Director's is off unless the
    // route has its own `[routes.sendfile]`.
    let tree = Tree::new();
    let backend = TestBackend::tcp("b0", "127.0.0.1:0").await.unwrap();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n\
         [[routes]]\nhost = \"files.test\"\nbackend = \"{url}\"\n\
         [routes.sendfile]\nroots = [\"{root}\"]\n\n\
         [[routes]]\nbackend = \"{url}\"\n",
        url = backend.url(),
        root = tree.root().display()
    );
    let director = LoggedDirector::start(&text);
    let files = ("host", "files.test");
    let allowed = director.url(&format!("/sendfile?path={}", enc(&tree.path("hello.txt"))));
    let reply = get_with(&allowed, &[files]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello, sendfile\n");
    assert!(reply.header("x-sendfile").is_none());
    let reply = get_with(&allowed, &[files, ("range", "bytes=0-4")]).await;
    assert_eq!((reply.status.as_u16(), reply.text()), (206, "hello".into()));

    // Outside the roots: 403 and a warning naming the route and the backend.
    let outside = director.url(&format!(
        "/sendfile?path={}",
        enc(&tree.dir.path().join("secret/key").display().to_string())
    ));
    let reply = get_with(&outside, &[files]).await;
    assert_eq!(reply.status, 403);
    assert!(!reply.text().contains("SECRET"));
    let log = director.log();
    assert!(
        log.lines()
            .any(|l| l.contains("outside the allowed roots") && l.contains("routes[0]")),
        "{log}"
    );

    // The other route has no table: the header is stripped and the backend's body passes.
    let plain =
        get(&director.url(&format!("/sendfile?path={}", enc(&tree.path("hello.txt"))))).await;
    assert_eq!(plain.status, 200);
    assert!(plain.header("x-sendfile").is_none());
    assert_ne!(plain.text(), "hello, sendfile\n");
}

#[test]
fn a_cluster_route_with_its_own_sendfile_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[clusters.app]\n[[clusters.app.backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n\
         [[routes]]\ncluster = \"app\"\n[routes.sendfile]\nroots = [\"/tmp\"]\n",
    )
    .unwrap();
    let (ok, text) = check(&path);
    assert!(!ok);
    assert!(
        text.contains("routes[0].sendfile") && text.contains("[clusters.app.sendfile]"),
        "{text}"
    );
}
