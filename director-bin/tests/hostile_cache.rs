//! The object cache against clients that would read other users' pages (issue 15, finding 8),
//! through the binary: a response to a request carrying `Cookie` or `Authorization` is shared
//! only when it says it is meant for shared caches (`public`, `s-maxage`), and one user's private
//! request cannot evict the copy everyone else gets.
//!
//! Objects come from the test backend's `/respond/...?header=value` route; its body counts the
//! requests it answered, and `requests_to(path)` counts what reached it.

mod support;

use director_core::testing::TestBackend;
use http::Request;
use http_body_util::Full;
use support::*;

/// One cluster `app` over `backend`, with `cache` as its `[clusters.app.cache]` table.
fn config(backend: &TestBackend, cache: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n[clusters.app]\n\n\
         [clusters.app.cache]\n{cache}\n\n[[clusters.app.backends]]\nname = \"a\"\n\
         url = \"{}\"\n\n[[routes]]\ncluster = \"app\"\n",
        backend.url()
    )
}

async fn backend() -> TestBackend {
    TestBackend::tcp("a", "127.0.0.1:0").await.unwrap()
}

async fn get_with(director: &Director, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::get(director.url(path));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    send(req.body(Full::default()).unwrap()).await
}

/// No cache headers but a validator: heuristically cacheable (RFC 9111 §4.2.2), so stored for
/// `default-ttl` (20 s) when nothing says otherwise.
const HEURISTIC: &str = "last-modified=Mon,%2001%20Jan%202024%2000:00:00%20GMT";
const PUBLIC: &str = "cache-control=public,%20max-age%3D60";
const S_MAXAGE: &str = "cache-control=s-maxage%3D60";

const ALICE: (&str, &str) = ("cookie", "session=alice");
const BEARER: (&str, &str) = ("authorization", "Bearer alice-token");

/// Sends `first` as the private user, then the same path as an anonymous one; returns the
/// anonymous reply and how many requests reached the backend.
async fn private_then_anonymous(
    director: &Director,
    a: &TestBackend,
    name: &str,
    query: &str,
    private: (&str, &str),
) -> (Reply, usize) {
    let path = format!("/respond/{name}?{query}");
    let mine = get_with(director, &path, &[private]).await;
    assert_eq!(mine.status, 200, "{name}");
    let theirs = get(&director.url(&path)).await;
    assert_eq!(theirs.status, 200, "{name}");
    (theirs, a.requests_to(&format!("/respond/{name}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_requests_heuristic_response_is_not_served_to_others() {
    let a = backend().await;
    let director = Director::start(&config(&a, ""));
    let (theirs, upstream) = private_then_anonymous(&director, &a, "c", HEURISTIC, ALICE).await;
    assert_eq!(theirs.header("x-cache"), Some("MISS"));
    assert_eq!(upstream, 2, "the backend answered both users");
    assert!(
        theirs.text().starts_with("response 2 "),
        "{}",
        theirs.text()
    );
    // The anonymous response was stored: lookups are not restricted, so alice gets it too.
    let again = get(&director.url(&format!("/respond/c?{HEURISTIC}"))).await;
    assert_eq!(again.header("x-cache"), Some("HIT"));
    let alice = get_with(&director, &format!("/respond/c?{HEURISTIC}"), &[ALICE]).await;
    assert_eq!(alice.header("x-cache"), Some("HIT"));
    assert_eq!(alice.text(), theirs.text());
    assert_eq!(a.requests_to("/respond/c"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_requests_explicitly_shared_response_is_shared() {
    let a = backend().await;
    let director = Director::start(&config(&a, ""));
    for (name, query) in [("p", PUBLIC), ("s", S_MAXAGE)] {
        let (theirs, upstream) = private_then_anonymous(&director, &a, name, query, ALICE).await;
        assert_eq!(theirs.header("x-cache"), Some("HIT"), "{name}");
        assert_eq!(upstream, 1, "{name}");
    }
    // Plain max-age is for any cache, browsers included: not enough with a cookie.
    let (theirs, upstream) =
        private_then_anonymous(&director, &a, "m", "cache-control=max-age%3D60", ALICE).await;
    assert_eq!((theirs.header("x-cache"), upstream), (Some("MISS"), 2));
}

/// RFC 9111 §3.5: the same rule for `Authorization` (with `must-revalidate` also allowed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorized_requests_response_is_shared_only_when_explicitly_public() {
    let a = backend().await;
    let director = Director::start(&config(&a, ""));
    let (theirs, upstream) = private_then_anonymous(&director, &a, "h", HEURISTIC, BEARER).await;
    assert_eq!((theirs.header("x-cache"), upstream), (Some("MISS"), 2));
    for (name, query) in [("p", PUBLIC), ("s", S_MAXAGE)] {
        let (theirs, upstream) = private_then_anonymous(&director, &a, name, query, BEARER).await;
        assert_eq!(
            (theirs.header("x-cache"), upstream),
            (Some("HIT"), 1),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_restores_rfc_rules_and_ignored_cookies_do_not_count() {
    let a = backend().await;
    let director = Director::start(&config(&a, "cookie-requests-private = false"));
    let (theirs, upstream) = private_then_anonymous(&director, &a, "c", HEURISTIC, ALICE).await;
    assert_eq!((theirs.header("x-cache"), upstream), (Some("HIT"), 1));
    // Authorization is RFC 9111 §3.5, not a setting.
    let (theirs, upstream) = private_then_anonymous(&director, &a, "h", HEURISTIC, BEARER).await;
    assert_eq!((theirs.header("x-cache"), upstream), (Some("MISS"), 2));

    let b = backend().await;
    let director = Director::start(&config(&b, "ignore-cookies = [\"_ga*\", \"_gid\"]"));
    let analytics = ("cookie", "_ga=GA1.1.1; _ga_XYZ=GS1.1; _gid=GA1.2");
    let (theirs, upstream) = private_then_anonymous(&director, &b, "g", HEURISTIC, analytics).await;
    assert_eq!((theirs.header("x-cache"), upstream), (Some("HIT"), 1));
    let mixed = ("cookie", "_ga=GA1.1.1; session=alice");
    let (theirs, upstream) = private_then_anonymous(&director, &b, "x", HEURISTIC, mixed).await;
    assert_eq!((theirs.header("x-cache"), upstream), (Some("MISS"), 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_cookie_response_is_never_shared() {
    let a = backend().await;
    let director = Director::start(&config(&a, ""));
    let query = format!("{PUBLIC}&set-cookie=session%3Dfor-whoever-asked");
    let path = format!("/respond/sc?{query}");
    let first = get(&director.url(&path)).await;
    assert_eq!(
        first.header("set-cookie"),
        Some("session=for-whoever-asked")
    );
    let second = get(&director.url(&path)).await;
    assert_eq!(second.header("x-cache"), Some("MISS"));
    assert_eq!(a.requests_to("/respond/sc"), 2);
}

/// Before the fix, any client could evict any object: a private request that went upstream
/// (`no-cache` forces it) and got an unstorable answer dropped everyone's stored copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_request_cannot_evict_the_shared_copy() {
    let a = backend().await;
    let director = Director::start(&config(&a, ""));
    let path = "/respond/e?cache-control=max-age%3D60";
    let stored = get(&director.url(path)).await;
    for private in [
        [ALICE, ("cache-control", "no-cache")],
        [BEARER, ("cache-control", "no-cache")],
        [("cache-control", "no-cache, no-store"), ("x-any", "1")],
    ] {
        let mine = get_with(&director, path, &private).await;
        assert_eq!(mine.header("x-cache"), Some("MISS"), "{private:?}");
        let theirs = get(&director.url(path)).await;
        assert_eq!(theirs.header("x-cache"), Some("HIT"), "{private:?}");
        assert_eq!(theirs.text(), stored.text(), "{private:?}");
    }
    assert_eq!(a.requests_to("/respond/e"), 4);
}
