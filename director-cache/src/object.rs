//! Stored objects: one [`Object`] per key, holding one [`Variant`] per `Vary` combination.
//!
//! A variant is immutable once stored (a refresh stores a new one), so a hit clones one `Arc`
//! and serves `Bytes` clones of the body: no copy. This module also renders deliveries from
//! the cache, with x0's headers (`X-Cache-Lookup`, `X-Cache-Hits`, `Age`) plus `X-Cache`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    AGE, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_LOCATION, DATE, ETAG, EXPIRES,
    LAST_MODIFIED, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING,
    UPGRADE, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use tokio::time::Instant;

use crate::body::CacheBody;
use crate::conditional::Preconditions;
use crate::policy::Freshness;
use crate::store::Expiring;
use crate::vary::VaryKey;

/// `X-Cache`: HIT, MISS, STALE, REVALIDATED.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
/// `X-Cache-Lookup`: x0's `miss`, `hit`, `stale`, `stale-updating`.
pub const X_CACHE_LOOKUP: HeaderName = HeaderName::from_static("x-cache-lookup");
/// `X-Cache-Hits`: deliveries of this copy so far.
pub const X_CACHE_HITS: HeaderName = HeaderName::from_static("x-cache-hits");
/// `X-Director-Cache: shadow` marks a stale copy served because the upstream failed.
pub const X_DIRECTOR_CACHE: HeaderName = HeaderName::from_static("x-director-cache");

/// Bookkeeping bytes charged per stored header line on top of its name and value.
pub const HEADER_OVERHEAD: usize =
    std::mem::size_of::<HeaderName>() + std::mem::size_of::<HeaderValue>() + 16;
/// Bookkeeping bytes charged per variant on top of its headers and body.
pub const VARIANT_OVERHEAD: usize = std::mem::size_of::<Variant>() + 16;
/// Bookkeeping bytes charged per key on top of its variants and the key string.
pub const OBJECT_OVERHEAD: usize = std::mem::size_of::<Object>() + 64;

/// One stored response.
#[derive(Debug)]
pub(crate) struct Variant {
    pub(crate) vary: VaryKey,
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) etag: Option<HeaderValue>,
    /// `Last-Modified`, else `Date`: what `If-Modified-Since` is compared with.
    pub(crate) modified: Option<SystemTime>,
    pub(crate) freshness: Freshness,
    pub(crate) stored_at: Instant,
    pub(crate) dies_at: Instant,
    hits: AtomicU64,
    pub(crate) weight: usize,
}

/// All stored variants of one key.
#[derive(Debug)]
pub(crate) struct Object {
    pub(crate) key: String,
    pub(crate) variants: Vec<Arc<Variant>>,
}

/// The headers a cache does not store: hop-by-hop ones (and those `Connection` names), and
/// the ones this cache writes itself.
pub(crate) fn storable_headers(mut headers: HeaderMap) -> HeaderMap {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(&[
        CONNECTION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        CONTENT_LENGTH,
        AGE,
        X_CACHE,
        X_CACHE_LOOKUP,
        X_CACHE_HITS,
        X_DIRECTOR_CACHE,
    ]) {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    // Parsed header values are slices of the connection's read buffer, which may also hold the
    // first body bytes: storing them as they are would pin that whole buffer for the life of
    // the object, outside the budget. Stored values get allocations of their own.
    let mut owned = HeaderMap::with_capacity(headers.len());
    for (name, value) in &headers {
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        owned.append(name.clone(), copy);
    }
    owned
}

/// Stored headers updated by a 304's headers (RFC 9111 §3.2).
pub(crate) fn merge_headers(stored: &HeaderMap, fresh: &HeaderMap) -> HeaderMap {
    let mut merged = stored.clone();
    let fresh = storable_headers(fresh.clone());
    for name in fresh.keys() {
        merged.remove(name);
    }
    for (name, value) in &fresh {
        merged.append(name.clone(), value.clone());
    }
    merged
}

fn headers_weight(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + HEADER_OVERHEAD)
        .sum()
}

// === impl Variant ===

impl Variant {
    /// Builds a variant from stored headers; `received_at` is when the response arrived.
    pub(crate) fn new(
        vary: VaryKey,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        freshness: Freshness,
        received_at: Instant,
        retention: Duration,
    ) -> Self {
        let etag = headers.get(ETAG).cloned();
        let date = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .and_then(|s| httpdate::parse_http_date(s).ok())
        };
        let modified = date(LAST_MODIFIED).or_else(|| date(DATE));
        let weight = VARIANT_OVERHEAD + vary.weight() + headers_weight(&headers) + body.len();
        Self {
            vary,
            status,
            headers,
            body,
            etag,
            modified,
            freshness,
            stored_at: received_at,
            dies_at: received_at + retention,
            hits: AtomicU64::new(0),
            weight,
        }
    }

    /// Whether a conditional request can revalidate this variant.
    pub(crate) fn has_validators(&self) -> bool {
        self.etag.is_some() || self.headers.contains_key(LAST_MODIFIED)
    }

    /// Current age (RFC 9111 §4.2.3).
    pub(crate) fn age(&self, now: Instant) -> Duration {
        self.freshness
            .age(now.saturating_duration_since(self.stored_at))
    }

    /// Renders a delivery of this variant.
    pub(crate) fn deliver<B>(&self, now: Instant, how: &Delivery<'_>) -> Response<CacheBody<B>> {
        let hits = self.hits.fetch_add(1, Relaxed) + 1;
        let answer = if self.status.is_success() {
            how.preconditions
                .and_then(|p| p.evaluate(self.etag.as_ref(), self.modified))
        } else {
            None
        };
        let (status, mut headers, body) = match answer {
            Some(status) => {
                let mut h = HeaderMap::new();
                for name in [
                    CACHE_CONTROL,
                    CONTENT_LOCATION,
                    DATE,
                    ETAG,
                    EXPIRES,
                    VARY,
                    LAST_MODIFIED,
                ] {
                    for v in self.headers.get_all(&name) {
                        h.append(name.clone(), v.clone());
                    }
                }
                (status, h, CacheBody::empty())
            }
            None => {
                let mut h = self.headers.clone();
                if self.status != StatusCode::NO_CONTENT && !self.status.is_informational() {
                    h.insert(CONTENT_LENGTH, HeaderValue::from(self.body.len()));
                }
                let body = if how.head || self.body.is_empty() {
                    CacheBody::empty()
                } else {
                    CacheBody::full(self.body.clone())
                };
                (self.status, h, body)
            }
        };
        headers.insert(X_CACHE, HeaderValue::from_static(how.x_cache));
        headers.insert(X_CACHE_LOOKUP, HeaderValue::from_static(how.lookup));
        headers.insert(X_CACHE_HITS, HeaderValue::from(hits));
        headers.insert(AGE, HeaderValue::from(self.age(now).as_secs()));
        if how.shadow {
            headers.insert(X_DIRECTOR_CACHE, HeaderValue::from_static("shadow"));
        }
        let mut res = Response::new(body);
        *res.status_mut() = status;
        *res.headers_mut() = headers;
        res
    }
}

/// How a delivery from the cache is labelled.
#[derive(Debug)]
pub(crate) struct Delivery<'a> {
    pub(crate) x_cache: &'static str,
    pub(crate) lookup: &'static str,
    pub(crate) shadow: bool,
    pub(crate) head: bool,
    pub(crate) preconditions: Option<&'a Preconditions>,
}

impl<'a> Delivery<'a> {
    pub(crate) fn hit(head: bool, pre: Option<&'a Preconditions>) -> Self {
        Self {
            x_cache: "HIT",
            lookup: "hit",
            shadow: false,
            head,
            preconditions: pre,
        }
    }

    pub(crate) fn stale(head: bool, pre: Option<&'a Preconditions>, updating: bool) -> Self {
        Self {
            x_cache: "STALE",
            lookup: if updating { "stale-updating" } else { "stale" },
            shadow: false,
            head,
            preconditions: pre,
        }
    }
}

// === impl Object ===

impl Object {
    /// The newest live variant the request selects.
    pub(crate) fn select(&self, request: &HeaderMap, now: Instant) -> Option<&Arc<Variant>> {
        self.variants
            .iter()
            .rev()
            .find(|v| v.dies_at > now && v.vary.matches(request))
    }

    /// This object with `new` stored: replaces the variant with the same `Vary` values, drops
    /// dead ones and ones varying on other headers (the resource changed its `Vary`), and keeps
    /// at most `max_variants`.
    pub(crate) fn with_variant(
        old: Option<&Self>,
        key: &str,
        new: Arc<Variant>,
        max_variants: usize,
        now: Instant,
    ) -> Self {
        let mut variants: Vec<Arc<Variant>> = old
            .map(|o| {
                o.variants
                    .iter()
                    .filter(|v| {
                        v.dies_at > now && v.vary.same_names(&new.vary) && v.vary != new.vary
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        variants.push(new);
        let excess = variants.len().saturating_sub(max_variants.max(1));
        variants.drain(..excess);
        Self {
            key: old.map_or_else(|| key.to_owned(), |o| o.key.clone()),
            variants,
        }
    }

    /// This object without the variant stored under `vary`, or `None` if nothing is left.
    pub(crate) fn without(&self, vary: &VaryKey) -> Option<Self> {
        let variants: Vec<_> = self
            .variants
            .iter()
            .filter(|v| v.vary != *vary)
            .cloned()
            .collect();
        (!variants.is_empty()).then(|| Self {
            key: self.key.clone(),
            variants,
        })
    }

    /// The bytes this object is charged in the store.
    pub(crate) fn weight(&self) -> usize {
        OBJECT_OVERHEAD + self.key.len() + self.variants.iter().map(|v| v.weight).sum::<usize>()
    }
}

impl Expiring for Object {
    fn is_expired(&self, now: Instant) -> bool {
        self.variants.iter().all(|v| v.dies_at <= now)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Empty};

    use super::*;

    fn variant(body: Bytes, headers: HeaderMap) -> Variant {
        let freshness = Freshness {
            lifetime: Duration::from_secs(10),
            initial_age: Duration::from_secs(2),
            stale_while_revalidate: None,
            stale_if_error: None,
            forbid_stale: false,
            implied_revalidate: false,
        };
        let now = Instant::now();
        Variant::new(
            VaryKey::default(),
            StatusCode::OK,
            headers,
            body,
            freshness,
            now,
            Duration::from_secs(60),
        )
    }

    #[tokio::test]
    async fn hits_share_the_stored_bytes() {
        let body = Bytes::from(vec![7u8; 4096]);
        let v = variant(body.clone(), HeaderMap::new());
        for hits in 1..=2u64 {
            let res: Response<CacheBody<Empty<Bytes>>> =
                v.deliver(Instant::now(), &Delivery::hit(false, None));
            assert_eq!(res.headers()[X_CACHE_HITS], hits.to_string().as_str());
            assert_eq!(res.headers()[CONTENT_LENGTH], "4096");
            assert_eq!(res.headers()[AGE], "2", "initial age counts");
            let data = res
                .into_body()
                .frame()
                .await
                .unwrap()
                .unwrap()
                .into_data()
                .unwrap();
            assert_eq!(data.as_ptr(), body.as_ptr(), "served without copying");
        }
    }

    #[test]
    fn stored_headers_drop_hop_by_hop_and_cache_headers() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("x-cache", "HIT"),
            ("age", "10"),
            ("etag", "\"a\""),
        ] {
            h.insert(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let kept = storable_headers(h);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[ETAG], "\"a\"");

        let mut fresh = HeaderMap::new();
        fresh.insert(ETAG, HeaderValue::from_static("\"b\""));
        fresh.insert(CONNECTION, HeaderValue::from_static("close"));
        let merged = merge_headers(&kept, &fresh);
        assert_eq!(merged[ETAG], "\"b\"");
        assert!(!merged.contains_key(CONNECTION));
    }

    #[test]
    fn stored_headers_do_not_pin_the_read_buffer() {
        // As hyper parses them: values are slices of the connection's read buffer.
        let read_buffer = Bytes::from(b"max-age=60 and then a large body...".repeat(1000));
        let mut h = HeaderMap::new();
        let value = HeaderValue::from_maybe_shared(read_buffer.slice(0..10)).unwrap();
        h.insert(CACHE_CONTROL, value);
        let kept = storable_headers(h);
        assert_eq!(kept[CACHE_CONTROL], "max-age=60");
        assert!(
            read_buffer.is_unique(),
            "the stored copy holds no part of the buffer"
        );
    }

    #[test]
    fn weight_counts_body_headers_and_overhead() {
        let mut h = HeaderMap::new();
        h.insert(ETAG, HeaderValue::from_static("\"abc\""));
        let v = variant(Bytes::from_static(b"0123456789"), h);
        assert_eq!(
            v.weight,
            VARIANT_OVERHEAD + 10 + "etag".len() + 5 + HEADER_OVERHEAD
        );
        let o = Object::with_variant(None, "k", Arc::new(v), 4, Instant::now());
        assert_eq!(o.weight(), OBJECT_OVERHEAD + 1 + o.variants[0].weight);
    }
}
