//! The router service: picks a route by host and path and hands the request to its target.
//!
//! It loads the registry's snapshot once per request; routing itself is a scan of the ordered
//! route table (see [`crate::route`]). A request no route matches fails with
//! [`ErrorKind::NoRoute`] (404).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower::Service;

use crate::{
    body::Body,
    cluster::{Dispatch, dispatch_direct},
    error::{ErrorKind, ProxyError},
    registry::Registry,
    route::Target,
};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Routes requests over the registry's current snapshot.
#[derive(Clone, Debug)]
pub struct Router {
    registry: Arc<Registry>,
    tag_responses: bool,
}

impl Router {
    /// A router over `registry`. Responses carry an [`UpstreamInfo`](crate::cluster::UpstreamInfo)
    /// extension naming the
    /// cluster and backend.
    pub fn new(registry: Arc<Registry>) -> Self {
        Router {
            registry,
            tag_responses: true,
        }
    }

    /// Whether responses carry [`UpstreamInfo`](crate::cluster::UpstreamInfo); turning it off saves an allocation per request
    /// when nothing (such as an access log) reads it.
    pub fn tag_responses(mut self, tag: bool) -> Self {
        self.tag_responses = tag;
        self
    }

    /// The registry it routes with.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }
}

impl Service<Request<Body>> for Router {
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = BoxFuture<Result<Response<Body>, ProxyError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        // Admission happens per cluster once a route is known; the router is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let snapshot = self.registry.load();
        let routed = snapshot
            .routes()
            .find(req.uri(), req.headers())
            .map(|route| {
                let how = match &route.target {
                    Target::Cluster(_) | Target::Front(..) => {
                        route
                            .classify
                            .dispatch(req.uri(), req.headers(), self.tag_responses)
                    }
                    Target::Direct(..) => Dispatch::default(),
                };
                (route.target.clone(), how)
            });
        drop(snapshot);
        match routed {
            Some((Target::Cluster(cluster), how)) => Box::pin(cluster.dispatch(req, how)),
            Some((Target::Front(_, front), how)) => {
                let mut req = req;
                req.extensions_mut().insert(how);
                Box::pin(tower::ServiceExt::oneshot(front, req))
            }
            Some((Target::Direct(backend, None), _)) => {
                Box::pin(dispatch_direct(backend, req, self.tag_responses))
            }
            // The X-Sendfile layer names the backend when it refuses a path: always tag.
            Some((Target::Direct(backend, Some(policy)), _)) => {
                let head = crate::sendfile::RequestHead::new(req.method(), req.headers());
                crate::sendfile::respond(policy, head, dispatch_direct(backend, req, true))
            }
            None => Box::pin(std::future::ready(Err(ProxyError::new(ErrorKind::NoRoute)))),
        }
    }
}
