//! The router service: picks a route by host and path and hands the request to its target.
//!
//! It loads the registry's snapshot once per request; routing itself is a scan of the ordered
//! route table (see [`crate::route`]). A request no route matches fails with
//! [`ErrorKind::NoRoute`] (404); one a `deny` route matches gets 403. Once the route is known,
//! its `max-request-body` (else the listener's) applies ([`crate::body_limit`]): 413 for a
//! declared length over it, a counted body otherwise.

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
    body_limit,
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
    max_request_body: u64,
}

impl Router {
    /// A router over `registry`. Responses carry an [`UpstreamInfo`](crate::cluster::UpstreamInfo)
    /// extension naming the
    /// cluster and backend.
    pub fn new(registry: Arc<Registry>) -> Self {
        Router {
            registry,
            tag_responses: true,
            max_request_body: 0,
        }
    }

    /// The largest request body a route takes unless it sets its own (0, the default: no
    /// limit).
    pub fn max_request_body(mut self, limit: u64) -> Self {
        self.max_request_body = limit;
        self
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
                    Target::Direct(..) | Target::Deny => Dispatch::default(),
                };
                let limit = route.max_request_body.unwrap_or(self.max_request_body);
                (route.target.clone(), how, limit)
            });
        drop(snapshot);
        let Some((target, how, limit)) = routed else {
            return Box::pin(std::future::ready(Err(ProxyError::new(ErrorKind::NoRoute))));
        };
        // A denied request gets its 403 whatever its body; any other is held to its limit.
        let req = match target {
            Target::Deny => req,
            _ => match limit_body(req, limit) {
                Ok(req) => req,
                Err(err) => return Box::pin(std::future::ready(Err(err))),
            },
        };
        match (target, how) {
            (Target::Cluster(cluster), how) => Box::pin(cluster.dispatch(req, how)),
            (Target::Front(_, front), how) => {
                let mut req = req;
                req.extensions_mut().insert(how);
                Box::pin(tower::ServiceExt::oneshot(front, req))
            }
            (Target::Direct(backend, None), _) => {
                Box::pin(dispatch_direct(backend, req, self.tag_responses))
            }
            // The X-Sendfile layer names the backend when it refuses a path: always tag.
            (Target::Direct(backend, Some(policy)), _) => {
                let head = crate::sendfile::RequestHead::new(req.method(), req.headers());
                crate::sendfile::respond(policy, head, dispatch_direct(backend, req, true))
            }
            (Target::Deny, _) => Box::pin(std::future::ready(Err(ProxyError::new(
                ErrorKind::BadRequest,
            )
            .with_status(http::StatusCode::FORBIDDEN)
            .with_detail("this path is denied")))),
        }
    }
}

/// `req` held to `limit` (0: none): 413 now for a declared length over it, else a body that
/// fails with [`crate::body::ClientBodyError::TooLarge`] if it grows past it.
fn limit_body(req: Request<Body>, limit: u64) -> Result<Request<Body>, ProxyError> {
    let (parts, body) = req.into_parts();
    if let Err(err) = body_limit::check_length(&parts.headers, &body, limit) {
        return Err(ProxyError::new(ErrorKind::BadRequest)
            .with_status(err.status())
            .with_detail("the request body is larger than max-request-body")
            .with_source(err));
    }
    Ok(Request::from_parts(parts, body_limit::limit(body, limit)))
}
