//! Active probes: the [`Probe`] trait and the built-in HTTP and TCP probes.
//!
//! A probe is one attempt to talk to an endpoint, answering pass or fail. The monitor calls it
//! every interval, under its own timeout. The trait is object-safe (`Arc<dyn Probe>`) and any
//! closure returning a future becomes a probe through [`probe_fn`], which is how a FastCGI probe
//! from another crate plugs in:
//!
//! ```
//! use director_health::probe::{probe_fn, Probe, ProbeError};
//!
//! // Stands in for e.g. `director_fastcgi::probe(&settings)`.
//! async fn fastcgi_ping() -> Result<(), std::io::Error> { Ok(()) }
//!
//! let probe = probe_fn(|| async { fastcgi_ping().await.map_err(ProbeError::other) });
//! # let _ = &probe as &dyn Probe;
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
#[cfg(unix)]
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

pub mod http_probe;
pub mod tcp;

pub use http_probe::{ExpectedStatus, HttpProbe, HttpProbeBuilder};
pub use tcp::TcpProbe;

/// A boxed error, as at Tower service boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The future a [`Probe`] returns.
pub type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), ProbeError>> + Send + 'static>>;

/// One health check of one endpoint.
pub trait Probe: Send + Sync + 'static {
    /// Runs the check once. `Ok(())` is a pass.
    fn probe(&self) -> ProbeFuture;
}

impl<P: Probe + ?Sized> Probe for Arc<P> {
    fn probe(&self) -> ProbeFuture {
        (**self).probe()
    }
}

impl<P: Probe + ?Sized> Probe for Box<P> {
    fn probe(&self) -> ProbeFuture {
        (**self).probe()
    }
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The connection could not be opened.
    #[error("connect failed: {0}")]
    Connect(#[source] io::Error),
    /// The probe did not finish in time.
    #[error("probe timed out after {0:?}")]
    Timeout(Duration),
    /// The connection broke or the peer spoke no valid protocol.
    #[error("protocol error: {0}")]
    Protocol(#[source] BoxError),
    /// The endpoint answered with a status outside the expected set.
    #[error("unexpected status {0}")]
    Status(StatusCode),
    /// Any other failure (e.g. from a probe written elsewhere).
    #[error("{0}")]
    Other(#[source] BoxError),
}

impl ProbeError {
    /// Wraps any error as [`ProbeError::Other`].
    pub fn other(err: impl Into<BoxError>) -> Self {
        ProbeError::Other(err.into())
    }

    /// The kind of failure, without its details.
    pub fn failure(&self) -> ProbeFailure {
        match self {
            ProbeError::Connect(_) => ProbeFailure::Connect,
            ProbeError::Timeout(_) => ProbeFailure::Timeout,
            ProbeError::Protocol(_) => ProbeFailure::Protocol,
            ProbeError::Status(code) => ProbeFailure::Status(code.as_u16()),
            ProbeError::Other(_) => ProbeFailure::Other,
        }
    }
}

/// A [`ProbeError`]'s kind, cheap to copy into reports (HAProxy's `L4CON`, `L7STS`…).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFailure {
    /// The connection could not be opened.
    Connect,
    /// The probe did not finish in time.
    Timeout,
    /// The peer broke the exchange or spoke no valid protocol.
    Protocol,
    /// The endpoint answered with this unexpected status.
    Status(u16),
    /// Anything else.
    Other,
}

/// Where a probe connects: TCP (IPv4 or IPv6) or a UNIX socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A UNIX domain socket path.
    #[cfg(unix)]
    Unix(PathBuf),
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Self {
        Target::Tcp(addr)
    }
}

#[cfg(unix)]
impl From<PathBuf> for Target {
    fn from(path: PathBuf) -> Self {
        Target::Unix(path)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(addr) => addr.fmt(f),
            #[cfg(unix)]
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A probe made from a closure returning a future; see [`probe_fn`].
#[derive(Clone)]
pub struct ProbeFn<F> {
    f: F,
}

/// Turns `Fn() -> impl Future<Output = Result<(), ProbeError>>` into a [`Probe`].
pub fn probe_fn<F, Fut>(f: F) -> ProbeFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ProbeError>> + Send + 'static,
{
    ProbeFn { f }
}

impl<F, Fut> Probe for ProbeFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ProbeError>> + Send + 'static,
{
    fn probe(&self) -> ProbeFuture {
        Box::pin((self.f)())
    }
}

impl<F> fmt::Debug for ProbeFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeFn").finish_non_exhaustive()
    }
}
