use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

async fn call(method: Method, path: &str, auth: Option<&str>) -> Response<Body> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(auth) = auth {
        req = req.header(header::AUTHORIZATION, auth);
    }
    Ui::new()
        .oneshot(req.body(body::empty()).unwrap())
        .await
        .unwrap()
}

async fn text(r: Response<Body>) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn every_asset_is_served_with_its_type_and_hardening_headers() {
    for path in Ui::paths() {
        let r = call(Method::GET, path, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let h = r.headers();
        assert!(h.contains_key(header::CONTENT_SECURITY_POLICY), "{path}");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let len: usize = h[header::CONTENT_LENGTH].to_str().unwrap().parse().unwrap();
        assert!(len > 100, "{path} has content");
        assert_eq!(text(r).await.len(), len);
    }
}

#[tokio::test]
async fn pages_reference_only_embedded_assets() {
    // No CDN: every script and stylesheet a page names is one this service serves.
    for page in ["/ui/", "/ui/live"] {
        let html = text(call(Method::GET, page, None).await).await;
        for attr in ["src=\"", "href=\""] {
            for part in html.split(attr).skip(1) {
                let target = &part[..part.find('"').unwrap()];
                if target.starts_with("/ui/assets/") {
                    assert!(Ui::paths().any(|p| p == target), "{page}: {target}");
                } else {
                    assert!(
                        matches!(target, "/ui/" | "/ui/live" | "#main"),
                        "{page} links {target}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn the_root_redirects_to_the_overview() {
    for path in ["/", "/ui"] {
        let r = call(Method::GET, path, None).await;
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(r.headers()[header::LOCATION], "/ui/");
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let r = call(Method::GET, "/ui/nothing", None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    assert!(text(r).await.contains("/ui/nothing"));
    let r = call(Method::POST, "/ui/", None).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = call(Method::HEAD, "/ui/live", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(text(r).await.is_empty());
}

#[tokio::test]
async fn the_session_keeps_the_bearer_token_in_an_http_only_cookie() {
    let r = call(
        Method::POST,
        "/ui/session",
        Some("Bearer abcdefghijklmnop1"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        r.headers()[header::SET_COOKIE],
        "director-token=abcdefghijklmnop1; Path=/; HttpOnly; SameSite=Strict"
    );
    let r = call(Method::DELETE, "/ui/session", None).await;
    assert!(
        r.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = call(Method::POST, "/ui/session", None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = call(Method::POST, "/ui/session", Some("Bearer semi;colon-token")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.contains("bearer header"));
    let r = call(Method::GET, "/ui/session", None).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}
