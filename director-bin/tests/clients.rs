//! Bad input from clients never panics or wedges a worker.

mod support;

use std::time::Duration;

use director_core::testing::TestBackend;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(
        &[backend.url()],
        "max-header-size = 16384",
        "",
    ));
    let big = "x".repeat(40_000);
    let request = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let answer = raw(
        director.socket_addr(),
        request.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.80}");
    assert_eq!(backend.requests(), 0);
    assert_eq!(get(&director.url("/")).await.status, 200, "still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(&[backend.url()], "", ""));
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    ] {
        let answer = raw(director.socket_addr(), garbage, Duration::from_secs(5)).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{garbage:?} gave {answer:.80}"
        );
    }
    assert_eq!(backend.requests(), 0);
    assert_eq!(get(&director.url("/")).await.status, 200, "still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_after_the_header_read_timeout() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(
        &[backend.url()],
        "header-read-timeout = \"500ms\"",
        "",
    ));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut slow = tokio::net::TcpStream::connect(director.socket_addr())
        .await
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Never finish the head: the proxy must close the connection on its own.
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the slow connection was not closed");
    let answer = String::from_utf8_lossy(&buf);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert_eq!(backend.requests(), 0);
    assert_eq!(
        get(&director.url("/")).await.status,
        200,
        "others are still served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let mut director = Director::start(&cluster_config(
        &[backend.url()],
        "shutdown-timeout = \"10s\"",
        "",
    ));
    let url = director.url("/delay/700");
    let in_flight = tokio::spawn(async move { get(&url).await });
    // Let the request reach the backend before the signal.
    for _ in 0..100 {
        if backend.requests() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(backend.requests(), 1);
    director.terminate();
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "the in-flight request completes");
    assert_eq!(reply.text(), "delayed 700ms\n");
    assert_eq!(
        director.wait(Duration::from_secs(10)),
        Some(true),
        "exits cleanly"
    );
    assert!(
        tokio::net::TcpStream::connect(director.socket_addr())
            .await
            .is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_closes_the_backend_or_is_ignored_as_configured() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for abort in ["close", "ignore"] {
        let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
        let director = Director::start(&with_admin(&cluster_config(
            &[backend.url()],
            "",
            &format!("on-client-abort = \"{abort}\""),
        )));
        // 30 KiB dripped over ~300 ms; the client reads the head and a little, then hangs up.
        let mut stream = tokio::net::TcpStream::connect(director.socket_addr())
            .await
            .unwrap();
        stream
            .write_all(b"GET /drip/30 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 64];
        let n = stream.read(&mut head).await.unwrap();
        assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{abort}");
        drop(stream);
        if abort == "ignore" {
            wait_until("the backend sent its body to the end", || {
                backend.drips_sent() == 1
            })
            .await;
            assert_eq!(backend.drips_cut(), 0, "the backend never noticed");
        } else {
            wait_until("the backend saw the close", || backend.drips_cut() == 1).await;
            assert_eq!(backend.drips_sent(), 0);
        }
        let doc = get(&format!("{}/api/app", director.admin())).await;
        let doc: serde_json::Value = serde_json::from_slice(&doc.body).unwrap();
        assert_eq!(doc["on-client-abort"], abort);
        assert_eq!(get(&director.url("/")).await.status, 200, "still serving");
    }
}
