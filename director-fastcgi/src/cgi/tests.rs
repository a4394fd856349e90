use std::collections::HashMap;

use http::{Request, StatusCode, Version};
use proptest::prelude::*;

use super::*;

fn params_of(req: Request<()>, len: Option<u64>, config: &CgiConfig) -> HashMap<String, String> {
    let (head, ()) = req.into_parts();
    build_params(&head, len, config)
        .expect("a valid request")
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.to_vec()).unwrap()))
        .collect()
}

fn clone(req: &Request<()>) -> Request<()> {
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(req.uri().clone())
        .body(())
        .unwrap();
    *out.headers_mut() = req.headers().clone();
    out
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

/// The names of a request's params in order, for the "never sent twice" checks.
fn names_of(req: Request<()>, config: &CgiConfig) -> Vec<String> {
    let (head, ()) = req.into_parts();
    build_params(&head, None, config)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

fn assert_unique(names: &[String]) {
    let mut sorted = names.to_vec();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        names.len(),
        "a name was sent twice: {names:?}"
    );
}

#[test]
fn underscore_twins_are_dropped_by_default() {
    let req = Request::get("/index.php")
        .header("x-forwarded-for", "127.0.0.1")
        .header("x_forwarded_for", "6.6.6.6")
        .header("x_custom", "1")
        .body(())
        .unwrap();
    let names = names_of(clone(&req), &config());
    assert_unique(&names);
    let p = params_of(req, None, &config());
    assert_eq!(p["HTTP_X_FORWARDED_FOR"], "127.0.0.1");
    assert!(
        !p.contains_key("HTTP_X_CUSTOM"),
        "any underscore name is dropped"
    );
}

#[test]
fn an_underscore_twin_sent_first_is_dropped_too() {
    // Order must not matter: the twin arrives before the real header.
    let req = Request::get("/index.php")
        .header("x_forwarded_proto", "https")
        .header("x-forwarded-proto", "http")
        .body(())
        .unwrap();
    let p = params_of(req, None, &config());
    assert_eq!(p["HTTP_X_FORWARDED_PROTO"], "http");
}

#[test]
fn with_underscores_allowed_the_dashed_spelling_wins() {
    let cfg = CgiConfig {
        underscores_in_headers: true,
        ..config()
    };
    let req = || {
        Request::get("/index.php")
            .header("x_forwarded_host", "evil.example")
            .header("x-forwarded-host", "good.example")
            .header("x_custom", "1")
            .body(())
            .unwrap()
    };
    assert_unique(&names_of(req(), &cfg));
    let p = params_of(req(), None, &cfg);
    assert_eq!(p["HTTP_X_FORWARDED_HOST"], "good.example");
    assert_eq!(
        p["HTTP_X_CUSTOM"], "1",
        "a lone underscore name passes when allowed"
    );
}

#[test]
fn two_underscore_spellings_are_sent_once() {
    let cfg = CgiConfig {
        underscores_in_headers: true,
        ..config()
    };
    let req = Request::get("/index.php")
        .header("x_a-b", "1")
        .header("x-a_b", "2")
        .body(())
        .unwrap();
    assert_unique(&names_of(req, &cfg));
}

#[test]
fn other_punctuation_in_header_names_is_dropped() {
    // `.` and `~` are valid token characters that also map to `_`.
    let req = Request::get("/index.php")
        .header("x.forwarded.for", "6.6.6.6")
        .header("x~forwarded~for", "6.6.6.7")
        .header("x-forwarded-for", "127.0.0.1")
        .body(())
        .unwrap();
    let names = names_of(clone(&req), &config());
    assert_unique(&names);
    assert_eq!(
        params_of(req, None, &config())["HTTP_X_FORWARDED_FOR"],
        "127.0.0.1"
    );
}

#[test]
fn headers_cannot_become_content_length_or_type() {
    let req = Request::post("/index.php")
        .header("content-length", "3")
        .header("content-type", "text/plain")
        .body(())
        .unwrap();
    let p = params_of(req, Some(3), &config());
    assert_eq!(p["CONTENT_LENGTH"], "3");
    assert!(!p.contains_key("HTTP_CONTENT_LENGTH"));
    assert!(!p.contains_key("HTTP_CONTENT_TYPE"));

    // Even when underscores are allowed, `Content_Length` does not make HTTP_CONTENT_LENGTH.
    let cfg = CgiConfig {
        underscores_in_headers: true,
        ..config()
    };
    let req = Request::get("/index.php")
        .header("content_length", "999")
        .header("content_type", "text/evil")
        .body(())
        .unwrap();
    let p = params_of(req, None, &cfg);
    assert!(!p.contains_key("HTTP_CONTENT_LENGTH"));
    assert!(!p.contains_key("HTTP_CONTENT_TYPE"));
}

#[test]
fn operator_params_replace_computed_ones_and_no_header_overrides_them() {
    let cfg = CgiConfig {
        extra_params: vec![
            ("SERVER_NAME".to_owned(), "app.example".to_owned()),
            ("HTTPS".to_owned(), "on".to_owned()),
            ("HTTP_X_TENANT".to_owned(), "blue".to_owned()),
        ],
        ..config()
    };
    let req = || {
        Request::get("/index.php")
            .header("host", "other.example")
            .header("x-tenant", "red")
            .body(())
            .unwrap()
    };
    assert_unique(&names_of(req(), &cfg));
    let p = params_of(req(), None, &cfg);
    assert_eq!(p["SERVER_NAME"], "app.example");
    assert_eq!(p["HTTPS"], "on");
    assert_eq!(
        p["HTTP_X_TENANT"], "blue",
        "the operator's value, not the client's"
    );
}

#[test]
fn a_nul_in_the_decoded_path_is_refused() {
    let (head, ()) = Request::get("/vars.php%00.css")
        .body(())
        .unwrap()
        .into_parts();
    assert_eq!(
        build_params(&head, None, &config()),
        Err(RefusedRequest::ControlByteInPath)
    );
}

#[test]
fn other_control_bytes_in_the_decoded_path_are_refused() {
    for path in [
        "/a%0d%0a.php",
        "/a.php/%09x",
        "/%7f.php",
        "/x%1b.php",
        "/a.php/%0A",
    ] {
        let (head, ()) = Request::get(path).body(()).unwrap().into_parts();
        assert_eq!(
            build_params(&head, None, &config()),
            Err(RefusedRequest::ControlByteInPath),
            "{path}"
        );
    }
    // Printable escapes and UTF-8 stay fine.
    let (head, ()) = Request::get("/caf%C3%A9/%20a.php")
        .body(())
        .unwrap()
        .into_parts();
    assert!(build_params(&head, None, &config()).is_ok());
}

#[test]
fn header_var_names() {
    assert_eq!(
        header_var_name("x-forwarded-for", false).as_deref(),
        Some("HTTP_X_FORWARDED_FOR")
    );
    assert_eq!(header_var_name("x_forwarded_for", false), None);
    assert_eq!(
        header_var_name("x_forwarded_for", true).as_deref(),
        Some("HTTP_X_FORWARDED_FOR")
    );
    assert_eq!(header_var_name("x.forwarded", true), None);
    assert_eq!(header_var_name("", true), None);
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

#[test]
fn response_framing_follows_content_length_and_the_status() {
    let head = |block: &str| {
        parse_response_head(block.as_bytes(), 4096)
            .unwrap()
            .unwrap()
            .0
    };
    let cases: &[(bool, &str, Result<Framing, ()>)] = &[
        (
            false,
            "Content-Type: text/plain\r\n\r\n",
            Ok(Framing::UntilEnd),
        ),
        (false, "Content-Length: 42\r\n\r\n", Ok(Framing::Length(42))),
        (false, "Content-Length: 0\r\n\r\n", Ok(Framing::Length(0))),
        (
            false,
            "Content-Length: 7, 7\r\n\r\n",
            Ok(Framing::Length(7)),
        ),
        (
            false,
            "Content-Length: 7\r\nContent-Length: 7\r\n\r\n",
            Ok(Framing::Length(7)),
        ),
        (true, "Content-Length: 42\r\n\r\n", Ok(Framing::Empty)),
        (false, "Status: 204\r\n\r\n", Ok(Framing::Empty)),
        (
            false,
            "Status: 304\r\nContent-Length: 42\r\n\r\n",
            Ok(Framing::Empty),
        ),
        (false, "Content-Length: 7, 8\r\n\r\n", Err(())),
        (
            false,
            "Content-Length: 7\r\nContent-Length: 8\r\n\r\n",
            Err(()),
        ),
        (false, "Content-Length: -1\r\n\r\n", Err(())),
        (false, "Content-Length: +1\r\n\r\n", Err(())),
        (false, "Content-Length: 0x10\r\n\r\n", Err(())),
        (false, "Content-Length: \r\n\r\n", Err(())),
        (
            false,
            "Content-Length: 99999999999999999999\r\n\r\n",
            Err(()),
        ),
    ];
    for (is_head, block, want) in cases {
        let got = response_framing(*is_head, &head(block)).map_err(|_| ());
        assert_eq!(&got, want, "{block:?}");
    }
}
