//! Bucket sharing through the binary: the seed config's vip/main example (capacity 10, vip
//! 0.2..0.4, main 0.8..1.0), where the rates add up to 1. Under `htb` (the default) each bucket
//! alone borrows up to its ceil, the root's requests use the idle capacity, and saturated buckets
//! settle at their rates; `shaper = "x0"` keeps x0's arithmetic (no borrowing here).
//!
//! Requests are held at the backend (`/stall` never answers) on raw connections, each with its
//! own `x-test-class`, so the test knows which request is in flight and ends one by closing its
//! connection. Counts are read through the admin API; every check waits (bounded) for the state.

mod support;

use std::time::Duration;

use director_core::testing::TestBackend;
use support::*;
use tokio::{io::AsyncWriteExt, net::TcpStream};

/// The seed config's cluster: one backend of capacity 10, routes by `x-bucket` (none: root).
fn config(backend: &str, shaper: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n\
         [clusters.app]\n{shaper}\nqueue-limit = 100\nqueue-timeout = \"60s\"\n\
         [[clusters.app.buckets]]\nname = \"vip\"\nrate = 0.2\nceil = 0.4\n\
         [[clusters.app.buckets]]\nname = \"main\"\nrate = 0.8\nceil = 1.0\n\
         [[clusters.app.backends]]\nname = \"a\"\nurl = \"{backend}\"\ncapacity = 10\n\n\
         [[routes]]\ncluster = \"app\"\nbucket-header = \"x-bucket\"\n"
    )
}

/// A request held open: the backend never answers `/stall`; dropping it hangs up.
struct Held {
    class: String,
    _stream: TcpStream,
}

/// Sends `GET /stall` for `bucket` ("" for none) with the test class `class`.
async fn hold(director: &Director, bucket: &str, class: &str) -> Held {
    let mut stream = TcpStream::connect(director.socket_addr()).await.unwrap();
    let header = if bucket.is_empty() {
        String::new()
    } else {
        format!("x-bucket: {bucket}\r\n")
    };
    stream
        .write_all(
            format!("GET /stall HTTP/1.1\r\nHost: t\r\n{header}x-test-class: {class}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    Held {
        class: class.to_owned(),
        _stream: stream,
    }
}

async fn hold_n(director: &Director, bucket: &str, n: usize) -> Vec<Held> {
    let mut held = Vec::new();
    for i in 0..n {
        held.push(hold(director, bucket, &format!("{bucket}-{i}")).await);
    }
    held
}

/// Tokens held (own requests) and requests queued, per bucket: root, vip, main.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Load {
    held: [u64; 3],
    queued: [u64; 3],
}

async fn load(director: &Director) -> Load {
    let reply = get(&format!("{}/api/app", director.admin())).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let doc: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let root = &doc["shaper"];
    let child = |name: &str| {
        root["children"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no bucket {name} in {root}"))
            .clone()
    };
    let (vip, main) = (child("vip"), child("main"));
    let current = |b: &serde_json::Value, what: &str| b["stats"][what]["current"].as_u64().unwrap();
    let (vip_held, main_held) = (current(&vip, "load"), current(&main, "load"));
    Load {
        held: [
            current(root, "load") - vip_held - main_held,
            vip_held,
            main_held,
        ],
        queued: [
            current(root, "queued"),
            current(&vip, "queued"),
            current(&main, "queued"),
        ],
    }
}

/// The most tokens the cluster ever handed out at once. (The backend's own count may pass the
/// capacity for a moment: it sees a hung-up request's connection close after Director has
/// already given its slot to the next request.)
async fn most_held(director: &Director) -> u64 {
    let reply = get(&format!("{}/api/app", director.admin())).await;
    let doc: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    doc["shaper"]["stats"]["load"]["max"].as_u64().unwrap()
}

/// Waits (at most 10 s) until the buckets hold and queue exactly `want`.
async fn wait_for(director: &Director, what: &str, want: Load) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = load(director).await;
        if now == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: wanted {want:?}, have {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn held(root: u64, vip: u64, main: u64) -> [u64; 3] {
    [root, vip, main]
}

/// Hangs up every request and waits until the backend and the queues are empty.
async fn release_all(director: &Director, backend: &TestBackend, requests: Vec<Held>) {
    drop(requests);
    wait_until("the backend sees every hang-up", || {
        backend.in_flight("") == 0
    })
    .await;
    wait_for(
        director,
        "everything released",
        Load {
            held: held(0, 0, 0),
            queued: [0, 0, 0],
        },
    )
    .await;
}

/// Hangs up `n` of `requests` that the backend is serving now.
fn end_running(backend: &TestBackend, requests: &mut Vec<Held>, n: usize) {
    for _ in 0..n {
        let at = requests
            .iter()
            .position(|r| backend.in_flight(&r.class) == 1)
            .expect("a request in flight");
        requests.swap_remove(at);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_buckets_borrow_up_to_their_ceilings_and_the_root_is_served() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&backend.url(), ""));

    // vip alone reaches its ceil of 4 (x0's arithmetic stopped at its rate of 2).
    let vip = hold_n(&director, "vip", 6).await;
    wait_for(
        &director,
        "vip alone",
        Load {
            held: held(0, 4, 0),
            queued: [0, 2, 0],
        },
    )
    .await;
    release_all(&director, &backend, vip).await;

    // main alone reaches its ceil, the whole capacity.
    let main = hold_n(&director, "main", 12).await;
    wait_for(
        &director,
        "main alone",
        Load {
            held: held(0, 0, 10),
            queued: [0, 0, 2],
        },
    )
    .await;
    release_all(&director, &backend, main).await;

    // Unclassified requests (the root bucket, whose own share is 0 here) use the idle capacity
    // instead of waiting for the queue timeout.
    let root = hold_n(&director, "", 12).await;
    wait_for(
        &director,
        "root alone",
        Load {
            held: held(10, 0, 0),
            queued: [2, 0, 0],
        },
    )
    .await;
    release_all(&director, &backend, root).await;
    let reply = get(&director.url("/")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-director-bucket"), Some("root"));
    assert_eq!(most_held(&director).await, 10, "never above the capacity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_seed_buckets_settle_at_their_rates() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&backend.url(), ""));

    // main came first and borrowed vip's idle share; vip's requests arrive and wait, as tokens
    // are never taken back from a running request.
    let mut main = hold_n(&director, "main", 12).await;
    wait_for(
        &director,
        "main alone",
        Load {
            held: held(0, 0, 10),
            queued: [0, 0, 2],
        },
    )
    .await;
    let mut vip = hold_n(&director, "vip", 4).await;
    wait_for(
        &director,
        "vip waits",
        Load {
            held: held(0, 0, 10),
            queued: [0, 4, 2],
        },
    )
    .await;

    // Two main requests end: both tokens go to vip, below its assured 2, although main's
    // queued requests are older.
    end_running(&backend, &mut main, 2);
    wait_for(
        &director,
        "vip gets its rate back",
        Load {
            held: held(0, 2, 8),
            queued: [0, 2, 2],
        },
    )
    .await;
    // Another main request ends: main is below its assured 8 now, so its queue goes first.
    end_running(&backend, &mut main, 1);
    wait_for(
        &director,
        "main gets its rate back",
        Load {
            held: held(0, 2, 8),
            queued: [0, 2, 1],
        },
    )
    .await;
    // A vip request ends: vip, at 1 of its 2, is served before main's waiting request.
    end_running(&backend, &mut vip, 1);
    wait_for(
        &director,
        "both at their rates",
        Load {
            held: held(0, 2, 8),
            queued: [0, 1, 1],
        },
    )
    .await;
    assert_eq!(most_held(&director).await, 10, "never above the capacity");
    vip.extend(main);
    release_all(&director, &backend, vip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shaper_x0_keeps_x0s_arithmetic() {
    let backend = TestBackend::tcp("a", "127.0.0.1:0").await.unwrap();
    let director = Director::start(&config(&backend.url(), "shaper = \"x0\""));
    // The rates add up to 1: nothing to borrow, vip stays at its rate ...
    let vip = hold_n(&director, "vip", 3).await;
    wait_for(
        &director,
        "vip under x0",
        Load {
            held: held(0, 2, 0),
            queued: [0, 1, 0],
        },
    )
    .await;
    // ... and the root gets no token while 8 are idle.
    let root = hold_n(&director, "", 1).await;
    wait_for(
        &director,
        "root under x0",
        Load {
            held: held(0, 2, 0),
            queued: [1, 1, 0],
        },
    )
    .await;
    drop(root);
    release_all(&director, &backend, vip).await;
}

#[test]
fn an_unknown_shaper_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("director.toml");
    std::fs::write(&path, config("http://127.0.0.1:1", "shaper = \"linux\"")).unwrap();
    let (ok, text) = check(&path);
    assert!(!ok, "{text}");
    assert!(
        text.contains("director.toml:6:1: clusters.app.shaper: unknown variant `linux`"),
        "{text}"
    );
}
