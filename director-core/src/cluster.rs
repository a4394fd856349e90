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
    backend::Backend,
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
        for index in self.scheduler.candidates(self.backends.len()) {
            let backend = &self.backends[index];
            if !backend.is_enabled() {
                continue;
            }
            match backend.transport().connect().await {
                Ok(conn) => {
                    let response = conn.send(req).await.map_err(|e| {
                        e.with_cluster(self.name.clone())
                            .with_backend(backend.name().clone())
                    })?;
                    return Ok(tagged(response, tag, Some(&self.name), backend));
                }
                Err(err) => {
                    tracing::warn!(
                        cluster = %self.name,
                        backend = %backend.name(),
                        error = %err,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "connect failed, trying the next backend"
                    );
                }
            }
        }
        Err(self.unavailable(ErrorKind::NoBackend))
    }
}

/// Sends `req` straight to one backend: no balancing, no queue, no retry (x0's road warrior).
pub async fn dispatch_direct(
    backend: Arc<Backend>,
    req: Request<Body>,
    tag: bool,
) -> Result<Response<Body>, ProxyError> {
    let result = match backend.transport().connect().await {
        Ok(conn) => conn.send(req).await,
        Err(err) => Err(err),
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
