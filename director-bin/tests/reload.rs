//! Hot reload and x0 imports, end to end: the real binary, its config file rewritten under a
//! bounded load, and x0's cluster files imported into its cluster directory.

mod support;

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use director_core::testing::TestBackend;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::{Director, get, send};

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

fn config(backends: &[(&str, &TestBackend, u32)]) -> String {
    let mut text = String::from(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n[clusters.app]\n\
         max-retry-count = 3\n",
    );
    for (name, b, capacity) in backends {
        text.push_str(&format!(
            "[[clusters.app.backends]]\nname = \"{name}\"\nurl = \"{}\"\ncapacity = {capacity}\n",
            b.url()
        ));
    }
    text.push_str("\n[[routes]]\ncluster = \"app\"\n");
    support::with_admin(&text)
}

/// Replaces the file the way editors do: write a new file, rename it over the old one.
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_reloads_under_load_drop_nothing_and_new_backends_serve() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let c = TestBackend::tcp("c", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&[("a", &a, 0)]));
    let path = director.dir.path().join("director.toml");
    let url = director.url("/delay/5");

    // A bounded load: four clients, each at most 600 requests, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            for _ in 0..600 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match get(&url).await.status {
                    StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    wait_for("the load runs", async || ok.load(Ordering::Relaxed) > 20).await;

    // 1: a new backend, by an editor-style replace.
    replace(&path, &config(&[("a", &a, 0), ("b", &b, 0)]));
    wait_for("b serves", async || b.requests() > 5).await;
    // 2: another backend and a capacity change, written in place.
    std::fs::write(&path, config(&[("a", &a, 2), ("b", &b, 0), ("c", &c, 0)])).unwrap();
    wait_for("c serves", async || c.requests() > 5).await;
    // 3: a removed backend (drained while requests are on it), applied by SIGHUP only after a
    // write the watcher also sees; either way, nothing may fail.
    std::fs::write(&path, config(&[("b", &b, 0), ("c", &c, 0)])).unwrap();
    director.signal("HUP");
    wait_for("a gets nothing new", async || {
        let before = a.requests();
        tokio::time::sleep(Duration::from_millis(200)).await;
        a.requests() == before
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert!(ok.load(Ordering::Relaxed) > 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_is_refused_and_the_running_config_stays() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&[("a", &a, 0)]));
    let path = director.dir.path().join("director.toml");
    std::fs::write(
        &path,
        config(&[("a", &a, 0)]).replace("capacity = 0", "capacity = -3"),
    )
    .unwrap();
    director.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..5 {
        assert_eq!(get(&director.url("/")).await.text(), "backend a\n");
    }
    // A good file after the bad one is taken.
    std::fs::write(&path, config(&[("b", &b, 0)])).unwrap();
    let url = director.url("/");
    wait_for("b takes over", async || {
        get(&url).await.text() == "backend b\n"
    })
    .await;
}

fn import(file: &str, into: &std::path::Path, extra: &[&str]) {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/x0")
        .join(file);
    let out = Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("import-x0")
        .arg(&fixture)
        .arg("--into")
        .arg(into)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import-x0 {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_x0_fixture_files_import_and_serve_traffic() {
    // The fixtures name fixed ports, as x0's did.
    let mut apps = Vec::new();
    for port in 3101..=3105 {
        apps.push(
            TestBackend::tcp(&format!("app{port}"), &format!("127.0.0.1:{port}"))
                .await
                .expect("the fixture's ports 3101-3106 are free"),
        );
    }
    let fcgi = tokio::net::TcpListener::bind("127.0.0.1:3106")
        .await
        .expect("the fixture's ports 3101-3106 are free");
    tokio::spawn(async move {
        while let Ok((stream, _)) = fcgi.accept().await {
            tokio::spawn(director_bin::demo::fastcgi_app::serve(stream));
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let clusters = dir.path().join("clusters");
    std::fs::create_dir(&clusters).unwrap();
    import("app_cluster.db", &clusters, &[]);
    import(
        "fcgi_cluster.db",
        &clusters,
        &["--document-root", "/srv/app"],
    );
    let path = dir.path().join("director.toml");
    std::fs::write(
        &path,
        support::with_admin(
            "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\ncluster-dir = \"clusters\"\n\n\
             [[routes]]\nhost = \"app_cluster\"\ncluster = \"app_cluster\"\nbucket-header = \"x-bucket\"\n",
        ),
    )
    .unwrap();
    let director = Director::spawn(dir, &["--config", path.to_str().unwrap()], 1);

    // Dynamic clusters answer to their name as host.
    let host = |name: &str, path: &str| {
        Request::get(director.url(path))
            .header("host", name)
            .header("x-bucket", "main")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    // x0's chance takes the first backend with room; each has room for one, so slow requests
    // at once spread. They go to bucket `main` as x0's Flow config would have sent them: the
    // fixture's buckets take the whole capacity, which starves the root bucket (spec 6.2).
    let replies =
        futures_util::future::join_all((0..5).map(|_| send(host("app_cluster", "/delay/300"))))
            .await;
    let mut seen = std::collections::BTreeSet::new();
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        seen.insert(reply.header("x-director-backend").unwrap().to_owned());
    }
    assert!(seen.len() > 1, "{seen:?}");
    let reply = send(host("fcgi_cluster", "/index.php")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply.text().contains("SCRIPT_FILENAME"), "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_keeps_health_monitors_of_kept_backends() {
    use director_core::{backend::Health, store::Store};
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let assembly = Arc::new(director_bin::assembly::Assembly::default());
    let store = Store::new(
        Default::default(),
        Default::default(),
        Some(dir.path().into()),
        assembly.clone(),
    )
    .unwrap();
    let config = toml::from_str(&format!(
        "[health]\ninterval = \"50ms\"\nrise = 1\n[[backends]]\nname = \"a\"\nurl = \"{}\"\n",
        a.url()
    ))
    .unwrap();
    let entry = store.create("shop", config).unwrap();
    let backend = entry.live.backend("a").unwrap();
    wait_for("a is online", async || backend.health() == Health::Online).await;
    assert_eq!(assembly.with_health(|h| h.len()), 1);

    // A member change and a settings change (the cluster is rebuilt): the monitor stays, so
    // the backend stays online rather than starting over as undefined.
    for edit in [
        |c: &mut director_core::config::ClusterConfig| c.backends[0].capacity = 3,
        |c: &mut director_core::config::ClusterConfig| c.queue_limit = 7,
    ] {
        let after = store
            .update("shop", None, |c| {
                edit(c);
                Ok(())
            })
            .unwrap();
        let kept = after.live.backend("a").unwrap();
        assert!(Arc::ptr_eq(&kept, &backend));
        assert_eq!(kept.health(), Health::Online);
        assert_eq!(assembly.with_health(|h| h.len()), 1);
    }

    // New health settings restart the monitor; a removed backend loses it.
    store
        .update("shop", None, |c| {
            c.health.as_mut().unwrap().rise = 2;
            Ok(())
        })
        .unwrap();
    assert_eq!(assembly.with_health(|h| h.len()), 1);
    store
        .update("shop", None, |c| {
            c.backends.clear();
            Ok(())
        })
        .unwrap();
    assert_eq!(assembly.with_health(|h| h.len()), 0);
}
