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

use http::{Method, Request, Response};
use tower::Service;

use crate::{
    body::Body,
    body_limit,
    cluster::{Dispatch, dispatch_direct},
    error::{ErrorKind, ProxyError},
    files::{Accepts, FilesPolicy, Lookup},
    normalize::normalize_path,
    registry::Registry,
    route::Target,
    sendfile::RequestHead,
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
        let Some(routed) = self.route(&req) else {
            return Box::pin(std::future::ready(Err(ProxyError::new(ErrorKind::NoRoute))));
        };
        // A denied request gets its 403 whatever its body; any other is held to its limit.
        let req = match routed.target {
            Target::Deny => req,
            _ => match limit_body(req, routed.limit) {
                Ok(req) => req,
                Err(err) => return Box::pin(std::future::ready(Err(err))),
            },
        };
        match routed.files.clone() {
            Some(files) if !matches!(routed.target, Target::Deny) => {
                Box::pin(self.clone().with_files(req, routed, files, true))
            }
            _ => self.dispatch(req, routed.target, routed.how),
        }
    }
}

/// What routing decided for a request.
struct Routed {
    target: Target,
    how: Dispatch,
    limit: u64,
    files: Option<Arc<FilesPolicy>>,
}

impl Router {
    fn route(&self, req: &Request<Body>) -> Option<Routed> {
        let snapshot = self.registry.load();
        snapshot
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
                Routed {
                    target: route.target.clone(),
                    how,
                    limit: route.max_request_body.unwrap_or(self.max_request_body),
                    files: route.files.clone(),
                }
            })
    }

    fn dispatch(
        &self,
        req: Request<Body>,
        target: Target,
        how: Dispatch,
    ) -> BoxFuture<Result<Response<Body>, ProxyError>> {
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
            (Target::Deny, _) => Box::pin(std::future::ready(Err(denied()))),
        }
    }

    /// A request to a route with a `root`: a file, else (maybe rewritten and routed again)
    /// the target. `rewrite`: whether the route's rules apply (once per request).
    async fn with_files(
        self,
        req: Request<Body>,
        routed: Routed,
        files: Arc<FilesPolicy>,
        rewrite: bool,
    ) -> Result<Response<Body>, ProxyError> {
        let get = req.method() == Method::GET || req.method() == Method::HEAD;
        let path = req.uri().path().to_owned();
        let query = req.uri().query().map(str::to_owned);
        let accepts = Accepts::from_headers(req.headers());
        let policy = files.clone();
        let lookup = tokio::task::spawn_blocking(move || {
            policy.look(&path, query.as_deref(), get, accepts, rewrite)
        })
        .await;
        let lookup = match lookup {
            Ok(lookup) => lookup,
            Err(join) => {
                tracing::error!(error = %join, "looking a file up failed");
                return Ok(crate::files::plain(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error\n",
                ));
            }
        };
        match lookup {
            Lookup::Refused(status, text) => Ok(crate::files::plain(status, text)),
            Lookup::Found(found) => {
                let head = RequestHead::new(req.method(), req.headers());
                Ok(files.respond(found, &head))
            }
            Lookup::Missing(None) => self.dispatch(req, routed.target, routed.how).await,
            Lookup::Missing(Some(rewritten)) => {
                let req = rewritten_request(req, &rewritten)?;
                // Routed again, so a rewrite cannot land where a deny route or another
                // route's rules say otherwise.
                let Some(again) = self.route(&req) else {
                    return Err(ProxyError::new(ErrorKind::NoRoute));
                };
                if matches!(again.target, Target::Deny) {
                    return Err(denied());
                }
                let req = limit_body(req, again.limit)?;
                match again.files.clone() {
                    Some(files) => Box::pin(self.with_files(req, again, files, false)).await,
                    None => self.dispatch(req, again.target, again.how).await,
                }
            }
        }
    }
}

fn denied() -> ProxyError {
    ProxyError::new(ErrorKind::BadRequest)
        .with_status(http::StatusCode::FORBIDDEN)
        .with_detail("this path is denied")
}

/// `req` with the path-and-query a rewrite rule gave, its path normalised as the client's was.
fn rewritten_request(req: Request<Body>, rewritten: &str) -> Result<Request<Body>, ProxyError> {
    let bad = |detail: &'static str| ProxyError::new(ErrorKind::BadRequest).with_detail(detail);
    let (path, query) = match rewritten.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rewritten, None),
    };
    let normal = normalize_path(path).map_err(|e| bad(e.describe()))?;
    let path_and_query = match query {
        Some(q) => format!("{normal}?{q}"),
        None => normal.into_owned(),
    };
    let (mut parts, body) = req.into_parts();
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|_| bad("the rewritten URI is not valid"))?,
    );
    parts.uri = http::Uri::from_parts(uri).map_err(|_| bad("the rewritten URI is not valid"))?;
    Ok(Request::from_parts(parts, body))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_path_is_normalised_like_a_clients() {
        let req = || {
            Request::get("http://example.com/wiki/x?a=1")
                .body(crate::body::empty())
                .unwrap()
        };
        let r = rewritten_request(req(), "/lib/../data//x?id=1&a=1").unwrap();
        assert_eq!(r.uri().path(), "/data/x");
        assert_eq!(r.uri().query(), Some("id=1&a=1"));
        assert_eq!(r.uri().host(), Some("example.com"));
        let r = rewritten_request(req(), "/doku.php?id=%69nc").unwrap();
        assert_eq!(r.uri().path_and_query().unwrap(), "/doku.php?id=%69nc");
        let r = rewritten_request(req(), "/%69nc/x").unwrap();
        assert_eq!(r.uri().path(), "/inc/x");
        for refused in ["/../etc/passwd", "/a%2Fb", "/a%00"] {
            let err = rewritten_request(req(), refused).unwrap_err();
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{refused}");
        }
    }
}
