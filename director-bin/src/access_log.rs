//! The access log: one line per request, written when its response body has been sent.
//!
//! The line names the client, method, path, status, cluster and backend (from the
//! [`UpstreamInfo`] the cluster attached), the body bytes sent and the duration up to the last
//! byte. A response the client abandons is still logged, when its body is dropped.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Instant,
};

use bytes::Bytes;
use director_core::{Body, BoxError, client_info::ClientInfo, cluster::UpstreamInfo};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::{Body as _, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// Adds [`AccessLog`] to a stack.
#[derive(Clone, Copy, Debug, Default)]
pub struct AccessLogLayer;

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog { inner }
    }
}

/// Logs one line per request.
#[derive(Clone, Debug)]
pub struct AccessLog<S> {
    inner: S,
}

#[derive(Debug)]
struct Entry {
    started: Instant,
    client: Option<std::net::SocketAddr>,
    method: Method,
    uri: Uri,
}

impl<S> Service<Request<Body>> for AccessLog<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let entry = Entry {
            started: Instant::now(),
            client: req.extensions().get::<ClientInfo>().and_then(|c| c.remote),
            method: req.method().clone(),
            uri: req.uri().clone(),
        };
        ResponseFuture {
            future: self.inner.call(req),
            entry: Some(entry),
        }
    }
}

pin_project! {
    /// The response future of [`AccessLog`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        entry: Option<Entry>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.future.poll(cx))?;
        let entry = this.entry.take().expect("polled after completion");
        let upstream = response.extensions().get::<UpstreamInfo>().cloned();
        let status = response.status();
        Poll::Ready(Ok(response.map(|body| {
            director_core::body::boxed(LoggedBody {
                inner: body,
                line: Some(Line {
                    entry,
                    status,
                    upstream,
                    bytes: 0,
                }),
            })
        })))
    }
}

#[derive(Debug)]
struct Line {
    entry: Entry,
    status: StatusCode,
    upstream: Option<UpstreamInfo>,
    bytes: u64,
}

impl Line {
    fn write(self, outcome: &str) {
        let upstream = self.upstream.unwrap_or(UpstreamInfo {
            cluster: None,
            backend: None,
        });
        let path = self
            .entry
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str());
        let duration_ms = self.entry.started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            target: "director::access",
            client = self.entry.client.map(|c| c.ip().to_canonical().to_string()).unwrap_or_else(|| "-".into()),
            method = %self.entry.method,
            path,
            status = self.status.as_u16(),
            cluster = upstream.cluster.as_deref().unwrap_or("-"),
            backend = upstream.backend.as_deref().unwrap_or("-"),
            bytes = self.bytes,
            duration_ms = (duration_ms * 1000.0).round() / 1000.0,
            outcome,
        );
    }
}

/// The response body, counting bytes and writing the line at its end.
#[derive(Debug)]
struct LoggedBody {
    inner: Body,
    line: Option<Line>,
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let (Some(line), Some(data)) = (&mut this.line, frame.data_ref()) {
                    line.bytes += data.len() as u64;
                }
                if this.inner.is_end_stream()
                    && let Some(line) = this.line.take()
                {
                    line.write("complete");
                }
            }
            Some(Err(_)) => {
                if let Some(line) = this.line.take() {
                    line.write("upstream-error");
                }
            }
            None => {
                if let Some(line) = this.line.take() {
                    line.write("complete");
                }
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(line) = self.line.take() {
            let outcome = if self.inner.is_end_stream() {
                "complete"
            } else {
                "client-aborted"
            };
            line.write(outcome);
        }
    }
}
