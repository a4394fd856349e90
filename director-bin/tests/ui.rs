//! The web interface in a real browser: headless Chromium, driven through chromedriver's W3C
//! WebDriver protocol (JSON over HTTP, spoken directly here), against the real `director` binary
//! with an admin token, under a bounded load.
//!
//! The test needs Debian's `chromium` and `chromium-driver`. CI installs them and sets
//! `DIRECTOR_REQUIRE_CHROMIUM=1`, which makes their absence a failure; elsewhere the test is
//! skipped (with a message) when they are missing.
//!
//! Screenshots go to `target/ui-artifacts/` (`overview.png`, `overview-phone.png`, `live.png`).

mod support;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use director_core::testing::TestBackend;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use support::{Director, get, send};

const TOKEN: &str = "ui-test-token-0123456789";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Where the screenshots go: `target/ui-artifacts`.
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("ui-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether the browser is here; panics if CI promised it and it is not.
fn browser_available() -> bool {
    let here =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !here && std::env::var_os("DIRECTOR_REQUIRE_CHROMIUM").is_some_and(|v| v == "1") {
        panic!(
            "DIRECTOR_REQUIRE_CHROMIUM=1 but {CHROMIUM} or {CHROMEDRIVER} is missing \
             (apt-get install chromium chromium-driver)"
        );
    }
    if !here {
        eprintln!("SKIPPED: no {CHROMIUM} / {CHROMEDRIVER} on this machine");
    }
    here
}

// === WebDriver ===

/// A chromedriver process and one browser session in it; both end on drop.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let port = support::dead_port().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready =
                tokio::time::timeout(Duration::from_secs(2), try_get(&format!("{base}/status")))
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            _profile: profile,
        };
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let created = browser
            .call(
                Method::POST,
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
                }}}),
            )
            .await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        browser
    }

    /// One WebDriver command; returns its `value`, panicking on a WebDriver error.
    async fn call(&self, method: Method, path: &str, body: Value) -> Value {
        let path = if path.starts_with("/session/") || path == "/session" {
            path.to_owned()
        } else {
            format!("/session/{}{path}", self.session)
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        let body = if method == Method::GET || method == Method::DELETE {
            Full::default()
        } else {
            Full::new(Bytes::from(body.to_string()))
        };
        req = req.header("accept", "application/json");
        let reply = send(req.body(body).unwrap()).await;
        let doc: Value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|_| panic!("{path}: not JSON: {}", reply.text()));
        assert!(
            reply.status.is_success(),
            "WebDriver {path} failed: {}",
            doc["value"]
        );
        doc["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(Method::POST, "/url", json!({ "url": url })).await;
    }

    async fn script(&self, js: &str) -> Value {
        self.call(
            Method::POST,
            "/execute/sync",
            json!({ "script": js, "args": [] }),
        )
        .await
    }

    /// Runs `js` (an expression) until it is truthy, returning its value; panics after `limit`.
    async fn wait_for(&self, what: &str, js: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.script(&format!("return ({js});")).await;
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            if Instant::now() > deadline {
                let page = self
                    .script("return document.body ? document.body.innerText.slice(0, 2000) : ''")
                    .await;
                panic!("timed out waiting for {what}; the page shows:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                Method::POST,
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        v["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(Method::POST, &format!("/element/{id}/click"), json!({}))
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            Method::POST,
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn resize(&self, width: u32, height: u32) {
        self.call(
            Method::POST,
            "/window/rect",
            json!({ "width": width, "height": height }),
        )
        .await;
    }

    /// Saves a PNG screenshot as `name` in the artefacts directory; returns its size in bytes.
    async fn screenshot(&self, name: &str) -> usize {
        let b64 = self.call(Method::GET, "/screenshot", Value::Null).await;
        let png = base64_decode(b64.as_str().expect("base64 text"));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
        let path = artifacts().join(name);
        std::fs::write(&path, &png).unwrap();
        eprintln!("screenshot: {} ({} bytes)", path.display(), png.len());
        png.len()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Best effort: end the session so Chromium exits, then stop chromedriver (our child).
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let req = Request::delete(url).body(Full::default()).unwrap();
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        support::client().request(req),
                    )
                    .await;
                });
            })
            .join();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn try_get(url: &str) -> Option<Value> {
    let req = Request::get(url).body(Full::default()).unwrap();
    let res = support::client().request(req).await.ok()?;
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .ok()?
        .to_bytes();
    serde_json::from_slice(&body).ok()
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|&c| c != b'=' && c != b'\n').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

// === load ===

/// Sends requests through the proxy from a task, at most `limit`, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(url: String, limit: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (s, n) = (stop.clone(), sent.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) && n.load(Ordering::Relaxed) < limit {
                let bucket = if n.load(Ordering::Relaxed) % 3 == 0 {
                    "vip"
                } else {
                    "-"
                };
                let req = Request::get(&url)
                    .header("x-bucket", bucket)
                    .body(Full::default())
                    .unwrap();
                let _ = send(req).await;
                n.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Load { stop, sent, task }
    }

    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.sent.load(Ordering::Relaxed)
    }
}

async fn admin_get(url: &str, token: Option<&str>) -> support::Reply {
    let mut req = Request::get(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(req.body(Full::default()).unwrap()).await
}

// === the test ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_disables_a_backend_and_live_page_charts_traffic_with_a_token() {
    if !browser_available() {
        return;
    }
    let b0 = TestBackend::tcp("b0", "127.0.0.1:0").await.unwrap();
    let b1 = TestBackend::tcp("b1", "127.0.0.1:0").await.unwrap();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin-listen = [\"127.0.0.1:0\"]\n\
         admin-token = \"{TOKEN}\"\naccess-log = \"off\"\n\n\
         [clusters.app]\n\
         [[clusters.app.buckets]]\nname = \"vip\"\nrate = 0.25\nceil = 0.5\n\
         [[clusters.app.backends]]\nname = \"b0\"\nurl = \"{}\"\ncapacity = 8\n\
         [[clusters.app.backends]]\nname = \"b1\"\nurl = \"{}\"\ncapacity = 8\n\n\
         [[routes]]\ncluster = \"app\"\nbucket-header = \"x-bucket\"\n",
        b0.url(),
        b1.url()
    );
    let director = Director::start(&config);
    let admin = director.admin();

    // The pages are public (they hold no data); the data is not.
    let root = admin_get(&format!("{admin}/"), None).await;
    assert_eq!(root.status, StatusCode::FOUND);
    assert_eq!(root.header("location"), Some("/ui/"));
    assert_eq!(
        admin_get(&format!("{admin}/ui/"), None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        admin_get(&format!("{admin}/history"), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        admin_get(&format!("{admin}/api/"), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        admin_get(&format!("{admin}/history"), Some(TOKEN))
            .await
            .status,
        StatusCode::OK
    );

    let load = Load::start(director.url("/"), 600);
    let browser = Browser::start().await;

    // --- overview: asks for the token, then lists every backend ---
    browser.goto(&format!("{admin}/")).await;
    browser
        .wait_for(
            "the token dialog",
            "document.getElementById('login') && document.getElementById('login').open",
            Duration::from_secs(20),
        )
        .await;
    browser.type_into("#login input[name=token]", TOKEN).await;
    browser.click("#login-submit").await;
    let listed = browser
        .wait_for(
            "every backend listed",
            "[...document.querySelectorAll('tr[data-backend]')].map(r => r.dataset.backend).sort().join(',') === 'b0,b1' \
             && document.querySelector('tr[data-bucket=vip]') !== null \
             && window.directorOverview.refreshes > 0",
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(listed, json!(true));
    // Traffic reaches both backends before the click.
    browser
        .wait_for(
            "traffic on b1",
            "window.directorOverview.index.app.members.find(m => m.name === 'b1').stats.load.total > 5",
            Duration::from_secs(20),
        )
        .await;
    assert!(b1.live_requests() > 0);

    // --- pressing "disable" on b1 stops its traffic, checked at the backend ---
    browser
        .click("button[data-action=disable][data-backend=b1]")
        .await;
    browser
        .wait_for(
            "b1 shown as disabled",
            "document.querySelector('tr[data-backend=b1]').innerText.includes('disabled')",
            Duration::from_secs(10),
        )
        .await;
    // Requests already on their way to b1 may still land; then nothing more may.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (b0_before, b1_before) = (b0.live_requests(), b1.live_requests());
    for _ in 0..60 {
        let r = get(&director.url("/")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-backend"), Some("b0"));
    }
    assert_eq!(
        b1.live_requests(),
        b1_before,
        "a disabled backend got requests"
    );
    assert!(b0.live_requests() >= b0_before + 60);
    let status_line = browser
        .script("return document.getElementById('status').textContent")
        .await;
    assert!(
        status_line.as_str().unwrap().contains("b1"),
        "the page says what it did: {status_line}"
    );
    // --- "enable" brings b1 back; "drain" (HAProxy's) takes it out of balancing again ---
    browser
        .click("button[data-action=enable][data-backend=b1]")
        .await;
    browser
        .wait_for(
            "b1 shown as enabled",
            "document.querySelector('tr[data-backend=b1]').innerText.includes('enabled')",
            Duration::from_secs(10),
        )
        .await;
    let mut back = false;
    for _ in 0..100 {
        if get(&director.url("/")).await.header("x-backend") == Some("b1") {
            back = true;
            break;
        }
    }
    assert!(back, "an enabled b1 gets requests again");
    browser
        .click("button[data-action=drain][data-backend=b1]")
        .await;
    browser
        .wait_for(
            "b1 shown as draining",
            "document.querySelector('tr[data-backend=b1]').innerText.includes('soft drain')",
            Duration::from_secs(10),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b1_before = b1.live_requests();
    for _ in 0..30 {
        let r = get(&director.url("/")).await;
        assert_eq!(r.header("x-backend"), Some("b0"));
    }
    assert_eq!(
        b1.live_requests(),
        b1_before,
        "a drained backend got requests"
    );
    assert!(browser.screenshot("overview.png").await > 10_000);
    browser.resize(390, 844).await;
    browser
        .wait_for(
            "a refresh at phone size",
            "window.directorOverview.refreshes > 2",
            Duration::from_secs(10),
        )
        .await;
    assert!(browser.screenshot("overview-phone.png").await > 5_000);
    browser.resize(1280, 900).await;

    // --- live page: charts hold the recent past (the cookie carries the token) ---
    browser.goto(&format!("{admin}/ui/live")).await;
    let requests = browser
        .wait_for(
            "a requests/s chart with data",
            "(window.directorLive.charts.find(c => c.cluster === 'app' && c.title === 'Requests/s' \
              && c.points >= 5 && c.max > 0) || null)",
            Duration::from_secs(30),
        )
        .await;
    assert!(
        requests["series"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "b1"),
        "{requests}"
    );
    let charts = browser.script("return window.directorLive.charts").await;
    let chart = |title: &str| {
        charts
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cluster"] == "app" && c["title"] == title)
            .unwrap_or_else(|| panic!("no {title} chart: {charts}"))
            .clone()
    };
    // Traffic shows as 2xx responses and as latencies; utilisation and queues are sampled too.
    for title in ["Responses/s by class", "Latency (ms)"] {
        let c = chart(title);
        assert!(c["points"].as_u64().unwrap() >= 5, "{c}");
        assert!(c["max"].as_f64().unwrap() > 0.0, "{c}");
    }
    for title in ["Utilisation (%)", "Queue length"] {
        let c = chart(title);
        assert!(c["points"].as_u64().unwrap() >= 5, "{c}");
    }
    assert!(browser.screenshot("live.png").await > 10_000);

    let sent = load.stop().await;
    assert!(sent > 0 && sent <= 600);
}
