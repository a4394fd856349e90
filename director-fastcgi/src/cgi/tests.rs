use std::collections::HashMap;

use http::{Request, StatusCode, Version};
use proptest::prelude::*;

use super::*;

fn params_of(req: Request<()>, len: Option<u64>, config: &CgiConfig) -> HashMap<String, String> {
    let (head, ()) = req.into_parts();
    build_params(&head, len, config)
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.to_vec()).unwrap()))
        .collect()
}

fn config() -> CgiConfig {
    CgiConfig {
        document_root: "/srv/app/".to_owned(),
        ..CgiConfig::default()
    }
}

#[test]
fn get_request_variables() {
    let mut req = Request::get("/blog/index.php/2024/post?x=1&y=%20")
        .header("host", "example.org:8080")
        .header("x-forwarded-for", "10.0.0.1")
        .header("accept", "text/html")
        .header("accept", "text/plain")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("proxy", "http://evil")
        .body(())
        .unwrap();
    req.extensions_mut().insert(CgiContext {
        remote_addr: Some("192.0.2.7:51000".parse().unwrap()),
        server_addr: Some("[2001:db8::1]:8443".parse().unwrap()),
        https: true,
        remote_user: None,
    });
    let p = params_of(req, None, &config());
    assert_eq!(p["GATEWAY_INTERFACE"], "CGI/1.1");
    assert_eq!(p["SERVER_PROTOCOL"], "HTTP/1.1");
    assert_eq!(p["REQUEST_METHOD"], "GET");
    assert_eq!(p["REQUEST_URI"], "/blog/index.php/2024/post?x=1&y=%20");
    assert_eq!(p["QUERY_STRING"], "x=1&y=%20");
    assert_eq!(p["DOCUMENT_ROOT"], "/srv/app");
    assert_eq!(p["SCRIPT_NAME"], "/blog/index.php");
    assert_eq!(p["SCRIPT_FILENAME"], "/srv/app/blog/index.php");
    assert_eq!(p["PATH_INFO"], "/2024/post");
    assert_eq!(p["PATH_TRANSLATED"], "/srv/app/2024/post");
    assert_eq!(p["SERVER_NAME"], "example.org");
    assert_eq!(p["SERVER_PORT"], "8443");
    assert_eq!(p["SERVER_ADDR"], "2001:db8::1");
    assert_eq!(p["REMOTE_ADDR"], "192.0.2.7");
    assert_eq!(p["REMOTE_PORT"], "51000");
    assert_eq!(p["HTTPS"], "on");
    assert_eq!(p["REQUEST_SCHEME"], "https");
    assert_eq!(p["HTTP_X_FORWARDED_FOR"], "10.0.0.1");
    assert_eq!(p["HTTP_ACCEPT"], "text/html, text/plain");
    assert_eq!(p["HTTP_COOKIE"], "a=1; b=2");
    assert_eq!(p["HTTP_HOST"], "example.org:8080");
    assert!(!p.contains_key("HTTP_PROXY"), "httpoxy");
    assert!(!p.contains_key("CONTENT_LENGTH"));
    assert!(!p.contains_key("CONTENT_TYPE"));
}

#[test]
fn defaults_without_context() {
    let req = Request::get("/")
        .version(Version::HTTP_10)
        .body(())
        .unwrap();
    let p = params_of(req, None, &config());
    assert_eq!(p["SERVER_PROTOCOL"], "HTTP/1.0");
    assert_eq!(p["SERVER_NAME"], "localhost");
    assert_eq!(p["SERVER_PORT"], "80");
    assert_eq!(p["SCRIPT_NAME"], "/index.php");
    assert_eq!(p["PATH_INFO"], "");
    assert!(!p.contains_key("PATH_TRANSLATED"));
    assert!(!p.contains_key("REMOTE_ADDR"));
    assert!(!p.contains_key("HTTPS"));
}

#[test]
fn body_variables_only_with_a_body() {
    let req = Request::post("/form.php")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("content-length", "7")
        .body(())
        .unwrap();
    let p = params_of(req, Some(7), &config());
    assert_eq!(p["CONTENT_TYPE"], "application/x-www-form-urlencoded");
    assert_eq!(p["CONTENT_LENGTH"], "7");
    assert!(!p.contains_key("HTTP_CONTENT_TYPE"));
    assert!(!p.contains_key("HTTP_CONTENT_LENGTH"));
}

#[test]
fn front_controller_mapping_and_extras() {
    let cfg = CgiConfig {
        script_mapping: ScriptMapping::FrontController("/app.php".to_owned()),
        extra_params: vec![("APP_ENV".to_owned(), "prod".to_owned())],
        ..config()
    };
    let p = params_of(Request::get("/a/b%20c").body(()).unwrap(), None, &cfg);
    assert_eq!(p["SCRIPT_NAME"], "/app.php");
    assert_eq!(p["SCRIPT_FILENAME"], "/srv/app/app.php");
    assert_eq!(p["PATH_INFO"], "/a/b c");
    assert_eq!(p["APP_ENV"], "prod");
}

#[test]
fn traversal_cannot_leave_the_document_root() {
    let p = params_of(
        Request::get("/x/%2e%2e/../../etc/passwd.php")
            .body(())
            .unwrap(),
        None,
        &config(),
    );
    assert_eq!(p["SCRIPT_FILENAME"], "/srv/app/etc/passwd.php");
}

#[test]
fn normalize_cases() {
    let cases: &[(&str, &str)] = &[
        ("/", "/"),
        ("", "/"),
        ("/a//b/", "/a/b/"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/../..", "/"),
        ("/a/.", "/a/"),
    ];
    for (input, want) in cases {
        assert_eq!(normalize_path(input.as_bytes()), want.as_bytes(), "{input}");
    }
}

#[test]
fn percent_decode_keeps_malformed_escapes() {
    assert_eq!(percent_decode(b"a%20b%zz%4"), b"a b%zz%4");
}

#[test]
fn var_names() {
    assert_eq!(http_var_name("x-real.ip"), "HTTP_X_REAL_IP");
}

fn head(block: &str) -> CgiResponseHead {
    parse_response_head(block.as_bytes(), 1024)
        .unwrap()
        .unwrap()
        .0
}

#[test]
fn status_header_sets_the_status() {
    let h = head("Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nbody");
    assert_eq!(h.status, StatusCode::NOT_FOUND);
    assert_eq!(h.headers["content-type"], "text/plain");
    assert!(!h.headers.contains_key("status"));
}

#[test]
fn consumed_counts_the_blank_line() {
    let (_, n) = parse_response_head(b"A: b\n\nrest", 1024).unwrap().unwrap();
    assert_eq!(n, 6);
}

#[test]
fn status_wins_over_location() {
    let h = head("Status: 301 Moved Permanently\r\nLocation: http://x/\r\n\r\n");
    assert_eq!(h.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(h.headers["location"], "http://x/");
    let h = head("Location: http://x/\r\nStatus: 303\r\n\r\n");
    assert_eq!(h.status, StatusCode::SEE_OTHER);
}

#[test]
fn client_and_local_redirects() {
    let h = head("Location: https://example.org/next\r\n\r\n");
    assert_eq!(h.status, StatusCode::FOUND);
    assert_eq!(h.local_redirect, None);
    let h = head("Location: /login\r\n\r\n");
    assert_eq!(h.status, StatusCode::FOUND);
    assert_eq!(h.local_redirect, Some(LocalRedirect("/login".to_owned())));
}

#[test]
fn hop_by_hop_headers_are_dropped() {
    let h = head("Connection: close\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n");
    assert!(h.headers.get("connection").is_none());
    assert!(h.headers.get("transfer-encoding").is_none());
    assert_eq!(h.headers.get_all("x-a").iter().count(), 2);
}

#[test]
fn incomplete_and_oversize_blocks() {
    assert_eq!(parse_response_head(b"A: b\r\n", 1024), Ok(None));
    let big = format!("X: {}\r\n", "a".repeat(2000));
    assert_eq!(
        parse_response_head(big.as_bytes(), 1024),
        Err(HeadError::TooLarge(1024))
    );
    let big_complete = format!("X: {}\r\n\r\n", "a".repeat(2000));
    assert_eq!(
        parse_response_head(big_complete.as_bytes(), 1024),
        Err(HeadError::TooLarge(1024))
    );
}

#[test]
fn bad_status_is_rejected() {
    for block in [
        "Status: abc\r\n\r\n",
        "Status: 99\r\n\r\n",
        "Status: 1000\r\n\r\n",
    ] {
        assert_eq!(
            parse_response_head(block.as_bytes(), 1024),
            Err(HeadError::BadStatus),
            "{block}"
        );
    }
    assert!(matches!(
        parse_response_head(b"no colon here\r\n\r\n", 1024),
        Err(HeadError::Malformed(_))
    ));
}

proptest! {
    #[test]
    fn head_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_response_head(&bytes, 512);
    }

    #[test]
    fn normalized_paths_have_no_dot_segments(path in "(/|[a-z]|\\.|%2e|%2f)*") {
        let norm = normalize_path(&percent_decode(path.as_bytes()));
        prop_assert!(norm.starts_with(b"/"));
        for seg in norm.split(|b| *b == b'/') {
            prop_assert!(seg != b"." && seg != b"..");
        }
    }

    #[test]
    fn extension_split_reassembles_the_path(path in "(/[a-z.]{0,6}){1,5}") {
        let norm = normalize_path(path.as_bytes());
        let cfg = CgiConfig { index: None, ..CgiConfig::default() };
        let (script, info) = split_script(&norm, &cfg);
        let mut joined = script.clone();
        joined.extend_from_slice(&info);
        prop_assert_eq!(joined, norm);
    }
}
