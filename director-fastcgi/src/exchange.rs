//! One request/response exchange over a connection: send `BEGIN_REQUEST`, `PARAMS` and the
//! streamed `STDIN`, read until the CGI header block is complete, then hand the connection to
//! the [`ResponseBody`].
//!
//! The application may answer before it has read the whole request body (or end the request
//! early), so every write also reads: response records are absorbed into a [`ReadState`] while
//! the upload runs, bounded by `max_early_body`.

use std::pin::pin;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use http::{Request, Response, header};
use http_body::Body;

use crate::body::ResponseBody;
use crate::cgi::Framing;
use crate::cgi::{self, CgiResponseHead};
use crate::config::{ClientAbort, FastCgiConfig};
use crate::conn::{Conn, FastCgiAddr, Progress};
use crate::error::{BoxError, Error, ErrorKind};
use crate::pool::Pool;
use crate::proto::{self, EndRequest, ProtocolStatus, Record, RecordType, Role, params};
use crate::spool;

/// The request id: one request at a time per connection (no multiplexing, like php-fpm).
pub(crate) const REQUEST_ID: u16 = 1;

/// What all clones of a service share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) addr: FastCgiAddr,
    pub(crate) config: FastCgiConfig,
    pub(crate) pool: Pool,
}

/// Owns the connection while a request is in flight. Dropped before [`finish`](Self::finish)
/// or [`discard`](Self::discard) means the client went away: apply `on_client_abort`.
#[derive(Debug)]
pub(crate) struct Exchange {
    conn: Option<Conn>,
    shared: Arc<Shared>,
    stdin_done: bool,
}

// === impl Exchange ===

impl Exchange {
    pub(crate) fn conn(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("exchange used after finish")
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The request ended with `REQUEST_COMPLETE`; pool the connection if it may be reused:
    /// the application keeps it, nothing unread is left, and `STDIN` was sent whole (an early
    /// `END_REQUEST` may have cut a record in half).
    pub(crate) fn finish(mut self) {
        if let Some(conn) = self.conn.take()
            && self.shared.config.keep_conn
            && self.stdin_done
            && conn.read_buf.is_empty()
        {
            self.shared.pool.put(conn);
        }
    }

    /// The exchange failed; close the connection without further ado.
    pub(crate) fn discard(mut self) {
        self.conn.take();
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let notify = match self.shared.config.on_client_abort {
            ClientAbort::Close => return,
            ClientAbort::Ignore if !self.stdin_done => return,
            ClientAbort::Ignore => false,
            ClientAbort::Notify => true,
        };
        // Without a runtime (dropped during shutdown) closing is all we can do.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(drain(conn, self.shared.clone(), notify));
        }
    }
}

/// Reads the rest of an abandoned response (after `ABORT_REQUEST` when `notify`) and pools the
/// connection if the application ends the request cleanly.
async fn drain(mut conn: Conn, shared: Arc<Shared>, notify: bool) {
    let config = &shared.config;
    if notify {
        let mut out = BytesMut::new();
        proto::encode_abort_request(REQUEST_ID, &mut out);
        if conn
            .write_all(&mut out, config.write_timeout)
            .await
            .is_err()
        {
            return;
        }
    }
    while let Ok(Some(rec)) = conn.read_record(config.read_timeout).await {
        if rec.record_type == RecordType::EndRequest {
            if config.keep_conn && conn.read_buf.is_empty() {
                shared.pool.put(conn);
            }
            return;
        }
    }
}

/// Response records absorbed so far.
#[derive(Debug, Default)]
struct ReadState {
    /// Whether any record of this request arrived (a worker is on it).
    heard: bool,
    stdout: BytesMut,
    head: Option<CgiResponseHead>,
    end: Option<EndRequest>,
}

// === impl ReadState ===

impl ReadState {
    /// Parses every whole record buffered in `conn`, up to `END_REQUEST`.
    fn absorb(
        &mut self,
        conn: &mut Conn,
        addr: &FastCgiAddr,
        max_header: usize,
    ) -> Result<(), Error> {
        while self.end.is_none() {
            let Some(rec) = conn.next_record()? else {
                return Ok(());
            };
            self.heard = true;
            match rec.record_type {
                RecordType::Stdout if rec.request_id == REQUEST_ID => {
                    self.stdout.extend_from_slice(&rec.content);
                    if self.head.is_none() {
                        match cgi::parse_response_head(&self.stdout, max_header) {
                            Ok(Some((head, used))) => {
                                self.stdout.advance(used);
                                self.head = Some(head);
                            }
                            Ok(None) => {}
                            Err(e) => {
                                return Err(Error::new(
                                    ErrorKind::Protocol,
                                    "bad CGI header block",
                                )
                                .with_source(e));
                            }
                        }
                    }
                }
                RecordType::EndRequest if rec.request_id == REQUEST_ID => {
                    self.end = Some(end_request(&rec)?);
                }
                _ => log_record(&rec, addr),
            }
        }
        Ok(())
    }

    /// Whether more response bytes may be buffered while the upload runs.
    fn may_read(&self, config: &FastCgiConfig) -> bool {
        self.end.is_none() && (self.head.is_none() || self.stdout.len() < config.max_early_body)
    }
}

pub(crate) fn end_request(rec: &Record) -> Result<EndRequest, Error> {
    rec.end_request()
        .map_err(|e| Error::new(ErrorKind::Protocol, "invalid END_REQUEST").with_source(e))
}

/// Maps a failed `END_REQUEST` to its error; `Ok` for `REQUEST_COMPLETE`.
pub(crate) fn check_end(end: EndRequest) -> Result<(), Error> {
    match end.protocol_status {
        ProtocolStatus::RequestComplete => Ok(()),
        ProtocolStatus::Overloaded => {
            Err(Error::new(ErrorKind::Overloaded, "application overloaded"))
        }
        ProtocolStatus::CantMpxConn => Err(Error::new(
            ErrorKind::Overloaded,
            "application cannot multiplex connections",
        )),
        ProtocolStatus::UnknownRole => Err(Error::new(
            ErrorKind::Protocol,
            "application rejected the role",
        )),
        ProtocolStatus::Other(_) => Err(Error::new(
            ErrorKind::Protocol,
            "unknown END_REQUEST status",
        )),
    }
}

/// Logs records that carry no response data for us: `STDERR` at error level (spec 14.5), the
/// rest as oddities.
pub(crate) fn log_record(rec: &Record, addr: &FastCgiAddr) {
    match rec.record_type {
        RecordType::Stderr => {
            if !rec.content.is_empty() {
                let text = String::from_utf8_lossy(&rec.content);
                tracing::error!(backend = %addr, "fastcgi stderr: {}", text.trim_end_matches('\n'));
            }
        }
        RecordType::Stdout => {}
        RecordType::GetValuesResult => {
            tracing::trace!(backend = %addr, content = ?rec.content, "fastcgi GET_VALUES_RESULT");
        }
        other => {
            tracing::warn!(
                backend = %addr,
                record_type = ?other,
                request_id = rec.request_id,
                content = ?rec.content,
                "fastcgi: unexpected record"
            );
        }
    }
}

/// Connects (or reuses a pooled connection) and writes the request head. A pooled connection
/// that turns out dead during this first write is replaced by a fresh one once: nothing of the
/// request body has been consumed yet.
async fn open(shared: &Arc<Shared>, head: &BytesMut) -> Result<Exchange, Error> {
    let config = &shared.config;
    let mut pooled = shared.pool.take();
    loop {
        let reused = pooled.is_some();
        let conn = match pooled.take() {
            Some(conn) => conn,
            None => Conn::connect(&shared.addr, config.connect_timeout).await?,
        };
        let mut exchange = Exchange {
            conn: Some(conn),
            shared: shared.clone(),
            stdin_done: false,
        };
        let mut out = head.clone();
        match exchange
            .conn()
            .write_all(&mut out, config.write_timeout)
            .await
        {
            Ok(()) => return Ok(exchange),
            Err(e) if reused && e.kind() == ErrorKind::ClosedEarly => {
                exchange.discard();
                tracing::debug!(backend = %shared.addr, "fastcgi: pooled connection was dead");
            }
            Err(e) => {
                exchange.discard();
                return Err(e.sent(true));
            }
        }
    }
}

/// Writes `out` while absorbing response records; stops early when the application ended the
/// request.
async fn send(
    exchange: &mut Exchange,
    state: &mut ReadState,
    out: &mut BytesMut,
) -> Result<(), Error> {
    let shared = exchange.shared.clone();
    let config = &shared.config;
    while !out.is_empty() && state.end.is_none() {
        let read = state.may_read(config);
        let progress = tokio::time::timeout(
            config.write_timeout,
            exchange.conn().write_while_reading(out, read),
        )
        .await;
        match progress {
            Err(_) => return Err(Error::new(ErrorKind::WriteTimeout, "write timed out")),
            Ok(Err(e)) => {
                return Err(Error::new(ErrorKind::ClosedEarly, "connection failed").with_source(e));
            }
            Ok(Ok(Progress::Written)) => {}
            Ok(Ok(Progress::Read)) => {
                state.absorb(exchange.conn(), &shared.addr, config.max_header_size)?;
            }
        }
    }
    Ok(())
}

/// Runs one request: the body of the service's response future.
///
/// A body of unknown length is spooled whole first (see [`crate::spool`]): CGI needs its
/// `CONTENT_LENGTH`, and a body that breaks off never reaches the application. Known lengths
/// stream as they arrive.
pub(crate) async fn run<B>(
    shared: Arc<Shared>,
    req: Request<B>,
) -> Result<Response<ResponseBody>, Error>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (head, body) = req.into_parts();
    let content_length = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .or_else(|| body.size_hint().exact());
    if content_length.is_none() && !body.is_end_stream() {
        // Refuse a bad path or a missing script before reading a body for it.
        let params = cgi::build_params(&head, None, &shared.config.cgi)
            .map_err(|e| Error::new(ErrorKind::BadRequest, "request refused").with_source(e))?;
        if shared.config.check_script {
            check_script(&params)?;
        }
        let spooled = spool::spool(body, &shared.config.spool).await?;
        let len = spooled.len();
        return exchange(shared, head, spooled, Some(len)).await;
    }
    exchange(shared, head, body, content_length).await
}

async fn exchange<B>(
    shared: Arc<Shared>,
    head: http::request::Parts,
    body: B,
    content_length: Option<u64>,
) -> Result<Response<ResponseBody>, Error>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let params = cgi::build_params(&head, content_length, &shared.config.cgi)
        .map_err(|e| Error::new(ErrorKind::BadRequest, "request refused").with_source(e))?;
    if shared.config.check_script {
        check_script(&params)?;
    }
    let body_done = body.is_end_stream();

    let mut out = BytesMut::with_capacity(4096);
    let flags = if shared.config.keep_conn {
        proto::FLAG_KEEP_CONN
    } else {
        0
    };
    proto::encode_begin_request(REQUEST_ID, Role::Responder, flags, &mut out);
    let pairs = params::encode_pairs(params.iter().map(|(k, v)| (k.as_bytes(), &v[..])));
    proto::encode_stream(RecordType::Params, REQUEST_ID, &pairs, &mut out);
    proto::encode_record(RecordType::Params, REQUEST_ID, &[], &mut out);
    if body_done {
        // A request without a body goes out in one write.
        proto::encode_record(RecordType::Stdin, REQUEST_ID, &[], &mut out);
    }

    let mut exchange = open(&shared, &out).await?;
    exchange.stdin_done = body_done;
    let is_head = head.method == http::Method::HEAD;
    match respond(&mut exchange, body, is_head).await {
        Ok((state, head, framing)) => build_response(exchange, state, head, framing),
        Err(e) => {
            exchange.discard();
            Err(e.sent(true))
        }
    }
}

/// Fails with [`ErrorKind::ScriptNotFound`] unless `SCRIPT_FILENAME` names a regular file.
///
/// One `stat` on the runtime thread rather than a trip to the blocking pool: on a local
/// filesystem the path is in the kernel's dentry cache after the first request, so the call
/// costs about a microsecond (the same trade nginx makes for `try_files`; measured 1.1 µs,
/// against 8.9 µs for `tokio::fs::metadata` and its hand-off to another thread). The check is on only where the document root is local.
/// `..` cannot occur (the path was normalised), and a path through a file
/// (`/upload.txt/x.php`) fails with `ENOTDIR`.
fn check_script(params: &cgi::Params) -> Result<(), Error> {
    use std::os::unix::ffi::OsStrExt;
    let Some((_, filename)) = params.iter().find(|(n, _)| n == "SCRIPT_FILENAME") else {
        return Ok(());
    };
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(filename));
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(Error::new(
            ErrorKind::ScriptNotFound,
            "the script is not a regular file",
        )),
        Err(e) => Err(Error::new(ErrorKind::ScriptNotFound, "no such script").with_source(e)),
    }
}

/// Sends the body and reads the response head. When the head says the body is already whole
/// (no body, or every byte of its `Content-Length` is here), reads on to `END_REQUEST` so the
/// response leaves complete and the connection can be pooled.
async fn respond<B>(
    exchange: &mut Exchange,
    body: B,
    is_head: bool,
) -> Result<(ReadState, CgiResponseHead, Framing), Error>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let shared = exchange.shared.clone();
    let config = &shared.config;
    let mut state = ReadState::default();
    let mut out = BytesMut::new();
    let mut body = pin!(body);

    // Upload STDIN as the body produces it, never buffering more than one frame.
    while !exchange.stdin_done && state.end.is_none() {
        let may_read = state.may_read(config);
        let conn = exchange.conn();
        let frame = tokio::select! {
            filled = conn.fill(), if may_read => {
                match filled {
                    Ok(0) => return Err(Error::new(ErrorKind::ClosedEarly, "connection closed")),
                    Ok(_) => {
                        state.absorb(conn, &shared.addr, config.max_header_size)?;
                        continue;
                    }
                    Err(e) => return Err(Error::new(ErrorKind::ClosedEarly, "read failed").with_source(e)),
                }
            }
            frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)) => {
                // Trailers have no place in CGI; they are dropped. The error is boxed at once so
                // no `B::Error` (maybe !Send) lives across an await.
                frame.map(|f| f.map(|f| f.into_data().ok()).map_err(Into::<BoxError>::into))
            }
        };
        match frame {
            None => {
                proto::encode_record(RecordType::Stdin, REQUEST_ID, &[], &mut out);
                send(exchange, &mut state, &mut out).await?;
                exchange.stdin_done = true;
            }
            Some(Err(e)) => {
                return Err(
                    Error::new(ErrorKind::RequestBody, "request body failed").with_source(e)
                );
            }
            Some(Ok(None)) => {}
            Some(Ok(Some(mut data))) => {
                while data.has_remaining() {
                    let chunk = data.chunk();
                    let n = chunk.len().min(proto::MAX_CONTENT_LEN);
                    proto::encode_record(RecordType::Stdin, REQUEST_ID, &chunk[..n], &mut out);
                    data.advance(n);
                }
                send(exchange, &mut state, &mut out).await?;
            }
        }
    }

    // Wait for the rest of the header block (and of a body already whole).
    let mut framing = None;
    loop {
        let conn = exchange.conn();
        state.absorb(conn, &shared.addr, config.max_header_size)?;
        if let Some(end) = state.end {
            check_end(end)?;
        }
        if framing.is_none()
            && let Some(head) = &state.head
        {
            framing = Some(cgi::response_framing(is_head, head).map_err(|e| {
                Error::new(ErrorKind::Protocol, "bad CGI header block").with_source(e)
            })?);
        }
        if let Some(framing) = framing {
            let whole = match framing {
                Framing::Empty => {
                    // Never sent (HEAD, 204, 304): drop what the application wrote anyway.
                    state.stdout.clear();
                    true
                }
                Framing::Length(n) if state.stdout.len() as u64 > n => {
                    return Err(Error::new(
                        ErrorKind::Protocol,
                        "the application sent more than its Content-Length",
                    ));
                }
                Framing::Length(n) => state.stdout.len() as u64 == n,
                Framing::UntilEnd => false,
            };
            if state.end.is_some() || !whole {
                let head = state.head.take().expect("framing comes from the head");
                return Ok((state, head, framing));
            }
        } else if state.end.is_some() {
            return Err(Error::new(
                ErrorKind::Protocol,
                "request ended before the CGI header block did",
            ));
        }
        match tokio::time::timeout(config.read_timeout, conn.fill()).await {
            Err(_) => {
                warn_silent(&shared, &state, conn.reused);
                return Err(Error::new(ErrorKind::ReadTimeout, "read timed out"));
            }
            Ok(Ok(0)) => {
                return Err(Error::new(
                    ErrorKind::ClosedEarly,
                    "connection closed before the response head",
                ));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(Error::new(ErrorKind::ClosedEarly, "read failed").with_source(e));
            }
        }
    }
}

/// Says why a backend may have stayed silent. A fresh connection that got no record at all
/// was most likely accepted by the kernel's listen backlog while every worker was busy (php-fpm
/// takes the next connection only when a child is free), which the bare timeout does not say.
fn warn_silent(shared: &Shared, state: &ReadState, reused: bool) {
    let timeout = shared.config.read_timeout;
    if state.heard || reused {
        tracing::warn!(
            backend = %shared.addr,
            ?timeout,
            "fastcgi: the application took the request but sent no response head within the read timeout"
        );
    } else {
        tracing::warn!(
            backend = %shared.addr,
            ?timeout,
            "fastcgi: the backend accepted the connection but never answered: its workers may all \
             be busy (php-fpm: pm.max_children too low for the load, or taken by idle \
             connections of other clients; see max-idle-connections)"
        );
    }
}

/// The response for a head and what was read past it. A body that ends at its
/// `Content-Length` streams with that many bytes to go (see [`ResponseBody`]).
fn build_response(
    exchange: Exchange,
    state: ReadState,
    head: CgiResponseHead,
    framing: Framing,
) -> Result<Response<ResponseBody>, Error> {
    let early = state.stdout.freeze();
    let length = match framing {
        Framing::Length(n) => Some(n),
        Framing::Empty => Some(0),
        Framing::UntilEnd => None,
    };
    if let Some(n) = length {
        let have = early.len() as u64;
        let fault = if have > n {
            Some("the application sent more than its Content-Length")
        } else if have < n && state.end.is_some() {
            Some("the application ended the request before its Content-Length")
        } else {
            None
        };
        if let Some(message) = fault {
            exchange.discard();
            return Err(Error::new(ErrorKind::Protocol, message).sent(true));
        }
    }
    let body = if state.end.is_some() {
        exchange.finish();
        ResponseBody::complete(early)
    } else {
        let remaining = length.map(|n| n - early.len() as u64);
        ResponseBody::streaming(early, exchange, remaining)
    };
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    if let Some(redirect) = head.local_redirect {
        response.extensions_mut().insert(redirect);
    }
    Ok(response)
}
