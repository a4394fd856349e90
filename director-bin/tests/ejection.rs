//! Passive ejection has a cap and a cluster short of healthy backends panics, through the
//! binary: the last healthy backend answering 5xx stays in rotation, live failures hold out at
//! most `max-ejection-percent` of a cluster, and below `panic-threshold` a cluster balances over
//! its offline backends too (visible in `/metrics`). Also: `X-Director-Backend` names the
//! backend of a nested cluster that answered.

mod support;

use director_core::testing::TestBackend;
use support::*;

/// A cluster `app` with a `[health]` table and `backends` (name, url, extra keys), behind a
/// catch-all route, with an admin listener.
fn config(health: &str, backends: &[(&str, String, &str)]) -> String {
    let mut c = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n[clusters.app]\n\n[clusters.app.health]\n{health}\n\n"
    );
    for (name, url, extra) in backends {
        c.push_str(&format!(
            "[[clusters.app.backends]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n\n"
        ));
    }
    c.push_str("[[routes]]\ncluster = \"app\"\n");
    with_admin(&c)
}

/// The value of the metric line starting with `prefix` (`name{labels}`) in `/metrics`.
async fn metric(director: &Director, prefix: &str) -> Option<f64> {
    let reply = get(&format!("{}/metrics", director.admin())).await;
    assert_eq!(reply.status, 200);
    reply
        .text()
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits (at most 10 s) until the metric `prefix` reads `value`: the cluster applies a health
/// change just after the backend's state shows it.
async fn wait_for_metric(director: &Director, prefix: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = metric(director, prefix).await;
        if now == Some(value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{prefix} stayed {now:?}, never {value}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_healthy_backend_answering_5xx_stays_in_rotation() {
    // `dead` is offline by probe (nothing listens); `sick` passes its TCP probes but answers
    // 503 to every live request, and with `passive-5xx` and `fall = 1` each one is a failure.
    let dead = dead_port();
    let sick = TestBackend::tcp("sick", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(
        "probe = \"tcp\"\ninterval = \"60s\"\nrise = 1\nfall = 1\npassive-5xx = true",
        &[
            ("dead", format!("http://{dead}"), ""),
            ("sick", sick.url(), ""),
        ],
    ));
    wait_for_health(&director, "app", "dead", "offline").await;
    wait_for_health(&director, "app", "sick", "online").await;
    sick.set_failing(true);
    for i in 0..10 {
        let reply = get(&director.url("/")).await;
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert_eq!(
            reply.header("x-director-backend"),
            Some("sick"),
            "request {i} reached the last backend"
        );
    }
    assert_eq!(sick.live_requests(), 10);
    assert_eq!(health_state(&director, "app", "sick").await, "online");
    assert!(
        metric(
            &director,
            "director_cluster_ejections_refused_total{cluster=\"app\"}"
        )
        .await
        .is_some_and(|n| n >= 10.0),
        "refused ejections are counted"
    );

    // It recovers without waiting for a probe: it never left.
    sick.set_failing(false);
    let reply = get(&director.url("/")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-backend"), Some("sick"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_failures_eject_at_most_max_ejection_percent() {
    let mut backends = Vec::new();
    for name in ["b0", "b1", "b2", "b3"] {
        backends.push(TestBackend::tcp(name, "127.0.0.1:0").await.unwrap());
    }
    // TCP probes pass; the first one brings each backend online, the next is a minute away,
    // so only live failures can take one out during the test. `max-ejection-percent` is left
    // at its default, 50.
    let director = Director::start(&config(
        "probe = \"tcp\"\ninterval = \"60s\"\nrise = 1\nfall = 1\npassive-5xx = true",
        &backends
            .iter()
            .map(|b| (b.name(), b.url(), ""))
            .collect::<Vec<_>>(),
    ));
    for b in &backends {
        wait_for_health(&director, "app", b.name(), "online").await;
        b.set_failing(true);
    }
    for _ in 0..20 {
        let reply = get(&director.url("/")).await;
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert!(
            reply.header("x-director-backend").is_some(),
            "every request reached a backend"
        );
    }
    // The backends' states follow their monitors a moment later: wait for the two ejected.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut offline = 0;
        for b in &backends {
            if health_state(&director, "app", b.name()).await == "offline" {
                offline += 1;
            }
        }
        assert!(offline <= 2, "{offline} of 4 ejected by live failures");
        if offline == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {offline} ejected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let served: usize = backends.iter().map(TestBackend::live_requests).sum();
    assert_eq!(served, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_panic_threshold_requests_go_to_offline_backends_too() {
    let mut backends = Vec::new();
    for name in ["b0", "b1", "b2", "b3", "off"] {
        backends.push(TestBackend::tcp(name, "127.0.0.1:0").await.unwrap());
    }
    // b1..b3 fail their probes (their live requests get 503 too, which is fine here: what
    // counts is that they get them); `off` is disabled by the operator and stays out.
    // `panic-threshold` is left at its default, 50.
    for b in &backends[1..4] {
        b.set_failing(true);
    }
    let director = Director::start(&config(
        "interval = \"100ms\"\nrise = 1\nfall = 1\npath = \"/health\"",
        &backends
            .iter()
            .map(|b| {
                let extra = if b.name() == "off" {
                    "enabled = false"
                } else {
                    ""
                };
                (b.name(), b.url(), extra)
            })
            .collect::<Vec<_>>(),
    ));
    for b in &backends[1..4] {
        wait_for_health(&director, "app", b.name(), "offline").await;
    }
    wait_for_health(&director, "app", "b0", "online").await;
    let panic = "director_cluster_panic{cluster=\"app\"}";
    wait_for_metric(&director, panic, 1.0).await;
    let before: Vec<usize> = backends.iter().map(TestBackend::live_requests).collect();
    for _ in 0..40 {
        let reply = get(&director.url("/")).await;
        assert!(
            reply.header("x-director-backend").is_some(),
            "{}",
            reply.text()
        );
    }
    for (b, before) in backends[..4].iter().zip(&before) {
        assert!(
            b.live_requests() >= before + 5,
            "{} got {} of 40 requests",
            b.name(),
            b.live_requests() - before
        );
    }
    assert_eq!(
        backends[4].live_requests(),
        0,
        "a disabled backend stays out"
    );
    assert!(
        metric(
            &director,
            "director_cluster_panic_requests_total{cluster=\"app\"}"
        )
        .await
        .is_some_and(|n| n >= 40.0)
    );

    // Two come back: 3 of 4 available, out of panic, offline b3 gets nothing more.
    backends[1].set_failing(false);
    backends[2].set_failing(false);
    wait_for_health(&director, "app", "b1", "online").await;
    wait_for_health(&director, "app", "b2", "online").await;
    wait_for_metric(&director, panic, 0.0).await;
    let b3 = backends[3].live_requests();
    for _ in 0..12 {
        let reply = get(&director.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(backends[3].live_requests(), b3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_director_backend_names_the_nested_backend_that_answered() {
    let web = TestBackend::tcp("web1", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\
         [clusters.inner]\n[[clusters.inner.backends]]\nname = \"web1\"\nurl = \"{}\"\n\
         [clusters.outer]\n[[clusters.outer.backends]]\nname = \"pool\"\nurl = \"cluster:inner\"\n\
         [[routes]]\ncluster = \"outer\"\n",
        web.url()
    ));
    let reply = get(&director.url("/")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-backend"), Some("web1"));
    assert_eq!(reply.header_all("x-director-backend"), ["inner/web1"]);
}

#[test]
fn a_percentage_over_100_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    for key in ["max-ejection-percent", "panic-threshold"] {
        let path = dir.path().join("director.toml");
        std::fs::write(
            &path,
            config(
                &format!("{key} = 101"),
                &[("a", "http://127.0.0.1:9".into(), "")],
            ),
        )
        .unwrap();
        let (ok, text) = check(&path);
        assert!(!ok, "{key} = 101 accepted");
        assert!(text.contains(&format!("health.{key}")), "{text}");
    }
}
