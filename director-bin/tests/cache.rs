//! The object cache in front of a cluster, through the binary.

mod support;

use std::time::Duration;

use director_core::testing::TestBackend;
use http::Request;
use http_body_util::Full;
use support::*;

fn config(backend: &str, cache: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n[clusters.app]\n\n\
         [clusters.app.cache]\n{cache}\n\n[[clusters.app.backends]]\nname = \"a\"\nurl = \"{backend}\"\n\n\
         [[routes]]\ncluster = \"app\"\n"
    )
}

fn purge(director: &Director, path: &str) -> Request<Full<bytes::Bytes>> {
    Request::builder()
        .method("PURGE")
        .uri(director.url(path))
        .body(Full::default())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_then_hits_and_purge_from_allowed_clients() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&a.url(), "purge-allow = [\"127.0.0.1\"]"));
    let first = get(&director.url("/max-age/60")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let second = get(&director.url("/max-age/60")).await;
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.text(), first.text(), "served from the cache");
    assert_eq!(a.requests(), 1);

    let purged = send(purge(&director, "/max-age/60")).await;
    assert_eq!(purged.status, 200);
    let after = get(&director.url("/max-age/60")).await;
    assert_eq!(after.header("x-cache"), Some("MISS"));
    assert_eq!(a.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_is_refused_to_everyone_else() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&a.url(), ""));
    get(&director.url("/max-age/60")).await;
    let refused = send(purge(&director, "/max-age/60")).await;
    assert_eq!(refused.status, 405);
    assert_eq!(
        get(&director.url("/max-age/60")).await.header("x-cache"),
        Some("HIT")
    );
    assert_eq!(a.requests(), 1, "PURGE never reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_copy_is_served_while_no_backend_can_answer() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&a.url(), "shadow-ttl = \"60s\""));
    let fresh = get(&director.url("/max-age/1")).await;
    assert_eq!(fresh.status, 200);
    drop(a);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let stale = get(&director.url("/max-age/1")).await;
    assert_eq!(stale.status, 200, "{}", stale.text());
    assert_eq!(stale.header("x-director-cache"), Some("shadow"));
    assert_eq!(stale.text(), fresh.text());
}

#[test]
fn a_bad_strategy_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config("http://127.0.0.1:1", "strategy = \"eager\"")).unwrap();
    let (ok, text) = check(&path);
    assert!(!ok);
    assert!(text.contains("clusters.app.cache"), "{text}");
}
