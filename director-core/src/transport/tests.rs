use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;

use super::*;
use crate::{body, testing::TestBackend};

fn opts() -> TransportOptions {
    TransportOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(300),
        write_timeout: Duration::from_secs(2),
        ..TransportOptions::default()
    }
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", "t")
        .body(body::empty())
        .unwrap()
}

async fn text(r: Response<Body>) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn reuses_connections_after_the_body_is_read() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let transport = HttpTransport::new(backend.addr().clone(), opts());
    for _ in 0..5 {
        let r = transport.send(get("/")).await.unwrap();
        assert_eq!(text(r).await, "backend a\n");
    }
    assert_eq!(backend.requests(), 5);
    assert_eq!(
        backend.connections(),
        1,
        "one keep-alive connection serves all"
    );
    assert_eq!(transport.idle_connections(), 1);
}

#[tokio::test]
async fn bodiless_responses_release_without_being_polled() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let transport = HttpTransport::new(backend.addr().clone(), opts());
    let head = Request::head("/")
        .header("host", "t")
        .body(body::empty())
        .unwrap();
    let r = transport.send(head).await.unwrap();
    drop(r);
    transport.send(get("/")).await.unwrap();
    assert_eq!(backend.connections(), 1);
}

#[tokio::test]
async fn a_dropped_body_closes_its_connection() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let transport = HttpTransport::new(backend.addr().clone(), opts());
    let r = transport.send(get("/bytes/1000000")).await.unwrap();
    drop(r);
    let r = transport.send(get("/")).await.unwrap();
    assert_eq!(text(r).await, "backend a\n");
    assert_eq!(backend.connections(), 2);
}

#[tokio::test]
async fn unix_sockets() {
    let dir = tempfile_dir();
    let path = dir.join("b.sock");
    let backend = TestBackend::unix("u", &path).await.unwrap();
    let transport = HttpTransport::new(backend.addr().clone(), opts());
    let r = transport.send(get("/")).await.unwrap();
    assert_eq!(text(r).await, "backend u\n");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn refused_connections_are_connect_failures() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let transport = HttpTransport::new(BackendAddr::Tcp(port), opts());
    let err = transport.send(get("/")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectFailed);
    assert!(!err.was_sent());
}

#[tokio::test]
async fn silent_backends_time_out() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let transport = HttpTransport::new(backend.addr().clone(), opts());
    let err = transport.send(get("/stall")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.was_sent());

    let r = transport.send(get("/stall-body")).await.unwrap();
    let err = r.into_body().collect().await.unwrap_err();
    let err = err.downcast::<ProxyError>().unwrap();
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn hangups_are_broken_upstreams() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let transport = HttpTransport::new(backend.addr().clone(), opts());
    let err = transport.send(get("/hangup")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UpstreamBroken);
    assert!(err.was_sent());
}

#[tokio::test]
async fn stale_pooled_connections_are_replaced() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let addr = backend.addr().clone();
    let transport = HttpTransport::new(addr, opts());
    text(transport.send(get("/")).await.unwrap()).await;
    assert_eq!(transport.idle_connections(), 1);
    // The backend goes away, taking its connections with it, and comes back on the same port.
    let port = backend.socket_addr().unwrap();
    drop(backend);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _backend = TestBackend::tcp("a2", &port.to_string()).await.unwrap();
    let r = transport.send(get("/")).await.unwrap();
    assert_eq!(text(r).await, "backend a2\n");
}

/// A request body that sends `first`, then waits `pause`, then ends with `last` (an error when
/// `last` is `None`): a client whose upload stalls or breaks off.
struct Upload {
    first: Option<bytes::Bytes>,
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    last: Option<Result<bytes::Bytes, crate::body::ClientBodyError>>,
}

impl Upload {
    fn request(
        pause: Duration,
        last: Result<&'static str, crate::body::ClientBodyError>,
    ) -> Request<Body> {
        let body = Upload {
            first: Some(bytes::Bytes::from_static(b"first ")),
            pause: Some(Box::pin(tokio::time::sleep(pause))),
            last: Some(last.map(|s| bytes::Bytes::from_static(s.as_bytes()))),
        };
        Request::post("/sha256")
            .header("host", "t")
            .body(body::boxed(body))
            .unwrap()
    }
}

impl http_body::Body for Upload {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(first))));
        }
        if let Some(pause) = self.pause.as_mut() {
            std::task::ready!(pause.as_mut().poll(cx));
            self.pause = None;
        }
        Poll::Ready(self.last.take().map(|last| {
            last.map(http_body::Frame::data)
                .map_err(|e| Box::new(e) as crate::body::BoxError)
        }))
    }
}

use std::future::Future as _;

#[tokio::test]
async fn a_broken_client_body_is_the_clients_error() {
    use crate::body::ClientBodyError;
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let transport = HttpTransport::new(backend.addr().clone(), opts());
    for (cause, status) in [
        (ClientBodyError::Read("reset by peer".into()), 400),
        (ClientBodyError::Timeout(Duration::from_secs(60)), 408),
    ] {
        let req = Upload::request(Duration::from_millis(10), Err(cause));
        let err = transport.send(req).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ClientBody, "{err}");
        assert_eq!(err.status(), status, "{err}");
        assert!(err.was_sent());
    }
}

#[tokio::test]
async fn waiting_for_a_slow_client_is_not_a_read_timeout() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    // The read timeout is 300 ms; the client pauses three times that mid-body.
    let transport = HttpTransport::new(backend.addr().clone(), opts());
    let req = Upload::request(Duration::from_millis(900), Ok("last"));
    let r = transport.send(req).await.unwrap();
    assert!(text(r).await.starts_with("10 "), "all ten bytes arrived");
}

/// A raw backend that answers each request on a connection with `ok` and reports each
/// connection that the peer closes.
async fn eof_counting_backend() -> (BackendAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = BackendAddr::Tcp(listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => {
                            let _ = tx.send(());
                            return;
                        }
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                    if head.ends_with(b"\r\n\r\n") {
                        head.clear();
                        let _ = conn
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn idle_connections_are_closed_at_idle_timeout_with_no_request() {
    let (addr, mut closed) = eof_counting_backend().await;
    let transport = HttpTransport::new(
        addr,
        TransportOptions {
            idle_timeout: Duration::from_millis(200),
            ..opts()
        },
    );
    // Twice: the reaper ends with an empty pool, and the next release starts another.
    for round in 1..=2 {
        let r = transport.send(get("/")).await.unwrap();
        assert_eq!(text(r).await, "ok");
        assert_eq!(transport.idle_connections(), 1);
        tokio::time::timeout(Duration::from_secs(10), closed.recv())
            .await
            .unwrap_or_else(|_| panic!("round {round}: the backend saw the idle close"))
            .unwrap();
        assert_eq!(transport.idle_connections(), 0);
        assert_eq!(transport.connections_opened(), round);
    }
}

#[tokio::test]
async fn forbidden_response_heads_are_refused_and_not_pooled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for response in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"[..],
        &b"HTTP/1.1 600 Nope\r\nContent-Length: 2\r\n\r\nok"[..],
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = BackendAddr::Tcp(listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let _ = conn.write_all(response).await;
            let _ = conn.read(&mut buf).await;
        });
        let transport = HttpTransport::new(addr, opts());
        let err = transport.send(get("/")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UpstreamBroken, "{err}");
        assert_eq!(err.status(), 502);
        assert_eq!(transport.idle_connections(), 0);
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "director-core-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(start_paused = true)]
async fn a_tunnel_closes_after_idle_time_without_bytes_either_way() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let idle = Duration::from_secs(10);
    let (mut client, client_side) = tokio::io::duplex(64);
    let (backend_side, mut backend) = tokio::io::duplex(64);
    let started = tokio::time::Instant::now();
    let tunnel = tokio::spawn(copy_until_idle(client_side, backend_side, idle));
    // Traffic every 6 s, one way and then the other, keeps it open past the idle time.
    let mut buf = [0u8; 4];
    for i in 0..4 {
        tokio::time::sleep(Duration::from_secs(6)).await;
        if i % 2 == 0 {
            client.write_all(b"ping").await.unwrap();
            backend.read_exact(&mut buf).await.unwrap();
        } else {
            backend.write_all(b"pong").await.unwrap();
            client.read_exact(&mut buf).await.unwrap();
        }
    }
    // Then silence: closed `idle` after the last bytes, on both sides.
    assert!(tunnel.await.unwrap().is_none(), "ended as idle");
    assert_eq!(started.elapsed(), Duration::from_secs(4 * 6) + idle);
    assert_eq!(client.read(&mut buf).await.unwrap(), 0);
    assert_eq!(backend.read(&mut buf).await.unwrap(), 0);
}
