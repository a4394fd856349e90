//! Byte-level tests of the FastCGI client against the scriptable fake responder on loopback.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use director_fastcgi::proto::{self, ProtocolStatus, RecordType};
use director_fastcgi::test_util::{FakeResponder, Script, Step};
use director_fastcgi::{
    CgiContext, ClientAbort, ErrorKind, FastCgiAddr, FastCgiConfig, FastCgiService, LocalRedirect,
    ProbeConfig, probe,
};
use http::{Request, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full};
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn config() -> FastCgiConfig {
    let mut c = FastCgiConfig::default();
    c.cgi.document_root = "/srv/www".to_owned();
    c.read_timeout = Duration::from_secs(5);
    c.write_timeout = Duration::from_secs(5);
    c.connect_timeout = Duration::from_secs(5);
    c
}

fn get(uri: &str) -> Request<Empty<Bytes>> {
    Request::get(uri).body(Empty::new()).unwrap()
}

/// Waits (bounded) until `cond` holds.
async fn eventually(mut cond: impl FnMut() -> bool) {
    for _ in 0..400 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached within 2 s");
}

/// A request body of `chunks` chunks of `size` bytes, produced lazily, ending in an error when
/// `fail` is set.
struct ChunkBody {
    chunks: usize,
    size: usize,
    fail: bool,
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.chunks == 0 {
            if self.fail {
                self.fail = false;
                return Poll::Ready(Some(Err("client went away".into())));
            }
            return Poll::Ready(None);
        }
        self.chunks -= 1;
        let byte = (self.chunks % 251) as u8;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![byte; self.size])))))
    }
}

fn chunk_body_bytes(chunks: usize, size: usize) -> Vec<u8> {
    let mut all = Vec::with_capacity(chunks * size);
    for remaining in (0..chunks).rev() {
        all.extend(std::iter::repeat_n((remaining % 251) as u8, size));
    }
    all
}

#[tokio::test]
async fn get_sends_cgi_params_and_streams_the_response() {
    let app = FakeResponder::tcp(Script::respond(
        "Status: 201 Created\r\nContent-Type: text/plain\r\nX-App: yes\r\n\r\nhello world",
    ))
    .await
    .unwrap();
    let svc = FastCgiService::new(app.addr(), config());
    let mut req = Request::get("/app/index.php/extra/path?a=1&b=2")
        .header("host", "example.org")
        .header("user-agent", "test")
        .header("proxy", "evil")
        .body(Empty::<Bytes>::new())
        .unwrap();
    req.extensions_mut().insert(CgiContext {
        remote_addr: Some("127.0.0.9:4242".parse().unwrap()),
        server_addr: Some("127.0.0.1:8080".parse().unwrap()),
        https: false,
        remote_user: None,
    });
    let resp = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(resp.headers()["x-app"], "yes");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello world");

    let reqs = app.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert!(r.responder && r.keep_conn && r.stdin_complete);
    assert_eq!(r.request_id, 1);
    assert!(r.stdin.is_empty());
    assert_eq!(r.param("SCRIPT_FILENAME"), Some("/srv/www/app/index.php"));
    assert_eq!(r.param("SCRIPT_NAME"), Some("/app/index.php"));
    assert_eq!(r.param("PATH_INFO"), Some("/extra/path"));
    assert_eq!(r.param("QUERY_STRING"), Some("a=1&b=2"));
    assert_eq!(
        r.param("REQUEST_URI"),
        Some("/app/index.php/extra/path?a=1&b=2")
    );
    assert_eq!(r.param("SERVER_PROTOCOL"), Some("HTTP/1.1"));
    assert_eq!(r.param("REMOTE_ADDR"), Some("127.0.0.9"));
    assert_eq!(r.param("SERVER_PORT"), Some("8080"));
    assert_eq!(r.param("HTTP_USER_AGENT"), Some("test"));
    assert_eq!(r.param("HTTP_PROXY"), None);
    // The connection went back to the pool.
    eventually(|| svc.idle_connections() == 1).await;
}

#[tokio::test]
async fn connections_are_reused_with_keep_conn() {
    let app = FakeResponder::tcp(Script::respond("\r\nok")).await.unwrap();
    let svc = FastCgiService::new(app.addr(), config());
    for _ in 0..3 {
        let resp = svc.clone().oneshot(get("/x.php")).await.unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
    }
    assert_eq!(app.requests().len(), 3);
    assert_eq!(app.connections(), 1);
}

#[tokio::test]
async fn without_keep_conn_every_request_connects() {
    let app = FakeResponder::tcp(Script::respond("\r\nok")).await.unwrap();
    let mut cfg = config();
    cfg.keep_conn = false;
    let svc = FastCgiService::new(app.addr(), cfg);
    for _ in 0..2 {
        let resp = svc.clone().oneshot(get("/x.php")).await.unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
    }
    assert_eq!(app.connections(), 2);
    assert!(app.requests().iter().all(|r| !r.keep_conn));
    assert_eq!(svc.idle_connections(), 0);
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_app_is_not_reused() {
    let app = FakeResponder::tcp(Script::respond("\r\nok").close())
        .await
        .unwrap();
    let svc = FastCgiService::new(app.addr(), config());
    let resp = svc.clone().oneshot(get("/x.php")).await.unwrap();
    resp.into_body().collect().await.unwrap();
    eventually(|| app.closed_connections() == 1).await;
    let resp = svc.clone().oneshot(get("/x.php")).await.unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
    assert_eq!(app.connections(), 2);
}

#[tokio::test]
async fn records_split_byte_by_byte_with_odd_padding() {
    // Header block split mid-line over records, records with non-zero padding garbage, and
    // every byte written separately.
    let mut out = BytesMut::new();
    for part in [&b"Content-Ty"[..], b"pe: text/x\r", b"\n\r\nbo", b"dy"] {
        let pad = 5u8;
        out.extend_from_slice(&[1, 6, 0, 1, 0, part.len() as u8, pad, 0]);
        out.extend_from_slice(part);
        out.extend_from_slice(&[0xff; 5]);
    }
    proto::encode_record(RecordType::Stdout, 1, &[], &mut out);
    proto::encode_end_request(
        1,
        proto::EndRequest {
            app_status: 0,
            protocol_status: ProtocolStatus::RequestComplete,
        },
        &mut out,
    );
    let mut script = Script::new().read_request();
    for byte in out.iter() {
        script = script.raw(vec![*byte]);
    }
    let app = FakeResponder::tcp(script).await.unwrap();
    let svc = FastCgiService::new(app.addr(), config());
    let resp = svc.oneshot(get("/")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/x");
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "body");
}

#[tokio::test]
async fn interleaved_stderr_is_not_part_of_the_body() {
    let script = Script::new()
        .read_request()
        .stderr("PHP Notice: one\n")
        .stdout("Content-Type: text/plain\r\n\r\nabc")
        .stderr("PHP Notice: two\n")
        .stdout("def")
        .stderr("")
        .stdout("")
        .end(0, ProtocolStatus::RequestComplete);
    let app = FakeResponder::tcp(script).await.unwrap();
    let resp = FastCgiService::new(app.addr(), config())
        .oneshot(get("/"))
        .await
        .unwrap();
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "abcdef"
    );
}

#[tokio::test]
async fn request_body_is_streamed_to_stdin() {
    let app = FakeResponder::tcp(Script::respond("\r\nthanks"))
        .await
        .unwrap();
    let svc = FastCgiService::new(app.addr(), config());
    // 3 MiB in 100 KiB chunks: every chunk is split into records of at most 65535 bytes.
    let (chunks, size) = (30, 100 * 1024);
    let req = Request::post("/upload.php")
        .header("content-type", "application/octet-stream")
        .header("content-length", (chunks * size).to_string())
        .body(ChunkBody {
            chunks,
            size,
            fail: false,
        })
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "thanks"
    );
    let r = &app.requests()[0];
    assert!(r.stdin_complete);
    assert_eq!(r.param("CONTENT_LENGTH"), Some("3072000"));
    assert_eq!(r.param("CONTENT_TYPE"), Some("application/octet-stream"));
    assert!(r.stdin == chunk_body_bytes(chunks, size), "stdin differs");
}

#[tokio::test]
async fn failing_request_body_is_a_request_body_error() {
    // A body of known length streams: the application has seen part of it.
    let app = FakeResponder::tcp(Script::new().read_params().read_stdin())
        .await
        .unwrap();
    let req = Request::post("/upload.php")
        .header("content-length", "20")
        .body(ChunkBody {
            chunks: 2,
            size: 10,
            fail: true,
        })
        .unwrap();
    let err = FastCgiService::new(app.addr(), config())
        .oneshot(req)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RequestBody);
    assert!(err.request_sent());
}

#[tokio::test]
async fn a_failing_body_of_unknown_length_never_reaches_the_application() {
    let app = FakeResponder::tcp(Script::respond("\r\nran"))
        .await
        .unwrap();
    let req = Request::post("/upload.php")
        .body(ChunkBody {
            chunks: 2,
            size: 10,
            fail: true,
        })
        .unwrap();
    let err = FastCgiService::new(app.addr(), config())
        .oneshot(req)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RequestBody);
    assert!(!err.request_sent());
    assert_eq!(
        app.connections(),
        0,
        "spooled, and broken before it was whole"
    );
}

#[tokio::test]
async fn a_body_of_unknown_length_is_spooled_and_sent_with_its_length() {
    let app = FakeResponder::tcp(Script::respond("\r\nthanks"))
        .await
        .unwrap();
    let (chunks, size) = (30, 10_000);
    let mut cfg = config();
    let dir = tempfile::tempdir().unwrap();
    cfg.spool = director_fastcgi::SpoolConfig {
        memory: 64 * 1024,
        dir: dir.path().to_owned(),
    };
    let req = Request::post("/upload.php")
        .header("content-type", "application/octet-stream")
        .body(ChunkBody {
            chunks,
            size,
            fail: false,
        })
        .unwrap();
    let resp = FastCgiService::new(app.addr(), cfg)
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "thanks"
    );
    let r = &app.requests()[0];
    assert!(r.stdin_complete);
    assert_eq!(r.param("CONTENT_LENGTH"), Some("300000"));
    assert_eq!(r.param("CONTENT_TYPE"), Some("application/octet-stream"));
    assert!(r.stdin == chunk_body_bytes(chunks, size), "stdin differs");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn early_end_request_stops_the_upload() {
    // The application answers after the params, never reading STDIN.
    let script = Script::new()
        .read_params()
        .stdout("Status: 413 Payload Too Large\r\n\r\ntoo big")
        .stdout("")
        .end(0, ProtocolStatus::RequestComplete)
        .sleep(Duration::from_secs(3));
    let app = FakeResponder::tcp(script).await.unwrap();
    let svc = FastCgiService::new(app.addr(), config());
    // 64 MiB would never fit in socket buffers: the client must notice END_REQUEST.
    let req = Request::post("/upload.php")
        .body(ChunkBody {
            chunks: 1024,
            size: 64 * 1024,
            fail: false,
        })
        .unwrap();
    let resp = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "too big"
    );
    // The half-sent STDIN stream makes the connection unusable.
    assert_eq!(svc.idle_connections(), 0);
}

#[tokio::test]
async fn close_before_headers_is_closed_early() {
    let script = Script::new().read_request().stdout("Content-Ty").close();
    let app = FakeResponder::tcp(script).await.unwrap();
    let err = FastCgiService::new(app.addr(), config())
        .oneshot(get("/"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ClosedEarly);
    assert!(err.request_sent());
}

#[tokio::test]
async fn close_mid_body_ends_the_body_with_an_error() {
    let script = Script::new()
        .read_request()
        .stdout("\r\npart one")
        .raw(vec![1u8, 6, 0, 1, 0, 100, 0, 0, b'x']) // a record cut short
        .close();
    let app = FakeResponder::tcp(script).await.unwrap();
    let resp = FastCgiService::new(app.addr(), config())
        .oneshot(get("/"))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "part one");
    let err = body.frame().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ClosedEarly);
    assert!(body.frame().await.is_none(), "stream ends after the error");
}

#[tokio::test]
async fn oversize_header_block_is_a_protocol_error() {
    let big = format!("X-Big: {}\r\n", "a".repeat(70_000));
    let app = FakeResponder::tcp(Script::respond(big)).await.unwrap();
    let mut cfg = config();
    cfg.max_header_size = 8 * 1024;
    let err = FastCgiService::new(app.addr(), cfg)
        .oneshot(get("/"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol);
}

#[tokio::test]
async fn garbage_is_a_protocol_error() {
    let app = FakeResponder::tcp(
        Script::new()
            .read_request()
            .raw(&b"HTTP/1.1 200 OK\r\n\r\n"[..]),
    )
    .await
    .unwrap();
    let err = FastCgiService::new(app.addr(), config())
        .oneshot(get("/"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol);
}

#[tokio::test]
async fn end_request_statuses_map_to_error_kinds() {
    for (status, kind) in [
        (ProtocolStatus::Overloaded, ErrorKind::Overloaded),
        (ProtocolStatus::CantMpxConn, ErrorKind::Overloaded),
        (ProtocolStatus::UnknownRole, ErrorKind::Protocol),
        (ProtocolStatus::Other(9), ErrorKind::Protocol),
    ] {
        let app = FakeResponder::tcp(Script::new().read_request().end(0, status))
            .await
            .unwrap();
        let err = FastCgiService::new(app.addr(), config())
            .oneshot(get("/"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{status:?}");
    }
}

#[tokio::test]
async fn end_before_header_block_is_a_protocol_error() {
    let app = FakeResponder::tcp(Script::respond("")).await.unwrap();
    let err = FastCgiService::new(app.addr(), config())
        .oneshot(get("/"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol);
}

#[tokio::test]
async fn local_redirect_is_a_302_with_an_extension() {
    let app = FakeResponder::tcp(Script::respond("Location: /elsewhere\r\n\r\n"))
        .await
        .unwrap();
    let resp = FastCgiService::new(app.addr(), config())
        .oneshot(get("/"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(resp.headers()["location"], "/elsewhere");
    assert_eq!(
        resp.extensions().get::<LocalRedirect>(),
        Some(&LocalRedirect("/elsewhere".to_owned()))
    );
}

#[tokio::test]
async fn connect_refused_is_a_connect_error_and_retry_safe() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = FastCgiService::new(addr, config())
        .oneshot(get("/"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert!(!err.request_sent());
}

#[tokio::test]
async fn silent_application_hits_the_read_timeout() {
    let app = FakeResponder::tcp(Script::new().read_request().sleep(Duration::from_secs(10)))
        .await
        .unwrap();
    let mut cfg = config();
    cfg.read_timeout = Duration::from_millis(200);
    let err = FastCgiService::new(app.addr(), cfg)
        .oneshot(get("/"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReadTimeout);
    assert!(err.is_timeout());
}

#[tokio::test]
async fn stalled_body_hits_the_read_timeout() {
    let script = Script::new()
        .read_request()
        .stdout("\r\nfirst")
        .sleep(Duration::from_secs(10));
    let app = FakeResponder::tcp(script).await.unwrap();
    let mut cfg = config();
    cfg.read_timeout = Duration::from_millis(200);
    let resp = FastCgiService::new(app.addr(), cfg)
        .oneshot(get("/"))
        .await
        .unwrap();
    let mut body = resp.into_body();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "first"
    );
    let err = body.frame().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReadTimeout);
}

#[tokio::test]
async fn client_abort_notify_sends_abort_request() {
    // The app streams a first chunk, then waits for ABORT_REQUEST before ending the request:
    // the first frame therefore proves the body streams before END_REQUEST.
    let script = Script::new()
        .read_request()
        .stdout("\r\nfirst chunk")
        .expect_abort()
        .stdout("")
        .end(0, ProtocolStatus::RequestComplete);
    let app = FakeResponder::tcp(script).await.unwrap();
    let mut cfg = config();
    cfg.on_client_abort = ClientAbort::Notify;
    let svc = FastCgiService::new(app.addr(), cfg);
    let resp = svc.clone().oneshot(get("/")).await.unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "first chunk");
    drop(body);
    eventually(|| app.requests().first().is_some_and(|r| r.aborted)).await;
    // After END_REQUEST the drained connection is reused.
    eventually(|| svc.idle_connections() == 1).await;
}

#[tokio::test]
async fn client_abort_close_drops_the_connection() {
    let script = Script::new()
        .read_request()
        .stdout("\r\nfirst chunk")
        .expect_abort();
    let app = FakeResponder::tcp(script).await.unwrap();
    let svc = FastCgiService::new(app.addr(), config());
    let resp = svc.clone().oneshot(get("/")).await.unwrap();
    drop(resp);
    eventually(|| app.closed_connections() == 1).await;
    assert!(!app.requests()[0].aborted);
    assert_eq!(svc.idle_connections(), 0);
}

#[tokio::test]
async fn unix_socket_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let app = FakeResponder::unix(&path, Script::respond("\r\nover unix"))
        .await
        .unwrap();
    assert_eq!(app.addr(), FastCgiAddr::Unix(path.clone()));
    let req = Request::post("/form.php")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(b"a=1&b=2")))
        .unwrap();
    let resp = FastCgiService::new(path, config())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "over unix"
    );
    let r = &app.requests()[0];
    assert_eq!(r.stdin, "a=1&b=2");
    assert_eq!(r.param("CONTENT_LENGTH"), Some("7"));
}

#[tokio::test]
async fn ipv6_loopback_round_trip() {
    let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
        // No IPv6 loopback in this sandbox: nothing to test, and nothing claimed.
        eprintln!("skipped: no [::1]");
        return;
    };
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::new();
        // Read until the empty STDIN record (8 bytes: 1, 5, 0, 1, 0, 0, 0, 0).
        while !buf.windows(8).any(|w| w == [1, 5, 0, 1, 0, 0, 0, 0]) {
            assert!(s.read_buf(&mut buf).await.unwrap() > 0);
        }
        let mut out = BytesMut::new();
        proto::encode_record(RecordType::Stdout, 1, b"\r\nv6", &mut out);
        proto::encode_end_request(
            1,
            proto::EndRequest {
                app_status: 0,
                protocol_status: ProtocolStatus::RequestComplete,
            },
            &mut out,
        );
        s.write_all(&out).await.unwrap();
    });
    let resp = FastCgiService::new(addr, config())
        .oneshot(get("/"))
        .await
        .unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "v6");
    server.await.unwrap();
}

#[tokio::test]
async fn probe_against_the_fake_responder() {
    let app = FakeResponder::tcp(Script::respond("Content-Type: text/plain\r\n\r\npong"))
        .await
        .unwrap();
    let cfg = ProbeConfig {
        request_path: "/ping.php".to_owned(),
        script_filename: Some("/srv/www/ping.php".to_owned()),
        headers: vec![("X-Director-Health-Check".to_owned(), "1".to_owned())],
        ..ProbeConfig::default()
    };
    let outcome = probe(&app.addr(), &cfg).await.unwrap();
    assert!(outcome.is_success());
    assert_eq!(outcome.status, StatusCode::OK);
    let r = &app.requests()[0];
    // Quirk 22 fixed: the probe ends STDIN.
    assert!(r.stdin_complete);
    assert_eq!(r.param("SCRIPT_FILENAME"), Some("/srv/www/ping.php"));
    assert_eq!(r.param("SERVER_PROTOCOL"), Some("HTTP/1.1"));
    assert_eq!(r.param("HTTP_X_DIRECTOR_HEALTH_CHECK"), Some("1"));

    let failing = FakeResponder::tcp(Script::respond("Status: 503 Down\r\n\r\n"))
        .await
        .unwrap();
    let outcome = probe(&failing.addr(), &cfg).await.unwrap();
    assert_eq!(outcome.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!outcome.is_success());

    let closing = FakeResponder::tcp(Script::new().read_request().close())
        .await
        .unwrap();
    let err = probe(&closing.addr(), &cfg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ClosedEarly);
}

#[tokio::test]
async fn fake_responder_writes_raw_steps_verbatim() {
    // A STDOUT record for another request id is ignored; only request 1 counts.
    let mut other = BytesMut::new();
    proto::encode_record(RecordType::Stdout, 2, b"\r\nnot mine", &mut other);
    let script = Script::new()
        .read_request()
        .step(Step::Write(other.freeze()))
        .stdout("\r\nmine")
        .stdout("")
        .end(0, ProtocolStatus::RequestComplete);
    let app = FakeResponder::tcp(script).await.unwrap();
    let resp = FastCgiService::new(app.addr(), config())
        .oneshot(get("/"))
        .await
        .unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "mine");
}

#[test]
fn service_is_send_and_body_is_static() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<FastCgiService>();
    assert_send::<director_fastcgi::ResponseBody>();
    assert_send::<director_fastcgi::ResponseFuture>();
}

#[tokio::test]
async fn dropping_the_response_future_with_notify_aborts() {
    let script = Script::new()
        .read_request()
        .expect_abort()
        .stdout("")
        .end(0, ProtocolStatus::RequestComplete);
    let app = FakeResponder::tcp(script).await.unwrap();
    let mut cfg = config();
    cfg.on_client_abort = ClientAbort::Notify;
    let svc = FastCgiService::new(app.addr(), cfg);
    tokio::select! {
        _ = svc.clone().oneshot(get("/")) => panic!("the app never answers before the abort"),
        () = eventually(|| app.requests().first().is_some_and(|r| r.stdin_complete)) => {}
    }
    // The response future was dropped: the client went away before the head.
    eventually(|| app.requests()[0].aborted).await;
}

#[tokio::test]
async fn client_abort_ignore_reads_to_the_end_and_reuses() {
    let script = Script::new()
        .read_request()
        .stdout("\r\nfirst")
        .stdout("second")
        .stdout("")
        .end(0, ProtocolStatus::RequestComplete);
    let app = FakeResponder::tcp(script).await.unwrap();
    let mut cfg = config();
    cfg.on_client_abort = ClientAbort::Ignore;
    let svc = FastCgiService::new(app.addr(), cfg);
    let resp = svc.clone().oneshot(get("/")).await.unwrap();
    drop(resp);
    eventually(|| svc.idle_connections() == 1).await;
    assert!(!app.requests()[0].aborted);
    let resp = svc.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "firstsecond"
    );
    assert_eq!(app.connections(), 1);
}

#[tokio::test]
async fn application_not_reading_stdin_hits_the_write_timeout() {
    let script = Script::new().read_params().sleep(Duration::from_secs(10));
    let app = FakeResponder::tcp(script).await.unwrap();
    let mut cfg = config();
    cfg.write_timeout = Duration::from_millis(200);
    let req = Request::post("/upload.php")
        .body(ChunkBody {
            chunks: 1024,
            size: 64 * 1024,
            fail: false,
        })
        .unwrap();
    let err = FastCgiService::new(app.addr(), cfg)
        .oneshot(req)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WriteTimeout);
    assert!(err.request_sent());
}

#[tokio::test]
async fn a_control_byte_in_the_path_is_refused_before_connecting() {
    let app = FakeResponder::tcp(Script::respond("Content-Type: text/plain\r\n\r\nran"))
        .await
        .unwrap();
    let svc = FastCgiService::new(app.addr(), config());
    let err = svc.oneshot(get("/vars.php%00.css")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert!(!err.request_sent());
    assert_eq!(app.connections(), 0, "the application never saw it");
}

#[tokio::test]
async fn a_missing_script_is_not_found_before_connecting() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("index.php"), "<?php").unwrap();
    std::fs::write(root.path().join("upload.txt"), "<?php evil();").unwrap();
    std::fs::create_dir(root.path().join("dir.php")).unwrap();
    std::os::unix::fs::symlink(root.path().join("index.php"), root.path().join("link.php"))
        .unwrap();
    std::os::unix::fs::symlink(
        root.path().join("gone.php"),
        root.path().join("dangling.php"),
    )
    .unwrap();
    let app = FakeResponder::tcp(Script::respond("Content-Type: text/plain\r\n\r\nran"))
        .await
        .unwrap();
    let mut cfg = config();
    cfg.cgi.document_root = root.path().display().to_string();
    cfg.check_script = true;
    let svc = FastCgiService::new(app.addr(), cfg);

    for path in [
        "/upload.txt/x.php",
        "/missing.php",
        "/dir.php",
        "/dangling.php",
        "/nope/../missing.php",
    ] {
        let err = svc.clone().oneshot(get(path)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ScriptNotFound, "{path}");
        assert!(!err.request_sent(), "{path}");
    }
    assert_eq!(app.connections(), 0, "none reached the application");

    for path in [
        "/index.php",
        "/",
        "/link.php",
        "/index.php/some/path",
        "/x/../index.php",
    ] {
        let resp = svc.clone().oneshot(get(path)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        resp.into_body().collect().await.unwrap();
    }
    assert_eq!(app.requests().len(), 5);
}

/// Reads `len` body bytes the way hyper does for a response with that `Content-Length`: it
/// stops polling once they are written and drops the body. Returns the bytes and whether the
/// body said it had ended with its last frame.
async fn read_like_hyper(body: &mut director_fastcgi::ResponseBody, len: usize) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    while got.len() < len {
        let frame = body.frame().await.expect("body ended early").unwrap();
        got.extend_from_slice(frame.data_ref().unwrap());
    }
    (got, body.is_end_stream())
}

#[tokio::test]
async fn a_content_length_body_ends_with_its_last_byte_and_the_connection_is_reused() {
    // Whole at once (php-fpm's usual), and split so that the body streams.
    for split in [false, true] {
        let mut script = Script::new()
            .read_request()
            .stdout("Content-Length: 10\r\nContent-Type: text/plain\r\n\r\n01234");
        if split {
            script = script.sleep(Duration::from_millis(50));
        }
        let script = script
            .stdout("56789")
            .stdout("")
            .end(0, ProtocolStatus::RequestComplete);
        let app = FakeResponder::tcp(script).await.unwrap();
        let svc = FastCgiService::new(app.addr(), config());
        for _ in 0..3 {
            let req = Request::get("/fetch.php")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.body().size_hint().exact(), Some(10), "split {split}");
            let mut body = resp.into_body();
            let (got, ended) = read_like_hyper(&mut body, 10).await;
            assert_eq!(got, b"0123456789");
            assert!(ended, "the last frame ends the body (split {split})");
            drop(body);
            assert_eq!(svc.idle_connections(), 1, "pooled at once (split {split})");
        }
        assert_eq!(app.connections(), 1, "split {split}");
        assert_eq!(app.closed_connections(), 0, "split {split}");
    }
}

#[tokio::test]
async fn a_head_response_with_a_content_length_is_complete_and_reuses_its_connection() {
    let app = FakeResponder::tcp(Script::respond("Content-Length: 1234\r\n\r\n"))
        .await
        .unwrap();
    let svc = FastCgiService::new(app.addr(), config());
    for _ in 0..2 {
        let req = Request::head("/fetch.php")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.headers()["content-length"], "1234");
        assert!(resp.body().is_end_stream());
        drop(resp);
        assert_eq!(svc.idle_connections(), 1);
    }
    assert_eq!(app.connections(), 1);
}

#[tokio::test]
async fn a_body_that_breaks_its_content_length_is_a_protocol_error() {
    for (split, stdout) in [
        (false, "Content-Length: 3\r\n\r\ntoo long"),
        (true, "Content-Length: 3\r\n\r\nab"),
    ] {
        let mut script = Script::new().read_request().stdout(stdout);
        if split {
            // More after the length, in a later record.
            script = script.sleep(Duration::from_millis(50)).stdout("cd");
        }
        let script = script.stdout("").end(0, ProtocolStatus::RequestComplete);
        let app = FakeResponder::tcp(script).await.unwrap();
        let svc = FastCgiService::new(app.addr(), config());
        let req = Request::get("/x.php").body(Empty::<Bytes>::new()).unwrap();
        let err = match svc.clone().oneshot(req).await {
            Err(e) => e,
            Ok(resp) => resp.into_body().collect().await.unwrap_err(),
        };
        assert_eq!(err.kind(), ErrorKind::Protocol, "{stdout}");
        assert_eq!(svc.idle_connections(), 0);
    }
}

#[tokio::test]
async fn a_body_short_of_its_content_length_is_an_error() {
    for split in [false, true] {
        let mut script = Script::new()
            .read_request()
            .stdout("Content-Length: 10\r\n\r\nabc");
        if split {
            script = script.sleep(Duration::from_millis(50));
        }
        let script = script.stdout("").end(0, ProtocolStatus::RequestComplete);
        let app = FakeResponder::tcp(script).await.unwrap();
        let svc = FastCgiService::new(app.addr(), config());
        let req = Request::get("/x.php").body(Empty::<Bytes>::new()).unwrap();
        let err = match svc.clone().oneshot(req).await {
            Err(e) => e,
            Ok(resp) => resp.into_body().collect().await.unwrap_err(),
        };
        assert!(
            matches!(err.kind(), ErrorKind::Protocol | ErrorKind::ClosedEarly),
            "{err}"
        );
        assert_eq!(svc.idle_connections(), 0);
    }
}

/// A body of unknown length that never sends a byte.
struct SilentBody;

impl Body for SilentBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Pending
    }
}

#[tokio::test]
async fn a_missing_script_is_refused_before_a_body_of_unknown_length_is_read() {
    let root = tempfile::tempdir().unwrap();
    let app = FakeResponder::tcp(Script::respond("\r\nran"))
        .await
        .unwrap();
    let mut cfg = config();
    cfg.cgi.document_root = root.path().display().to_string();
    cfg.check_script = true;
    let svc = FastCgiService::new(app.addr(), cfg);
    for (path, kind) in [
        ("/missing.php", ErrorKind::ScriptNotFound),
        ("/x.php%01", ErrorKind::BadRequest),
    ] {
        let req = Request::post(path).body(SilentBody).unwrap();
        let err = tokio::time::timeout(Duration::from_secs(5), svc.clone().oneshot(req))
            .await
            .expect("refused without waiting for the body")
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{path}");
    }
    assert_eq!(app.connections(), 0);
}
