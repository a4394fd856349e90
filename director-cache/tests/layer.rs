//! Service tests of the cache layer: tower-test mocks as the upstream, paused time where time
//! matters, every request bounded.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use director_cache::{
    BoxError, Cache, CacheConfig, CacheHandle, CacheStats, DefaultTtl, PurgeAllowed, UpdateStrategy,
};
use futures_util::stream;
use http::header::{
    ACCEPT_ENCODING, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, COOKIE, ETAG, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, LAST_MODIFIED, SET_COOKIE, VARY,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use tokio::task::JoinHandle;
use tower::{Service, ServiceExt};
use tower_test::mock;

type Req = Request<Empty<Bytes>>;
type Body = BoxBody<Bytes, BoxError>;
type Res = Response<Body>;
type Svc = Cache<mock::Mock<Req, Res>>;
type Upstream = mock::Handle<Req, Res>;

#[derive(Debug)]
struct Out {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Out {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
}

fn setup(config: CacheConfig) -> (Svc, Upstream, CacheHandle) {
    let (mock, upstream) = mock::pair::<Req, Res>();
    let cache = CacheHandle::new(config);
    (Cache::new(mock, cache.clone()), upstream, cache)
}

fn get(path: &str) -> Req {
    request(Method::GET, path, &[])
}

fn request(method: Method, path: &str, headers: &[(http::header::HeaderName, &str)]) -> Req {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "example.com");
    for (n, v) in headers {
        b = b.header(n, *v);
    }
    b.body(Empty::new()).unwrap()
}

fn response(status: u16, headers: &[(http::header::HeaderName, &str)], body: &'static str) -> Res {
    let mut b = Response::builder().status(status);
    for (n, v) in headers {
        b = b.header(n, *v);
    }
    b.body(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|e: Infallible| match e {})
            .boxed(),
    )
    .unwrap()
}

fn send(svc: &Svc, req: Req) -> impl Future<Output = Result<Out, BoxError>> + Send + 'static {
    let mut svc = svc.clone();
    // `ready` + `call` rather than `oneshot`: a spawned future that holds `Oneshot<Cache<S>>`
    // (a type naming `<Cache<S> as Service>::Future`) trips rustc's higher-ranked lifetime
    // bug when the inner types carry `Box<dyn Error>`.
    async move {
        let res = svc.ready().await?.call(req).await?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Out {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

fn spawn_send(svc: &Svc, req: Req) -> JoinHandle<Result<Out, BoxError>> {
    tokio::spawn(send(svc, req))
}

/// Sends a request that must go upstream, answers it with `res`, returns what the upstream saw
/// and what the client got.
async fn through(svc: &Svc, upstream: &mut Upstream, req: Req, res: Res) -> (Req, Out) {
    let call = spawn_send(svc, req);
    // Bounded: a request the cache answers itself fails here instead of hanging the test.
    let (seen, tx) = tokio::time::timeout(Duration::from_secs(60), upstream.next_request())
        .await
        .expect("the request goes upstream")
        .expect("request upstream");
    tx.send_response(res);
    (seen, call.await.unwrap().unwrap())
}

/// Whether the upstream has a request waiting (without waiting for one).
fn upstream_idle(upstream: &mut Upstream) -> bool {
    let mut next = tokio_test::task::spawn(upstream.next_request());
    next.poll().is_pending()
}

const FRESH_10: (http::header::HeaderName, &str) = (CACHE_CONTROL, "max-age=10");

#[tokio::test(start_paused = true)]
async fn miss_hit_stale_revalidate_refresh() {
    let (svc, mut up, cache) = setup(CacheConfig::default());
    let res = response(200, &[FRESH_10, (ETAG, "\"v1\"")], "one");
    let (_, out) = through(&svc, &mut up, get("/a"), res).await;
    assert_eq!(
        (out.header("x-cache"), out.header("x-cache-lookup")),
        ("MISS", "miss")
    );
    assert_eq!(out.body, "one");

    let hit = send(&svc, get("/a")).await.unwrap();
    assert_eq!(
        (hit.header("x-cache"), hit.header("x-cache-hits")),
        ("HIT", "1")
    );
    assert_eq!(
        (hit.header("age"), hit.header("content-length")),
        ("0", "3")
    );
    assert_eq!(hit.body, "one");
    tokio::time::advance(Duration::from_secs(5)).await;
    let hit = send(&svc, get("/a")).await.unwrap();
    assert_eq!((hit.header("x-cache-hits"), hit.header("age")), ("2", "5"));
    assert!(upstream_idle(&mut up));

    // Stale: revalidated upstream with our validator; a 304 refreshes the copy.
    tokio::time::advance(Duration::from_secs(10)).await;
    let (seen, out) = through(&svc, &mut up, get("/a"), response(304, &[FRESH_10], "")).await;
    assert_eq!(seen.headers()[IF_NONE_MATCH], "\"v1\"");
    assert_eq!(
        (out.status, out.header("x-cache")),
        (StatusCode::OK, "REVALIDATED")
    );
    assert_eq!(out.body, "one");
    let hit = send(&svc, get("/a")).await.unwrap();
    assert_eq!((hit.header("x-cache"), hit.header("age")), ("HIT", "0"));

    // Stale again: this time the upstream sends a new representation.
    tokio::time::advance(Duration::from_secs(11)).await;
    let res = response(200, &[FRESH_10, (ETAG, "\"v2\"")], "two");
    let (_, out) = through(&svc, &mut up, get("/a"), res).await;
    assert_eq!(
        (out.header("x-cache"), out.header("x-cache-lookup")),
        ("MISS", "stale-updating")
    );
    let hit = send(&svc, get("/a")).await.unwrap();
    assert_eq!(
        (hit.header("x-cache"), hit.body.as_ref()),
        ("HIT", &b"two"[..])
    );

    let stats = cache.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.revalidated, stats.stores),
        (4, 3, 1, 3)
    );
    assert_eq!(stats.objects, 1);
    assert!(stats.bytes > 0);
}

#[tokio::test(start_paused = true)]
async fn conditional_hits_get_304_and_misses_strip_client_conditionals() {
    let (svc, mut up, _) = setup(CacheConfig::default());
    let lm = "Sat, 01 Jan 2022 00:00:00 GMT";
    let inm = || (IF_NONE_MATCH, "\"v1\"");
    let res = response(
        200,
        &[FRESH_10, (ETAG, "\"v1\""), (LAST_MODIFIED, lm)],
        "body",
    );
    let (seen, out) = through(&svc, &mut up, request(Method::GET, "/c", &[inm()]), res).await;
    assert!(
        !seen.headers().contains_key(IF_NONE_MATCH),
        "the cache wants a full response"
    );
    assert_eq!(
        (out.status, out.body.as_ref()),
        (StatusCode::OK, &b"body"[..])
    );

    let nm = send(&svc, request(Method::GET, "/c", &[inm()]))
        .await
        .unwrap();
    assert_eq!((nm.status, nm.body.len()), (StatusCode::NOT_MODIFIED, 0));
    assert_eq!((nm.header("etag"), nm.header("x-cache")), ("\"v1\"", "HIT"));
    let ims = send(&svc, request(Method::GET, "/c", &[(IF_MODIFIED_SINCE, lm)]))
        .await
        .unwrap();
    assert_eq!(ims.status, StatusCode::NOT_MODIFIED);
    let other = send(
        &svc,
        request(Method::GET, "/c", &[(IF_NONE_MATCH, "\"v0\"")]),
    )
    .await
    .unwrap();
    assert_eq!(
        (other.status, other.body.as_ref()),
        (StatusCode::OK, &b"body"[..])
    );
    assert!(upstream_idle(&mut up));
}

#[tokio::test(start_paused = true)]
async fn vary_keeps_one_variant_per_accept_encoding() {
    let (svc, mut up, cache) = setup(CacheConfig::default());
    let vary = || (VARY, "Accept-Encoding");
    for enc in ["gzip", "br"] {
        let req = request(Method::GET, "/v", &[(ACCEPT_ENCODING, enc)]);
        let body = if enc == "gzip" { "gz" } else { "brotli" };
        let (_, out) = through(&svc, &mut up, req, response(200, &[FRESH_10, vary()], body)).await;
        assert_eq!(out.header("x-cache"), "MISS");
    }
    for (enc, body) in [("gzip", "gz"), ("br", "brotli"), ("GZIP", "gz")] {
        let out = send(&svc, request(Method::GET, "/v", &[(ACCEPT_ENCODING, enc)]))
            .await
            .unwrap();
        assert_eq!(
            (out.header("x-cache"), out.body.as_ref()),
            ("HIT", body.as_bytes())
        );
    }
    assert!(upstream_idle(&mut up));
    // A third encoding is a new variant; both variants live under one key.
    let req = request(Method::GET, "/v", &[(ACCEPT_ENCODING, "identity")]);
    let (_, out) = through(
        &svc,
        &mut up,
        req,
        response(200, &[FRESH_10, vary()], "plain"),
    )
    .await;
    assert_eq!(out.header("x-cache"), "MISS");
    assert_eq!(cache.stats().objects, 1);

    // Vary: * is never served from the cache.
    let star = response(200, &[FRESH_10, (VARY, "*")], "x");
    through(&svc, &mut up, get("/star"), star).await;
    let again = response(200, &[FRESH_10, (VARY, "*")], "x");
    let (_, out) = through(&svc, &mut up, get("/star"), again).await;
    assert_eq!(out.header("x-cache"), "MISS");
}

#[tokio::test(start_paused = true)]
async fn set_cookie_private_and_no_store_are_not_stored() {
    let (svc, mut up, cache) = setup(CacheConfig::default());
    let cases: [&[(http::header::HeaderName, &str)]; 3] = [
        &[FRESH_10, (SET_COOKIE, "session=1")],
        &[(CACHE_CONTROL, "private, max-age=10")],
        &[(CACHE_CONTROL, "no-store, max-age=10")],
    ];
    for (i, headers) in cases.iter().enumerate() {
        let path = format!("/u{i}");
        for _ in 0..2 {
            let (_, out) = through(&svc, &mut up, get(&path), response(200, headers, "x")).await;
            assert_eq!(out.header("x-cache"), "MISS");
        }
    }
    let stats = cache.stats();
    assert_eq!((stats.uncacheable, stats.stores, stats.objects), (6, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn authorization_rules() {
    let (svc, mut up, _) = setup(CacheConfig::default());
    let auth = || (AUTHORIZATION, "Bearer t");
    for _ in 0..2 {
        let req = request(Method::GET, "/private", &[auth()]);
        let (_, out) = through(&svc, &mut up, req, response(200, &[FRESH_10], "p")).await;
        assert_eq!(out.header("x-cache"), "MISS");
    }
    let public = (CACHE_CONTROL, "public, max-age=10");
    let req = request(Method::GET, "/shared", &[auth()]);
    through(&svc, &mut up, req, response(200, &[public], "s")).await;
    let out = send(&svc, request(Method::GET, "/shared", &[auth()]))
        .await
        .unwrap();
    assert_eq!(out.header("x-cache"), "HIT");
}

const ALICE: (http::header::HeaderName, &str) = (COOKIE, "session=alice");

#[tokio::test(start_paused = true)]
async fn cookie_requests_store_only_public_or_s_maxage_but_may_hit() {
    let (svc, mut up, cache) = setup(CacheConfig::default());
    let lm = (LAST_MODIFIED, "Mon, 01 Jan 2024 00:00:00 GMT");
    // Heuristically cacheable, and plain max-age: not stored from alice's request.
    for (path, headers) in [("/h", &[lm][..]), ("/m", &[FRESH_10][..])] {
        let req = request(Method::GET, path, &[ALICE]);
        let (seen, out) = through(&svc, &mut up, req, response(200, headers, "alice's")).await;
        assert_eq!(
            seen.headers()[COOKIE],
            "session=alice",
            "the cookie still goes upstream"
        );
        assert_eq!(out.header("x-cache"), "MISS");
        let (_, out) = through(&svc, &mut up, get(path), response(200, headers, "anon")).await;
        assert_eq!(
            (out.header("x-cache"), out.body.as_ref()),
            ("MISS", &b"anon"[..])
        );
        // Lookups are not restricted: the copy stored from an anonymous request serves alice.
        let hit = send(&svc, request(Method::GET, path, &[ALICE]))
            .await
            .unwrap();
        assert_eq!(
            (hit.header("x-cache"), hit.body.as_ref()),
            ("HIT", &b"anon"[..])
        );
    }
    for (path, cc) in [("/p", "public, max-age=10"), ("/s", "s-maxage=10")] {
        let req = request(Method::GET, path, &[ALICE]);
        through(
            &svc,
            &mut up,
            req,
            response(200, &[(CACHE_CONTROL, cc)], "shared"),
        )
        .await;
        let hit = send(&svc, get(path)).await.unwrap();
        assert_eq!(
            (hit.header("x-cache"), hit.body.as_ref()),
            ("HIT", &b"shared"[..])
        );
    }
    assert!(upstream_idle(&mut up));
    assert_eq!(cache.stats().stores, 4);
}

#[tokio::test(start_paused = true)]
async fn ignored_cookies_and_the_switch_off() {
    let config = CacheConfig {
        ignore_cookies: vec!["_ga*".into()],
        ..CacheConfig::default()
    };
    let (svc, mut up, _) = setup(config);
    let req = request(Method::GET, "/a", &[(COOKIE, "_ga=1; _ga_X=2")]);
    through(&svc, &mut up, req, response(200, &[FRESH_10], "a")).await;
    assert_eq!(
        send(&svc, get("/a")).await.unwrap().header("x-cache"),
        "HIT"
    );
    let req = request(Method::GET, "/b", &[(COOKIE, "_ga=1; session=alice")]);
    through(&svc, &mut up, req, response(200, &[FRESH_10], "b")).await;
    let (_, out) = through(&svc, &mut up, get("/b"), response(200, &[FRESH_10], "b")).await;
    assert_eq!(out.header("x-cache"), "MISS");

    let off = CacheConfig {
        cookie_requests_private: false,
        ..CacheConfig::default()
    };
    let (svc, mut up, _) = setup(off);
    let req = request(Method::GET, "/c", &[ALICE]);
    through(&svc, &mut up, req, response(200, &[], "alice's")).await;
    let hit = send(&svc, get("/c")).await.unwrap();
    assert_eq!(
        (hit.header("x-cache"), hit.body.as_ref()),
        ("HIT", &b"alice's"[..])
    );
}

/// A response refused because of who asked (a cookie, Authorization, a `no-store` request)
/// says nothing about everyone else's copy: it neither evicts it nor refreshes it.
#[tokio::test(start_paused = true)]
async fn private_requests_neither_evict_nor_refresh_the_shared_copy() {
    let (svc, mut up, cache) = setup(CacheConfig::default());
    let v1 = || response(200, &[FRESH_10, (ETAG, "\"v1\"")], "one");
    through(&svc, &mut up, get("/a"), v1()).await;
    for private in [
        [ALICE, (CACHE_CONTROL, "no-cache")],
        [(AUTHORIZATION, "Bearer t"), (CACHE_CONTROL, "no-cache")],
        [
            (CACHE_CONTROL, "no-cache, no-store"),
            (ACCEPT_ENCODING, "gzip"),
        ],
    ] {
        let req = request(Method::GET, "/a", &private);
        let (_, out) = through(&svc, &mut up, req, response(200, &[], "mine")).await;
        assert_eq!(out.body, "mine");
        let hit = send(&svc, get("/a")).await.unwrap();
        assert_eq!(
            (hit.header("x-cache"), hit.body.as_ref()),
            ("HIT", &b"one"[..]),
            "{private:?}"
        );
    }
    // Stale: alice's conditional request gets a 304 carrying her own header. She is served
    // the copy; the copy is not refreshed with her header.
    tokio::time::advance(Duration::from_secs(11)).await;
    let mine = response(
        304,
        &[
            FRESH_10,
            (ETAG, "\"v1\""),
            ("x-user".parse().unwrap(), "alice"),
        ],
        "",
    );
    let (seen, out) = through(&svc, &mut up, request(Method::GET, "/a", &[ALICE]), mine).await;
    assert_eq!(seen.headers()[IF_NONE_MATCH], "\"v1\"");
    assert_eq!(
        (
            out.header("x-cache"),
            out.header("x-user"),
            out.body.as_ref()
        ),
        ("REVALIDATED", "alice", &b"one"[..])
    );
    let plain = response(304, &[FRESH_10, (ETAG, "\"v1\"")], "");
    let (seen, out) = through(&svc, &mut up, get("/a"), plain).await;
    assert_eq!(
        seen.headers()[IF_NONE_MATCH],
        "\"v1\"",
        "the stale copy is still there"
    );
    assert_eq!(
        (out.header("x-cache"), out.header("x-user")),
        ("REVALIDATED", "")
    );
    assert_eq!(cache.stats().objects, 1);
}

#[tokio::test(start_paused = true)]
async fn purge_needs_the_marker_then_the_next_request_misses() {
    let (svc, mut up, cache) = setup(CacheConfig::default());
    through(&svc, &mut up, get("/p"), response(200, &[FRESH_10], "x")).await;

    let denied = send(
        &svc,
        request(Method::from_bytes(b"PURGE").unwrap(), "/p", &[]),
    )
    .await
    .unwrap();
    assert_eq!(denied.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        send(&svc, get("/p")).await.unwrap().header("x-cache"),
        "HIT"
    );

    let purge = || {
        let mut req = request(Method::from_bytes(b"PURGE").unwrap(), "/p", &[]);
        req.extensions_mut().insert(PurgeAllowed);
        req
    };
    assert_eq!(send(&svc, purge()).await.unwrap().status, StatusCode::OK);
    assert_eq!(
        send(&svc, purge()).await.unwrap().status,
        StatusCode::NOT_FOUND
    );
    let (_, out) = through(&svc, &mut up, get("/p"), response(200, &[FRESH_10], "y")).await;
    assert_eq!(
        (out.header("x-cache"), out.body.as_ref()),
        ("MISS", &b"y"[..])
    );

    // Bans through the handle.
    through(&svc, &mut up, get("/p/2"), response(200, &[FRESH_10], "z")).await;
    through(&svc, &mut up, get("/q"), response(200, &[FRESH_10], "z")).await;
    assert_eq!(cache.ban_prefix("example.com#/p"), 2);
    assert!(cache.purge("example.com#/q#"));
    assert!(!cache.purge("example.com#/q#"));
    assert_eq!(cache.ban(|_| true), 0);
    let stats = cache.stats();
    assert_eq!((stats.purges, stats.objects, stats.bytes), (4, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn shadow_delivery_when_upstream_fails_or_is_unavailable() {
    let config = CacheConfig {
        shadow_ttl: Duration::from_secs(30),
        ..CacheConfig::default()
    };
    let (svc, mut up, cache) = setup(config);
    // No copy at all: the inner error goes out unchanged.
    let call = spawn_send(&svc, get("/s"));
    up.next_request()
        .await
        .unwrap()
        .1
        .send_error("backend down");
    assert_eq!(call.await.unwrap().unwrap_err().to_string(), "backend down");

    through(&svc, &mut up, get("/s"), response(200, &[FRESH_10], "old")).await;
    tokio::time::advance(Duration::from_secs(15)).await;
    let call = spawn_send(&svc, get("/s"));
    up.next_request()
        .await
        .unwrap()
        .1
        .send_error("no backend online");
    let out = call.await.unwrap().unwrap();
    assert_eq!(
        (out.status, out.body.as_ref()),
        (StatusCode::OK, &b"old"[..])
    );
    assert_eq!(out.header("x-director-cache"), "shadow");
    assert_eq!(out.header("age"), "15");

    let (_, out) = through(&svc, &mut up, get("/s"), response(503, &[], "busy")).await;
    assert_eq!(
        (out.header("x-director-cache"), out.body.as_ref()),
        ("shadow", &b"old"[..])
    );

    // Past lifetime + shadow TTL: the upstream's answer passes through.
    tokio::time::advance(Duration::from_secs(30)).await;
    let (_, out) = through(&svc, &mut up, get("/s"), response(503, &[], "busy")).await;
    assert_eq!(
        (out.status, out.body.as_ref()),
        (StatusCode::SERVICE_UNAVAILABLE, &b"busy"[..])
    );
    assert_eq!(out.header("x-director-cache"), "");
    assert_eq!(cache.stats().shadow, 2);
}

#[tokio::test(start_paused = true)]
async fn must_revalidate_gives_504_instead_of_stale() {
    let (svc, mut up, _) = setup(CacheConfig::default());
    let mr = (CACHE_CONTROL, "max-age=1, must-revalidate");
    through(
        &svc,
        &mut up,
        get("/m"),
        response(200, &[mr, (ETAG, "\"e\"")], "x"),
    )
    .await;
    tokio::time::advance(Duration::from_secs(5)).await;
    let call = spawn_send(&svc, get("/m"));
    up.next_request().await.unwrap().1.send_error("down");
    let out = call.await.unwrap().unwrap();
    assert_eq!(out.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(out.header("x-director-cache"), "");
}

#[tokio::test]
async fn locked_coalesces_100_cold_requests_into_one_upstream_request() {
    let (svc, mut up, cache) = setup(CacheConfig::default());
    let calls: Vec<_> = (0..100).map(|_| spawn_send(&svc, get("/hot"))).collect();
    let (_, tx) = up.next_request().await.unwrap();
    tx.send_response(response(200, &[FRESH_10], "hot"));
    for call in calls {
        let out = call.await.unwrap().unwrap();
        assert_eq!(
            (out.status, out.body.as_ref()),
            (StatusCode::OK, &b"hot"[..])
        );
    }
    assert!(upstream_idle(&mut up), "exactly one upstream request");
    let CacheStats {
        misses,
        hits,
        coalesced,
        ..
    } = cache.stats();
    assert_eq!(misses, 1);
    assert_eq!(hits, 99);
    assert!(coalesced <= 99);
}

/// A leader with a cookie gets an answer for itself alone: its waiters do not all go upstream
/// at once. One anonymous waiter fetches again for the others; waiters with cookies of their
/// own go upstream directly (waiting behind each other would chain).
#[tokio::test(start_paused = true)]
async fn waiters_behind_a_private_leader_coalesce_again() {
    let (svc, mut up, cache) = setup(CacheConfig::default());
    let leader = spawn_send(&svc, request(Method::GET, "/hot", &[ALICE]));
    let (_, tx) = up.next_request().await.unwrap();
    let anonymous: Vec<_> = (0..20).map(|_| spawn_send(&svc, get("/hot"))).collect();
    let bob = spawn_send(
        &svc,
        request(Method::GET, "/hot", &[(COOKIE, "session=bob")]),
    );
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(upstream_idle(&mut up), "everyone waits for alice's fetch");
    tx.send_response(response(200, &[FRESH_10], "alice's"));
    assert_eq!(leader.await.unwrap().unwrap().body, "alice's");

    // Two requests go upstream: bob's own, and one for the 20 anonymous ones.
    let (first, tx1) = up.next_request().await.unwrap();
    let (second, tx2) = up.next_request().await.unwrap();
    let bob_first = first.headers().contains_key(COOKIE);
    assert_ne!(bob_first, second.headers().contains_key(COOKIE));
    let (tx_bob, tx_anon) = if bob_first { (tx1, tx2) } else { (tx2, tx1) };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        upstream_idle(&mut up),
        "the anonymous waiters wait for one fetch"
    );
    tx_bob.send_response(response(200, &[FRESH_10], "bob's"));
    tx_anon.send_response(response(200, &[FRESH_10], "shared"));
    assert_eq!(bob.await.unwrap().unwrap().body, "bob's");
    for call in anonymous {
        assert_eq!(call.await.unwrap().unwrap().body, "shared");
    }
    assert!(upstream_idle(&mut up));
    assert_eq!(cache.stats().stores, 1);
}

#[tokio::test(start_paused = true)]
async fn shadowed_serves_100_stale_at_once_with_one_background_refresh() {
    let config = CacheConfig {
        strategy: UpdateStrategy::Shadowed,
        ..CacheConfig::default()
    };
    let (svc, mut up, cache) = setup(config);
    through(
        &svc,
        &mut up,
        get("/sh"),
        response(200, &[FRESH_10, (ETAG, "\"1\"")], "old"),
    )
    .await;
    tokio::time::advance(Duration::from_secs(20)).await;
    for _ in 0..100 {
        let out = send(&svc, get("/sh")).await.unwrap();
        assert_eq!(out.body, "old");
        assert_eq!(
            (out.header("x-cache"), out.header("x-cache-lookup")),
            ("STALE", "stale-updating")
        );
    }
    let (seen, tx) = up.next_request().await.unwrap();
    assert_eq!(seen.headers()[IF_NONE_MATCH], "\"1\"");
    assert!(upstream_idle(&mut up), "one refresh only");
    tx.send_response(response(200, &[FRESH_10, (ETAG, "\"2\"")], "new"));
    // Let the background task store the new copy.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let out = send(&svc, get("/sh")).await.unwrap();
    assert_eq!(
        (out.header("x-cache"), out.body.as_ref()),
        ("HIT", &b"new"[..])
    );
    assert_eq!(cache.stats().stale, 100);
}

#[tokio::test(start_paused = true)]
async fn a_stuck_fetch_releases_its_waiters_after_the_lock_timeout() {
    let (svc, mut up, _) = setup(CacheConfig::default());
    let leader = spawn_send(&svc, get("/slow"));
    let (_, leader_tx) = up.next_request().await.unwrap();
    let follower = spawn_send(&svc, get("/slow"));
    // Paused time auto-advances to the follower's 10 s lock timeout: it goes upstream itself.
    let (_, follower_tx) = up.next_request().await.unwrap();
    follower_tx.send_response(response(200, &[FRESH_10], "f"));
    assert_eq!(follower.await.unwrap().unwrap().body, "f");
    leader_tx.send_response(response(200, &[FRESH_10], "l"));
    assert_eq!(leader.await.unwrap().unwrap().body, "l");
}

#[tokio::test(start_paused = true)]
async fn large_objects_stream_through_uncached() {
    let config = CacheConfig {
        max_object_size: 10,
        ..CacheConfig::default()
    };
    let (svc, mut up, cache) = setup(config);
    let chunks = || {
        let frames = (0..5)
            .map(|_| Ok::<_, BoxError>(http_body::Frame::data(Bytes::from_static(b"0123456"))));
        let body = StreamBody::new(stream::iter(frames)).boxed();
        Response::builder()
            .header(CACHE_CONTROL, "max-age=10")
            .body(body)
            .unwrap()
    };
    for _ in 0..2 {
        let (_, out) = through(&svc, &mut up, get("/big"), chunks()).await;
        assert_eq!(out.body.len(), 35);
        assert_eq!(out.header("x-cache"), "MISS");
    }
    let known = response(200, &[FRESH_10], "this is longer than ten");
    let (_, out) = through(&svc, &mut up, get("/big2"), known).await;
    assert_eq!(out.body.len(), 23);
    assert_eq!(cache.stats().objects, 0);
}

#[tokio::test(start_paused = true)]
async fn head_only_if_cached_and_unsafe_methods() {
    let (svc, mut up, _) = setup(CacheConfig::default());
    let cold = send(
        &svc,
        request(Method::GET, "/h", &[(CACHE_CONTROL, "only-if-cached")]),
    )
    .await;
    assert_eq!(cold.unwrap().status, StatusCode::GATEWAY_TIMEOUT);

    through(
        &svc,
        &mut up,
        get("/h"),
        response(200, &[FRESH_10], "12345"),
    )
    .await;
    let head = send(&svc, request(Method::HEAD, "/h", &[])).await.unwrap();
    assert_eq!((head.header("x-cache"), head.body.len()), ("HIT", 0));
    assert_eq!(head.headers[CONTENT_LENGTH], "5");

    let post = request(Method::POST, "/h", &[]);
    let (_, out) = through(&svc, &mut up, post, response(200, &[], "ok")).await;
    assert_eq!(out.header("x-cache"), "");
    let (_, out) = through(&svc, &mut up, get("/h"), response(200, &[FRESH_10], "new")).await;
    assert_eq!(out.header("x-cache"), "MISS");
}

#[tokio::test(start_paused = true)]
async fn runtime_configuration() {
    let (svc, mut up, cache) = setup(CacheConfig::default());
    for i in 0..4 {
        let res = response(200, &[FRESH_10], "0123456789");
        through(&svc, &mut up, get(&format!("/r{i}")), res).await;
    }
    assert_eq!(cache.stats().objects, 4);
    let per_object = cache.stats().bytes / 4;
    cache.update_config(|c| CacheConfig {
        budget: usize::try_from(per_object * 2).unwrap(),
        ..c.clone()
    });
    assert!(cache.stats().objects <= 2);
    assert!(cache.stats().bytes <= per_object * 2);

    cache.update_config(|c| CacheConfig {
        enabled: false,
        ..c.clone()
    });
    let (_, out) = through(&svc, &mut up, get("/r0"), response(200, &[FRESH_10], "x")).await;
    assert_eq!(out.header("x-cache"), "");
}

#[tokio::test(start_paused = true)]
async fn always_ready_hits_skip_the_upstream_and_misses_wait_for_it() {
    let cache = CacheHandle::new(CacheConfig::default());
    let (mut svc, mut up) = mock::spawn_layer::<Req, Res, _>(cache.layer());
    up.allow(0);
    tokio_test::assert_ready_ok!(svc.poll_ready());
    let mut miss = tokio_test::task::spawn(svc.call(get("/rd")));
    tokio_test::assert_pending!(miss.poll());
    up.allow(1);
    assert!(miss.is_woken());
    tokio_test::assert_pending!(miss.poll());
    let (_, tx) = up.next_request().await.unwrap();
    tx.send_response(response(200, &[FRESH_10], "ready"));
    let res = tokio_test::assert_ready_ok!(miss.poll());
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ready");

    // The upstream is not ready (no backend), yet the hit is answered at once.
    tokio_test::assert_ready_ok!(svc.poll_ready());
    let mut hit = tokio_test::task::spawn(svc.call(get("/rd")));
    let res = tokio_test::assert_ready_ok!(hit.poll());
    assert_eq!(res.headers()["x-cache"], "HIT");

    // A readiness error is an upstream failure: the stale copy answers.
    tokio::time::advance(Duration::from_secs(20)).await;
    up.send_error("no backend online");
    let mut stale = tokio_test::task::spawn(svc.call(get("/rd")));
    let res = tokio_test::assert_ready_ok!(stale.poll());
    assert_eq!(res.headers()["x-director-cache"], "shadow");
}

#[tokio::test(start_paused = true)]
async fn resident_size_stays_within_the_budget() {
    const BUDGET: usize = 256 * 1024;
    let config = CacheConfig {
        budget: BUDGET,
        max_object_size: 32 * 1024,
        ..CacheConfig::default()
    };
    let (svc, mut up, cache) = setup(config);
    let size = |i: usize| 1024 + (i * 7919) % (16 * 1024);
    let mut offered = 0;
    for i in 0..200 {
        let body = Bytes::from(vec![b'x'; size(i)]);
        offered += body.len();
        let res = Response::builder()
            .header(CACHE_CONTROL, "max-age=600")
            .body(Full::new(body).map_err(|e: Infallible| match e {}).boxed())
            .unwrap();
        through(&svc, &mut up, get(&format!("/obj/{i}")), res).await;
        assert!(
            cache.stats().bytes <= BUDGET as u64,
            "over budget after object {i}"
        );
    }
    // Measure what is really resident: the bodies still served from the cache.
    let mut resident = 0;
    for i in 0..200 {
        let req = request(
            Method::GET,
            &format!("/obj/{i}"),
            &[(CACHE_CONTROL, "only-if-cached")],
        );
        let out = send(&svc, req).await.unwrap();
        if out.status == StatusCode::OK {
            assert_eq!(out.body.len(), size(i));
            resident += out.body.len();
        }
    }
    let stats = cache.stats();
    let accounted = usize::try_from(stats.bytes).unwrap();
    eprintln!(
        "offered {offered} B, budget {BUDGET} B, accounted {accounted} B, resident bodies {resident} B in {} objects, {} evictions",
        stats.objects, stats.evictions
    );
    assert!(offered > 4 * BUDGET);
    assert!(resident <= accounted && accounted <= BUDGET);
    // Bookkeeping (headers and per-entry overhead) is charged inside the budget; with 1-17 KiB
    // objects it stays under 10 % of it.
    assert!(
        resident * 10 >= accounted * 9,
        "overhead above 10 %: {resident} of {accounted}"
    );
    assert!(stats.evictions > 0);
}

#[tokio::test(start_paused = true)]
async fn response_stale_while_revalidate_applies_under_locked() {
    let (svc, mut up, _) = setup(CacheConfig::default());
    let swr = (CACHE_CONTROL, "max-age=10, stale-while-revalidate=30");
    through(
        &svc,
        &mut up,
        get("/swr"),
        response(200, std::slice::from_ref(&swr), "old"),
    )
    .await;
    tokio::time::advance(Duration::from_secs(15)).await;
    let out = send(&svc, get("/swr")).await.unwrap();
    assert_eq!(
        (out.header("x-cache-lookup"), out.body.as_ref()),
        ("stale-updating", &b"old"[..])
    );
    let (_, tx) = up.next_request().await.unwrap();
    tx.send_response(response(200, &[swr], "new"));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(send(&svc, get("/swr")).await.unwrap().body, "new");
    // Past the window the locked strategy goes upstream again.
    tokio::time::advance(Duration::from_secs(45)).await;
    let (_, out) = through(
        &svc,
        &mut up,
        get("/swr"),
        response(200, &[FRESH_10], "newer"),
    )
    .await;
    assert_eq!(out.header("x-cache"), "MISS");
}

#[tokio::test(start_paused = true)]
async fn response_stale_if_error_without_a_shadow_ttl() {
    let config = CacheConfig {
        shadow_ttl: Duration::ZERO,
        ..CacheConfig::default()
    };
    let (svc, mut up, _) = setup(config);
    let sie = (CACHE_CONTROL, "max-age=1, stale-if-error=60");
    through(&svc, &mut up, get("/sie"), response(200, &[sie], "kept")).await;
    through(
        &svc,
        &mut up,
        get("/plain"),
        response(200, &[FRESH_10], "lost"),
    )
    .await;
    tokio::time::advance(Duration::from_secs(30)).await;
    let (_, out) = through(&svc, &mut up, get("/sie"), response(502, &[], "bad")).await;
    assert_eq!(
        (out.header("x-director-cache"), out.body.as_ref()),
        ("shadow", &b"kept"[..])
    );
    let (_, out) = through(&svc, &mut up, get("/plain"), response(502, &[], "bad")).await;
    assert_eq!(
        (out.status, out.body.as_ref()),
        (StatusCode::BAD_GATEWAY, &b"bad"[..])
    );
}

#[tokio::test(start_paused = true)]
async fn waiters_share_the_leaders_failure_and_get_the_shadow() {
    let (svc, mut up, cache) = setup(CacheConfig::default());
    through(&svc, &mut up, get("/w"), response(200, &[FRESH_10], "old")).await;
    tokio::time::advance(Duration::from_secs(20)).await;
    let leader = spawn_send(&svc, get("/w"));
    let (_, tx) = up.next_request().await.unwrap();
    let followers: Vec<_> = (0..5).map(|_| spawn_send(&svc, get("/w"))).collect();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tx.send_error("no backend online");
    for call in std::iter::once(leader).chain(followers) {
        let out = call.await.unwrap().unwrap();
        assert_eq!(
            (out.header("x-director-cache"), out.body.as_ref()),
            ("shadow", &b"old"[..])
        );
    }
    assert!(
        upstream_idle(&mut up),
        "the waiters did not retry the dead upstream"
    );
    let stats = cache.stats();
    assert_eq!((stats.shadow, stats.coalesced), (6, 5));
}

#[tokio::test(start_paused = true)]
async fn deliver_active_off_still_delivers_shadows() {
    let (svc, mut up, cache) = setup(CacheConfig::default());
    through(
        &svc,
        &mut up,
        get("/d"),
        response(200, &[FRESH_10], "stored"),
    )
    .await;
    cache.update_config(|c| CacheConfig {
        deliver_active: false,
        ..c.clone()
    });
    let (_, out) = through(&svc, &mut up, get("/d"), response(200, &[FRESH_10], "live")).await;
    assert_eq!(out.body, "live");
    let call = spawn_send(&svc, get("/d"));
    up.next_request().await.unwrap().1.send_error("down");
    let out = call.await.unwrap().unwrap();
    assert_eq!(
        (out.header("x-director-cache"), out.body.as_ref()),
        ("shadow", &b"stored"[..])
    );
}

#[tokio::test(start_paused = true)]
async fn request_directives_max_stale_no_cache_and_default_ttl() {
    let (svc, mut up, _) = setup(CacheConfig::default());
    let res = response(200, &[(CACHE_CONTROL, "max-age=5"), (ETAG, "\"e\"")], "x");
    through(&svc, &mut up, get("/r"), res).await;
    tokio::time::advance(Duration::from_secs(8)).await;
    let out = send(
        &svc,
        request(Method::GET, "/r", &[(CACHE_CONTROL, "max-stale=10")]),
    )
    .await;
    assert_eq!(out.unwrap().header("x-cache-lookup"), "stale");
    // Too stale for this client: revalidated upstream.
    let strict = request(Method::GET, "/r", &[(CACHE_CONTROL, "max-stale=1")]);
    let (seen, out) = through(&svc, &mut up, strict, response(304, &[FRESH_10], "")).await;
    assert_eq!(seen.headers()[IF_NONE_MATCH], "\"e\"");
    assert_eq!(out.header("x-cache"), "REVALIDATED");

    let no_cache = request(Method::GET, "/r", &[(CACHE_CONTROL, "no-cache")]);
    let (seen, out) = through(&svc, &mut up, no_cache, response(304, &[], "")).await;
    assert_eq!(seen.headers()[IF_NONE_MATCH], "\"e\"");
    assert_eq!(
        (out.header("x-cache"), out.body.as_ref()),
        ("REVALIDATED", &b"x"[..])
    );

    // The request's own heuristic TTL replaces the configured 20 s.
    let mut req = get("/ttl");
    req.extensions_mut()
        .insert(DefaultTtl(Duration::from_secs(100)));
    through(&svc, &mut up, req, response(200, &[], "long")).await;
    tokio::time::advance(Duration::from_secs(50)).await;
    assert_eq!(
        send(&svc, get("/ttl")).await.unwrap().header("x-cache"),
        "HIT"
    );
}

#[tokio::test(start_paused = true)]
async fn range_requests_pass_and_expired_objects_can_be_swept() {
    let config = CacheConfig {
        shadow_ttl: Duration::ZERO,
        keep: Duration::ZERO,
        ..CacheConfig::default()
    };
    let (svc, mut up, cache) = setup(config);
    let ranged = request(Method::GET, "/rg", &[(http::header::RANGE, "bytes=0-1")]);
    let (seen, out) = through(&svc, &mut up, ranged, response(206, &[FRESH_10], "ab")).await;
    assert!(seen.headers().contains_key(http::header::RANGE));
    assert_eq!(out.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(cache.stats().objects, 0);

    through(&svc, &mut up, get("/e"), response(200, &[FRESH_10], "e")).await;
    assert_eq!(cache.remove_expired(), 0);
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(cache.remove_expired(), 1);
    assert_eq!((cache.stats().objects, cache.stats().bytes), (0, 0));
}

/// Each setting the admin API changes at runtime (through `set_config`) applies to the next
/// request, with objects already stored.
#[tokio::test(start_paused = true)]
async fn runtime_settings_are_honoured_live() {
    let (svc, mut up, cache) = setup(CacheConfig::default());
    let set = |f: &dyn Fn(&mut CacheConfig)| {
        let mut c = (*cache.config()).clone();
        f(&mut c);
        cache.set_config(c);
    };
    through(&svc, &mut up, get("/o"), response(200, &[FRESH_10], "one")).await;

    // deliver-active: off sends a fresh object's requests upstream; on serves it again.
    set(&|c| c.deliver_active = false);
    let (_, out) = through(&svc, &mut up, get("/o"), response(200, &[FRESH_10], "up")).await;
    assert_eq!(
        (out.header("x-cache"), out.body.as_ref()),
        ("MISS", &b"up"[..])
    );
    set(&|c| c.deliver_active = true);
    let out = send(&svc, get("/o")).await.unwrap();
    assert_eq!(
        (out.header("x-cache"), out.body.as_ref()),
        ("HIT", &b"one"[..])
    );

    // deliver-shadow: off lets the upstream's failure through; on shadows it.
    tokio::time::advance(Duration::from_secs(15)).await;
    set(&|c| c.deliver_shadow = false);
    let call = spawn_send(&svc, get("/o"));
    up.next_request().await.unwrap().1.send_error("down");
    assert!(
        call.await.unwrap().is_err(),
        "no shadow while deliver-shadow is off"
    );
    set(&|c| c.deliver_shadow = true);
    let call = spawn_send(&svc, get("/o"));
    up.next_request().await.unwrap().1.send_error("down");
    let out = call.await.unwrap().unwrap();
    assert_eq!(out.header("x-director-cache"), "shadow");

    // shadow-ttl: shrunk below the copy's staleness (5 s), the copy is no longer a shadow.
    set(&|c| c.shadow_ttl = Duration::from_secs(2));
    let call = spawn_send(&svc, get("/o"));
    let (_, tx) = up.next_request().await.unwrap();
    tx.send_response(response(503, &[], "unavailable"));
    let out = call.await.unwrap().unwrap();
    assert_eq!(
        (out.status, out.header("x-director-cache")),
        (StatusCode::SERVICE_UNAVAILABLE, "")
    );
    set(&|c| c.shadow_ttl = Duration::from_secs(60));

    // strategy: locked sends a stale object's request upstream and waits; shadowed answers
    // with the stale copy at once and refreshes in the background.
    set(&|c| c.strategy = UpdateStrategy::Locked);
    let call = spawn_send(&svc, get("/o"));
    let (_, tx) = up.next_request().await.unwrap();
    tx.send_response(response(200, &[(CACHE_CONTROL, "max-age=1")], "two"));
    assert_eq!(call.await.unwrap().unwrap().body, "two");
    tokio::time::advance(Duration::from_secs(2)).await;
    set(&|c| c.strategy = UpdateStrategy::Shadowed);
    let out = send(&svc, get("/o")).await.unwrap();
    assert_eq!(
        (out.header("x-cache"), out.body.as_ref()),
        ("STALE", &b"two"[..])
    );
    let (_, tx) = up.next_request().await.unwrap();
    tx.send_response(response(200, &[FRESH_10], "three"));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(send(&svc, get("/o")).await.unwrap().body, "three");

    // default-ttl: the heuristic lifetime of responses without one, from the next store on.
    set(&|c| c.default_ttl = Duration::ZERO);
    through(&svc, &mut up, get("/h"), response(200, &[], "no ttl")).await;
    assert_eq!(
        cache.stats().objects,
        1,
        "not stored: no lifetime, no validator"
    );
    set(&|c| c.default_ttl = Duration::from_secs(30));
    through(&svc, &mut up, get("/h"), response(200, &[], "heuristic")).await;
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(
        send(&svc, get("/h")).await.unwrap().header("x-cache"),
        "HIT"
    );

    // budget and enabled: see `runtime_configuration`.
    assert!(upstream_idle(&mut up));
}
