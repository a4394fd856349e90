//! x0's documented API shapes through the binary (x0's `docs/director.md`): `PUT /:director`
//! with a backend's parameters, `GET/POST/PUT/DELETE /:director/:backend`, and the on-demand
//! cluster (`PUT /:name?hostname=&port=`); each goes through the same handlers, validation and
//! persistence as `/:cluster/backends/:backend`, and survives a restart.

mod support;

use std::path::Path;

use bytes::Bytes;
use director_core::testing::TestBackend;
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use support::{Director, Reply, send};

fn config(cluster_dir: &Path) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin-listen = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\
         cluster-dir = {dir:?}\n",
        dir = cluster_dir.display().to_string(),
    )
}

async fn call(d: &Director, method: &str, path: &str, body: &str) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(format!("{}/api{path}", d.admin()))
        .header("content-type", "application/x-www-form-urlencoded");
    send(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await
}

fn json(r: &Reply) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

fn member(cluster: &Value, name: &str) -> Option<Value> {
    cluster["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .cloned()
}

async fn via_host(d: &Director, host: &str) -> Reply {
    send(
        Request::get(d.url("/"))
            .header("host", host)
            .body(Full::default())
            .unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x0_documented_shapes_create_update_delete_and_persist() {
    let backend = TestBackend::tcp("web", "127.0.0.1:0").await.unwrap();
    let port = backend.url().rsplit(':').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let d = Director::start(&cfg);

    // On-demand cluster: PUT /:name with a backend's address creates both.
    let a = call(
        &d,
        "PUT",
        "/od",
        &format!("hostname=127.0.0.1&port={port}&capacity=4&queue-limit=9"),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(a.header("location"), Some("/api/od"));
    assert_eq!(json(&a)["queue-limit"], 9);
    assert_eq!(member(&json(&a), "od").unwrap()["capacity"], 4);
    let served = via_host(&d, "od").await;
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(backend.requests(), 1);

    // x0's "Creating a new Backend": PUT /:director, the name in the body.
    let a = call(
        &d,
        "PUT",
        "/od",
        "role=active&enabled=true&capacity=2&health-check-mode=paranoid&health-check-interval=2\
         &protocol=http&hostname=127.0.0.1&port=9&name=b2",
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(a.header("location"), Some("/api/od/backends/b2"));
    // ... and with the name in the path.
    let a = call(&d, "PUT", "/od/b3", "url=http://127.0.0.1:9").await;
    assert_eq!(a.status, 201, "{}", a.text());

    // "Retrieving Backend State" and "Updating an existing Backend".
    let a = call(&d, "GET", "/od/b2", "").await;
    assert_eq!(
        (a.status.as_u16(), json(&a)["capacity"].clone()),
        (200, 2.into())
    );
    let a = call(
        &d,
        "POST",
        "/od/b2",
        "role=backup&enabled=false&capacity=3&weight=0.5",
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.text());
    assert_eq!(json(&a)["weight"], 0.5);
    // The same validation as the long shape: nothing changes on a refusal.
    let file = dir.path().join("od.toml");
    let before = std::fs::read(&file).unwrap();
    for body in ["port=10", "capacity=-1", "weight=-2", "colour=red"] {
        let a = call(&d, "POST", "/od/b2", body).await;
        assert_eq!(a.status, 400, "{body}: {}", a.text());
    }
    assert_eq!(
        call(&d, "POST", "/od/nobody", "capacity=1").await.status,
        404
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "refusals left the file alone"
    );

    // "Deleting a Backend".
    assert_eq!(call(&d, "DELETE", "/od/b3", "").await.status, 202);
    assert_eq!(call(&d, "GET", "/od/b3", "").await.status, 404);

    // Everything above is in the cluster's file: it survives kill -9.
    let before = json(&call(&d, "GET", "/od", "").await);
    d.signal("KILL");
    drop(d);
    let d = Director::start(&cfg);
    let after = json(&call(&d, "GET", "/od", "").await);
    assert_eq!(after["queue-limit"], 9);
    assert_eq!(
        member(&after, "od").unwrap()["capacity"],
        member(&before, "od").unwrap()["capacity"]
    );
    let b2 = member(&after, "b2").unwrap();
    assert_eq!(
        (&b2["capacity"], &b2["weight"], &b2["enabled"], &b2["role"]),
        (&3.into(), &0.5.into(), &false.into(), &"backup".into())
    );
    assert!(member(&after, "b3").is_none(), "deleted for good");
    assert_eq!(via_host(&d, "od").await.status, 200);

    // After the restart the short shapes still work, and their deletes persist too.
    assert_eq!(call(&d, "DELETE", "/od/b2", "").await.status, 202);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("b2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_names_keep_their_meaning() {
    let dir = tempfile::tempdir().unwrap();
    let d = Director::start(&config(dir.path()));
    assert_eq!(call(&d, "PUT", "/shop", "").await.status, 201);
    // A backend named `backends` exists only under the long shape; /shop/backends stays the
    // collection and /shop/buckets the bucket tree.
    let a = call(
        &d,
        "PUT",
        "/shop/backends/backends",
        "url=http://127.0.0.1:9",
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert!(json(&call(&d, "GET", "/shop/backends", "").await).is_array());
    assert_eq!(
        json(&call(&d, "GET", "/shop/buckets", "").await)["name"],
        "root"
    );
    assert_eq!(
        json(&call(&d, "GET", "/shop/backends/backends", "").await)["name"],
        "backends"
    );
    // Any other second segment is a backend: `cache` too (the cache routes have three).
    let a = call(&d, "PUT", "/shop/cache", "url=http://127.0.0.1:9").await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(
        json(&call(&d, "GET", "/shop/cache", "").await)["name"],
        "cache"
    );
    // A PUT /:cluster without an address is still a cluster create (409: it exists).
    assert_eq!(
        call(&d, "PUT", "/shop", "name=x&queue-limit=2")
            .await
            .status,
        409
    );
}
