//! `Cache-Control` parsing (RFC 9111 §5.2), for requests and for responses.
//!
//! Pure and allocation-light: the parser walks every `Cache-Control` field line, splits on
//! commas outside quoted strings, and fills a small struct. Unknown directives are ignored, as
//! RFC 9111 §5.2.3 requires. A delta-seconds value that does not parse makes the directive count
//! as zero (for `max-age`/`s-maxage` that means "stale", the safe reading of §4.2.1).

use std::time::Duration;

use http::HeaderMap;
use http::header::{CACHE_CONTROL, PRAGMA};

/// Largest delta-seconds we keep; RFC 9111 §1.2.2 lets caches cap at 2^31.
const DELTA_CAP: u64 = 1 << 31;

/// The response directives a shared cache acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    /// `no-store`: never store.
    pub no_store: bool,
    /// `no-cache` (qualified or not): store, but revalidate before every use.
    pub no_cache: bool,
    /// `private` (qualified or not): a shared cache does not store it.
    pub private: bool,
    /// `public`: storable even where it would not be (Authorization, heuristics).
    pub public: bool,
    /// `must-revalidate`: no stale serving once stale.
    pub must_revalidate: bool,
    /// `proxy-revalidate`: `must-revalidate` for shared caches.
    pub proxy_revalidate: bool,
    /// `max-age`.
    pub max_age: Option<Duration>,
    /// `s-maxage`: the shared-cache lifetime; implies `proxy-revalidate` (§5.2.2.10).
    pub s_maxage: Option<Duration>,
    /// `stale-while-revalidate` (RFC 5861 §3).
    pub stale_while_revalidate: Option<Duration>,
    /// `stale-if-error` (RFC 5861 §4).
    pub stale_if_error: Option<Duration>,
}

/// The request directives a cache honours.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `no-cache` (or `Pragma: no-cache` without any `Cache-Control`): revalidate upstream.
    pub no_cache: bool,
    /// `no-store`: do not store the response to this request.
    pub no_store: bool,
    /// `max-age`: the client accepts no older response.
    pub max_age: Option<Duration>,
    /// `max-stale`: `Some(None)` accepts any staleness, `Some(Some(d))` up to `d`.
    pub max_stale: Option<Option<Duration>>,
    /// `min-fresh`: the response must stay fresh for at least this long.
    pub min_fresh: Option<Duration>,
    /// `only-if-cached`: answer from the cache or with 504.
    pub only_if_cached: bool,
}

impl ResponseDirectives {
    /// Parses every `Cache-Control` line of a response.
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut d = Self::default();
        for_each_directive(headers, |name, value| {
            let secs = || Some(delta_seconds(value));
            match name {
                "no-store" => d.no_store = true,
                "no-cache" => d.no_cache = true,
                "private" => d.private = true,
                "public" => d.public = true,
                "must-revalidate" => d.must_revalidate = true,
                "proxy-revalidate" => d.proxy_revalidate = true,
                "max-age" => d.max_age = d.max_age.or_else(secs),
                "s-maxage" => d.s_maxage = d.s_maxage.or_else(secs),
                "stale-while-revalidate" => {
                    d.stale_while_revalidate = d.stale_while_revalidate.or_else(secs);
                }
                "stale-if-error" => d.stale_if_error = d.stale_if_error.or_else(secs),
                _ => {}
            }
        });
        d
    }
}

impl RequestDirectives {
    /// Parses every `Cache-Control` line of a request (and `Pragma: no-cache`, §5.4).
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut d = Self::default();
        let mut any = false;
        for_each_directive(headers, |name, value| {
            any = true;
            let secs = || Some(delta_seconds(value));
            match name {
                "no-cache" => d.no_cache = true,
                "no-store" => d.no_store = true,
                "max-age" => d.max_age = d.max_age.or_else(secs),
                "max-stale" if d.max_stale.is_none() => {
                    d.max_stale = Some(value.map(|_| delta_seconds(value)));
                }
                "min-fresh" => d.min_fresh = d.min_fresh.or_else(secs),
                "only-if-cached" => d.only_if_cached = true,
                _ => {}
            }
        });
        if !any {
            d.no_cache = headers.get_all(PRAGMA).iter().any(|v| {
                v.to_str().is_ok_and(|s| {
                    s.split(',')
                        .any(|p| p.trim().eq_ignore_ascii_case("no-cache"))
                })
            });
        }
        d
    }

    /// True when the request carries no directive at all (the common case, checked first).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Parses delta-seconds; a missing or malformed value counts as zero.
fn delta_seconds(value: Option<&str>) -> Duration {
    let secs = value
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .map_or(0, |v| v.parse::<u64>().unwrap_or(DELTA_CAP).min(DELTA_CAP));
    Duration::from_secs(secs)
}

/// Calls `f(lowercased name, unquoted value)` for each directive of each `Cache-Control` line.
fn for_each_directive(headers: &HeaderMap, mut f: impl FnMut(&str, Option<&str>)) {
    for line in headers.get_all(CACHE_CONTROL) {
        let Ok(line) = line.to_str() else { continue };
        for item in split_outside_quotes(line) {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
                None => (item.trim(), None),
            };
            if name.is_empty() {
                continue;
            }
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                f(&name.to_ascii_lowercase(), value);
            } else {
                f(name, value);
            }
        }
    }
}

/// Splits a list on commas that are not inside a quoted string.
fn split_outside_quotes(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let mut in_quotes = false;
        let mut escaped = false;
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_quotes => escaped = true,
                '"' => in_quotes = !in_quotes,
                ',' if !in_quotes => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

#[cfg(test)]
mod tests;
