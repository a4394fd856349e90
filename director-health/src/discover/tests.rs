use std::time::Duration;

use futures_util::StreamExt;
use tokio_test::{assert_pending, assert_ready, task};

use super::*;
use crate::config::HealthConfig;
use crate::probe::ProbeError;

fn handle(name: &str) -> HealthHandle {
    HealthHandle::new(name, HealthConfig::default().thresholds(1, 1))
}

fn up(h: &HealthHandle) {
    h.record_probe(&Ok(()), Duration::ZERO);
}

fn down(h: &HealthHandle) {
    h.record_probe(&Err(ProbeError::other("down")), Duration::ZERO);
}

/// Renders a change as text, since `Change` has no `PartialEq`.
fn show(change: Change<&'static str, u32>) -> String {
    match change {
        Change::Insert(k, s) => format!("+{k}:{s}"),
        Change::Remove(k) => format!("-{k}"),
    }
}

async fn next(s: &mut HealthyEndpoints<&'static str, u32>) -> String {
    show(s.next().await.unwrap().unwrap())
}

#[tokio::test]
async fn inserts_available_endpoints_at_start() {
    let (a, b, c) = (handle("a"), handle("b"), handle("c"));
    up(&a);
    up(&c);
    c.disable();
    let mut s: HealthyEndpoints<_, _> = [("a", 1, a), ("b", 2, b), ("c", 3, c)]
        .into_iter()
        .collect();
    assert_eq!(s.len(), 3);
    assert_eq!(next(&mut s).await, "+a:1");
    let mut t = task::spawn(s);
    assert_pending!(t.poll_next());
}

#[tokio::test]
async fn follows_health_and_enabled_flag() {
    let (a, b) = (handle("a"), handle("b"));
    let mut s = HealthyEndpoints::new()
        .with("a", 1, a.clone())
        .with("b", 2, b.clone());
    let mut t = task::spawn(&mut s);
    assert_pending!(t.poll_next());

    up(&b);
    assert!(t.is_woken());
    let change = assert_ready!(t.poll_next()).unwrap().unwrap();
    assert_eq!(show(change), "+b:2");
    assert_pending!(t.poll_next());

    down(&b);
    assert_eq!(show(assert_ready!(t.poll_next()).unwrap().unwrap()), "-b");
    up(&b);
    up(&a);
    let mut got = vec![
        show(assert_ready!(t.poll_next()).unwrap().unwrap()),
        show(assert_ready!(t.poll_next()).unwrap().unwrap()),
    ];
    got.sort();
    assert_eq!(got, ["+a:1", "+b:2"]);

    a.disable();
    assert_eq!(show(assert_ready!(t.poll_next()).unwrap().unwrap()), "-a");
    a.enable();
    assert_eq!(show(assert_ready!(t.poll_next()).unwrap().unwrap()), "+a:1");
    assert_pending!(t.poll_next());
}

#[tokio::test]
async fn a_flap_between_polls_yields_nothing_spurious() {
    let a = handle("a");
    let mut s = HealthyEndpoints::new().with("a", 1, a.clone());
    let mut t = task::spawn(&mut s);
    assert_pending!(t.poll_next());
    // Up and down again before the consumer looks: its view (absent) is still right.
    up(&a);
    down(&a);
    assert_pending!(t.poll_next());
}

#[tokio::test]
async fn endpoints_can_join_after_start() {
    let a = handle("a");
    let mut s = HealthyEndpoints::new();
    {
        let mut t = task::spawn(&mut s);
        assert_pending!(t.poll_next());
    }
    up(&a);
    s.push("a", 1, a.clone());
    assert_eq!(next(&mut s).await, "+a:1");
    down(&a);
    assert_eq!(next(&mut s).await, "-a");
    assert!(format!("{s:?}").contains("HealthyEndpoints"));
}
