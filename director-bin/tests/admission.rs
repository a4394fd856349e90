//! Admission through the binary: capacity, queue, backups, retries, buckets, client-side routing.

mod support;

use std::time::Duration;

use bytes::Bytes;
use director_core::testing::{Resetter, TestBackend, pattern, pattern_sha256};
use http::Request;
use http_body_util::Full;
use support::*;

fn backend_toml(name: &str, url: &str, extra: &str) -> String {
    format!("[[clusters.app.backends]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n")
}

fn config(cluster: &str, backends: &[String], routes: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n[clusters.app]\n{cluster}\n{}\n{routes}[[routes]]\ncluster = \"app\"\n",
        backends.concat()
    )
}

fn get_class(director: &Director, path: &str, class: &str) -> Request<Full<Bytes>> {
    Request::get(director.url(path))
        .header("x-test-class", class)
        .body(Full::default())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_one_alternates_and_a_third_request_waits_for_the_first_to_free() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(
        "",
        &[
            backend_toml("a", &a.url(), "capacity = 1"),
            backend_toml("b", &b.url(), "capacity = 1"),
        ],
        "",
    ));
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(
            get(&director.url("/"))
                .await
                .header("x-director-backend")
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(seen, ["a", "b", "a", "b"]);

    let (u1, u2) = (director.url("/delay/800"), director.url("/delay/150"));
    let long = tokio::spawn(async move { get(&u1).await });
    let short = tokio::spawn(async move { get(&u2).await });
    wait_until("both backends are busy", || {
        a.in_flight("") + b.in_flight("") == 2
    })
    .await;
    let u3 = director.url("/");
    let third = tokio::spawn(async move { get(&u3).await });
    let short = short.await.unwrap();
    let third = third.await.unwrap();
    assert_eq!(third.status, 200);
    assert_eq!(
        third.header("x-director-backend"),
        short.header("x-director-backend"),
        "the waiting request went to the backend that freed first"
    );
    assert_eq!(long.await.unwrap().status, 200);
    assert_eq!(
        a.max_in_flight("") + b.max_in_flight(""),
        2,
        "never more than capacity"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queues_get_503_with_retry_after_and_old_ones_504() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&with_admin(&config(
        "queue-limit = 1\nqueue-timeout = \"800ms\"\nretry-after = 5",
        &[backend_toml("a", &a.url(), "capacity = 1")],
        "",
    )));
    let u = director.url("/delay/2500");
    let busy = tokio::spawn(async move { get(&u).await });
    wait_until("a is busy", || a.in_flight("") == 1).await;
    let u = director.url("/");
    let waiting = tokio::spawn(async move { get(&u).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while queued(&director, "app").await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let full = get(&director.url("/")).await;
    assert_eq!(full.status, 503);
    assert_eq!(full.header("retry-after"), Some("5"));
    let waited = waiting.await.unwrap();
    assert_eq!(waited.status, 504, "queue timeout");
    assert_eq!(busy.await.unwrap().status, 200);
    assert_eq!(
        a.requests(),
        1,
        "only the first request reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_serve_only_while_no_active_is_available() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let z = TestBackend::tcp("z", "127.0.0.1:0").await.unwrap();
    // Active merely full: requests wait for it; the backup stays idle.
    let director = Director::start(&config(
        "",
        &[
            backend_toml("a", &a.url(), "capacity = 1"),
            backend_toml("z", &z.url(), "role = \"backup\""),
        ],
        "",
    ));
    let u = director.url("/delay/300");
    let busy = tokio::spawn(async move { get(&u).await });
    wait_until("a is busy", || a.in_flight("") == 1).await;
    assert_eq!(
        get(&director.url("/")).await.header("x-director-backend"),
        Some("a")
    );
    busy.await.unwrap();
    assert_eq!(z.requests(), 0);

    // Active disabled: the backup (x0's "standby" spelling) takes the traffic.
    let disabled = Director::start(&config(
        "",
        &[
            backend_toml("a", &a.url(), "enabled = false"),
            backend_toml("z", &z.url(), "role = \"standby\""),
        ],
        "",
    ));
    assert_eq!(
        get(&disabled.url("/")).await.header("x-director-backend"),
        Some("z")
    );

    // Active unreachable: after it fails, the backup takes the request.
    let dead = Director::start(&config(
        "",
        &[
            backend_toml("a", &format!("http://{}", dead_port()), ""),
            backend_toml("z", &z.url(), "role = \"backup\""),
        ],
        "",
    ));
    assert_eq!(
        get(&dead.url("/")).await.header("x-director-backend"),
        Some("z")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_are_retried_on_another_backend_with_the_body_then_503() {
    let bad = Resetter::start().await.unwrap();
    let good = TestBackend::tcp("good", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(
        "",
        &[
            backend_toml("bad", &bad.url(), ""),
            backend_toml("good", &good.url(), ""),
        ],
        "",
    ));
    for _ in 0..4 {
        let body = pattern(7, 30_000);
        let reply = send(
            Request::put(director.url("/sha256"))
                .body(Full::new(body))
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-director-backend"), Some("good"));
        assert!(reply.text().starts_with("30000 "), "{}", reply.text());
    }
    // The body arrived intact: hash it the same way the backend does.
    let reply = send(
        Request::put(director.url("/sha256"))
            .body(Full::new(pattern(0, 40_000)))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.text(), format!("40000 {}", pattern_sha256(40_000)));

    let (b1, b2, b3) = (
        Resetter::start().await.unwrap(),
        Resetter::start().await.unwrap(),
        Resetter::start().await.unwrap(),
    );
    let director = Director::start(&config(
        "max-retry-count = 2",
        &[
            backend_toml("b1", &b1.url(), ""),
            backend_toml("b2", &b2.url(), ""),
            backend_toml("b3", &b3.url(), ""),
        ],
        "",
    ));
    let reply = get(&director.url("/")).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_vip_and_main_share_capacity_ten() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(
        "queue-timeout = \"20s\"\nqueue-limit = 100\n\
         [[clusters.app.buckets]]\nname = \"vip\"\nrate = 0.1\nceil = 0.3\n\
         [[clusters.app.buckets]]\nname = \"main\"\nrate = 0.5\nceil = 0.7\n",
        &[backend_toml("a", &a.url(), "capacity = 10")],
        "[[routes]]\npath = \"/\"\nhost = \"vip.test\"\ncluster = \"app\"\nbucket = \"vip\"\n\
         [[routes]]\nhost = \"main.test\"\ncluster = \"app\"\nbucket-header = \"x-bucket\"\n",
    ));
    // Load from both classes at once: 15 concurrent each, each request holding a slot 150 ms.
    let mut tasks = Vec::new();
    for class in ["vip", "main"] {
        for _ in 0..15 {
            let mut req = get_class(&director, "/delay/150", class);
            req.headers_mut()
                .insert("host", format!("{class}.test").parse().unwrap());
            req.headers_mut()
                .insert("x-bucket", "main".parse().unwrap());
            tasks.push(tokio::spawn(send(req)));
        }
    }
    // While both are loaded, each holds at least its assured rate.
    let mut saw_vip_rate = false;
    let mut saw_main_rate = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        saw_vip_rate |= a.in_flight("vip") >= 1;
        saw_main_rate |= a.in_flight("main") >= 5;
    }
    for t in tasks {
        let reply = t.await.unwrap();
        assert_eq!(reply.status, 200);
    }
    assert!(
        a.max_in_flight("vip") <= 3,
        "vip's ceiling is 3: {}",
        a.max_in_flight("vip")
    );
    assert!(
        a.max_in_flight("main") <= 7,
        "main's ceiling is 7: {}",
        a.max_in_flight("main")
    );
    assert!(a.max_in_flight("") <= 10, "the cluster's capacity is 10");
    assert!(
        saw_vip_rate && saw_main_rate,
        "each bucket got its rate under load"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_routing_by_cookie() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(
        "",
        &[
            backend_toml("a", &a.url(), "capacity = 1"),
            backend_toml("b", &b.url(), "capacity = 1\nenabled = false"),
        ],
        "[[routes]]\npath = \"/\"\ncluster = \"app\"\npin-cookie = \"backend\"\n",
    ));
    let pinned = |to: &str| {
        Request::get(director.url("/"))
            .header("cookie", format!("lang=en; backend={to}"))
            .body(Full::default())
            .unwrap()
    };
    let u = director.url("/delay/400");
    let busy = tokio::spawn(async move { get(&u).await });
    wait_until("a is busy", || a.in_flight("") == 1).await;
    let reply = send(pinned("a")).await;
    assert_eq!(reply.status, 200, "a is full, but pinned requests pass");
    assert_eq!(reply.header("x-director-backend"), Some("a"));
    assert_eq!(a.max_in_flight(""), 2);
    let reply = send(pinned("b")).await;
    assert_eq!(reply.status, 503, "b is disabled");
    assert!(reply.text().contains("not available"), "{}", reply.text());
    busy.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn director_headers_can_be_turned_off() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let on = Director::start(&config("", &[backend_toml("a", &a.url(), "")], ""));
    let reply = get(&on.url("/")).await;
    assert_eq!(reply.header("x-director-backend"), Some("a"));
    assert_eq!(reply.header("x-director-bucket"), Some("root"));
    let off = Director::start(&config(
        "response-headers = false",
        &[backend_toml("a", &a.url(), "")],
        "",
    ));
    let reply = get(&off.url("/")).await;
    assert_eq!(reply.header("x-director-backend"), None);
    assert_eq!(reply.header("x-director-bucket"), None);
}
