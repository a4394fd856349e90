//! Sticky offline mode, wired: a backend that went offline and came back stays disabled until
//! it is enabled through its cluster; its first online at start-up does not count.

use std::{path::Path, time::Duration};

use director_bin::{config, health};
use director_core::{backend::Health, testing::TestBackend};

async fn wait(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_backend_stays_disabled_until_enabled_through_its_cluster() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let text = format!(
        "[clusters.app.health]\ninterval = \"50ms\"\nrise = 1\nfall = 1\nsticky-offline = true\n\
         [[clusters.app.backends]]\nname = \"a\"\nurl = \"{}\"\n",
        a.url()
    );
    let loaded = config::parse(&text, Path::new("sticky.toml")).unwrap();
    let monitors = health::start(&loaded.config, &loaded.snapshot).unwrap();
    assert_eq!(monitors.len(), 1);
    let cluster = loaded.snapshot.cluster("app").unwrap().clone();
    let backend = cluster.backend("a").unwrap();

    wait("a is online", || backend.health() == Health::Online).await;
    assert!(
        backend.is_enabled(),
        "the first online at start-up does not disable it"
    );

    a.set_failing(true);
    wait("a is offline", || backend.health() == Health::Offline).await;
    a.set_failing(false);
    wait("a is back online", || backend.health() == Health::Online).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !backend.is_enabled(),
        "sticky: it stays disabled after coming back"
    );
    assert!(!backend.is_available());

    assert!(cluster.set_backend_enabled("a", true));
    wait("a is enabled again", || backend.is_enabled()).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(backend.is_enabled(), "enabling through the cluster sticks");
    assert!(backend.is_available());
    assert!(monitors.handle("app", "a").unwrap().is_enabled());
}
