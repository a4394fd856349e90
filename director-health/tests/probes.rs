//! The built-in probes against real loopback sockets.

use std::net::SocketAddr;
use std::time::Duration;

use director_health::probe::http_probe::{X0_BACKEND, X0_DIRECTOR, X0_HEALTH_CHECK};
use director_health::test_util::{Behavior, TestBackend};
use director_health::{ExpectedStatus, HttpProbe, Probe, ProbeError, Target, TcpProbe};
use tokio::net::TcpListener;

/// An address nothing listens on (bound, then released).
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn http_probe_sends_x0_headers_and_judges_status() {
    let backend = TestBackend::start().await.unwrap();
    let probe = HttpProbe::builder(backend.addr())
        .path("/status")
        .host("health.test")
        .director("app")
        .backend("app-1")
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    probe.probe().await.unwrap();
    assert_eq!(backend.probes(), 1);
    assert_eq!(backend.live_requests(), 0);
    let headers = backend.last_probe_headers().unwrap();
    assert_eq!(headers["host"], "health.test");
    assert_eq!(headers[X0_HEALTH_CHECK], "yes");
    assert_eq!(headers[X0_DIRECTOR], "app");
    assert_eq!(headers[X0_BACKEND], "app-1");

    backend.set_behavior(Behavior::Failing);
    match probe.probe().await {
        Err(ProbeError::Status(s)) => assert_eq!(s, 503),
        other => panic!("expected a status failure, got {other:?}"),
    }
    // The same answer passes when 503 is expected.
    let lenient = HttpProbe::builder(backend.addr())
        .expect(ExpectedStatus::codes([503]))
        .build()
        .unwrap();
    lenient.probe().await.unwrap();
    assert_eq!(backend.probes(), 3);
}

#[tokio::test]
async fn http_probe_over_ipv6_loopback() {
    let Ok(backend) = TestBackend::bind("[::1]:0".parse().unwrap()).await else {
        // No IPv6 loopback on this host: nothing to test.
        return;
    };
    let probe = HttpProbe::builder(backend.addr()).build().unwrap();
    probe.probe().await.unwrap();
    assert_eq!(backend.probes(), 1);
}

#[cfg(unix)]
#[tokio::test]
async fn http_probe_over_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backend.sock");
    let backend = TestBackend::bind_unix(&path).unwrap();
    let probe = HttpProbe::builder(Target::Unix(path)).build().unwrap();
    probe.probe().await.unwrap();
    assert_eq!(backend.probes(), 1);
    TcpProbe::new(backend.target().clone())
        .probe()
        .await
        .unwrap();
}

#[tokio::test]
async fn http_probe_failures_are_typed() {
    let probe = HttpProbe::builder(closed_port().await).build().unwrap();
    assert!(matches!(probe.probe().await, Err(ProbeError::Connect(_))));

    let backend = TestBackend::start().await.unwrap();
    backend.set_behavior(Behavior::Closing);
    let probe = HttpProbe::builder(backend.addr()).build().unwrap();
    assert!(matches!(probe.probe().await, Err(ProbeError::Protocol(_))));
    assert_eq!(backend.closed_connections(), 1);
}

#[tokio::test]
async fn http_probe_times_out_on_a_silent_peer() {
    // Accepts and never answers; kept alive until the probe gives up.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let (_conn, _) = listener.accept().await.unwrap();
        std::future::pending::<()>().await;
    });
    let probe = HttpProbe::builder(addr)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert!(matches!(probe.probe().await, Err(ProbeError::Timeout(_))));
    holder.abort();
}

#[tokio::test]
async fn tcp_probe_connects_or_fails() {
    let backend = TestBackend::start().await.unwrap();
    TcpProbe::new(backend.addr()).probe().await.unwrap();
    let err = TcpProbe::new(closed_port().await)
        .timeout(Duration::from_secs(5))
        .probe()
        .await
        .unwrap_err();
    assert!(matches!(err, ProbeError::Connect(_)));
}
