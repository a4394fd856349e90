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
        &format!("stats-socket = \"{}\"\nthreads = 3", socket.display()),
        "",
    );
    let director = Director::start(&config);

    let seen = backends_hit(&director, 4).await;
    assert!(seen.iter().any(|n| n == "a") && seen.iter().any(|n| n == "b"));
    // `show info` reports the runtime's workers, whatever the machine has.
    let info = command(&socket, "show info").await;
    assert!(info.lines().any(|l| l == "Nbthread: 3"), "{info}");

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

/// Reads `show stat` until `ready` holds for it (the grant of a finished request is released
/// just after its body ends), for up to 10 seconds.
async fn stat_when(
    socket: &Path,
    what: &str,
    ready: impl Fn(&[Vec<String>]) -> bool,
) -> Vec<Vec<String>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = parse_csv(&command(socket, "show stat").await);
        if ready(&rows) {
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn number(rows: &[Vec<String>], px: &str, sv: &str, column: &str) -> i64 {
    let v = value(rows, px, sv, column);
    v.parse()
        .unwrap_or_else(|_| panic!("{px}/{sv} {column} is a number: {v:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_stat_has_rates_and_phase_times_of_real_requests() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("director.sock");
    // One backend taking one request at a time, so a second request queues.
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\nstats-socket = \"{}\"\n\n\
         [clusters.app]\n[[clusters.app.backends]]\nname = \"b0\"\nurl = \"{}\"\ncapacity = 1\n\n\
         [[routes]]\ncluster = \"app\"\n",
        socket.display(),
        a.url()
    );
    let director = Director::start(&config);
    let rows = parse_csv(&command(&socket, "show stat").await);
    assert_eq!(
        value(&rows, "app", "b0", "lastsess"),
        "-1",
        "no session yet"
    );
    assert_eq!(value(&rows, "app", "BACKEND", "lastsess"), "-1");

    let began = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(get(&director.url("/delay/50")).await.status, 200);
    }
    let rows = stat_when(&socket, "three requests are timed", |rows| {
        number(rows, "app", "b0", "ttime_max") > 0
    })
    .await;
    // The backend waited 50 ms before answering each one.
    for column in ["rtime", "ttime", "rtime_max", "ttime_max"] {
        let ms = number(&rows, "app", "b0", column);
        assert!(ms >= 40, "b0 {column} = {ms}");
        let ms = number(&rows, "app", "BACKEND", column);
        assert!(ms >= 40, "BACKEND {column} = {ms}");
    }
    assert!(number(&rows, "app", "b0", "ttime") >= number(&rows, "app", "b0", "rtime"));
    assert!(number(&rows, "app", "b0", "ctime") >= 0);
    assert_eq!(
        number(&rows, "app", "BACKEND", "qtime_max"),
        0,
        "nothing queued yet"
    );
    for row in ["b0", "BACKEND"] {
        assert!(number(&rows, "app", row, "rate_max") >= 1, "{row} rate_max");
        // No longer ago than this test has run.
        let lastsess = number(&rows, "app", row, "lastsess");
        assert!(
            (0..=began.elapsed().as_secs() as i64).contains(&lastsess),
            "{row} lastsess = {lastsess}"
        );
    }
    let frontend = rows.iter().find(|r| r[1] == "FRONTEND").unwrap()[0].clone();
    assert!(number(&rows, &frontend, "FRONTEND", "req_rate_max") >= 1);
    assert!(number(&rows, &frontend, "FRONTEND", "rate_max") >= 1);
    // `rate` is the last second's: right after a request it is at least 1 (a read may land late
    // in the next second after a burst, so try again with a fresh request).
    let mut tries = 0;
    loop {
        let rows = parse_csv(&command(&socket, "show stat").await);
        let rates = [
            number(&rows, "app", "b0", "rate"),
            number(&rows, "app", "BACKEND", "rate"),
            number(&rows, &frontend, "FRONTEND", "req_rate"),
        ];
        if rates.iter().all(|&r| r > 0) {
            break;
        }
        tries += 1;
        assert!(tries < 10, "rates stay 0 after requests: {rates:?}");
        assert_eq!(get(&director.url("/delay/50")).await.status, 200);
    }

    // A 500 ms request holds the only slot; a second one waits for it.
    let spawned = std::time::Instant::now();
    let url = director.url("/delay/500");
    let slow = tokio::spawn(async move { get(&url).await });
    stat_when(&socket, "the slow request is in flight", |rows| {
        number(rows, "app", "BACKEND", "scur") == 1
    })
    .await;
    let url = director.url("/");
    let queued = tokio::spawn(async move { get(&url).await });
    stat_when(&socket, "the second request is queued", |rows| {
        number(rows, "app", "BACKEND", "qcur") == 1
    })
    .await;
    // It waits at least from now until the slow one ends, 500 ms after it was sent.
    let queued_from = spawned.elapsed().as_millis() as i64;
    assert_eq!(slow.await.unwrap().status, 200);
    assert_eq!(queued.await.unwrap().status, 200);
    let rows = stat_when(&socket, "the queued request is timed", |rows| {
        number(rows, "app", "BACKEND", "qtime_max") > 0
    })
    .await;
    let qtime_max = number(&rows, "app", "BACKEND", "qtime_max");
    assert!(
        qtime_max >= 500 - queued_from,
        "qtime_max = {qtime_max}, queued {queued_from} ms after the slow request"
    );
    assert!(number(&rows, "app", "BACKEND", "qtime") > 0);
    assert_eq!(number(&rows, "app", "b0", "qtime_max"), qtime_max);
    assert!(number(&rows, "app", "b0", "rtime_max") >= 500);
}
