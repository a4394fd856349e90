//! Varnish's real weights through the binary: `weight = 10.0` and `0.5` in the config, the API
//! and the runtime socket (HAProxy's `set weight B/S 50%`), honoured by `random` and `wrr`.

mod support;

use std::{path::Path, time::Duration};

use bytes::Bytes;
use director_core::testing::TestBackend;
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(server: &str, cluster: &str, backends: &[(&str, String, &str)]) -> String {
    let mut c = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n{server}\n\n[clusters.app]\n{cluster}\n\n"
    );
    for (name, url, extra) in backends {
        c.push_str(&format!(
            "[[clusters.app.backends]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n\n"
        ));
    }
    c.push_str("[[routes]]\ncluster = \"app\"\n");
    c
}

/// The backend names serving `n` requests sent one after another.
async fn serial(director: &Director, n: usize) -> Vec<String> {
    let client = client();
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        let r = client
            .request(
                Request::get(director.url("/"))
                    .body(Full::<Bytes>::default())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        names.push(
            r.headers()["x-director-backend"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    names
}

fn count(names: &[String], name: &str) -> usize {
    names.iter().filter(|n| *n == name).count()
}

/// Sends one command line to the runtime socket and reads the answer to the end.
async fn command(socket: &Path, line: &str) -> String {
    let mut stream = tokio::net::UnixStream::connect(socket).await.unwrap();
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

async fn api(d: &Director, method: &str, path: &str, body: &str) -> (u16, Value) {
    let r = send(
        Request::builder()
            .method(method)
            .uri(format!("{}/api{path}", d.admin()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap(),
    )
    .await;
    (
        r.status.as_u16(),
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_with_real_weights_splits_two_to_one() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(
        "",
        "scheduler = \"random\"",
        &[
            ("a", a.url(), "weight = 10.0"),
            ("b", b.url(), "weight = 5.0"),
        ],
    ));
    const N: usize = 6000;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let url = director.url("/");
        tasks.push(tokio::spawn(async move {
            let client = client();
            for _ in 0..N / 12 {
                let r = client
                    .request(Request::get(&url).body(Full::<Bytes>::default()).unwrap())
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(a.requests() + b.requests(), N);
    // Binomial, n = 6000, p = 2/3: sigma is 0.006, so 0.03 is about five sigma.
    let share = a.requests() as f64 / N as f64;
    assert!(
        (share - 2.0 / 3.0).abs() < 0.03,
        "a got {share:.3} of the traffic, wanted 0.667 ± 0.03"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrr_with_half_and_one_is_one_to_two_in_every_cycle() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(
        "",
        "scheduler = \"wrr\"",
        &[("a", a.url(), "weight = 0.5"), ("b", b.url(), "weight = 1")],
    ));
    let names = serial(&director, 30).await;
    for cycle in names.chunks(3) {
        assert_eq!(count(cycle, "a"), 1, "{names:?}");
        assert_eq!(count(cycle, "b"), 2, "{names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_socket_sets_weights_relative_to_the_configured_one() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("director.sock");
    let clusters = dir.path().join("clusters");
    std::fs::create_dir(&clusters).unwrap();
    let config = config(
        &format!(
            "stats-socket = \"{}\"\ncluster-dir = \"clusters\"",
            socket.display()
        ),
        "scheduler = \"wrr\"",
        &[("a", a.url(), "weight = 2"), ("b", b.url(), "weight = 1")],
    );
    let path = dir.path().join("director.toml");
    std::fs::write(&path, with_admin(&config)).unwrap();
    let director = Director::spawn(dir, &["--config", path.to_str().unwrap()], 1);

    // 2:1 as configured.
    let names = serial(&director, 30).await;
    assert_eq!((count(&names, "a"), count(&names, "b")), (20, 10));

    // 50% of a's configured 2 is 1: now 1:1, and the configured weight stays.
    assert_eq!(command(&socket, "set weight app/a 50%").await, "\n");
    assert_eq!(
        command(&socket, "get weight app/a").await,
        "1 (initial 2)\n\n"
    );
    let names = serial(&director, 30).await;
    assert_eq!((count(&names, "a"), count(&names, "b")), (15, 15));
    let (_, doc) = api(&director, "GET", "/app/backends/a", "").await;
    assert_eq!(doc["weight"], 1);
    // Again 50%: of the configured weight, not of the current one.
    assert_eq!(command(&socket, "set server app/a weight 50%").await, "\n");
    assert_eq!(
        command(&socket, "get weight app/a").await,
        "1 (initial 2)\n\n"
    );
    // 0% takes it out of balancing; 100% restores the configured weight.
    assert_eq!(command(&socket, "set weight app/a 0%").await, "\n");
    let names = serial(&director, 6).await;
    assert_eq!(count(&names, "a"), 0, "{names:?}");
    assert_eq!(command(&socket, "set weight app/a 100%").await, "\n");
    assert_eq!(
        command(&socket, "get weight app/a").await,
        "2 (initial 2)\n\n"
    );
    let names = serial(&director, 30).await;
    assert_eq!((count(&names, "a"), count(&names, "b")), (20, 10));
    assert_eq!(
        command(&socket, "set weight app/a -5%").await,
        "Relative weight must be positive.\n\n"
    );

    // A dynamic cluster: a relative weight is live only (its file keeps the configured weight
    // it is relative to); an absolute one, a real too, is written.
    let (status, _) = api(&director, "PUT", "/shop", "scheduler=wrr").await;
    assert_eq!(status, 201);
    let (status, doc) = api(
        &director,
        "PUT",
        "/shop/backends/x",
        &format!("url={}&weight=4.0", a.url()),
    )
    .await;
    assert_eq!((status, doc["weight"].clone()), (201, 4.into()));
    let file = clusters.join("shop.toml");
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains("weight = 4\n"), "{saved}");
    assert_eq!(command(&socket, "set weight shop/x 25%").await, "\n");
    assert_eq!(
        command(&socket, "get weight shop/x").await,
        "1 (initial 4)\n\n"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), saved);
    assert_eq!(command(&socket, "set weight shop/x 2.5").await, "\n");
    assert_eq!(
        command(&socket, "get weight shop/x").await,
        "2.5 (initial 2.5)\n\n"
    );
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains("weight = 2.5\n"), "{saved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_weights_in_files_and_the_api_round_trip_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let clusters = dir.path().join("clusters");
    std::fs::create_dir(&clusters).unwrap();
    // x0 and Director files wrote whole numbers; Varnish users write reals.
    std::fs::write(
        clusters.join("shop.toml"),
        "scheduler = \"random\"\n\
         [[backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:9\"\nweight = 10.0\n\
         [[backends]]\nname = \"b\"\nurl = \"http://127.0.0.1:9\"\nweight = 0.5\n\
         [[backends]]\nname = \"c\"\nurl = \"http://127.0.0.1:9\"\nweight = 3\n",
    )
    .unwrap();
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\ncluster-dir = {:?}\n",
        clusters.display().to_string()
    );
    let path = dir.path().join("director.toml");
    std::fs::write(&path, with_admin(&cfg)).unwrap();
    let (ok, text) = check(&path);
    assert!(ok, "{text}");
    let d = Director::spawn(dir, &["--config", path.to_str().unwrap()], 1);
    let (_, doc) = api(&d, "GET", "/shop/backends", "").await;
    let weights: Vec<Value> = doc
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["weight"].clone())
        .collect();
    assert_eq!(
        weights,
        [
            serde_json::json!(10),
            serde_json::json!(0.5),
            serde_json::json!(3)
        ]
    );
    // An API write rewrites the file: 10.0 comes back as 10, the same number.
    let (status, _) = api(&d, "POST", "/shop/backends/c", "weight=0.25").await;
    assert_eq!(status, 202);
    let saved: toml::Table =
        toml::from_str(&std::fs::read_to_string(clusters.join("shop.toml")).unwrap()).unwrap();
    let saved: Vec<String> = saved["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["weight"].to_string())
        .collect();
    assert_eq!(saved, ["10", "0.5", "0.25"]);
    for bad in ["-1", "nan", "1e3", "1000001"] {
        let (status, doc) = api(&d, "POST", "/shop/backends/c", &format!("weight={bad}")).await;
        assert_eq!(
            (status, doc["detail"]["field"].as_str()),
            (400, Some("weight")),
            "{bad}"
        );
    }

    // A bad weight in a file is named by file, line and key.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("director.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[clusters.app]\n\
         [[clusters.app.backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:9\"\nweight = -0.5\n",
    )
    .unwrap();
    let (ok, text) = check(&path);
    assert!(!ok, "{text}");
    assert!(text.contains("director.toml"), "{text}");
    assert!(text.contains(":8"), "line 8: {text}");
    assert!(text.contains("weight"), "{text}");
    assert!(text.contains("cannot be negative"), "{text}");
}
