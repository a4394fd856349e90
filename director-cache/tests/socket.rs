//! The cache behind a real hyper HTTP/1.1 server on loopback: what a hyper connection does
//! with the body (it stops polling once `is_end_stream` is true) must still store the object.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use director_cache::{CacheConfig, CacheHandle};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;

#[tokio::test]
async fn second_request_over_loopback_is_a_hit() {
    let origin_calls = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&origin_calls);
    let origin = tower::service_fn(move |_req: Request<hyper::body::Incoming>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async {
            let res = Response::builder()
                .header("cache-control", "max-age=60")
                .body(Full::new(Bytes::from_static(b"from origin")))
                .unwrap();
            Ok::<_, Infallible>(res)
        }
    });
    let cache = CacheHandle::new(CacheConfig::default());
    let svc = ServiceBuilder::new().layer(cache.layer()).service(origin);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        // Exactly the two connections of this test.
        for _ in 0..2 {
            let (io, _) = listener.accept().await.unwrap();
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), svc)
                    .await;
            });
        }
    });

    let mut seen = Vec::new();
    for _ in 0..2 {
        let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let req = Request::get("/x")
            .header("host", "example.com")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
            .await
            .unwrap()
            .unwrap();
        let x_cache = res.headers()["x-cache"].to_str().unwrap().to_owned();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        seen.push((x_cache, body));
    }
    server.await.unwrap();
    assert_eq!(
        seen[0],
        ("MISS".to_owned(), Bytes::from_static(b"from origin"))
    );
    assert_eq!(
        seen[1],
        ("HIT".to_owned(), Bytes::from_static(b"from origin"))
    );
    assert_eq!(origin_calls.load(Ordering::SeqCst), 1);
}
