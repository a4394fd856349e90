//! Response buffering through the binary (`buffer-responses`): a slow client no longer holds
//! the backend's only slot for its whole download, responses that must stream still do, and
//! memory stays bounded with many slow clients at once.
//!
//! The backend here is a raw HTTP/1.1 server so the test knows exactly what it has sent.

mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::Notify,
};

use support::*;

const BIG: usize = 20 * 1024 * 1024;

/// What the raw backend has done.
#[derive(Default)]
struct Seen {
    /// Request paths, in arrival order.
    paths: Mutex<Vec<String>>,
    /// Big bodies written to the end.
    big_done: AtomicUsize,
    /// Lets `/sse` and `/unbuffered` send their second event.
    go: Notify,
}

impl Seen {
    fn saw(&self, path: &str) -> bool {
        self.paths.lock().unwrap().iter().any(|p| p == path)
    }
}

fn byte_at(i: usize) -> u8 {
    (i % 251) as u8
}

/// `/big` sends BIG bytes, `/sse` (text/event-stream) and `/unbuffered` (X-Accel-Buffering: no)
/// send one event, wait for `go`, then a second; anything else is `ok`.
async fn backend() -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve(stream, state.clone()));
        }
    });
    (url, seen)
}

async fn serve(stream: TcpStream, seen: Arc<Seen>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or("").to_owned();
        loop {
            let mut header = String::new();
            if read.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
        }
        seen.paths.lock().unwrap().push(path.clone());
        let ok = match path.as_str() {
            "/big" => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
                let mut ok = write.write_all(head.as_bytes()).await.is_ok();
                let chunk: Vec<u8> = (0..64 * 1024).map(byte_at).collect();
                let mut sent = 0;
                while ok && sent < BIG {
                    ok = write.write_all(&chunk).await.is_ok();
                    sent += chunk.len();
                }
                if ok {
                    seen.big_done.fetch_add(1, Ordering::SeqCst);
                }
                ok
            }
            "/sse" | "/unbuffered" => {
                let kind = if path == "/sse" {
                    "Content-Type: text/event-stream"
                } else {
                    "Content-Type: text/plain\r\nX-Accel-Buffering: no"
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\n{kind}\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n"
                );
                let _ = write.write_all(head.as_bytes()).await;
                seen.go.notified().await;
                write
                    .write_all(b"9\r\ndata: 2\n\n\r\n0\r\n\r\n")
                    .await
                    .is_ok()
            }
            _ => write
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .is_ok(),
        };
        if !ok {
            return;
        }
    }
}

fn config(url: &str, extra: &str) -> String {
    with_admin(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"off\"\n\n[clusters.app]\n\
         max-retry-count = 0\n{extra}\n\n[[clusters.app.backends]]\nname = \"b\"\nurl = \"{url}\"\n\
         capacity = 1\n\n[[routes]]\ncluster = \"app\"\n"
    ))
}

/// A client downloading `/big` over a socket with a small receive buffer, so what it has read
/// is close to what the proxy could hand it.
struct Download {
    read: Arc<AtomicUsize>,
    fast: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<u8>>,
}

impl Download {
    /// Starts reading at about `rate` bytes a second (until [`Download::hurry`]), checking the
    /// body byte by byte.
    async fn start(director: &Director, rate: usize) -> Download {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        let mut stream = socket.connect(director.socket_addr()).await.unwrap();
        stream
            .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let read = Arc::new(AtomicUsize::new(0));
        let fast = Arc::new(AtomicBool::new(false));
        let (counter, hurry) = (read.clone(), fast.clone());
        let task = tokio::spawn(async move {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let step = rate / 16;
            let mut buf = vec![0u8; step];
            let mut got = 0;
            while got < BIG {
                let want = step.min(BIG - got);
                let n = stream.read(&mut buf[..want]).await.unwrap();
                assert!(n > 0, "the body ended after {got} bytes");
                for (i, b) in buf[..n].iter().enumerate() {
                    assert_eq!(*b, byte_at((got + i) % (64 * 1024)), "byte {}", got + i);
                }
                got += n;
                counter.store(got, Ordering::SeqCst);
                if !hurry.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(1000 / 16)).await;
                }
            }
            head
        });
        Download { read, fast, task }
    }

    fn read(&self) -> usize {
        self.read.load(Ordering::SeqCst)
    }

    fn hurry(&self) {
        self.fast.store(true, Ordering::SeqCst);
    }

    async fn finish(self) -> String {
        self.hurry();
        let head = tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the download ends")
            .unwrap();
        String::from_utf8(head).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_frees_the_only_slot_once_its_response_is_buffered() {
    let (url, seen) = backend().await;
    let director = Director::start(&config(&url, "buffer-responses = 1048576"));
    let slow = Download::start(&director, 1 << 20).await;
    wait_until("the backend gets the download", || seen.saw("/big")).await;

    // The slot frees once the 20 MB are in Director: the next request goes through while the
    // client (1 MiB/s) has read well under half.
    let reply = tokio::time::timeout(Duration::from_secs(8), get(&director.url("/next")))
        .await
        .expect("the second request is served while the first still downloads");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(seen.big_done.load(Ordering::SeqCst), 1);
    assert!(
        slow.read() < BIG / 2,
        "the slow client read {} bytes first",
        slow.read()
    );

    let head = slow.finish().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {BIG}"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_buffering_the_slow_client_keeps_the_slot() {
    let (url, seen) = backend().await;
    let director = Director::start(&config(&url, ""));
    let slow = Download::start(&director, 1 << 20).await;
    wait_until("the backend gets the download", || seen.saw("/big")).await;

    let next = tokio::spawn({
        let url = director.url("/next");
        async move { get(&url).await }
    });
    // The second request waits in the queue while the first client is far from done.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while queued(&director, "app").await != 1 {
        assert!(tokio::time::Instant::now() < deadline, "never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(slow.read() < BIG / 2, "read {}", slow.read());
    assert!(!seen.saw("/next"));
    assert_eq!(seen.big_done.load(Ordering::SeqCst), 0);

    slow.finish().await;
    let reply = next.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// Reads from `stream` until `needle` has arrived (bounded).
async fn read_until(stream: &mut TcpStream, seen: &mut Vec<u8>, needle: &str) {
    let read = async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(seen).contains(needle) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before {needle:?}: {}",
                String::from_utf8_lossy(seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("no {needle:?}: {}", String::from_utf8_lossy(seen)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_and_unbuffered_responses_still_stream_through_a_buffered_cluster() {
    let (url, seen) = backend().await;
    let director = Director::start(&config(&url, "buffer-responses = true"));
    for path in ["/sse", "/unbuffered"] {
        let mut stream = TcpStream::connect(director.socket_addr()).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        // The first event arrives while the backend still holds back the second.
        read_until(&mut stream, &mut got, "data: 1").await;
        assert!(!String::from_utf8_lossy(&got).contains("data: 2"));
        seen.go.notify_one();
        read_until(&mut stream, &mut got, "data: 2").await;
    }
}

/// VmRSS of a process now, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_with_many_slow_clients() {
    const CLIENTS: usize = 10;
    const MEMORY: u64 = 1 << 20;
    let (url, seen) = backend().await;
    let director = Director::start(
        &config(&url, &format!("buffer-responses = {MEMORY}"))
            .replace("capacity = 1", "capacity = 0"),
    );
    // Warm up, then take the baseline.
    assert_eq!(get(&director.url("/warm")).await.status, 200);
    let baseline = rss_kib(director.pid());

    // Ten clients that read nothing yet: all 200 MB leave the backend, into Director's spools.
    let mut downloads = Vec::new();
    for _ in 0..CLIENTS {
        downloads.push(Download::start(&director, 1 << 16).await);
    }
    wait_until("every body has left the backend", || {
        seen.big_done.load(Ordering::SeqCst) == CLIENTS
    })
    .await;
    let loaded = rss_kib(director.pid());
    let peak = director.peak_rss_kib();

    // The budget: each response's memory (1 MiB) plus a margin for the twenty connections'
    // buffers (hyper's grow to 400 KB each way), the blocking pool's threads and allocator
    // slack (measured: 40 to 54 MiB over the baseline, on two busy cores). The margin is wide so
    // that a loaded CI machine cannot make it flake, and still far below what holding the
    // 200 MiB in memory would show.
    let budget_kib = CLIENTS as u64 * MEMORY / 1024;
    let margin_kib = 110 * 1024;
    assert!(
        peak < baseline + budget_kib + margin_kib,
        "baseline {baseline} KiB, now {loaded} KiB, peak {peak} KiB"
    );
    eprintln!("rss: baseline {baseline} KiB, loaded {loaded} KiB, peak {peak} KiB");
    for d in downloads {
        d.finish().await;
    }
}

#[test]
fn a_bad_buffer_setting_is_refused_with_its_key() {
    for value in ["0", "\"lots\"", "-1"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("director.toml");
        let text = config("http://127.0.0.1:1", &format!("buffer-responses = {value}"));
        std::fs::write(&path, text).unwrap();
        let (ok, out) = check(&path);
        assert!(!ok, "{value} accepted: {out}");
        assert!(out.contains("clusters.app.buffer-responses"), "{out}");
    }
}
