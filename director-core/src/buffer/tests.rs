use std::{
    convert::Infallible,
    sync::atomic::{AtomicBool, Ordering},
};

use http_body_util::{BodyExt, channel::Channel};

use super::*;

/// A body whose end the test can observe: `ended` is set once the spool task has read it all,
/// `dropped` once it has been let go.
struct Watched {
    inner: Body,
    ended: Arc<AtomicBool>,
    dropped: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.ended.store(true, Ordering::SeqCst);
        }
        polled
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

struct Flags {
    ended: Arc<AtomicBool>,
    dropped: Arc<AtomicBool>,
}

/// `n` chunks of `size` bytes; with `hold`, the body stays open after them.
fn chunks(n: usize, size: usize, hold: bool) -> (Body, Flags) {
    let (mut tx, rx) = Channel::<Bytes, Infallible>::new(1);
    tokio::spawn(async move {
        for i in 0..n {
            let _ = tx.send_data(Bytes::from(vec![i as u8; size])).await;
        }
        if hold {
            std::future::pending::<()>().await;
        }
    });
    let flags = Flags {
        ended: Arc::new(AtomicBool::new(false)),
        dropped: Arc::new(AtomicBool::new(false)),
    };
    let body = crate::body::boxed(Watched {
        inner: crate::body::boxed(rx.map_err(|e| match e {})),
        ended: flags.ended.clone(),
        dropped: flags.dropped.clone(),
    });
    (body, flags)
}

async fn until(flag: &AtomicBool) {
    for _ in 0..2000 {
        if flag.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("never happened");
}

fn expected(n: usize, size: usize) -> Vec<u8> {
    (0..n).flat_map(|i| vec![i as u8; size]).collect()
}

#[tokio::test]
async fn the_upstream_is_read_to_its_end_before_the_client_reads_and_order_holds() {
    let (body, flags) = chunks(64, 1000, false);
    let limits = BufferLimits {
        memory: 4096,
        max_temp_file: 1 << 20,
    };
    let spooled = spool(body, limits);
    // Nobody reads yet: memory (4 KB) and the file take all 64 KB.
    until(&flags.ended).await;
    until(&flags.dropped).await;
    let got = spooled.collect().await.unwrap().to_bytes();
    assert_eq!(got.as_ref(), expected(64, 1000).as_slice());
}

#[tokio::test]
async fn beyond_memory_and_file_the_rest_streams_at_the_clients_pace() {
    let (body, flags) = chunks(64, 1000, false);
    let limits = BufferLimits {
        memory: 4096,
        max_temp_file: 8000,
    };
    let mut spooled = spool(body, limits);
    // 4 KB in memory and 8 KB in the file, then the task waits for the client. (Only a
    // sleep can show that something does not happen; the assertion holds however long.)
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!flags.ended.load(Ordering::SeqCst));
    let mut got = Vec::new();
    while let Some(frame) = spooled.frame().await {
        got.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert!(flags.ended.load(Ordering::SeqCst));
    assert_eq!(got, expected(64, 1000));
}

#[tokio::test]
async fn memory_only_without_a_temp_file() {
    let (body, flags) = chunks(16, 1000, false);
    let limits = BufferLimits {
        memory: 1 << 20,
        max_temp_file: 0,
    };
    let spooled = spool(body, limits);
    until(&flags.ended).await;
    let got = spooled.collect().await.unwrap().to_bytes();
    assert_eq!(got.as_ref(), expected(16, 1000).as_slice());
}

#[tokio::test]
async fn a_client_that_goes_away_lets_go_of_the_upstream() {
    let (body, flags) = chunks(2, 10, true);
    let spooled = spool(
        body,
        BufferLimits {
            memory: 1024,
            max_temp_file: 0,
        },
    );
    drop(spooled);
    until(&flags.dropped).await;
    assert!(!flags.ended.load(Ordering::SeqCst));
}

#[test]
fn what_must_stream() {
    let response = |headers: &[(&str, &str)], body: Body| {
        let mut r = Response::new(body);
        for (k, v) in headers {
            r.headers_mut().append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        r
    };
    let some = || crate::body::full("x");
    assert!(!must_stream(&response(
        &[("content-type", "text/html")],
        some()
    )));
    assert!(must_stream(&response(&[], crate::body::empty())));
    assert!(must_stream(&response(
        &[("content-type", "Text/Event-Stream; charset=utf-8")],
        some()
    )));
    assert!(must_stream(&response(
        &[("x-accel-buffering", "no")],
        some()
    )));
    assert!(!must_stream(&response(
        &[("x-accel-buffering", "yes")],
        some()
    )));
}

#[tokio::test]
async fn a_declared_length_stays_known() {
    let mut spooled = spool(
        crate::body::full(vec![7u8; 5000]),
        BufferLimits {
            memory: 1024,
            max_temp_file: 1 << 20,
        },
    );
    assert_eq!(spooled.size_hint().exact(), Some(5000));
    let first = spooled.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(spooled.size_hint().exact(), Some(5000 - first.len() as u64));
    let rest = spooled.collect().await.unwrap().to_bytes();
    assert_eq!(first.len() + rest.len(), 5000);
}
