//! A scriptable fake FastCGI application for tests (feature `test-util`).
//!
//! A [`FakeResponder`] listens on loopback TCP or a UNIX socket and plays a [`Script`] for every
//! request: read the request, write records or raw bytes byte for byte, pause, close. It records
//! what it received ([`ReceivedRequest`]) so tests can assert on params and the uploaded body.
//! When a script finishes without closing and the request asked for `KEEP_CONN`, the same
//! script runs again for the next request on that connection.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinHandle;

use crate::conn::FastCgiAddr;
use crate::proto::{
    self, EndRequest, FLAG_KEEP_CONN, ProtocolStatus, Record, RecordType, Role, params,
};

/// One step of a [`Script`].
#[derive(Clone, Debug)]
pub enum Step {
    /// Read `BEGIN_REQUEST` and the `PARAMS` stream up to its empty record.
    ReadParams,
    /// Read `STDIN` up to its empty record (stops early at `ABORT_REQUEST`).
    ReadStdin,
    /// Read until an `ABORT_REQUEST` record arrives.
    ExpectAbort,
    /// Write these bytes as they are.
    Write(Bytes),
    /// Pause.
    Sleep(Duration),
    /// Close the connection.
    Close,
}

/// What the fake application does for each request.
#[derive(Clone, Debug, Default)]
pub struct Script {
    steps: Vec<Step>,
}

// === impl Script ===

impl Script {
    /// An empty script.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a step.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Reads the whole request: params, then stdin.
    pub fn read_request(self) -> Self {
        self.step(Step::ReadParams).step(Step::ReadStdin)
    }

    /// Reads `BEGIN_REQUEST` and `PARAMS` only.
    pub fn read_params(self) -> Self {
        self.step(Step::ReadParams)
    }

    /// Reads `STDIN` to its end.
    pub fn read_stdin(self) -> Self {
        self.step(Step::ReadStdin)
    }

    /// Waits for `ABORT_REQUEST`.
    pub fn expect_abort(self) -> Self {
        self.step(Step::ExpectAbort)
    }

    /// Writes raw bytes.
    pub fn raw(self, bytes: impl Into<Bytes>) -> Self {
        self.step(Step::Write(bytes.into()))
    }

    /// Writes `data` as `STDOUT` records for request 1 (an empty record when `data` is empty).
    pub fn stdout(self, data: impl AsRef<[u8]>) -> Self {
        self.raw(stream_bytes(RecordType::Stdout, data.as_ref()))
    }

    /// Writes `data` as `STDERR` records for request 1.
    pub fn stderr(self, data: impl AsRef<[u8]>) -> Self {
        self.raw(stream_bytes(RecordType::Stderr, data.as_ref()))
    }

    /// Writes `END_REQUEST` for request 1.
    pub fn end(self, app_status: u32, protocol_status: ProtocolStatus) -> Self {
        let mut out = BytesMut::new();
        proto::encode_end_request(
            1,
            EndRequest {
                app_status,
                protocol_status,
            },
            &mut out,
        );
        self.raw(out.freeze())
    }

    /// Pauses.
    pub fn sleep(self, duration: Duration) -> Self {
        self.step(Step::Sleep(duration))
    }

    /// Closes the connection.
    pub fn close(self) -> Self {
        self.step(Step::Close)
    }

    /// The usual well-behaved exchange: read the request, send `stdout` (header block and
    /// body), end the stream and the request.
    pub fn respond(stdout: impl AsRef<[u8]>) -> Self {
        Self::new()
            .read_request()
            .stdout(stdout)
            .stdout(b"")
            .end(0, ProtocolStatus::RequestComplete)
    }
}

fn stream_bytes(ty: RecordType, data: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    if data.is_empty() {
        proto::encode_record(ty, 1, &[], &mut out);
    } else {
        proto::encode_stream(ty, 1, data, &mut out);
    }
    out.freeze()
}

/// A request as the fake application received it.
#[derive(Clone, Debug, Default)]
pub struct ReceivedRequest {
    /// Index of the connection it came on (0-based, in accept order).
    pub connection: usize,
    /// Request id of `BEGIN_REQUEST`.
    pub request_id: u16,
    /// Whether `BEGIN_REQUEST` asked for the responder role.
    pub responder: bool,
    /// Whether `BEGIN_REQUEST` had `KEEP_CONN`.
    pub keep_conn: bool,
    /// The decoded `PARAMS`.
    pub params: Vec<(Bytes, Bytes)>,
    /// The concatenated `STDIN`.
    pub stdin: Bytes,
    /// Whether the empty `STDIN` record arrived.
    pub stdin_complete: bool,
    /// Whether an `ABORT_REQUEST` arrived.
    pub aborted: bool,
}

impl ReceivedRequest {
    /// The value of a parameter, if sent and UTF-8.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(n, _)| n.as_ref() == name.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

#[derive(Debug, Default)]
struct Recorder {
    requests: Mutex<Vec<ReceivedRequest>>,
    connections: AtomicUsize,
    closed: AtomicUsize,
}

/// A running fake FastCGI application; stops when dropped.
#[derive(Debug)]
pub struct FakeResponder {
    addr: FastCgiAddr,
    recorder: Arc<Recorder>,
    task: JoinHandle<()>,
}

// === impl FakeResponder ===

impl FakeResponder {
    /// Listens on `127.0.0.1:0`.
    pub async fn tcp(script: Script) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = FastCgiAddr::Tcp(listener.local_addr()?);
        let recorder = Arc::new(Recorder::default());
        let rec = recorder.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, script.clone(), rec.clone()));
            }
        });
        Ok(Self {
            addr,
            recorder,
            task,
        })
    }

    /// Listens on a UNIX socket at `path`.
    pub async fn unix(path: &Path, script: Script) -> io::Result<Self> {
        let listener = UnixListener::bind(path)?;
        let addr = FastCgiAddr::Unix(path.to_owned());
        let recorder = Arc::new(Recorder::default());
        let rec = recorder.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, script.clone(), rec.clone()));
            }
        });
        Ok(Self {
            addr,
            recorder,
            task,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> FastCgiAddr {
        self.addr.clone()
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.recorder
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many connections were accepted.
    pub fn connections(&self) -> usize {
        self.recorder.connections.load(Ordering::SeqCst)
    }

    /// How many connections the responder has finished with (closed, or seen closed).
    pub fn closed_connections(&self) -> usize {
        self.recorder.closed.load(Ordering::SeqCst)
    }
}

impl Drop for FakeResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_record<S: AsyncRead + Unpin>(s: &mut S, buf: &mut BytesMut) -> Option<Record> {
    loop {
        match Record::parse(buf) {
            Ok(Some(rec)) => return Some(rec),
            Ok(None) => {}
            Err(_) => return None,
        }
        match s.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

async fn serve<S>(s: S, script: Script, recorder: Arc<Recorder>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    serve_conn(s, script, &recorder).await;
    recorder.closed.fetch_add(1, Ordering::SeqCst);
}

async fn serve_conn<S>(mut s: S, script: Script, recorder: &Recorder)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let connection = recorder.connections.fetch_add(1, Ordering::SeqCst);
    let mut buf = BytesMut::new();
    loop {
        let mut current: Option<usize> = None;
        let mut keep_conn = false;
        for step in &script.steps {
            match step {
                Step::ReadParams => {
                    let mut req = ReceivedRequest {
                        connection,
                        ..ReceivedRequest::default()
                    };
                    let mut stream = BytesMut::new();
                    loop {
                        let Some(rec) = read_record(&mut s, &mut buf).await else {
                            return;
                        };
                        match rec.record_type {
                            RecordType::BeginRequest => {
                                let Ok(begin) = rec.begin_request() else {
                                    return;
                                };
                                req.request_id = rec.request_id;
                                req.responder = begin.role == Role::Responder;
                                req.keep_conn = begin.flags & FLAG_KEEP_CONN != 0;
                            }
                            RecordType::Params if rec.content.is_empty() => break,
                            RecordType::Params => stream.extend_from_slice(&rec.content),
                            _ => {}
                        }
                    }
                    req.params = params::decode_pairs(&stream.freeze()).unwrap_or_default();
                    keep_conn = req.keep_conn;
                    let mut all = recorder.requests.lock().unwrap_or_else(|p| p.into_inner());
                    all.push(req);
                    current = Some(all.len() - 1);
                }
                Step::ReadStdin | Step::ExpectAbort => {
                    let want_abort = matches!(step, Step::ExpectAbort);
                    let mut data = BytesMut::new();
                    let mut complete = false;
                    let mut aborted = false;
                    while let Some(rec) = read_record(&mut s, &mut buf).await {
                        match rec.record_type {
                            RecordType::Stdin if rec.content.is_empty() => {
                                complete = true;
                                if !want_abort {
                                    break;
                                }
                            }
                            RecordType::Stdin => data.extend_from_slice(&rec.content),
                            RecordType::AbortRequest => {
                                aborted = true;
                                break;
                            }
                            _ => {}
                        }
                    }
                    if let Some(i) = current {
                        let mut all = recorder.requests.lock().unwrap_or_else(|p| p.into_inner());
                        let req = &mut all[i];
                        let mut joined = BytesMut::from(&req.stdin[..]);
                        joined.extend_from_slice(&data);
                        req.stdin = joined.freeze();
                        req.stdin_complete |= complete;
                        req.aborted |= aborted;
                    }
                    if !complete && !aborted {
                        return;
                    }
                }
                Step::Write(bytes) => {
                    if s.write_all(bytes).await.is_err() || s.flush().await.is_err() {
                        return;
                    }
                }
                Step::Sleep(d) => tokio::time::sleep(*d).await,
                Step::Close => {
                    let _ = s.shutdown().await;
                    return;
                }
            }
        }
        if !keep_conn {
            let _ = s.shutdown().await;
            return;
        }
    }
}
