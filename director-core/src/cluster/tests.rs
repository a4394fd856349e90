use std::time::Duration;

use http_body_util::BodyExt;

use super::*;
use crate::{
    backend::Health,
    body,
    testing::{TestBackend, pattern, pattern_sha256},
    transport::TransportOptions,
};

fn member(b: &TestBackend, capacity: u32, role: Role) -> Arc<Backend> {
    let backend = Backend::new(
        b.name(),
        b.url().parse().unwrap(),
        TransportOptions {
            read_timeout: Duration::from_secs(5),
            ..TransportOptions::default()
        },
    );
    backend.set_capacity(capacity);
    backend.set_role(role);
    Arc::new(backend)
}

fn cluster(members: Vec<Arc<Backend>>, settings: ClusterSettings, shaper: Shaper) -> Arc<Cluster> {
    Arc::new(Cluster::new("c", members, settings, shaper))
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", "t")
        .body(body::empty())
        .unwrap()
}

async fn text(r: Response<Body>) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn served_by(r: &Response<Body>) -> String {
    r.headers()["x-director-backend"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn capacity_one_alternates_and_queues_for_the_first_to_free() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let c = cluster(
        vec![member(&a, 1, Role::Active), member(&b, 1, Role::Active)],
        ClusterSettings::default(),
        Shaper::new(0),
    );
    // Sequential requests alternate.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = c
            .clone()
            .dispatch(get("/"), Dispatch::default())
            .await
            .unwrap();
        seen.push(served_by(&r));
        text(r).await;
    }
    assert_eq!(seen, ["a", "b", "a", "b"]);

    // Two long requests fill both; a third waits and goes to the first one that frees.
    let slow_a = tokio::spawn(c.clone().dispatch(get("/delay/600"), Dispatch::default()));
    let slow_b = tokio::spawn(c.clone().dispatch(get("/delay/100"), Dispatch::default()));
    until("both are busy", || c.stats().load.current == 2).await;
    let third = tokio::spawn(c.clone().dispatch(get("/"), Dispatch::default()));
    until("the third request waits", || c.stats().queued.current == 1).await;
    let first_done = slow_b.await.unwrap().unwrap();
    let freed = served_by(&first_done);
    text(first_done).await;
    let third = third.await.unwrap().unwrap();
    assert_eq!(
        served_by(&third),
        freed,
        "the queued request goes to the backend that freed"
    );
    text(third).await;
    text(slow_a.await.unwrap().unwrap()).await;
    assert_eq!(c.stats().queued.total, 1);
    assert_eq!(c.stats().load.current, 0);
}

#[tokio::test]
async fn queue_limit_and_queue_timeout() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let c = cluster(
        vec![member(&a, 1, Role::Active)],
        ClusterSettings {
            queue_limit: 1,
            queue_timeout: Duration::from_millis(200),
            retry_after: 7,
            ..ClusterSettings::default()
        },
        Shaper::new(0),
    );
    let busy = tokio::spawn(c.clone().dispatch(get("/delay/800"), Dispatch::default()));
    until("a is busy", || c.stats().load.current == 1).await;
    let waiting = tokio::spawn(c.clone().dispatch(get("/"), Dispatch::default()));
    until("one waits", || c.stats().queued.current == 1).await;
    let full = c
        .clone()
        .dispatch(get("/"), Dispatch::default())
        .await
        .unwrap_err();
    assert_eq!(full.status(), 503);
    assert_eq!(full.retry_after(), Some(7));
    let timed_out = waiting.await.unwrap().unwrap_err();
    assert_eq!(timed_out.status(), 504);
    assert_eq!(c.stats().dropped, 2);
    assert_eq!(c.bucket_stats(ROOT).unwrap().dropped, 2);
    assert_eq!(c.stats().queued.current, 0);
    text(busy.await.unwrap().unwrap()).await;
}

#[tokio::test]
async fn capacity_freed_by_enabling_a_backend_dispatches_queued_requests() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let members = vec![member(&a, 1, Role::Active), member(&b, 3, Role::Active)];
    members[1].set_enabled(false);
    let c = cluster(members, ClusterSettings::default(), Shaper::new(0));
    let busy = tokio::spawn(c.clone().dispatch(get("/delay/1000"), Dispatch::default()));
    until("a is busy", || c.stats().load.current == 1).await;
    let waiters: Vec<_> = (0..3)
        .map(|_| tokio::spawn(c.clone().dispatch(get("/"), Dispatch::default())))
        .collect();
    until("three wait", || c.stats().queued.current == 3).await;
    assert!(c.set_backend_enabled("b", true));
    for w in waiters {
        let r = w.await.unwrap().unwrap();
        assert_eq!(served_by(&r), "b", "all three fit on b at once");
        text(r).await;
    }
    text(busy.await.unwrap().unwrap()).await;
}

#[tokio::test]
async fn backups_only_when_no_active_is_available() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let z = TestBackend::tcp("z", "127.0.0.1:0").await.unwrap();
    let members = vec![member(&a, 1, Role::Active), member(&z, 0, Role::Backup)];
    let c = cluster(members.clone(), ClusterSettings::default(), Shaper::new(0));

    // Active merely full: the next request waits for it, the backup stays idle. (The grant is
    // held until the response body has been read, so the busy task reads it.)
    let busy = {
        let c = c.clone();
        tokio::spawn(async move {
            text(
                c.dispatch(get("/delay/200"), Dispatch::default())
                    .await
                    .unwrap(),
            )
            .await
        })
    };
    until("a is busy", || c.stats().load.current == 1).await;
    let r = c
        .clone()
        .dispatch(get("/"), Dispatch::default())
        .await
        .unwrap();
    assert_eq!(served_by(&r), "a");
    text(r).await;
    busy.await.unwrap();
    assert_eq!(z.requests(), 0);

    // Active disabled, then offline: the backup takes over.
    c.set_backend_enabled("a", false);
    let r = c
        .clone()
        .dispatch(get("/"), Dispatch::default())
        .await
        .unwrap();
    assert_eq!(served_by(&r), "z");
    text(r).await;
    c.set_backend_enabled("a", true);
    members[0].set_health(Health::Offline);
    c.refresh();
    let r = c
        .clone()
        .dispatch(get("/"), Dispatch::default())
        .await
        .unwrap();
    assert_eq!(served_by(&r), "z");
    text(r).await;
    members[0].set_health(Health::Online);
    c.refresh();
    let r = c
        .clone()
        .dispatch(get("/"), Dispatch::default())
        .await
        .unwrap();
    assert_eq!(served_by(&r), "a");
    text(r).await;
}

async fn resetter() -> (std::net::SocketAddr, crate::testing::Resetter) {
    let r = crate::testing::Resetter::start().await.unwrap();
    (r.addr(), r)
}

fn raw_member(name: &str, addr: std::net::SocketAddr) -> Arc<Backend> {
    Arc::new(Backend::new(
        name,
        format!("http://{addr}").parse().unwrap(),
        TransportOptions::default(),
    ))
}

#[tokio::test]
async fn resets_are_retried_elsewhere_with_the_body_and_then_give_up() {
    let (bad, _t) = resetter().await;
    let good = TestBackend::tcp("good", "127.0.0.1:0").await.unwrap();
    let c = cluster(
        vec![raw_member("bad", bad), member(&good, 0, Role::Active)],
        ClusterSettings::default(),
        Shaper::new(0),
    );
    for _ in 0..3 {
        let body = pattern(0, 10_000);
        let put = Request::put("/sha256")
            .header("host", "t")
            .body(body::full(body))
            .unwrap();
        let r = c.clone().dispatch(put, Dispatch::default()).await.unwrap();
        assert_eq!(served_by(&r), "good");
        assert_eq!(text(r).await, format!("10000 {}", pattern_sha256(10_000)));
    }

    let (b1, _t1) = resetter().await;
    let (b2, _t2) = resetter().await;
    let (b3, _t3) = resetter().await;
    let c = cluster(
        vec![
            raw_member("b1", b1),
            raw_member("b2", b2),
            raw_member("b3", b3),
        ],
        ClusterSettings {
            max_retry_count: 1,
            ..ClusterSettings::default()
        },
        Shaper::new(0),
    );
    let err = c
        .clone()
        .dispatch(get("/"), Dispatch::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), 503, "{err}");
    assert!(err.to_string().contains("every attempt"), "{err}");
}

#[tokio::test]
async fn a_post_that_reached_a_backend_is_not_sent_again() {
    let (bad, _t) = resetter().await;
    let good = TestBackend::tcp("good", "127.0.0.1:0").await.unwrap();
    let c = cluster(
        vec![raw_member("bad", bad), member(&good, 0, Role::Active)],
        ClusterSettings::default(),
        Shaper::new(0),
    );
    let post = Request::post("/echo")
        .header("host", "t")
        .body(body::full("once"))
        .unwrap();
    let err = c
        .clone()
        .dispatch(post, Dispatch::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), 502);
    assert_eq!(good.requests(), 0);
}

#[tokio::test]
async fn buckets_cap_their_share() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let mut shaper = Shaper::new(0);
    shaper.create("vip", ROOT, 0.1, 0.3).unwrap();
    shaper.create("main", ROOT, 0.5, 0.7).unwrap();
    let c = cluster(
        vec![member(&a, 10, Role::Active)],
        ClusterSettings {
            queue_timeout: Duration::from_secs(10),
            ..ClusterSettings::default()
        },
        shaper,
    );
    let vip = Dispatch {
        bucket: Some("vip".into()),
        ..Dispatch::default()
    };
    let tasks: Vec<_> = (0..6)
        .map(|_| tokio::spawn(c.clone().dispatch(get("/delay/300"), vip.clone())))
        .collect();
    let vip_id = c.shaper().find("vip").unwrap();
    until("vip is at its ceiling with the rest queued", || {
        c.shaper().stats(vip_id).load.current == 3
            && c.bucket_stats(vip_id).unwrap().queued.current == 3
    })
    .await;
    assert_eq!(
        c.shaper().stats(vip_id).load.current,
        3,
        "vip's ceiling is 3 of 10"
    );
    assert_eq!(c.bucket_stats(vip_id).unwrap().queued.current, 3);
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.headers()["x-director-bucket"], "vip");
        text(r).await;
    }
    assert!(c.shaper().stats(vip_id).load.max <= 3);
}

#[tokio::test]
async fn pinned_requests_ignore_capacity_but_not_availability() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let members = vec![member(&a, 1, Role::Active), member(&b, 1, Role::Active)];
    let c = cluster(members.clone(), ClusterSettings::default(), Shaper::new(0));
    let pin = |name: &str| Dispatch {
        pin: Some(name.into()),
        ..Dispatch::default()
    };
    let busy = tokio::spawn(c.clone().dispatch(get("/delay/300"), pin("a")));
    until("a is busy", || c.stats().load.current == 1).await;
    let r = c.clone().dispatch(get("/"), pin("a")).await.unwrap();
    assert_eq!(served_by(&r), "a", "full, yet pinned requests get through");
    text(r).await;
    text(busy.await.unwrap().unwrap()).await;

    members[1].set_health(Health::Offline);
    let err = c.clone().dispatch(get("/"), pin("b")).await.unwrap_err();
    assert_eq!(err.status(), 503);
    assert!(err.to_string().contains("not available"), "{err}");
    let err = c
        .clone()
        .dispatch(get("/"), pin("nobody"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 503);
}

#[tokio::test]
async fn disabled_clusters_and_unavailable_backends_answer_503() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let members = vec![member(&a, 1, Role::Active)];
    let c = cluster(members.clone(), ClusterSettings::default(), Shaper::new(0));
    c.set_enabled(false);
    assert_eq!(
        c.clone()
            .dispatch(get("/"), Dispatch::default())
            .await
            .unwrap_err()
            .status(),
        503
    );
    c.set_enabled(true);
    c.set_backend_enabled("a", false);
    let err = c
        .clone()
        .dispatch(get("/"), Dispatch::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.status(),
        503,
        "fail fast without enqueue-on-unavailable"
    );

    let c = cluster(
        members,
        ClusterSettings {
            enqueue_on_unavailable: true,
            ..ClusterSettings::default()
        },
        Shaper::new(0),
    );
    let waiting = tokio::spawn(c.clone().dispatch(get("/"), Dispatch::default()));
    until("it waits", || c.stats().queued.current == 1).await;
    assert_eq!(
        c.stats().queued.current,
        1,
        "queued while nothing is available"
    );
    c.set_backend_enabled("a", true);
    let r = waiting.await.unwrap().unwrap();
    assert_eq!(served_by(&r), "a");
    text(r).await;
}

#[tokio::test]
async fn draining_backends_take_no_new_requests_and_leave_when_idle() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let members = vec![member(&a, 0, Role::Active), member(&b, 0, Role::Active)];
    members[1].set_terminate_protection(true);
    let c = cluster(members, ClusterSettings::default(), Shaper::new(0));
    let busy = tokio::spawn(c.clone().dispatch(get("/delay/200"), Dispatch::default()));
    until("a is busy", || c.stats().load.current == 1).await;
    assert!(!c.drain_backend("b"), "protected");
    assert!(c.drain_backend("a"));
    assert_eq!(c.backends().len(), 2, "a is busy, so it stays until idle");
    for _ in 0..3 {
        let r = c
            .clone()
            .dispatch(get("/"), Dispatch::default())
            .await
            .unwrap();
        assert_eq!(served_by(&r), "b");
        text(r).await;
    }
    text(busy.await.unwrap().unwrap()).await;
    assert_eq!(c.backends().len(), 1, "removed once idle");
}

fn hashing(members: Vec<Arc<Backend>>) -> Arc<Cluster> {
    cluster(
        members,
        ClusterSettings {
            scheduler: SchedulerKind::Hash,
            hash_key: Some(crate::key::HashKey::parse("path").unwrap()),
            ..ClusterSettings::default()
        },
        Shaper::new(0),
    )
}

#[tokio::test]
async fn backends_join_and_leave_a_hash_ring_at_runtime() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let c_ = TestBackend::tcp("c", "127.0.0.1:0").await.unwrap();
    let c = hashing(vec![
        member(&a, 0, Role::Active),
        member(&b, 0, Role::Active),
    ]);
    let owners = |c: Arc<Cluster>| async move {
        let mut out = Vec::new();
        for i in 0..40 {
            let r = c
                .clone()
                .dispatch(get(&format!("/k/{i}")), Dispatch::default())
                .await
                .unwrap();
            out.push(served_by(&r));
            text(r).await;
        }
        out
    };
    let before = owners(c.clone()).await;
    assert!(c.add_backend(member(&c_, 0, Role::Active)));
    assert!(
        !c.add_backend(member(&c_, 0, Role::Active)),
        "names are unique"
    );
    let with_c = owners(c.clone()).await;
    for (old, new) in before.iter().zip(&with_c) {
        assert!(
            new == old || new == "c",
            "a key moved between a and b: {old} -> {new}"
        );
    }
    assert!(with_c.iter().any(|o| o == "c"), "c took some keys");
    assert!(c.drain_backend("c"));
    assert_eq!(
        owners(c.clone()).await,
        before,
        "removing c gives its keys back"
    );
}

#[tokio::test]
async fn a_full_owner_spills_over_to_the_next_backend_on_the_ring() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let c = hashing(vec![
        member(&a, 1, Role::Active),
        member(&b, 1, Role::Active),
    ]);
    // The key's owner (capacity 1) is busy with a slow request for that same key...
    let first = {
        let c = c.clone();
        tokio::spawn(async move {
            let r = c
                .dispatch(get("/delay/300"), Dispatch::default())
                .await
                .unwrap();
            let who = served_by(&r);
            text(r).await;
            who
        })
    };
    until("the owner is busy", || c.stats().load.current == 1).await;
    // ...so the same key goes to the next backend on the ring at once, without queueing.
    let r = c
        .clone()
        .dispatch(get("/delay/300"), Dispatch::default())
        .await
        .unwrap();
    let second = served_by(&r);
    text(r).await;
    assert_ne!(first.await.unwrap(), second);
    assert_eq!(c.stats().queued.total, 0, "nothing waited in the queue");
}

/// Waits (at most 10 s) until `cond` holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn a_client_abort_closes_or_is_ignored_as_configured() {
    use crate::config::ClientAbort;
    for abort in [ClientAbort::Close, ClientAbort::Notify, ClientAbort::Ignore] {
        let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
        let c = cluster(
            vec![member(&a, 1, Role::Active)],
            ClusterSettings {
                on_client_abort: abort,
                ..ClusterSettings::default()
            },
            Shaper::new(0),
        );
        // 30 chunks 10 ms apart: the client reads one, then goes away.
        let r = c
            .clone()
            .dispatch(get("/drip/30"), Dispatch::default())
            .await
            .unwrap();
        let mut body = r.into_body();
        body.frame().await.unwrap().unwrap();
        drop(body);
        if abort == ClientAbort::Ignore {
            // The backend never notices, and the request keeps its slot until the end.
            assert_eq!(c.stats().load.current, 1, "{abort:?}: still holds its slot");
            until("the body was read to its end", || a.drips_sent() == 1).await;
            until("the slot is free", || c.stats().load.current == 0).await;
            assert_eq!(a.drips_cut(), 0);
        } else {
            assert_eq!(
                c.stats().load.current,
                0,
                "{abort:?}: the slot is free at once"
            );
            until("the backend saw the close", || a.drips_cut() == 1).await;
            assert_eq!(a.drips_sent(), 0);
        }
        assert_eq!(c.backends()[0].stats().snapshot().client_aborts, 1);
    }
}

#[tokio::test]
async fn phase_times_and_session_rates_of_answered_requests() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let c = cluster(
        vec![member(&a, 1, Role::Active)],
        ClusterSettings::default(),
        Shaper::new(0),
    );
    let before = c.stats();
    assert_eq!(before.sessions.since_last, None, "no session yet");
    assert_eq!(before.times.total.samples, 0);

    // A 300 ms request holds the only slot; a second one queues behind it.
    let spawned = Instant::now();
    let slow = tokio::spawn(c.clone().dispatch(get("/delay/300"), Dispatch::default()));
    while c.stats().load.current < 1 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let queued = tokio::spawn(c.clone().dispatch(get("/"), Dispatch::default()));
    while c.stats().queued.current < 1 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The queued one waited at least from here until the slow one's answer, which came at
    // least 300 ms after it was spawned.
    let waited_from = spawned.elapsed().as_millis() as u64;
    text(slow.await.unwrap().unwrap()).await;
    text(queued.await.unwrap().unwrap()).await;

    let s = c.stats();
    assert_eq!(s.times.total.samples, 2, "both answered requests are timed");
    assert_eq!(s.times.queue.samples, 2);
    assert!(
        s.times.queue.max >= 300u64.saturating_sub(waited_from),
        "{:?} (queued {waited_from} ms after the slow one)",
        s.times.queue
    );
    assert!(s.times.response.max >= 300, "{:?}", s.times.response);
    assert!(s.times.total.max >= 300, "{:?}", s.times.total);
    assert!(s.times.total.max >= s.times.response.max);
    assert_eq!(
        s.times.connect.samples, 2,
        "an HTTP backend has a connect phase"
    );
    assert!(s.sessions.rate.max >= 1);
    assert!(s.sessions.since_last.is_some());

    let b = c.backends()[0].stats().snapshot();
    assert_eq!(b.times.total.samples, 2);
    assert_eq!(b.times.response.samples, 2);
    assert!(b.times.response.max >= 300);
    assert!(b.sessions.rate.max >= 1);
    assert_eq!(b.times.queue.max, s.times.queue.max);
}

#[tokio::test]
async fn failed_attempts_are_not_timed() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let c = cluster(
        vec![member(&a, 0, Role::Active)],
        ClusterSettings {
            max_retry_count: 0,
            ..ClusterSettings::default()
        },
        Shaper::new(0),
    );
    assert!(
        c.clone()
            .dispatch(get("/hangup"), Dispatch::default())
            .await
            .is_err()
    );
    let s = c.stats();
    assert_eq!(s.times.total.samples, 0);
    assert_eq!(s.times.response.samples, 0);
    assert!(s.sessions.since_last.is_some(), "it was admitted");
    let b = c.backends()[0].stats().snapshot();
    assert!(b.sessions.since_last.is_some(), "it was sent");
    assert_eq!(b.times.response.samples, 0);
}

/// Records what passive health was told.
#[derive(Debug, Default)]
struct Told(std::sync::Mutex<Vec<String>>);

impl crate::backend::HealthObserver for Told {
    fn response(&self, status: http::StatusCode) {
        self.0.lock().unwrap().push(status.to_string());
    }
    fn failure(&self, kind: ErrorKind) {
        self.0.lock().unwrap().push(format!("{kind:?}"));
    }
}

/// A streaming request body (no known length, so it is never kept for replay) that breaks off
/// after its first chunk, as a client that disconnects mid-upload.
struct BrokenUpload(bool);

impl http_body::Body for BrokenUpload {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if std::mem::replace(&mut self.0, true) {
            let cause = crate::body::ClientBodyError::Read("the client went away".into());
            return Poll::Ready(Some(Err(cause.into())));
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"part")))))
    }
}

#[tokio::test]
async fn a_broken_client_body_is_not_the_backends_failure() {
    let a = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let b = TestBackend::tcp("b", "127.0.0.1:0").await.unwrap();
    let members = vec![member(&a, 0, Role::Active), member(&b, 0, Role::Active)];
    let told: Vec<Arc<Told>> = members
        .iter()
        .map(|m| {
            let t = Arc::new(Told::default());
            m.observe(Some(t.clone()));
            t
        })
        .collect();
    let c = cluster(members, ClusterSettings::default(), Shaper::new(0));
    // PUT is idempotent: a backend's broken exchange would be retried on the other.
    let put = Request::put("/sha256")
        .header("host", "t")
        .body(body::boxed(BrokenUpload(false)))
        .unwrap();
    let err = c
        .clone()
        .dispatch(put, Dispatch::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ClientBody, "{err}");
    assert_eq!(err.status(), 400);
    assert!(a.requests() + b.requests() <= 1, "not sent again elsewhere");
    for (m, t) in c.backends().iter().zip(&told) {
        assert!(t.0.lock().unwrap().is_empty(), "health was told nothing");
        let s = m.stats().snapshot();
        assert_eq!((s.response_errors, s.connect_errors), (0, 0));
    }
    let aborts: u64 = c
        .backends()
        .iter()
        .map(|m| m.stats().snapshot().client_aborts)
        .sum();
    assert_eq!(aborts, 1, "counted as the client's abort");
}

#[test]
fn ejection_cap_keeps_the_last_backend_and_at_most_the_percentage() {
    // One backend: never, whatever the percentage.
    assert!(!may_eject(1, 0, 0, 50));
    assert!(!may_eject(1, 0, 0, 100));
    // Two, the other available: 50% allows one, not a second.
    assert!(may_eject(2, 0, 1, 50));
    assert!(!may_eject(2, 1, 1, 50));
    // Two, the other already offline by probe: this is the last one.
    assert!(!may_eject(2, 0, 0, 100));
    // Four at 50%: two, then no more.
    assert!(may_eject(4, 0, 3, 50));
    assert!(may_eject(4, 1, 2, 50));
    assert!(!may_eject(4, 2, 1, 50));
    // 100% still keeps the last available one; 0% ejects nothing.
    assert!(may_eject(4, 2, 1, 100));
    assert!(!may_eject(4, 0, 3, 0));
    // Percentages that do not divide evenly round down: 3 × 50% is one.
    assert!(may_eject(3, 0, 2, 50));
    assert!(!may_eject(3, 1, 1, 50));
}

#[test]
fn panic_below_the_threshold_unless_off_or_none_available() {
    assert!(is_panic(4, 1, 50));
    assert!(!is_panic(4, 2, 50), "exactly at the threshold is not panic");
    assert!(is_panic(3, 1, 50));
    assert!(!is_panic(2, 1, 50));
    assert!(
        !is_panic(4, 0, 50),
        "none available: the cluster is down, not in panic"
    );
    assert!(!is_panic(1, 0, 50));
    assert!(!is_panic(4, 1, 0), "0 turns it off");
    assert!(!is_panic(0, 0, 50), "no active member in service");
    assert!(is_panic(4, 3, 100));
    assert!(!is_panic(4, 4, 100));
}

#[tokio::test]
async fn a_cluster_in_panic_balances_over_offline_members_but_not_disabled_ones() {
    let mut backends = Vec::new();
    for n in ["a", "b", "c", "d", "e"] {
        backends.push(TestBackend::tcp(n, "127.0.0.1:0").await.unwrap());
    }
    let members: Vec<Arc<Backend>> = backends
        .iter()
        .map(|b| member(b, 0, Role::Active))
        .collect();
    let c = cluster(
        members.clone(),
        ClusterSettings {
            panic_threshold: 50,
            ..ClusterSettings::default()
        },
        Shaper::new(0),
    );
    members[4].set_enabled(false);
    for m in &members[1..4] {
        m.set_health(Health::Offline);
    }
    c.refresh();
    assert!(c.is_in_panic());
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let r = c
            .clone()
            .dispatch(get("/"), Dispatch::default())
            .await
            .unwrap();
        seen.insert(served_by(&r));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
    assert_eq!(c.stats().panic_requests, 8);

    // Back above the threshold: offline members get nothing.
    members[1].set_health(Health::Online);
    c.refresh();
    assert!(!c.is_in_panic());
    for _ in 0..6 {
        let r = c
            .clone()
            .dispatch(get("/"), Dispatch::default())
            .await
            .unwrap();
        assert!(["a", "b"].contains(&served_by(&r).as_str()));
    }
}

#[tokio::test]
async fn passive_ejection_is_serialised_and_released_when_back_online() {
    let mut backends = Vec::new();
    for n in ["a", "b", "c", "d"] {
        backends.push(TestBackend::tcp(n, "127.0.0.1:0").await.unwrap());
    }
    let members: Vec<Arc<Backend>> = backends
        .iter()
        .map(|b| member(b, 0, Role::Active))
        .collect();
    let c = cluster(members.clone(), ClusterSettings::default(), Shaper::new(0));
    // Marked before the health change lands: the next one already sees it.
    assert!(c.try_passive_ejection(&members[0], 50));
    assert!(c.try_passive_ejection(&members[1], 50));
    assert!(!c.try_passive_ejection(&members[2], 50));
    assert_eq!(c.stats().ejections_refused, 1);
    members[0].set_health(Health::Offline);
    members[0].set_health(Health::Online);
    assert!(!members[0].is_passively_ejected());
    assert!(c.try_passive_ejection(&members[2], 50));
    // An outsider is not capped (it left the cluster).
    let outsider = member(&backends[0], 0, Role::Active);
    assert!(c.try_passive_ejection(&outsider, 0));
}
