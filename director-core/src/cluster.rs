//! A cluster: named backends behind a scheduler, and the service that balances over them.
//!
//! For each request the scheduler proposes an order; the cluster skips disabled members and
//! connects to the first candidate that accepts a connection. A failed connect touches nothing of
//! the request, so the next candidate is always safe to try. Once a connection is established the
//! request is sent there; failures after that are the caller's to see.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use http::{Request, Response};

use crate::{
    backend::{Backend, BackendTransport},
    body::Body,
    error::{ErrorKind, ProxyError},
    schedule::RoundRobin,
};

/// Which cluster and backend served a response (a response extension, for logs and stats).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamInfo {
    /// The cluster, or `None` for a road-warrior route.
    pub cluster: Option<Arc<str>>,
    /// The backend that answered, if one did.
    pub backend: Option<Arc<str>>,
}

/// A named load-balanced group of backends.
#[derive(Debug)]
pub struct Cluster {
    name: Arc<str>,
    backends: Vec<Arc<Backend>>,
    scheduler: RoundRobin,
    enabled: AtomicBool,
    retry_after: u32,
}

impl Cluster {
    /// A cluster called `name` over `backends`; `retry_after` is the `Retry-After` seconds sent
    /// when no backend can take a request (0 sends none).
    pub fn new(name: impl Into<Arc<str>>, backends: Vec<Arc<Backend>>, retry_after: u32) -> Self {
        Cluster {
            name: name.into(),
            backends,
            scheduler: RoundRobin::default(),
            enabled: AtomicBool::new(true),
            retry_after,
        }
    }

    /// The cluster's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Its members, in configuration order.
    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// A member by name.
    pub fn backend(&self, name: &str) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| &**b.name() == name)
    }

    /// Whether the cluster takes requests at all.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Enables or disables the whole cluster; a disabled cluster answers 503.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    fn unavailable(&self, kind: ErrorKind) -> ProxyError {
        ProxyError::new(kind)
            .with_cluster(self.name.clone())
            .with_retry_after(self.retry_after)
    }

    /// Balances `req` over the cluster's backends; `tag` attaches an [`UpstreamInfo`] to the
    /// response.
    pub async fn dispatch(
        self: Arc<Self>,
        req: Request<Body>,
        tag: bool,
    ) -> Result<Response<Body>, ProxyError> {
        if !self.is_enabled() {
            return Err(self
                .unavailable(ErrorKind::NoBackend)
                .with_detail("the cluster is disabled"));
        }
        let started = Instant::now();
        let mut order = self
            .scheduler
            .candidates(self.backends.len())
            .filter(|&i| self.backends[i].is_enabled())
            .peekable();
        let mut req = Some(req);
        while let Some(index) = order.next() {
            let backend = &self.backends[index];
            let request = req.take().expect("one request per attempt");
            let more = order.peek().is_some();
            match attempt(backend, request, more).await {
                Attempt::Done(result) => {
                    return match result {
                        Ok(response) => Ok(tagged(response, tag, Some(&self.name), backend)),
                        Err(err) => Err(err
                            .with_cluster(self.name.clone())
                            .with_backend(backend.name().clone())),
                    };
                }
                Attempt::Unreached(err, request) => {
                    tracing::warn!(
                        cluster = %self.name,
                        backend = %backend.name(),
                        error = %err,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "backend unreachable"
                    );
                    match request {
                        Some(request) => req = Some(request),
                        // The request cannot be replayed on another backend.
                        None => break,
                    }
                }
            }
        }
        Err(self.unavailable(ErrorKind::NoBackend))
    }
}

/// The outcome of trying one backend.
enum Attempt {
    /// The backend took the request; this is its answer (or failure).
    Done(Result<Response<Body>, ProxyError>),
    /// The backend could not be reached and nothing was sent; the request comes back when it
    /// can go to the next backend.
    Unreached(ProxyError, Option<Request<Body>>),
}

async fn attempt(backend: &Backend, req: Request<Body>, more: bool) -> Attempt {
    match backend.transport() {
        BackendTransport::Http(transport) => match transport.connect().await {
            Ok(conn) => Attempt::Done(conn.send(req).await),
            Err(err) => Attempt::Unreached(err, Some(req)),
        },
        BackendTransport::Custom(transport) => {
            // A one-step transport consumes the request, so keep a copy of a bodiless one in
            // case this backend cannot be reached and another can.
            let spare = if more { replayable(&req) } else { None };
            match transport.send(req).await {
                Err(err) if !err.was_sent() && is_unreachable(err.kind()) => {
                    Attempt::Unreached(err, spare)
                }
                result => Attempt::Done(result),
            }
        }
    }
}

fn is_unreachable(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::ConnectFailed | ErrorKind::ConnectTimeout)
}

/// A copy of a request without a body, to send again elsewhere.
fn replayable(req: &Request<Body>) -> Option<Request<Body>> {
    use http_body::Body as _;
    if !req.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(crate::body::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    Some(copy)
}

/// Sends `req` straight to one backend: no balancing, no queue, no retry (x0's road warrior).
pub async fn dispatch_direct(
    backend: Arc<Backend>,
    req: Request<Body>,
    tag: bool,
) -> Result<Response<Body>, ProxyError> {
    let result = match attempt(&backend, req, false).await {
        Attempt::Done(result) => result,
        Attempt::Unreached(err, _) => Err(err),
    };
    match result {
        Ok(response) => Ok(tagged(response, tag, None, &backend)),
        Err(err) => Err(err.with_backend(backend.name().clone())),
    }
}

fn tagged(
    mut response: Response<Body>,
    tag: bool,
    cluster: Option<&Arc<str>>,
    backend: &Backend,
) -> Response<Body> {
    if !tag {
        return response;
    }
    response.extensions_mut().insert(UpstreamInfo {
        cluster: cluster.cloned(),
        backend: Some(backend.name().clone()),
    });
    response
}
