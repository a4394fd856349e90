//! Listeners and connections: accept, serve HTTP/1.1 and h2c on the same port, drain on shutdown.
//!
//! TCP listeners bound to `[::]` are dual-stack (IPv4 clients arrive as mapped addresses and are
//! logged as IPv4). UNIX listeners replace a stale socket file left by a previous run, but refuse
//! to take over a socket another process is still serving.

use std::{
    convert::Infallible,
    future::Future,
    io,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use director_core::{
    Body, body::ClientBody, client_info::ClientInfo, stats::FrontendStats,
    transport::TunnelIdleTimeout,
};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, UnixListener};
use tower::Service;

use crate::config::{ListenAddr, ServerConfig};

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// UNIX socket.
    Unix(UnixListener, std::path::PathBuf),
}

impl Listener {
    /// Binds `addr` (call inside a Tokio runtime).
    pub fn bind(addr: &ListenAddr) -> io::Result<Listener> {
        match addr {
            ListenAddr::Tcp(sa) => {
                let socket = Socket::new(Domain::for_address(*sa), Type::STREAM, None)?;
                if sa.is_ipv6() && sa.ip().is_unspecified() {
                    socket.set_only_v6(false)?;
                }
                socket.set_reuse_address(true)?;
                socket.set_nonblocking(true)?;
                socket.bind(&(*sa).into())?;
                socket.listen(1024)?;
                TcpListener::from_std(socket.into()).map(Listener::Tcp)
            }
            ListenAddr::Unix(path) => {
                remove_stale_socket(path)?;
                UnixListener::bind(path).map(|l| Listener::Unix(l, path.clone()))
            }
        }
    }

    /// The address it actually listens on (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            Listener::Unix(_, path) => Ok(ListenAddr::Unix(path.clone())),
        }
    }
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by another process", path.display()),
                ));
            }
            std::fs::remove_file(path)
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Connection settings from `[server]`.
#[derive(Clone, Debug)]
pub struct ConnSettings {
    /// How long a client may take to send a request head.
    pub header_read_timeout: Duration,
    /// How long a client may send no request body bytes while they are awaited.
    pub client_body_timeout: Duration,
    /// How long an upgraded connection may carry nothing either way.
    pub tunnel_idle_timeout: Duration,
    /// The largest request head, in bytes.
    pub max_header_size: usize,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_timeout: Duration,
}

impl ConnSettings {
    /// The settings of `[server]`.
    pub fn from_server(server: &ServerConfig) -> Self {
        ConnSettings {
            header_read_timeout: server.header_read_timeout.0,
            client_body_timeout: server.client_body_timeout.0,
            tunnel_idle_timeout: server.tunnel_idle_timeout.0,
            max_header_size: server.max_header_size,
            shutdown_timeout: server.shutdown_timeout.0,
        }
    }
}

/// Adapts the stack to hyper: boxes the body (as a [`ClientBody`]: its failures are the
/// client's, and it times out after `client-body-timeout` without bytes), attaches the
/// connection's [`ClientInfo`] (and to upgrade requests the tunnel idle timeout), and counts
/// requests and response classes for the listener's FRONTEND row.
#[derive(Clone, Debug)]
struct WithClientInfo<S> {
    inner: S,
    info: ClientInfo,
    stats: Arc<FrontendStats>,
    client_body_timeout: Duration,
    tunnel_idle_timeout: Duration,
}

impl<S> Service<Request<Incoming>> for WithClientInfo<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Counted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let mut req = req.map(|b| ClientBody::wrap(b, self.client_body_timeout));
        req.extensions_mut().insert(self.info.clone());
        if req.headers().contains_key(http::header::UPGRADE) {
            req.extensions_mut()
                .insert(TunnelIdleTimeout(self.tunnel_idle_timeout));
        }
        self.stats.request();
        Counted {
            inner: self.inner.call(req),
            stats: self.stats.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A response future that counts the response's status class for its listener.
    #[derive(Debug)]
    struct Counted<F> {
        #[pin]
        inner: F,
        stats: Arc<FrontendStats>,
    }
}

impl<F: Future<Output = Result<Response<Body>, Infallible>>> Future for Counted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let polled = this.inner.poll(cx);
        if let Poll::Ready(Ok(response)) = &polled {
            this.stats.response(response.status().as_u16());
        }
        polled
    }
}

/// A client stream that adds the bytes it moves to its listener's counters.
struct CountedIo {
    inner: Box<dyn Stream>,
    stats: Arc<FrontendStats>,
}

impl tokio::io::AsyncRead for CountedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.stats.add_bytes_in(read as u64);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for CountedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.stats.add_bytes_out(*n as u64);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &polled {
            self.stats.add_bytes_out(*n as u64);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counters for each listener, named by address (the FRONTEND rows of HAProxy's stats).
pub fn frontend_stats(listeners: &[Listener]) -> Vec<Arc<FrontendStats>> {
    listeners
        .iter()
        .map(|l| {
            let name = match l.local_addr() {
                Ok(ListenAddr::Tcp(sa)) => sa.to_string(),
                Ok(ListenAddr::Unix(path)) => format!("unix@{}", path.display()),
                Err(_) => "listener".to_owned(),
            };
            Arc::new(FrontendStats::new(name))
        })
        .collect()
}

/// Serves `listeners` with `stack` until `shutdown` resolves, then drains in-flight requests for
/// up to the shutdown timeout.
pub async fn serve<S>(
    listeners: Vec<Listener>,
    stack: S,
    settings: ConnSettings,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let stats = frontend_stats(&listeners);
    serve_counted(
        listeners.into_iter().zip(stats).collect(),
        stack,
        settings,
        shutdown,
    )
    .await;
}

/// Like [`serve`], counting each listener's traffic in its [`FrontendStats`].
pub async fn serve_counted<S>(
    listeners: Vec<(Listener, Arc<FrontendStats>)>,
    stack: S,
    settings: ConnSettings,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_header_size.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_size).unwrap_or(u32::MAX));
    let graceful = std::sync::Arc::new(GracefulShutdown::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    let (client_body_timeout, tunnel_idle_timeout) =
        (settings.client_body_timeout, settings.tunnel_idle_timeout);
    let mut accept_tasks = tokio::task::JoinSet::new();
    for (listener, stats) in listeners {
        let (builder, stack, graceful, mut stop) = (
            builder.clone(),
            stack.clone(),
            graceful.clone(),
            stop_rx.clone(),
        );
        accept_tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = accept(&listener) => accepted,
                    _ = stop.changed() => return,
                };
                let (io, info) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // Usually out of file descriptors; back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let io = TokioIo::new(CountedIo {
                    inner: io,
                    stats: stats.clone(),
                });
                let service = TowerToHyperService::new(WithClientInfo {
                    inner: stack.clone(),
                    info,
                    stats: stats.clone(),
                    client_body_timeout,
                    tunnel_idle_timeout,
                });
                let conn = builder
                    .serve_connection_with_upgrades(io, service)
                    .into_owned();
                let conn = graceful.watch(conn);
                let stats = stats.clone();
                stats.connection_opened();
                tokio::spawn(async move {
                    if let Err(err) = conn.await {
                        tracing::debug!(error = %err, "client connection ended with an error");
                    }
                    stats.connection_closed();
                });
            }
        });
    }

    shutdown.await;
    let _ = stop_tx.send(true);
    while accept_tasks.join_next().await.is_some() {}
    tracing::info!("stopped accepting; draining in-flight requests");
    // Every accept task has ended, so this is the last reference.
    let graceful = std::sync::Arc::into_inner(graceful).expect("accept tasks have ended");
    match tokio::time::timeout(settings.shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("shutdown timeout reached; closing the remaining connections"),
    }
}

async fn accept(listener: &Listener) -> io::Result<(Box<dyn Stream>, ClientInfo)> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, remote) = l.accept().await?;
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().ok();
            Ok((
                Box::new(stream) as Box<dyn Stream>,
                ClientInfo::new(Some(remote), local, false),
            ))
        }
        Listener::Unix(l, _) => {
            let (stream, _) = l.accept().await?;
            Ok((Box::new(stream) as Box<dyn Stream>, ClientInfo::default()))
        }
    }
}

/// A client stream, TCP or UNIX.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}
