//! Hostile clients against the listener: silent connections, half prefaces, idle keep-alive and
//! HTTP/2, more connections than `max-connections`, too many header fields.

mod support;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use director_core::testing::TestBackend;
use http_body_util::Full;
use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Connects `n` clients that each send `bytes` (maybe nothing) and then stay silent.
async fn silent(addr: SocketAddr, n: usize, bytes: &'static [u8]) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        if !bytes.is_empty() {
            stream.write_all(bytes).await.unwrap();
        }
        streams.push(stream);
    }
    streams
}

/// Waits (at most `limit`) for the server to close each of `streams`, returning how many it did.
async fn closed_by_server(streams: Vec<TcpStream>, limit: Duration) -> usize {
    let reads = streams.into_iter().map(|mut stream| async move {
        let mut sink = Vec::new();
        matches!(
            tokio::time::timeout(limit, stream.read_to_end(&mut sink)).await,
            Ok(Ok(_)) | Ok(Err(_))
        )
    });
    futures_util::future::join_all(reads)
        .await
        .into_iter()
        .filter(|closed| *closed)
        .count()
}

/// The value of `metric` (with any labels) in the Prometheus text of `/metrics`.
async fn metric(director: &Director, metric: &str) -> f64 {
    let text = get(&format!("{}/metrics", director.admin())).await.text();
    text.lines()
        .find(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {metric} in\n{text}"))
}

/// The FRONTEND row of the HAProxy CSV, as column → value.
async fn frontend_row(director: &Director) -> std::collections::HashMap<String, String> {
    let text = get(&format!("{}/haproxy?stats;csv", director.admin()))
        .await
        .text();
    let mut reader = csv::Reader::from_reader(text.trim_start_matches("# ").as_bytes());
    let headers = reader.headers().unwrap().clone();
    for record in reader.records() {
        let record = record.unwrap();
        if record.get(1) == Some("FRONTEND") {
            return headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect();
        }
    }
    panic!("no FRONTEND row in\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_and_half_h2_prefaces_are_closed_at_the_header_read_timeout() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(
        &[backend.url()],
        "header-read-timeout = \"500ms\"",
        "",
    ));
    let addr = director.socket_addr();
    let mut streams = silent(addr, 500, b"").await;
    // Version detection waits for the rest of the preface.
    streams.extend(silent(addr, 5, &H2_PREFACE[..10]).await);
    // A complete h2 preface and SETTINGS, then no request.
    let mut h2 = H2_PREFACE.to_vec();
    h2.extend_from_slice(EMPTY_SETTINGS);
    let h2: &'static [u8] = h2.leak();
    streams.extend(silent(addr, 5, h2).await);
    let closed = closed_by_server(streams, Duration::from_secs(20)).await;
    assert_eq!(closed, 510, "connections left open by the server");
    assert_eq!(backend.requests(), 0);
    assert_eq!(get(&director.url("/")).await.status, 200, "still serving");
    assert!(metric(&director, "director_listener_timeouts_total").await >= 510.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_accept_pauses_and_serves_once_the_silent_ones_are_closed() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(
        &[backend.url()],
        "header-read-timeout = \"1s\"\nmax-connections = 50",
        "",
    ));
    let addr = director.socket_addr();
    // 60 silent clients: 50 are accepted, 10 wait in the kernel's backlog.
    let streams = silent(addr, 60, b"").await;
    wait_until_frontend(&director, "scur", "50").await;
    // A normal request waits behind them and is served once the silent ones are closed.
    let reply = tokio::time::timeout(Duration::from_secs(20), get(&director.url("/")))
        .await
        .expect("served after the silent connections timed out");
    assert_eq!(reply.status, 200);
    assert_eq!(closed_by_server(streams, Duration::from_secs(20)).await, 60);
    let row = frontend_row(&director).await;
    assert_eq!(row["slim"], "50", "{row:?}");
    assert_eq!(
        row["smax"], "50",
        "never more than the limit at once: {row:?}"
    );
    assert_eq!(
        metric(&director, "director_listener_connections_limit").await,
        50.0
    );
    assert_eq!(
        metric(&director, "director_listener_connections_max").await,
        50.0
    );
    assert!(metric(&director, "director_listener_connection_limit_waits_total").await >= 1.0);
}

/// Waits (bounded) until the FRONTEND row's `column` reads `value`.
async fn wait_until_frontend(director: &Director, column: &str, value: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let row = frontend_row(director).await;
        if row[column] == value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{column} stayed {}, never {value}",
            row[column]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slim_is_max_connections_with_its_default() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(&[backend.url()], "", ""));
    assert_eq!(frontend_row(&director).await["slim"], "10000");
}

/// Sends one HTTP/1.1 request on `stream` and reads its (Content-Length) response.
async fn exchange(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10s")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("a Content-Length");
            if answer.len() >= end + 4 + length {
                return text.into_owned();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_lasts_keep_alive_timeout_not_header_read_timeout() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(
        &[backend.url()],
        "header-read-timeout = \"200ms\"\nkeep-alive-timeout = \"4s\"",
        "",
    ));
    let mut stream = TcpStream::connect(director.socket_addr()).await.unwrap();
    assert!(exchange(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than the header timeout: a keep-alive connection is still usable.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(exchange(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Then idle past keep-alive-timeout: closed by the server.
    assert_eq!(
        closed_by_server(vec![stream], Duration::from_secs(10)).await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_second_head_is_closed_at_the_header_read_timeout() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(
        &[backend.url()],
        "header-read-timeout = \"500ms\"\nkeep-alive-timeout = \"60s\"",
        "",
    ));
    let mut stream = TcpStream::connect(director.socket_addr()).await.unwrap();
    assert!(exchange(&mut stream).await.starts_with("HTTP/1.1 200"));
    stream.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    assert_eq!(
        closed_by_server(vec![stream], Duration::from_secs(10)).await,
        1,
        "a head begun on a keep-alive connection has header-read-timeout, not keep-alive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2_connection_gets_goaway_at_keep_alive_timeout() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(
        &[backend.url()],
        "keep-alive-timeout = \"500ms\"",
        "",
    ));
    let tcp = TcpStream::connect(director.socket_addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let request = http::Request::get("/")
        .header("host", "x")
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    // With no stream open the server says GOAWAY and the connection ends cleanly.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "the idle h2 connection was not closed: {ended:?}"
    );
}

/// A GET with `n` extra header fields.
fn with_headers(n: usize) -> Vec<u8> {
    let mut request = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..n {
        request.push_str(&format!("X-H{i}: v\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    request.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_headers_sets_the_431_limit() {
    // (A backend has limits of its own: a hyper backend answers 431 past 100 fields, and that
    // answer is passed on; this limit is below it.)
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(&[backend.url()], "max-headers = 50", ""));
    let addr = director.socket_addr();
    // 48 fields with Host and Connection: within the limit.
    let answer = raw(addr, &with_headers(48), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.80}");
    let answer = raw(addr, &with_headers(49), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.80}");
    assert_eq!(
        backend.requests(),
        1,
        "the refused head never reaches the backend"
    );
}

/// Reads one HTTP/2 frame: (type, flags, payload).
async fn read_frame(stream: &mut TcpStream) -> (u8, u8, Vec<u8>) {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.unwrap();
    let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; length];
    stream.read_exact(&mut payload).await.unwrap();
    (head[3], head[4], payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_peer_that_stops_answering_pings_is_closed_and_streams_are_capped() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(
        &[backend.url()],
        "h2-ping-interval = \"300ms\"\nh2-ping-timeout = \"300ms\"\nh2-max-concurrent-streams = 7",
        "",
    ));
    let mut stream = TcpStream::connect(director.socket_addr()).await.unwrap();
    let mut hello = H2_PREFACE.to_vec();
    hello.extend_from_slice(EMPTY_SETTINGS);
    // HEADERS on stream 1, END_STREAM | END_HEADERS: GET http://x/delay/30000 in HPACK
    // (static-table :method GET, :scheme http; literal :path and :authority).
    let path = b"/delay/30000";
    let mut block = vec![0x82, 0x86, 0x44, path.len() as u8];
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x41, 0x01, b'x']);
    hello.extend_from_slice(&(block.len() as u32).to_be_bytes()[1..]);
    hello.extend_from_slice(&[0x01, 0x05, 0, 0, 0, 1]);
    hello.extend_from_slice(&block);
    stream.write_all(&hello).await.unwrap();
    // The server's first frame is its SETTINGS, with the stream cap.
    let (kind, _, payload) = read_frame(&mut stream).await;
    assert_eq!(kind, 4, "SETTINGS first");
    let settings: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    assert!(
        settings.contains(&(0x3, 7)),
        "SETTINGS_MAX_CONCURRENT_STREAMS = 7 in {settings:?}"
    );
    wait_until("the request reaches the backend", || {
        backend.requests() == 1
    })
    .await;
    // This peer reads but never answers a PING: the connection ends long before the backend's
    // 30 s answer (with `h2-ping-interval = "0s"` it stays open: checked by hand).
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "a peer that never answers pings was not closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_at_send_timeout_and_frees_its_slot() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\nsend-timeout = \"500ms\"\n\n\
         [clusters.app]\nqueue-timeout = \"60s\"\n\n\
         [[clusters.app.backends]]\nname = \"b0\"\nurl = \"{}\"\ncapacity = 1\n\n\
         [[routes]]\ncluster = \"app\"\n",
        backend.url()
    ));
    // Asks for 256 MiB and never reads: the sockets' buffers fill and Director's writes stall,
    // holding the backend's only slot.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(director.socket_addr()).await.unwrap();
    stalled
        .write_all(b"GET /bytes/268435456 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // It holds the slot before the next request asks for it.
    tokio::time::timeout(Duration::from_secs(10), async {
        while backend.requests() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the backend got the stalled request");
    // The next request waits for that slot: it is served once the stalled client is closed
    // (without a send timeout it would wait for the 60 s queue timeout).
    let next = tokio::time::timeout(Duration::from_secs(20), get(&director.url("/echo"))).await;
    assert_eq!(
        next.expect("served while the stalled client held on")
            .status,
        200
    );
    assert_eq!(
        closed_by_server(vec![stalled], Duration::from_secs(20)).await,
        1
    );
}
