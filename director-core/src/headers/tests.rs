use http::{Request, Response, StatusCode};

use super::*;

fn client() -> ClientInfo {
    ClientInfo::new(
        Some("192.0.2.7:5555".parse().unwrap()),
        Some("127.0.0.1:8080".parse().unwrap()),
        false,
    )
}

fn request(build: http::request::Builder) -> request::Parts {
    build.body(()).unwrap().into_parts().0
}

fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[test]
fn strips_hop_by_hop_and_connection_named_fields() {
    let mut parts = request(
        Request::get("/x")
            .header("host", "example.com")
            .header("connection", "keep-alive, X-Secret, host")
            .header("keep-alive", "timeout=5")
            .header("x-secret", "1")
            .header("te", "trailers")
            .header("transfer-encoding", "chunked")
            .header("proxy-authorization", "Basic abc")
            .header("proxy-connection", "keep-alive")
            .header("upgrade", "h2c")
            .header("x-kept", "yes"),
    );
    let upgrade = prepare_request(&mut parts, &client(), &HeaderPolicy::default());
    assert_eq!(upgrade, None, "no upgrade without Connection: upgrade");
    for gone in [
        "connection",
        "keep-alive",
        "x-secret",
        "te",
        "transfer-encoding",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(!parts.headers.contains_key(gone), "{gone} must be removed");
    }
    assert_eq!(values(&parts.headers, "host"), ["example.com"]);
    assert_eq!(values(&parts.headers, "x-kept"), ["yes"]);
}

#[test]
fn keeps_upgrade_for_tunnels() {
    let mut parts = request(
        Request::get("/ws")
            .header("host", "h")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-key", "k"),
    );
    let upgrade = prepare_request(&mut parts, &client(), &HeaderPolicy::default());
    assert_eq!(upgrade.unwrap(), "websocket");
    assert_eq!(values(&parts.headers, "connection"), ["upgrade"]);
    assert_eq!(values(&parts.headers, "upgrade"), ["websocket"]);
    assert_eq!(values(&parts.headers, "sec-websocket-key"), ["k"]);
}

#[test]
fn appends_x_forwarded_for() {
    let mut parts = request(Request::get("/").header("host", "h"));
    prepare_request(&mut parts, &client(), &HeaderPolicy::default());
    assert_eq!(values(&parts.headers, "x-forwarded-for"), ["192.0.2.7"]);

    let mut parts = request(
        Request::get("/")
            .header("host", "h")
            .header("x-forwarded-for", "10.1.1.1")
            .header("x-forwarded-for", "10.2.2.2, 10.3.3.3"),
    );
    prepare_request(&mut parts, &client(), &HeaderPolicy::default());
    assert_eq!(
        values(&parts.headers, "x-forwarded-for"),
        ["10.1.1.1, 10.2.2.2, 10.3.3.3, 192.0.2.7"]
    );
}

#[test]
fn ipv4_mapped_clients_appear_as_ipv4() {
    let info = ClientInfo::new(Some("[::ffff:192.0.2.9]:1".parse().unwrap()), None, false);
    let mut parts = request(Request::get("/").header("host", "h"));
    prepare_request(&mut parts, &info, &HeaderPolicy::default());
    assert_eq!(values(&parts.headers, "x-forwarded-for"), ["192.0.2.9"]);
}

#[test]
fn forwarded_proto_and_host_are_set_unless_trusted() {
    let build = || {
        request(
            Request::get("/")
                .header("host", "shop.example")
                .header("x-forwarded-proto", "https")
                .header("x-forwarded-host", "evil.example"),
        )
    };
    let mut parts = build();
    prepare_request(&mut parts, &client(), &HeaderPolicy::default());
    assert_eq!(values(&parts.headers, "x-forwarded-proto"), ["http"]);
    assert_eq!(values(&parts.headers, "x-forwarded-host"), ["shop.example"]);

    let trusting = HeaderPolicy::new(Some("director"), true).unwrap();
    let mut parts = build();
    prepare_request(&mut parts, &client(), &trusting);
    assert_eq!(values(&parts.headers, "x-forwarded-proto"), ["https"]);
    assert_eq!(values(&parts.headers, "x-forwarded-host"), ["evil.example"]);

    let tls = ClientInfo::new(client().remote, None, true);
    let mut parts = request(Request::get("/").header("host", "h"));
    prepare_request(&mut parts, &tls, &HeaderPolicy::default());
    assert_eq!(values(&parts.headers, "x-forwarded-proto"), ["https"]);
}

#[test]
fn via_is_appended_with_the_received_version() {
    let mut parts = request(
        Request::get("/")
            .version(Version::HTTP_10)
            .header("host", "h")
            .header("via", "1.1 edge"),
    );
    prepare_request(&mut parts, &client(), &HeaderPolicy::default());
    assert_eq!(values(&parts.headers, "via"), ["1.1 edge", "1.0 director"]);
    assert_eq!(parts.version, Version::HTTP_11);

    let quiet = HeaderPolicy::new(None, false).unwrap();
    let mut parts = request(Request::get("/").header("host", "h"));
    prepare_request(&mut parts, &client(), &quiet);
    assert!(!parts.headers.contains_key("via"));
}

#[test]
fn host_is_preserved_and_h2_authority_becomes_host() {
    let mut parts = request(
        Request::get("http://api.example:8443/a?b=c")
            .version(Version::HTTP_2)
            .header("accept", "*/*"),
    );
    prepare_request(&mut parts, &client(), &HeaderPolicy::default());
    assert_eq!(values(&parts.headers, "host"), ["api.example:8443"]);
    assert_eq!(parts.uri, "/a?b=c");
    assert_eq!(values(&parts.headers, "via"), ["2 director"]);
}

#[test]
fn expect_is_not_forwarded() {
    let mut parts = request(
        Request::post("/")
            .header("host", "h")
            .header("expect", "100-continue"),
    );
    prepare_request(&mut parts, &client(), &HeaderPolicy::default());
    assert!(!parts.headers.contains_key("expect"));
}

#[test]
fn response_rules() {
    let (mut parts, ()) = Response::builder()
        .status(200)
        .header("connection", "close, x-hop")
        .header("x-hop", "1")
        .header("transfer-encoding", "chunked")
        .header("keep-alive", "timeout=4")
        .header("x-sendfile", "/etc/passwd")
        .header("x-accel-redirect", "/internal/x")
        .header("set-cookie", "a=b")
        .header("via", "1.0 origin")
        .body(())
        .unwrap()
        .into_parts();
    prepare_response(&mut parts, &HeaderPolicy::default());
    for gone in [
        "connection",
        "x-hop",
        "transfer-encoding",
        "keep-alive",
        "x-sendfile",
        "x-accel-redirect",
    ] {
        assert!(!parts.headers.contains_key(gone), "{gone} must be removed");
    }
    assert_eq!(values(&parts.headers, "set-cookie"), ["a=b"]);
    assert_eq!(
        values(&parts.headers, "via"),
        ["1.0 origin", "1.1 director"]
    );
}

#[test]
fn switching_protocols_keeps_upgrade() {
    let (mut parts, ()) = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .body(())
        .unwrap()
        .into_parts();
    prepare_response(&mut parts, &HeaderPolicy::default());
    assert_eq!(values(&parts.headers, "upgrade"), ["websocket"]);
    assert_eq!(values(&parts.headers, "connection"), ["upgrade"]);
}

#[test]
fn max_forwards_rules() {
    let mut h = HeaderMap::new();
    assert_eq!(max_forwards(&Method::TRACE, &mut h), MaxForwards::Forward);
    h.insert("max-forwards", HeaderValue::from_static("3"));
    assert_eq!(max_forwards(&Method::GET, &mut h), MaxForwards::Forward);
    assert_eq!(values(&h, "max-forwards"), ["3"], "GET leaves it alone");
    assert_eq!(max_forwards(&Method::TRACE, &mut h), MaxForwards::Forward);
    assert_eq!(values(&h, "max-forwards"), ["2"]);
    assert_eq!(max_forwards(&Method::OPTIONS, &mut h), MaxForwards::Forward);
    assert_eq!(values(&h, "max-forwards"), ["1"]);
    h.insert("max-forwards", HeaderValue::from_static("0"));
    assert_eq!(
        max_forwards(&Method::TRACE, &mut h),
        MaxForwards::AnswerLocally
    );
    h.insert("max-forwards", HeaderValue::from_static("ten"));
    assert_eq!(max_forwards(&Method::TRACE, &mut h), MaxForwards::Invalid);
}

#[test]
fn trace_reflection_redacts_credentials() {
    let parts = request(
        Request::builder()
            .method("TRACE")
            .uri("/t?q=1")
            .header("host", "h")
            .header("authorization", "Bearer secret")
            .header("cookie", "sid=1")
            .header("x-probe", "p"),
    );
    let body = trace_reflection(&parts);
    assert!(body.starts_with("TRACE /t?q=1 HTTP/1.1\r\n"));
    assert!(body.contains("host: h\r\n"));
    assert!(body.contains("x-probe: p\r\n"));
    assert!(!body.contains("secret"));
    assert!(!body.contains("sid=1"));
    assert!(body.ends_with("\r\n\r\n"));
}

#[test]
fn pseudonyms_must_be_tokens() {
    assert!(HeaderPolicy::new(Some("edge-1.example_a~"), false).is_ok());
    assert!(HeaderPolicy::new(Some("two words"), false).is_err());
    assert!(HeaderPolicy::new(Some("bad\r\n"), false).is_err());
    assert!(HeaderPolicy::new(Some(""), false).is_err());
}

mod strip_property {
    use proptest::prelude::*;

    use super::*;

    /// The obvious, slow version of the rule: remove every standard hop-by-hop field and every
    /// field `Connection` names (except Host and Content-Length).
    fn reference(headers: &HeaderMap) -> Vec<(String, String)> {
        let mut named: Vec<String> = headers
            .get_all("connection")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        named.extend(
            [
                "connection",
                "keep-alive",
                "proxy-connection",
                "te",
                "trailer",
                "transfer-encoding",
                "upgrade",
                "proxy-authorization",
                "proxy-authenticate",
            ]
            .map(String::from),
        );
        let mut out: Vec<(String, String)> = headers
            .iter()
            .filter(|(n, _)| {
                n.as_str() == "host"
                    || n.as_str() == "content-length"
                    || !named.iter().any(|x| x == n.as_str())
            })
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        out.sort();
        out
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("connection".to_owned()),
            Just("keep-alive".to_owned()),
            Just("te".to_owned()),
            Just("upgrade".to_owned()),
            Just("transfer-encoding".to_owned()),
            Just("proxy-authorization".to_owned()),
            Just("host".to_owned()),
            Just("content-length".to_owned()),
            Just("x-a".to_owned()),
            Just("x-b".to_owned()),
            "[a-z]{1,3}",
        ]
    }

    proptest! {
        #[test]
        fn fast_path_matches_the_reference(
            fields in proptest::collection::vec((name(), "[a-z0-9]{0,4}"), 0..10),
            tokens in proptest::collection::vec(prop_oneof![name(), Just("close".to_owned()), Just("Keep-Alive".to_owned()), Just("X-A".to_owned())], 0..4),
        ) {
            let mut headers = HeaderMap::new();
            for (n, v) in &fields {
                headers.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
            }
            if !tokens.is_empty() {
                headers.append(header::CONNECTION, HeaderValue::from_str(&tokens.join(", ")).unwrap());
            }
            let expected = reference(&headers);
            let present = scan(&headers);
            strip_hop_by_hop(&mut headers, present);
            let mut got: Vec<(String, String)> = headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            got.sort();
            prop_assert_eq!(got, expected);
        }
    }
}

#[test]
fn two_host_fields_are_refused() {
    let mut parts = request(
        Request::get("/")
            .header("host", "a.example")
            .header("host", "b.example"),
    );
    assert_eq!(settle_host(&mut parts), Err(HostError::Several));
}

#[test]
fn invalid_hosts_are_refused() {
    for host in [
        "a b.example",
        "a.example/x",
        "user@a.example",
        "a.example:80x",
        "a.example:123456",
        ":80",
        "[::1",
        "[::1]x",
        "[zz]",
        "a\\b",
        "a\"b",
    ] {
        let mut parts = request(Request::get("/").header("host", host));
        assert_eq!(settle_host(&mut parts), Err(HostError::Invalid), "{host}");
    }
}

#[test]
fn valid_hosts_pass() {
    for host in [
        "a.example",
        "A.Example:8080",
        "127.0.0.1",
        "[::1]:80",
        "[2001:db8::1]",
        "xn--bcher-kva.example.",
        "",
    ] {
        let mut parts = request(Request::get("/").header("host", host));
        assert_eq!(settle_host(&mut parts), Ok(()), "{host}");
        assert_eq!(values(&parts.headers, "host"), [host]);
    }
}

#[test]
fn an_http_11_request_needs_a_host() {
    let mut parts = request(Request::get("/"));
    assert_eq!(settle_host(&mut parts), Err(HostError::Missing));
    let mut parts = request(Request::get("/").version(Version::HTTP_10));
    assert_eq!(settle_host(&mut parts), Ok(()));
}

#[test]
fn the_absolute_form_authority_wins_over_host() {
    let mut parts = request(Request::get("http://a.example:81/x?q").header("host", "b.example"));
    assert_eq!(settle_host(&mut parts), Ok(()));
    assert_eq!(values(&parts.headers, "host"), ["a.example:81"]);
    // Without a Host field too (HTTP/2's :authority).
    let mut parts = request(Request::get("http://a.example/x"));
    assert_eq!(settle_host(&mut parts), Ok(()));
    assert_eq!(values(&parts.headers, "host"), ["a.example"]);
}

#[test]
fn userinfo_in_the_target_is_refused() {
    let mut parts = request(Request::get("http://user@a.example/").header("host", "a.example"));
    assert_eq!(settle_host(&mut parts), Err(HostError::UserInfo));
}

#[test]
fn an_h2c_upgrade_is_not_tunnelled() {
    for offer in ["h2c", "H2C", "websocket, h2c"] {
        let mut parts = request(
            Request::get("/")
                .header("host", "a.example")
                .header("connection", "Upgrade, HTTP2-Settings")
                .header("upgrade", offer)
                .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        );
        let upgrade = prepare_request(&mut parts, &client(), &HeaderPolicy::default());
        assert_eq!(upgrade, None, "{offer}");
        for gone in ["upgrade", "connection", "http2-settings"] {
            assert!(!parts.headers.contains_key(gone), "{gone} after {offer}");
        }
    }
    // HTTP2-Settings is dropped even when Connection does not name it.
    let mut parts = request(
        Request::get("/")
            .header("host", "a.example")
            .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
    );
    prepare_request(&mut parts, &client(), &HeaderPolicy::default());
    assert!(!parts.headers.contains_key("http2-settings"));
}
