//! Health monitoring through the binary: probes take a failing backend out of rotation and bring
//! it back, live failures eject a dead backend at once, and queued requests go out as soon as a
//! backend comes online.

mod support;

use std::time::Duration;

use director_core::testing::{Resetter, TestBackend};
use support::*;

fn config(health: &str, cluster: &str, backends: &[(&str, String)]) -> String {
    let mut c = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n[clusters.app]\n{cluster}\n\n[clusters.app.health]\n{health}\n\n"
    );
    for (name, url) in backends {
        c.push_str(&format!(
            "[[clusters.app.backends]]\nname = \"{name}\"\nurl = \"{url}\"\n\n"
        ));
    }
    c.push_str("[[routes]]\ncluster = \"app\"\n");
    c
}

/// Waits (bounded) until `backend` has seen `n` probes.
async fn wait_for_probes(backend: &TestBackend, n: usize) {
    for _ in 0..200 {
        if backend.probes() >= n {
            // Let the monitor apply the last result.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("only {} of {n} probes arrived", backend.probes());
}

async fn spread(director: &Director, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let reply = get(&director.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        seen.push(reply.header("x-director-backend").unwrap().to_owned());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_backend_leaves_rotation_and_returns() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    // Passive health off, so only probes decide here.
    let director = Director::start(&with_admin(&config(
        "interval = \"100ms\"\nrise = 2\nfall = 2\npath = \"/health\"\npassive = false",
        "",
        &[("a", a.url()), ("b", b.url())],
    )));
    wait_for_probes(&a, 2).await;
    assert!(spread(&director, 6).await.contains(&"a".to_owned()));
    assert!(a.probes() >= 2, "probes carry x0's headers: {}", a.probes());
    let probe = a
        .recorded()
        .into_iter()
        .find(|r| r.headers.contains_key("x0-health-check"))
        .unwrap();
    assert_eq!(probe.headers["host"], "backend-healthcheck");
    assert_eq!(probe.headers["x0-director"], "app");
    assert_eq!(probe.headers["x0-backend"], "a");
    assert_eq!(probe.uri, "/health");

    // a fails its probes: after `fall` failed probes it is out of rotation.
    let probes = a.probes();
    a.set_failing(true);
    wait_for_probes(&a, probes + 2).await;
    wait_for_health(&director, "app", "a", "offline").await;
    let live_before = a.live_requests();
    assert_eq!(spread(&director, 10).await, vec!["b"; 10]);
    assert_eq!(
        a.live_requests(),
        live_before,
        "no proxied request reached a while offline"
    );

    // a recovers: after `rise` good probes it takes traffic again.
    let probes = a.probes();
    a.set_failing(false);
    wait_for_probes(&a, probes + 2).await;
    wait_for_health(&director, "app", "a", "online").await;
    assert!(spread(&director, 6).await.contains(&"a".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_live_request_ejects_a_backend_before_the_next_probe() {
    // A backend that resets every connection. Lazy mode sends no probe until something fails,
    // and the next probe would be a minute later: only live traffic can find it out.
    let bad = Resetter::start().await.unwrap();
    let good = TestBackend::tcp("good", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(
        "mode = \"lazy\"\ninterval = \"60s\"\nprobe = \"tcp\"",
        "",
        &[("bad", bad.url()), ("good", good.url())],
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(bad.accepted(), 0, "lazy: no probe yet");
    assert_eq!(
        spread(&director, 10).await,
        vec!["good"; 10],
        "retried on good"
    );
    let live_connects = bad.accepted();
    assert_eq!(
        live_connects, 1,
        "one failed live request, then bad is out of rotation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_requests_go_out_when_a_backend_comes_online() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    a.set_failing(true);
    let director = Director::start(&with_admin(&config(
        "interval = \"100ms\"\nrise = 1\nfall = 1",
        "enqueue-on-unavailable = true\nqueue-timeout = \"10s\"",
        &[("a", a.url())],
    )));
    wait_for_health(&director, "app", "a", "offline").await;
    let url = director.url("/");
    let waiting = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "queued while the only backend is offline"
    );
    assert_eq!(a.live_requests(), 0);
    a.set_failing(false);
    let reply = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, 200, "dispatched once a came online");
}

#[test]
fn bad_health_settings_are_refused_with_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        config(
            "mode = \"sometimes\"",
            "",
            &[("a", "http://127.0.0.1:1".into())],
        ),
    )
    .unwrap();
    let (ok, text) = check(&path);
    assert!(!ok);
    assert!(text.contains("clusters.app.health.mode"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_5xx_answers_count_only_when_asked() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    for (passive_5xx, a_stays) in [(false, true), (true, false)] {
        let director = Director::start(&config(
            &format!("mode = \"lazy\"\ninterval = \"60s\"\npassive-5xx = {passive_5xx}"),
            "",
            &[("a", a.url()), ("b", b.url())],
        ));
        // a answers 500 to its live request; b is fine.
        let reply = get(&director.url("/status/500")).await;
        assert_eq!(reply.status, 500, "a 5xx is passed on, not retried");
        let after: Vec<String> = spread(&director, 6).await;
        assert_eq!(
            after.contains(&"a".to_owned()),
            a_stays,
            "passive-5xx = {passive_5xx}: {after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_probed_on_its_own_schedule() {
    // x0 kept a probe interval and mode per backend: b's own override the cluster's minute.
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n\
         [clusters.app.health]\nmode = \"lazy\"\ninterval = \"60s\"\n\n\
         [[clusters.app.backends]]\nname = \"a\"\nurl = \"{}\"\n\n\
         [[clusters.app.backends]]\nname = \"b\"\nurl = \"{}\"\n\
         health-mode = \"paranoid\"\nhealth-interval = \"100ms\"\n\n\
         [[routes]]\ncluster = \"app\"\n",
        a.url(),
        b.url()
    );
    let director = Director::start(&with_admin(&text));
    wait_for_probes(&b, 5).await;
    assert_eq!(a.probes(), 0, "lazy, once a minute: a is not probed yet");
    let member = |name: &'static str| {
        let url = format!("{}/api/app/backends/{name}", director.admin());
        async move {
            let reply = get(&url).await;
            serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap()["health"].clone()
        }
    };
    let (ha, hb) = (member("a").await, member("b").await);
    assert_eq!(
        (ha["mode"].as_str(), ha["interval"].as_u64()),
        (Some("lazy"), Some(60_000))
    );
    assert_eq!(
        (hb["mode"].as_str(), hb["interval"].as_u64()),
        (Some("paranoid"), Some(100))
    );
}

#[test]
fn a_bad_backend_health_mode_is_refused_with_its_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = "[server]\nlisten = [\"127.0.0.1:0\"]\n[clusters.app]\n\
                [[clusters.app.backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n\
                [[clusters.app.backends]]\nname = \"b\"\nurl = \"http://127.0.0.1:2\"\n\
                health-mode = \"sometimes\"\n[[routes]]\ncluster = \"app\"\n";
    std::fs::write(&path, text).unwrap();
    let (ok, out) = check(&path);
    assert!(!ok);
    assert!(
        out.contains("clusters.app.backends[1].health-mode"),
        "{out}"
    );
    assert!(out.contains(":10:"), "names the line: {out}");
}
