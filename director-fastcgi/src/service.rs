//! [`FastCgiService`]: the `tower::Service` that sends an `http::Request` to a FastCGI
//! application and returns its response, plus its [`ResponseFuture`].
//!
//! It is a leaf service (it wraps no inner service), so there is no `Layer`. Clones share one
//! connection pool. It is always ready: concurrency limits belong to the caller's layers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;

use crate::body::ResponseBody;
use crate::config::FastCgiConfig;
use crate::conn::FastCgiAddr;
use crate::error::{BoxError, Error};
use crate::exchange::{self, Shared};
use crate::pool::Pool;

/// A FastCGI client for one application address.
#[derive(Clone)]
pub struct FastCgiService {
    shared: Arc<Shared>,
}

// === impl FastCgiService ===

impl FastCgiService {
    /// A client for the application at `addr`.
    pub fn new(addr: impl Into<FastCgiAddr>, config: FastCgiConfig) -> Self {
        let pool = Pool::new(config.max_idle_connections, config.idle_timeout);
        Self {
            shared: Arc::new(Shared {
                addr: addr.into(),
                config,
                pool,
            }),
        }
    }

    /// The application's address.
    pub fn addr(&self) -> &FastCgiAddr {
        &self.shared.addr
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &FastCgiConfig {
        &self.shared.config
    }

    /// How many idle connections wait in the pool.
    pub fn idle_connections(&self) -> usize {
        self.shared.pool.len()
    }
}

impl fmt::Debug for FastCgiService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastCgiService")
            .field("addr", &self.shared.addr)
            .field("idle_connections", &self.shared.pool.len())
            .finish()
    }
}

impl<B> tower_service::Service<Request<B>> for FastCgiService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        ResponseFuture {
            inner: Box::pin(exchange::run(self.shared.clone(), req)),
        }
    }
}

/// The future of [`FastCgiService::call`]: resolves once the CGI header block arrived.
/// Dropping it is a client abort.
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Error>> + Send>>,
}

// === impl ResponseFuture ===

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
