//! HAProxy compatibility through the binary: the runtime socket (`stats-socket`) changes live
//! traffic, and its `show stat` is the same CSV as the stats page.

mod support;

use std::{path::Path, time::Duration};

use director_core::testing::TestBackend;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one command line to the runtime socket and reads the answer to the end.
async fn command(socket: &Path, line: &str) -> String {
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("stats socket accepts");
    stream
        .write_all(format!("{line}\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut out))
        .await
        .expect("the socket answers and closes")
        .unwrap();
    out
}

/// HAProxy's CSV, parsed: the header's names, then the rows.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let body = text.strip_prefix("# ").expect("header starts with '# '");
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body.trim_end_matches('\n').as_bytes())
        .records()
        .map(|r| r.expect("valid CSV").iter().map(str::to_owned).collect())
        .collect()
}

fn value(rows: &[Vec<String>], px: &str, sv: &str, column: &str) -> String {
    let i = rows[0].iter().position(|c| c == column).unwrap();
    rows.iter()
        .find(|r| r[0] == px && r[1] == sv)
        .unwrap_or_else(|| panic!("no row {px}/{sv}"))[i]
        .clone()
}

async fn backends_hit(director: &Director, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let reply = get(&director.url("/")).await;
        assert_eq!(reply.status, 200);
        seen.push(reply.header("x-backend").unwrap().to_owned());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_server_stops_traffic_and_enable_brings_it_back() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("director.sock");
    let config = cluster_config(
        &[a.url(), b.url()],
        &format!("stats-socket = \"{}\"", socket.display()),
        "",
    );
    let director = Director::start(&config);

    let seen = backends_hit(&director, 4).await;
    assert!(seen.iter().any(|n| n == "a") && seen.iter().any(|n| n == "b"));

    assert_eq!(command(&socket, "disable server app/b0").await, "\n");
    let seen = backends_hit(&director, 6).await;
    assert!(
        seen.iter().all(|n| n == "b"),
        "only b (b1) after disabling b0: {seen:?}"
    );
    let rows = parse_csv(&command(&socket, "show stat").await);
    assert_eq!(value(&rows, "app", "b0", "status"), "MAINT");
    assert_eq!(value(&rows, "app", "b1", "status"), "no check");

    assert_eq!(command(&socket, "enable server app/b0").await, "\n");
    let seen = backends_hit(&director, 4).await;
    assert!(seen.iter().any(|n| n == "a"), "b0 serves again: {seen:?}");

    // Drain: still a member, no new balanced requests.
    assert_eq!(
        command(&socket, "set server app/b1 state drain").await,
        "\n"
    );
    let seen = backends_hit(&director, 4).await;
    assert!(seen.iter().all(|n| n == "a"), "{seen:?}");
    let rows = parse_csv(&command(&socket, "show stat").await);
    assert_eq!(value(&rows, "app", "b1", "status"), "DRAIN");
    assert_eq!(
        command(&socket, "set server app/b1 state ready").await,
        "\n"
    );

    assert_eq!(
        command(&socket, "disable server app/nope").await,
        "No such server.\n\n"
    );
    assert!(
        command(&socket, "bogus")
            .await
            .starts_with("Unknown command. Please enter one of the following commands only:\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_stat_counts_real_traffic_in_haproxy_columns() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("director.sock");
    let config = cluster_config(
        &[a.url(), dead_port_url()],
        &format!("stats-socket = \"{}\"", socket.display()),
        "",
    );
    let director = Director::start(&config);
    for path in ["/", "/status/404", "/status/503", "/bytes/1000"] {
        get(&director.url(path)).await;
    }
    let text = command(&socket, "show stat").await;
    let rows = parse_csv(&text);
    let width = rows[0].len();
    assert!(rows.iter().all(|r| r.len() == width), "equal column counts");
    assert_eq!(value(&rows, "app", "b0", "hrsp_2xx"), "2");
    assert_eq!(value(&rows, "app", "b0", "hrsp_4xx"), "1");
    assert_eq!(value(&rows, "app", "b0", "hrsp_5xx"), "1");
    assert_eq!(value(&rows, "app", "b0", "stot"), "4");
    let bout: u64 = value(&rows, "app", "b0", "bout").parse().unwrap();
    assert!(bout >= 1000, "response bytes counted: {bout}");
    // The dead backend was tried (connection refused) and the request went on to b0.
    let econ: u64 = value(&rows, "app", "b1", "econ").parse().unwrap();
    assert!(econ >= 1, "connect errors counted");
    assert_eq!(value(&rows, "app", "b1", "wredis"), econ.to_string());
    let frontend = rows
        .iter()
        .find(|r| r[1] == "FRONTEND")
        .expect("a FRONTEND row per listener");
    let req_tot = rows[0].iter().position(|c| c == "req_tot").unwrap();
    assert_eq!(frontend[req_tot], "4");
    assert_eq!(value(&rows, "app", "BACKEND", "hrsp_2xx"), "2");

    let state = command(&socket, "show servers state app").await;
    assert!(state.starts_with("1\n# be_id be_name srv_id srv_name"));
    assert_eq!(state.lines().filter(|l| l.contains(" app ")).count(), 2);
}

fn dead_port_url() -> String {
    format!("http://{}", dead_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_pages_on_the_admin_listener_share_the_socket_csv() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("director.sock");
    let director = Director::start(&cluster_config(
        &[a.url()],
        &format!("stats-socket = \"{}\"", socket.display()),
        "",
    ));
    get(&director.url("/")).await;
    let admin = director.admin();
    let golden = include_str!("../../director-haproxy/tests/fixtures/haproxy-2.6-header.csv");
    let socket_csv = command(&socket, "show stat").await;
    for path in [
        "/haproxy?stats;csv",
        "/haproxy?stats;csv;norefresh",
        "/haproxy/stats;csv",
    ] {
        let reply = get(&format!("{admin}{path}")).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some("text/plain"));
        assert_eq!(reply.header("cache-control"), Some("no-cache"));
        let text = reply.text();
        assert!(text.starts_with(golden), "{path}: HAProxy's header line");
        // The same parser reads both, with the same rows and columns.
        let http_rows = parse_csv(&text);
        let socket_rows = parse_csv(&socket_csv);
        assert_eq!(http_rows[0], socket_rows[0]);
        assert_eq!(http_rows.len(), socket_rows.len());
        assert!(http_rows.iter().all(|r| r.len() == http_rows[0].len()));
        assert_eq!(value(&http_rows, "app", "b0", "stot"), "1");
    }
    let html = get(&format!("{admin}/haproxy?stats")).await;
    assert_eq!(html.status, 200);
    assert_eq!(html.header("content-type"), Some("text/html"));
    assert!(html.text().contains("<caption>app</caption>"));
    assert!(html.text().contains("no check (up, not checked)"));
    let monitor = get(&format!("{admin}/haproxy/monitor")).await;
    assert_eq!(monitor.status, 200);
    assert!(monitor.text().contains("Service ready."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_changes_persist_for_dynamic_clusters_and_not_for_static_ones() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("director.sock");
    let clusters = dir.path().join("clusters");
    std::fs::create_dir(&clusters).unwrap();
    std::fs::write(
        clusters.join("shop.toml"),
        format!(
            "[[backends]]\nname = \"a\"\nurl = \"{}\"\n[[backends]]\nname = \"b\"\nurl = \"{}\"\n",
            a.url(),
            a.url()
        ),
    )
    .unwrap();
    let config = cluster_config(
        &[a.url()],
        &format!(
            "stats-socket = \"{}\"\ncluster-dir = \"clusters\"",
            socket.display()
        ),
        "",
    );
    let path = dir.path().join("director.toml");
    std::fs::write(&path, with_admin(&config)).unwrap();
    let _director = Director::spawn(dir, &["--config", path.to_str().unwrap()], 1);
    let file = clusters.join("shop.toml");

    assert_eq!(command(&socket, "set weight shop/a 7").await, "\n");
    assert_eq!(command(&socket, "disable server shop/b").await, "\n");
    let text = std::fs::read_to_string(&file).unwrap();
    let saved: toml::Table = toml::from_str(&text).unwrap();
    let backends = saved["backends"].as_array().unwrap();
    assert_eq!(backends[0]["weight"].as_integer(), Some(7), "{text}");
    assert_eq!(backends[1]["enabled"].as_bool(), Some(false), "{text}");

    // The main config's cluster: switches work (live only), weights are the file's.
    assert_eq!(command(&socket, "disable server app/b0").await, "\n");
    let refused = command(&socket, "set weight app/b0 3").await;
    assert!(refused.contains("main config"), "{refused}");
}
