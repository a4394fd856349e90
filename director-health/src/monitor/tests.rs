//! Paused-time tests of the handle and the monitor loop, with in-memory probes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::sleep;

use super::*;
use crate::passive::PassiveConfig;
use crate::probe::probe_fn;

/// A probe whose verdict a test flips, counting calls.
#[derive(Clone, Default)]
struct Scripted {
    healthy: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
}

impl Scripted {
    fn healthy() -> Self {
        let s = Scripted::default();
        s.set(true);
        s
    }

    fn set(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn probe(&self) -> impl Probe {
        let s = self.clone();
        probe_fn(move || {
            s.calls.fetch_add(1, Ordering::SeqCst);
            let ok = s.healthy.load(Ordering::SeqCst);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(ProbeError::other("scripted failure"))
                }
            }
        })
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

#[tokio::test(start_paused = true)]
async fn paranoid_probes_every_interval() {
    let script = Scripted::healthy();
    let handle = HealthHandle::new("b", HealthConfig::default().interval(secs(1)));
    let monitor = Monitor::spawn(handle.clone(), script.probe());
    sleep(ms(10_500)).await;
    // Probes at t = 0, 1, ..., 10.
    assert_eq!(script.calls(), 11);
    assert_eq!(handle.snapshot().probes_sent, 11);
    assert_eq!(handle.state(), HealthState::Online);
    monitor.stop().await;
}

#[tokio::test(start_paused = true)]
async fn rise_and_fall_follow_probe_results() {
    let script = Scripted::healthy();
    let config = HealthConfig::default().thresholds(3, 2).interval(secs(1));
    let handle = HealthHandle::new("b", config);
    let _monitor = Monitor::spawn(handle.clone(), script.probe());

    sleep(ms(1_500)).await; // probes at 0 and 1
    assert_eq!(handle.state(), HealthState::Undefined);
    sleep(secs(1)).await; // third success at 2
    assert_eq!(handle.state(), HealthState::Online);

    script.set(false);
    sleep(secs(1)).await; // one failure at 3
    assert_eq!(handle.state(), HealthState::Online);
    assert_eq!(handle.snapshot().consecutive_failures, 1);
    sleep(secs(1)).await; // second failure at 4
    assert_eq!(handle.state(), HealthState::Offline);

    script.set(true);
    sleep(secs(2)).await; // successes at 5 and 6
    assert_eq!(handle.state(), HealthState::Offline);
    sleep(secs(1)).await; // third at 7
    assert_eq!(handle.state(), HealthState::Online);

    let snap = handle.snapshot();
    assert_eq!(snap.probes_sent, 8);
    assert_eq!(snap.probes_failed, 2);
    assert_eq!(snap.times_down, 1);
    assert_eq!(snap.downtime, secs(3));
    assert_eq!(snap.consecutive_successes, 3);
    assert!(snap.last_probe.as_ref().is_some_and(|p| p.ok));
}

#[tokio::test(start_paused = true)]
async fn offline_interval_applies_while_offline() {
    let script = Scripted::default();
    let config = HealthConfig::default()
        .interval(secs(10))
        .offline_interval(secs(1));
    let handle = HealthHandle::new("b", config);
    let _monitor = Monitor::spawn(handle.clone(), script.probe());
    sleep(ms(5_500)).await;
    // First failure at 0 takes it offline; then every second.
    assert_eq!(handle.state(), HealthState::Offline);
    assert_eq!(script.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_late_probe_fails_with_timeout() {
    let handle = HealthHandle::new(
        "b",
        HealthConfig::default().interval(secs(5)).timeout(secs(1)),
    );
    let never = probe_fn(std::future::pending::<Result<(), ProbeError>>);
    let _monitor = Monitor::spawn(handle.clone(), never);
    sleep(ms(1_500)).await;
    let snap = handle.snapshot();
    assert_eq!(snap.state, HealthState::Offline);
    let last = snap.last_probe.expect("a probe finished");
    assert!(!last.ok);
    assert_eq!(last.latency, secs(1));
    assert!(last.error.unwrap().contains("timed out"));
}

#[tokio::test(start_paused = true)]
async fn opportunistic_sends_no_probes_while_traffic_succeeds() {
    let script = Scripted::healthy();
    let config = HealthConfig::default()
        .mode(Mode::Opportunistic)
        .thresholds(1, 1)
        .interval(secs(1));
    let handle = HealthHandle::new("b", config);
    let _monitor = Monitor::spawn(handle.clone(), script.probe());
    sleep(ms(100)).await;
    assert_eq!(handle.state(), HealthState::Online);
    assert_eq!(script.calls(), 1);

    // Steady successful traffic for ten seconds: no probes at all.
    for _ in 0..40 {
        handle.report_success();
        sleep(ms(250)).await;
    }
    assert_eq!(script.calls(), 1);

    // Idle: probing resumes within one interval after idle_after (= interval) has passed.
    sleep(ms(3_000)).await;
    assert!(script.calls() >= 2);
    assert_eq!(handle.snapshot().probes_sent, script.calls());
}

#[tokio::test(start_paused = true)]
async fn opportunistic_live_success_counts_toward_rise() {
    let config = HealthConfig::default()
        .mode(Mode::Opportunistic)
        .thresholds(2, 1);
    let handle = HealthHandle::new("b", config);
    assert!(handle.report_failure(FailureKind::Connect));
    assert_eq!(handle.state(), HealthState::Offline);
    handle.report_success();
    assert_eq!(handle.state(), HealthState::Offline);
    handle.report_success();
    assert_eq!(handle.state(), HealthState::Online);
}

#[tokio::test(start_paused = true)]
async fn paranoid_live_success_only_clears_failures() {
    let config = HealthConfig::default().thresholds(1, 2);
    let handle = HealthHandle::new("b", config);
    handle.record_probe(&Ok(()), Duration::ZERO);
    assert_eq!(handle.state(), HealthState::Online);
    handle.report_failure(FailureKind::Reset);
    handle.report_success();
    handle.report_failure(FailureKind::Reset);
    // Failures separated by a success do not add up to `fall`.
    assert_eq!(handle.state(), HealthState::Online);

    let offline = HealthHandle::new("c", HealthConfig::default().thresholds(1, 1));
    offline.report_failure(FailureKind::Connect);
    offline.report_success();
    assert_eq!(offline.state(), HealthState::Offline);
}

#[tokio::test(start_paused = true)]
async fn lazy_probes_only_after_a_failure_until_back() {
    let script = Scripted::healthy();
    let config = HealthConfig::default()
        .mode(Mode::Lazy)
        .thresholds(2, 1)
        .interval(secs(1));
    let handle = HealthHandle::new("b", config);
    assert_eq!(handle.state(), HealthState::Online);
    let _monitor = Monitor::spawn(handle.clone(), script.probe());

    sleep(secs(10)).await;
    assert_eq!(script.calls(), 0);

    // A live failure takes it out and starts the probes...
    assert!(handle.report_failure(FailureKind::Connect));
    assert_eq!(handle.state(), HealthState::Offline);
    sleep(secs(3)).await;
    // ...two successes bring it back, and the probes stop.
    assert_eq!(handle.state(), HealthState::Online);
    assert_eq!(script.calls(), 2);
    sleep(secs(10)).await;
    assert_eq!(script.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn passive_failures_count_toward_fall() {
    let config = HealthConfig::default().thresholds(1, 2);
    let handle = HealthHandle::new("b", config);
    handle.record_probe(&Ok(()), Duration::ZERO);
    assert!(handle.report_failure(FailureKind::Reset));
    assert_eq!(handle.state(), HealthState::Online);
    // 5xx do not count by default.
    assert!(!handle.report_failure(FailureKind::ServerError));
    assert!(handle.report_failure(FailureKind::Timeout));
    assert_eq!(handle.state(), HealthState::Offline);
    assert_eq!(handle.snapshot().passive_failures, 2);

    let strict = HealthHandle::new(
        "c",
        HealthConfig::default().passive(PassiveConfig {
            server_errors: true,
            ..PassiveConfig::default()
        }),
    );
    assert!(strict.report_failure(FailureKind::ServerError));
    let off = HealthHandle::new(
        "d",
        HealthConfig::default().passive(PassiveConfig::disabled()),
    );
    assert!(!off.report_failure(FailureKind::Connect));
    assert_eq!(off.state(), HealthState::Undefined);
}

#[tokio::test(start_paused = true)]
async fn sticky_offline_needs_an_operator() {
    let (tx, mut events) = broadcast::channel(16);
    let config = HealthConfig::default()
        .thresholds(1, 1)
        .sticky_offline(true);
    let handle = HealthHandle::with_events("b", config, tx);

    // The first Undefined -> Online does not trigger sticky disabling (x0 quirk fixed).
    handle.record_probe(&Ok(()), Duration::ZERO);
    assert!(handle.is_available());
    let t = events.recv().await.unwrap();
    assert_eq!(
        (t.from, t.to, t.sticky_disabled),
        (HealthState::Undefined, HealthState::Online, false)
    );

    handle.record_probe(&Err(ProbeError::other("down")), Duration::ZERO);
    assert!(!handle.is_available());
    handle.record_probe(&Ok(()), Duration::ZERO);
    assert!(handle.is_online());
    assert!(!handle.is_enabled());
    assert!(!handle.is_available());
    assert!(handle.snapshot().sticky_disabled);
    let _down = events.recv().await.unwrap();
    let back = events.recv().await.unwrap();
    assert_eq!(
        (back.from, back.to, back.sticky_disabled),
        (HealthState::Offline, HealthState::Online, true)
    );
    assert_eq!(&*back.endpoint, "b");
    assert_eq!(back.cause, Cause::Probe);

    handle.enable();
    assert!(handle.is_available());
    assert!(!handle.snapshot().sticky_disabled);
}

#[tokio::test(start_paused = true)]
async fn sticky_offline_leaves_disabled_endpoints_alone() {
    let config = HealthConfig::default()
        .thresholds(1, 1)
        .sticky_offline(true);
    let handle = HealthHandle::new("b", config);
    handle.report_failure(FailureKind::Connect);
    handle.disable();
    handle.record_probe(&Ok(()), Duration::ZERO);
    assert!(!handle.snapshot().sticky_disabled);
    handle.enable();
    assert!(handle.is_available());
}

#[tokio::test(start_paused = true)]
async fn watchers_see_every_availability_change() {
    let handle = HealthHandle::new("b", HealthConfig::default().thresholds(1, 1));
    let mut rx = handle.subscribe();
    assert!(!rx.borrow_and_update().is_available());
    handle.record_probe(&Ok(()), Duration::ZERO);
    assert!(rx.has_changed().unwrap());
    assert!(rx.borrow_and_update().is_available());
    // A success while already online changes nothing visible.
    handle.record_probe(&Ok(()), Duration::ZERO);
    assert!(!rx.has_changed().unwrap());
    handle.disable();
    assert!(rx.has_changed().unwrap());
    assert_eq!(
        *rx.borrow_and_update(),
        EndpointStatus {
            state: HealthState::Online,
            enabled: false
        }
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_monitor_stops_probing() {
    let script = Scripted::healthy();
    let handle = HealthHandle::new("b", HealthConfig::default().interval(secs(1)));
    let monitor = Monitor::spawn(handle.clone(), script.probe());
    sleep(ms(2_500)).await;
    assert_eq!(script.calls(), 3);
    drop(monitor);
    sleep(secs(10)).await;
    assert_eq!(script.calls(), 3);
    // The handle outlives the task.
    assert_eq!(handle.state(), HealthState::Online);
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_probes_within_bounds() {
    let script = Scripted::healthy();
    let config = HealthConfig::default().interval(secs(1)).jitter(secs(1));
    let handle = HealthHandle::new("b", config);
    let _monitor = Monitor::spawn_with_seed(handle.clone(), script.probe(), 42);
    sleep(secs(20)).await;
    // Gaps are in [1 s, 2 s], and the first probe within the first second.
    let n = script.calls();
    assert!((10..=20).contains(&n), "{n} probes");
}

#[tokio::test(start_paused = true)]
async fn snapshot_reports_time_since_change() {
    let handle = HealthHandle::new("b", HealthConfig::default().thresholds(1, 1));
    sleep(secs(5)).await;
    assert_eq!(handle.snapshot().since_last_change, secs(5));
    handle.record_probe(&Err(ProbeError::other("x")), ms(30));
    sleep(secs(2)).await;
    let snap = handle.snapshot();
    assert_eq!(snap.since_last_change, secs(2));
    assert_eq!(snap.downtime, secs(2));
    let last = snap.last_probe.unwrap();
    assert_eq!((last.ok, last.latency, last.age), (false, ms(30), secs(2)));
    assert_eq!(last.error.as_deref(), Some("x"));
    assert_eq!(&*snap.name, "b");
    assert_eq!(snap.mode, Mode::Paranoid);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_applies_a_new_interval_at_once() {
    let script = Scripted::healthy();
    let handle = HealthHandle::new("b", HealthConfig::default().interval(secs(10)));
    let _monitor = Monitor::spawn(handle.clone(), script.probe());
    sleep(ms(500)).await;
    assert_eq!(script.calls(), 1);
    handle.reconfigure(HealthConfig::default().interval(secs(1)));
    assert_eq!(handle.config().interval, secs(1));
    // Next probes at 1.5, 2.5, 3.5.
    sleep(ms(3_200)).await;
    assert_eq!(script.calls(), 4);
    assert_eq!(handle.state(), HealthState::Online);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_keeps_state_and_changes_mode_and_thresholds() {
    let script = Scripted::healthy();
    let config = HealthConfig::default()
        .mode(Mode::Lazy)
        .thresholds(1, 1)
        .interval(secs(1));
    let handle = HealthHandle::new("b", config.clone());
    let _monitor = Monitor::spawn(handle.clone(), script.probe());
    sleep(ms(2_500)).await;
    assert_eq!(script.calls(), 0);

    handle.reconfigure(config.mode(Mode::Paranoid).thresholds(1, 3));
    // Probes at 3.5 and 4.5.
    sleep(ms(2_200)).await;
    assert_eq!(script.calls(), 2, "paranoid probes");
    script.set(false);
    // Failures at 5.5 and 6.5.
    sleep(secs(2)).await;
    // Two failures are below the new fall of 3.
    assert_eq!(handle.state(), HealthState::Online);
    sleep(secs(1)).await;
    assert_eq!(handle.state(), HealthState::Offline);
}

#[tokio::test(start_paused = true)]
async fn a_capped_failure_leaves_the_endpoint_online_but_probes_still_decide() {
    let handle = HealthHandle::new("b", HealthConfig::default().thresholds(1, 2));
    handle.record_probe(&Ok(()), Duration::ZERO);
    let asked = AtomicU64::new(0);
    let refuse = || {
        asked.fetch_add(1, Ordering::SeqCst);
        false
    };
    // The first failure would not take it offline: the cap is not asked.
    assert!(handle.report_failure_capped(FailureKind::Reset, refuse));
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    // The second would: the cap says no, so it does not count and the endpoint stays.
    assert!(!handle.report_failure_capped(FailureKind::Reset, refuse));
    assert!(!handle.report_failure_capped(FailureKind::Reset, refuse));
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert_eq!(handle.state(), HealthState::Online);
    assert_eq!(handle.snapshot().passive_failures, 1);
    // A failure that does not count at all never asks.
    assert!(!handle.report_failure_capped(FailureKind::ServerError, refuse));
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    // A probe is not capped.
    handle.record_probe(&Err(ProbeError::other("down")), Duration::ZERO);
    assert_eq!(handle.state(), HealthState::Offline);
    // Allowed, a live failure takes an undefined endpoint out at once.
    let fresh = HealthHandle::new("c", HealthConfig::default());
    assert!(fresh.report_failure_capped(FailureKind::Connect, || true));
    assert_eq!(fresh.state(), HealthState::Offline);
}
