use super::*;

fn fixture(name: &str) -> (String, PathBuf) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/x0")
        .join(name);
    (std::fs::read_to_string(&path).unwrap(), path)
}

#[test]
fn the_classic_app_cluster_imports() {
    let (text, path) = fixture("app_cluster.db");
    let imported = import(&text, &path, Dialect::of(&path), None).unwrap();
    assert_eq!(imported.name, "app_cluster");
    let c = &imported.config;
    assert_eq!(c.scheduler, director_core::schedule::SchedulerKind::Chance);
    assert_eq!(c.queue_limit, 127);
    assert_eq!(
        c.queue_timeout.unwrap().0,
        std::time::Duration::from_secs(10)
    );
    assert_eq!(c.retry_after, 60);
    assert_eq!(c.max_retry_count, 3);
    assert_eq!(c.backends.len(), 5);
    assert_eq!(c.backends[0].url, "http://127.0.0.1:3101");
    assert_eq!(c.backends[0].capacity, 1);
    let names: Vec<&str> = c.buckets.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["main", "vip"]);
    let health = c.health.as_ref().unwrap();
    assert_eq!(health.path, "/health");
    assert_eq!(health.host, "localhost");
    assert_eq!(
        health.interval.unwrap().0,
        std::time::Duration::from_secs(2)
    );
    let cache = c.cache.as_ref().unwrap();
    assert!(!cache.enabled);
    assert_eq!(
        cache.shadow_ttl.unwrap().0,
        std::time::Duration::from_secs(3600)
    );
    assert!(imported.notes.iter().any(|n| n.contains("transfer-mode")));
    // main 0.5 + vip 0.5: the root bucket had no tokens in x0.
    let starved: Vec<_> = imported
        .notes
        .iter()
        .filter(|n| n.contains("root bucket"))
        .collect();
    assert_eq!(starved.len(), 1, "{:?}", imported.notes);
    assert!(starved[0].contains("main, vip") && starved[0].contains("504"));
    assert!(starved[0].contains("shaper = \"x0\""));
    // The first backends' 2 s became the cluster's; the two on 5 s keep their own.
    let own: Vec<_> = c
        .backends
        .iter()
        .map(|b| b.health_interval.map(|d| d.0.as_secs()))
        .collect();
    assert_eq!(own, [None, None, None, Some(5), Some(5)]);
    assert!(c.backends.iter().all(|b| b.health_mode.is_none()));
    // Builds into a live cluster.
    let mut proxy = director_core::config::ProxyConfig::default();
    proxy.clusters.insert(imported.name, imported.config);
    director_core::registry::Snapshot::build(&proxy).unwrap();
}

#[test]
fn the_fastcgi_cluster_fills_in_defaults() {
    let (text, path) = fixture("fcgi_cluster.db");
    let err = import(&text, &path, Dialect::Classic, None).unwrap_err();
    assert!(err.message.contains("--document-root"), "{err}");
    let imported = import(&text, &path, Dialect::Classic, Some("/srv/app")).unwrap();
    let c = &imported.config;
    assert!(c.enabled);
    assert!(!c.enqueue_on_unavailable);
    assert_eq!(
        c.scheduler,
        director_core::schedule::SchedulerKind::RoundRobin
    );
    assert_eq!(c.backends[0].url, "fastcgi://127.0.0.1:3106");
    assert_eq!(c.fastcgi.as_ref().unwrap().document_root, "/srv/app");
    assert_eq!(
        c.health.as_ref().unwrap().script_filename.as_deref(),
        Some("/srv/app/ping.php")
    );
}

#[test]
fn the_rewrite_dialect_reads_milliseconds() {
    let text = "[director]\nqueue-timeout=2500\nconnect-timeout=250\nhealth-check-success-threshold=4\n\
                [backend=a]\nhost=::1\nport=8080\nhealth-check-interval=1500\n";
    let path = Path::new("shop.cluster.conf");
    let imported = import(text, path, Dialect::of(path), None).unwrap();
    assert_eq!(imported.name, "shop");
    let c = imported.config;
    assert_eq!(
        c.queue_timeout.unwrap().0,
        std::time::Duration::from_millis(2500)
    );
    assert_eq!(
        c.connect_timeout.unwrap().0,
        std::time::Duration::from_millis(250)
    );
    assert_eq!(c.queue_limit, 1000);
    assert!(c.enqueue_on_unavailable);
    assert_eq!(c.backends[0].url, "http://[::1]:8080");
    let health = c.health.unwrap();
    assert_eq!(health.rise, 4);
    assert_eq!(
        health.interval.unwrap().0,
        std::time::Duration::from_millis(1500)
    );
}

#[test]
fn bad_files_name_line_and_key() {
    let path = Path::new("bad.db");
    let err = import(
        "[backend=a]\nhost=127.0.0.1\nport=eighty\n",
        path,
        Dialect::Classic,
        None,
    )
    .unwrap_err();
    assert_eq!((err.line, err.key.as_str()), (3, "backend=a.port"));
    let err = import("key=1\n", path, Dialect::Classic, None).unwrap_err();
    assert_eq!(err.line, 1);
    let err = import("[mystery]\n", path, Dialect::Classic, None).unwrap_err();
    assert_eq!(err.key, "mystery");
    let err = import(
        "[backend=a]\nhost=db.local\nport=1\n",
        path,
        Dialect::Classic,
        None,
    )
    .unwrap_err();
    assert!(err.message.contains("IP address"));
    let err = import(
        "[backend=a]\nrole=boss\nhost=127.0.0.1\nport=1\n",
        path,
        Dialect::Classic,
        None,
    )
    .unwrap_err();
    assert_eq!(err.key, "backend=a.role");
}

#[test]
fn buckets_that_leave_the_root_tokens_get_no_note() {
    let file = Path::new("/tmp/shop.db");
    let text = |rates: &str| {
        let mut t = String::from("[backend=a]\nhost=127.0.0.1\nport=8080\ncapacity=10\n");
        for (i, rate) in rates.split(',').enumerate() {
            t.push_str(&format!("[bucket=b{i}]\nrate={rate}\nceil=1\n"));
        }
        t
    };
    let starved = |rates: &str| {
        import(&text(rates), file, Dialect::Classic, None)
            .unwrap()
            .notes
            .iter()
            .any(|n| n.contains("root bucket"))
    };
    assert!(!starved("0.2,0.5"));
    assert!(!starved("0.99"));
    // Float sums that land just off 1 still count.
    assert!(starved("0.1,0.2,0.7"));
    assert!(starved("1"));
}
