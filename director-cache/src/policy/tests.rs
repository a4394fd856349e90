use std::time::{Duration, SystemTime};

use http::header::{
    AGE, CACHE_CONTROL, COOKIE, DATE, ETAG, EXPIRES, LAST_MODIFIED, SET_COOKIE, VARY,
};
use http::{HeaderMap, StatusCode};
use proptest::prelude::*;

use super::*;

const GET: RequestFacts = RequestFacts {
    is_get: true,
    authorization: false,
    cookie: false,
    no_store: false,
};
const TTL: Duration = Duration::from_secs(20);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn hdrs(pairs: &[(http::header::HeaderName, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(n.clone(), v.parse().unwrap());
    }
    h
}

fn store(
    status: u16,
    pairs: &[(http::header::HeaderName, &str)],
) -> Result<Freshness, NotStorable> {
    let now = SystemTime::UNIX_EPOCH + secs(1_000_000);
    storability(
        GET,
        StatusCode::from_u16(status).unwrap(),
        &hdrs(pairs),
        TTL,
        now,
        Duration::ZERO,
    )
}

#[test]
fn lifetime_precedence_s_maxage_max_age_expires_default() {
    let date = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + secs(1_000_000));
    let exp = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + secs(1_000_300));
    let f = store(
        200,
        &[(CACHE_CONTROL, "max-age=10, s-maxage=30"), (EXPIRES, &exp)],
    )
    .unwrap();
    assert_eq!(f.lifetime, secs(30));
    assert!(f.implied_revalidate);
    let f = store(200, &[(CACHE_CONTROL, "max-age=10"), (EXPIRES, &exp)]).unwrap();
    assert_eq!(f.lifetime, secs(10));
    let f = store(200, &[(EXPIRES, &exp), (DATE, &date)]).unwrap();
    assert_eq!(f.lifetime, secs(300));
    assert_eq!(store(200, &[]).unwrap().lifetime, TTL);
    // An invalid Expires means "already expired"; without validators nothing worth storing.
    assert_eq!(store(200, &[(EXPIRES, "0")]), Err(NotStorable::NoFreshness));
}

#[test]
fn heuristics_only_for_heuristically_cacheable_statuses() {
    assert_eq!(store(302, &[]), Err(NotStorable::Status));
    assert_eq!(store(500, &[]), Err(NotStorable::Status));
    assert_eq!(
        store(302, &[(CACHE_CONTROL, "max-age=5")])
            .unwrap()
            .lifetime,
        secs(5)
    );
    assert_eq!(
        store(302, &[(CACHE_CONTROL, "public")]).unwrap().lifetime,
        TTL
    );
    assert_eq!(store(404, &[]).unwrap().lifetime, TTL);
    assert_eq!(
        store(206, &[(CACHE_CONTROL, "max-age=5")]),
        Err(NotStorable::Status)
    );
}

#[test]
fn not_storable_reasons() {
    assert_eq!(
        store(200, &[(CACHE_CONTROL, "no-store")]),
        Err(NotStorable::NoStore)
    );
    assert_eq!(
        store(200, &[(CACHE_CONTROL, "private, max-age=5")]),
        Err(NotStorable::Private)
    );
    assert_eq!(
        store(200, &[(SET_COOKIE, "a=b")]),
        Err(NotStorable::SetCookie)
    );
    assert_eq!(store(200, &[(VARY, "*")]), Err(NotStorable::VaryStar));
    let now = SystemTime::now();
    let h = HeaderMap::new();
    let post = RequestFacts {
        is_get: false,
        ..GET
    };
    assert_eq!(
        storability(post, StatusCode::OK, &h, TTL, now, Duration::ZERO),
        Err(NotStorable::Method)
    );
    let nostore = RequestFacts {
        no_store: true,
        ..GET
    };
    assert_eq!(
        storability(nostore, StatusCode::OK, &h, TTL, now, Duration::ZERO),
        Err(NotStorable::RequestNoStore)
    );
}

/// RFC 9111 §3.5: a shared cache MUST NOT store a response to a request with `Authorization`
/// unless the response has `public`, `s-maxage` or `must-revalidate`. Heuristics, `max-age` and
/// `Expires` do not count.
#[test]
fn rfc9111_3_5_authorization_needs_public_s_maxage_or_must_revalidate() {
    let auth = RequestFacts {
        authorization: true,
        ..GET
    };
    let now = SystemTime::now();
    let try_cc = |cc: &str| {
        storability(
            auth,
            StatusCode::OK,
            &hdrs(&[(CACHE_CONTROL, cc)]),
            TTL,
            now,
            Duration::ZERO,
        )
    };
    assert_eq!(try_cc("max-age=60"), Err(NotStorable::Authorization));
    assert!(try_cc("public, max-age=60").is_ok());
    assert!(try_cc("s-maxage=60").is_ok());
    assert!(try_cc("must-revalidate, max-age=60").is_ok());
    // No cache headers at all: heuristically cacheable, but not for an authenticated request.
    let lm = httpdate::fmt_http_date(now - secs(3600));
    for h in [
        hdrs(&[]),
        hdrs(&[(LAST_MODIFIED, &lm)]),
        hdrs(&[(EXPIRES, &httpdate::fmt_http_date(now + secs(60)))]),
    ] {
        assert_eq!(
            storability(auth, StatusCode::OK, &h, TTL, now, Duration::ZERO),
            Err(NotStorable::Authorization),
            "{h:?}"
        );
    }
    // `public` alone lets the heuristic apply (§4.2.2).
    let public = hdrs(&[(CACHE_CONTROL, "public")]);
    let f = storability(auth, StatusCode::OK, &public, TTL, now, Duration::ZERO).unwrap();
    assert_eq!(f.lifetime, TTL);
    // `private` still wins over everything.
    assert_eq!(try_cc("private, s-maxage=60"), Err(NotStorable::Private));
}

/// A request with a cookie: stored only with `public` or `s-maxage` (not an RFC rule; what
/// Varnish's builtin VCL protects against). Plain `max-age`, `Expires`, `must-revalidate` and
/// heuristics are not enough.
#[test]
fn cookie_requests_need_public_or_s_maxage() {
    let cookie = RequestFacts {
        cookie: true,
        ..GET
    };
    let now = SystemTime::UNIX_EPOCH + secs(1_000_000);
    let lm = httpdate::fmt_http_date(now - secs(3600));
    let exp = httpdate::fmt_http_date(now + secs(60));
    let try_h = |pairs: &[(http::header::HeaderName, &str)]| {
        storability(
            cookie,
            StatusCode::OK,
            &hdrs(pairs),
            TTL,
            now,
            Duration::ZERO,
        )
    };
    for refused in [
        &[][..],
        &[(LAST_MODIFIED, lm.as_str())],
        &[(CACHE_CONTROL, "max-age=60")],
        &[(EXPIRES, exp.as_str())],
        &[(CACHE_CONTROL, "must-revalidate, max-age=60")],
    ] {
        assert_eq!(try_h(refused), Err(NotStorable::Cookie), "{refused:?}");
    }
    assert_eq!(
        try_h(&[(CACHE_CONTROL, "public, max-age=60")])
            .unwrap()
            .lifetime,
        secs(60)
    );
    assert_eq!(
        try_h(&[(CACHE_CONTROL, "s-maxage=30")]).unwrap().lifetime,
        secs(30)
    );
    assert_eq!(try_h(&[(CACHE_CONTROL, "public")]).unwrap().lifetime, TTL);
    // The other refusals keep their reasons.
    assert_eq!(
        try_h(&[(CACHE_CONTROL, "public, max-age=60"), (SET_COOKIE, "a=b")]),
        Err(NotStorable::SetCookie)
    );
    assert_eq!(
        try_h(&[(CACHE_CONTROL, "private, s-maxage=60")]),
        Err(NotStorable::Private)
    );
    // Without the cookie the same heuristic response is stored.
    assert_eq!(store(200, &[(LAST_MODIFIED, &lm)]).unwrap().lifetime, TTL);
}

#[test]
fn refusals_about_the_requester_keep_the_stored_copy() {
    for r in [
        NotStorable::Authorization,
        NotStorable::Cookie,
        NotStorable::RequestNoStore,
    ] {
        assert!(!r.replaces_stored(), "{r:?}");
    }
    for r in [
        NotStorable::Method,
        NotStorable::Status,
        NotStorable::NoStore,
        NotStorable::Private,
        NotStorable::SetCookie,
        NotStorable::VaryStar,
        NotStorable::NoFreshness,
    ] {
        assert!(r.replaces_stored(), "{r:?}");
    }
}

fn cookie_headers(fields: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for f in fields {
        h.append(COOKIE, f.parse().unwrap());
    }
    h
}

#[test]
fn which_cookies_make_a_request_private() {
    let default = CacheConfig::default();
    let private = |fields: &[&str], c: &CacheConfig| private_cookie(&cookie_headers(fields), c);
    assert!(!private(&[], &default));
    assert!(
        !private(&[""], &default),
        "an empty field carries no cookie"
    );
    assert!(!private(&[" ; ;"], &default));
    assert!(private(&["session=alice"], &default));
    assert!(
        private(&["flag"], &default),
        "a pair without '=' is still a cookie"
    );
    assert!(
        private(&["a=1", "b=2"], &default),
        "h2 splits cookies into fields"
    );

    let ignoring = CacheConfig {
        ignore_cookies: vec!["_gid".into(), "_ga*".into()],
        ..CacheConfig::default()
    };
    assert!(!private(&["_ga=1; _gid=2"], &ignoring));
    assert!(!private(&["_ga_ABC123=1", " _gid = 2 "], &ignoring));
    assert!(private(&["_ga=1; session=alice"], &ignoring));
    assert!(private(&["_ga=1", "session=alice"], &ignoring));
    assert!(
        private(&["_gidx=1"], &ignoring),
        "without '*' the name is exact"
    );
    assert!(
        private(&["_GID=1"], &ignoring),
        "cookie names are case-sensitive"
    );

    let off = CacheConfig {
        cookie_requests_private: false,
        ..CacheConfig::default()
    };
    assert!(!private(&["session=alice"], &off));
    let facts = RequestFacts::of(
        &http::Method::GET,
        &cookie_headers(&["session=alice"]),
        &RequestDirectives::default(),
        &default,
    );
    assert!(facts.cookie && facts.is_get && !facts.authorization);
}

#[test]
fn no_cache_needs_validators_and_forbids_stale() {
    assert_eq!(
        store(200, &[(CACHE_CONTROL, "no-cache")]),
        Err(NotStorable::NoFreshness)
    );
    let f = store(
        200,
        &[(CACHE_CONTROL, "no-cache, max-age=60"), (ETAG, "\"a\"")],
    )
    .unwrap();
    assert_eq!(f.lifetime, Duration::ZERO);
    assert!(f.forbid_stale);
    assert_eq!(f.error_window(secs(60)), None);
}

#[test]
fn initial_age_from_age_header_date_and_delay() {
    let now = SystemTime::UNIX_EPOCH + secs(1_000_000);
    let date = httpdate::fmt_http_date(now - secs(7));
    let h = hdrs(&[(AGE, "3"), (DATE, &date)]);
    let f = storability(GET, StatusCode::OK, &h, TTL, now, Duration::ZERO).unwrap();
    assert_eq!(f.initial_age, secs(7));
    let h = hdrs(&[(AGE, "30"), (DATE, &date)]);
    let f = storability(GET, StatusCode::OK, &h, TTL, now, secs(2)).unwrap();
    assert_eq!(f.initial_age, secs(32));
}

#[test]
fn classify_table() {
    let f = store(
        200,
        &[(CACHE_CONTROL, "max-age=10, stale-while-revalidate=5")],
    )
    .unwrap();
    let none = RequestDirectives::default();
    let locked = UpdateStrategy::Locked;
    assert_eq!(classify(&f, secs(9), &none, locked, secs(0)), Action::Hit);
    assert_eq!(
        classify(&f, secs(12), &none, locked, secs(0)),
        Action::ServeStaleAndRefresh
    );
    assert_eq!(
        classify(&f, secs(16), &none, locked, secs(0)),
        Action::Revalidate
    );
    // Shadowed: the configured shadow TTL widens the update window.
    assert_eq!(
        classify(&f, secs(16), &none, UpdateStrategy::Shadowed, secs(60)),
        Action::ServeStaleAndRefresh
    );
    let no_cache = RequestDirectives {
        no_cache: true,
        ..none.clone()
    };
    assert_eq!(
        classify(&f, secs(1), &no_cache, locked, secs(0)),
        Action::Revalidate
    );
    let max_age = RequestDirectives {
        max_age: Some(secs(2)),
        ..none.clone()
    };
    assert_eq!(
        classify(&f, secs(3), &max_age, locked, secs(0)),
        Action::Revalidate
    );
    let min_fresh = RequestDirectives {
        min_fresh: Some(secs(5)),
        ..none.clone()
    };
    assert_eq!(
        classify(&f, secs(6), &min_fresh, locked, secs(0)),
        Action::Revalidate
    );
    assert_eq!(
        classify(&f, secs(4), &min_fresh, locked, secs(0)),
        Action::Hit
    );
    let max_stale = RequestDirectives {
        max_stale: Some(Some(secs(100))),
        ..none.clone()
    };
    assert_eq!(
        classify(&f, secs(50), &max_stale, locked, secs(0)),
        Action::ServeStale
    );
    let mr = store(200, &[(CACHE_CONTROL, "max-age=10, must-revalidate")]).unwrap();
    assert_eq!(
        classify(&mr, secs(50), &max_stale, locked, secs(0)),
        Action::Revalidate
    );
}

fn arb_freshness() -> impl Strategy<Value = Freshness> {
    (
        0u64..1000,
        0u64..100,
        proptest::option::of(0u64..100),
        proptest::option::of(0u64..100),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(lifetime, initial_age, swr, sie, forbid_stale, implied)| Freshness {
                lifetime: secs(lifetime),
                initial_age: secs(initial_age),
                stale_while_revalidate: swr.map(secs),
                stale_if_error: sie.map(secs),
                forbid_stale,
                implied_revalidate: implied,
            },
        )
}

fn arb_request() -> impl Strategy<Value = RequestDirectives> {
    (
        any::<bool>(),
        proptest::option::of(0u64..1000),
        proptest::option::of(proptest::option::of(0u64..1000)),
        proptest::option::of(0u64..1000),
    )
        .prop_map(
            |(no_cache, max_age, max_stale, min_fresh)| RequestDirectives {
                no_cache,
                max_age: max_age.map(secs),
                max_stale: max_stale.map(|m| m.map(secs)),
                min_fresh: min_fresh.map(secs),
                ..RequestDirectives::default()
            },
        )
}

proptest! {
    /// Stale-forbidding responses are never served stale, by any path.
    #[test]
    fn forbid_stale_is_never_served_stale(f in arb_freshness(), r in arb_request(), age in 0u64..3000, shadow in 0u64..200) {
        let shadowed = UpdateStrategy::Shadowed;
        let action = classify(&f, secs(age), &r, shadowed, secs(shadow));
        if f.forbid_stale {
            prop_assert!(matches!(action, Action::Hit | Action::Revalidate));
            prop_assert_eq!(f.may_serve_on_error(secs(age), secs(shadow)), None);
        }
        // A hit is always genuinely fresh and within the client's limits.
        if action == Action::Hit {
            prop_assert!(secs(age) < f.lifetime);
            prop_assert!(!r.no_cache);
            prop_assert!(r.max_age.is_none_or(|m| secs(age) <= m));
        }
    }

    /// Without request directives, a fresh variant is a hit and a stale one never is; and
    /// serving stale while refreshing stays inside the update window.
    #[test]
    fn plain_requests_follow_the_windows(f in arb_freshness(), age in 0u64..3000, shadow in 0u64..200, shadowed: bool) {
        let strategy = if shadowed { UpdateStrategy::Shadowed } else { UpdateStrategy::Locked };
        let r = RequestDirectives::default();
        let action = classify(&f, secs(age), &r, strategy, secs(shadow));
        prop_assert_eq!(action == Action::Hit, secs(age) < f.lifetime);
        if action == Action::ServeStaleAndRefresh {
            prop_assert!(secs(age) - f.lifetime < f.update_window(strategy, secs(shadow)));
        }
        prop_assert!(action != Action::ServeStale);
    }

    /// The error window only grows with the shadow TTL, and retention covers every window.
    #[test]
    fn retention_covers_windows(f in arb_freshness(), shadow in 0u64..200, keep in 0u64..200) {
        let r = f.retention(secs(shadow), secs(keep), true);
        let fresh_left = f.lifetime.saturating_sub(f.initial_age);
        if let Some(w) = f.error_window(secs(shadow)) {
            prop_assert!(fresh_left + w <= r);
            prop_assert!(f.error_window(secs(shadow + 1)).unwrap() >= w);
        }
        prop_assert!(fresh_left + f.update_window(UpdateStrategy::Shadowed, secs(shadow)) <= r);
        prop_assert!(fresh_left + secs(keep) <= r);
    }

    /// Storability: max-age always wins over the default TTL, for any storable status.
    #[test]
    fn explicit_max_age_is_the_lifetime(max_age in 1u64..100_000, status in prop::sample::select(vec![200u16, 203, 204, 301, 302, 307, 404, 410, 500])) {
        let cc = format!("max-age={max_age}");
        let f = store(status, &[(CACHE_CONTROL, &cc)]).unwrap();
        prop_assert_eq!(f.lifetime, secs(max_age));
        prop_assert_eq!(f.initial_age, Duration::ZERO);
    }
}
