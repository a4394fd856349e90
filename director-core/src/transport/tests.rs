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

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "director-core-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
