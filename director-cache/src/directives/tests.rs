use std::time::Duration;

use http::HeaderMap;
use http::header::{CACHE_CONTROL, PRAGMA};
use proptest::prelude::*;

use super::*;

fn headers(lines: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for l in lines {
        h.append(CACHE_CONTROL, l.parse().unwrap());
    }
    h
}

#[test]
fn response_directives_across_lines() {
    let d = ResponseDirectives::parse(&headers(&[
        "Public, MAX-AGE=60",
        "s-maxage=\"120\", stale-while-revalidate=30",
        "must-revalidate, stale-if-error=5, no-cache=\"Set-Cookie, X-Foo\", private",
    ]));
    assert!(d.public && d.must_revalidate && d.no_cache && d.private);
    assert_eq!(d.max_age, Some(Duration::from_secs(60)));
    assert_eq!(d.s_maxage, Some(Duration::from_secs(120)));
    assert_eq!(d.stale_while_revalidate, Some(Duration::from_secs(30)));
    assert_eq!(d.stale_if_error, Some(Duration::from_secs(5)));
    assert!(!d.no_store && !d.proxy_revalidate);
}

#[test]
fn malformed_max_age_counts_as_zero_and_first_wins() {
    let d = ResponseDirectives::parse(&headers(&["max-age=abc, max-age=60"]));
    assert_eq!(d.max_age, Some(Duration::ZERO));
    let d = ResponseDirectives::parse(&headers(&["max-age=99999999999999999999"]));
    assert_eq!(d.max_age, Some(Duration::from_secs(1 << 31)));
}

#[test]
fn request_directives() {
    let d = RequestDirectives::parse(&headers(&["max-stale, min-fresh=3, only-if-cached"]));
    assert_eq!(d.max_stale, Some(None));
    assert_eq!(d.min_fresh, Some(Duration::from_secs(3)));
    assert!(d.only_if_cached && !d.no_cache);
    let d = RequestDirectives::parse(&headers(&["max-stale=7, no-store, max-age=0"]));
    assert_eq!(d.max_stale, Some(Some(Duration::from_secs(7))));
    assert_eq!(d.max_age, Some(Duration::ZERO));
    assert!(d.no_store);
}

#[test]
fn pragma_only_without_cache_control() {
    let mut h = HeaderMap::new();
    h.insert(PRAGMA, "no-cache".parse().unwrap());
    assert!(RequestDirectives::parse(&h).no_cache);
    h.insert(CACHE_CONTROL, "max-age=5".parse().unwrap());
    assert!(!RequestDirectives::parse(&h).no_cache);
    assert!(RequestDirectives::parse(&HeaderMap::new()).is_empty());
}

proptest! {
    /// Rendering a directive set and parsing it back gives the same set, whatever the case and
    /// spacing, and a quoted unknown extension with commas inside does not disturb it.
    #[test]
    fn response_round_trip(
        no_store: bool, private: bool, public: bool, must_revalidate: bool,
        max_age in proptest::option::of(0u64..100_000),
        s_maxage in proptest::option::of(0u64..100_000),
        swr in proptest::option::of(0u64..100_000),
        upper: bool, spaces in 0usize..3,
    ) {
        let mut parts = vec!["ext=\"a, b, no-store\"".to_string()];
        if no_store { parts.push("no-store".into()); }
        if private { parts.push("private".into()); }
        if public { parts.push("public".into()); }
        if must_revalidate { parts.push("must-revalidate".into()); }
        if let Some(v) = max_age { parts.push(format!("max-age={v}")); }
        if let Some(v) = s_maxage { parts.push(format!("s-maxage=\"{v}\"")); }
        if let Some(v) = swr { parts.push(format!("stale-while-revalidate={v}")); }
        let sep = format!(",{}", " ".repeat(spaces));
        let mut line = parts.join(&sep);
        if upper { line = line.to_uppercase(); }
        let d = ResponseDirectives::parse(&headers(&[&line]));
        prop_assert_eq!(d.no_store, no_store);
        prop_assert_eq!(d.private, private);
        prop_assert_eq!(d.public, public);
        prop_assert_eq!(d.must_revalidate, must_revalidate);
        prop_assert_eq!(d.max_age, max_age.map(Duration::from_secs));
        prop_assert_eq!(d.s_maxage, s_maxage.map(Duration::from_secs));
        prop_assert_eq!(d.stale_while_revalidate, swr.map(Duration::from_secs));
    }

    /// The parser never panics on arbitrary visible ASCII.
    #[test]
    fn parse_never_panics(s in "[ -~]{0,64}") {
        if let Ok(v) = s.parse() {
            let mut h = HeaderMap::new();
            h.insert(CACHE_CONTROL, v);
            let _ = ResponseDirectives::parse(&h);
            let _ = RequestDirectives::parse(&h);
        }
    }
}
