//! Request and response bodies of FastCGI backends, through the `director` binary: a body of
//! unknown length (chunked) reaches PHP whole with its `CONTENT_LENGTH`, one that does not
//! arrive whole never reaches PHP and never gets a 200, and a response that carries its own
//! `Content-Length` is complete: counted so, its connection reused, its copy cached.
//!
//! The upload tests run a real php-fpm (found as in `hostile_fastcgi.rs`; skipped with a
//! message where there is none, a failure under `DIRECTOR_REQUIRE_PHP_FPM=1` as in CI). The
//! connection-reuse test uses the scripted FastCGI responder, which counts connections.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use director_fastcgi::{
    FastCgiAddr,
    test_util::{FakeResponder, Script},
};
use sha2::{Digest, Sha256};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// === php-fpm ===

fn php_fpm() -> Option<PathBuf> {
    support::php_fpm("the php-fpm body tests")
}

/// The raw body's sha256 and the `CONTENT_LENGTH` PHP saw.
const INPUT_PHP: &str = r#"<?php
header('Content-Type: text/plain');
$in = file_get_contents('php://input');
echo 'sha256=', hash('sha256', $in), ' len=', strlen($in), ' cl=', $_SERVER['CONTENT_LENGTH'] ?? '-';
"#;

/// The sha256 of the uploaded file `f` of a multipart form.
const FILES_PHP: &str = r#"<?php
header('Content-Type: text/plain');
$f = $_FILES['f'] ?? null;
if (!$f || $f['error'] !== UPLOAD_ERR_OK) { echo 'no file: ', json_encode($f); exit; }
echo 'sha256=', hash_file('sha256', $f['tmp_name']), ' size=', $f['size'];
"#;

/// A download that states its own length, cacheable, written in several pieces.
const DOWNLOAD_PHP: &str = r#"<?php
header('Content-Type: application/octet-stream');
header('Cache-Control: public, max-age=60');
header('Content-Length: 100000');
for ($i = 0; $i < 10; $i++) { echo str_repeat(chr(65 + $i), 10000); flush(); }
"#;

const OK_PHP: &str = "<?php echo 'ok';\n";

/// A php-fpm master with one TCP pool and an access log of request URIs; terminated on drop.
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
        let www = dir.path().join("www");
        std::fs::create_dir(&www).unwrap();
        for (name, text) in [
            ("input.php", INPUT_PHP),
            ("files.php", FILES_PHP),
            ("download.php", DOWNLOAD_PHP),
            ("ok.php", OK_PHP),
        ] {
            std::fs::write(www.join(name), text).unwrap();
        }
        let d = dir.path();
        let conf = format!(
            "[global]\npid = {pid}\nerror_log = {log}\ndaemonize = no\n\n[www]\nlisten = 127.0.0.1:{port}\n\
             pm = static\npm.max_children = 2\nclear_env = yes\ncatch_workers_output = yes\n\
             access.log = {access}\naccess.format = \"%{{REQUEST_URI}}e %s\"\n\
             php_admin_value[post_max_size] = 32M\nphp_admin_value[upload_max_filesize] = 32M\n\
             php_admin_value[upload_tmp_dir] = {d}\n",
            pid = d.join("php-fpm.pid").display(),
            log = d.join("php-fpm.log").display(),
            access = d.join("access.log").display(),
            d = d.display(),
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
            if std::net::TcpStream::connect(("127.0.0.1", fpm.port)).is_ok() {
                return fpm;
            }
            if let Ok(Some(status)) = fpm.child.try_wait() {
                panic!("php-fpm exited with {status}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("php-fpm did not start within 5 s");
    }

    /// The request URIs php-fpm has finished, one a line.
    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// A cluster `php` on this php-fpm, routed for every request; `cluster` goes into
    /// `[clusters.php]` (it may open sub-tables), `fastcgi` into its FastCGI table.
    fn config(&self, server: &str, cluster: &str, fastcgi: &str) -> String {
        with_admin(&format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n{server}\n\n\
             [clusters.php]\n{cluster}\n[clusters.php.fastcgi]\ndocument-root = \"{}\"\n{fastcgi}\n\n\
             [[clusters.php.backends]]\nname = \"fpm\"\nurl = \"fastcgi://127.0.0.1:{}\"\n\n\
             [[routes]]\ncluster = \"php\"\n",
            self.dir.path().join("www").display(),
            self.port
        ))
    }

    /// Waits until php-fpm has finished `ok.php` (a marker request sent after the one under
    /// test), then returns the access log: a request that reached PHP before the marker is in it.
    async fn log_after_marker(&self, director: &Director) -> String {
        let reply = get(&director.url("/ok.php?marker")).await;
        assert_eq!(reply.status, 200);
        wait_until("php-fpm logged the marker", || {
            self.access_log().contains("/ok.php?marker")
        })
        .await;
        self.access_log()
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

// === a chunked client ===

/// How a chunked upload ends.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// The last chunk and the end of the body.
    Whole,
    /// Half of the body, then the client closes its side (a broken-off upload).
    HalfThenClose,
}

/// Sends `body` as a chunked HTTP/1.1 request (64 KiB chunks) while reading the answer, and
/// returns its status and text. Write errors are ignored: Director may answer (413) and close
/// before the upload is done.
async fn chunked(
    director: &Director,
    target: &str,
    content_type: &str,
    body: &[u8],
    ending: Ending,
) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(director.socket_addr())
        .await
        .unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: php.test\r\nContent-Type: {content_type}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let body = match ending {
        Ending::Whole => body.to_vec(),
        Ending::HalfThenClose => body[..body.len() / 2].to_vec(),
    };
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(64 * 1024) {
            wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            wr.write_all(chunk).await?;
            wr.write_all(b"\r\n").await?;
        }
        if ending == Ending::Whole {
            wr.write_all(b"0\r\n\r\n").await?;
        } else {
            wr.shutdown().await?;
        }
        // Keep the write half open (a whole request) until the answer has been read.
        Ok::<_, std::io::Error>(wr)
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "no answer within 30 s");
    drop(writer.await);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    (status, text)
}

/// `n` bytes that are not all alike.
fn payload(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// === request bodies ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_5_mib_upload_reaches_php_whole() {
    let Some(bin) = php_fpm() else { return };
    let fpm = PhpFpm::start(&bin);
    let spool = tempfile::tempdir().unwrap();
    let director = Director::start(&fpm.config(
        "",
        "",
        &format!("spool-dir = \"{}\"", spool.path().display()),
    ));
    let data = payload(5 * 1024 * 1024);
    let want = sha256_hex(&data);

    // The raw body, as php://input.
    let (status, text) = chunked(
        &director,
        "/input.php",
        "application/octet-stream",
        &data,
        Ending::Whole,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(&format!("sha256={want} len=5242880 cl=5242880")),
        "{text}"
    );

    // The same bytes as a file of a multipart form, as $_FILES.
    let boundary = "director-test-boundary";
    let mut form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"up.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    form.extend_from_slice(&data);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, text) = chunked(
        &director,
        "/files.php",
        &format!("multipart/form-data; boundary={boundary}"),
        &form,
        Ending::Whole,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(&format!("sha256={want} size=5242880")),
        "{text}"
    );

    // The spool file went to the configured directory and was never left there.
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_over_max_request_body_gets_413_and_never_reaches_php() {
    let Some(bin) = php_fpm() else { return };
    let fpm = PhpFpm::start(&bin);
    let director = Director::start(&fpm.config("max-request-body = 1048576", "", ""));
    let (status, text) = chunked(
        &director,
        "/input.php?too-large",
        "application/octet-stream",
        &payload(2 * 1024 * 1024),
        Ending::Whole,
    )
    .await;
    assert_eq!(status, 413, "{text}");
    let log = fpm.log_after_marker(&director).await;
    assert!(!log.contains("too-large"), "PHP ran it:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_mid_body_gets_no_200_and_php_never_runs() {
    let Some(bin) = php_fpm() else { return };
    let fpm = PhpFpm::start(&bin);
    let director = Director::start(&fpm.config("", "", ""));
    let (status, text) = chunked(
        &director,
        "/input.php?broken-off",
        "application/octet-stream",
        &payload(1024 * 1024),
        Ending::HalfThenClose,
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let log = fpm.log_after_marker(&director).await;
    assert!(!log.contains("broken-off"), "PHP ran it:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_mid_body_gets_408_and_php_never_runs() {
    let Some(bin) = php_fpm() else { return };
    let fpm = PhpFpm::start(&bin);
    let director = Director::start(&fpm.config("client-body-timeout = \"1s\"", "", ""));
    let stream = tokio::net::TcpStream::connect(director.socket_addr())
        .await
        .unwrap();
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(
        b"POST /input.php?stalled HTTP/1.1\r\nHost: php.test\r\nTransfer-Encoding: chunked\r\n\
          Connection: close\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    // The write half stays open, silent: the client stalls.
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "no answer within 20 s");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    drop(wr);
    let log = fpm.log_after_marker(&director).await;
    assert!(!log.contains("stalled"), "PHP ran it:\n{log}");
}

// === response bodies with their own Content-Length ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_php_download_with_its_own_content_length_is_cached() {
    let Some(bin) = php_fpm() else { return };
    let fpm = PhpFpm::start(&bin);
    let director = Director::start(&fpm.config("", "[clusters.php.cache]\n", ""));
    let want: Vec<u8> = (0..10u8).flat_map(|i| vec![b'A' + i; 10_000]).collect();
    let first = get(&director.url("/download.php")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-length"), Some("100000"));
    assert!(first.body == want, "the body arrives whole");
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let second = get(&director.url("/download.php")).await;
    assert_eq!(second.status, 200);
    assert_eq!(
        second.header("x-cache"),
        Some("HIT"),
        "stored after the first"
    );
    assert!(second.body == want);
    let log = fpm.log_after_marker(&director).await;
    assert_eq!(log.matches("/download.php").count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_with_its_own_content_length_reuses_its_connection_and_is_no_abort() {
    let app = FakeResponder::tcp(Script::respond(
        "Content-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
    ))
    .await
    .unwrap();
    let FastCgiAddr::Tcp(addr) = app.addr() else {
        unreachable!()
    };
    let director = Director::start(&with_admin(&cluster_config(
        &[format!("fastcgi://{addr}")],
        "",
        "[clusters.app.fastcgi]\ndocument-root = \"/srv\"\ncheck-script = false\n",
    )));
    for _ in 0..5 {
        let reply = get(&director.url("/fetch.php")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "hello world");
    }
    assert_eq!(app.requests().len(), 5);
    assert_eq!(app.connections(), 1, "one connection, reused");
    let c = csv_counters(&director, "app", "b0").await;
    assert_eq!(c["cli_abrt"], 0, "{c:?}");
    assert_eq!(c["srv_abrt"], 0, "{c:?}");
}
