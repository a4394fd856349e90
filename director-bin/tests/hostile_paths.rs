//! Hostile request heads through the binary: paths spelled to slip past a route, smuggled hosts,
//! oversized bodies, `CONNECT` and h2c upgrades. Raw sockets, so that nothing on the client
//! side tidies the request first.

mod support;

use std::time::Duration;

use director_core::testing::TestBackend;
use director_fastcgi::{
    FastCgiAddr,
    test_util::{FakeResponder, Script},
};
use support::*;

const LIMIT: Duration = Duration::from_secs(10);

/// `[[routes]]` tables appended after the catch-all route to `app` of [`cluster_config`].
fn config(backend: &TestBackend, server: &str, routes: &str) -> String {
    format!("{}\n{routes}", cluster_config(&[backend.url()], server, ""))
}

/// Sends `head` (and `body`) on a fresh connection; the status code and the whole reply.
async fn exchange(director: &Director, head: &str, body: &[u8]) -> (u16, String) {
    let mut bytes = head.as_bytes().to_vec();
    bytes.extend_from_slice(body);
    let reply = raw(director.socket_addr(), &bytes, LIMIT).await;
    let status = reply
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, reply)
}

async fn get_path(director: &Director, path: &str) -> (u16, String) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n");
    exchange(director, &head, b"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_prefix_is_denied_in_every_spelling() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(
        &backend,
        "",
        "[[routes]]\npath = \"/inc/\"\ndeny = true\n",
    ));
    for path in [
        "/inc/x",
        "/%69nc/x",
        "//inc/x",
        "/lib/../inc/x",
        "/doku.php/../inc/init.php",
        "/%2e/inc/x",
        "/lib/%2E%2E/inc/x",
    ] {
        let (status, reply) = get_path(&director, path).await;
        assert_eq!(status, 403, "{path}: {reply}");
    }
    assert_eq!(
        backend.requests(),
        0,
        "no denied request reached the backend"
    );
    let (status, reply) = get_path(&director, "/lib/x").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(backend.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_receives_the_normalised_path_and_the_query_as_sent() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&backend, "", ""));
    let (status, reply) = get_path(&director, "/%61pi//v1/./x/../%7euser%3f?q=/../%2e&r=%2F").await;
    assert_eq!(status, 200, "{reply}");
    let seen = backend.last_request().expect("the backend saw the request");
    assert_eq!(seen.uri.path(), "/api/v1/~user%3F");
    assert_eq!(seen.uri.query(), Some("q=/../%2e&r=%2F"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fastcgi_backend_gets_the_path_the_routes_saw() {
    let app = FakeResponder::tcp(Script::respond("Content-Type: text/plain\r\n\r\nphp"))
        .await
        .unwrap();
    let url = match app.addr() {
        FastCgiAddr::Tcp(sa) => format!("fastcgi://{sa}"),
        FastCgiAddr::Unix(path) => format!("fastcgi+unix:{}", path.display()),
    };
    let director = Director::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n\
         [clusters.php]\n[clusters.php.fastcgi]\ndocument-root = \"/srv/www\"\n\
         [[clusters.php.backends]]\nname = \"f0\"\nurl = \"{url}\"\n\n\
         [[routes]]\ncluster = \"php\"\n\n[[routes]]\npath = \"/inc/\"\ndeny = true\n"
    ));
    for path in [
        "/%69nc/init.php",
        "/doku.php/../inc/init.php",
        "//inc/init.php",
    ] {
        let (status, reply) = get_path(&director, path).await;
        assert_eq!(status, 403, "{path}: {reply}");
    }
    assert!(app.requests().is_empty(), "no denied path reached PHP");

    let (status, reply) = get_path(&director, "/%62log//index.php/posts/%2e%2e/7?x=%2e").await;
    assert_eq!(status, 200, "{reply}");
    let seen = &app.requests()[0];
    assert_eq!(seen.param("REQUEST_URI"), Some("/blog/index.php/7?x=%2e"));
    assert_eq!(seen.param("SCRIPT_NAME"), Some("/blog/index.php"));
    assert_eq!(seen.param("PATH_INFO"), Some("/7"));
    assert_eq!(seen.param("QUERY_STRING"), Some("x=%2e"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalise_path_false_forwards_the_raw_path() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&backend, "normalize-path = false", ""));
    let (status, reply) = get_path(&director, "/a//b/%2e%2e/c%2Fd").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        backend.last_request().unwrap().uri.path(),
        "/a//b/%2e%2e/c%2Fd"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_slashes_nuls_controls_and_escapes_above_the_root_get_400() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&backend, "", ""));
    for path in [
        "/a%2Fb",
        "/inc%2finit.php",
        "/vars.php%00.css",
        "/a%0d%0aSet-Cookie:%20x=1",
        "/a%7F",
        "/../etc/passwd",
        "/a/%2e%2e/%2e%2e/etc/passwd",
        "/a%zz",
    ] {
        let (status, reply) = get_path(&director, path).await;
        assert_eq!(status, 400, "{path}: {reply}");
    }
    assert_eq!(backend.requests(), 0, "no refused path reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_headers_or_an_invalid_host_get_400() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&backend, "", ""));
    let heads = [
        "GET / HTTP/1.1\r\nHost: site.example\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: evil.example/x\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: user@site.example\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: site.example:80x\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    ];
    for head in heads {
        let (status, reply) = exchange(&director, head, b"").await;
        assert_eq!(status, 400, "{head:?}: {reply}");
    }
    assert_eq!(backend.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_absolute_form_authority_wins_over_host() {
    let wanted = TestBackend::tcp("wanted", "127.0.0.1:0").await.unwrap();
    let other = TestBackend::tcp("other", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n\
         [[routes]]\nhost = \"a.example\"\nbackend = \"{}\"\n\n\
         [[routes]]\nhost = \"b.example\"\nbackend = \"{}\"\n",
        wanted.url(),
        other.url()
    ));
    let head = "GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n";
    let (status, reply) = exchange(&director, head, b"").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        other.requests(),
        0,
        "routed by the URI's authority, not Host"
    );
    let seen = wanted.last_request().expect("routed to a.example");
    assert_eq!(seen.headers["host"], "a.example");
    assert_eq!(seen.headers["x-forwarded-host"], "a.example");
    assert_eq!(seen.uri, "/x", "origin-form upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_max_request_body_gets_413_before_any_backend() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(
        &backend,
        "max-request-body = 1000",
        "[[routes]]\npath = \"/upload/\"\ncluster = \"app\"\nmax-request-body = 10000\n",
    ));
    // Only the head is sent: the answer must not wait for the body.
    let head = "POST /sha256 HTTP/1.1\r\nHost: site.example\r\nContent-Length: 5000\r\n\
                Connection: close\r\n\r\n";
    let (status, reply) = exchange(&director, head, b"").await;
    assert_eq!(status, 413, "{reply}");
    assert_eq!(backend.requests(), 0, "the backend saw nothing");

    // The route's own limit overrides the listener's.
    let head = "POST /upload/x HTTP/1.1\r\nHost: site.example\r\nContent-Length: 5000\r\n\
                Connection: close\r\n\r\n";
    let (status, reply) = exchange(&director, head, &[b'x'; 5000]).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(backend.requests(), 1);

    // At the limit exactly is within it.
    let head = "POST /sha256 HTTP/1.1\r\nHost: site.example\r\nContent-Length: 1000\r\n\
                Connection: close\r\n\r\n";
    let (status, reply) = exchange(&director, head, &[b'x'; 1000]).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply.contains("\r\n\r\n1000 "), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_max_request_body_never_reaches_the_backend_whole() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&backend, "max-request-body = 1000", ""));
    let chunk = format!("258\r\n{}\r\n", "x".repeat(600));
    let body = format!("{chunk}{chunk}{chunk}0\r\n\r\n");
    let head = "POST /sha256 HTTP/1.1\r\nHost: site.example\r\nTransfer-Encoding: chunked\r\n\
                Connection: close\r\n\r\n";
    let (status, reply) = exchange(&director, head, body.as_bytes()).await;
    // The backend hashes what it receives and answers "1800 <sha256>" for the whole body.
    assert!(
        !reply.contains("1800 "),
        "the whole body reached the backend: {reply}"
    );
    // The client's oversized body is the client's: 413, not a backend failure (502).
    assert_eq!(status, 413, "{reply}");
    // Within the limit, a chunked body passes whole.
    let body = format!("{chunk}0\r\n\r\n");
    let (status, reply) = exchange(&director, head, body.as_bytes()).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply.contains("\r\n\r\n600 "), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_gets_405_and_never_reaches_a_backend() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&backend, "", ""));
    let head = "CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\
                Connection: close\r\n\r\n";
    let (status, reply) = exchange(&director, head, b"").await;
    assert_eq!(status, 405, "{reply}");
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("\r\nallow: get, head, post"),
        "{reply}"
    );
    assert_eq!(backend.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_is_served_as_plain_http_11() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&backend, "", ""));
    let head = "GET /plain HTTP/1.1\r\nHost: site.example\r\nConnection: Upgrade, HTTP2-Settings\r\n\
                Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: close\r\n\r\n";
    let (status, reply) = exchange(&director, head, b"").await;
    assert_eq!(status, 200, "{reply}");
    let seen = backend.last_request().expect("served");
    for gone in ["upgrade", "http2-settings"] {
        assert!(
            !seen.headers.contains_key(gone),
            "{gone} reached the backend"
        );
    }
}
