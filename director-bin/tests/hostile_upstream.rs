//! Hostile clients and misbehaving backends on the HTTP transport, through the binary: a
//! client's broken or stalled upload is the client's fault (400 or 408, the backend stays online
//! and its error counters untouched, its slot freed), idle pooled connections and idle tunnels
//! are closed by timers, and response heads HTTP/1.1 forbids are refused with 502.

mod support;

use std::time::Duration;

use director_core::testing::TestBackend;
use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// One cluster `app` over `backend` with passive health (`fall = 1`, probes a minute apart, so
/// only live traffic could take it offline) and a catch-all route.
fn health_config(backend: &TestBackend, server: &str, backend_extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n{server}\n\n\
         [clusters.app]\n\n[clusters.app.health]\ninterval = \"60s\"\nfall = 1\nrise = 1\n\n\
         [[clusters.app.backends]]\nname = \"b0\"\nurl = \"{}\"\n{backend_extra}\n\n\
         [[routes]]\ncluster = \"app\"\n",
        backend.url()
    )
}

/// Waits (bounded) until the failed exchange has been counted somewhere: as the client's
/// abort (`cli_abrt`) or as the backend's error (`eresp`, `econ`).
async fn wait_for_outcome(director: &Director) -> std::collections::HashMap<String, u64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let c = csv_counters(director, "app", "b0").await;
        if c["cli_abrt"] + c["eresp"] + c["econ"] > 0 {
            return c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the exchange was never counted: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Asserts the backend was not blamed: online, no backend error counted, and serving.
async fn assert_backend_not_blamed(director: &Director) {
    let c = wait_for_outcome(director).await;
    assert_eq!(c["eresp"], 0, "no response error counted: {c:?}");
    assert_eq!(c["econ"], 0, "no connect error counted: {c:?}");
    assert_eq!(c["cli_abrt"], 1, "counted as the client's abort: {c:?}");
    assert_eq!(health_state(director, "app", "b0").await, "online");
    let reply = get(&director.url("/")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// Reads a response head from `stream` (bounded).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
    })
    .await
    .expect("a response head within 10 s");
    String::from_utf8_lossy(&head).into_owned()
}

/// Whether the peer closes `stream` within 10 s (reading and discarding whatever comes first).
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_upload_leaves_the_backend_online() {
    let backend = TestBackend::tcp("b0", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&health_config(&backend, "", ""));
    wait_for_health(&director, "app", "b0", "online").await;

    // A 1 MB upload (larger than `replay-body-limit`, so it streams to the backend) that the
    // client abandons after 100 kB.
    let mut client = TcpStream::connect(director.socket_addr()).await.unwrap();
    client
        .write_all(b"POST /sha256 HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
        .await
        .unwrap();
    client.write_all(&[b'x'; 100_000]).await.unwrap();
    wait_until("the backend has the request", || {
        backend.live_requests() >= 1
    })
    .await;
    drop(client);

    assert_backend_not_blamed(&director).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_chunk_size_gets_400_and_leaves_the_backend_online() {
    let backend = TestBackend::tcp("b0", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&health_config(&backend, "", ""));
    wait_for_health(&director, "app", "b0", "online").await;

    let mut client = TcpStream::connect(director.socket_addr()).await.unwrap();
    client
        .write_all(
            b"POST /sha256 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        )
        .await
        .unwrap();
    wait_until("the backend has the request", || {
        backend.live_requests() >= 1
    })
    .await;
    client.write_all(b"zz\r\nnot a chunk\r\n").await.unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert!(
        closed_by_peer(&mut client).await,
        "the connection is closed"
    );

    assert_backend_not_blamed(&director).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_cut_at_client_body_timeout_and_frees_its_slot() {
    let backend = TestBackend::tcp("b0", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&health_config(
        &backend,
        "client-body-timeout = \"1s\"",
        "capacity = 1",
    ));
    wait_for_health(&director, "app", "b0", "online").await;

    // A large upload streams to the backend and holds its only slot; a small one is read
    // before any backend is chosen. Both stall after a few bytes.
    for (length, at_backend) in [(1_000_000, true), (100, false)] {
        let before = backend.live_requests();
        let mut client = TcpStream::connect(director.socket_addr()).await.unwrap();
        client
            .write_all(
                format!("POST /sha256 HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        client.write_all(b"0123456789").await.unwrap();
        if at_backend {
            wait_until("the backend has the request", || {
                backend.live_requests() > before
            })
            .await;
        }
        let head = read_head(&mut client).await;
        assert!(head.starts_with("HTTP/1.1 408 "), "{length}: {head}");
        assert!(
            closed_by_peer(&mut client).await,
            "the connection is closed"
        );
        // The slot is free again: the next request is served, not queued.
        let reply = get(&director.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let c = csv_counters(&director, "app", "b0").await;
    assert_eq!(c["eresp"], 0, "{c:?}");
    assert_eq!(health_state(&director, "app", "b0").await, "online");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pooled_connection_is_closed_at_idle_timeout() {
    // A raw backend that answers one request and then waits to see the connection closed.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let director = Director::start(&cluster_config(&[url], "", "idle-timeout = \"1s\""));
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request arrives");
            head.extend_from_slice(&buf[..n]);
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        // Nothing more is sent on it: the next read ends only when Director closes it.
        let closed = matches!(conn.read(&mut buf).await, Ok(0) | Err(_));
        let _ = seen_tx.send(closed);
    });
    let reply = get(&director.url("/")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let closed = tokio::time::timeout(Duration::from_secs(10), seen_rx)
        .await
        .expect("the idle connection is closed within 10 s with no request arriving")
        .unwrap();
    assert!(closed);
}

/// A raw backend that answers every request with `response`, one request per connection.
async fn canned_backend(response: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let _ = conn.write_all(response).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_response_heads_give_502() {
    for (what, response) in [
        (
            "Content-Length with Transfer-Encoding",
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
               b\r\nhello world\r\n0\r\n\r\n"[..],
        ),
        (
            "status 999",
            &b"HTTP/1.1 999 Weird\r\nContent-Length: 2\r\n\r\nok"[..],
        ),
    ] {
        let url = canned_backend(response).await;
        let director = Director::start(&cluster_config(&[url], "", ""));
        let reply = raw(
            director.socket_addr(),
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            Duration::from_secs(10),
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 502 "), "{what}: {reply}");
        assert!(!reply.contains("hello"), "{what}: {reply}");
    }
}

/// `director_backend_tunnels_open` for app/b0 from `/metrics`.
async fn tunnels_open(director: &Director) -> u64 {
    let text = get(&format!("{}/metrics", director.admin())).await.text();
    text.lines()
        .find(|l| {
            l.starts_with("director_backend_tunnels_open{")
                && l.contains("cluster=\"app\"")
                && l.contains("backend=\"b0\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no tunnel gauge in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_is_closed_at_tunnel_idle_timeout() {
    let backend = TestBackend::tcp("b0", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(
        &[backend.url()],
        "tunnel-idle-timeout = \"1s\"",
        "",
    ));
    let mut client = TcpStream::connect(director.socket_addr()).await.unwrap();
    client
        .write_all(
            b"GET /upgrade HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    client.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut echo))
        .await
        .expect("the echo within 10 s")
        .unwrap();
    assert_eq!(&echo, b"ping");
    assert_eq!(
        tunnels_open(&director).await,
        1,
        "the open tunnel is counted"
    );

    // Then silence both ways: Director closes the tunnel.
    assert!(
        closed_by_peer(&mut client).await,
        "the idle tunnel is closed"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tunnels_open(&director).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gauge returns to 0"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_to_fastcgi_gets_408_the_same_way() {
    use director_fastcgi::{
        FastCgiAddr,
        test_util::{FakeResponder, Script},
    };
    let app = FakeResponder::tcp(Script::respond("Status: 200 OK\r\n\r\nok"))
        .await
        .unwrap();
    let FastCgiAddr::Tcp(addr) = app.addr() else {
        unreachable!("a TCP responder")
    };
    let director = Director::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\nclient-body-timeout = \"1s\"\n\n\
         [clusters.php]\nread-timeout = \"30s\"\n\n[clusters.php.fastcgi]\ndocument-root = \"/srv/www\"\n\n\
         [[clusters.php.backends]]\nname = \"b0\"\nurl = \"fastcgi://{addr}\"\n\n\
         [[routes]]\ncluster = \"php\"\n"
    ));
    let mut client = TcpStream::connect(director.socket_addr()).await.unwrap();
    client
        .write_all(
            b"POST /index.php HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 408 "), "{head}");
    assert!(
        closed_by_peer(&mut client).await,
        "the connection is closed"
    );
    let c = csv_counters(&director, "php", "b0").await;
    assert_eq!(
        (c["eresp"], c["econ"]),
        (0, 0),
        "not the backend's failure: {c:?}"
    );
    assert_eq!(c["cli_abrt"], 1, "the client's abort: {c:?}");
}
