use super::*;

fn cluster(text: &str) -> ClusterConfig {
    toml::from_str(text).unwrap()
}

const TWO: &str = r#"
backends = [
  { name = "a", url = "http://127.0.0.1:9", capacity = 2 },
  { name = "b", url = "http://127.0.0.1:10", capacity = 3 },
]
"#;

fn store(dir: &Path) -> Store {
    let mut main = ProxyConfig::default();
    main.clusters.insert("fixed".into(), cluster(TWO));
    Store::new(main, BTreeMap::new(), Some(dir.into()), Arc::new(Plain)).unwrap()
}

fn file_text(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(cluster_file(dir, name)).ok()
}

#[test]
fn a_created_cluster_is_written_and_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let created = store.create("shop", cluster(TWO)).unwrap();
    assert!(created.dynamic);
    let text = file_text(dir.path(), "shop").unwrap();
    let read: ClusterConfig = toml::from_str(&text).unwrap();
    assert_eq!(read, created.config);
    assert_eq!(created.live.backends().len(), 2);
    // Reachable by its name as host.
    let snapshot = store.registry().load();
    let uri: http::Uri = "/x".parse().unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::HOST, "shop".parse().unwrap());
    assert!(snapshot.routes().find(&uri, &headers).is_some());
    assert!(matches!(
        store.create("shop", cluster(TWO)),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.create("fixed", cluster(TWO)),
        Err(StoreError::Conflict(_))
    ));
}

#[test]
fn member_changes_keep_the_live_cluster_and_backends() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let before = store.create("shop", cluster(TWO)).unwrap();
    let a = before.live.backend("a").unwrap();
    let after = store
        .update("shop", None, |c| {
            c.backends[0].capacity = 7;
            c.backends[1].enabled = false;
            Ok(())
        })
        .unwrap();
    assert!(Arc::ptr_eq(&before.live, &after.live));
    assert!(Arc::ptr_eq(&a, &after.live.backend("a").unwrap()));
    assert_eq!(a.capacity(), 7);
    assert!(!after.live.backend("b").unwrap().is_enabled());
    assert_ne!(before.etag, after.etag);
    assert!(
        file_text(dir.path(), "shop")
            .unwrap()
            .contains("capacity = 7")
    );
}

#[test]
fn settings_changes_rebuild_the_cluster_but_keep_its_backends() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let before = store.create("shop", cluster(TWO)).unwrap();
    let after = store
        .update("shop", None, |c| {
            c.queue_limit = 5;
            Ok(())
        })
        .unwrap();
    assert!(!Arc::ptr_eq(&before.live, &after.live));
    assert_eq!(after.live.settings().queue_limit, 5);
    assert!(Arc::ptr_eq(
        &before.live.backend("a").unwrap(),
        &after.live.backend("a").unwrap()
    ));
}

#[test]
fn removed_backends_drain_and_added_ones_join() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let before = store.create("shop", cluster(TWO)).unwrap();
    let after = store
        .update("shop", None, |c| {
            c.backends.remove(0);
            c.backends.push(
                cluster(r#"backends = [{ name = "c", url = "http://127.0.0.1:11" }]"#)
                    .backends
                    .remove(0),
            );
            Ok(())
        })
        .unwrap();
    assert!(Arc::ptr_eq(&before.live, &after.live));
    let names: Vec<String> = after
        .live
        .backends()
        .iter()
        .map(|b| b.name().to_string())
        .collect();
    // "a" was idle, so it left at once.
    assert_eq!(names, ["b", "c"]);
}

#[test]
fn a_refused_change_leaves_file_and_live_state_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let before = store.create("shop", cluster(TWO)).unwrap();
    let text = file_text(dir.path(), "shop").unwrap();
    let err = store
        .update("shop", None, |c| {
            c.backends[0].capacity = 99;
            c.backends[1].url = "ftp://nowhere".into();
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(ref e) if e.path.ends_with("backends[1].url")),
        "{err}"
    );
    assert_eq!(file_text(dir.path(), "shop").unwrap(), text);
    assert_eq!(before.live.backend("a").unwrap().capacity(), 2);
    assert_eq!(store.get("shop").unwrap().config, before.config);
}

#[test]
fn a_failed_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let before = store.create("shop", cluster(TWO)).unwrap();
    let text = file_text(dir.path(), "shop").unwrap();
    // Make the temp file impossible to create: a directory where the store wants its file's
    // directory is replaced by a regular file... simplest, point at a removed directory.
    let moved = dir.path().with_extension("moved");
    std::fs::rename(dir.path(), &moved).unwrap();
    let err = store
        .update("shop", None, |c| {
            c.backends[0].capacity = 9;
            Ok(())
        })
        .unwrap_err();
    std::fs::rename(&moved, dir.path()).unwrap();
    assert!(matches!(err, StoreError::Persist { .. }), "{err}");
    assert_eq!(before.live.backend("a").unwrap().capacity(), 2);
    assert_eq!(file_text(dir.path(), "shop").unwrap(), text);
    assert_eq!(store.get("shop").unwrap().etag, before.etag);
}

#[test]
fn static_clusters_only_switch() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    assert!(matches!(
        store.update("fixed", None, |_| Ok(())),
        Err(StoreError::Immutable(_))
    ));
    assert!(matches!(
        store.delete("fixed", None),
        Err(StoreError::Immutable(_))
    ));
    let e = store.set_cluster_enabled("fixed", false).unwrap();
    assert!(!e.live.is_enabled());
    store.set_backend_enabled("fixed", "b", false).unwrap();
    assert!(!e.live.backend("b").unwrap().is_enabled());
    assert!(matches!(
        store.set_backend_enabled("fixed", "zz", false),
        Err(StoreError::NotFound(_))
    ));
    // Nothing was written for it.
    assert!(file_text(dir.path(), "fixed").is_none());
}

#[test]
fn if_match_guards_concurrent_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let e = store.create("shop", cluster(TWO)).unwrap();
    store
        .update("shop", Some(&e.etag), |c| {
            c.retry_after = 3;
            Ok(())
        })
        .unwrap();
    assert!(matches!(
        store.update("shop", Some(&e.etag), |c| {
            c.retry_after = 4;
            Ok(())
        }),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get("shop").unwrap().config.retry_after, 3);
}

#[test]
fn delete_removes_the_file_and_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    store.create("shop", cluster(TWO)).unwrap();
    store.delete("shop", None).unwrap();
    assert!(file_text(dir.path(), "shop").is_none());
    assert!(store.get("shop").is_none());
    assert!(store.registry().load().cluster("shop").is_none());
}

#[test]
fn a_bad_reload_keeps_the_running_config_and_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let mut main = ProxyConfig::default();
    main.clusters.insert(
        "fixed".into(),
        cluster(r#"backends = [{ name = "a", url = "nope://" }]"#),
    );
    assert!(store.reload(main, BTreeMap::new()).is_err());
    assert!(
        store
            .last_reload_error()
            .unwrap()
            .message
            .contains("backends[0].url")
    );
    assert_eq!(store.get("fixed").unwrap().live.backends().len(), 2);
    let mut good = ProxyConfig::default();
    good.clusters.insert("fixed".into(), cluster(TWO));
    good.clusters.insert("more".into(), cluster(TWO));
    store.reload(good, BTreeMap::new()).unwrap();
    assert!(store.last_reload_error().is_none());
    assert!(store.get("more").is_some());
}

#[test]
fn operator_states_persist_for_dynamic_clusters_and_switch_static_ones() {
    use crate::backend::AdminState;
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    store.create("shop", cluster(TWO)).unwrap();
    let e = store
        .set_backend_state("shop", "a", AdminState::Drain)
        .unwrap();
    let a = e.live.backend("a").unwrap();
    assert_eq!(a.admin_state(), AdminState::Drain);
    assert!(e.config.backends[0].drain && e.config.backends[0].enabled);
    assert!(
        file_text(dir.path(), "shop")
            .unwrap()
            .contains("drain = true")
    );
    // Maint ends the drain, in memory and in the file.
    let e = store
        .set_backend_state("shop", "a", AdminState::Maint)
        .unwrap();
    assert_eq!(a.admin_state(), AdminState::Maint);
    assert!(!e.config.backends[0].drain && !e.config.backends[0].enabled);
    assert!(!file_text(dir.path(), "shop").unwrap().contains("drain"));
    let e = store
        .set_backend_state("shop", "a", AdminState::Ready)
        .unwrap();
    assert!(Arc::ptr_eq(&a, &e.live.backend("a").unwrap()), "kept");
    assert_eq!(a.admin_state(), AdminState::Ready);
    assert!(matches!(
        store.set_backend_state("shop", "zz", AdminState::Drain),
        Err(StoreError::NotFound(_))
    ));

    let e = store
        .set_backend_state("fixed", "b", AdminState::Drain)
        .unwrap();
    assert_eq!(
        e.live.backend("b").unwrap().admin_state(),
        AdminState::Drain
    );
    assert!(file_text(dir.path(), "fixed").is_none(), "a runtime switch");
}

#[test]
fn names_that_are_not_safe_file_names_are_refused() {
    let long = "a".repeat(MAX_NAME_LEN + 1);
    for bad in [
        "", ".", "..", ".hidden", "-rf", "a/b", "a\0b", "a\nb", "a b", "é", &long,
    ] {
        assert!(check_name(bad, "cluster").is_err(), "{bad:?} accepted");
    }
    for good in [
        "shop",
        "www.example.com",
        "a-b_c.d",
        "x",
        &"a".repeat(MAX_NAME_LEN),
    ] {
        assert_eq!(check_name(good, "cluster"), Ok(()), "{good:?} refused");
    }
    let e = check_name(&long, "cluster").unwrap_err();
    assert!(e.contains("at most 128 bytes"), "{e}");
}

#[test]
fn create_refuses_an_unsafe_name_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    for bad in [".", "..", ".hidden", &"n".repeat(300)] {
        match store.create(bad, cluster(TWO)) {
            Err(StoreError::Invalid(e)) => assert_eq!(e.path, "name"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(store.get(".hidden").is_none());
}

#[test]
fn a_dynamic_cluster_with_an_unsafe_name_is_a_config_error() {
    let mut dynamic = BTreeMap::new();
    dynamic.insert(".hidden".to_owned(), cluster(TWO));
    let e = merge(&ProxyConfig::default(), &dynamic).unwrap_err();
    assert_eq!(e.path, "clusters..hidden");
}

#[test]
fn leftover_temp_files_are_removed_at_start_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join(".director-abc123.tmp");
    std::fs::write(&stale, "half a file").unwrap();
    // Neither a cluster file nor someone else's dot file is touched.
    std::fs::write(dir.path().join(".keep"), "").unwrap();
    let store = store(dir.path());
    assert!(!stale.exists());
    assert!(dir.path().join(".keep").exists());
    store.create("shop", cluster(TWO)).unwrap();
    std::fs::write(&stale, "again").unwrap();
    let mut main = ProxyConfig::default();
    main.clusters.insert("fixed".into(), cluster(TWO));
    let dynamic = store
        .list()
        .into_iter()
        .filter(|e| e.dynamic)
        .map(|e| (e.name, e.config))
        .collect();
    store.reload(main, dynamic).unwrap();
    assert!(!stale.exists());
    assert!(file_text(dir.path(), "shop").is_some());
}

#[test]
fn a_file_bound_cluster_is_written_to_its_own_file_and_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let own = elsewhere.path().join("shop.db.toml");
    let stale = elsewhere.path().join(".director-old.tmp");
    std::fs::write(&stale, "half a file").unwrap();
    let mut main = ProxyConfig::default();
    main.clusters.insert("fixed".into(), cluster(TWO));
    let dynamic = [("shop".to_owned(), cluster(TWO))].into();
    let store = Store::new(main, dynamic, Some(dir.path().into()), Arc::new(Plain))
        .unwrap()
        .with_cluster_files([("shop".to_owned(), own.clone())].into())
        .unwrap();
    assert!(!stale.exists(), "leftover temp files beside it are removed");
    // A missing file is written at once.
    let read: ClusterConfig = toml::from_str(&std::fs::read_to_string(&own).unwrap()).unwrap();
    assert_eq!(read, cluster(TWO));
    assert_eq!(store.file_of("shop"), Some(own.clone()));
    assert_eq!(
        store.file_of("other"),
        Some(cluster_file(dir.path(), "other"))
    );

    let changed = store
        .update("shop", None, |c| {
            c.backends[0].capacity = 9;
            Ok(())
        })
        .unwrap();
    assert!(changed.dynamic);
    let read: ClusterConfig = toml::from_str(&std::fs::read_to_string(&own).unwrap()).unwrap();
    assert_eq!(read.backends[0].capacity, 9);
    assert!(
        file_text(dir.path(), "shop").is_none(),
        "not in the cluster dir"
    );
    // Atomic: nothing but the file itself is left beside it.
    let names: Vec<_> = std::fs::read_dir(elsewhere.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["shop.db.toml"]);

    assert!(matches!(
        store.delete("shop", None),
        Err(StoreError::Forbidden(_))
    ));
    assert!(own.exists());
    assert!(store.get("shop").is_some());
    assert!(matches!(
        store.create("shop", cluster(TWO)),
        Err(StoreError::Conflict(_))
    ));
}

#[test]
fn a_file_bound_cluster_needs_no_cluster_dir() {
    let elsewhere = tempfile::tempdir().unwrap();
    let own = elsewhere.path().join("shop.toml");
    let dynamic = [("shop".to_owned(), cluster(TWO))].into();
    let store = Store::new(ProxyConfig::default(), dynamic, None, Arc::new(Plain))
        .unwrap()
        .with_cluster_files([("shop".to_owned(), own.clone())].into())
        .unwrap();
    store.set_backend_enabled("shop", "a", false).unwrap();
    let read: ClusterConfig = toml::from_str(&std::fs::read_to_string(&own).unwrap()).unwrap();
    assert!(!read.backends[0].enabled);
    // Creating others still needs the cluster directory.
    assert!(matches!(
        store.create("blog", cluster(TWO)),
        Err(StoreError::Forbidden(_))
    ));
}
