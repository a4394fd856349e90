//! Cache handles across builds: kept, reconfigured, dropped; untouched by a failed build.

use std::{convert::Infallible, path::Path};

use bytes::Bytes;
use director_cache::UpdateStrategy;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use tower::{Layer, ServiceExt};

use super::*;
use crate::config::parse_with;

fn source(cache: Option<&str>) -> String {
    let cache = cache.map_or(String::new(), |c| format!("[clusters.app.cache]\n{c}\n"));
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[clusters.app]\n{cache}\n\
         [[clusters.app.backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n\n\
         [[routes]]\ncluster = \"app\"\n\n[[routes]]\npath = \"/other\"\ncluster = \"app\"\n"
    )
}

fn build(fronts: &CacheFronts, source: &str) -> bool {
    parse_with(source, Path::new("test.toml"), fronts).is_ok()
}

/// Stores one object in `cache` through its layer, as a request through the front would.
async fn store_one(cache: &CacheHandle) {
    let origin = tower::service_fn(|_: Request<Empty<Bytes>>| async {
        let res = Response::builder()
            .header("cache-control", "max-age=600")
            .body(Full::new(Bytes::from_static(b"kept")))
            .unwrap();
        Ok::<_, Infallible>(res)
    });
    let svc = cache.layer().layer(origin);
    let req = Request::get("http://example.com/kept")
        .body(Empty::new())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    res.into_body().collect().await.unwrap();
}

#[tokio::test]
async fn an_unchanged_table_keeps_the_cache_and_its_objects() {
    let fronts = CacheFronts::new();
    assert!(build(&fronts, &source(Some("budget = 1000000"))));
    let cache = fronts.handle("app").expect("a cache");
    assert_eq!(
        fronts.handles().len(),
        1,
        "two routes, one cluster, one cache"
    );
    store_one(&cache).await;
    assert_eq!(cache.stats().objects, 1);

    // A runtime change through the handle (the admin API) survives an unchanged rebuild.
    cache.update_config(|c| CacheConfig {
        strategy: UpdateStrategy::Shadowed,
        ..c.clone()
    });
    assert!(build(&fronts, &source(Some("budget = 1000000"))));
    let again = fronts.handle("app").unwrap();
    assert!(again.ptr_eq(&cache));
    assert_eq!(again.stats().objects, 1, "the object survived the rebuild");
    assert_eq!(again.config().strategy, UpdateStrategy::Shadowed);

    // purge-allow lives in the front: changing it is no cache change either.
    let with_allow = source(Some("budget = 1000000\npurge-allow = [\"127.0.0.1\"]"));
    assert!(build(&fronts, &with_allow));
    assert_eq!(
        fronts.handle("app").unwrap().config().strategy,
        UpdateStrategy::Shadowed
    );
}

#[tokio::test]
async fn a_changed_table_reconfigures_the_same_cache() {
    let fronts = CacheFronts::new();
    assert!(build(&fronts, &source(Some("budget = 1000000"))));
    let cache = fronts.handle("app").unwrap();
    store_one(&cache).await;

    assert!(build(
        &fronts,
        &source(Some("budget = 1000000\nshadow-ttl = \"5s\""))
    ));
    let again = fronts.handle("app").unwrap();
    assert!(again.ptr_eq(&cache));
    assert_eq!(again.config().shadow_ttl, std::time::Duration::from_secs(5));
    assert_eq!(again.stats().objects, 1, "objects are kept");

    // A budget too small for the object evicts it at once.
    assert!(build(&fronts, &source(Some("budget = 10"))));
    let shrunk = fronts.handle("app").unwrap();
    assert!(shrunk.ptr_eq(&cache));
    assert_eq!((shrunk.config().budget, shrunk.stats().objects), (10, 0));
}

#[tokio::test]
async fn a_failed_build_changes_nothing() {
    let fronts = CacheFronts::new();
    assert!(build(&fronts, &source(Some("budget = 1000000"))));
    let cache = fronts.handle("app").unwrap();
    store_one(&cache).await;
    // The cache table is fine but the route is not: the whole config is refused.
    let broken = source(Some("budget = 10")).replace("path = \"/other\"", "path = \"other\"");
    assert!(!build(&fronts, &broken));
    let same = fronts.handle("app").unwrap();
    assert!(same.ptr_eq(&cache));
    assert_eq!((same.config().budget, same.stats().objects), (1_000_000, 1));
}

#[tokio::test]
async fn a_removed_or_disabled_table_drops_the_cache() {
    let fronts = CacheFronts::new();
    assert!(build(&fronts, &source(Some(""))));
    let first = fronts.handle("app").unwrap();
    store_one(&first).await;
    assert!(build(&fronts, &source(Some("enabled = false"))));
    assert!(fronts.handle("app").is_none());
    assert!(fronts.handles().is_empty());
    // Back on: a new, empty cache.
    assert!(build(&fronts, &source(Some(""))));
    let second = fronts.handle("app").unwrap();
    assert!(!second.ptr_eq(&first));
    assert_eq!(second.stats().objects, 0);
    assert!(build(&fronts, &source(None)));
    assert!(fronts.handle("app").is_none());
}

#[test]
fn cookie_and_lock_keys_reach_the_cache_and_bad_names_are_refused() {
    let fronts = CacheFronts::new();
    assert!(build(&fronts, &source(Some(""))));
    let config = fronts.handle("app").unwrap().config();
    assert!(config.cookie_requests_private);
    assert!(config.ignore_cookies.is_empty());
    assert_eq!(config.lock_timeout, std::time::Duration::from_secs(10));
    let keys = "cookie-requests-private = false\nignore-cookies = [\"_ga*\", \"_gid\"]\n\
                lock-timeout = \"2s\"";
    assert!(build(&fronts, &source(Some(keys))));
    let config = fronts.handle("app").unwrap().config();
    assert!(!config.cookie_requests_private);
    assert_eq!(config.ignore_cookies, ["_ga*", "_gid"]);
    assert_eq!(config.lock_timeout, std::time::Duration::from_secs(2));

    for (bad, says) in [
        ("\"*\"", "would ignore every cookie"),
        ("\"\"", "is not a cookie name"),
        ("\"a b\"", "is not a cookie name"),
        ("\"a*b\"", "is not a cookie name"),
        ("\"a=b\"", "is not a cookie name"),
    ] {
        let src = source(Some(&format!("ignore-cookies = [{bad}]")));
        let err = parse_with(&src, Path::new("test.toml"), &CacheFronts::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("clusters.app.cache"), "{err}");
        assert!(err.contains(says), "{bad}: {err}");
    }
}
