//! Acceptance: real loopback backends, monitors with HTTP probes, and `tower::balance::p2c`
//! over `HealthyEndpoints`. Backends count probes and live requests separately.
//!
//! Waits are bounded (`WAIT`) and never assert on speed.

use std::time::Duration;

use bytes::Bytes;
use director_health::test_util::{Behavior, TestBackend, TestClient};
use director_health::{
    BoxError, HealthConfig, HealthHandle, HealthyEndpoints, HttpProbe, Mode, Monitor, PassiveHealth,
};
use http::Request;
use http_body_util::Empty;
use tokio::time::timeout;
use tower::balance::p2c::Balance;
use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
use tower::{Service, ServiceExt};

const WAIT: Duration = Duration::from_secs(10);

type Endpoint = PassiveHealth<TestClient>;
type Lb = Balance<
    PendingRequestsDiscover<HealthyEndpoints<&'static str, Endpoint>>,
    Request<Empty<Bytes>>,
>;

struct Node {
    backend: TestBackend,
    handle: HealthHandle,
    _monitor: Monitor,
}

async fn node(name: &'static str, config: HealthConfig) -> Node {
    let backend = TestBackend::start().await.unwrap();
    let handle = HealthHandle::new(name, config);
    let probe = HttpProbe::builder(backend.addr())
        .director("app")
        .backend(name)
        .build()
        .unwrap();
    let monitor = Monitor::spawn(handle.clone(), probe);
    Node {
        backend,
        handle,
        _monitor: monitor,
    }
}

fn balancer(nodes: &[(&'static str, &Node)]) -> Lb {
    let endpoints = nodes
        .iter()
        .map(|(key, n)| {
            let svc = PassiveHealth::new(TestClient::new(n.backend.addr()), n.handle.clone());
            (*key, svc, n.handle.clone())
        })
        .collect::<HealthyEndpoints<_, _>>();
    Balance::new(PendingRequestsDiscover::new(
        endpoints,
        CompleteOnResponse::default(),
    ))
}

async fn send(lb: &mut Lb) -> Result<http::StatusCode, BoxError> {
    let req = Request::get("/").body(Empty::new()).unwrap();
    let svc = timeout(WAIT, lb.ready()).await.expect("a ready endpoint")?;
    Ok(svc.call(req).await?.status())
}

async fn wait_until(handle: &HealthHandle, available: bool) {
    let mut rx = handle.subscribe();
    timeout(WAIT, rx.wait_for(|s| s.is_available() == available))
        .await
        .expect("state reached in time")
        .unwrap();
}

fn fast() -> HealthConfig {
    HealthConfig::default()
        .thresholds(2, 2)
        .interval(Duration::from_millis(20))
        .timeout(Duration::from_secs(2))
}

#[tokio::test]
async fn flapping_backend_leaves_rotation_and_returns() {
    let a = node("a", fast()).await;
    let b = node("b", fast()).await;
    let mut lb = balancer(&[("a", &a), ("b", &b)]);
    wait_until(&a.handle, true).await;
    wait_until(&b.handle, true).await;

    for _ in 0..20 {
        assert_eq!(send(&mut lb).await.unwrap(), 200);
    }
    assert_eq!(a.backend.live_requests() + b.backend.live_requests(), 20);

    // b turns sick: its probes fail `fall` times and it leaves rotation.
    b.backend.set_behavior(Behavior::Failing);
    wait_until(&b.handle, false).await;
    let b_live = b.backend.live_requests();
    for _ in 0..30 {
        assert_eq!(send(&mut lb).await.unwrap(), 200);
    }
    assert_eq!(
        b.backend.live_requests(),
        b_live,
        "no requests while offline"
    );
    assert!(b.backend.probes() > 0);

    // b recovers: after `rise` passing probes it is back and gets traffic again.
    b.backend.set_behavior(Behavior::Healthy);
    wait_until(&b.handle, true).await;
    let mut rounds = 0;
    while b.backend.live_requests() == b_live {
        assert_eq!(send(&mut lb).await.unwrap(), 200);
        rounds += 1;
        assert!(rounds < 500, "b never got a request back");
    }
    let snap = b.handle.snapshot();
    assert_eq!(snap.times_down, 1);
    assert!(snap.probes_failed >= 2);
}

#[tokio::test]
async fn passive_health_ejects_at_the_first_failed_request() {
    // Probes are far apart, so only live traffic can take b out.
    let config = HealthConfig::default()
        .thresholds(1, 1)
        .interval(Duration::from_secs(60));
    let a = node("a", config.clone()).await;
    let b = node("b", config).await;
    let mut lb = balancer(&[("a", &a), ("b", &b)]);
    wait_until(&a.handle, true).await;
    wait_until(&b.handle, true).await;

    b.backend.set_behavior(Behavior::Closing);
    // p2c picks b about every other request; the first one that does fails.
    let mut rounds = 0;
    while send(&mut lb).await.is_ok() {
        rounds += 1;
        assert!(rounds < 500, "b was never picked");
    }
    assert!(!b.handle.is_available(), "b left rotation at once");
    for _ in 0..30 {
        assert_eq!(send(&mut lb).await.unwrap(), 200);
    }
    assert_eq!(b.backend.closed_connections(), 1);
    let snap = b.handle.snapshot();
    assert_eq!(snap.passive_failures, 1);
    assert_eq!(snap.probes_sent, 1);
}

#[tokio::test]
async fn sticky_offline_keeps_a_recovered_backend_out_until_enabled() {
    let config = fast().sticky_offline(true);
    let a = node("a", config.clone()).await;
    let b = node("b", config).await;
    let mut lb = balancer(&[("a", &a), ("b", &b)]);
    // The first Undefined -> Online does not disable.
    wait_until(&b.handle, true).await;
    wait_until(&a.handle, true).await;

    b.backend.set_behavior(Behavior::Failing);
    wait_until(&b.handle, false).await;
    b.backend.set_behavior(Behavior::Healthy);
    let mut rx = b.handle.subscribe();
    timeout(
        WAIT,
        rx.wait_for(|s| s.state == director_health::HealthState::Online),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!b.handle.is_enabled());
    assert!(b.handle.snapshot().sticky_disabled);

    let b_live = b.backend.live_requests();
    for _ in 0..30 {
        assert_eq!(send(&mut lb).await.unwrap(), 200);
    }
    assert_eq!(b.backend.live_requests(), b_live);

    b.handle.enable();
    let mut rounds = 0;
    while b.backend.live_requests() == b_live {
        assert_eq!(send(&mut lb).await.unwrap(), 200);
        rounds += 1;
        assert!(rounds < 500, "b never got a request back");
    }
}

/// Sends `n` live requests to `client`, spaced `gap` apart.
async fn traffic(client: &PassiveHealth<TestClient>, n: usize, gap: Duration) {
    for _ in 0..n {
        let req = Request::get("/").body(Empty::new()).unwrap();
        let res = client.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        tokio::time::sleep(gap).await;
    }
}

#[tokio::test]
async fn probes_sent_per_mode_under_live_traffic() {
    // idle_after is far above the traffic gaps, so the opportunistic count does not depend on
    // scheduling delays.
    let config = |mode| {
        HealthConfig::default()
            .mode(mode)
            .thresholds(1, 1)
            .interval(Duration::from_millis(20))
            .idle_after(Duration::from_secs(5))
    };
    let paranoid = node("p", config(Mode::Paranoid)).await;
    let opportunistic = node("o", config(Mode::Opportunistic)).await;
    let lazy = node("l", config(Mode::Lazy)).await;
    for n in [&paranoid, &opportunistic, &lazy] {
        wait_until(&n.handle, true).await;
    }
    let before = [&paranoid, &opportunistic, &lazy].map(|n| n.backend.probes());
    assert_eq!(before[2], 0, "lazy assumes online and does not probe");

    let clients = [&paranoid, &opportunistic, &lazy]
        .map(|n| PassiveHealth::new(TestClient::new(n.backend.addr()), n.handle.clone()));
    // Concurrent traffic to all three, for at least 20 probe intervals.
    tokio::join!(
        traffic(&clients[0], 20, Duration::from_millis(25)),
        traffic(&clients[1], 20, Duration::from_millis(25)),
        traffic(&clients[2], 20, Duration::from_millis(25)),
    );
    let after = [&paranoid, &opportunistic, &lazy].map(|n| n.backend.probes());
    assert!(after[0] > before[0], "paranoid keeps probing");
    assert_eq!(
        after[1], before[1],
        "opportunistic: live successes replace probes"
    );
    assert_eq!(after[2], 0, "lazy: no failure, no probe");
    for (n, count) in [&paranoid, &opportunistic, &lazy].iter().zip(after) {
        assert_eq!(n.handle.snapshot().probes_sent, count);
    }

    // A failure makes lazy probe until the backend is back.
    lazy.backend.set_behavior(Behavior::Closing);
    let req = Request::get("/").body(Empty::new()).unwrap();
    assert!(clients[2].clone().oneshot(req).await.is_err());
    assert!(!lazy.handle.is_online());
    lazy.backend.set_behavior(Behavior::Healthy);
    wait_until(&lazy.handle, true).await;
    assert!(lazy.backend.probes() >= 1);
}
