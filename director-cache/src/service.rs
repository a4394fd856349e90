//! [`CacheLayer`] and [`Cache`]: the object cache as Tower middleware.
//!
//! `call` does the lookup synchronously: a fresh hit (or a stale copy that may be served) is
//! answered from a ready future without touching the inner service; that is the hot path, one
//! store lookup and no allocation beyond the response itself. Everything else goes upstream:
//!
//! * **miss** or **stale beyond its update window**: the first request becomes the leader of
//!   a fetch (conditional if the stale copy has validators), and its response streams to its
//!   client while it is captured and stored; other requests for the same object wait for it
//!   (both strategies coalesce misses), up to the lock timeout. When the leader's response was
//!   for it alone (its cookie or `Authorization`), one waiter that could store fetches again
//!   for the rest.
//! * **stale within its update window** (`shadowed` strategy or `stale-while-revalidate`): the
//!   stale copy is served at once and one background task refreshes it.
//! * **upstream failure** (an error the config classifies as "unavailable", or a 502/503/504
//!   by default): a stale copy within its error window is served, marked
//!   `X-Director-Cache: shadow`; if the copy forbids stale serving (`must-revalidate`) the
//!   answer is 504; with no usable copy the upstream's error or response goes out unchanged.
//!
//! The cache service is always ready: a hit must not wait for an upstream that has no backend.
//! Requests that go upstream clone the inner service and drive its readiness in their own
//! future; a readiness error counts as an upstream failure (shadow delivery applies).
//!
//! `PURGE` is answered by the cache only when the request carries the [`PurgeAllowed`]
//! extension (200 if something was removed, 404 if not); without it the answer is 405, and the
//! request never reaches the inner service. Unsafe methods (POST, PUT, PATCH, DELETE) pass
//! through and invalidate the key when the upstream answers 2xx or 3xx (RFC 9111 §4.4).

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{
    IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED, RANGE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{CacheBody, Capture};
use crate::collapse::{FlightGuard, Join, Outcome, Waiter};
use crate::conditional::Preconditions;
use crate::config::CacheConfig;
use crate::directives::RequestDirectives;
use crate::handle::{CacheHandle, Pending, Shared};
use crate::key::{KeyPattern, hash_key};
use crate::object::{
    Delivery, Variant, X_CACHE, X_CACHE_HITS, X_CACHE_LOOKUP, merge_headers, storable_headers,
};
use crate::policy::{Action, NotStorable, RequestFacts, classify, storability};
use crate::vary::{VaryKey, vary_names};

/// Request extension: this client may `PURGE`. Set it (e.g. from an IP allow-list or on the
/// admin listener) before the request reaches the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeAllowed;

/// Request extension: skip the cache for this request (x0's `director.cache(false)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheBypass;

/// Request extension: the heuristic freshness for this request's response, instead of the
/// configured `default_ttl` (x0's `director.cache.ttl(seconds)`). Explicit expiry in the
/// response still wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultTtl(pub std::time::Duration);

/// A layer that wraps services in a [`Cache`].
#[derive(Clone, Debug)]
pub struct CacheLayer {
    handle: CacheHandle,
}

/// The cache service in front of `S`.
///
/// Always ready; see the module docs for what goes upstream and how failures are answered.
#[derive(Clone, Debug)]
pub struct Cache<S> {
    inner: S,
    handle: CacheHandle,
}

type BoxFuture<B, E> = Pin<Box<dyn Future<Output = Result<Response<CacheBody<B>>, E>> + Send>>;

pin_project! {
    /// The response future of [`Cache`].
    pub struct ResponseFuture<B, E> {
        #[pin]
        state: State<B, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, E> {
        Ready { response: Option<Response<CacheBody<B>>> },
        Boxed { future: BoxFuture<B, E> },
    }
}

// === impl CacheLayer ===

impl CacheLayer {
    /// A layer over the cache behind `handle`.
    pub fn new(handle: CacheHandle) -> Self {
        Self { handle }
    }

    /// The cache this layer uses.
    pub fn handle(&self) -> &CacheHandle {
        &self.handle
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = Cache<S>;

    fn layer(&self, inner: S) -> Cache<S> {
        Cache::new(inner, self.handle.clone())
    }
}

// === impl Cache ===

impl<S> Cache<S> {
    /// Wraps `inner` with the cache behind `handle`.
    pub fn new(inner: S, handle: CacheHandle) -> Self {
        Self { inner, handle }
    }

    /// The cache this service uses.
    pub fn handle(&self) -> &CacheHandle {
        &self.handle
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

fn is_purge(method: &Method) -> bool {
    method.as_str() == "PURGE"
}

fn is_unsafe(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

fn status_response<B>(status: StatusCode) -> Response<CacheBody<B>> {
    let mut res = Response::new(CacheBody::empty());
    *res.status_mut() = status;
    res
}

/// Everything an upstream fetch needs besides the request.
struct Fetch {
    shared: Arc<Shared>,
    config: Arc<CacheConfig>,
    key: String,
    hash: u128,
    head: bool,
    /// The client's original headers (for Vary values and the policy).
    request_headers: HeaderMap,
    facts: RequestFacts,
    default_ttl: std::time::Duration,
    directives: RequestDirectives,
    preconditions: Preconditions,
    /// A stored copy: revalidated, or served when the upstream fails.
    stale: Option<Arc<Variant>>,
    /// Whether the request went out with our validators.
    conditional: bool,
    /// Whether the response may be stored.
    store: bool,
    /// Background refreshes never answer a client, so they never shadow-deliver.
    background: bool,
    guard: Option<FlightGuard>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Cache<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<CacheBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    /// Always ready: hits never wait for the upstream. Requests that go upstream drive the
    /// inner service's readiness in their own future (see [`Cache`]).
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &self.handle.shared;
        let config = shared.config.load();
        let method = req.method().clone();

        if !config.enabled {
            return ResponseFuture::boxed(pass(self.inner.clone(), req));
        }
        if is_purge(&method) {
            return ResponseFuture::ready(purge(&self.handle, &config, &req));
        }
        if req.extensions().get::<CacheBypass>().is_some() {
            return ResponseFuture::boxed(pass(self.inner.clone(), req));
        }
        let pattern = req.extensions().get::<KeyPattern>().unwrap_or(&config.key);
        let key = pattern.render(&req);
        let hash = hash_key(&key);
        if is_unsafe(&method) {
            let shared = Arc::clone(shared);
            let future = ready_call(self.inner.clone(), req);
            return ResponseFuture::boxed(async move {
                let res = future.await?;
                if res.status().is_success() || res.status().is_redirection() {
                    shared.purge_hash(hash);
                }
                Ok(res.map(CacheBody::upstream))
            });
        }
        if method != Method::GET && method != Method::HEAD {
            return ResponseFuture::boxed(pass(self.inner.clone(), req));
        }

        let head = method == Method::HEAD;
        let now = Instant::now();
        let directives = RequestDirectives::parse(req.headers());
        let found = shared.lookup(hash, req.headers(), now);
        let stats = &shared.stats;

        if config.deliver_active
            && let Some(v) = &found
        {
            let age = v.age(now);
            let pre = Preconditions::of(req.headers());
            let pre = (!pre.is_empty()).then_some(&pre);
            match classify(
                &v.freshness,
                age,
                &directives,
                config.strategy,
                config.shadow_ttl,
            ) {
                Action::Hit => {
                    stats.hits(1);
                    return ResponseFuture::ready(v.deliver(now, &Delivery::hit(head, pre)));
                }
                Action::ServeStale => {
                    stats.stale(1);
                    let how = Delivery::stale(head, pre, false);
                    return ResponseFuture::ready(v.deliver(now, &how));
                }
                Action::ServeStaleAndRefresh => {
                    stats.stale(1);
                    let res = v.deliver(now, &Delivery::stale(head, pre, true));
                    let flight = flight_id(hash, Some(v));
                    // HEAD cannot refresh a body; the next GET will.
                    if !head && let Some(guard) = shared.flights.try_lead(flight) {
                        let mut fetch = Fetch::new(shared, &config, key, hash, &req, &directives);
                        fetch.stale = found.clone();
                        fetch.background = true;
                        fetch.guard = Some(guard);
                        let req = fetch.prepare(req);
                        let future = ready_call(self.inner.clone(), req);
                        tokio::spawn(refresh(future, fetch));
                    }
                    return ResponseFuture::ready(res);
                }
                Action::Revalidate => {}
            }
        }
        if directives.only_if_cached && config.deliver_active {
            return ResponseFuture::ready(status_response(StatusCode::GATEWAY_TIMEOUT));
        }

        let mut fetch = Fetch::new(shared, &config, key, hash, &req, &directives);
        fetch.stale = found;
        if !config.deliver_active || head || req.headers().contains_key(RANGE) {
            // Shadow delivery only: the request goes out as it came, nothing is stored (HEAD
            // has no body to store, and a Range request gets a 206 the cache does not keep).
            fetch.store = false;
            stats.misses(1);
            return ResponseFuture::boxed(fetch.run(ready_call(self.inner.clone(), req)));
        }
        match shared.flights.join(flight_id(hash, fetch.stale.as_deref())) {
            Join::Leader(guard) => {
                stats.misses(1);
                fetch.guard = Some(guard);
                let req = fetch.prepare(req);
                ResponseFuture::boxed(fetch.run(ready_call(self.inner.clone(), req)))
            }
            Join::Follower(waiter) => {
                stats.coalesced(1);
                ResponseFuture::boxed(follow(waiter, req, self.inner.clone(), fetch, true))
            }
        }
    }
}

/// Which fetch a request joins: the key, and the variant when one is known.
fn flight_id(hash: u128, variant: Option<&Variant>) -> u128 {
    match variant {
        Some(v) => hash ^ u128::from(v.vary.hash()),
        None => hash,
    }
}

fn purge<B, T>(
    handle: &CacheHandle,
    config: &CacheConfig,
    req: &Request<T>,
) -> Response<CacheBody<B>> {
    if req.extensions().get::<PurgeAllowed>().is_none() {
        return status_response(StatusCode::METHOD_NOT_ALLOWED);
    }
    let pattern = req.extensions().get::<KeyPattern>().unwrap_or(&config.key);
    if handle.purge(&pattern.render(req)) {
        status_response(StatusCode::OK)
    } else {
        status_response(StatusCode::NOT_FOUND)
    }
}

/// A request that found a fetch of its object running: wait for it, then look again.
///
/// `rejoin`: whether this request may lead or join one more fetch when the leader's response
/// turned out to be for the leader alone (once, so waits never chain).
async fn follow<S, ReqBody, ResBody>(
    waiter: Waiter,
    req: Request<ReqBody>,
    svc: S,
    mut fetch: Fetch,
    rejoin: bool,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    let (timed_out, outcome) =
        match tokio::time::timeout(fetch.config.lock_timeout, waiter.done()).await {
            Ok(outcome) => (false, outcome),
            Err(_) => (true, Outcome::Done),
        };
    let leader_failed = outcome == Outcome::Failed;
    let now = Instant::now();
    let stats = &fetch.shared.stats;
    if let Some(v) = fetch.shared.lookup(fetch.hash, req.headers(), now) {
        let age = v.age(now);
        let config = &fetch.config;
        let pre = (!fetch.preconditions.is_empty()).then_some(&fetch.preconditions);
        match classify(
            &v.freshness,
            age,
            &fetch.directives,
            config.strategy,
            config.shadow_ttl,
        ) {
            Action::Hit => {
                stats.hits(1);
                return Ok(v.deliver(now, &Delivery::hit(fetch.head, pre)));
            }
            Action::ServeStale | Action::ServeStaleAndRefresh => {
                stats.stale(1);
                return Ok(v.deliver(now, &Delivery::stale(fetch.head, pre, false)));
            }
            Action::Revalidate
                if timed_out
                    && !fetch.directives.no_cache
                    && v.freshness.may_serve_on_error(age, config.shadow_ttl) == Some(true) =>
            {
                // The refresh is stuck: x0's recommendation is to fall back to the stale copy.
                stats.stale(1);
                return Ok(v.deliver(now, &Delivery::stale(fetch.head, pre, true)));
            }
            Action::Revalidate => {}
        }
        fetch.stale = Some(v);
    }
    // The leader just failed upstream: serve the shadow copy rather than all retrying it.
    if leader_failed && let Some(res) = fetch.shadow(Instant::now()) {
        return Ok(res);
    }
    // The leader's response was its own (a cookie, Authorization) and not stored. Without this,
    // every waiter would go upstream at once; instead a waiter whose response may be stored
    // leads one more fetch and the others wait for it. Private waiters go upstream directly:
    // waiting behind each other would chain.
    if rejoin && outcome == Outcome::Private && !fetch.facts.private() {
        match fetch
            .shared
            .flights
            .join(flight_id(fetch.hash, fetch.stale.as_deref()))
        {
            Join::Leader(guard) => fetch.guard = Some(guard),
            Join::Follower(waiter) => {
                return Box::pin(follow(waiter, req, svc, fetch, false)).await;
            }
        }
    }
    // Still nothing usable (uncacheable, too large, failed, or timed out): go upstream
    // ourselves, without joining another wait.
    stats.misses(1);
    let req = fetch.prepare(req);
    fetch.run(ready_call(svc, req)).await
}

/// Drives the inner service's readiness, then calls it. A readiness error is an upstream
/// failure like any other (so it can be answered with a shadow copy).
async fn ready_call<S, R>(mut svc: S, req: R) -> Result<S::Response, S::Error>
where
    S: Service<R>,
{
    poll_fn(|cx| svc.poll_ready(cx)).await?;
    svc.call(req).await
}

/// A request the cache does not handle: straight to the inner service.
async fn pass<S, ReqBody, ResBody>(
    svc: S,
    req: Request<ReqBody>,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    Ok(ready_call(svc, req).await?.map(CacheBody::upstream))
}

/// A background refresh: fetch, store, and drain the body so the capture completes.
async fn refresh<F, ResBody, E>(future: F, fetch: Fetch)
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    if let Ok(res) = fetch.run(future).await {
        let mut body = std::pin::pin!(res.into_body());
        while let Some(Ok(_)) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {}
    }
}

// === impl Fetch ===

impl Fetch {
    fn new<T>(
        shared: &Arc<Shared>,
        config: &Arc<CacheConfig>,
        key: String,
        hash: u128,
        req: &Request<T>,
        directives: &RequestDirectives,
    ) -> Self {
        Self {
            shared: Arc::clone(shared),
            config: Arc::clone(config),
            key,
            hash,
            head: req.method() == Method::HEAD,
            request_headers: req.headers().clone(),
            facts: RequestFacts::of(req.method(), req.headers(), directives, config),
            default_ttl: req
                .extensions()
                .get::<DefaultTtl>()
                .map_or(config.default_ttl, |t| t.0),
            directives: directives.clone(),
            preconditions: Preconditions::of(req.headers()),
            stale: None,
            conditional: false,
            store: true,
            background: false,
            guard: None,
        }
    }

    /// Rewrites the request for upstream: the client's preconditions are ours to answer, so
    /// they are removed (the upstream must send a full response we can store), and our own
    /// validators are added when a stored copy has them.
    fn prepare<T>(&mut self, mut req: Request<T>) -> Request<T> {
        let h = req.headers_mut();
        for name in [
            IF_MATCH,
            IF_NONE_MATCH,
            IF_MODIFIED_SINCE,
            IF_UNMODIFIED_SINCE,
            IF_RANGE,
        ] {
            h.remove(name);
        }
        if let Some(v) = self.stale.as_ref().filter(|v| v.has_validators()) {
            if let Some(etag) = &v.etag {
                h.insert(IF_NONE_MATCH, etag.clone());
            }
            if let Some(lm) = v.headers.get(LAST_MODIFIED) {
                h.insert(IF_MODIFIED_SINCE, lm.clone());
            }
            self.conditional = true;
        }
        req
    }

    fn pre(&self) -> Option<&Preconditions> {
        (!self.preconditions.is_empty()).then_some(&self.preconditions)
    }

    /// The answer when the upstream could not: a shadow copy, a 504 if the copy forbids stale
    /// serving, or `None` to pass the upstream's answer on.
    fn shadow<B>(&self, now: Instant) -> Option<Response<CacheBody<B>>> {
        if self.background || !self.config.deliver_shadow {
            return None;
        }
        let v = self.stale.as_ref()?;
        match v
            .freshness
            .may_serve_on_error(v.age(now), self.config.shadow_ttl)
        {
            Some(true) => {
                self.shared.stats.shadow(1);
                let mut how = Delivery::stale(self.head, self.pre(), false);
                how.shadow = true;
                Some(v.deliver(now, &how))
            }
            // RFC 9111 §4.2.4: must-revalidate and friends turn a failed refresh into a 504.
            None => Some(status_response(StatusCode::GATEWAY_TIMEOUT)),
            Some(false) => None,
        }
    }

    /// Awaits the upstream and decides: shadow, revalidated copy, stored miss, or pass.
    async fn run<F, B, E>(self, future: F) -> Result<Response<CacheBody<B>>, E>
    where
        F: Future<Output = Result<Response<B>, E>>,
        B: Body<Data = Bytes> + Send + 'static,
    {
        let sent = Instant::now();
        let result = future.await;
        let received = Instant::now();
        let res = match result {
            Ok(res) => res,
            Err(e) => {
                // Every inner error means "no backend could answer" (see the module docs).
                if let Some(g) = &self.guard {
                    g.failed();
                }
                if let Some(res) = self.shadow(received) {
                    return Ok(res);
                }
                return Err(e);
            }
        };
        if self.config.unavailable_statuses.contains(&res.status()) {
            if let Some(g) = &self.guard {
                g.failed();
            }
            if let Some(shadow) = self.shadow(received) {
                return Ok(shadow);
            }
            return Ok(self.pass(res));
        }
        if res.status() == StatusCode::NOT_MODIFIED
            && self.conditional
            && let Some(stale) = &self.stale
        {
            return Ok(self.revalidated(stale, res.headers(), received, sent));
        }
        if !self.store {
            return Ok(self.pass(res));
        }
        let (mut parts, body) = res.into_parts();
        let policy = storability(
            self.facts,
            parts.status,
            &parts.headers,
            self.default_ttl,
            SystemTime::now(),
            received - sent,
        );
        // Known to be too large: do not even start capturing (unknown sizes are captured and
        // dropped once they pass the limit).
        let too_large = body.size_hint().lower() > self.config.max_object_size as u64;
        let freshness = match policy {
            Ok(f) if !too_large => f,
            other => {
                let reason = other.err();
                tracing::debug!(key = %self.key, ?reason, too_large, "response not stored");
                self.shared.stats.uncacheable(1);
                // A new representation that may not be stored replaces the old copy; a server
                // error does not (the old copy may still serve as a shadow), nor does a
                // response refused only because of who asked (a cookie, Authorization).
                if let (Some(g), Some(r)) = (&self.guard, reason)
                    && !r.replaces_stored()
                {
                    g.private();
                }
                if let Some(stale) = &self.stale
                    && !parts.status.is_server_error()
                    && reason.is_none_or(NotStorable::replaces_stored)
                {
                    self.shared.drop_variant(self.hash, &stale.vary);
                }
                return Ok(self.pass(Response::from_parts(parts, body)));
            }
        };
        let names = vary_names(&parts.headers).unwrap_or_default();
        let stored_headers = storable_headers(parts.headers.clone());
        let has_validators = stored_headers.contains_key(http::header::ETAG)
            || stored_headers.contains_key(LAST_MODIFIED);
        let retention =
            freshness.retention(self.config.shadow_ttl, self.config.keep, has_validators);
        let lookup = if self.stale.is_some() {
            "stale-updating"
        } else {
            "miss"
        };
        set_cache_headers(&mut parts.headers, "MISS", lookup);
        let max = self.config.max_object_size;
        let pending = Pending {
            shared: Arc::clone(&self.shared),
            hash: self.hash,
            key: self.key,
            vary: VaryKey::capture(&names, &self.request_headers),
            status: parts.status,
            headers: stored_headers,
            freshness,
            received_at: received,
            retention,
            guard: self.guard,
        };
        let body = CacheBody::capturing(body, Capture::new(pending, max));
        Ok(Response::from_parts(parts, body))
    }

    /// The upstream's response, passed on as it is (with `X-Cache: MISS`).
    fn pass<B>(&self, mut res: Response<B>) -> Response<CacheBody<B>> {
        set_cache_headers(res.headers_mut(), "MISS", "miss");
        res.map(CacheBody::upstream)
    }

    /// The stored copy was confirmed by a 304: store it refreshed and serve it.
    fn revalidated<B>(
        &self,
        stale: &Variant,
        fresh: &HeaderMap,
        received: Instant,
        sent: Instant,
    ) -> Response<CacheBody<B>> {
        self.shared.stats.revalidated(1);
        let headers = merge_headers(&stale.headers, fresh);
        let policy = storability(
            self.facts,
            stale.status,
            &headers,
            self.default_ttl,
            SystemTime::now(),
            received - sent,
        );
        let has_validators = stale.has_validators();
        let (freshness, store) = match policy {
            Ok(f) => (f, Some(true)),
            // The 304 answered one user's private request: it may carry that user's headers,
            // so it refreshes nothing, and it does not remove the copy everyone else gets.
            Err(reason) if !reason.replaces_stored() => (stale.freshness.clone(), None),
            Err(_) => (stale.freshness.clone(), Some(false)),
        };
        let retention =
            freshness.retention(self.config.shadow_ttl, self.config.keep, has_validators);
        let variant = Variant::new(
            stale.vary.clone(),
            stale.status,
            headers,
            stale.body.clone(),
            freshness,
            received,
            retention,
        );
        let mut how = Delivery::hit(self.head, self.pre());
        how.x_cache = "REVALIDATED";
        let res = variant.deliver(received, &how);
        match store {
            Some(true) => self.shared.commit(self.hash, &self.key, variant),
            Some(false) => self.shared.drop_variant(self.hash, &stale.vary),
            None => {
                if let Some(g) = &self.guard {
                    g.private();
                }
            }
        }
        res
    }
}

fn set_cache_headers(headers: &mut HeaderMap, x_cache: &'static str, lookup: &'static str) {
    headers.insert(X_CACHE, HeaderValue::from_static(x_cache));
    headers.insert(X_CACHE_LOOKUP, HeaderValue::from_static(lookup));
    headers.insert(X_CACHE_HITS, HeaderValue::from_static("0"));
    if !headers.contains_key(http::header::AGE) {
        headers.insert(http::header::AGE, HeaderValue::from_static("0"));
    }
}

// === impl ResponseFuture ===

impl<B, E> ResponseFuture<B, E> {
    fn ready(response: Response<CacheBody<B>>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }

    fn boxed(
        future: impl Future<Output = Result<Response<CacheBody<B>>, E>> + Send + 'static,
    ) -> Self {
        Self {
            state: State::Boxed {
                future: Box::pin(future),
            },
        }
    }
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<CacheBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            StateProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Ready { .. } => "ready",
            State::Boxed { .. } => "boxed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
