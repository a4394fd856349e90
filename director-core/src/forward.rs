//! The forwarding layer: applies the proxy header rules on the way in and out.
//!
//! In front of the router, [`Forward`] settles each request head once, so that routing, the
//! cache and every backend see the same request:
//!
//! - `CONNECT` is answered 405 (Director is not a forward proxy) and never forwarded;
//! - one valid `Host`, or 400; an absolute-form target's authority replaces it
//!   ([`headers::settle_host`]);
//! - the path is normalised ([`crate::normalize`]; 400 for refused paths) and the URI rewritten
//!   with it, unless turned off;
//! - `TRACE`/`OPTIONS` with `Max-Forwards: 0` are answered here;
//! - hop-by-hop fields, `X-Forwarded-*`, `Via`, origin-form URI ([`crate::headers`]).
//!
//! Each response head is rewritten on the way back.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::{
    body::{self, Body},
    client_info::ClientInfo,
    error::{ErrorKind, ProxyError},
    headers::{self, HeaderPolicy, MaxForwards},
    normalize::{PathError, normalize_path},
};

/// The methods Director forwards, for `Allow` on the answers it gives itself.
const ALLOWED: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE";

/// Adds [`Forward`] to a stack.
#[derive(Clone, Debug)]
pub struct ForwardLayer {
    policy: Arc<HeaderPolicy>,
    normalize_path: bool,
}

impl ForwardLayer {
    /// A layer applying `policy`, normalising paths.
    pub fn new(policy: HeaderPolicy) -> Self {
        ForwardLayer {
            policy: Arc::new(policy),
            normalize_path: true,
        }
    }

    /// Whether request paths are normalised (default true); off, they are routed and forwarded
    /// as the client sent them (`normalize-path = false`, for backends that need raw paths).
    pub fn normalize_path(mut self, on: bool) -> Self {
        self.normalize_path = on;
        self
    }
}

impl<S> Layer<S> for ForwardLayer {
    type Service = Forward<S>;

    fn layer(&self, inner: S) -> Forward<S> {
        Forward {
            inner,
            policy: self.policy.clone(),
            normalize_path: self.normalize_path,
        }
    }
}

/// Rewrites request and response heads for proxying.
#[derive(Clone, Debug)]
pub struct Forward<S> {
    inner: S,
    policy: Arc<HeaderPolicy>,
    normalize_path: bool,
}

// === impl Forward ===

impl<S> Forward<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<Request<Body>> for Forward<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = ProxyError>,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        if parts.method == Method::CONNECT {
            return ResponseFuture::ready(Ok(refuse_connect(&self.policy)));
        }
        if let Err(err) = headers::settle_host(&mut parts) {
            return ResponseFuture::ready(Err(
                ProxyError::new(ErrorKind::BadRequest).with_detail(err.describe())
            ));
        }
        if self.normalize_path
            && let Err(err) = normalize_uri(&mut parts)
        {
            return ResponseFuture::ready(Err(
                ProxyError::new(ErrorKind::BadRequest).with_detail(err.describe())
            ));
        }
        match headers::max_forwards(&parts.method, &mut parts.headers) {
            MaxForwards::Forward => {}
            MaxForwards::Invalid => {
                return ResponseFuture::ready(Err(ProxyError::new(ErrorKind::BadRequest)
                    .with_detail("Max-Forwards must be a non-negative number")));
            }
            MaxForwards::AnswerLocally => {
                return ResponseFuture::ready(Ok(answer_locally(&parts, &self.policy)));
            }
        }
        let client = parts
            .extensions
            .get::<ClientInfo>()
            .cloned()
            .unwrap_or_default();
        headers::prepare_request(&mut parts, &client, &self.policy);
        ResponseFuture {
            state: State::Inner {
                future: self.inner.call(Request::from_parts(parts, body)),
                policy: Some(self.policy.clone()),
            },
        }
    }
}

/// Rewrites the request's URI with its normalised path (the query is kept as it is).
fn normalize_uri(parts: &mut http::request::Parts) -> Result<(), PathError> {
    let path = parts.uri.path();
    // `OPTIONS *` asks about the server, not a resource: there is no path to normalise.
    if path == "*" && parts.method == Method::OPTIONS {
        return Ok(());
    }
    let std::borrow::Cow::Owned(normal) = normalize_path(path)? else {
        return Ok(());
    };
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{normal}?{query}"),
        None => normal,
    };
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    // Every byte of the normal form came from a URI that parsed; it parses again.
    uri.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|_| PathError::BadPercentEncoding)?,
    );
    parts.uri = http::Uri::from_parts(uri).map_err(|_| PathError::BadPercentEncoding)?;
    Ok(())
}

/// The answer to `CONNECT`: Director is a reverse proxy and opens no tunnels on request
/// (RFC 9110 §9.3.6; 405 names what it does allow).
fn refuse_connect(policy: &HeaderPolicy) -> Response<Body> {
    let mut r = Response::new(body::full(
        "405 Method Not Allowed: CONNECT is not served\n",
    ));
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    let headers = r.headers_mut();
    headers.insert(header::ALLOW, HeaderValue::from_static(ALLOWED));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(via) = policy.pseudonym()
        && let Ok(v) = HeaderValue::from_str(&format!("1.1 {via}"))
    {
        headers.insert(header::VIA, v);
    }
    r
}

/// Director as the final recipient of a `TRACE` or `OPTIONS` (RFC 9110 §7.6.2).
fn answer_locally(parts: &http::request::Parts, policy: &HeaderPolicy) -> Response<Body> {
    let mut response = if parts.method == Method::TRACE {
        let reflection = headers::trace_reflection(parts);
        let mut r = Response::new(body::full(reflection));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("message/http"),
        );
        r
    } else {
        let mut r = Response::new(body::empty());
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(ALLOWED));
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        r
    };
    *response.status_mut() = StatusCode::OK;
    if let Some(via) = policy.pseudonym()
        && let Ok(v) = HeaderValue::from_str(&format!("1.1 {via}"))
    {
        response.headers_mut().insert(header::VIA, v);
    }
    response
}

pin_project! {
    /// The response future of [`Forward`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // Answered without calling the inner service.
        Ready { result: Option<Result<Response<Body>, ProxyError>> },
        // Waiting for the inner service.
        Inner { #[pin] future: F, policy: Option<Arc<HeaderPolicy>> },
    }
}

impl<F> ResponseFuture<F> {
    fn ready(result: Result<Response<Body>, ProxyError>) -> Self {
        ResponseFuture {
            state: State::Ready {
                result: Some(result),
            },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, ProxyError>>,
{
    type Output = Result<Response<Body>, ProxyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready { result } => {
                Poll::Ready(result.take().expect("polled after completion"))
            }
            StateProj::Inner { future, policy } => {
                let response = std::task::ready!(future.poll(cx))?;
                let policy = policy.take().expect("polled after completion");
                let (mut parts, body) = response.into_parts();
                headers::prepare_response(&mut parts, &policy);
                Poll::Ready(Ok(Response::from_parts(parts, body)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str) -> http::request::Parts {
        Request::get(uri).body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_uri_gets_the_normal_path_and_keeps_its_query_and_authority() {
        let mut p = parts("http://a.example:81//x/../%7ey?q=/../%2f&r");
        normalize_uri(&mut p).unwrap();
        assert_eq!(p.uri, "http://a.example:81/~y?q=/../%2f&r");
        let mut p = parts("/a/./b");
        normalize_uri(&mut p).unwrap();
        assert_eq!(p.uri, "/a/b");
    }

    #[test]
    fn options_asterisk_is_left_alone_and_other_targets_must_be_paths() {
        let mut p = Request::options("*").body(()).unwrap().into_parts().0;
        assert_eq!(normalize_uri(&mut p), Ok(()));
        assert_eq!(p.uri, "*");
        let mut p = parts("*");
        assert_eq!(normalize_uri(&mut p), Err(PathError::NotAbsolute));
    }

    #[test]
    fn connect_is_answered_405_with_allow() {
        let r = refuse_connect(&HeaderPolicy::default());
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], ALLOWED);
        assert_eq!(r.headers()[header::VIA], "1.1 director");
    }
}
