//! End-to-end tests of the `director` binary: real sockets on loopback, real backends.

mod support;

use std::time::Duration;

use bytes::Bytes;
use director_core::testing::{TestBackend, hex, pattern, pattern_sha256};
use http::Request;
use http_body_util::{BodyExt, Full, StreamBody};
use sha2::{Digest, Sha256};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_over_ipv4_ipv6_and_unix_each_receive_requests() {
    let dir = tempfile::tempdir().unwrap();
    let v4 = TestBackend::tcp("v4", "127.0.0.1:0").await.unwrap();
    let v6_addr = if has_ipv6() { "[::1]:0" } else { "127.0.0.1:0" };
    let v6 = TestBackend::tcp("v6", v6_addr).await.unwrap();
    let unix = TestBackend::unix("unix", &sock(dir.path(), "b.sock"))
        .await
        .unwrap();
    let director = Director::start(&cluster_config(&[v4.url(), v6.url(), unix.url()], "", ""));

    let mut seen = Vec::new();
    for _ in 0..6 {
        let reply = get(&director.url("/")).await;
        assert_eq!(reply.status, 200);
        seen.push(reply.header("x-backend").unwrap().to_owned());
    }
    assert_eq!(
        seen,
        ["v4", "v6", "unix", "v4", "v6", "unix"],
        "round-robin"
    );
    for backend in [&v4, &v6, &unix] {
        assert_eq!(backend.requests(), 2, "{}", backend.name());
        assert_eq!(backend.connections(), 1, "keep-alive to {}", backend.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_of_64_mib_stream_both_ways_intact() {
    const SIZE: u64 = 64 << 20;
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(&[backend.url()], "", ""));

    // Download: the backend streams pattern data; the checksum must match.
    let reply = get(&director.url(&format!("/bytes/{SIZE}"))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len() as u64, SIZE);
    assert_eq!(hex(&Sha256::digest(&reply.body)), pattern_sha256(SIZE));

    // Upload, streamed in 64 KiB chunks without a known length (chunked), hashed by the backend.
    let chunks = (0..SIZE / (1 << 16)).map(|i| {
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(pattern(i << 16, 1 << 16)))
    });
    let body = StreamBody::new(futures_util::stream::iter(chunks));
    let response =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http()
            .request(Request::post(director.url("/sha256")).body(body).unwrap())
            .await
            .unwrap();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&text),
        format!("{SIZE} {}", pattern_sha256(SIZE))
    );

    // Both ways at once: the backend echoes while the upload is still flowing.
    let payload: Bytes = pattern(0, 8 << 20);
    let reply = send(
        Request::post(director.url("/echo"))
            .body(Full::new(payload.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.body, payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_download_passes_with_flat_memory() {
    const SIZE: u64 = 1 << 30;
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(&[backend.url()], "", ""));
    let before = director.peak_rss_kib();
    let response = client()
        .request(
            Request::get(director.url(&format!("/bytes/{SIZE}")))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        received += frame.unwrap().into_data().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(received, SIZE);
    let peak = director.peak_rss_kib();
    eprintln!("director peak RSS: {before} KiB before, {peak} KiB after a 1 GiB download");
    // Streaming keeps a few buffers per connection; 1 GiB buffered would be a million KiB.
    assert!(
        peak < before + 32 * 1024,
        "peak RSS grew from {before} to {peak} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_header_rules() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(
        &[backend.url()],
        "pseudonym = \"edge1\"",
        "",
    ));
    let reply = send(
        Request::get(director.url("/path?q=1"))
            .header("host", "shop.example:8443")
            .header("connection", "keep-alive, x-secret")
            .header("x-secret", "drop me")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("proxy-authorization", "Basic Zm9vOmJhcg==")
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.example")
            .header("via", "1.0 browser-proxy")
            .header("x-custom", "kept")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
    let seen = backend.last_request().unwrap();
    let h = |n: &str| {
        seen.headers
            .get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(seen.uri, "/path?q=1");
    assert_eq!(h("host"), ["shop.example:8443"], "Host preserved");
    assert_eq!(
        h("x-forwarded-for"),
        ["203.0.113.9, 127.0.0.1"],
        "XFF appended"
    );
    assert_eq!(h("x-forwarded-proto"), ["http"], "client value not trusted");
    assert_eq!(
        h("x-forwarded-host"),
        ["shop.example:8443"],
        "client value not trusted"
    );
    assert_eq!(h("via"), ["1.0 browser-proxy", "1.1 edge1"], "Via appended");
    assert_eq!(h("x-custom"), ["kept"]);
    for gone in ["x-secret", "keep-alive", "te", "proxy-authorization"] {
        assert!(h(gone).is_empty(), "{gone} must not reach the backend");
    }
    assert!(
        h("connection")
            .iter()
            .all(|v| v.eq_ignore_ascii_case("keep-alive")),
        "only the proxy's own connection management: {:?}",
        h("connection")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_forwarding_headers_are_kept_when_configured() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(
        &[backend.url()],
        "trust-forwarded-headers = true\npseudonym = \"\"",
        "",
    ));
    send(
        Request::get(director.url("/"))
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "public.example")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let seen = backend.last_request().unwrap();
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["x-forwarded-host"], "public.example");
    assert!(
        !seen.headers.contains_key("via"),
        "empty pseudonym sends no Via"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_header_rules() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(&[backend.url()], "", ""));
    let reply = get(&director.url("/hop-headers")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hop");
    assert!(reply.header("x-hop").is_none(), "named in Connection");
    assert!(reply.header("keep-alive").is_none());
    assert!(
        reply.header("x-sendfile").is_none(),
        "never honoured or leaked"
    );
    assert_eq!(reply.header_all("set-cookie"), ["a=b"]);
    assert_eq!(reply.header_all("via"), ["1.0 origin", "1.1 director"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_proxy() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    // A real WebSocket echo server as the backend.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        ws.send(msg).await.unwrap();
                    }
                }
            });
        }
    });
    let director = Director::start(&cluster_config(&[format!("http://{backend_addr}")], "", ""));
    let url = director.url("/chat").replace("http://", "ws://");
    let (mut ws, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    for text in ["hello", "through", "director"] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed.into_text().unwrap(), text);
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_data().as_ref(), [0u8, 1, 2, 255]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(&[backend.url()], "", ""));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(director.socket_addr())
        .await
        .unwrap();
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = vec![0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &buf, b"HTTP/1.1 100 Continue\r\n\r\n",
        "interim response before the body"
    );
    stream.write_all(b"hello").await.unwrap();
    let mut rest = Vec::new();
    let mut chunk = [0u8; 4096];
    while !rest.ends_with(b"hello") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&rest));
        rest.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");
    assert!(
        !backend
            .last_request()
            .unwrap()
            .headers
            .contains_key("expect")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_and_max_forwards() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(&[backend.url()], "", ""));
    let trace = |mf: Option<&str>| {
        let mut b = Request::builder()
            .method("TRACE")
            .uri(director.url("/t"))
            .header("authorization", "Bearer s3cret");
        if let Some(mf) = mf {
            b = b.header("max-forwards", mf);
        }
        b.body(Full::default()).unwrap()
    };

    let local = send(trace(Some("0"))).await;
    assert_eq!(local.status, 200);
    assert_eq!(local.header("content-type"), Some("message/http"));
    assert!(
        local.text().starts_with("TRACE /t HTTP/1.1\r\n"),
        "{}",
        local.text()
    );
    assert!(
        !local.text().contains("s3cret"),
        "credentials are not reflected"
    );
    assert_eq!(backend.requests(), 0, "Max-Forwards: 0 stops at the proxy");

    let forwarded = send(trace(Some("3"))).await;
    assert_eq!(forwarded.status, 200);
    assert_eq!(backend.last_request().unwrap().headers["max-forwards"], "2");

    let bad = send(trace(Some("many"))).await;
    assert_eq!(bad.status, 400);
    assert_eq!(backend.requests(), 1);

    let options = send(
        Request::builder()
            .method("OPTIONS")
            .uri(director.url("/"))
            .header("max-forwards", "0")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(options.status, 200);
    assert!(options.header("allow").unwrap().contains("GET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_give_503_and_stalls_give_504() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let dead = dead_port();
    let config = format!(
        "{}\n[clusters.dead]\nretry-after = 7\n[[clusters.dead.backends]]\nname = \"x\"\nurl = \"http://{dead}\"\n\
         [[routes]]\npath = \"/dead\"\ncluster = \"dead\"\n\
         [[routes]]\npath = \"/rw-dead\"\nbackend = \"http://{dead}\"\n",
        cluster_config(&[backend.url()], "", "read-timeout = \"500ms\"")
    );
    let director = Director::start(&config);

    let reply = get(&director.url("/dead")).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("7"));

    let reply = get(&director.url("/rw-dead")).await;
    assert_eq!(reply.status, 503, "road warrior: cannot connect");
    assert_eq!(reply.header("retry-after"), None);

    let reply = get(&director.url("/stall")).await;
    assert_eq!(
        reply.status, 504,
        "no response head within the read timeout"
    );

    let reply = get(&director.url("/hangup")).await;
    assert_eq!(reply.status, 502, "backend closed without answering");

    // The pool is unharmed: a normal request still works.
    assert_eq!(get(&director.url("/")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_member_is_skipped() {
    let backend = TestBackend::tcp("live", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(
        &[format!("http://{}", dead_port()), backend.url()],
        "",
        "",
    ));
    for _ in 0..4 {
        let reply = get(&director.url("/")).await;
        assert_eq!(
            reply.status, 200,
            "connect failure moves to the next backend"
        );
        assert_eq!(reply.header("x-backend"), Some("live"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let c = TestBackend::tcp("c", "127.0.0.1:0").await.unwrap();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\
         [clusters.api]\n[[clusters.api.backends]]\nname = \"a\"\nurl = \"{}\"\n\
         [clusters.www]\n[[clusters.www.backends]]\nname = \"b\"\nurl = \"{}\"\n\
         [[routes]]\nhost = \"*.example.com\"\ncluster = \"www\"\n\
         [[routes]]\nhost = \"api.example.com\"\ncluster = \"api\"\n\
         [[routes]]\nhost = \"api.example.com\"\npath = \"/legacy\"\nbackend = \"{}\"\n",
        a.url(),
        b.url(),
        c.url()
    );
    let director = Director::start(&config);
    let with_host = |host: &'static str, path: &str| {
        Request::get(director.url(path))
            .header("host", host)
            .body(Full::default())
            .unwrap()
    };
    assert_eq!(
        send(with_host("api.example.com", "/v1"))
            .await
            .header("x-backend"),
        Some("a")
    );
    assert_eq!(
        send(with_host("www.example.com", "/"))
            .await
            .header("x-backend"),
        Some("b")
    );
    assert_eq!(
        send(with_host("api.example.com", "/legacy/x"))
            .await
            .header("x-backend"),
        Some("c")
    );
    assert_eq!(send(with_host("other.org", "/")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_served() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&cluster_config(&[backend.url()], "", ""));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let response = client
        .request(
            Request::get(director.url("/h2"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let seen = backend.last_request().unwrap();
    assert_eq!(
        seen.version,
        http::Version::HTTP_11,
        "backends get HTTP/1.1"
    );
    assert!(seen.headers.contains_key("host"), "authority becomes Host");
    assert_eq!(seen.headers["via"], "2 director");
}
