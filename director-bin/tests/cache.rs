//! The object cache in front of a cluster, through the binary: one test per acceptance point of
//! the cache (freshness cycle, conditional hits, Vary, what is not stored, Authorization, PURGE,
//! shadow delivery, must-revalidate, coalescing under both strategies).
//!
//! Objects come from the test backend's `/respond/...?header=value` route, which answers with
//! the headers the query names; `requests_to(path)` counts what reached the backend.

mod support;

use std::time::Duration;

use director_core::testing::TestBackend;
use http::Request;
use http_body_util::Full;
use support::*;

/// One cluster `app` over `backends`, with `cache` as its `[clusters.app.cache]` table.
fn config(backends: &[&TestBackend], cache: &str) -> String {
    let mut c = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n[clusters.app]\n\n\
         [clusters.app.cache]\n{cache}\n\n"
    );
    for (i, b) in backends.iter().enumerate() {
        c += &format!(
            "[[clusters.app.backends]]\nname = \"b{i}\"\nurl = \"{}\"\n\n",
            b.url()
        );
    }
    c + "[[routes]]\ncluster = \"app\"\n"
}

async fn backend(name: &str) -> TestBackend {
    TestBackend::tcp(name, "127.0.0.1:0").await.unwrap()
}

fn purge(director: &Director, path: &str) -> Request<Full<bytes::Bytes>> {
    Request::builder()
        .method("PURGE")
        .uri(director.url(path))
        .body(Full::default())
        .unwrap()
}

/// GET with extra request headers.
async fn get_with(director: &Director, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::get(director.url(path));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    send(req.body(Full::default()).unwrap()).await
}

/// `(X-Cache, X-Cache-Lookup)` of a reply.
fn cache_headers(r: &Reply) -> (&str, &str) {
    (
        r.header("x-cache").unwrap_or("-"),
        r.header("x-cache-lookup").unwrap_or("-"),
    )
}

/// Responses carry `Date` in whole seconds, so a copy may be up to a second old when stored:
/// waiting this long after storing makes a `max-age=2` copy stale for sure.
const PAST_MAX_AGE_2: Duration = Duration::from_millis(3100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_then_hits_and_purge_from_allowed_clients() {
    let a = backend("a").await;
    let director = Director::start(&config(&[&a], "purge-allow = [\"127.0.0.1\"]"));
    let first = get(&director.url("/max-age/60")).await;
    assert_eq!(first.status, 200);
    assert_eq!(cache_headers(&first), ("MISS", "miss"));
    assert_eq!(
        (first.header("x-cache-hits"), first.header("age")),
        (Some("0"), Some("0")),
        "x0's headers on the fetching request's own response"
    );
    let second = get(&director.url("/max-age/60")).await;
    assert_eq!(cache_headers(&second), ("HIT", "hit"));
    assert_eq!(second.header("x-cache-hits"), Some("1"));
    assert!(second.header("age").is_some());
    assert_eq!(second.text(), first.text(), "served from the cache");
    let third = get(&director.url("/max-age/60")).await;
    assert_eq!(third.header("x-cache-hits"), Some("2"));
    assert_eq!(a.requests(), 1);

    let purged = send(purge(&director, "/max-age/60")).await;
    assert_eq!(purged.status, 200);
    let after = get(&director.url("/max-age/60")).await;
    assert_eq!(cache_headers(&after), ("MISS", "miss"));
    assert_eq!(a.requests(), 2);
    let again = send(purge(&director, "/nothing-here")).await;
    assert_eq!(again.status, 404, "nothing stored under that key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_is_refused_to_everyone_else() {
    let a = backend("a").await;
    // Allowed: some other client, not us.
    let director = Director::start(&config(&[&a], "purge-allow = [\"192.0.2.1\"]"));
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
async fn miss_hit_stale_then_refresh_and_revalidation_under_locked() {
    let a = backend("a").await;
    let director = Director::start(&config(&[&a], ""));
    // Without validators: a stale copy is fetched again in full.
    let path = "/respond/plain?cache-control=max-age%3D2";
    let miss = get(&director.url(path)).await;
    assert_eq!(cache_headers(&miss), ("MISS", "miss"));
    let hit = get(&director.url(path)).await;
    assert_eq!(cache_headers(&hit), ("HIT", "hit"));
    assert_eq!(hit.text(), miss.text());
    tokio::time::sleep(PAST_MAX_AGE_2).await;
    let refresh = get(&director.url(path)).await;
    assert_eq!(cache_headers(&refresh), ("MISS", "stale-updating"));
    assert_ne!(
        refresh.text(),
        miss.text(),
        "a new response from the backend"
    );
    let hit = get(&director.url(path)).await;
    assert_eq!(cache_headers(&hit), ("HIT", "hit"));
    assert_eq!(hit.text(), refresh.text(), "the refreshed copy is stored");
    assert_eq!(a.requests_to("/respond/plain"), 2);

    // With an ETag: the refresh is a conditional request, the backend's 304 revalidates.
    let path = "/respond/tagged?cache-control=max-age%3D2&etag=%22e1%22";
    let miss = get(&director.url(path)).await;
    assert_eq!(cache_headers(&miss), ("MISS", "miss"));
    tokio::time::sleep(PAST_MAX_AGE_2).await;
    let revalidated = get(&director.url(path)).await;
    assert_eq!(revalidated.status, 200);
    assert_eq!(revalidated.header("x-cache"), Some("REVALIDATED"));
    assert_eq!(
        revalidated.text(),
        miss.text(),
        "the stored body, confirmed"
    );
    let sent = a.last_request().unwrap();
    assert_eq!(sent.headers["if-none-match"], "\"e1\"");
    assert_eq!(
        cache_headers(&get(&director.url(path)).await),
        ("HIT", "hit")
    );
    assert_eq!(a.requests_to("/respond/tagged"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadowed_serves_the_stale_copy_and_refreshes_in_the_background() {
    let a = backend("a").await;
    let director = Director::start(&config(&[&a], "strategy = \"shadowed\""));
    let path = "/respond/sh?cache-control=max-age%3D2";
    let miss = get(&director.url(path)).await;
    assert_eq!(
        cache_headers(&get(&director.url(path)).await),
        ("HIT", "hit")
    );
    tokio::time::sleep(PAST_MAX_AGE_2).await;
    let stale = get(&director.url(path)).await;
    assert_eq!(cache_headers(&stale), ("STALE", "stale-updating"));
    assert_eq!(stale.text(), miss.text());
    let fresh = eventually_hit(&director, path).await;
    assert_ne!(
        fresh.text(),
        miss.text(),
        "the background refresh was stored"
    );
    assert_eq!(a.requests_to("/respond/sh"), 2);
}

/// Polls (bounded) until `path` is a fresh hit.
async fn eventually_hit(director: &Director, path: &str) -> Reply {
    for _ in 0..300 {
        let r = get(&director.url(path)).await;
        if r.header("x-cache") == Some("HIT") {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never became a hit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_requests_get_304_from_the_cache() {
    let a = backend("a").await;
    let director = Director::start(&config(&[&a], ""));
    let lm = "Mon, 01 Jan 2024 00:00:00 GMT";
    let path = format!(
        "/respond/cond?cache-control=max-age%3D60&etag=%22v1%22&last-modified={}",
        lm.replace(' ', "%20").replace(',', "%2C")
    );
    let full = get(&director.url(&path)).await;
    assert_eq!(full.header("last-modified"), Some(lm));

    let by_tag = get_with(&director, &path, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(by_tag.status, 304);
    assert_eq!(cache_headers(&by_tag), ("HIT", "hit"));
    assert_eq!(by_tag.header("etag"), Some("\"v1\""));
    assert!(by_tag.body.is_empty());
    let weak = get_with(&director, &path, &[("if-none-match", "\"x\", W/\"v1\"")]).await;
    assert_eq!(weak.status, 304, "weak comparison over a list");
    let by_date = get_with(&director, &path, &[("if-modified-since", lm)]).await;
    assert_eq!(by_date.status, 304);
    let other = get_with(&director, &path, &[("if-none-match", "\"v2\"")]).await;
    assert_eq!((other.status.as_u16(), other.text()), (200, full.text()));
    assert_eq!(
        a.requests_to("/respond/cond"),
        1,
        "all answered from the cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_accept_encoding_keeps_two_variants() {
    let a = backend("a").await;
    let director = Director::start(&config(&[&a], ""));
    let path = "/respond/v?cache-control=max-age%3D60&vary=Accept-Encoding";
    let gzip = [("accept-encoding", "gzip")];
    let br = [("accept-encoding", "br")];
    let g1 = get_with(&director, path, &gzip).await;
    let b1 = get_with(&director, path, &br).await;
    assert_eq!(
        (g1.header("x-cache"), b1.header("x-cache")),
        (Some("MISS"), Some("MISS"))
    );
    assert!(g1.text().contains("ae=gzip") && b1.text().contains("ae=br"));
    let g2 = get_with(&director, path, &gzip).await;
    let b2 = get_with(&director, path, &br).await;
    assert_eq!(
        (g2.header("x-cache"), b2.header("x-cache")),
        (Some("HIT"), Some("HIT"))
    );
    assert_eq!(
        (g2.text(), b2.text()),
        (g1.text(), b1.text()),
        "each its own variant"
    );
    assert_eq!(a.requests_to("/respond/v"), 2);
    // A third value is a third variant, fetched once.
    let id = get_with(&director, path, &[("accept-encoding", "identity")]).await;
    assert_eq!(id.header("x-cache"), Some("MISS"));
    assert_eq!(a.requests_to("/respond/v"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_cookie_private_and_no_store_are_not_stored() {
    let a = backend("a").await;
    let director = Director::start(&config(&[&a], ""));
    for (name, query) in [
        (
            "cookie",
            "cache-control=max-age%3D60&set-cookie=session%3D1",
        ),
        ("private", "cache-control=private,%20max-age%3D60"),
        ("no-store", "cache-control=no-store,%20max-age%3D60"),
    ] {
        let path = format!("/respond/{name}?{query}");
        for _ in 0..2 {
            let r = get(&director.url(&path)).await;
            assert_eq!(
                (r.status.as_u16(), r.header("x-cache")),
                (200, Some("MISS")),
                "{name}"
            );
        }
        assert_eq!(
            a.requests_to(&format!("/respond/{name}")),
            2,
            "{name} not stored"
        );
    }
    // The control: the same response without them is stored.
    let path = "/respond/control?cache-control=max-age%3D60";
    get(&director.url(path)).await;
    assert_eq!(
        get(&director.url(path)).await.header("x-cache"),
        Some("HIT")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_allows_storing_only_with_public_s_maxage_or_must_revalidate() {
    let a = backend("a").await;
    let director = Director::start(&config(&[&a], ""));
    let auth = [("authorization", "Bearer secret")];
    for (name, cc, stored) in [
        ("plain", "max-age%3D60", false),
        ("public", "public,%20max-age%3D60", true),
        ("s-maxage", "s-maxage%3D60", true),
        ("must-revalidate", "must-revalidate,%20max-age%3D60", true),
    ] {
        let path = format!("/respond/auth-{name}?cache-control={cc}");
        get_with(&director, &path, &auth).await;
        let second = get_with(&director, &path, &auth).await;
        let expect = if stored { "HIT" } else { "MISS" };
        assert_eq!(second.header("x-cache"), Some(expect), "{name}");
        let upstream = if stored { 1 } else { 2 };
        assert_eq!(
            a.requests_to(&format!("/respond/auth-{name}")),
            upstream,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_copies_while_every_backend_is_down_but_504_for_must_revalidate() {
    let a = backend("a").await;
    let b = backend("b").await;
    let director = Director::start(&config(&[&a, &b], "shadow-ttl = \"60s\""));
    let shadowed = "/respond/shadow?cache-control=max-age%3D2";
    let strict = "/respond/strict?cache-control=max-age%3D2,%20must-revalidate";
    let fresh = get(&director.url(shadowed)).await;
    assert_eq!(fresh.status, 200);
    assert_eq!(get(&director.url(strict)).await.status, 200);

    // Both backends answer 503: the cluster cannot answer.
    a.set_failing(true);
    b.set_failing(true);
    tokio::time::sleep(PAST_MAX_AGE_2).await;
    let stale = get(&director.url(shadowed)).await;
    assert_eq!(stale.status, 200, "{}", stale.text());
    assert_eq!(stale.header("x-director-cache"), Some("shadow"));
    assert_eq!(stale.text(), fresh.text());
    let refused = get(&director.url(strict)).await;
    assert_eq!(
        refused.status, 504,
        "must-revalidate forbids the stale copy"
    );
    assert_eq!(refused.header("x-director-cache"), None);

    // Both backends gone (connections refused): the same.
    drop((a, b));
    let stale = get(&director.url(shadowed)).await;
    assert_eq!(stale.status, 200, "{}", stale.text());
    assert_eq!(stale.header("x-director-cache"), Some("shadow"));
    assert_eq!(stale.text(), fresh.text());
    assert_eq!(get(&director.url(strict)).await.status, 504);
    // Nothing stored, nothing to shadow: the cluster's own error goes out.
    let cold = get(&director.url("/respond/cold?cache-control=max-age%3D60")).await;
    assert!(cold.status.is_server_error(), "{}", cold.status);
    assert_eq!(cold.header("x-director-cache"), None);
}

/// Sends `n` concurrent GETs for `path` and returns every reply.
async fn burst(director: &Director, path: &str, n: usize) -> Vec<Reply> {
    let url = director.url(path);
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    let mut replies = Vec::with_capacity(n);
    for c in calls {
        replies.push(c.await.unwrap());
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_sends_one_request_upstream_for_100_concurrent_cold_requests() {
    let a = backend("a").await;
    let director = Director::start(&config(&[&a], "strategy = \"locked\""));
    // A slow backend keeps the one fetch running while the others arrive and wait for it.
    a.set_delay(Duration::from_secs(2));
    let replies = burst(&director, "/respond/hot?cache-control=max-age%3D60", 100).await;
    let body = replies[0].text();
    for r in &replies {
        assert_eq!((r.status.as_u16(), r.text()), (200, body.clone()));
    }
    let misses = replies
        .iter()
        .filter(|r| r.header("x-cache") == Some("MISS"))
        .count();
    assert_eq!(misses, 1, "one fetch, 99 answered with its copy");
    assert_eq!(
        a.requests_to("/respond/hot"),
        1,
        "exactly one upstream request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadowed_answers_100_concurrent_requests_from_the_stale_copy_during_one_refresh() {
    let a = backend("a").await;
    let director = Director::start(&config(&[&a], "strategy = \"shadowed\""));
    let path = "/respond/warm?cache-control=max-age%3D2";
    let old = get(&director.url(path)).await;
    tokio::time::sleep(PAST_MAX_AGE_2).await;
    // The refresh takes long: every request must be answered while it still runs.
    const REFRESH: Duration = Duration::from_secs(8);
    a.set_delay(REFRESH);
    let replies = burst(&director, path, 100).await;
    for r in &replies {
        assert_eq!((r.status.as_u16(), r.text()), (200, old.text()));
        assert_eq!(r.header("x-cache"), Some("STALE"));
    }
    assert_eq!(
        a.in_flight(""),
        1,
        "all 100 answered while the refresh is still at the backend"
    );
    assert_eq!(
        a.requests_to("/respond/warm"),
        2,
        "the fill and one refresh"
    );
    a.set_delay(Duration::ZERO);
    for _ in 0..300 {
        if a.in_flight("") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.in_flight(""), 0, "the refresh finished");
    assert_eq!(a.requests_to("/respond/warm"), 2, "still one refresh");
    // The refreshed copy is what is served now. (It took 8 s to arrive, so by RFC 9111 §4.2.3
    // it is already older than its max-age: it may come as STALE and trigger a new refresh.)
    let refreshed = get(&director.url(path)).await;
    assert_ne!(refreshed.text(), old.text());
}

#[test]
fn a_bad_strategy_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = "[server]\nlisten = [\"127.0.0.1:0\"]\n[clusters.app]\n[clusters.app.cache]\n\
                strategy = \"eager\"\n[[clusters.app.backends]]\nname = \"a\"\n\
                url = \"http://127.0.0.1:1\"\n[[routes]]\ncluster = \"app\"\n";
    std::fs::write(&path, text).unwrap();
    let (ok, text) = check(&path);
    assert!(!ok);
    assert!(text.contains("clusters.app.cache"), "{text}");
}
