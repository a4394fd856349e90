use http_body_util::BodyExt;
use tower::{Layer, ServiceExt, service_fn};

use super::*;

/// An inner service that answers 200 "ok", so a 200 proves the request got through.
fn guarded(
    layer: &AuthLayer,
) -> Auth<
    impl tower_service::Service<
        Request<Body>,
        Response = Response<Body>,
        Error = std::convert::Infallible,
    > + Clone,
> {
    layer.layer(service_fn(|_req: Request<Body>| async {
        Ok::<_, std::convert::Infallible>(Response::new(director_core::body::full("ok")))
    }))
}

async fn status(
    layer: &AuthLayer,
    method: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Response<Body>) {
    let mut req = Request::builder().method(method).uri("/api/app");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = guarded(layer)
        .oneshot(req.body(director_core::body::empty()).unwrap())
        .await
        .unwrap();
    (resp.status(), resp)
}

fn both() -> AuthLayer {
    AuthLayer::new(Some("full-token"), Some("read-token"))
}

#[tokio::test]
async fn no_token_configured_is_open() {
    let open = AuthLayer::new(None, Some(""));
    assert!(open.is_open());
    assert_eq!(status(&open, "GET", &[]).await.0, 200);
    assert_eq!(status(&open, "POST", &[]).await.0, 200);
    assert_eq!(
        status(&open, "DELETE", &[("authorization", "Bearer whatever")])
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn missing_token_is_401_with_a_bearer_challenge_and_json() {
    let (code, resp) = status(&both(), "GET", &[]).await;
    assert_eq!(code, 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"director\""
    );
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains("authentication required")
    );
    assert!(body.ends_with(b"\n"));
}

#[tokio::test]
async fn wrong_token_is_401_invalid_token() {
    for headers in [
        vec![("authorization", "Bearer full-token-x")],
        vec![("authorization", "Bearer full")],
        vec![("authorization", "Basic ZnVsbC10b2tlbg==")],
        vec![("cookie", "director-token=nope")],
    ] {
        let (code, resp) = status(&both(), "GET", &headers).await;
        assert_eq!(code, 401, "{headers:?}");
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        if headers[0].0 == "authorization" && headers[0].1.starts_with("Basic") {
            assert_eq!(challenge, "Bearer realm=\"director\"");
        } else {
            assert!(challenge.contains("invalid_token"), "{challenge}");
        }
    }
}

#[tokio::test]
async fn full_token_may_do_anything() {
    for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "LOCK", "UNLOCK"] {
        let (code, _) = status(&both(), method, &[("authorization", "Bearer full-token")]).await;
        assert_eq!(code, 200, "{method}");
    }
    assert_eq!(
        status(&both(), "POST", &[("authorization", "bearer  full-token ")])
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn read_token_may_only_read() {
    let read = [("authorization", "Bearer read-token")];
    assert_eq!(status(&both(), "GET", &read).await.0, 200);
    assert_eq!(status(&both(), "HEAD", &read).await.0, 200);
    for method in ["POST", "PUT", "DELETE", "LOCK", "UNLOCK"] {
        let (code, resp) = status(&both(), method, &read).await;
        assert_eq!(code, 403, "{method}");
        assert!(resp.headers().get("www-authenticate").is_none());
    }
}

#[tokio::test]
async fn only_a_read_token_configured_refuses_every_write() {
    let layer = AuthLayer::new(None, Some("read-token"));
    assert_eq!(
        status(&layer, "GET", &[("authorization", "Bearer read-token")])
            .await
            .0,
        200
    );
    assert_eq!(
        status(&layer, "POST", &[("authorization", "Bearer read-token")])
            .await
            .0,
        403
    );
    assert_eq!(status(&layer, "POST", &[]).await.0, 401);
}

#[tokio::test]
async fn the_cookie_carries_the_token_too() {
    let full = [("cookie", "theme=dark; director-token=full-token; x=1")];
    assert_eq!(status(&both(), "POST", &full).await.0, 200);
    let read = [("cookie", "director-token=\"read-token\"")];
    assert_eq!(status(&both(), "GET", &read).await.0, 200);
    assert_eq!(status(&both(), "PUT", &read).await.0, 403);
}

#[tokio::test]
async fn cross_origin_writes_are_refused_even_when_open() {
    let open = AuthLayer::new(None, None);
    let foreign = [
        ("host", "127.0.0.1:8081"),
        ("origin", "https://evil.example"),
    ];
    assert_eq!(status(&open, "POST", &foreign).await.0, 403);
    assert_eq!(status(&open, "GET", &foreign).await.0, 200);
    let same = [
        ("host", "127.0.0.1:8081"),
        ("origin", "http://127.0.0.1:8081"),
    ];
    assert_eq!(status(&open, "POST", &same).await.0, 200);
    let with_token = [
        ("host", "127.0.0.1:8081"),
        ("origin", "http://attacker:8081"),
        ("cookie", "director-token=full-token"),
    ];
    assert_eq!(status(&both(), "DELETE", &with_token).await.0, 403);
}

#[test]
fn debug_never_shows_tokens() {
    let text = format!("{:?}", both());
    assert!(!text.contains("token\""), "{text}");
    assert!(!text.contains("full-token"));
}
