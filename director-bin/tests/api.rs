//! End-to-end tests of the JSON admin API through the real binary: tokens, routes and status
//! codes, persistence across `kill -9`, traffic to a cluster created at runtime, and bad input
//! that leaves the cluster file byte for byte as it was.

mod support;

use std::path::Path;

use bytes::Bytes;
use director_core::testing::TestBackend;
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::{Director, Reply, send};

fn config(cluster_dir: &Path, server: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin-listen = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\
         cluster-dir = {dir:?}\n{server}\n\n\
         [clusters.static]\n[[clusters.static.backends]]\nname = \"s1\"\nurl = \"http://127.0.0.1:9\"\n",
        dir = cluster_dir.display().to_string(),
    )
}

async fn call(
    d: &Director,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{}/api{path}", d.admin()));
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await
}

fn json(r: &Reply) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

fn file_hash(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    format!("{:x}", Sha256::digest(bytes))
}

/// The parts of a cluster document that are state, not counters.
fn settings(doc: &Value) -> Value {
    let mut doc = doc.clone();
    let obj = doc.as_object_mut().unwrap();
    obj.remove("stats");
    for m in obj["members"].as_array_mut().unwrap() {
        m.as_object_mut().unwrap().remove("stats");
        m["health"].as_object_mut().unwrap().remove("state");
    }
    fn strip(bucket: &mut Value) {
        bucket.as_object_mut().unwrap().remove("stats");
        for child in bucket["children"].as_array_mut().unwrap() {
            strip(child);
        }
    }
    strip(&mut obj["shaper"]);
    doc
}

#[tokio::test]
async fn tokens_guard_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let d = Director::start(&config(
        dir.path(),
        "admin-token = \"full-secret-0123456789\"\nadmin-read-token = \"read-secret-0123456789\"",
    ));
    let none = call(&d, "GET", "/", "", &[]).await;
    assert_eq!(none.status, 401);
    assert!(
        none.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    assert!(json(&none)["error"].is_string());
    let wrong = call(&d, "GET", "/", "", &[("authorization", "Bearer nope")]).await;
    assert_eq!(wrong.status, 401);
    let read = [("authorization", "Bearer read-secret-0123456789")];
    assert_eq!(call(&d, "GET", "/", "", &read).await.status, 200);
    assert_eq!(call(&d, "PUT", "/shop", "", &read).await.status, 403);
    assert_eq!(call(&d, "LOCK", "/static", "", &read).await.status, 403);
    let full = [("authorization", "Bearer full-secret-0123456789")];
    assert_eq!(call(&d, "PUT", "/shop", "", &full).await.status, 201);
    assert_eq!(
        call(
            &d,
            "GET",
            "/shop",
            "",
            &[("cookie", "director-token=read-secret-0123456789")]
        )
        .await
        .status,
        200
    );
    assert_eq!(
        call(
            &d,
            "DELETE",
            "/shop",
            "",
            &[("cookie", "director-token=read-secret-0123456789")]
        )
        .await
        .status,
        403
    );
}

#[tokio::test]
async fn a_runtime_cluster_serves_traffic_and_survives_kill_9() {
    let backend = TestBackend::tcp("b1", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let d = Director::start(&cfg);

    let a = call(
        &d,
        "PUT",
        "/shop",
        "queue-limit=64&queue-timeout=10s&scheduler=least-load",
        &[],
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(a.header("location"), Some("/api/shop"));
    let a = call(
        &d,
        "PUT",
        "/shop/backends",
        &format!("name=b1&url={}&capacity=4", backend.url()),
        &[],
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let a = call(
        &d,
        "PUT",
        "/shop/backends/b2",
        "protocol=http&hostname=127.0.0.1&port=9&capacity=2&role=backup",
        &[],
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let a = call(
        &d,
        "PUT",
        "/shop/buckets",
        "name=vip&rate=0.25&ceil=0.5",
        &[],
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let a = call(
        &d,
        "POST",
        "/shop",
        "retry-after=3&connect-timeout=250ms",
        &[],
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.text());
    assert_eq!(
        call(&d, "LOCK", "/shop/backends/b2", "", &[]).await.status,
        204
    );
    // HAProxy's soft drain is persisted for a dynamic cluster too.
    let a = call(
        &d,
        "PUT",
        "/shop/backends/b3",
        "url=http://127.0.0.1:9",
        &[],
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let a = call(&d, "POST", "/shop/backends/b3", "state=drain", &[]).await;
    assert_eq!(a.status, 202, "{}", a.text());
    assert_eq!(json(&a)["admin-state"], "drain");
    let file = std::fs::read_to_string(dir.path().join("shop.toml")).unwrap();
    assert!(file.contains("drain = true"), "{file}");

    // A dynamic cluster is routed by `Host: <name>`.
    let served = send(
        Request::get(d.url("/hello"))
            .header("host", "shop")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(backend.requests(), 1);

    let before = settings(&json(&call(&d, "GET", "/shop", "", &[]).await));
    d.signal("KILL");
    drop(d);
    let d = Director::start(&cfg);
    let after = settings(&json(&call(&d, "GET", "/shop", "", &[]).await));
    assert_eq!(before, after);
    let member = |name: &str| {
        after["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(member("b2")["enabled"], false);
    assert_eq!(member("b3")["admin-state"], "drain");

    assert_eq!(
        call(&d, "DELETE", "/shop/backends/b2", "", &[])
            .await
            .status,
        202
    );
    assert_eq!(call(&d, "DELETE", "/shop", "", &[]).await.status, 204);
    assert!(!dir.path().join("shop.toml").exists());
    assert_eq!(call(&d, "GET", "/shop", "", &[]).await.status, 404);
}

#[tokio::test]
async fn bad_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Director::start(&config(dir.path(), ""));
    assert_eq!(
        call(&d, "PUT", "/shop", "queue-limit=8", &[]).await.status,
        201
    );
    assert_eq!(
        call(
            &d,
            "PUT",
            "/shop/backends/b1",
            "url=http://127.0.0.1:9&capacity=2",
            &[]
        )
        .await
        .status,
        201
    );
    assert_eq!(
        call(&d, "PUT", "/shop/buckets/vip", "rate=0.5", &[])
            .await
            .status,
        201
    );
    let file = dir.path().join("shop.toml");
    let hash = file_hash(&file);
    let doc = settings(&json(&call(&d, "GET", "/shop", "", &[]).await));
    let huge = format!("queue-limit=1&pad={}", "x".repeat(100 * 1024));
    let json_ct = [("content-type", "application/json")];
    for (method, path, body, headers, status) in [
        ("POST", "/shop", "queue-limit=many", &[][..], 400),
        ("POST", "/shop", "queue-limt=3", &[][..], 400),
        (
            "POST",
            "/shop",
            "{\"queue-limit\": \"3\"}",
            &json_ct[..],
            400,
        ),
        ("POST", "/shop", "{\"queue-limit\": 3", &json_ct[..], 400),
        ("POST", "/shop", huge.as_str(), &[][..], 413),
        (
            "POST",
            "/shop",
            "queue-limit=3",
            &[("content-type", "text/plain")][..],
            415,
        ),
        ("POST", "/shop/backends/b1", "capacity=-1", &[][..], 400),
        (
            "PUT",
            "/shop/backends/b2",
            "hostname=127.0.0.1&port=9&capacity=-5",
            &[][..],
            400,
        ),
        ("PUT", "/shop/buckets/big", "rate=0.75", &[][..], 400),
        (
            "POST",
            "/shop/buckets/vip",
            "rate=0.5&ceil=1.5",
            &[][..],
            400,
        ),
        (
            "POST",
            "/shop",
            "queue-limit=3",
            &[("if-match", "\"stale\"")][..],
            409,
        ),
        (
            "PUT",
            "/shop/backends/b1",
            "url=http://127.0.0.1:9",
            &[][..],
            409,
        ),
    ] {
        let a = call(&d, method, path, body, headers).await;
        assert_eq!(
            a.status,
            status,
            "{method} {path} {}: {}",
            &body[..body.len().min(40)],
            a.text()
        );
        assert!(json(&a)["error"].is_string());
        assert_eq!(file_hash(&file), hash, "{method} {path}: the file changed");
    }
    assert_eq!(
        settings(&json(&call(&d, "GET", "/shop", "", &[]).await)),
        doc
    );
}

#[tokio::test]
async fn routes_and_status_codes_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = Director::start(&config(dir.path(), ""));
    let index = call(&d, "GET", "/", "", &[]).await;
    assert_eq!(index.status, 200);
    assert_eq!(index.header("content-type"), Some("application/json"));
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    assert!(index.body.ends_with(b"\n"));
    assert!(json(&index)["static"]["members"].is_array());
    assert_eq!(call(&d, "GET", "/_status", "", &[]).await.status, 200);
    assert_eq!(call(&d, "GET", "/nope", "", &[]).await.status, 404);
    let a = call(&d, "PATCH", "/static", "", &[]).await;
    assert_eq!(a.status, 405);
    assert!(a.header("allow").unwrap().contains("LOCK"));

    // Static: enable and disable only.
    assert_eq!(
        call(&d, "POST", "/static", "queue-limit=3", &[])
            .await
            .status,
        403
    );
    assert_eq!(call(&d, "LOCK", "/static", "", &[]).await.status, 204);
    assert_eq!(
        json(&call(&d, "GET", "/static", "", &[]).await)["enabled"],
        false
    );
    assert_eq!(call(&d, "UNLOCK", "/static", "", &[]).await.status, 204);
    assert_eq!(
        call(&d, "LOCK", "/static/backends/s1", "", &[])
            .await
            .status,
        204
    );
    assert_eq!(
        json(&call(&d, "GET", "/static/backends/s1", "", &[]).await)["enabled"],
        false
    );

    // Dynamic: everything, with ETag and If-Match.
    let created = call(
        &d,
        "PUT",
        "/shop",
        "{\"queue-limit\": 9, \"health\": {\"interval\": \"1s\"}}",
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let etag = created.header("etag").unwrap().to_owned();
    let updated = call(
        &d,
        "POST",
        "/shop",
        "max-retry-count=1",
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(updated.status, 202, "{}", updated.text());
    assert_eq!(json(&updated)["max-retry-count"], 1);
    assert_eq!(
        call(
            &d,
            "POST",
            "/shop",
            "max-retry-count=2",
            &[("if-match", &etag)]
        )
        .await
        .status,
        409
    );
    assert_eq!(call(&d, "PUT", "/shop", "", &[]).await.status, 409);
    assert_eq!(
        call(
            &d,
            "PUT",
            "/shop/backends/p",
            "url=http://127.0.0.1:9&terminate-protection=true",
            &[]
        )
        .await
        .status,
        201
    );
    assert_eq!(
        call(&d, "DELETE", "/shop/backends/p", "", &[]).await.status,
        403
    );
    assert_eq!(
        call(&d, "GET", "/shop/backends/p", "", &[]).await.status,
        200
    );
    assert_eq!(
        call(&d, "GET", "/shop/backends/zz", "", &[]).await.status,
        404
    );
    assert_eq!(call(&d, "GET", "/shop/buckets", "", &[]).await.status, 200);
    assert_eq!(
        call(&d, "DELETE", "/shop/buckets/zz", "", &[]).await.status,
        404
    );
    assert_eq!(
        call(&d, "POST", "/shop/cache/purge", "url=/x", &[])
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn cache_stats_purge_and_ban_through_the_api() {
    let backend = TestBackend::tcp("b1", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = Director::start(&config(dir.path(), ""));
    let a = call(
        &d,
        "PUT",
        "/blog",
        "cache-enabled=true&cache-default-ttl=60",
        &[],
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let url = backend.url();
    let a = call(&d, "PUT", "/blog/backends/b1", &format!("url={url}"), &[]).await;
    assert_eq!(a.status, 201, "{}", a.text());
    let fetch = |path: &'static str| {
        let d = &d;
        async move {
            send(
                Request::get(d.url(path))
                    .header("host", "blog")
                    .body(Full::default())
                    .unwrap(),
            )
            .await
        }
    };
    assert_eq!(fetch("/a").await.status, 200);
    let hit = fetch("/a").await;
    assert_eq!(hit.header("x-cache"), Some("HIT"), "{:?}", hit.headers);
    assert_eq!(backend.requests(), 1);

    let doc = json(&call(&d, "GET", "/blog", "", &[]).await);
    assert_eq!(doc["cache"]["enabled"], true);
    assert_eq!(doc["cache"]["stats"]["hits"], 1, "{}", doc["cache"]);
    assert_eq!(doc["cache"]["stats"]["misses"], 1);

    let purged = call(&d, "POST", "/blog/cache/purge", "url=http://blog/a", &[]).await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert_eq!(json(&purged)["purged"], 1);
    assert_eq!(fetch("/a").await.header("x-cache"), Some("MISS"));
    assert_eq!(backend.requests(), 2);

    fetch("/img/1").await;
    fetch("/img/2").await;
    let banned = call(&d, "POST", "/blog/cache/ban", "prefix=blog#/img/", &[]).await;
    assert_eq!(json(&banned)["banned"], 2, "{}", banned.text());
    assert_eq!(
        fetch("/a").await.header("x-cache"),
        Some("HIT"),
        "the ban left /a alone"
    );
    assert_eq!(
        call(&d, "POST", "/static/cache/purge", "url=http://x/", &[])
            .await
            .status,
        404
    );

    // Ban by predicate: a regular expression over the stored keys.
    fetch("/img/3.png").await;
    fetch("/img/4.jpg").await;
    let banned = call(
        &d,
        "POST",
        "/blog/cache/ban",
        "match=%5Eblog%23%2Fimg%2F.%2A%5C.png",
        &[],
    )
    .await;
    assert_eq!(banned.status, 200, "{}", banned.text());
    assert_eq!(json(&banned)["banned"], 1, "{}", banned.text());
    assert_eq!(fetch("/img/4.jpg").await.header("x-cache"), Some("HIT"));
    assert_eq!(fetch("/img/3.png").await.header("x-cache"), Some("MISS"));
    for bad in ["match=%28unclosed", "prefix=a&match=b", "pattern=x", ""] {
        let r = call(&d, "POST", "/blog/cache/ban", bad, &[]).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }

    // Runtime configuration: switching delivery off answers from the backend, and the stored
    // objects survive the change (the cluster is rebuilt, its cache is not).
    let off = call(&d, "POST", "/blog", "cache-deliver-active=false", &[]).await;
    assert_eq!(off.status, 202, "{}", off.text());
    let before = backend.requests();
    assert_ne!(fetch("/a").await.header("x-cache"), Some("HIT"));
    assert_eq!(backend.requests(), before + 1);
    let on = call(
        &d,
        "POST",
        "/blog",
        "cache-deliver-active=true&cache-strategy=shadowed",
        &[],
    )
    .await;
    assert_eq!(on.status, 202, "{}", on.text());
    assert_eq!(json(&on)["cache"]["strategy"], "shadowed", "{}", on.text());
    assert_eq!(fetch("/a").await.header("x-cache"), Some("HIT"));

    // The same counters in /metrics.
    let metrics = support::get(&format!("{}/metrics", d.admin())).await.text();
    let hits = metrics
        .lines()
        .find(|l| l.starts_with("director_cache_hits_total{") && l.contains("\"blog\""))
        .unwrap_or_else(|| panic!("no cache hits for blog in /metrics:\n{metrics}"));
    let doc = json(&call(&d, "GET", "/blog", "", &[]).await);
    assert_eq!(
        hits.rsplit(' ').next().unwrap(),
        doc["cache"]["stats"]["hits"].to_string(),
        "{hits}"
    );
}

/// Makes a directory read-only for the test, also for root (which ignores permissions): the
/// immutable attribute, or else a read-only bind mount over it. Undone when dropped.
struct ReadOnly(std::path::PathBuf, &'static str);

impl ReadOnly {
    fn new(dir: &Path) -> ReadOnly {
        let run = |cmd: &str, args: &[&str]| {
            std::process::Command::new(cmd)
                .args(args)
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success())
        };
        let how = if run("chattr", &["+i"]) {
            "chattr"
        } else if run("mount", &["--bind", "-o", "ro", &dir.to_string_lossy()]) {
            // `mount --bind -o ro DIR DIR`: the directory over itself.
            "mount"
        } else {
            let mut perms = std::fs::metadata(dir).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
            std::fs::set_permissions(dir, perms).unwrap();
            "chmod"
        };
        let probe = dir.join(".probe");
        assert!(
            std::fs::write(&probe, b"x").is_err(),
            "cannot make {} read-only (tried {how})",
            dir.display()
        );
        ReadOnly(dir.to_owned(), how)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let dir = &self.0;
        let _ = match self.1 {
            "chattr" => std::process::Command::new("chattr")
                .arg("-i")
                .arg(dir)
                .status(),
            "mount" => std::process::Command::new("umount").arg(dir).status(),
            _ => {
                let mut perms = std::fs::metadata(dir).unwrap().permissions();
                std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
                let _ = std::fs::set_permissions(dir, perms);
                return;
            }
        };
    }
}

#[tokio::test]
async fn a_read_only_cluster_dir_answers_500_and_changes_nothing() {
    let backend = TestBackend::tcp("b1", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clusters = dir.path().join("clusters");
    std::fs::create_dir(&clusters).unwrap();
    let d = Director::start(&config(&clusters, ""));
    let a = call(&d, "PUT", "/shop", "queue-limit=64", &[]).await;
    assert_eq!(a.status, 201, "{}", a.text());
    let a = call(
        &d,
        "PUT",
        "/shop/backends/b1",
        &format!("url={}&capacity=4", backend.url()),
        &[],
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let file = clusters.join("shop.toml");
    let before_hash = file_hash(&file);
    let before = json(&call(&d, "GET", "/shop", "", &[]).await);

    let guard = ReadOnly::new(&clusters);
    for (method, path, body) in [
        ("POST", "/shop", "queue-limit=5"),
        ("POST", "/shop/backends/b1", "capacity=9"),
        ("PUT", "/shop/backends/b2", "url=http://127.0.0.1:9"),
        ("LOCK", "/shop/backends/b1", ""),
        ("PUT", "/blog", ""),
    ] {
        let r = call(&d, method, path, body, &[]).await;
        assert_eq!(r.status, 500, "{method} {path}: {}", r.text());
        assert!(json(&r)["error"].is_string());
    }
    drop(guard);

    assert_eq!(file_hash(&file), before_hash);
    let after = json(&call(&d, "GET", "/shop", "", &[]).await);
    assert_eq!(settings(&after), settings(&before));
    assert_eq!(call(&d, "GET", "/blog", "", &[]).await.status, 404);
    // Writable again: the next change goes through.
    let r = call(&d, "POST", "/shop", "queue-limit=5", &[]).await;
    assert_eq!(r.status, 202, "{}", r.text());
}

#[tokio::test]
async fn haproxy_states_through_the_api_on_a_static_cluster() {
    let backend = TestBackend::tcp("s1", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "").replace("http://127.0.0.1:9", &backend.url())
        + "\n[[routes]]\ncluster = \"static\"\n";
    let d = Director::start(&cfg);
    let state = |doc: &Value| {
        let m = &doc["members"][0];
        (
            m["admin-state"].as_str().unwrap().to_owned(),
            m["enabled"].as_bool().unwrap(),
        )
    };
    let r = call(&d, "POST", "/static/backends/s1?state=drain", "", &[]).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let doc = json(&call(&d, "GET", "/static", "", &[]).await);
    assert_eq!(state(&doc), ("drain".to_owned(), true));
    // A drained backend takes no new balanced requests: the only one, so 503.
    let traffic = support::get(&d.url("/")).await;
    assert_eq!(traffic.status, 503, "{}", traffic.text());

    let r = call(&d, "POST", "/static/backends/s1", "state=maint", &[]).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let doc = json(&call(&d, "GET", "/static", "", &[]).await);
    assert_eq!(state(&doc), ("maint".to_owned(), false));

    let r = call(&d, "POST", "/static/backends/s1?state=ready", "", &[]).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let doc = json(&call(&d, "GET", "/static", "", &[]).await);
    assert_eq!(state(&doc), ("ready".to_owned(), true));
    assert_eq!(support::get(&d.url("/")).await.status, 200);

    let r = call(&d, "POST", "/static/backends/s1", "state=sleepy", &[]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(json(&r)["detail"]["field"], "state", "{}", r.text());
}
