//! Passive health: live requests that fail count toward `fall`, so a dead endpoint leaves
//! rotation without waiting for the next probe.
//!
//! [`PassiveHealthLayer`] wraps the service that talks to one endpoint (the transport, innermost
//! in a request's way) and reports every outcome to that endpoint's [`HealthHandle`]: errors are
//! classified by [`classify_error`] and 5xx responses count when
//! [`PassiveConfig::server_errors`] is on; a 5xx that does not count is neither a success nor a
//! failure. Any other response is a success ([`HealthHandle::report_success`]). A request whose
//! future is dropped (client gone) reports nothing. Callers that know more than an error chain
//! tells can call [`HealthHandle::report_failure`] themselves instead, or
//! [`HealthHandle::report_failure_capped`] to let a cap (a share of a cluster) veto an ejection.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::monitor::HealthHandle;
use crate::probe::BoxError;

/// Kinds of live failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The connection could not be opened (refused, unreachable).
    Connect,
    /// The connection broke: reset, aborted, or closed before a complete response.
    Reset,
    /// The endpoint did not answer in time.
    Timeout,
    /// The endpoint answered 5xx.
    ServerError,
    /// Any other error on the way to the endpoint (protocol errors and the like).
    Other,
}

/// Which live failures count toward `fall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveConfig {
    /// Master switch. Default: on (x0 marks a backend offline on any proxying failure).
    pub enabled: bool,
    /// Whether timeouts count. Default: on.
    pub timeouts: bool,
    /// Whether 5xx responses count. Default: off (a 5xx is an answer, often from the
    /// application rather than a sick server).
    pub server_errors: bool,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        PassiveConfig {
            enabled: true,
            timeouts: true,
            server_errors: false,
        }
    }
}

impl PassiveConfig {
    /// Passive health off: only probes decide.
    pub fn disabled() -> Self {
        PassiveConfig {
            enabled: false,
            ..PassiveConfig::default()
        }
    }

    /// Whether a failure of `kind` counts toward `fall`.
    pub fn counts(&self, kind: FailureKind) -> bool {
        self.enabled
            && match kind {
                FailureKind::Connect | FailureKind::Reset | FailureKind::Other => true,
                FailureKind::Timeout => self.timeouts,
                FailureKind::ServerError => self.server_errors,
            }
    }
}

/// Classifies an error by walking its source chain for `std::io::Error` or `hyper::Error`.
pub fn classify_error(err: &(dyn StdError + 'static)) -> FailureKind {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable
                | io::ErrorKind::AddrNotAvailable
                | io::ErrorKind::NotFound => FailureKind::Connect,
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => FailureKind::Reset,
                io::ErrorKind::TimedOut => FailureKind::Timeout,
                _ => FailureKind::Other,
            };
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return FailureKind::Timeout;
            }
            // An io::Error further down says more; otherwise a cut-short message is a reset.
            if h.source().is_none() && h.is_incomplete_message() {
                return FailureKind::Reset;
            }
        }
        cur = e.source();
    }
    FailureKind::Other
}

/// Wraps an endpoint's service so its outcomes feed the endpoint's health.
#[derive(Debug, Clone)]
pub struct PassiveHealthLayer {
    handle: HealthHandle,
}

// === impl PassiveHealthLayer ===

impl PassiveHealthLayer {
    /// A layer reporting to `handle`.
    pub fn new(handle: HealthHandle) -> Self {
        PassiveHealthLayer { handle }
    }
}

impl<S> Layer<S> for PassiveHealthLayer {
    type Service = PassiveHealth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PassiveHealth::new(inner, self.handle.clone())
    }
}

/// A service reporting each response or error of `S` to a [`HealthHandle`].
#[derive(Debug, Clone)]
pub struct PassiveHealth<S> {
    inner: S,
    handle: HealthHandle,
}

// === impl PassiveHealth ===

impl<S> PassiveHealth<S> {
    /// Wraps `inner`, reporting to `handle`.
    pub fn new(inner: S, handle: HealthHandle) -> Self {
        PassiveHealth { inner, handle }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, B> Service<Req> for PassiveHealth<S>
where
    S: Service<Req, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<B>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Not being ready is back-pressure, not a health signal.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            handle: Some(self.handle.clone()),
        }
    }
}

pin_project! {
    /// Response future of [`PassiveHealth`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        handle: Option<HealthHandle>,
    }
}

// === impl ResponseFuture ===

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx)).map_err(Into::into);
        if let Some(handle) = this.handle.take() {
            match &result {
                Ok(res) if res.status().is_server_error() => {
                    handle.report_failure(FailureKind::ServerError);
                }
                Ok(_) => handle.report_success(),
                Err(err) => {
                    handle.report_failure(classify_error(&**err));
                }
            }
        }
        Poll::Ready(result)
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
