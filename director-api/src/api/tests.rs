//! Every route and status code, in process, over a store of one static and one dynamic cluster.

use std::sync::Mutex;

use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::NoExtras;

struct Fixture {
    api: Api,
    store: Arc<Store>,
    dir: tempfile::TempDir,
}

fn cluster(toml_like: Value) -> ClusterConfig {
    serde_json::from_value(toml_like).unwrap()
}

fn fixture_with(extras: Arc<dyn Extras>) -> Fixture {
    let statics = BTreeMap::from([(
        "static".to_owned(),
        cluster(json!({"backends": [{"name": "s1", "url": "http://127.0.0.1:9", "capacity": 2}]})),
    )]);
    let dynamics = BTreeMap::from([(
        "app".to_owned(),
        cluster(json!({
            "queue-limit": 5,
            "backends": [
                {"name": "a1", "url": "http://127.0.0.1:10", "capacity": 4},
                {"name": "guarded", "url": "http://127.0.0.1:11", "capacity": 4,
                 "terminate-protection": true}
            ],
            "buckets": [{"name": "vip", "rate": 0.2, "ceil": 0.4}]
        })),
    )]);
    let dir = tempfile::tempdir().unwrap();
    let main = director_core::config::ProxyConfig {
        clusters: statics,
        routes: Vec::new(),
    };
    let store = Store::new(
        main,
        BTreeMap::new(),
        Some(dir.path().to_owned()),
        Arc::new(CacheTables),
    )
    .unwrap();
    for (name, config) in dynamics {
        store.create(&name, config).unwrap();
    }
    let store = Arc::new(store);
    Fixture {
        api: Api::new(store.clone(), extras).prefix("/api/"),
        store,
        dir,
    }
}

/// HTTP backends; a `[cache]` table is accepted with no front built (the binary builds the real
/// cache; here only the document matters).
#[derive(Debug)]
struct CacheTables;

#[derive(Debug)]
struct NoCacheFront;

impl director_core::registry::FrontFactory for NoCacheFront {
    fn front(
        &self,
        _: &Arc<director_core::cluster::Cluster>,
        _: &ClusterConfig,
    ) -> Result<Option<director_core::registry::ClusterFront>, String> {
        Ok(None)
    }
}

impl director_core::store::Stage for NoCacheFront {
    fn fronts(&self) -> &dyn director_core::registry::FrontFactory {
        self
    }
    fn commit(self: Box<Self>) {}
}

impl director_core::store::Assembly for CacheTables {
    fn transports(&self) -> &dyn director_core::registry::TransportFactory {
        &director_core::registry::HttpOnly
    }
    fn stage(&self) -> Box<dyn director_core::store::Stage + '_> {
        Box::new(NoCacheFront)
    }
}

fn fixture() -> Fixture {
    fixture_with(Arc::new(NoExtras))
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    raw: Bytes,
    json: Value,
}

impl Fixture {
    async fn send(
        &self,
        method: &str,
        uri: &str,
        ct: Option<&str>,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .api
            .clone()
            .oneshot(
                req.body(director_core::body::full(body.to_owned()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let raw = resp.into_body().collect().await.unwrap().to_bytes();
        let json = if raw.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&raw).unwrap()
        };
        Answer {
            status,
            headers,
            raw,
            json,
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send("GET", uri, None, "", &[]).await
    }

    async fn form(&self, method: &str, uri: &str, body: &str) -> Answer {
        self.send(
            method,
            uri,
            Some("application/x-www-form-urlencoded"),
            body,
            &[],
        )
        .await
    }

    fn config(&self, name: &str) -> Option<ClusterConfig> {
        self.store.get(name).map(|e| e.config)
    }

    /// The bytes of a dynamic cluster's file (to prove refusals leave it alone).
    fn file(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(director_core::store::cluster_file(self.dir.path(), name)).ok()
    }
}

// --- index, status, conventions ---

#[tokio::test]
async fn index_is_an_object_keyed_by_cluster() {
    let f = fixture();
    let a = f.get("/api").await;
    assert_eq!(a.status, 200);
    let names: Vec<_> = a.json.as_object().unwrap().keys().cloned().collect();
    assert_eq!(names, ["app", "static"]);
    assert_eq!(a.json["app"]["mutable"], true);
    assert_eq!(a.json["static"]["mutable"], false);
    assert_eq!(f.get("/api/").await.status, 200);
    let a = f.form("POST", "/api/", "").await;
    assert_eq!(a.status, 405);
    assert_eq!(a.headers["allow"], "GET, HEAD");
    assert_eq!(a.json["detail"]["allow"], "GET, HEAD");
}

#[tokio::test]
async fn json_responses_carry_the_spec_headers() {
    let f = fixture();
    let a = f.get("/api/app").await;
    assert_eq!(a.headers["content-type"], "application/json");
    assert_eq!(a.headers["cache-control"], "no-cache");
    assert_eq!(
        a.headers["content-length"],
        a.raw.len().to_string().as_str()
    );
    assert!(a.raw.ends_with(b"\n"));
    assert!(a.headers.get("access-control-allow-origin").is_none());
    let err = f.get("/api/nope").await;
    assert_eq!(err.status, 404);
    assert_eq!(err.headers["content-type"], "application/json");
    assert!(err.json["error"].as_str().unwrap().contains("nope"));
    assert!(err.json.get("detail").is_some());
}

#[tokio::test]
async fn head_answers_headers_only() {
    let f = fixture();
    let get = f.get("/api/app").await;
    let head = f.send("HEAD", "/api/app", None, "", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.raw.is_empty());
    assert_eq!(
        head.headers["content-length"],
        get.headers["content-length"]
    );
}

#[tokio::test]
async fn paths_outside_the_api_or_too_deep_are_404() {
    let f = fixture();
    assert_eq!(f.get("/other").await.status, 404);
    assert_eq!(f.get("/apiary").await.status, 404);
    assert_eq!(f.get("/api/app/backends/a1/extra").await.status, 404);
    assert_eq!(f.get("/api/app/widgets").await.status, 404);
    // Doubled and trailing slashes do not matter (x0).
    assert_eq!(f.get("/api//app/backends//a1/").await.status, 200);
}

#[tokio::test]
async fn status_shows_the_last_reload_error() {
    let f = fixture();
    let a = f.get("/api/_status").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json["clusters"], 2);
    assert_eq!(a.json["dynamic"], 1);
    assert_eq!(a.json["static"], 1);
    assert!(a.json["last-reload-error"].is_null());
    assert_eq!(f.form("POST", "/api/_status", "").await.status, 405);
}

// --- the cluster document ---

#[tokio::test]
async fn cluster_document_has_x0_keys_and_shapes() {
    let f = fixture();
    let a = f.get("/api/app").await;
    assert_eq!(a.status, 200);
    let d = &a.json;
    for key in [
        "mutable",
        "enabled",
        "queue-limit",
        "queue-timeout",
        "retry-after",
        "max-retry-count",
        "sticky-offline-mode",
        "enqueue-on-unavailable",
        "connect-timeout",
        "read-timeout",
        "write-timeout",
        "health-check-host-header",
        "health-check-request-path",
        "health-check-fcgi-script-name",
        "scheduler",
        "stats",
        "shaper",
        "members",
    ] {
        assert!(d.get(key).is_some(), "missing {key}");
    }
    assert_eq!(d["queue-limit"], 5);
    assert_eq!(d["queue-timeout"], 60);
    assert_eq!(d["connect-timeout"], 5);
    assert_eq!(d["scheduler"], "rr");
    for counter in ["load", "queued"] {
        assert_eq!(
            d["stats"][counter],
            json!({"current": 0, "max": 0, "total": 0})
        );
    }
    assert_eq!(d["stats"]["dropped"], 0);
    assert_eq!(d["shaper"]["name"], "root");
    assert_eq!(d["shaper"]["token-rate"], 8);
    let vip = &d["shaper"]["children"][0];
    assert_eq!(
        (
            vip["name"].as_str(),
            vip["rate"].as_f64(),
            vip["ceil"].as_f64()
        ),
        (Some("vip"), Some(0.2), Some(0.4))
    );
    assert_eq!(vip["token-rate"], 1);
    assert_eq!(vip["token-ceil"], 3);
    let m = &d["members"][0];
    assert_eq!(m["name"], "a1");
    assert_eq!(m["hostname"], "127.0.0.1");
    assert_eq!(m["port"], 10);
    assert_eq!(m["protocol"], "http");
    assert_eq!(m["role"], "active");
    assert_eq!(m["capacity"], 4);
    assert_eq!(
        m["stats"]["load"],
        json!({"current": 0, "max": 0, "total": 0})
    );
    assert!(m["health"]["state"].is_string());
    assert_eq!(d["dynamic"], true);
    assert_eq!(
        d["etag"].as_str().unwrap(),
        a.headers["etag"].to_str().unwrap()
    );
}

// --- cluster routes ---

#[tokio::test]
async fn put_creates_a_cluster_201_with_location() {
    let f = fixture();
    let a = f
        .form("PUT", "/api/web", "queue-limit=7&scheduler=chance")
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json);
    assert_eq!(a.headers["location"], "/api/web");
    assert!(a.headers.contains_key("etag"));
    assert_eq!(a.json["queue-limit"], 7);
    assert_eq!(a.json["scheduler"], "chance");
    assert_eq!(a.json["mutable"], true);
    assert_eq!(f.config("web").unwrap().queue_limit, 7);
    // Quirk 21 fixed: a second PUT does not load anything twice, it is a conflict.
    let again = f.form("PUT", "/api/web", "").await;
    assert_eq!(again.status, 409);
    assert_eq!(f.form("PUT", "/api/static", "").await.status, 409);
}

#[tokio::test]
async fn put_with_bad_names_or_values_creates_nothing() {
    let f = fixture();
    assert_eq!(f.form("PUT", "/api/_private", "").await.status, 400);
    assert_eq!(
        f.form("PUT", "/api/b%20d", "").await.json["detail"]["field"],
        "name"
    );
    let a = f.form("PUT", "/api/web", "queue-limit=-3").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json["detail"]["field"], "queue-limit");
    assert!(f.config("web").is_none());
}

#[tokio::test]
async fn names_that_are_not_safe_file_names_get_400_naming_the_field() {
    let f = fixture();
    let long = "n".repeat(300);
    for bad in [".", "..", ".hidden", "-x", long.as_str()] {
        let a = f.form("PUT", &format!("/api/{bad}"), "").await;
        assert_eq!(a.status, 400, "cluster {bad:?}: {:?}", a.json);
        assert_eq!(a.json["detail"]["field"], "name");
        assert!(f.config(bad).is_none());
        for member in ["backends", "buckets"] {
            let a = f
                .form(
                    "PUT",
                    &format!("/api/app/{member}/{bad}"),
                    "url=http://127.0.0.1:9",
                )
                .await;
            assert_eq!(a.status, 400, "{member} {bad:?}: {:?}", a.json);
            assert_eq!(a.json["detail"]["field"], "name");
        }
    }
    let a = f.form("PUT", &format!("/api/{long}"), "").await;
    assert!(
        a.json["error"]
            .as_str()
            .unwrap()
            .contains("at most 128 bytes")
    );
    // No file was written for any of them.
    let files: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        files.iter().all(|n| n.to_str().unwrap() == "app.toml"),
        "{files:?}"
    );
}

#[tokio::test]
async fn post_updates_202_from_form_json_and_query() {
    let f = fixture();
    let a = f
        .form(
            "POST",
            "/api/app",
            "queue-limit=9&queue-timeout=250ms&retry-after=3",
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.json);
    assert_eq!(a.json["queue-limit"], 9);
    assert_eq!(a.json["queue-timeout"], 0.25);
    assert!(a.headers.contains_key("etag"));
    // No Content-Type at all: a form, as x0.
    assert_eq!(
        f.send("POST", "/api/app", None, "max-retry-count=1", &[])
            .await
            .status,
        202
    );
    assert_eq!(f.config("app").unwrap().max_retry_count, 1);
    let a = f
        .send(
            "POST",
            "/api/app",
            Some("application/json"),
            r#"{"connect-timeout": 1.5, "health": {"interval": "500ms", "rise": 3}}"#,
            &[],
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.json);
    assert_eq!(a.json["connect-timeout"], 1.5);
    assert_eq!(a.json["members"][0]["health"]["interval"], 500);
    // The query string wins over the body on a duplicate (the rewrite's rule).
    let a = f
        .form("POST", "/api/app?queue-limit=11", "queue-limit=10")
        .await;
    assert_eq!(a.json["queue-limit"], 11);
}

#[tokio::test]
async fn post_refuses_bad_input_and_changes_nothing() {
    let f = fixture();
    let before = f.config("app").unwrap();
    for (ct, body, field) in [
        (
            Some("application/x-www-form-urlencoded"),
            "queue-limt=3",
            Some("queue-limt"),
        ),
        (None, "queue-limit=lots", Some("queue-limit")),
        (None, "enabled=maybe", Some("enabled")),
        (
            Some("application/json"),
            r#"{"queue-limit": "3"}"#,
            Some("queue-limit"),
        ),
        (Some("application/json"), r#"{"queue-limit": 3"#, None),
        (Some("application/json"), "[]", None),
        (
            Some("application/json"),
            r#"{"hash-key": "sha:nope"}"#,
            Some("hash-key"),
        ),
        (None, "queue-timeout=0", Some("queue-timeout")),
    ] {
        let a = f.send("POST", "/api/app", ct, body, &[]).await;
        assert_eq!(a.status, 400, "{body}: {:?}", a.json);
        if let Some(field) = field {
            assert_eq!(a.json["detail"]["field"], field, "{body}: {:?}", a.json);
        }
    }
    assert_eq!(f.config("app").unwrap(), before);
    assert_eq!(
        f.send("POST", "/api/app", Some("text/plain"), "queue-limit=1", &[])
            .await
            .status,
        415
    );
    assert_eq!(f.config("app").unwrap(), before);
}

#[tokio::test]
async fn huge_bodies_are_413() {
    let f = fixture();
    let body = format!("queue-limit=1&x={}", "a".repeat(70 * 1024));
    let a = f.form("POST", "/api/app", &body).await;
    assert_eq!(a.status, 413);
    assert_eq!(a.json["detail"]["limit"], DEFAULT_BODY_LIMIT);
    assert_eq!(f.config("app").unwrap().queue_limit, 5);
}

#[tokio::test]
async fn if_match_guards_concurrent_changes() {
    let f = fixture();
    let etag = f.get("/api/app").await.headers["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let stale = f
        .send(
            "POST",
            "/api/app",
            None,
            "queue-limit=1",
            &[("if-match", "\"v0-stale\"")],
        )
        .await;
    assert_eq!(stale.status, 409);
    assert_eq!(f.config("app").unwrap().queue_limit, 5);
    let fresh = f
        .send(
            "POST",
            "/api/app",
            None,
            "queue-limit=2",
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(fresh.status, 202);
    assert_ne!(fresh.headers["etag"].to_str().unwrap(), etag);
    // The old tag is stale now.
    assert_eq!(
        f.send(
            "POST",
            "/api/app",
            None,
            "queue-limit=3",
            &[("if-match", &etag)]
        )
        .await
        .status,
        409
    );
    assert_eq!(
        f.send(
            "POST",
            "/api/app",
            None,
            "queue-limit=4",
            &[("if-match", "*")]
        )
        .await
        .status,
        202
    );
    let now = f.get("/api/app").await.headers["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let list = format!("\"nope\", {now}");
    assert_eq!(
        f.send("DELETE", "/api/app", None, "", &[("if-match", &list)])
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn static_clusters_only_enable_and_disable() {
    let f = fixture();
    // A bad value is 400 before the 403 (x0's order).
    assert_eq!(
        f.form("POST", "/api/static", "queue-limit=x").await.status,
        400
    );
    let a = f.form("POST", "/api/static", "queue-limit=3").await;
    assert_eq!(a.status, 403);
    let a = f.form("POST", "/api/static", "enabled=false").await;
    assert_eq!(a.status, 202);
    assert_eq!(a.json["enabled"], false);
    assert_eq!(
        f.send("UNLOCK", "/api/static", None, "", &[]).await.status,
        204
    );
    assert_eq!(f.get("/api/static").await.json["enabled"], true);
    assert_eq!(
        f.send("DELETE", "/api/static", None, "", &[]).await.status,
        403
    );
    assert_eq!(
        f.form(
            "PUT",
            "/api/static/backends",
            "name=x&url=http://127.0.0.1:1"
        )
        .await
        .status,
        403
    );
    assert_eq!(
        f.form("POST", "/api/static/backends/s1", "capacity=1")
            .await
            .status,
        403
    );
    assert_eq!(
        f.form("POST", "/api/static/backends/s1", "enabled=false")
            .await
            .status,
        202
    );
    assert_eq!(
        f.send("DELETE", "/api/static/backends/s1", None, "", &[])
            .await
            .status,
        403
    );
    assert_eq!(
        f.form("PUT", "/api/static/buckets/b", "rate=0.1")
            .await
            .status,
        403
    );
    assert!(f.get("/api/static/backends/s1").await.json["enabled"] == false);
}

#[tokio::test]
async fn lock_and_unlock_a_cluster_204() {
    let f = fixture();
    let a = f.send("LOCK", "/api/app", None, "", &[]).await;
    assert_eq!(a.status, 204);
    assert!(a.raw.is_empty());
    assert_eq!(f.get("/api/app").await.json["enabled"], false);
    assert!(
        !f.config("app").unwrap().enabled,
        "persisted for dynamic clusters"
    );
    assert_eq!(
        f.send("UNLOCK", "/api/app", None, "", &[]).await.status,
        204
    );
    assert_eq!(f.get("/api/app").await.json["enabled"], true);
    assert_eq!(
        f.send("LOCK", "/api/ghost", None, "", &[]).await.status,
        404
    );
}

#[tokio::test]
async fn delete_a_cluster_204_then_404() {
    let f = fixture();
    assert_eq!(
        f.send("DELETE", "/api/app", None, "", &[]).await.status,
        204
    );
    assert_eq!(f.get("/api/app").await.status, 404);
    assert_eq!(
        f.send("DELETE", "/api/app", None, "", &[]).await.status,
        404
    );
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let f = fixture();
    for (uri, allow) in [
        ("/api/app", ALLOW_CLUSTER),
        ("/api/app/backends", ALLOW_COLLECTION),
        ("/api/app/backends/a1", ALLOW_BACKEND),
        ("/api/app/buckets", ALLOW_COLLECTION),
        ("/api/app/buckets/vip", ALLOW_BUCKET),
        ("/api/app/cache/purge", ALLOW_CACHE),
    ] {
        let a = f.send("PATCH", uri, None, "", &[]).await;
        assert_eq!(a.status, 405, "{uri}");
        assert_eq!(a.headers["allow"], allow, "{uri}");
    }
}

// --- backends ---

#[tokio::test]
async fn backends_are_created_with_x0_parameters() {
    let f = fixture();
    let a = f
        .form("PUT", "/api/app/backends",
              "name=a2&role=backup&capacity=3&enabled=true&protocol=http&hostname=127.0.0.1&port=12&health-check-interval=2&health-check-mode=paranoid")
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json);
    assert_eq!(a.headers["location"], "/api/app/backends/a2");
    assert_eq!(a.json["role"], "backup");
    assert_eq!(a.json["capacity"], 3);
    assert_eq!(a.json["port"], 12);
    // x0's per-backend probe settings are the backend's own; the cluster has no [health].
    assert_eq!(a.json["health"]["mode"], "paranoid");
    assert_eq!(a.json["health"]["interval"], 2000);
    // The path's name wins over the body's.
    let a = f
        .form(
            "PUT",
            "/api/app/backends/a3?capacity=1",
            "name=ignored&url=http://127.0.0.1:13",
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json);
    assert_eq!(a.json["name"], "a3");
    let names: Vec<_> = f
        .config("app")
        .unwrap()
        .backends
        .iter()
        .map(|b| b.name.clone())
        .collect();
    assert_eq!(names, ["a1", "guarded", "a2", "a3"]);
    let members = f.get("/api/app").await.json["members"].clone();
    let order: Vec<_> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        order,
        ["a1", "guarded", "a3", "a2"],
        "x0 order: active, then backup"
    );
    assert_eq!(
        f.get("/api/app/backends")
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn bad_backends_are_4xx_and_change_nothing() {
    let f = fixture();
    let before = f.config("app").unwrap();
    for (body, status, field) in [
        ("name=a1&url=http://127.0.0.1:1", 409, None),
        ("url=http://127.0.0.1:1", 400, Some("name")),
        (
            "name=x&hostname=127.0.0.1&port=1&capacity=-1",
            400,
            Some("capacity"),
        ),
        ("name=x&hostname=127.0.0.1", 400, Some("port")),
        (
            "name=x&url=http://127.0.0.1:1&wieght=2",
            400,
            Some("wieght"),
        ),
        (
            "name=x&protocol=fastcgi&path=/run/php.sock",
            400,
            Some("url"),
        ),
    ] {
        let a = f.form("PUT", "/api/app/backends", body).await;
        assert_eq!(a.status, status, "{body}: {:?}", a.json);
        if let Some(field) = field {
            assert_eq!(a.json["detail"]["field"], field, "{body}: {:?}", a.json);
        }
    }
    assert_eq!(f.config("app").unwrap(), before);
    assert_eq!(
        f.form(
            "PUT",
            "/api/ghost/backends",
            "name=x&url=http://127.0.0.1:1"
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn backends_are_shown_updated_locked_and_deleted() {
    let f = fixture();
    let a = f.get("/api/app/backends/a1").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json["capacity"], 4);
    assert_eq!(f.get("/api/app/backends/zz").await.status, 404);

    let a = f
        .form(
            "POST",
            "/api/app/backends/a1",
            "capacity=6&weight=2&role=backup",
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.json);
    assert_eq!(
        (
            a.json["capacity"].as_u64(),
            a.json["weight"].as_u64(),
            a.json["role"].as_str()
        ),
        (Some(6), Some(2), Some("backup"))
    );
    let a = f.form("POST", "/api/app/backends/a1", "port=99").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json["detail"]["field"], "port");
    assert_eq!(
        f.form("POST", "/api/app/backends/zz", "capacity=1")
            .await
            .status,
        404
    );

    assert_eq!(
        f.send("LOCK", "/api/app/backends/a1", None, "", &[])
            .await
            .status,
        204
    );
    assert_eq!(f.get("/api/app/backends/a1").await.json["enabled"], false);
    assert!(
        !f.config("app").unwrap().backends[0].enabled,
        "quirk 20 fixed: persisted"
    );
    assert_eq!(
        f.send("UNLOCK", "/api/app/backends/a1", None, "", &[])
            .await
            .status,
        204
    );
    assert_eq!(f.get("/api/app/backends/a1").await.json["enabled"], true);
    assert_eq!(
        f.send("UNLOCK", "/api/app/backends/zz", None, "", &[])
            .await
            .status,
        404
    );

    let a = f
        .send("DELETE", "/api/app/backends/guarded", None, "", &[])
        .await;
    assert_eq!(a.status, 403);
    assert_eq!(f.config("app").unwrap().backends.len(), 2);
    let a = f
        .send("DELETE", "/api/app/backends/a1", None, "", &[])
        .await;
    assert_eq!(a.status, 202);
    assert!(
        f.config("app")
            .unwrap()
            .backends
            .iter()
            .all(|b| b.name != "a1")
    );
    assert_eq!(
        f.send("DELETE", "/api/app/backends/zz", None, "", &[])
            .await
            .status,
        404
    );
}

// --- buckets ---

#[tokio::test]
async fn buckets_are_created_shown_updated_and_deleted() {
    let f = fixture();
    let a = f
        .form("PUT", "/api/app/buckets", "name=bulk&rate=0.5&ceil=1")
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json);
    assert_eq!(a.headers["location"], "/api/app/buckets/bulk");
    assert_eq!(a.json["token-rate"], 4);
    let a = f
        .send(
            "PUT",
            "/api/app/buckets/sub",
            Some("application/json"),
            r#"{"rate": 0.5, "parent": "bulk"}"#,
            &[],
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json);
    assert_eq!(
        f.get("/api/app/buckets").await.json["children"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(f.get("/api/app/buckets/sub").await.json["rate"], 0.5);
    assert_eq!(
        f.form("PUT", "/api/app/buckets/vip", "rate=0.1")
            .await
            .status,
        409
    );
    assert_eq!(
        f.form("PUT", "/api/app/buckets/root", "rate=0.1")
            .await
            .status,
        409
    );

    let a = f
        .form("POST", "/api/app/buckets/vip", "rate=0.1&ceil=0.3")
        .await;
    assert_eq!(a.status, 202, "{:?}", a.json);
    assert_eq!(a.json["ceil"], 0.3);
    assert_eq!(
        f.form("POST", "/api/app/buckets/root", "rate=0.1")
            .await
            .status,
        403
    );
    assert_eq!(
        f.form("POST", "/api/app/buckets/zz", "rate=0.1")
            .await
            .status,
        404
    );
    assert_eq!(f.get("/api/app/buckets/zz").await.status, 404);

    assert_eq!(
        f.send("DELETE", "/api/app/buckets/bulk", None, "", &[])
            .await
            .status,
        409,
        "has a child"
    );
    assert_eq!(
        f.send("DELETE", "/api/app/buckets/sub", None, "", &[])
            .await
            .status,
        204
    );
    assert_eq!(
        f.send("DELETE", "/api/app/buckets/bulk", None, "", &[])
            .await
            .status,
        204
    );
    assert_eq!(
        f.send("DELETE", "/api/app/buckets/root", None, "", &[])
            .await
            .status,
        403
    );
    assert_eq!(
        f.send("DELETE", "/api/app/buckets/bulk", None, "", &[])
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn buckets_that_cannot_fit_are_400_and_change_nothing() {
    let f = fixture();
    let before = f.config("app").unwrap();
    for (body, field) in [
        ("name=big&rate=0.9", "rate"),
        ("name=odd&rate=0.1&ceil=1.5", "ceil"),
        ("name=low&rate=0.3&ceil=0.1", "ceil"),
        ("name=neg&rate=-0.1", "rate"),
        ("name=orphan&rate=0.1&parent=nobody", "parent"),
    ] {
        let a = f.form("PUT", "/api/app/buckets", body).await;
        assert_eq!(a.status, 400, "{body}: {:?}", a.json);
        assert_eq!(a.json["detail"]["field"], field, "{body}: {:?}", a.json);
    }
    assert_eq!(
        f.form("POST", "/api/app/buckets/vip", "rate=0.9&ceil=0.5")
            .await
            .status,
        400
    );
    assert_eq!(f.config("app").unwrap(), before);
}

// --- cache extras ---

#[derive(Debug, Default)]
struct FakeCache {
    calls: Mutex<Vec<String>>,
}

impl Extras for FakeCache {
    fn cache_stats(&self, cluster: &str) -> Option<Value> {
        (cluster == "app").then(|| json!({"hits": 1, "misses": 2}))
    }
    fn purge(&self, cluster: &str, url: &str) -> Option<usize> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("purge {cluster} {url}"));
        (cluster == "app").then_some(1)
    }
    fn ban_prefix(&self, cluster: &str, prefix: &str) -> Option<usize> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("ban {cluster} {prefix}"));
        (cluster == "app").then_some(3)
    }
}

#[tokio::test]
async fn cache_purge_and_ban_go_to_the_extras() {
    let cache = Arc::new(FakeCache::default());
    let f = fixture_with(cache.clone());
    let a = f
        .form("POST", "/api/app/cache/purge", "url=http://example.com/a")
        .await;
    assert_eq!(
        (a.status, a.json.clone()),
        (StatusCode::OK, json!({"purged": 1}))
    );
    let a = f
        .send(
            "POST",
            "/api/app/cache/ban",
            Some("application/json"),
            r#"{"prefix": "/img/"}"#,
            &[],
        )
        .await;
    assert_eq!(
        (a.status, a.json.clone()),
        (StatusCode::OK, json!({"banned": 3}))
    );
    assert_eq!(
        *cache.calls.lock().unwrap(),
        ["purge app http://example.com/a", "ban app /img/"]
    );
    assert_eq!(
        f.form("POST", "/api/static/cache/purge", "url=/x")
            .await
            .status,
        404,
        "no cache"
    );
    assert_eq!(
        f.form("POST", "/api/ghost/cache/purge", "url=/x")
            .await
            .status,
        404
    );
    assert_eq!(
        f.form("POST", "/api/app/cache/purge", "").await.json["detail"]["field"],
        "url"
    );
    assert_eq!(
        f.form("POST", "/api/app/cache/ban", "url=/x").await.json["detail"]["field"],
        "url"
    );
    assert_eq!(
        fixture()
            .form("POST", "/api/app/cache/purge", "url=/x")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn the_cache_document_shows_extras_stats() {
    let f = fixture_with(Arc::new(FakeCache::default()));
    // No cache table: no "cache" key.
    assert!(f.get("/api/static").await.json.get("cache").is_none());
    let a = f
        .form(
            "POST",
            "/api/app",
            "cache-enabled=true&cache-default-ttl=30",
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.json);
    let cache = &a.json["cache"];
    assert_eq!(cache["enabled"], true);
    assert_eq!(cache["default-ttl"], 30);
    assert_eq!(cache["deliver-active"], true);
    assert_eq!(cache["stats"], json!({"hits": 1, "misses": 2}));
}

// --- persistence ---

#[tokio::test]
async fn refusals_leave_the_cluster_file_byte_for_byte() {
    let f = fixture();
    let before = f.file("app").expect("the store wrote app's file");
    let huge = format!("x={}", "a".repeat(DEFAULT_BODY_LIMIT + 1));
    for (method, uri, ct, body) in [
        ("POST", "/api/app", None, "queue-limit=-1"),
        ("POST", "/api/app", None, "nonsense=1"),
        (
            "POST",
            "/api/app",
            Some("application/json"),
            "{\"queue-limit\": true}",
        ),
        ("POST", "/api/app", Some("application/json"), "{oops"),
        ("POST", "/api/app", None, huge.as_str()),
        (
            "PUT",
            "/api/app/backends/x",
            None,
            "hostname=127.0.0.1&port=1&capacity=-2",
        ),
        ("PUT", "/api/app/buckets/fat", None, "rate=0.9"),
        ("POST", "/api/app/buckets/vip", None, "ceil=2"),
        ("DELETE", "/api/app/backends/guarded", None, ""),
    ] {
        let a = f.send(method, uri, ct, body, &[]).await;
        assert!(a.status.is_client_error(), "{method} {uri}: {}", a.status);
        assert_eq!(
            f.file("app").unwrap(),
            before,
            "{method} {uri} changed the file"
        );
    }
    // And an accepted change does write it.
    assert_eq!(
        f.form("POST", "/api/app", "queue-limit=6").await.status,
        202
    );
    assert_ne!(f.file("app").unwrap(), before);
}

#[tokio::test]
async fn a_failed_write_is_500_and_changes_nothing() {
    let f = fixture();
    // Root ignores permissions, so make writing impossible for anyone: the cluster directory's
    // path becomes a plain file (the old directory is kept aside to compare).
    let aside = f.dir.path().with_extension("aside");
    std::fs::rename(f.dir.path(), &aside).unwrap();
    std::fs::write(f.dir.path(), b"not a directory").unwrap();
    let before = f.get("/api/app").await.json;

    let a = f.form("POST", "/api/app", "queue-limit=99").await;
    assert_eq!(a.status, 500, "{:?}", a.json);
    assert!(a.json["detail"]["io"].is_string());
    assert_eq!(f.config("app").unwrap().queue_limit, 5);
    assert_eq!(
        f.get("/api/app").await.json["queue-limit"],
        before["queue-limit"]
    );
    assert_eq!(f.form("PUT", "/api/web", "").await.status, 500);
    assert_eq!(f.get("/api/web").await.status, 404);

    std::fs::remove_file(f.dir.path()).unwrap();
    std::fs::rename(&aside, f.dir.path()).unwrap();
    let file =
        std::fs::read_to_string(director_core::store::cluster_file(f.dir.path(), "app")).unwrap();
    assert!(file.contains("queue-limit = 5"), "{file}");
}

// --- x0's documented shapes (docs/director.md): /:director/:backend, PUT /:director ---

#[tokio::test]
async fn x0_documented_backend_shapes_use_the_same_handlers() {
    let f = fixture();
    // Create with the name in the path; shown, updated, locked, deleted at /:cluster/:backend.
    let a = f
        .form(
            "PUT",
            "/api/app/backend01",
            "role=active&enabled=false&capacity=2&health-check-mode=paranoid\
             &health-check-interval=2&protocol=http&hostname=127.0.0.1&port=3101",
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json);
    assert_eq!(a.headers["location"], "/api/app/backends/backend01");
    assert_eq!(a.json["enabled"], false);
    assert_eq!(f.get("/api/app/backend01").await.json["capacity"], 2);
    let a = f
        .form("POST", "/api/app/backend01", "capacity=3&weight=0.5")
        .await;
    assert_eq!(a.status, 202, "{:?}", a.json);
    assert_eq!(a.json["weight"], 0.5);
    let b = f.config("app").unwrap();
    let b = b.backends.iter().find(|b| b.name == "backend01").unwrap();
    assert_eq!((b.capacity, b.weight.get()), (3, 0.5));
    // The same validation: an address change, an unknown parameter, a bad weight.
    for body in ["port=99", "frobnicate=1", "weight=-1"] {
        assert_eq!(
            f.form("POST", "/api/app/backend01", body).await.status,
            400,
            "{body}"
        );
    }
    assert_eq!(
        f.send("LOCK", "/api/app/backend01", None, "", &[])
            .await
            .status,
        204
    );
    // The same refusals: terminate protection, unknown names, an existing name.
    assert_eq!(f.form("DELETE", "/api/app/guarded", "").await.status, 403);
    assert_eq!(f.form("DELETE", "/api/app/zz", "").await.status, 404);
    assert_eq!(
        f.form("POST", "/api/ghost/a1", "capacity=1").await.status,
        404
    );
    assert_eq!(
        f.form("PUT", "/api/app/a1", "url=http://127.0.0.1:1")
            .await
            .status,
        409
    );
    assert_eq!(f.form("DELETE", "/api/app/backend01", "").await.status, 202);
    assert!(
        f.config("app")
            .unwrap()
            .backends
            .iter()
            .all(|b| b.name != "backend01")
    );
    // Static clusters: as at /:cluster/backends/:backend.
    assert_eq!(
        f.form("POST", "/api/static/s1", "capacity=9").await.status,
        403
    );
    assert_eq!(
        f.form("POST", "/api/static/s1", "enabled=false")
            .await
            .status,
        202
    );
    let a = f.send("PATCH", "/api/app/a1", None, "", &[]).await;
    assert_eq!(a.status, 405);
    assert_eq!(a.headers["allow"], ALLOW_BACKEND);
}

#[tokio::test]
async fn collection_names_win_over_backend_names() {
    let f = fixture();
    // A backend called `backends` is made and reached with the long shape only.
    let a = f
        .form(
            "PUT",
            "/api/app/backends/backends",
            "url=http://127.0.0.1:5",
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json);
    assert!(f.get("/api/app/backends").await.json.is_array());
    assert_eq!(f.get("/api/app/buckets").await.json["name"], "root");
    assert_eq!(
        f.get("/api/app/backends/backends").await.json["name"],
        "backends"
    );
    // Other two-segment paths are backends; `cache` too (its routes have three segments).
    assert_eq!(f.get("/api/app/cache").await.status, 404);
}

#[tokio::test]
async fn put_cluster_with_backend_parameters() {
    let f = fixture();
    // x0's "Creating a new Backend": PUT /:director with the name in the body.
    let a = f
        .form(
            "PUT",
            "/api/app",
            "name=backend02&protocol=http&hostname=127.0.0.1&port=3102&capacity=2",
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json);
    assert_eq!(a.headers["location"], "/api/app/backends/backend02");
    assert_eq!(a.json["capacity"], 2);
    // The same validation as PUT /:cluster/backends.
    let a = f.form("PUT", "/api/app", "hostname=127.0.0.1&port=1").await;
    assert_eq!(
        (a.status, a.json["detail"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("name"))
    );
    let a = f.form("PUT", "/api/app", "name=x&hostname=127.0.0.1").await;
    assert_eq!(a.json["detail"]["field"], "port");
    assert_eq!(
        f.form("PUT", "/api/app", "name=backend02&url=http://127.0.0.1:2")
            .await
            .status,
        409
    );
    assert_eq!(
        f.form("PUT", "/api/static", "name=n&url=http://127.0.0.1:2")
            .await
            .status,
        403
    );

    // x0's on-demand cluster: a missing cluster is created with its first backend, named after
    // the cluster unless `name` says otherwise; cluster parameters go to the cluster.
    let a = f
        .form(
            "PUT",
            "/api/od",
            "hostname=127.0.0.1&port=3103&queue-limit=9&weight=2.5&enabled=false",
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json);
    assert_eq!(a.headers["location"], "/api/od");
    let od = f.config("od").unwrap();
    assert_eq!(od.queue_limit, 9);
    assert!(od.enabled, "enabled= went to the backend");
    assert_eq!(
        (
            od.backends[0].name.as_str(),
            od.backends[0].weight.get(),
            od.backends[0].enabled
        ),
        ("od", 2.5, false)
    );
    assert!(f.file("od").is_some(), "persisted");
    // Bad parameters of either kind create nothing.
    for body in [
        "hostname=127.0.0.1&port=1&queue-limit=-1",
        "hostname=127.0.0.1&port=1&weight=x",
        "hostname=127.0.0.1",
        "hostname=127.0.0.1&port=1&name=b%20d",
    ] {
        assert_eq!(f.form("PUT", "/api/od2", body).await.status, 400, "{body}");
        assert!(f.config("od2").is_none(), "{body}");
    }
    assert_eq!(
        f.form("PUT", "/api/_od", "hostname=127.0.0.1&port=1")
            .await
            .status,
        400
    );
    // A precondition on a cluster that does not exist fails.
    let a = f
        .send(
            "PUT",
            "/api/od3",
            Some("application/x-www-form-urlencoded"),
            "hostname=127.0.0.1&port=1",
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(a.status, 409);
    assert!(f.config("od3").is_none());
}
