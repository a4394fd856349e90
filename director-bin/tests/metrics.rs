//! Prometheus metrics and HAProxy exporters, checked with the real tools: `promtool check
//! metrics` on what `/metrics` renders, and `prometheus-haproxy-exporter` scraping the running
//! binary's HAProxy stats (through the runtime socket, which the exporter speaks natively).
//!
//! The tools come from Debian (`.ci/run` installs them). Where they are missing the tests say so
//! and pass, unless `DIRECTOR_REQUIRE_TOOLS=1` (set by CI) makes a missing tool a failure.

mod support;

use std::{
    io::Write,
    net::TcpListener,
    path::PathBuf,
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use director_bin::metrics::Metrics;
use director_core::{
    cluster::Dispatch,
    config::{ClusterConfig, ProxyConfig},
    registry::{Registry, Snapshot},
    stats::FrontendStats,
    testing::TestBackend,
};
use support::*;

/// The tool's path, or `None` (with a note) when it is missing and not required.
fn tool(name: &str) -> Option<PathBuf> {
    let found = ["/usr/bin", "/usr/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("DIRECTOR_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "DIRECTOR_REQUIRE_TOOLS=1 but {name} is not installed (see .ci/run)"
        );
        eprintln!("{name} not installed: test skipped (CI installs it)");
    }
    found
}

fn registry(urls: &[String]) -> Arc<Registry> {
    let mut toml_text = String::from("[app]\n");
    for (i, url) in urls.iter().enumerate() {
        toml_text.push_str(&format!(
            "[[app.backends]]\nname = \"b{i}\"\nurl = \"{url}\"\n"
        ));
    }
    let clusters: std::collections::BTreeMap<String, ClusterConfig> =
        toml::from_str(&toml_text).unwrap();
    let config = ProxyConfig {
        clusters,
        routes: Vec::new(),
    };
    Arc::new(Registry::new(Snapshot::build(&config).unwrap()))
}

async fn send(registry: &Registry, path: &str) -> u16 {
    let cluster = registry.load().cluster("app").unwrap().clone();
    let req = http::Request::get(format!("http://app{path}"))
        .body(director_core::body::empty())
        .unwrap();
    match cluster.dispatch(req, Dispatch::default()).await {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read the body so the grant (and the byte counts) settle.
            let _ = http_body_util::BodyExt::collect(response.into_body()).await;
            status
        }
        Err(err) => err.status().as_u16(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_carry_real_counts() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let registry = registry(&[a.url(), b.url()]);
    for path in ["/", "/", "/status/404", "/status/503", "/delay/20"] {
        send(&registry, path).await;
    }
    let frontend = Arc::new(FrontendStats::new("127.0.0.1:8080"));
    frontend.connection_opened();
    frontend.request();
    frontend.response(200);
    let cache =
        director_cache::CacheHandle::with_label(director_cache::CacheConfig::default(), "app");
    let text = Metrics::new(registry.clone(), vec![frontend])
        .with_caches(vec![("app".into(), cache)])
        .render();

    let line = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let total = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains("cluster=\"app\""))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(total("director_backend_requests_total{"), 5.0);
    assert_eq!(
        line("director_cluster_requests_total{cluster=\"app\"}"),
        5.0
    );
    assert_eq!(total("director_backend_responses_total{"), 5.0);
    let five = text
        .lines()
        .filter(|l| {
            l.starts_with("director_backend_responses_total{") && l.contains("class=\"5xx\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum::<f64>();
    assert_eq!(five, 1.0);
    assert_eq!(total("director_backend_response_seconds_count{"), 5.0);
    assert_eq!(total("director_backend_up{"), 2.0);
    assert!(text.contains("# TYPE director_backend_response_seconds histogram"));
    assert_eq!(line("director_cache_hits_total{cluster=\"app\"}"), 0.0);
    assert_eq!(
        line("director_listener_requests_total{listener=\"127.0.0.1:8080\"}"),
        1.0
    );
    assert_eq!(line("director_cluster_queued{cluster=\"app\"}"), 0.0);

    let Some(promtool) = tool("promtool") else {
        return;
    };
    promtool_accepts(&promtool, &text);
}

fn promtool_accepts(promtool: &std::path::Path, text: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejects the metrics:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills the exporter when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_exporter_reads_director_as_haproxy() {
    let Some(exporter) = tool("prometheus-haproxy-exporter") else {
        return;
    };
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let c = TestBackend::tcp("c", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("director.sock");
    let director = Director::start(&cluster_config(
        &[a.url(), b.url(), c.url()],
        &format!("stats-socket = \"{}\"", socket.display()),
        "",
    ));
    // Round-robin over three: 7 requests give 3, 2, 2; each backend waits 50 ms to answer.
    for _ in 0..7 {
        assert_eq!(get(&director.url("/delay/50")).await.status, 200);
    }
    let client = tokio::net::UnixStream::connect(&socket).await;
    assert!(client.is_ok(), "the stats socket is up");
    drop(client);

    // The exporter reads both HAProxy sources: the CSV page over HTTP and `show stat` on the
    // runtime socket.
    let csv_url = format!("{}/haproxy?stats;csv", director.admin());
    for scrape_uri in [csv_url, format!("unix:{}", socket.display())] {
        let text = scrape_with_exporter(&exporter, &scrape_uri).await;
        check_exporter_output(&text);
    }

    // And `/metrics` of the running binary passes promtool.
    let metrics = get(&format!("{}/metrics", director.admin())).await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(text.contains("director_backend_requests_total{cluster=\"app\",backend=\"b0\"}"));
    if let Some(promtool) = tool("promtool") {
        promtool_accepts(&promtool, &text);
    }
}

async fn scrape_with_exporter(exporter: &std::path::Path, scrape_uri: &str) -> String {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _exporter = Child(
        Command::new(exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--haproxy.scrape-uri={scrape_uri}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the exporter starts"),
    );
    let mut up = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "the exporter listens");
    get(&format!("http://127.0.0.1:{port}/metrics"))
        .await
        .text()
}

fn check_exporter_output(text: &str) {
    assert!(!text.is_empty(), "the exporter answered");
    assert!(
        text.lines().any(|l| l == "haproxy_up 1"),
        "haproxy_up 1 in:\n{text}"
    );
    let sessions = |server: &str| -> f64 {
        text.lines()
            .find(|l| {
                l.starts_with("haproxy_server_sessions_total{")
                    && l.contains("backend=\"app\"")
                    && l.contains(&format!("server=\"{server}\""))
            })
            .unwrap_or_else(|| panic!("no sessions for {server} in:\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    // The rate and time columns, as the exporter reads them (times in seconds).
    let metric = |name: &str, labels: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in:\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    for server in ["b0", "b1", "b2"] {
        let labels = format!("server=\"{server}\"");
        let rtime = metric("haproxy_server_http_response_time_average_seconds", &labels);
        assert!(rtime >= 0.04, "{server} rtime {rtime}");
        let ttime = metric("haproxy_server_http_total_time_average_seconds", &labels);
        assert!(ttime >= 0.04, "{server} ttime {ttime}");
        assert!(metric("haproxy_server_max_session_rate", &labels) >= 1.0);
    }
    let backend = "backend=\"app\"";
    assert!(metric("haproxy_backend_http_total_time_average_seconds", backend) >= 0.04);
    assert!(metric("haproxy_backend_max_session_rate", backend) >= 1.0);
    assert!(metric("haproxy_frontend_max_session_rate", "frontend=") >= 1.0);

    let counts = [sessions("b0"), sessions("b1"), sessions("b2")];
    assert_eq!(counts.iter().sum::<f64>(), 7.0, "{counts:?}");
    let mut sorted = counts;
    sorted.sort_by(f64::total_cmp);
    assert_eq!(sorted, [2.0, 2.0, 3.0], "round-robin shares");
    for server in ["b0", "b1", "b2"] {
        let up = text.lines().find(|l| {
            l.starts_with("haproxy_server_up{")
                && l.contains("backend=\"app\"")
                && l.contains(&format!("server=\"{server}\""))
        });
        assert_eq!(up.map(|l| l.ends_with(" 1")), Some(true), "{server} up");
    }
}
