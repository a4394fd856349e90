//! Freshness math for a shared cache (RFC 9111 §3, §4.2, §4.2.4; RFC 5861): pure functions.
//!
//! `storability` decides at response time whether a response may be stored and computes its
//! [`Freshness`]; `classify` decides at lookup time what to do with a stored variant of a given
//! age for a given request. Neither reads a clock: callers pass the wall-clock time (for `Date`
//! and `Expires`) and the age, so the rules are property-tested without time.

use std::time::{Duration, SystemTime};

use http::header::{AGE, AUTHORIZATION, COOKIE, DATE, ETAG, EXPIRES, LAST_MODIFIED, SET_COOKIE};
use http::{HeaderMap, Method, StatusCode};

use crate::config::{CacheConfig, UpdateStrategy};
use crate::directives::{RequestDirectives, ResponseDirectives};

/// Why a response was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotStorable {
    /// Only GET responses are stored.
    Method,
    /// The status is not storable, or has no explicit freshness and is not heuristically
    /// cacheable (RFC 9110 §15.1).
    Status,
    /// `Cache-Control: no-store` on the response.
    NoStore,
    /// `Cache-Control: no-store` on the request.
    RequestNoStore,
    /// `Cache-Control: private`.
    Private,
    /// The request had `Authorization` and the response no `public`, `s-maxage` or
    /// `must-revalidate` (RFC 9111 §3.5).
    Authorization,
    /// The request carried a cookie and the response no `public` or `s-maxage`
    /// ([`CacheConfig::cookie_requests_private`]).
    Cookie,
    /// The response sets a cookie.
    SetCookie,
    /// `Vary: *`, or a `Vary` that does not parse.
    VaryStar,
    /// Nothing to serve later: no lifetime, no validator, no stale window.
    NoFreshness,
}

impl NotStorable {
    /// Whether the refusal is about this response as a representation of the resource (so it
    /// replaces a stored copy), rather than about who asked for it. A response to one user's
    /// `Cookie`, `Authorization` or `no-store` request says nothing about the copy everyone
    /// else gets; letting it drop that copy would let any client evict any object.
    pub(crate) fn replaces_stored(self) -> bool {
        !matches!(
            self,
            Self::Authorization | Self::Cookie | Self::RequestNoStore
        )
    }
}

/// Freshness facts of a stored response, fixed when it is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Freshness {
    /// Freshness lifetime (§4.2.1), or the default TTL as the heuristic (§4.2.2).
    pub(crate) lifetime: Duration,
    /// Corrected initial age (§4.2.3), to which the resident time is added.
    pub(crate) initial_age: Duration,
    /// `stale-while-revalidate`, if the response set it.
    pub(crate) stale_while_revalidate: Option<Duration>,
    /// `stale-if-error`, if the response set it.
    pub(crate) stale_if_error: Option<Duration>,
    /// `must-revalidate`, `proxy-revalidate` or `no-cache`: never served stale.
    pub(crate) forbid_stale: bool,
    /// `s-maxage` implies `proxy-revalidate` (§5.2.2.10): the configured windows do not apply,
    /// only the response's own `stale-*` directives.
    pub(crate) implied_revalidate: bool,
}

/// What the request looks like, as far as storing its response is concerned.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestFacts {
    pub(crate) is_get: bool,
    pub(crate) authorization: bool,
    /// A cookie that makes the request private (see [`private_cookie`]).
    pub(crate) cookie: bool,
    pub(crate) no_store: bool,
}

impl RequestFacts {
    /// Whether a response to this request may be stored only if it is explicitly shared (or
    /// not at all): it carries a cookie or `Authorization`, or asks for `no-store`.
    pub(crate) fn private(&self) -> bool {
        self.authorization || self.cookie || self.no_store
    }
}

/// Status codes that are cacheable by default (RFC 9110 §15.1), minus 206 (no range support).
pub(crate) fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

impl RequestFacts {
    pub(crate) fn of(
        method: &Method,
        headers: &HeaderMap,
        directives: &RequestDirectives,
        config: &CacheConfig,
    ) -> Self {
        Self {
            is_get: method == Method::GET,
            authorization: headers.contains_key(AUTHORIZATION),
            cookie: private_cookie(headers, config),
            no_store: directives.no_store,
        }
    }
}

/// Whether the request carries a cookie that makes it private: with
/// [`CacheConfig::cookie_requests_private`], any `name=value` pair in any `Cookie` field whose
/// name is not in [`CacheConfig::ignore_cookies`]. An empty `Cookie` field carries none.
pub(crate) fn private_cookie(headers: &HeaderMap, config: &CacheConfig) -> bool {
    if !config.cookie_requests_private {
        return false;
    }
    headers.get_all(COOKIE).iter().any(|field| {
        field.as_bytes().split(|&b| b == b';').any(|pair| {
            let pair = pair.trim_ascii();
            let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
            !pair.is_empty() && !ignored_cookie(name.trim_ascii(), &config.ignore_cookies)
        })
    })
}

fn ignored_cookie(name: &[u8], ignore: &[String]) -> bool {
    ignore
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix.as_bytes()),
            None => name == pattern.as_bytes(),
        })
}

fn header_date(headers: &HeaderMap, name: http::header::HeaderName) -> Option<SystemTime> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok())
}

/// Decides whether a response may be stored and, if so, its freshness.
///
/// `now` is the wall-clock time the response arrived; `response_delay` how long the upstream
/// took to answer (both for §4.2.3). `default_ttl` is the heuristic lifetime used only where
/// RFC 9111 §4.2.2 allows one: no explicit expiry, and a heuristically cacheable status or
/// `public`. A zero default TTL disables heuristics.
pub(crate) fn storability(
    req: RequestFacts,
    status: StatusCode,
    headers: &HeaderMap,
    default_ttl: Duration,
    now: SystemTime,
    response_delay: Duration,
) -> Result<Freshness, NotStorable> {
    if !req.is_get {
        return Err(NotStorable::Method);
    }
    let d = ResponseDirectives::parse(headers);
    if d.no_store {
        return Err(NotStorable::NoStore);
    }
    if req.no_store {
        return Err(NotStorable::RequestNoStore);
    }
    if d.private {
        return Err(NotStorable::Private);
    }
    if req.authorization && !(d.public || d.s_maxage.is_some() || d.must_revalidate) {
        return Err(NotStorable::Authorization);
    }
    // Not an RFC rule: Varnish's builtin VCL passes every request with a cookie. Stricter than
    // the Authorization rule: `must-revalidate` does not mark a response as meant for others,
    // and frameworks put plain `max-age` on personalised pages as readily as on assets.
    if req.cookie && !(d.public || d.s_maxage.is_some()) {
        return Err(NotStorable::Cookie);
    }
    if headers.contains_key(SET_COOKIE) {
        return Err(NotStorable::SetCookie);
    }
    if crate::vary::vary_names(headers).is_none() {
        return Err(NotStorable::VaryStar);
    }
    // Informational, 206 (no range support) and 304 (handled as a revalidation) are never
    // stored as objects.
    if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Err(NotStorable::Status);
    }

    let date = header_date(headers, DATE);
    let explicit = d.s_maxage.or(d.max_age).or_else(|| {
        if !headers.contains_key(EXPIRES) {
            return None;
        }
        // An invalid Expires (e.g. "0") means already expired (§5.3).
        Some(header_date(headers, EXPIRES).map_or(Duration::ZERO, |exp| {
            exp.duration_since(date.unwrap_or(now))
                .unwrap_or(Duration::ZERO)
        }))
    });
    let lifetime = match explicit {
        Some(l) => l,
        None if (heuristically_cacheable(status) || d.public) && !default_ttl.is_zero() => {
            default_ttl
        }
        None if heuristically_cacheable(status) => Duration::ZERO,
        None => return Err(NotStorable::Status),
    };
    let lifetime = if d.no_cache { Duration::ZERO } else { lifetime };

    let has_validator = headers.contains_key(ETAG) || headers.contains_key(LAST_MODIFIED);
    let has_window = d.stale_if_error.is_some_and(|w| !w.is_zero())
        || d.stale_while_revalidate.is_some_and(|w| !w.is_zero());
    let forbid_stale = d.must_revalidate || d.proxy_revalidate || d.no_cache;
    if lifetime.is_zero() && !has_validator && (forbid_stale || !has_window) {
        return Err(NotStorable::NoFreshness);
    }

    let age_value = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let apparent_age = date.map_or(Duration::ZERO, |date| {
        now.duration_since(date).unwrap_or(Duration::ZERO)
    });
    let initial_age = apparent_age.max(age_value + response_delay);

    Ok(Freshness {
        lifetime,
        initial_age,
        stale_while_revalidate: d.stale_while_revalidate,
        stale_if_error: d.stale_if_error,
        forbid_stale,
        implied_revalidate: d.s_maxage.is_some(),
    })
}

/// What to do with a stored variant for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Fresh enough for this request: serve it.
    Hit,
    /// Stale, but the request's `max-stale` accepts it: serve it.
    ServeStale,
    /// Stale within the update window: serve it and refresh it in the background.
    ServeStaleAndRefresh,
    /// Go upstream (conditionally, if it has validators).
    Revalidate,
}

// === impl Freshness ===

impl Freshness {
    /// The age of the variant after `resident` time in the cache (§4.2.3).
    pub(crate) fn age(&self, resident: Duration) -> Duration {
        self.initial_age + resident
    }

    /// How long a stale copy may be served while one refresh runs.
    pub(crate) fn update_window(&self, strategy: UpdateStrategy, shadow_ttl: Duration) -> Duration {
        if self.forbid_stale {
            return Duration::ZERO;
        }
        let configured = match strategy {
            UpdateStrategy::Shadowed if !self.implied_revalidate => shadow_ttl,
            _ => Duration::ZERO,
        };
        self.stale_while_revalidate
            .unwrap_or_default()
            .max(configured)
    }

    /// How long a stale copy may be served when the upstream fails, or `None` when the
    /// response forbids it (must-revalidate and friends).
    pub(crate) fn error_window(&self, shadow_ttl: Duration) -> Option<Duration> {
        if self.forbid_stale {
            return None;
        }
        let configured = if self.implied_revalidate {
            Duration::ZERO
        } else {
            shadow_ttl
        };
        Some(self.stale_if_error.unwrap_or_default().max(configured))
    }

    /// Whether a variant of this `age` may be served stale after an upstream failure.
    pub(crate) fn may_serve_on_error(&self, age: Duration, shadow_ttl: Duration) -> Option<bool> {
        let window = self.error_window(shadow_ttl)?;
        Some(age.saturating_sub(self.lifetime) <= window)
    }

    /// How long after storing the variant is worth keeping at all.
    pub(crate) fn retention(
        &self,
        shadow_ttl: Duration,
        keep: Duration,
        validators: bool,
    ) -> Duration {
        let fresh_left = self.lifetime.saturating_sub(self.initial_age);
        let swr = self.stale_while_revalidate.unwrap_or_default();
        let sie = self.stale_if_error.unwrap_or_default();
        let keep = if validators { keep } else { Duration::ZERO };
        fresh_left + swr.max(sie).max(shadow_ttl).max(keep)
    }
}

/// Decides how to use a stored variant of `age` for a request with `req` directives.
pub(crate) fn classify(
    f: &Freshness,
    age: Duration,
    req: &RequestDirectives,
    strategy: UpdateStrategy,
    shadow_ttl: Duration,
) -> Action {
    if req.no_cache {
        return Action::Revalidate;
    }
    let fresh = age < f.lifetime;
    if fresh {
        let young_enough = req.max_age.is_none_or(|m| age <= m);
        let lasts = req.min_fresh.is_none_or(|m| f.lifetime - age >= m);
        return if young_enough && lasts {
            Action::Hit
        } else {
            Action::Revalidate
        };
    }
    let staleness = age - f.lifetime;
    if f.forbid_stale {
        return Action::Revalidate;
    }
    match req.max_stale {
        Some(None) => return Action::ServeStale,
        Some(Some(limit)) if staleness <= limit => return Action::ServeStale,
        _ => {}
    }
    if req.max_age.is_none()
        && req.min_fresh.is_none()
        && staleness < f.update_window(strategy, shadow_ttl)
    {
        return Action::ServeStaleAndRefresh;
    }
    Action::Revalidate
}

#[cfg(test)]
mod tests;
