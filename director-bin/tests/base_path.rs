//! fnlb's base paths through the binary: a backend URL `http://node/base` sends `/dir?q=1` as
//! `/base/dir?q=1`, from a config file and from `--nodes`, and HTTP health probes go under the
//! base path too. A URL with a path that a backend could read two ways is refused.

mod support;

use director_core::testing::TestBackend;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_backend_with_a_base_path_gets_every_path_under_it() {
    let node = TestBackend::tcp("n", "127.0.0.1:0").await.unwrap();
    let url = format!("{}/base/", node.url());
    let director = Director::start(&cluster_config(&[url], "", ""));

    for (sent, seen) in [
        ("/dir?q=1", "/base/dir?q=1"),
        ("/", "/base/"),
        ("/a/b/", "/base/a/b/"),
    ] {
        let reply = get(&director.url(sent)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(node.last_request().unwrap().uri, seen, "{sent}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fnlb_nodes_with_a_base_path_get_every_path_under_it() {
    let node = TestBackend::tcp("n", "127.0.0.1:0").await.unwrap();
    let list = format!("{}/base", node.socket_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let director = Director::spawn(
        dir,
        &[
            "--listen",
            "127.0.0.1:0",
            "--nodes",
            &list,
            "--access-log",
            "off",
        ],
        1,
    );
    let reply = get(&director.url("/dir?q=1")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-backend"), Some("n"));
    assert_eq!(node.last_request().unwrap().uri, "/base/dir?q=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probes_of_a_backend_with_a_base_path_go_under_it() {
    let node = TestBackend::tcp("n", "127.0.0.1:0").await.unwrap();
    let url = format!("{}/base", node.url());
    let director = Director::start(&with_admin(&cluster_config(
        &[url],
        "",
        "[clusters.app.health]\ninterval = \"100ms\"\npath = \"/health\"\n",
    )));
    wait_until("a probe arrives", || node.probes() >= 1).await;
    let probe = node
        .recorded()
        .into_iter()
        .find(|r| r.headers.contains_key("x0-health-check"))
        .unwrap();
    assert_eq!(probe.uri, "/base/health");
    drop(director);
}

#[test]
fn ambiguous_base_paths_are_refused_with_their_key() {
    for url in [
        "http://127.0.0.1:1/a/../b",
        "http://127.0.0.1:1//a",
        "http://127.0.0.1:1/a?x=1",
        "fastcgi://127.0.0.1:1/a",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("director.toml");
        std::fs::write(&path, cluster_config(&[url.to_owned()], "", "")).unwrap();
        let (ok, out) = check(&path);
        assert!(!ok, "{url} accepted: {out}");
        assert!(out.contains("clusters.app.backends[0].url"), "{out}");
    }
}
