//! The HTTP/1.1 transport to one backend, with a pool of keep-alive connections.
//!
//! Each backend owns one [`HttpTransport`]. A request first takes a [`Connection`] (an idle
//! pooled one, or a new one within the connect timeout), then sends on it. Splitting the two
//! steps is what lets a cluster try the next backend when connecting fails: the request has not
//! been touched yet, so it can go anywhere.
//!
//! A connection goes back to the pool when its response body has been read to the end (see
//! [`body::UpstreamBody`]); one whose body is dropped early, or that was upgraded, is closed.
//! The pool is a short per-backend list behind its own mutex, held only to push or pop, so
//! there is no lock shared between backends or across an await. A pool with idle connections
//! has one reaper task that closes each at `idle-timeout` (the backend sees the close even when
//! no request comes to reuse it); the task ends when the pool is empty.
//!
//! Timeouts, all inactivity timeouts as in x0: `connect` while connecting; `write` while a write
//! to the backend makes no progress ([`io::TimedIo`]); `read` while waiting for the response head
//! after the request body stopped flowing (not while the client is the one to wait for: that is
//! `client-body-timeout`), and between response body chunks. An upgraded connection (a tunnel)
//! is closed on both sides after [`TunnelIdleTimeout`] with no bytes either way.
//!
//! Who is to blame: a failure of the client's request body ([`crate::body::ClientBodyError`]
//! anywhere in the error's chain) becomes [`ErrorKind::ClientBody`], never a backend failure. A
//! response head that HTTP/1.1 does not allow (a status outside 100–599, or both
//! `Content-Length` and `Transfer-Encoding`, RFC 9112 §6.3) is refused as the backend's
//! [`ErrorKind::UpstreamBroken`] and its connection closed, so no client sees a framing the two
//! sides could read differently.

mod body;
mod io;

use std::{
    future::poll_fn,
    pin::pin,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    task::Poll,
    time::Duration,
};

use http::{Request, Response, StatusCode, header};
use http_body::Body as _;
use hyper::{client::conn::http1, upgrade::OnUpgrade};
use hyper_util::rt::TokioIo;
use tokio::{
    net::{TcpStream, UnixStream},
    time::Instant,
};

pub use self::body::UpstreamBody;
use self::{
    body::{PoolReturn, Progress, ProgressBody},
    io::{Active, Stream, TimedIo},
};
use crate::{
    addr::{BackendAddr, BackendUrl, prefix_path},
    body::{Body, client_body_error},
    error::{ErrorKind, ProxyError, is_timeout},
    headers::is_upgrade_request,
};

/// A transport to one backend other than Director's own HTTP/1.1 one (FastCGI, say).
///
/// It takes the request whole, so a cluster can move a failed request to another backend only
/// when the error says nothing was sent ([`ProxyError::was_sent`]) and the request had no body.
pub trait Transport: Send + Sync + std::fmt::Debug + 'static {
    /// Sends `req` (its head already prepared for forwarding) and waits for the response head.
    fn send(
        &self,
        req: Request<Body>,
    ) -> crate::router::BoxFuture<Result<Response<Body>, ProxyError>>;
}

/// Timeouts and pool limits of a transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransportOptions {
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long the backend may stay silent while Director waits for response bytes.
    pub read_timeout: Duration,
    /// How long a write to the backend may make no progress.
    pub write_timeout: Duration,
    /// How many idle keep-alive connections to keep for this backend.
    pub max_idle: usize,
    /// How long an idle connection is kept before it is closed.
    pub idle_timeout: Duration,
    /// What a transport does with an exchange the client abandoned. The HTTP transport closes
    /// (HTTP has no abort message; `ignore` is the cluster's job, which holds the request's
    /// slot while it drains); a FastCGI transport can notify.
    pub on_client_abort: crate::config::ClientAbort,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_idle: 128,
            idle_timeout: Duration::from_secs(60),
            on_client_abort: crate::config::ClientAbort::Close,
        }
    }
}

/// How long an upgraded connection (a WebSocket, say) may carry no bytes either way before
/// both sides are closed (`tunnel-idle-timeout`). The listener puts it on upgrade requests;
/// without it, [`TunnelIdleTimeout::DEFAULT`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelIdleTimeout(pub Duration);

impl TunnelIdleTimeout {
    /// Ten minutes: longer than any sensible keep-alive ping interval.
    pub const DEFAULT: Duration = Duration::from_secs(600);
}

/// The HTTP/1.1 transport to one backend address. Cheap to clone; clones share the pool.
#[derive(Clone, Debug)]
pub struct HttpTransport {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    addr: BackendAddr,
    /// Put before every request path (the backend URL's base path), without a trailing `/`.
    base_path: Option<Arc<str>>,
    opts: TransportOptions,
    idle: Mutex<Pool>,
    connects: AtomicUsize,
    tunnels: AtomicUsize,
}

/// The idle connections, oldest first, and whether a reaper task is watching them.
#[derive(Debug, Default)]
struct Pool {
    conns: Vec<Idle>,
    reaper: bool,
}

#[derive(Debug)]
struct Idle {
    tx: http1::SendRequest<Body>,
    since: Instant,
}

/// A connection taken from a transport, ready for one request.
#[derive(Debug)]
pub struct Connection {
    tx: http1::SendRequest<Body>,
    shared: Arc<Shared>,
    reused: bool,
}

// === impl HttpTransport ===

impl HttpTransport {
    /// A transport to `addr` with the given options.
    pub fn new(addr: BackendAddr, opts: TransportOptions) -> Self {
        Self::with_base_path(addr, None, opts)
    }

    /// A transport to the backend at `url`: its address, and its base path put before every
    /// request path (`/dir` goes out as `/base/dir`).
    pub fn for_url(url: &BackendUrl, opts: TransportOptions) -> Self {
        Self::with_base_path(url.addr.clone(), url.base_path.clone(), opts)
    }

    fn with_base_path(
        addr: BackendAddr,
        base_path: Option<Arc<str>>,
        opts: TransportOptions,
    ) -> Self {
        HttpTransport {
            shared: Arc::new(Shared {
                addr,
                base_path,
                opts,
                idle: Mutex::new(Pool::default()),
                connects: AtomicUsize::new(0),
                tunnels: AtomicUsize::new(0),
            }),
        }
    }

    /// The backend address.
    pub fn addr(&self) -> &BackendAddr {
        &self.shared.addr
    }

    /// The path put before every request path, if the backend URL has one.
    pub fn base_path(&self) -> Option<&str> {
        self.shared.base_path.as_deref()
    }

    /// The options this transport was built with.
    pub fn options(&self) -> &TransportOptions {
        &self.shared.opts
    }

    /// How many idle connections the pool holds now.
    pub fn idle_connections(&self) -> usize {
        self.shared.idle.lock().expect("pool lock").conns.len()
    }

    /// How many upgraded connections (tunnels) to this backend are open now.
    pub fn open_tunnels(&self) -> usize {
        self.shared.tunnels.load(Ordering::Relaxed)
    }

    /// How many connections this transport has opened so far.
    pub fn connections_opened(&self) -> usize {
        self.shared.connects.load(Ordering::Relaxed)
    }

    /// Takes a pooled connection, or opens a new one.
    ///
    /// Errors are [`ErrorKind::ConnectFailed`] or [`ErrorKind::ConnectTimeout`], never "sent".
    pub async fn connect(&self) -> Result<Connection, ProxyError> {
        loop {
            let idle = self.shared.idle.lock().expect("pool lock").conns.pop();
            let Some(Idle { mut tx, since }) = idle else {
                break;
            };
            if tx.is_closed() || since.elapsed() > self.shared.opts.idle_timeout {
                continue;
            }
            // A connection is pooled when its last response body ended; hyper may need a moment
            // to notice, so wait for readiness rather than throw it away.
            if tx.is_ready() || tx.ready().await.is_ok() {
                return Ok(Connection {
                    tx,
                    shared: self.shared.clone(),
                    reused: true,
                });
            }
        }
        let tx = self.shared.connect_new().await?;
        Ok(Connection {
            tx,
            shared: self.shared.clone(),
            reused: false,
        })
    }

    /// Connects (or reuses a connection) and sends `req`.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Body>, ProxyError> {
        self.connect().await?.send(req).await
    }
}

// === impl Shared ===

impl Shared {
    async fn connect_new(&self) -> Result<http1::SendRequest<Body>, ProxyError> {
        let timeout = self.opts.connect_timeout;
        let connecting = async {
            Ok::<_, std::io::Error>(match &self.addr {
                BackendAddr::Tcp(addr) => {
                    let s = TcpStream::connect(addr).await?;
                    s.set_nodelay(true)?;
                    Stream::Tcp(s)
                }
                BackendAddr::Host(host, port) => {
                    let s = TcpStream::connect((&**host, *port)).await?;
                    s.set_nodelay(true)?;
                    Stream::Tcp(s)
                }
                BackendAddr::Unix(path) => Stream::Unix(UnixStream::connect(path).await?),
                BackendAddr::Cluster(name) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::Unsupported,
                        format!("cluster:{name} is not a network address"),
                    ));
                }
            })
        };
        let stream = match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                return Err(ProxyError::new(ErrorKind::ConnectFailed).with_source(err));
            }
            Err(elapsed) => {
                return Err(ProxyError::new(ErrorKind::ConnectTimeout).with_source(elapsed));
            }
        };
        self.connects.fetch_add(1, Ordering::Relaxed);
        let io = TokioIo::new(TimedIo::new(stream, self.opts.write_timeout));
        let (tx, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| ProxyError::new(ErrorKind::ConnectFailed).with_source(e))?;
        tokio::spawn(async move {
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(error = %err, "backend connection ended with an error");
            }
        });
        Ok(tx)
    }

    fn release(this: &Arc<Self>, tx: http1::SendRequest<Body>) {
        if tx.is_closed() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // Shutting down: nothing would close it later.
        };
        let start_reaper = {
            let mut pool = this.idle.lock().expect("pool lock");
            if pool.conns.len() >= this.opts.max_idle {
                return;
            }
            pool.conns.push(Idle {
                tx,
                since: Instant::now(),
            });
            !std::mem::replace(&mut pool.reaper, true)
        };
        if start_reaper {
            runtime.spawn(reap(Arc::downgrade(this)));
        }
    }
}

/// Closes a pool's idle connections as they reach `idle-timeout`, sleeping until the oldest
/// one's turn; ends when the pool is empty (the next release starts another) or the transport
/// is gone.
async fn reap(shared: Weak<Shared>) {
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let timeout = shared.opts.idle_timeout;
            let now = Instant::now();
            let mut pool = shared.idle.lock().expect("pool lock");
            // Dropping a sender closes its (idle) connection.
            pool.conns
                .retain(|c| !c.tx.is_closed() && now.saturating_duration_since(c.since) < timeout);
            match pool.conns.first() {
                // Pushed in order, so the first is the oldest.
                Some(oldest) => oldest.since + timeout,
                None => {
                    pool.reaper = false;
                    return;
                }
            }
        };
        tokio::time::sleep_until(next).await;
    }
}

// === impl Connection ===

impl Connection {
    /// Whether this connection came from the pool (rather than being opened for this request).
    pub fn is_reused(&self) -> bool {
        self.reused
    }

    /// Sends `req` (already in origin-form, with its headers prepared for the backend) and
    /// waits for the response head.
    ///
    /// A pooled connection that turns out to be closed before the request was written is
    /// replaced by a new one transparently. Errors after that are marked as "sent".
    pub async fn send(mut self, mut req: Request<Body>) -> Result<Response<Body>, ProxyError> {
        let client_upgrade = if is_upgrade_request(req.headers()) {
            req.extensions_mut().remove::<OnUpgrade>().map(|upgrade| {
                let idle = req
                    .extensions()
                    .get::<TunnelIdleTimeout>()
                    .map_or(TunnelIdleTimeout::DEFAULT, |t| t.0);
                (upgrade, idle)
            })
        } else {
            None
        };
        if let Some(base) = &self.shared.base_path {
            rebase(&mut req, base)?;
        }
        let progress = if req.body().is_end_stream() {
            None
        } else {
            let progress = Arc::new(Progress::default());
            req = req.map(|b| ProgressBody::wrap(b, progress.clone()));
            Some(progress)
        };
        let read_timeout = self.shared.opts.read_timeout;
        let mut response = loop {
            let sending = self.tx.try_send_request(req);
            match wait_for_head(sending, read_timeout, progress.as_deref()).await {
                Ok(Ok(response)) => break response,
                Ok(Err(mut err)) => match err.take_message() {
                    // Never written: a pooled connection the backend had closed.
                    Some(unsent) if self.reused => {
                        self.tx = self.shared.connect_new().await?;
                        self.reused = false;
                        req = unsent;
                    }
                    Some(_) => {
                        return Err(ProxyError::new(ErrorKind::UpstreamBroken)
                            .with_source(err.into_error()));
                    }
                    None => {
                        let err = err.into_error();
                        if client_body_error(&err).is_some() {
                            return Err(ProxyError::client_body(err));
                        }
                        let kind = if is_timeout(&err) {
                            ErrorKind::Timeout
                        } else {
                            ErrorKind::UpstreamBroken
                        };
                        return Err(ProxyError::new(kind).with_source(err).sent());
                    }
                },
                Err(()) => {
                    return Err(ProxyError::new(ErrorKind::Timeout)
                        .with_detail("the backend did not answer in time")
                        .sent());
                }
            }
        };

        // Returning drops the connection: it is never pooled after a head like these.
        if !(100..=599).contains(&response.status().as_u16()) {
            return Err(ProxyError::new(ErrorKind::UpstreamBroken)
                .with_detail("the backend sent an invalid status code")
                .sent());
        }
        if response.headers().contains_key(header::TRANSFER_ENCODING)
            && response.headers().contains_key(header::CONTENT_LENGTH)
        {
            return Err(ProxyError::new(ErrorKind::UpstreamBroken)
                .with_detail("the backend sent both Content-Length and Transfer-Encoding")
                .sent());
        }

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some((client_upgrade, idle)) = client_upgrade else {
                return Err(ProxyError::new(ErrorKind::UpstreamBroken)
                    .with_detail("the backend switched protocols unasked")
                    .sent());
            };
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let open = OpenTunnel::new(self.shared.clone());
            tokio::spawn(tunnel(client_upgrade, upstream_upgrade, idle, open));
            // The connection now belongs to the tunnel: never pool it.
            return Ok(response
                .map(|b| crate::body::boxed(UpstreamBody::new(b, None, progress, read_timeout))));
        }

        let pool_return = PoolReturn {
            shared: self.shared,
            tx: self.tx,
        };
        Ok(response.map(|b| {
            crate::body::boxed(UpstreamBody::new(
                b,
                Some(pool_return),
                progress,
                read_timeout,
            ))
        }))
    }
}

/// Puts the backend's base path before the request's (origin-form) path.
fn rebase(req: &mut Request<Body>, base: &str) -> Result<(), ProxyError> {
    let Some(path) = req.uri().path_and_query().map(|p| p.as_str()) else {
        return Ok(());
    };
    let Some(rebased) = prefix_path(base, path) else {
        return Ok(());
    };
    // Both parts are valid path characters, so this only fails on an absurd length.
    *req.uri_mut() = http::Uri::try_from(rebased).map_err(|e| {
        ProxyError::new(ErrorKind::BadRequest)
            .with_detail("the request path is too long for the backend's base path")
            .with_source(e)
    })?;
    Ok(())
}

/// Waits for the response head, failing after `read_timeout` without progress. While the
/// request body is still flowing (its frame counter moves), or the connection waits for the
/// client's next body bytes (`client-body-timeout` bounds that), the wait is extended.
async fn wait_for_head<F: std::future::Future>(
    sending: F,
    read_timeout: Duration,
    progress: Option<&Progress>,
) -> Result<F::Output, ()> {
    let mut sending = pin!(sending);
    let mut timer = pin!(tokio::time::sleep(read_timeout));
    let mut seen = 0;
    poll_fn(|cx| {
        if let Poll::Ready(out) = sending.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        while timer.as_mut().poll(cx).is_ready() {
            match progress {
                Some(p) if p.frames() != seen || p.waiting_for_client() => {
                    seen = p.frames();
                    timer.as_mut().reset(Instant::now() + read_timeout);
                }
                _ => return Poll::Ready(Err(())),
            }
        }
        Poll::Pending
    })
    .await
}

/// One open tunnel in its transport's count, for as long as it lives.
#[derive(Debug)]
struct OpenTunnel(Arc<Shared>);

impl OpenTunnel {
    fn new(shared: Arc<Shared>) -> Self {
        shared.tunnels.fetch_add(1, Ordering::Relaxed);
        OpenTunnel(shared)
    }
}

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.tunnels.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Copies bytes both ways between an upgraded client connection and an upgraded backend one,
/// until either side closes or neither sends anything for `idle`; then both are closed.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, idle: Duration, _open: OpenTunnel) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(err) => {
            tracing::debug!(error = %err, "upgrade did not complete");
            return;
        }
    };
    match copy_until_idle(TokioIo::new(client), TokioIo::new(upstream), idle).await {
        Some(Ok(_)) => {}
        Some(Err(err)) => tracing::debug!(error = %err, "tunnel ended with an error"),
        None => tracing::info!(idle_secs = idle.as_secs(), "closing an idle tunnel"),
    }
}

/// Copies bytes both ways until either side closes (the byte counts) or neither sends anything
/// for `idle` (`None`); both are dropped, so closed, on return.
async fn copy_until_idle<A, B>(a: A, b: B, idle: Duration) -> Option<std::io::Result<(u64, u64)>>
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let activity = Arc::new(AtomicUsize::new(0));
    let mut a = Active::new(a, activity.clone());
    let mut b = Active::new(b, activity.clone());
    let mut copy = pin!(tokio::io::copy_bidirectional(&mut a, &mut b));
    let mut timer = pin!(tokio::time::sleep(idle));
    let mut seen = 0;
    // The timer is re-armed once per wake-up that saw bytes, not once per read.
    poll_fn(|cx| {
        if let Poll::Ready(copied) = copy.as_mut().poll(cx) {
            return Poll::Ready(Some(copied));
        }
        let now = activity.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            timer.as_mut().reset(Instant::now() + idle);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests;
