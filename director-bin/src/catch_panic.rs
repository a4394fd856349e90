//! Turns a panic while handling a request into a 500 for that request alone.
//!
//! Without this, a panic in a service future would end the connection's task and the client
//! would see a reset with no explanation; with it, the client gets a 500 and the panic is logged.

use std::{
    any::Any,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    task::{Context, Poll},
};

use director_core::{Body, body};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// Adds [`CatchPanic`] to a stack.
#[derive(Clone, Copy, Debug, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

/// Answers 500 when the inner service panics.
#[derive(Clone, Debug)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for CatchPanic<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(future) => ResponseFuture {
                future: Some(future),
                panicked: None,
            },
            Err(panic) => ResponseFuture {
                future: None,
                panicked: Some(panic_response(&*panic)),
            },
        }
    }
}

pin_project! {
    /// The response future of [`CatchPanic`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        future: Option<F>,
        panicked: Option<Response<Body>>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(response) = this.panicked.take() {
            return Poll::Ready(Ok(response));
        }
        let Some(future) = this.future.as_mut().as_pin_mut() else {
            panic!("polled after completion");
        };
        // catch_unwind costs nothing unless a panic happens.
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => {
                this.future.set(None);
                Poll::Ready(Ok(panic_response(&*panic)))
            }
        }
    }
}

fn panic_response(panic: &(dyn Any + Send)) -> Response<Body> {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(panic = message, "a request handler panicked");
    let mut response = Response::new(body::full("500 Internal Server Error\n"));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

#[cfg(test)]
mod tests {
    use tower::{ServiceExt, service_fn};

    use super::*;

    #[tokio::test]
    async fn panics_become_500() {
        let svc = CatchPanicLayer.layer(service_fn(|req: Request<Body>| async move {
            if req.uri().path() == "/boom" {
                panic!("boom");
            }
            Ok::<_, std::convert::Infallible>(Response::new(body::empty()))
        }));
        let get = |p: &str| Request::get(p).body(body::empty()).unwrap();
        assert_eq!(
            svc.clone().oneshot(get("/boom")).await.unwrap().status(),
            500
        );
        assert_eq!(svc.oneshot(get("/ok")).await.unwrap().status(), 200);
    }
}
