//! The one place where errors become HTTP responses.
//!
//! Every service below returns errors; [`ErrorResponse`] turns them into responses with the
//! status of [`ErrorKind::status`], `Retry-After` when the error carries one, Director's `Via`,
//! and a short plain-text body. Errors that are not a [`ProxyError`] are internal (500), except
//! timeouts (504).

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{HeaderValue, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::{
    body::{self, Body, BoxError, client_body_error},
    cluster::UpstreamInfo,
    error::{ErrorKind, ProxyError, is_timeout},
};

/// Adds [`ErrorResponse`] to a stack.
#[derive(Clone, Debug, Default)]
pub struct ErrorResponseLayer {
    via: Option<Arc<str>>,
}

impl ErrorResponseLayer {
    /// A layer whose responses carry `Via: 1.1 <via>` when `via` is set.
    pub fn new(via: Option<Arc<str>>) -> Self {
        ErrorResponseLayer { via }
    }
}

impl<S> Layer<S> for ErrorResponseLayer {
    type Service = ErrorResponse<S>;

    fn layer(&self, inner: S) -> ErrorResponse<S> {
        ErrorResponse {
            inner,
            via: self.via.clone(),
        }
    }
}

/// Turns the inner service's errors into responses; never fails itself.
#[derive(Clone, Debug)]
pub struct ErrorResponse<S> {
    inner: S,
    via: Option<Arc<str>>,
}

impl<S> ErrorResponse<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for ErrorResponse<S>
where
    S: Service<Req, Response = Response<Body>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A failing readiness check is reported with the call instead.
        match ready!(self.inner.poll_ready(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(err) => {
                tracing::error!(error = %err.into(), "service not ready");
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            future: self.inner.call(req),
            via: self.via.clone(),
        }
    }
}

pin_project! {
    /// The response future of [`ErrorResponse`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        via: Option<Arc<str>>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match ready!(this.future.poll(cx)) {
            Ok(response) => Poll::Ready(Ok(response)),
            Err(err) => Poll::Ready(Ok(error_response(err.into(), this.via.as_deref()))),
        }
    }
}

/// The response for `err`.
pub fn error_response(err: BoxError, via: Option<&str>) -> Response<Body> {
    // A request whose body broke off leaves the connection's framing unknown: close it.
    let close = client_body_error(&*err).is_some();
    let (status, message, retry_after, info) = match err.downcast_ref::<ProxyError>() {
        Some(proxy) => {
            match proxy.kind() {
                ErrorKind::NoRoute | ErrorKind::BadRequest => {
                    tracing::debug!(error = %proxy, "request refused");
                }
                ErrorKind::ClientBody => {
                    tracing::info!(error = %proxy, "the client's request body failed");
                }
                _ => tracing::warn!(error = %proxy, "request failed"),
            }
            let info =
                (proxy.cluster().is_some() || proxy.backend().is_some()).then(|| UpstreamInfo {
                    cluster: proxy.cluster().cloned(),
                    backend: proxy.backend().cloned(),
                });
            (
                proxy.status(),
                proxy.public_message(),
                proxy.retry_after(),
                info,
            )
        }
        None if let Some(found) = client_body_error(&*err) => {
            tracing::info!(error = %err, "the client's request body failed");
            (found.status(), found.describe(), None, None)
        }
        None if is_timeout(&*err) => {
            tracing::warn!(error = %err, "request timed out");
            (StatusCode::GATEWAY_TIMEOUT, "timed out", None, None)
        }
        None => {
            tracing::error!(error = %err, "internal error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                None,
                None,
            )
        }
    };
    let text = format!(
        "{} {}: {message}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(seconds) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Some(via) = via
        && let Ok(v) = HeaderValue::from_str(&format!("1.1 {via}"))
    {
        headers.insert(header::VIA, v);
    }
    if let Some(info) = info {
        response.extensions_mut().insert(info);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http_body_util::BodyExt;

    use super::*;

    async fn text(r: Response<Body>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn maps_kinds_to_statuses() {
        for (kind, status) in [
            (ErrorKind::NoRoute, 404),
            (ErrorKind::NoBackend, 503),
            (ErrorKind::ConnectFailed, 503),
            (ErrorKind::ConnectTimeout, 504),
            (ErrorKind::Timeout, 504),
            (ErrorKind::UpstreamBroken, 502),
            (ErrorKind::Overloaded, 503),
            (ErrorKind::BadRequest, 400),
            (ErrorKind::ClientBody, 400),
        ] {
            let r = error_response(ProxyError::new(kind).into(), None);
            assert_eq!(r.status(), status, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn retry_after_via_and_upstream_info() {
        let err = ProxyError::new(ErrorKind::NoBackend)
            .with_cluster(Arc::from("app"))
            .with_retry_after(7);
        let r = error_response(err.into(), Some("director"));
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "7");
        assert_eq!(r.headers()["via"], "1.1 director");
        assert_eq!(
            r.extensions()
                .get::<UpstreamInfo>()
                .unwrap()
                .cluster
                .as_deref(),
            Some("app")
        );
        assert_eq!(
            text(r).await,
            "503 Service Unavailable: no backend is available\n"
        );
    }

    #[tokio::test]
    async fn client_body_errors_are_the_clients_and_close() {
        use crate::body::ClientBodyError;
        let timeout = ClientBodyError::Timeout(std::time::Duration::from_secs(30));
        let r = error_response(ProxyError::client_body(timeout).into(), None);
        assert_eq!(r.status(), 408);
        assert_eq!(r.headers()["connection"], "close");
        assert_eq!(
            text(r).await,
            "408 Request Timeout: the request body was not sent in time\n"
        );
        // Found in the chain of errors that are not a ProxyError too.
        let r = error_response(Box::new(ClientBodyError::TooLarge(10)), None);
        assert_eq!(r.status(), 413);
        assert_eq!(r.headers()["connection"], "close");
    }

    #[tokio::test]
    async fn other_errors_are_internal_or_timeouts() {
        let r = error_response("boom".into(), None);
        assert_eq!(r.status(), 500);
        let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        let r = error_response(timeout.into(), None);
        assert_eq!(r.status(), 504);
    }
}
