//! The smaller gaps x0 users meet (issue 16, item 10), through the `director` binary: the public
//! monitor page, the FastCGI probe's x0 params, X-Accel-Redirect to no location, and per-cluster
//! files.

mod support;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use director_fastcgi::{
    FastCgiAddr,
    test_util::{FakeResponder, Script},
};
use http::Request;
use http_body_util::Full;
use support::*;

fn admin_addr(director: &Director) -> SocketAddr {
    director
        .admin()
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_page_needs_no_token_nor_our_host() {
    let director = Director::start(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\nadmin-token = \"s3cret-s3cret-s3cret\"\n",
    );
    let admin = director.admin();
    let addr = admin_addr(&director);

    // An outside load balancer: no token.
    let reply = get(&format!("{admin}/haproxy/monitor")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("Service ready"), "{}", reply.text());
    // HAProxy's `option httpchk` sends HTTP/1.0 without a Host; others name a VIP of theirs.
    let answer = raw(
        addr,
        b"GET /haproxy/monitor HTTP/1.0\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let reply = send(
        Request::get(format!("{admin}/haproxy/monitor"))
            .header("host", "lb-vip.example:80")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
    // It changes nothing.
    let reply = send(
        Request::post(format!("{admin}/haproxy/monitor"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 405);

    // Everything else stays behind the token and the Host check.
    for path in [
        "/haproxy/stats;csv",
        "/haproxy/monitor/",
        "/haproxy?stats",
        "/api/",
    ] {
        let reply = get(&format!("{admin}{path}")).await;
        assert_eq!(reply.status, 401, "{path}: {}", reply.text());
    }
    let reply = send(
        Request::get(format!("{admin}/haproxy/stats;csv"))
            .header("host", "evil.example")
            .header("authorization", "Bearer s3cret-s3cret-s3cret")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 421);
    let reply = send(
        Request::get(format!("{admin}/haproxy/stats;csv"))
            .header("authorization", "Bearer s3cret-s3cret-s3cret")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
}

fn fastcgi_url(addr: FastCgiAddr) -> String {
    match addr {
        FastCgiAddr::Tcp(sa) => format!("fastcgi://{sa}"),
        FastCgiAddr::Unix(path) => format!("fastcgi+unix:{}", path.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fastcgi_probe_names_cluster_and_backend_as_x0_did() {
    let app = FakeResponder::tcp(Script::respond("Content-Type: text/plain\r\n\r\nok"))
        .await
        .unwrap();
    let director = Director::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n\
         [clusters.shop]\n\n[clusters.shop.fastcgi]\ndocument-root = \"/srv/www\"\n\n\
         [clusters.shop.health]\ninterval = \"100ms\"\npath = \"/ping.php\"\n\n\
         [[clusters.shop.backends]]\nname = \"php1\"\nurl = \"{}\"\n\n\
         [[routes]]\ncluster = \"shop\"\n",
        fastcgi_url(app.addr())
    ));
    wait_until("a probe reached the application", || {
        app.requests()
            .iter()
            .any(|r| r.param("HTTP_X0_HEALTH_CHECK").is_some())
    })
    .await;
    let probe = app
        .requests()
        .into_iter()
        .find(|r| r.param("HTTP_X0_HEALTH_CHECK").is_some())
        .unwrap();
    assert_eq!(probe.param("HTTP_X0_HEALTH_CHECK"), Some("yes"));
    assert_eq!(probe.param("HTTP_X0_DIRECTOR"), Some("shop"));
    assert_eq!(probe.param("HTTP_X0_BACKEND"), Some("php1"));
    assert_eq!(probe.param("SCRIPT_NAME"), Some("/ping.php"));
    drop(director);
}
