//! The forwarding layer: applies the proxy header rules on the way in and out.
//!
//! In front of the router, [`Forward`] rewrites each request head once (hop-by-hop fields,
//! `X-Forwarded-*`, `Via`, origin-form URI; see [`crate::headers`]), answers `TRACE`/`OPTIONS`
//! with `Max-Forwards: 0` itself, and rewrites each response head on the way back.

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
};

/// Adds [`Forward`] to a stack.
#[derive(Clone, Debug)]
pub struct ForwardLayer {
    policy: Arc<HeaderPolicy>,
}

impl ForwardLayer {
    /// A layer applying `policy`.
    pub fn new(policy: HeaderPolicy) -> Self {
        ForwardLayer {
            policy: Arc::new(policy),
        }
    }
}

impl<S> Layer<S> for ForwardLayer {
    type Service = Forward<S>;

    fn layer(&self, inner: S) -> Forward<S> {
        Forward {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// Rewrites request and response heads for proxying.
#[derive(Clone, Debug)]
pub struct Forward<S> {
    inner: S,
    policy: Arc<HeaderPolicy>,
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
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE"),
        );
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
