use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use director_core::{
    addr::BackendUrl,
    backend::Backend,
    cluster::{Cluster, ClusterSettings},
    shaper::{ROOT, Shaper},
};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use super::*;

fn backend(name: &str, capacity: u32) -> Arc<Backend> {
    let url: BackendUrl = "http://127.0.0.1:9".parse().unwrap();
    let b = Arc::new(Backend::new(name, url, Default::default()));
    b.set_capacity(capacity);
    b
}

/// `n` requests through `b` (taken and given back).
fn serve(b: &Backend, n: usize) {
    for _ in 0..n {
        b.try_acquire(false).unwrap();
        b.release();
    }
}

#[test]
fn rates_are_deltas_over_elapsed_time() {
    let a = backend("a", 4);
    let cluster = Arc::new(Cluster::simple("app", vec![a.clone()]));
    let mut sampler = Sampler::default();
    let t0 = Instant::now();
    let first = sampler.sample([&cluster], t0);
    // No previous totals: no rate yet.
    assert!(first.iter().all(|(_, p)| p.rps.is_nan()));
    serve(&a, 10);
    let second = sampler.sample([&cluster], t0 + Duration::from_secs(2));
    let backend = second
        .iter()
        .find(|(k, _)| k.kind == SeriesKind::Backend)
        .unwrap();
    assert_eq!(&*backend.0.name, "a");
    assert_eq!(backend.1.rps, 5.0, "10 requests in 2 s");
    assert_eq!(backend.1.capacity, 4.0);
    assert_eq!(backend.1.load, 0.0);
    // One request started and still held: counted as started, and in flight.
    a.try_acquire(false).unwrap();
    let third = sampler.sample([&cluster], t0 + Duration::from_secs(3));
    let p = third
        .iter()
        .find(|(k, _)| k.kind == SeriesKind::Backend)
        .unwrap()
        .1;
    assert_eq!((p.rps, p.load), (1.0, 1.0));
    a.release();
}

#[test]
fn a_replaced_backend_with_lower_totals_has_no_rate_instead_of_a_huge_one() {
    let old = backend("a", 0);
    serve(&old, 50);
    let mut sampler = Sampler::default();
    let t0 = Instant::now();
    sampler.sample([&Arc::new(Cluster::simple("app", vec![old]))], t0);
    let fresh = Arc::new(Cluster::simple("app", vec![backend("a", 0)]));
    let points = sampler.sample([&fresh], t0 + Duration::from_secs(1));
    let p = points
        .iter()
        .find(|(k, _)| k.kind == SeriesKind::Backend)
        .unwrap()
        .1;
    assert!(p.rps.is_nan());
    // Capacity 0 is "no limit": no utilisation either.
    assert_eq!(p.capacity, 0.0);
}

#[test]
fn buckets_are_sampled_with_their_ceilings() {
    let a = backend("a", 10);
    let mut shaper = Shaper::new(0);
    let vip = shaper.create("vip", ROOT, 0.2, 0.5).unwrap();
    let cluster = Arc::new(Cluster::new(
        "app",
        vec![a],
        ClusterSettings::default(),
        shaper,
    ));
    assert!(cluster.shaper().try_get(vip));
    let points = Sampler::default().sample([&cluster], Instant::now());
    let kinds: Vec<(SeriesKind, &str)> = points.iter().map(|(k, _)| (k.kind, &*k.name)).collect();
    assert_eq!(
        kinds,
        [
            (SeriesKind::Cluster, "app"),
            (SeriesKind::Bucket, "vip"),
            (SeriesKind::Backend, "a")
        ]
    );
    let bucket = points[1].1;
    assert_eq!(
        (bucket.load, bucket.capacity, bucket.queued),
        (1.0, 5.0, 0.0)
    );
    assert_eq!(points[0].1.capacity, 10.0);
    cluster.shaper().put(vip);
}

#[test]
fn the_ring_keeps_only_the_newest_samples() {
    let history = History::new(3, Duration::from_secs(1));
    for t in 0..5 {
        history.push(t * 1000, Vec::new());
    }
    assert_eq!(history.len(), 3);
    let doc = history.json(None);
    assert_eq!(doc["time"], json!([2000, 3000, 4000]));
    assert_eq!(
        (doc["first"].clone(), doc["last"].clone()),
        (json!(3), json!(5))
    );
    let after = history.json(Some(4));
    assert_eq!(after["time"], json!([4000]));
    assert_eq!(after["first"], json!(5));
    let nothing = history.json(Some(5));
    assert_eq!(nothing["time"], json!([]));
    assert_eq!(nothing["first"], Value::Null);
    assert_eq!(nothing["last"], json!(5));
}

#[test]
fn series_that_come_and_go_are_padded_with_nulls() {
    let a = backend("a", 2);
    let b = backend("b", 2);
    let both = Arc::new(Cluster::simple("app", vec![a.clone(), b]));
    let only_a = Arc::new(Cluster::simple("app", vec![a.clone()]));
    let history = History::new(10, Duration::from_secs(1));
    let mut sampler = Sampler::default();
    let t0 = Instant::now();
    history.push(1, sampler.sample([&only_a], t0));
    serve(&a, 3);
    history.push(2, sampler.sample([&both], t0 + Duration::from_secs(1)));
    let doc = history.json(None);
    let series = doc["series"].as_array().unwrap();
    let names: Vec<&str> = series.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["app", "a", "b"]);
    assert_eq!(series[1]["rps"], json!([null, 3.0]));
    assert_eq!(series[1]["utilisation"], json!([0.0, 0.0]));
    assert_eq!(series[2]["load"], json!([null, 0.0]));
    assert_eq!(series[2]["responses"]["2xx"], json!([null, null]));
}

#[test]
fn backend_states_say_health_admin_state_and_when_they_changed() {
    let a = backend("a", 1);
    let cluster = Arc::new(Cluster::simple("app", vec![a.clone()]));
    let history = History::new(10, Duration::from_secs(1));
    let mut sampler = Sampler::default();
    let before = unix_ms();
    cluster.set_backend_enabled("a", false);
    sampler.sample([&cluster], Instant::now());
    history.set_states(sampler.states());
    let doc = history.json(None);
    let state = &doc["backends"][0];
    assert_eq!(
        (
            &state["name"],
            &state["health"],
            &state["admin"],
            &state["leaving"]
        ),
        (
            &json!("a"),
            &json!("online"),
            &json!("maint"),
            &json!(false)
        )
    );
    let since = state["since"].as_u64().unwrap();
    assert!(
        since + 1000 >= before && since <= unix_ms(),
        "{since} vs {before}"
    );
}

#[test]
fn responses_and_latency_become_rates_and_milliseconds() {
    let a = backend("a", 0);
    let b = backend("b", 0);
    let cluster = Arc::new(Cluster::simple("app", vec![a.clone(), b.clone()]));
    let mut sampler = Sampler::default();
    let t0 = Instant::now();
    sampler.sample([&cluster], t0);
    for _ in 0..8 {
        a.stats().response(200, Duration::from_millis(2));
    }
    a.stats().response(503, Duration::from_millis(40));
    a.stats().response(404, Duration::from_millis(40));
    b.stats().response(200, Duration::from_millis(10));
    b.stats().response(302, Duration::from_millis(10));
    let points = sampler.sample([&cluster], t0 + Duration::from_secs(2));
    let find = |name: &str| points.iter().find(|(k, _)| &*k.name == name).unwrap().1;
    let pa = find("a");
    assert_eq!(pa.responses[1], 4.0, "8 2xx in 2 s");
    assert_eq!((pa.responses[3], pa.responses[4]), (0.5, 0.5));
    // Mean of 8 × 2 ms and 2 × 40 ms.
    assert!((pa.latency_ms - 9.6).abs() < 0.01, "{}", pa.latency_ms);
    // The 95th percentile lies in the 25..50 ms bucket.
    assert!(
        pa.latency_p95_ms > 25.0 && pa.latency_p95_ms <= 50.0,
        "{}",
        pa.latency_p95_ms
    );
    // The cluster: both backends together.
    let pc = find("app");
    assert_eq!(pc.responses[1], 4.5);
    assert_eq!(pc.responses[2], 0.5);
    assert!((pc.latency_ms - 9.666).abs() < 0.01, "{}", pc.latency_ms);
    // Nothing new: zero rates, no latency.
    let points = sampler.sample([&cluster], t0 + Duration::from_secs(3));
    let pa = points.iter().find(|(k, _)| &*k.name == "a").unwrap().1;
    assert_eq!(pa.responses[1], 0.0);
    assert!(pa.latency_ms.is_nan());
}

async fn call(history: &History, method: Method, uri: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(body::empty())
        .unwrap();
    let res = history.service().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_endpoint_answers_json_and_refuses_bad_queries() {
    let history = History::new(10, Duration::from_secs(1));
    history.push(7, Vec::new());
    history.push(8, Vec::new());
    let (status, doc) = call(&history, Method::GET, "/history").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["time"], json!([7, 8]));
    let (_, doc) = call(&history, Method::GET, "/history?since=1").await;
    assert_eq!(doc["time"], json!([8]));
    let (status, doc) = call(&history, Method::GET, "/history?since=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(doc["detail"].as_str().unwrap().contains("since"));
    let (status, _) = call(&history, Method::GET, "/history?until=3").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&history, Method::POST, "/history").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_sampler_task_fills_the_ring_every_interval() {
    use director_core::{config::ProxyConfig, store::Plain};
    let cluster: director_core::config::ClusterConfig =
        toml::from_str("backends = [{ name = \"a\", url = \"http://127.0.0.1:9\" }]\n").unwrap();
    let mut config = ProxyConfig::default();
    config.clusters.insert("app".into(), cluster);
    let store = Arc::new(Store::new(config, Default::default(), None, Arc::new(Plain)).unwrap());
    let history = History::new(900, Duration::from_millis(10));
    let task = history.spawn_sampler(store);
    // Bounded wait for three samples (no claim about how fast they come).
    let deadline = Instant::now() + Duration::from_secs(10);
    while history.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "no samples from the sampler task"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    let doc = history.json(None);
    let names: Vec<&str> = doc["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "a"]);
    let seqs = (
        doc["first"].as_u64().unwrap(),
        doc["last"].as_u64().unwrap(),
    );
    assert!(seqs.0 == 1 && seqs.1 >= 3, "{seqs:?}");
}

#[test]
fn quantiles_interpolate_inside_histogram_buckets() {
    let bounds = [1.0, 2.0, 4.0];
    // 10 observations: 5 up to 1, 5 in (2, 4], none beyond.
    let cumulative = [5, 5, 10, 10];
    assert_eq!(quantile(&cumulative, &bounds, 0.5), Some(1.0));
    assert_eq!(quantile(&cumulative, &bounds, 0.25), Some(0.5));
    assert_eq!(quantile(&cumulative, &bounds, 0.9), Some(3.6));
    assert_eq!(quantile(&[0, 0, 0, 0], &bounds, 0.95), None);
    // Beyond the last bound: the last bound.
    assert_eq!(quantile(&[0, 0, 0, 3], &bounds, 0.95), Some(4.0));
}
