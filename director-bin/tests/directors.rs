//! Varnish's and fnlb's directors through the binary: weighted random, consistent hashing,
//! fallback, nested clusters, and `--nodes` mode.

mod support;

use std::{collections::HashMap, time::Duration};

use director_core::testing::TestBackend;
use http::Request;
use http_body_util::Full;
use support::*;

fn config(cluster: &str, backends: &[(&str, String, &str)]) -> String {
    let mut c = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n[clusters.app]\n{cluster}\n\n"
    );
    for (name, url, extra) in backends {
        c.push_str(&format!(
            "[[clusters.app.backends]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n\n"
        ));
    }
    c.push_str("[[routes]]\ncluster = \"app\"\n");
    c
}

async fn served_by(director: &Director, path: &str) -> String {
    let reply = get(&director.url(path)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.header("x-director-backend").unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_random_shares_follow_the_weights() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(
        "scheduler = \"random\"",
        &[("a", a.url(), "weight = 10"), ("b", b.url(), "weight = 5")],
    ));
    const N: usize = 6000;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let url = director.url("/");
        tasks.push(tokio::spawn(async move {
            let client = client();
            for _ in 0..N / 12 {
                let r = client
                    .request(Request::get(&url).body(Full::default()).unwrap())
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let share = a.requests() as f64 / N as f64;
    assert_eq!(a.requests() + b.requests(), N);
    assert!(
        (share - 2.0 / 3.0).abs() < 0.02,
        "a got {share:.3} of the traffic, wanted 0.667 ± 0.02"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_keeps_keys_on_their_backend_and_moves_only_a_removed_ones_keys() {
    let backends: Vec<TestBackend> = futures_util::future::join_all(
        ["a", "b", "c"].map(|n| async move { TestBackend::tcp(n, "127.0.0.1:0").await.unwrap() }),
    )
    .await;
    let members: Vec<(&str, String, &str)> =
        backends.iter().map(|b| (b.name(), b.url(), "")).collect();
    let all = Director::start(&config(
        "scheduler = \"hash\"\nhash-key = \"path\"",
        &members,
    ));
    let mut owner = HashMap::new();
    for i in 0..60 {
        let path = format!("/item/{i}");
        let first = served_by(&all, &path).await;
        assert_eq!(
            served_by(&all, &path).await,
            first,
            "same key, same backend"
        );
        owner.insert(path, first);
    }
    assert_eq!(
        owner
            .values()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        3,
        "keys spread"
    );

    // The same ring without b: only b's keys move.
    let without_b: Vec<(&str, String, &str)> = backends
        .iter()
        .map(|b| {
            (
                b.name(),
                b.url(),
                if b.name() == "b" {
                    "enabled = false"
                } else {
                    ""
                },
            )
        })
        .collect();
    let fewer = Director::start(&config(
        "scheduler = \"hash\"\nhash-key = \"path\"",
        &without_b,
    ));
    for (path, first) in &owner {
        let now = served_by(&fewer, path).await;
        if first != "b" {
            assert_eq!(&now, first, "{path} moved although its backend stayed");
        } else {
            assert_ne!(now, "b");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_uses_the_first_available_and_sticky_stays() {
    let port = dead_port();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    for (sticky, after_return) in [(false, "a"), (true, "b")] {
        let cluster = format!(
            "scheduler = \"fallback\"\nfallback-sticky = {sticky}\n\n[clusters.app.health]\nmode = \"lazy\"\nprobe = \"tcp\"\ninterval = \"100ms\"\nrise = 1\nfall = 1\n"
        );
        let director = Director::start(&with_admin(&config(
            &cluster,
            &[("a", format!("http://{port}"), ""), ("b", b.url(), "")],
        )));
        // a is down: the first request finds out (and is retried on b), the rest go to b.
        for _ in 0..3 {
            assert_eq!(served_by(&director, "/").await, "b");
        }
        assert_eq!(health_state(&director, "app", "a").await, "offline");
        // a comes back on its port; its background ping brings it online.
        let a = TestBackend::tcp("a", &port.to_string()).await.unwrap();
        wait_for_health(&director, "app", "a", "online").await;
        assert_eq!(
            served_by(&director, "/").await,
            after_return,
            "sticky = {sticky}"
        );
        // The port goes back to "nothing listens" before the next round starts.
        a.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_cluster_serves_and_is_skipped_when_all_its_members_are_down() {
    let a1 = TestBackend::tcp("a1", "127.0.0.1:0").await.unwrap();
    let b1 = TestBackend::tcp("b1", "127.0.0.1:0").await.unwrap();
    let text = |inner_a_enabled: bool| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\
             [clusters.left]\n[[clusters.left.backends]]\nname = \"a1\"\nurl = \"{}\"\nenabled = {inner_a_enabled}\n\
             [clusters.right]\n[[clusters.right.backends]]\nname = \"b1\"\nurl = \"{}\"\n\
             [clusters.outer]\n[[clusters.outer.backends]]\nname = \"left\"\nurl = \"cluster:left\"\n\
             [[clusters.outer.backends]]\nname = \"right\"\nurl = \"cluster:right\"\n\
             [[routes]]\ncluster = \"outer\"\n",
            a1.url(),
            b1.url()
        )
    };
    let director = Director::start(&text(true));
    let mut seen = Vec::new();
    for _ in 0..4 {
        let reply = get(&director.url("/")).await;
        assert_eq!(reply.status, 200);
        seen.push(reply.header("x-backend").unwrap().to_owned());
    }
    seen.sort();
    assert_eq!(seen, ["a1", "a1", "b1", "b1"], "both nested clusters serve");

    let director = Director::start(&text(false));
    for _ in 0..4 {
        let reply = get(&director.url("/")).await;
        assert_eq!(
            reply.header("x-backend"),
            Some("b1"),
            "left has no available member"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fnlb_mode_keeps_affinity_fails_over_and_takes_it_back() {
    let mut nodes: Vec<Option<TestBackend>> = Vec::new();
    for n in ["n1", "n2", "n3"] {
        nodes.push(Some(TestBackend::tcp(n, "127.0.0.1:0").await.unwrap()));
    }
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| n.as_ref().unwrap().socket_addr().unwrap().to_string())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let list = addrs.join(",");
    let director = Director::spawn(
        dir,
        &[
            "--listen",
            "127.0.0.1:0",
            "--nodes",
            &list,
            "--access-log",
            "off",
        ],
        1,
    );
    let node_of = |name: &str| ["n1", "n2", "n3"].iter().position(|n| *n == name).unwrap();

    let path = "/r/app/route";
    let home = get(&director.url(path))
        .await
        .header("x-backend")
        .unwrap()
        .to_owned();
    for _ in 0..5 {
        assert_eq!(
            get(&director.url(path)).await.header("x-backend"),
            Some(home.as_str())
        );
    }

    // Kill the home node: the path moves to one other node, and stays there.
    let home_port = addrs[node_of(&home)].clone();
    nodes[node_of(&home)] = None;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let moved = get(&director.url(path)).await;
    assert_eq!(moved.status, 200);
    let moved = moved.header("x-backend").unwrap().to_owned();
    assert_ne!(moved, home);
    for _ in 0..5 {
        assert_eq!(
            get(&director.url(path)).await.header("x-backend"),
            Some(moved.as_str())
        );
    }

    // Restart it: once a ping reaches it, it gets its keys back.
    nodes[node_of(&home)] = Some(TestBackend::tcp(&home, &home_port).await.unwrap());
    let mut back = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if get(&director.url(path)).await.header("x-backend") == Some(home.as_str()) {
            back = true;
            break;
        }
    }
    assert!(back, "affinity returned to {home}");

    // No node reachable: 502 with a body that says so.
    nodes.clear();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reply = get(&director.url(path)).await;
    assert_eq!(reply.status, 502);
    assert!(reply.text().contains("no backend"), "{}", reply.text());
}
