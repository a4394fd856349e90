//! The HTTP probe: one request on a fresh connection, judged by its status code.
//!
//! Follows x0's probe (spec 7.4): `GET <path>` with `Host: <host>`, `x0-Health-Check: yes`,
//! `x0-Director: <cluster>` and `x0-Backend: <backend>`, a new connection per probe closed
//! afterwards (`Connection: close`), and the body ignored. Success means the status is in the
//! expected set (x0 rewrite's success-code list). HTTP/1.1 over TCP (IPv4/IPv6) or a UNIX socket.
//! hyper writes header names in lower case; HTTP header names are case-insensitive.

use std::fmt;
use std::ops::RangeInclusive;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Probe, ProbeError, ProbeFuture, Target};

/// Header marking a probe request.
pub const X0_HEALTH_CHECK: HeaderName = HeaderName::from_static("x0-health-check");
/// Header naming the cluster (x0: director) that sends the probe.
pub const X0_DIRECTOR: HeaderName = HeaderName::from_static("x0-director");
/// Header naming the probed backend.
pub const X0_BACKEND: HeaderName = HeaderName::from_static("x0-backend");

/// The status codes that count as a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedStatus {
    ranges: Vec<RangeInclusive<u16>>,
}

impl ExpectedStatus {
    /// Exactly these codes (x0 classic: `[200]`; rewrite: `[200, 204, 301, 302, 307, 308]`).
    pub fn codes(codes: impl IntoIterator<Item = u16>) -> Self {
        ExpectedStatus {
            ranges: codes.into_iter().map(|c| c..=c).collect(),
        }
    }

    /// One inclusive range of codes.
    pub fn range(range: RangeInclusive<u16>) -> Self {
        ExpectedStatus {
            ranges: vec![range],
        }
    }

    /// Whether `status` is a pass.
    pub fn matches(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        self.ranges.iter().any(|r| r.contains(&code))
    }
}

impl Default for ExpectedStatus {
    /// 200 to 399, as HAProxy's `httpchk`: redirects prove the application answers.
    fn default() -> Self {
        ExpectedStatus::range(200..=399)
    }
}

/// Builds an [`HttpProbe`]; validation happens in [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct HttpProbeBuilder {
    target: Target,
    method: Method,
    path: String,
    host: String,
    director: Option<String>,
    backend: Option<String>,
    expected: ExpectedStatus,
    timeout: Option<Duration>,
}

impl HttpProbeBuilder {
    /// The request method. Default: `GET`.
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// The request path and query. Default: `/`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The `Host` header. Default: `backend-healthcheck` (x0 classic).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// The `x0-Director` header: the cluster's name. Not sent if unset.
    pub fn director(mut self, name: impl Into<String>) -> Self {
        self.director = Some(name.into());
        self
    }

    /// The `x0-Backend` header: the backend's name. Not sent if unset.
    pub fn backend(mut self, name: impl Into<String>) -> Self {
        self.backend = Some(name.into());
        self
    }

    /// The statuses that pass. Default: [`ExpectedStatus::default`].
    pub fn expect(mut self, expected: ExpectedStatus) -> Self {
        self.expected = expected;
        self
    }

    /// A deadline for the whole probe, on top of the monitor's. Default: none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Checks the path and header values and builds the probe.
    pub fn build(self) -> Result<HttpProbe, http::Error> {
        // Building one request now surfaces every invalid part before the first probe.
        let uri = Uri::try_from(self.path.as_str())?;
        let mut headers = http::HeaderMap::new();
        headers.insert(HOST, HeaderValue::try_from(self.host.as_str())?);
        headers.insert(X0_HEALTH_CHECK, HeaderValue::from_static("yes"));
        if let Some(d) = &self.director {
            headers.insert(X0_DIRECTOR, HeaderValue::try_from(d.as_str())?);
        }
        if let Some(b) = &self.backend {
            headers.insert(X0_BACKEND, HeaderValue::try_from(b.as_str())?);
        }
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        Ok(HttpProbe {
            inner: Arc::new(Inner {
                target: self.target,
                method: self.method,
                uri,
                headers,
                expected: self.expected,
                timeout: self.timeout,
            }),
        })
    }
}

/// Probes an HTTP endpoint. Cheap to clone.
#[derive(Clone)]
pub struct HttpProbe {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    method: Method,
    uri: Uri,
    headers: http::HeaderMap,
    expected: ExpectedStatus,
    timeout: Option<Duration>,
}

// === impl HttpProbe ===

impl HttpProbe {
    /// Starts a builder for a probe of `target`.
    pub fn builder(target: impl Into<Target>) -> HttpProbeBuilder {
        HttpProbeBuilder {
            target: target.into(),
            method: Method::GET,
            path: "/".to_owned(),
            host: "backend-healthcheck".to_owned(),
            director: None,
            backend: None,
            expected: ExpectedStatus::default(),
            timeout: None,
        }
    }

    /// The endpoint probed.
    pub fn target(&self) -> &Target {
        &self.inner.target
    }

    /// The request this probe sends.
    pub fn request(&self) -> Request<Empty<Bytes>> {
        let mut req = Request::new(Empty::new());
        *req.method_mut() = self.inner.method.clone();
        *req.uri_mut() = self.inner.uri.clone();
        *req.headers_mut() = self.inner.headers.clone();
        req
    }

    /// Runs one probe and returns the status received (whether expected or not).
    pub async fn status(&self) -> Result<StatusCode, ProbeError> {
        let fut = self.exchange();
        match self.inner.timeout {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| ProbeError::Timeout(t))?,
            None => fut.await,
        }
    }

    async fn exchange(&self) -> Result<StatusCode, ProbeError> {
        let req = self.request();
        match &self.inner.target {
            Target::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(ProbeError::Connect)?;
                // Probes are tiny; waiting for Nagle would only add latency to the measurement.
                let _ = stream.set_nodelay(true);
                exchange(stream, req).await
            }
            #[cfg(unix)]
            Target::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(ProbeError::Connect)?;
                exchange(stream, req).await
            }
        }
    }
}

impl Probe for HttpProbe {
    fn probe(&self) -> ProbeFuture {
        let this = self.clone();
        Box::pin(async move {
            let status = this.status().await?;
            if this.inner.expected.matches(status) {
                Ok(())
            } else {
                Err(ProbeError::Status(status))
            }
        })
    }
}

impl fmt::Debug for HttpProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProbe")
            .field("target", &self.inner.target)
            .field("method", &self.inner.method)
            .field("uri", &self.inner.uri)
            .field("expected", &self.inner.expected)
            .finish_non_exhaustive()
    }
}

/// Sends `req` on `io` with hyper's HTTP/1 client connection and returns the response status.
async fn exchange<IO>(io: IO, req: Request<Empty<Bytes>>) -> Result<StatusCode, ProbeError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let protocol = |e: hyper::Error| ProbeError::Protocol(Box::new(e));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(protocol)?;
    let mut conn = pin!(conn);
    let mut response = pin!(sender.send_request(req));
    // The connection future must be driven for the response to arrive; it may also finish first
    // (the peer closed after answering), in which case the response is already delivered.
    let result = tokio::select! {
        biased;
        res = &mut response => res,
        done = &mut conn => {
            done.map_err(protocol)?;
            response.await
        }
    };
    result.map(|res| res.status()).map_err(protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_status_sets() {
        let d = ExpectedStatus::default();
        assert!(d.matches(StatusCode::OK));
        assert!(d.matches(StatusCode::FOUND));
        assert!(!d.matches(StatusCode::NOT_FOUND));
        assert!(!d.matches(StatusCode::SERVICE_UNAVAILABLE));
        let classic = ExpectedStatus::codes([200]);
        assert!(classic.matches(StatusCode::OK));
        assert!(!classic.matches(StatusCode::NO_CONTENT));
    }

    #[test]
    fn request_carries_x0_headers() {
        let probe = HttpProbe::builder("127.0.0.1:1".parse::<std::net::SocketAddr>().unwrap())
            .path("/health?deep=1")
            .host("example.test")
            .director("app")
            .backend("b1")
            .method(Method::HEAD)
            .build()
            .unwrap();
        let req = probe.request();
        assert_eq!(req.method(), Method::HEAD);
        assert_eq!(req.uri(), "/health?deep=1");
        let h = req.headers();
        assert_eq!(h[HOST], "example.test");
        assert_eq!(h[X0_HEALTH_CHECK], "yes");
        assert_eq!(h[X0_DIRECTOR], "app");
        assert_eq!(h[X0_BACKEND], "b1");
        assert_eq!(h[CONNECTION], "close");
    }

    #[test]
    fn optional_headers_are_left_out() {
        let probe = HttpProbe::builder("[::1]:1".parse::<std::net::SocketAddr>().unwrap())
            .build()
            .unwrap();
        let req = probe.request();
        assert_eq!(req.uri(), "/");
        assert_eq!(req.headers()[HOST], "backend-healthcheck");
        assert!(!req.headers().contains_key(X0_DIRECTOR));
        assert!(!req.headers().contains_key(X0_BACKEND));
    }

    #[test]
    fn invalid_parts_are_rejected() {
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(HttpProbe::builder(addr).path("no spaces").build().is_err());
        assert!(HttpProbe::builder(addr).host("bad\nhost").build().is_err());
        assert!(HttpProbe::builder(addr).backend("x\r").build().is_err());
    }
}
