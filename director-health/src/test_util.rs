//! Test fixtures (feature `test-util`): a scriptable loopback HTTP backend that counts probes
//! and live requests separately, and a minimal one-connection-per-request client service.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::probe::http_probe::X0_HEALTH_CHECK;
use crate::probe::{BoxError, Target};

/// How a [`TestBackend`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// `200 OK` with body `ok`.
    Healthy,
    /// `503 Service Unavailable` to everything.
    Failing,
    /// Closes every connection without answering.
    Closing,
}

/// A loopback HTTP/1.1 backend. Stops when dropped.
pub struct TestBackend {
    target: Target,
    shared: Arc<BackendShared>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct BackendShared {
    behavior: AtomicU8,
    probes: AtomicU64,
    live: AtomicU64,
    closed: AtomicU64,
    last_probe: Mutex<Option<HeaderMap>>,
}

// === impl TestBackend ===

impl TestBackend {
    /// Starts a healthy backend on `127.0.0.1` with an ephemeral port.
    pub async fn start() -> io::Result<Self> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a healthy backend on `addr` (use a loopback address, e.g. `[::1]:0`).
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let target = Target::Tcp(listener.local_addr()?);
        let shared = Arc::new(BackendShared::default());
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, s.clone()));
            }
        });
        Ok(TestBackend {
            target,
            shared,
            task,
        })
    }

    /// Starts a healthy backend on a UNIX socket at `path`.
    #[cfg(unix)]
    pub fn bind_unix(path: impl Into<std::path::PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let listener = tokio::net::UnixListener::bind(&path)?;
        let shared = Arc::new(BackendShared::default());
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, s.clone()));
            }
        });
        Ok(TestBackend {
            target: Target::Unix(path),
            shared,
            task,
        })
    }

    /// Where the backend listens.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The TCP address (panics for a UNIX backend).
    pub fn addr(&self) -> SocketAddr {
        match &self.target {
            Target::Tcp(addr) => *addr,
            #[cfg(unix)]
            Target::Unix(path) => panic!("UNIX backend at {}", path.display()),
        }
    }

    /// Changes how the backend answers from now on.
    pub fn set_behavior(&self, behavior: Behavior) {
        self.shared.behavior.store(
            match behavior {
                Behavior::Healthy => 0,
                Behavior::Failing => 1,
                Behavior::Closing => 2,
            },
            Ordering::SeqCst,
        );
    }

    /// Requests received with `x0-Health-Check: yes`.
    pub fn probes(&self) -> u64 {
        self.shared.probes.load(Ordering::SeqCst)
    }

    /// Requests received without the probe header.
    pub fn live_requests(&self) -> u64 {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// Connections closed unanswered in [`Behavior::Closing`].
    pub fn closed_connections(&self) -> u64 {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// The headers of the last probe request.
    pub fn last_probe_headers(&self) -> Option<HeaderMap> {
        self.shared
            .last_probe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for TestBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestBackend")
            .field("target", &self.target)
            .field("probes", &self.probes())
            .field("live_requests", &self.live_requests())
            .finish()
    }
}

async fn serve<IO>(io: IO, shared: Arc<BackendShared>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if shared.behavior.load(Ordering::SeqCst) == 2 {
        shared.closed.fetch_add(1, Ordering::SeqCst);
        drop(io);
        return;
    }
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move {
            if req
                .headers()
                .get(X0_HEALTH_CHECK)
                .is_some_and(|v| v == "yes")
            {
                shared.probes.fetch_add(1, Ordering::SeqCst);
                *shared.last_probe.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(req.headers().clone());
            } else {
                shared.live.fetch_add(1, Ordering::SeqCst);
            }
            let (status, body) = match shared.behavior.load(Ordering::SeqCst) {
                0 => (StatusCode::OK, "ok"),
                _ => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            };
            let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
            *res.status_mut() = status;
            Ok::<_, std::convert::Infallible>(res)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

/// A client service sending each request on a new connection to one target; the response body
/// is read fully. Errors keep their `io::Error`/`hyper::Error` chain for
/// [`classify_error`](crate::passive::classify_error).
#[derive(Debug, Clone)]
pub struct TestClient {
    target: Target,
}

impl TestClient {
    /// A client for `target`.
    pub fn new(target: impl Into<Target>) -> Self {
        TestClient {
            target: target.into(),
        }
    }

    /// `GET path` through this client.
    pub async fn get(&self, path: &str) -> Result<Response<Bytes>, BoxError> {
        let req = Request::get(path).body(Empty::new())?;
        send(self.target.clone(), req).await
    }
}

impl tower_service::Service<Request<Empty<Bytes>>> for TestClient {
    type Response = Response<Bytes>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Bytes>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Empty<Bytes>>) -> Self::Future {
        Box::pin(send(self.target.clone(), req))
    }
}

async fn send(target: Target, req: Request<Empty<Bytes>>) -> Result<Response<Bytes>, BoxError> {
    match target {
        Target::Tcp(addr) => send_on(tokio::net::TcpStream::connect(addr).await?, req).await,
        #[cfg(unix)]
        Target::Unix(path) => send_on(tokio::net::UnixStream::connect(path).await?, req).await,
    }
}

async fn send_on<IO>(io: IO, req: Request<Empty<Bytes>>) -> Result<Response<Bytes>, BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let driver = tokio::spawn(conn);
    let result = async {
        let res = sender.send_request(req).await?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, BoxError>(Response::from_parts(parts, body))
    }
    .await;
    driver.abort();
    result
}
