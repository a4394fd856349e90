//! FastCGI backends through the `director` binary, against a scripted FastCGI application.

mod support;

use bytes::Bytes;
use director_fastcgi::{
    FastCgiAddr,
    test_util::{FakeResponder, Script},
};
use http::Request;
use http_body_util::Full;
use support::*;

fn url(addr: FastCgiAddr) -> String {
    match addr {
        FastCgiAddr::Tcp(sa) => format!("fastcgi://{sa}"),
        FastCgiAddr::Unix(path) => format!("fastcgi+unix:{}", path.display()),
    }
}

fn config(backends: &[String], extra_routes: &str) -> String {
    let mut c = String::from(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n\
         [clusters.php]\nread-timeout = \"2s\"\n\n[clusters.php.fastcgi]\ndocument-root = \"/srv/www\"\ncheck-script = false\n\
         params = { APP_ENV = \"test\" }\n\n",
    );
    for (i, b) in backends.iter().enumerate() {
        c.push_str(&format!(
            "[[clusters.php.backends]]\nname = \"f{i}\"\nurl = \"{b}\"\n\n"
        ));
    }
    c.push_str(extra_routes);
    c.push_str("[[routes]]\ncluster = \"php\"\n");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fastcgi_cluster_serves_with_cgi_variables() {
    let app = FakeResponder::tcp(Script::respond(
        "Status: 201 Created\r\nContent-Type: text/plain\r\nX-App: yes\r\n\r\ncreated",
    ))
    .await
    .unwrap();
    let director = Director::start(&config(&[url(app.addr())], ""));
    let reply = send(
        Request::post(director.url("/blog/index.php/posts/7?draft=1"))
            .header("host", "blog.example")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("proxy", "http://evil.example")
            .body(Full::new(Bytes::from_static(b"title=hello")))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.text(), "created");
    assert_eq!(reply.header("x-app"), Some("yes"));
    assert_eq!(reply.header("via"), Some("1.1 director"));

    let seen = &app.requests()[0];
    assert_eq!(seen.param("REQUEST_METHOD"), Some("POST"));
    assert_eq!(seen.param("SCRIPT_NAME"), Some("/blog/index.php"));
    assert_eq!(
        seen.param("SCRIPT_FILENAME"),
        Some("/srv/www/blog/index.php")
    );
    assert_eq!(seen.param("PATH_INFO"), Some("/posts/7"));
    assert_eq!(seen.param("QUERY_STRING"), Some("draft=1"));
    assert_eq!(seen.param("REMOTE_ADDR"), Some("127.0.0.1"));
    assert_eq!(seen.param("HTTP_HOST"), Some("blog.example"));
    assert_eq!(seen.param("HTTP_X_FORWARDED_FOR"), Some("127.0.0.1"));
    assert_eq!(seen.param("CONTENT_LENGTH"), Some("11"));
    assert_eq!(
        seen.param("APP_ENV"),
        Some("test"),
        "extra params from the config"
    );
    assert_eq!(seen.param("HTTP_PROXY"), None, "httpoxy");
    assert_eq!(seen.stdin, "title=hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_road_warrior_route_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let app = FakeResponder::unix(
        &dir.path().join("php.sock"),
        Script::respond("Content-Type: text/plain\r\n\r\ndirect"),
    )
    .await
    .unwrap();
    let routes = format!(
        "[[routes]]\npath = \"/legacy\"\nbackend = \"{}\"\n[routes.fastcgi]\ndocument-root = \"/srv/legacy\"\ncheck-script = false\nfront-controller = \"/app.php\"\n\n",
        url(app.addr())
    );
    let http = director_core::testing::TestBackend::tcp("h", "127.0.0.1:0")
        .await
        .unwrap();
    let c = config(&[], &routes).replace(
        "[[routes]]\ncluster = \"php\"\n",
        &format!("[clusters.web]\n[[clusters.web.backends]]\nname = \"h\"\nurl = \"{}\"\n[[routes]]\ncluster = \"web\"\n", http.url()),
    );
    let director = Director::start(&c);
    let reply = get(&director.url("/legacy/some/page")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "direct");
    let seen = &app.requests()[0];
    assert_eq!(seen.param("SCRIPT_FILENAME"), Some("/srv/legacy/app.php"));
    assert_eq!(seen.param("PATH_INFO"), Some("/legacy/some/page"));
    assert_eq!(
        get(&director.url("/other")).await.header("x-backend"),
        Some("h")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_broken_applications() {
    let app = FakeResponder::tcp(Script::respond("Content-Type: text/plain\r\n\r\nok"))
        .await
        .unwrap();
    let dead = format!("fastcgi://{}", dead_port());
    let director = Director::start(&config(&[dead.clone(), url(app.addr())], ""));
    for _ in 0..4 {
        let reply = get(&director.url("/index.php")).await;
        assert_eq!(
            reply.status, 200,
            "a bodiless request moves past the dead backend"
        );
    }

    let lone_dead = Director::start(&config(&[dead], ""));
    let reply = get(&lone_dead.url("/index.php")).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("10"));

    let broken = FakeResponder::tcp(Script::new().read_request().close())
        .await
        .unwrap();
    let director = Director::start(&config(&[url(broken.addr())], ""));
    assert_eq!(
        get(&director.url("/index.php")).await.status,
        502,
        "closed before answering"
    );

    let silent = FakeResponder::tcp(
        Script::new()
            .read_request()
            .sleep(std::time::Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let director = Director::start(&config(&[url(silent.addr())], ""));
    assert_eq!(
        get(&director.url("/index.php")).await.status,
        504,
        "read timeout"
    );
}

#[test]
fn fastcgi_backends_need_their_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[clusters.php]\n[[clusters.php.backends]]\nname = \"a\"\nurl = \"fastcgi://127.0.0.1:9000\"\n",
    )
    .unwrap();
    let (ok, text) = check(&path);
    assert!(!ok);
    assert!(
        text.contains(":4:1: clusters.php.backends[0].url:"),
        "{text}"
    );
    assert!(text.contains("[clusters.php.fastcgi]"), "{text}");
}
