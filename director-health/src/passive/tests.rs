use std::io;
use std::time::Duration;

use tokio_test::{assert_pending, assert_ready_ok};
use tower_test::mock;

use super::*;
use crate::config::HealthConfig;
use crate::state::HealthState;

type Req = &'static str;
type Res = http::Response<()>;

fn online(config: HealthConfig) -> HealthHandle {
    let h = HealthHandle::new("b", config.thresholds(1, 2));
    h.record_probe(&Ok(()), Duration::ZERO);
    h
}

fn status(code: u16) -> Res {
    let mut res = http::Response::new(());
    *res.status_mut() = http::StatusCode::from_u16(code).unwrap();
    res
}

#[test]
fn classifies_error_chains() {
    let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
    assert_eq!(classify_error(&refused), FailureKind::Connect);
    let reset = io::Error::from(io::ErrorKind::ConnectionReset);
    assert_eq!(classify_error(&reset), FailureKind::Reset);
    let timed_out = io::Error::from(io::ErrorKind::TimedOut);
    assert_eq!(classify_error(&timed_out), FailureKind::Timeout);

    // An io::Error wrapped in another error is still found.
    #[derive(Debug, thiserror::Error)]
    #[error("upstream")]
    struct Wrapper(#[source] io::Error);
    let wrapped = Wrapper(io::Error::from(io::ErrorKind::BrokenPipe));
    assert_eq!(classify_error(&wrapped), FailureKind::Reset);

    let plain: BoxError = "weird".into();
    assert_eq!(classify_error(&*plain), FailureKind::Other);
}

#[test]
fn config_decides_what_counts() {
    let d = PassiveConfig::default();
    assert!(d.counts(FailureKind::Connect));
    assert!(d.counts(FailureKind::Reset));
    assert!(d.counts(FailureKind::Timeout));
    assert!(!d.counts(FailureKind::ServerError));
    let off = PassiveConfig::disabled();
    assert!(!off.counts(FailureKind::Connect));
}

#[tokio::test(start_paused = true)]
async fn errors_count_toward_fall() {
    let handle = online(HealthConfig::default());
    let (mut svc, mut backend) =
        mock::spawn_layer::<Req, Res, _>(PassiveHealthLayer::new(handle.clone()));

    for _ in 0..2 {
        assert_ready_ok!(svc.poll_ready());
        let fut = svc.call("GET /");
        let (_, send) = backend.next_request().await.unwrap();
        send.send_error(io::Error::from(io::ErrorKind::ConnectionReset));
        let err = fut.await.unwrap_err();
        assert_eq!(classify_error(&*err), FailureKind::Reset);
    }
    assert_eq!(handle.state(), HealthState::Offline);
    assert_eq!(handle.snapshot().passive_failures, 2);
}

#[tokio::test(start_paused = true)]
async fn server_errors_count_only_when_asked() {
    let lenient = online(HealthConfig::default());
    let (mut svc, mut backend) =
        mock::spawn_layer::<Req, Res, _>(PassiveHealthLayer::new(lenient.clone()));
    for _ in 0..3 {
        assert_ready_ok!(svc.poll_ready());
        let fut = svc.call("GET /");
        backend
            .next_request()
            .await
            .unwrap()
            .1
            .send_response(status(503));
        assert_eq!(fut.await.unwrap().status(), 503);
    }
    assert_eq!(lenient.state(), HealthState::Online);

    let strict = online(HealthConfig::default().passive(PassiveConfig {
        server_errors: true,
        ..PassiveConfig::default()
    }));
    let (mut svc, mut backend) =
        mock::spawn_layer::<Req, Res, _>(PassiveHealthLayer::new(strict.clone()));
    for _ in 0..2 {
        assert_ready_ok!(svc.poll_ready());
        let fut = svc.call("GET /");
        backend
            .next_request()
            .await
            .unwrap()
            .1
            .send_response(status(502));
        fut.await.unwrap();
    }
    assert_eq!(strict.state(), HealthState::Offline);
}

#[tokio::test(start_paused = true)]
async fn success_clears_the_failure_run() {
    let handle = online(HealthConfig::default());
    let (mut svc, mut backend) =
        mock::spawn_layer::<Req, Res, _>(PassiveHealthLayer::new(handle.clone()));
    for code in [0, 200, 0, 200, 0] {
        assert_ready_ok!(svc.poll_ready());
        let fut = svc.call("GET /");
        let (_, send) = backend.next_request().await.unwrap();
        if code == 0 {
            send.send_error(io::Error::from(io::ErrorKind::ConnectionRefused));
            fut.await.unwrap_err();
        } else {
            send.send_response(status(code));
            fut.await.unwrap();
        }
    }
    assert_eq!(handle.state(), HealthState::Online);
    assert_eq!(handle.snapshot().consecutive_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn readiness_and_cancellation_are_not_health_signals() {
    let handle = online(HealthConfig::default().thresholds(1, 1));
    let (mut svc, mut backend) =
        mock::spawn_layer::<Req, Res, _>(PassiveHealthLayer::new(handle.clone()));
    backend.allow(0);
    assert_pending!(svc.poll_ready());
    backend.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call("GET /");
    let (_, send) = backend.next_request().await.unwrap();
    drop(fut);
    send.send_error(io::Error::from(io::ErrorKind::ConnectionReset));
    assert_eq!(handle.state(), HealthState::Online);
    assert_eq!(handle.snapshot().passive_failures, 0);
}
