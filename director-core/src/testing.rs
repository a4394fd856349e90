//! Test fixtures: scriptable HTTP backends on loopback (feature `test-util`).
//!
//! A [`TestBackend`] answers by path, so one backend covers every scenario a proxy test needs,
//! and it records each request head it received so tests can assert on what the proxy sent:
//!
//! | path            | behaviour                                                        |
//! |-----------------|------------------------------------------------------------------|
//! | `/echo`         | streams the request body back                                    |
//! | `/sha256`       | reads the body, answers `<length> <sha256 hex>`                  |
//! | `/bytes/N`      | streams N bytes of [`pattern`] data                              |
//! | `/drip/N`       | streams N chunks of 1 KiB, 10 ms apart; counts bodies sent whole and cut off |
//! | `/status/N`     | answers with status N                                            |
//! | `/delay/MS`     | answers after MS milliseconds                                    |
//! | `/max-age/N`    | answers with `Cache-Control: max-age=N` and a request counter    |
//! | `/respond/...?h=v` | answers with each query pair as a header (percent-decoded), a request counter and the request's `Accept-Encoding`; 304 when `If-None-Match` equals its `etag` |
//! | `/stall`        | never answers                                                    |
//! | `/stall-body`   | sends the head and half of the body, then stalls                 |
//! | `/hangup`       | closes the connection without answering                          |
//! | `/hop-headers`  | answers with hop-by-hop fields, `Via` and `X-Sendfile` set        |
//! | `/upgrade`      | switches protocols and echoes raw bytes on the upgraded stream   |
//! | `/sendfile?path=P` | answers `X-Sendfile: P` (and `Content-Type: T` with `&type=T`), |
//! |                 | with `Set-Cookie`, `Cache-Control` and a body of its own          |
//! | `/accel?uri=U`  | the same with `X-Accel-Redirect: U`                              |
//! | anything else   | `200 backend <name>`                                             |
//!
//! [`TestBackend::set_failing`] makes every request (probes too) get 503 until it is turned off;
//! [`TestBackend::set_delay`] makes live requests wait before they are answered.
//!
//! Every response carries `x-backend: <name>`. The backend also tracks how many requests it
//! handles at once, overall and per value of the `x-test-class` request header, so tests can
//! check admission limits at the backend itself.

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, channel::Channel};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, UnixListener},
    task::JoinHandle,
};

use crate::{
    addr::BackendAddr,
    body::{self, Body, BoxError},
};

/// A "backend" that accepts TCP connections and resets them at once, counting them; it stops
/// when dropped.
#[derive(Debug)]
pub struct Resetter {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Resetter {
    /// Starts one on a free loopback port.
    pub async fn start() -> std::io::Result<Resetter> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_zero_linger();
                drop(stream);
            }
        });
        Ok(Resetter {
            addr,
            accepted,
            task,
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to put in a config.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many connections it has reset.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Resetter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `n`-th byte of the deterministic data `/bytes/N` serves.
pub fn pattern_byte(n: u64) -> u8 {
    (n.wrapping_mul(31) ^ (n >> 9)) as u8
}

/// `len` bytes of pattern data starting at `offset`.
pub fn pattern(offset: u64, len: usize) -> Bytes {
    (0..len as u64).map(|i| pattern_byte(offset + i)).collect()
}

/// The SHA-256 of the first `len` pattern bytes, as lowercase hex.
pub fn pattern_sha256(len: u64) -> String {
    let mut hasher = Sha256::new();
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(1 << 16);
        hasher.update(pattern(offset, n as usize));
        offset += n;
    }
    hex(&hasher.finalize())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A request head as the backend received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The method.
    pub method: Method,
    /// The request target.
    pub uri: Uri,
    /// The protocol version.
    pub version: Version,
    /// The header fields.
    pub headers: HeaderMap,
}

#[derive(Debug, Default)]
struct State {
    requests: AtomicUsize,
    connections: AtomicUsize,
    recorded: Mutex<Vec<RecordedRequest>>,
    // class → (in flight now, most at once)
    in_flight: Mutex<std::collections::HashMap<String, (usize, usize)>>,
    failing: std::sync::atomic::AtomicBool,
    delay_ms: std::sync::atomic::AtomicU64,
    // `/drip` bodies sent to their end, and cut off because the reader went away.
    drips_sent: AtomicUsize,
    drips_cut: AtomicUsize,
}

/// Counts a request in flight for its class until dropped.
struct InFlight {
    state: Arc<State>,
    classes: [String; 2],
}

impl InFlight {
    fn new(state: &Arc<State>, class: String) -> Self {
        let classes = [String::new(), class];
        let mut map = state.in_flight.lock().expect("in-flight lock");
        for c in &classes {
            let e = map.entry(c.clone()).or_default();
            e.0 += 1;
            e.1 = e.1.max(e.0);
        }
        drop(map);
        InFlight {
            state: state.clone(),
            classes,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self.state.in_flight.lock().expect("in-flight lock");
        for c in &self.classes {
            if let Some(e) = map.get_mut(c) {
                e.0 -= 1;
            }
        }
    }
}

/// A running test backend; it stops when dropped.
#[derive(Debug)]
pub struct TestBackend {
    name: Arc<str>,
    addr: BackendAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl TestBackend {
    /// Starts a backend called `name` on a TCP address such as `127.0.0.1:0` or `[::1]:0`.
    pub async fn tcp(name: &str, addr: &str) -> std::io::Result<TestBackend> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let (name, state) = (Arc::<str>::from(name), Arc::new(State::default()));
        let task = tokio::spawn(accept_loop(
            Listener::Tcp(listener),
            name.clone(),
            state.clone(),
        ));
        Ok(TestBackend {
            name,
            addr: BackendAddr::Tcp(local),
            state,
            task,
        })
    }

    /// Starts a backend called `name` on a UNIX socket at `path`.
    pub async fn unix(name: &str, path: &Path) -> std::io::Result<TestBackend> {
        let listener = UnixListener::bind(path)?;
        let (name, state) = (Arc::<str>::from(name), Arc::new(State::default()));
        let task = tokio::spawn(accept_loop(
            Listener::Unix(listener),
            name.clone(),
            state.clone(),
        ));
        Ok(TestBackend {
            name,
            addr: BackendAddr::Unix(path.to_owned()),
            state,
            task,
        })
    }

    /// The backend's name (sent as `x-backend`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its address.
    pub fn addr(&self) -> &BackendAddr {
        &self.addr
    }

    /// Its TCP socket address, if it listens on TCP.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.addr {
            BackendAddr::Tcp(addr) => Some(addr),
            _ => None,
        }
    }

    /// The URL to put in a config.
    pub fn url(&self) -> String {
        match &self.addr {
            BackendAddr::Tcp(addr) => format!("http://{addr}"),
            BackendAddr::Host(host, port) => format!("http://{host}:{port}"),
            BackendAddr::Unix(path) => format!("unix:{}", path.display()),
            BackendAddr::Cluster(name) => format!("cluster:{name}"),
        }
    }

    /// How many requests it has received.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// The request heads it has received, oldest first.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.state.recorded.lock().expect("recorded lock").clone()
    }

    /// Requests in flight now: all (`""`) or of one `x-test-class`.
    pub fn in_flight(&self, class: &str) -> usize {
        let map = self.state.in_flight.lock().expect("in-flight lock");
        map.get(class).map_or(0, |e| e.0)
    }

    /// The most requests it handled at once: all (`""`) or of one `x-test-class`.
    pub fn max_in_flight(&self, class: &str) -> usize {
        let map = self.state.in_flight.lock().expect("in-flight lock");
        map.get(class).map_or(0, |e| e.1)
    }

    /// Makes it answer every request with 503 (`true`), or serve normally again.
    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    /// Makes live (non-probe) requests wait `delay` before they are answered (zero: no wait).
    pub fn set_delay(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// How many live (non-probe) requests for `path` (without the query) it received.
    pub fn requests_to(&self, path: &str) -> usize {
        self.recorded()
            .iter()
            .filter(|r| r.uri.path() == path && !r.headers.contains_key("x0-health-check"))
            .count()
    }

    /// How many health probes it received (requests carrying `x0-health-check`).
    pub fn probes(&self) -> usize {
        self.recorded()
            .iter()
            .filter(|r| r.headers.contains_key("x0-health-check"))
            .count()
    }

    /// How many live (non-probe) requests it received.
    pub fn live_requests(&self) -> usize {
        self.requests() - self.probes()
    }

    /// How many `/drip` bodies it sent to their end.
    pub fn drips_sent(&self) -> usize {
        self.state.drips_sent.load(Ordering::SeqCst)
    }

    /// How many `/drip` bodies were cut off because the reader went away.
    pub fn drips_cut(&self) -> usize {
        self.state.drips_cut.load(Ordering::SeqCst)
    }

    /// Stops it and waits until its listener and connections are closed, so its port refuses
    /// connections when this returns (dropping only asks the runtime to stop it).
    pub async fn shutdown(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// The last request head it received.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.state
            .recorded
            .lock()
            .expect("recorded lock")
            .last()
            .cloned()
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

async fn accept_loop(listener: Listener, name: Arc<str>, state: Arc<State>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| {
                let _ = s.set_nodelay(true);
                serve(&mut connections, s, &name, &state)
            }),
            Listener::Unix(l) => l
                .accept()
                .await
                .map(|(s, _)| serve(&mut connections, s, &name, &state)),
        };
        if accepted.is_err() {
            return;
        }
    }
}

fn serve<S>(set: &mut tokio::task::JoinSet<()>, stream: S, name: &Arc<str>, state: &Arc<State>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    state.connections.fetch_add(1, Ordering::SeqCst);
    let (name, state) = (name.clone(), state.clone());
    set.spawn(async move {
        let service = service_fn(move |req| handle(req, name.clone(), state.clone()));
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
            .await;
    });
}

async fn handle(
    mut req: Request<Incoming>,
    name: Arc<str>,
    state: Arc<State>,
) -> Result<Response<Body>, BoxError> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    state
        .recorded
        .lock()
        .expect("recorded lock")
        .push(RecordedRequest {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
        });
    let class = req
        .headers()
        .get("x-test-class")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    // Counted until the handler returns the response head; bodies here are short.
    let _in_flight = InFlight::new(&state, class);
    let path = req.uri().path().to_owned();
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 && !req.headers().contains_key("x0-health-check") {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    if state.failing.load(Ordering::SeqCst) {
        let mut r = Response::new(body::full("failing\n"));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return Ok(r);
    }
    let mut response = match path.as_str() {
        "/echo" => Response::new(body::boxed(req.into_body())),
        "/sha256" => {
            let mut hasher = Sha256::new();
            let mut len = 0u64;
            let mut body = req.into_body();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    len += data.len() as u64;
                    hasher.update(&data);
                }
            }
            Response::new(body::full(format!("{len} {}", hex(&hasher.finalize()))))
        }
        "/stall" => {
            std::future::pending::<()>().await;
            unreachable!("pending never resolves")
        }
        "/stall-body" => {
            let (mut tx, rx) = Channel::<Bytes, Infallible>::new(1);
            tokio::spawn(async move {
                let _ = tx.send_data(Bytes::from_static(b"half")).await;
                // Hold the sender so the body neither ends nor fails.
                std::future::pending::<()>().await;
                drop(tx);
            });
            let mut r = Response::new(body::boxed(rx));
            r.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("8"));
            r
        }
        "/hangup" => return Err("hanging up".into()),
        "/hop-headers" => Response::builder()
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("via", "1.0 origin")
            .header("x-sendfile", "/etc/passwd")
            .header("set-cookie", "a=b")
            .body(body::full("hop"))?,
        "/upgrade" => {
            let protocol = req
                .headers()
                .get(http::header::UPGRADE)
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static("echo"));
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", protocol)
                .body(body::empty())?
        }
        "/sendfile" | "/accel" => {
            let header = if path == "/sendfile" {
                "x-sendfile"
            } else {
                "x-accel-redirect"
            };
            let key = if path == "/sendfile" { "path" } else { "uri" };
            let query = req.uri().query().unwrap_or_default();
            let mut r = Response::builder()
                .header("set-cookie", "sendfile=1")
                .header("cache-control", "private, max-age=60");
            if let Some(target) = query_param(query, key) {
                r = r.header(header, target);
            }
            if let Some(t) = query_param(query, "type") {
                r = r.header("content-type", t);
            }
            r.body(body::full("the backend's own body\n"))?
        }
        p if p.starts_with("/drip/") => {
            let chunks: usize = p["/drip/".len()..].parse()?;
            let (mut tx, rx) = Channel::<Bytes, Infallible>::new(1);
            let state = state.clone();
            tokio::spawn(async move {
                for _ in 0..chunks {
                    if tx.send_data(Bytes::from(vec![b'.'; 1024])).await.is_err() {
                        state.drips_cut.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                state.drips_sent.fetch_add(1, Ordering::SeqCst);
            });
            let mut r = Response::new(body::boxed(rx));
            r.headers_mut().insert(
                http::header::CONTENT_LENGTH,
                HeaderValue::from(chunks as u64 * 1024),
            );
            r
        }
        p if p.starts_with("/bytes/") => {
            let total: u64 = p["/bytes/".len()..].parse()?;
            let (mut tx, rx) = Channel::<Bytes, Infallible>::new(4);
            tokio::spawn(async move {
                let mut offset = 0u64;
                while offset < total {
                    let n = (total - offset).min(1 << 16) as usize;
                    if tx.send_data(pattern(offset, n)).await.is_err() {
                        return;
                    }
                    offset += n as u64;
                }
            });
            let mut r = Response::new(body::boxed(rx));
            r.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(total));
            r
        }
        p if p.starts_with("/max-age/") => {
            let secs: u64 = p["/max-age/".len()..].parse()?;
            let n = state.requests.load(Ordering::SeqCst);
            Response::builder()
                .header("cache-control", format!("max-age={secs}"))
                .body(body::full(format!("response {n} of {name}\n")))?
        }
        p if p.starts_with("/respond/") => respond(&req, &name, &state)?,
        p if p.starts_with("/delay/") => {
            let ms: u64 = p["/delay/".len()..].parse()?;
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            Response::new(body::full(format!("delayed {ms}ms\n")))
        }
        p if p.starts_with("/status/") => {
            let code: u16 = p["/status/".len()..].parse()?;
            let mut r = Response::new(body::full(format!("status {code}")));
            *r.status_mut() = StatusCode::from_u16(code)?;
            r
        }
        _ => Response::new(body::full(format!("backend {name}\n"))),
    };
    response
        .headers_mut()
        .insert("x-backend", HeaderValue::from_str(&name)?);
    Ok(response)
}

/// `/respond/...?name=value&...`: each query pair becomes a response header (`status=N` sets
/// the status); the body counts requests and echoes `Accept-Encoding` so `Vary` variants differ.
fn respond<T>(req: &Request<T>, name: &str, state: &State) -> Result<Response<Body>, BoxError> {
    let mut r = Response::builder();
    let mut etag = None;
    for pair in req.uri().query().unwrap_or("").split('&') {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        let v = percent_decode(v);
        match k {
            "status" => r = r.status(v.parse::<u16>()?),
            _ => {
                if k.eq_ignore_ascii_case("etag") {
                    etag = Some(v.clone());
                }
                r = r.header(k, v);
            }
        }
    }
    let inm = req.headers().get(http::header::IF_NONE_MATCH);
    if let (Some(etag), Some(inm)) = (etag, inm)
        && inm.as_bytes() == etag.as_bytes()
    {
        return Ok(r.status(StatusCode::NOT_MODIFIED).body(body::empty())?);
    }
    let n = state.requests.load(Ordering::SeqCst);
    let ae = req
        .headers()
        .get(http::header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    Ok(r.body(body::full(format!("response {n} of {name} ae={ae}\n")))?)
}

/// Decodes `%XX` escapes and `+`.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// The percent-decoded value of `key` in a query string.
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}
