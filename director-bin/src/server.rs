//! Listeners and connections: accept, serve HTTP/1.1 and h2c on the same port, drain on shutdown.
//!
//! Every phase a client controls has a timer (see [`silence`]): a connection that sends nothing,
//! half an h2 preface, or no request head in time is closed at `header-read-timeout`, and an idle
//! one at `keep-alive-timeout`. Each listener holds at most `max-connections` connections: at the
//! limit accepting pauses (a permit taken before accept, returned when the connection ends) rather
//! than running out of file descriptors.
//!
//! TCP listeners bound to `[::]` are dual-stack (IPv4 clients arrive as mapped addresses and are
//! logged as IPv4). UNIX listeners replace a stale socket file left by a previous run, but refuse
//! to take over a socket another process is still serving.

mod silence;

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
    server::conn::auto,
    service::TowerToHyperService,
};
use socket2::{Domain, Socket, Type};
use tokio::{
    net::{TcpListener, UnixListener},
    sync::Semaphore,
};
use tower::Service;

use self::silence::{Activity, Expiry, InFlight, Timeouts};

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
    /// How long a client may take to send its first request head (from accept), or a later one
    /// (from its first byte).
    pub header_read_timeout: Duration,
    /// How long a connection may stay idle between requests.
    pub keep_alive_timeout: Duration,
    /// How long a write to a client may make no progress while it is sent a response.
    pub send_timeout: Duration,
    /// How long a client may send no request body bytes while they are awaited.
    pub client_body_timeout: Duration,
    /// How long an upgraded connection may carry nothing either way.
    pub tunnel_idle_timeout: Duration,
    /// The largest request head, in bytes.
    pub max_header_size: usize,
    /// The most header fields in an HTTP/1 request head.
    pub max_headers: usize,
    /// The most connections each listener holds at once.
    pub max_connections: usize,
    /// The most concurrent streams on one HTTP/2 connection.
    pub h2_max_concurrent_streams: u32,
    /// How often HTTP/2 connections are pinged (`None`: never).
    pub h2_ping_interval: Option<Duration>,
    /// How long a ping may go unanswered.
    pub h2_ping_timeout: Duration,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_timeout: Duration,
}

impl ConnSettings {
    /// The settings of `[server]`.
    pub fn from_server(server: &ServerConfig) -> Self {
        ConnSettings {
            header_read_timeout: server.header_read_timeout.0,
            keep_alive_timeout: server.keep_alive_timeout.0,
            send_timeout: server.send_timeout.0,
            client_body_timeout: server.client_body_timeout.0,
            tunnel_idle_timeout: server.tunnel_idle_timeout.0,
            max_header_size: server.max_header_size,
            max_headers: server.max_headers,
            max_connections: server.max_connections,
            h2_max_concurrent_streams: server.h2_max_concurrent_streams,
            h2_ping_interval: Some(server.h2_ping_interval.0).filter(|d| !d.is_zero()),
            h2_ping_timeout: server.h2_ping_timeout.0,
            shutdown_timeout: server.shutdown_timeout.0,
        }
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            header_read: self.header_read_timeout,
            keep_alive: self.keep_alive_timeout,
            send: self.send_timeout,
        }
    }
}

/// Adapts the stack to hyper: boxes the body (as a [`ClientBody`]: its failures are the
/// client's, and it times out after `client-body-timeout` without bytes), attaches the
/// connection's [`ClientInfo`] (and to upgrade requests the tunnel idle timeout), counts
/// requests and response classes for the listener's FRONTEND row, and tells the connection's
/// [`Activity`] when a request starts and its response ends.
#[derive(Clone, Debug)]
struct WithClientInfo<S> {
    inner: S,
    info: ClientInfo,
    stats: Arc<FrontendStats>,
    activity: Arc<Activity>,
    client_body_timeout: Duration,
    tunnel_idle_timeout: Duration,
}

impl<S> Service<Request<Incoming>> for WithClientInfo<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<InFlightBody>;
    type Error = Infallible;
    type Future = Counted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        self.activity
            .request_started(req.version() == http::Version::HTTP_2);
        let in_flight = InFlight(self.activity.clone());
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
            in_flight: Some(in_flight),
        }
    }
}

pin_project_lite::pin_project! {
    /// A response future that counts the response's status class for its listener, and hands
    /// the request's [`InFlight`] mark to the response body, which ends it once written.
    #[derive(Debug)]
    struct Counted<F> {
        #[pin]
        inner: F,
        stats: Arc<FrontendStats>,
        in_flight: Option<InFlight>,
    }
}

impl<F: Future<Output = Result<Response<Body>, Infallible>>> Future for Counted<F> {
    type Output = Result<Response<InFlightBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = std::task::ready!(this.inner.poll(cx));
        this.stats.response(response.status().as_u16());
        // Handed to hyper as it is: no second box around the already boxed body.
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(response.map(|body| InFlightBody {
            body,
            _in_flight: in_flight,
        })))
    }
}

/// A response body that holds its request's [`InFlight`] mark until hyper drops it, written.
struct InFlightBody {
    body: Body,
    _in_flight: Option<InFlight>,
}

impl http_body::Body for InFlightBody {
    type Data = bytes::Bytes;
    type Error = director_core::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A client stream that adds the bytes it moves to its listener's counters.
struct CountedIo {
    inner: Box<dyn Stream>,
    stats: Arc<FrontendStats>,
    activity: Arc<Activity>,
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
            self.activity.bytes_read();
        }
        polled
    }
}

impl CountedIo {
    /// Counts a write's bytes, and tells the connection's timer whether the client reads.
    fn wrote(&self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Ready(Ok(n)) => {
                self.stats.add_bytes_out(*n as u64);
                self.activity.write_progressed();
            }
            Poll::Pending => self.activity.write_pending(),
            Poll::Ready(Err(_)) => {}
        }
    }
}

impl tokio::io::AsyncWrite for CountedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&polled);
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
        // The connection's own timer covers heads and idleness (`silence`): hyper's would
        // start at every idle moment and so cut keep-alive at the header timeout.
        .header_read_timeout(None)
        .max_headers(settings.max_headers)
        .max_buf_size(settings.max_header_size.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_size).unwrap_or(u32::MAX))
        .max_concurrent_streams(settings.h2_max_concurrent_streams)
        .keep_alive_interval(settings.h2_ping_interval)
        .keep_alive_timeout(settings.h2_ping_timeout);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Each connection task holds a sender; the drain ends when the last one is dropped.
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);

    let mut accept_tasks = tokio::task::JoinSet::new();
    for (listener, stats) in listeners {
        let (builder, stack, settings, stop, open) = (
            builder.clone(),
            stack.clone(),
            settings.clone(),
            stop_rx.clone(),
            open_tx.clone(),
        );
        accept_tasks.spawn(async move {
            accept_loop(listener, stats, builder, stack, settings, stop, open).await;
        });
    }
    drop(open_tx);

    shutdown.await;
    let _ = stop_tx.send(true);
    while accept_tasks.join_next().await.is_some() {}
    tracing::info!("stopped accepting; draining in-flight requests");
    match tokio::time::timeout(settings.shutdown_timeout, open_rx.recv()).await {
        Ok(_) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("shutdown timeout reached; closing the remaining connections"),
    }
}

/// Accepts on `listener` until `stop`, holding at most `max-connections` connections.
async fn accept_loop<S>(
    listener: Listener,
    stats: Arc<FrontendStats>,
    builder: auto::Builder<TokioExecutor>,
    stack: S,
    settings: ConnSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
    open: tokio::sync::mpsc::Sender<()>,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let max_connections = settings.max_connections.min(Semaphore::MAX_PERMITS);
    let limit = Arc::new(Semaphore::new(max_connections));
    stats.set_connection_limit(max_connections as u64);
    let timeouts = settings.timeouts();
    let mut last_limit_warning: Option<tokio::time::Instant> = None;
    let mut accept_errors = 0u32;
    loop {
        // The permit comes first: at the limit the listener stops accepting (clients wait in
        // the kernel's backlog) instead of taking descriptors until accept fails with EMFILE.
        let permit = match limit.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                stats.limit_reached();
                if last_limit_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                    last_limit_warning = Some(tokio::time::Instant::now());
                    tracing::warn!(
                        listener = %stats.name(),
                        max_connections,
                        "max-connections reached; accepting pauses until a connection ends"
                    );
                }
                tokio::select! {
                    permit = limit.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => return, // never closed
                    },
                    _ = stop.changed() => return,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = accept(&listener) => accepted,
            _ = stop.changed() => return,
        };
        let (io, info) = match accepted {
            Ok(pair) => {
                accept_errors = 0;
                pair
            }
            Err(err) => {
                // Usually out of descriptors (other listeners, upstreams): back off, doubling
                // from 10 ms to 1 s, so that the failure neither spins nor floods the log.
                let delay = accept_backoff(accept_errors);
                if accept_errors == 0 {
                    tracing::warn!(error = %err, listener = %stats.name(), "accept failed");
                }
                accept_errors = accept_errors.saturating_add(1);
                tokio::select! {
                    () = tokio::time::sleep(delay) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(CountedIo {
            inner: io,
            stats: stats.clone(),
            activity: activity.clone(),
        });
        let service = TowerToHyperService::new(WithClientInfo {
            inner: stack.clone(),
            info,
            stats: stats.clone(),
            activity: activity.clone(),
            client_body_timeout: settings.client_body_timeout,
            tunnel_idle_timeout: settings.tunnel_idle_timeout,
        });
        let conn = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        stats.connection_opened();
        let (stats, stop, open) = (stats.clone(), stop.clone(), open.clone());
        tokio::spawn(async move {
            serve_connection(conn, &activity, timeouts, &stats, stop).await;
            stats.connection_closed();
            drop((permit, open));
        });
    }
}

/// How long to wait after `failures` accept errors in a row.
fn accept_backoff(failures: u32) -> Duration {
    Duration::from_millis(10u64 << failures.min(7)).min(Duration::from_secs(1))
}

/// What ended a wait in [`serve_connection`].
enum Event {
    Ended(Result<(), Box<dyn std::error::Error + Send + Sync>>),
    Expired(Expiry),
    Stop,
}

/// Drives `conn` to its end: closes it when the client has been silent too long, sends
/// GOAWAY to an idle HTTP/2 client, and drains it gracefully at shutdown.
async fn serve_connection<C>(
    conn: auto::UpgradeableConnection<'static, TokioIo<CountedIo>, C, TokioExecutor>,
    activity: &Activity,
    timeouts: Timeouts,
    stats: &FrontendStats,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    C: hyper::service::HttpService<Incoming, ResBody = InFlightBody> + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    auto::UpgradeableConnection<'static, TokioIo<CountedIo>, C, TokioExecutor>:
        Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
{
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    loop {
        let event = tokio::select! {
            ended = conn.as_mut() => Event::Ended(ended),
            expiry = activity.expired(timeouts) => Event::Expired(expiry),
            _ = stop.wait_for(|stop| *stop), if !stopping => Event::Stop,
        };
        match event {
            Event::Ended(Ok(())) => return,
            Event::Ended(Err(err)) => {
                tracing::debug!(error = %err, "client connection ended with an error");
                return;
            }
            Event::Expired(Expiry::Close) => {
                stats.timed_out();
                tracing::debug!("client connection closed: silent past its timeout");
                return;
            }
            Event::Expired(Expiry::GoAway) => {
                stats.timed_out();
                conn.as_mut().graceful_shutdown();
                // A client that keeps the connection open after GOAWAY gets one more
                // header-read-timeout before it is closed.
                if tokio::time::timeout(timeouts.header_read, conn.as_mut())
                    .await
                    .is_err()
                {
                    tracing::debug!("idle HTTP/2 connection closed after GOAWAY");
                }
                return;
            }
            Event::Stop => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
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

/// Descriptors kept aside for the rest of the process: log files, the runtime, health probes,
/// the stats socket.
const FD_RESERVE: u64 = 64;

/// The descriptors `server`'s listeners may need at once: each connection of every listener, one
/// upstream connection for each traffic connection, and [`FD_RESERVE`].
pub fn fds_needed(server: &ServerConfig) -> u64 {
    let per_listener = server.max_connections as u64;
    let traffic = server.listen.len() as u64;
    let admin = server.admin_listen.len() as u64;
    per_listener
        .saturating_mul(traffic.saturating_mul(2).saturating_add(admin))
        .saturating_add(FD_RESERVE)
}

/// The soft limit to ask for: the hard limit when it is higher (as nginx and HAProxy do at
/// start-up), or `None` to leave it.
fn raised_fd_limit(soft: Option<u64>, hard: Option<u64>) -> Option<u64> {
    match (soft, hard) {
        (Some(soft), Some(hard)) if soft < hard => Some(hard),
        _ => None,
    }
}

/// Raises the open-files soft limit (`ulimit -n`) to the hard limit, then warns when it is lower
/// than [`fds_needed`]: past it, accept fails with EMFILE before `max-connections` is reached,
/// and so do upstream connections and health probes. Returns the limit in force (`None`:
/// unlimited).
pub fn check_fd_limit(server: &ServerConfig) -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(raised) = raised_fd_limit(limit.current, limit.maximum) {
        let wanted = rustix::process::Rlimit {
            current: Some(raised),
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => limit = wanted,
            Err(err) => tracing::warn!(error = %err, "cannot raise the open-files limit"),
        }
    }
    let needed = fds_needed(server);
    if let Some(soft) = limit.current.filter(|soft| *soft < needed) {
        tracing::warn!(
            ulimit_n = soft,
            needed,
            max_connections = server.max_connections,
            "the open-files limit (ulimit -n) is lower than max-connections for every listener \
             plus one upstream connection each; raise it (LimitNOFILE= in systemd) or lower \
             server.max-connections"
        );
    }
    limit.current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_fd_limit_is_raised_to_the_hard_one() {
        assert_eq!(raised_fd_limit(Some(1024), Some(524_288)), Some(524_288));
        assert_eq!(raised_fd_limit(Some(4096), Some(4096)), None);
        // An unlimited hard limit is not a value setrlimit takes for open files.
        assert_eq!(raised_fd_limit(Some(1024), None), None);
        assert_eq!(raised_fd_limit(None, None), None);
    }

    #[test]
    fn fds_needed_counts_every_listener_and_an_upstream_per_traffic_connection() {
        let server = ServerConfig {
            listen: vec!["127.0.0.1:0".into(), "[::1]:0".into()],
            admin_listen: vec!["127.0.0.1:0".into()],
            max_connections: 100,
            ..ServerConfig::default()
        };
        assert_eq!(fds_needed(&server), 100 * 2 + 100 * 2 + 100 + FD_RESERVE);
    }

    #[test]
    fn accept_backoff_doubles_to_a_second() {
        let delays: Vec<u64> = (0..10)
            .map(|n| accept_backoff(n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
    }
}
