use std::{path::Path, sync::Arc, time::SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt, service_fn};

use super::{
    body::{FileBody, Segment, multipart},
    path::{Refusal, Root, accel_candidate, normalize, open_within, sendfile_candidate},
    plan::{Plan, RequestHead, Validators, plan, tags_match},
    *,
};
use crate::{body, config::SendfileSettings};

// === paths ===

fn roots_of(dir: &Path) -> Vec<Root> {
    vec![Root {
        given: dir.to_owned(),
        real: std::fs::canonicalize(dir).unwrap(),
    }]
}

#[test]
fn normalize_resolves_dots_as_text() {
    assert_eq!(normalize(Path::new("/a/./b/../c")), Path::new("/a/c"));
    assert_eq!(normalize(Path::new("/../../etc")), Path::new("/etc"));
    assert_eq!(
        normalize(Path::new("/srv/files/../../etc/passwd")),
        Path::new("/etc/passwd")
    );
}

#[test]
fn candidates() {
    let roots = vec![Root {
        given: "/srv/files".into(),
        real: "/data/files".into(),
    }];
    assert_eq!(
        sendfile_candidate(b"/srv/files/a/../b.bin", &roots),
        Some("/srv/files/b.bin".into())
    );
    assert_eq!(
        sendfile_candidate(b"sub/c.bin", &roots),
        Some("/srv/files/sub/c.bin".into()),
        "relative paths are under the first root"
    );
    assert_eq!(sendfile_candidate(b"", &roots), None);

    let locations = vec![
        ("/protected/deep/".to_owned(), "/data/deep".into()),
        ("/protected/".to_owned(), "/data/files".into()),
    ];
    assert_eq!(
        accel_candidate(b"/protected/a%20b.bin?x=1", &locations),
        Some("/data/files/a b.bin".into())
    );
    assert_eq!(
        accel_candidate(b"/protected/deep/z", &locations),
        Some("/data/deep/z".into()),
        "the longest location wins"
    );
    assert_eq!(
        accel_candidate(b"/protected//etc/passwd", &locations),
        Some("/data/files/etc/passwd".into()),
        "extra slashes do not make the rest absolute"
    );
    assert_eq!(
        accel_candidate(b"/protected/%2e%2e/%2e%2e/etc/passwd", &locations),
        Some("/etc/passwd".into()),
        "decoded dots are resolved (and then refused by the root check)"
    );
    assert_eq!(accel_candidate(b"/public/a", &locations), None);
    assert_eq!(accel_candidate(b"/protected/a%00b", &locations), None);
}

#[test]
fn open_within_keeps_to_the_roots() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "secret").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("a.txt"), "hello").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), root.join("out-link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("out-dir")).unwrap();
    std::os::unix::fs::symlink(root.join("a.txt"), root.join("in-link")).unwrap();
    let roots = roots_of(&root);

    let ok = open_within(&root.join("a.txt"), &roots).unwrap();
    assert_eq!(ok.meta.len(), 5);
    let ok = open_within(&root.join("in-link"), &roots).unwrap();
    assert!(
        ok.path.ends_with("a.txt"),
        "a symlink inside the root is followed"
    );

    for bad in [
        outside.path().join("secret"),
        root.join("out-link"),
        root.join("out-dir/secret"),
        normalize(&root.join("../../../etc/passwd")),
        "/etc/passwd".into(),
    ] {
        assert!(
            matches!(open_within(&bad, &roots), Err(Refusal::Outside(_))),
            "{} must be refused",
            bad.display()
        );
    }
    assert!(matches!(
        open_within(&root.join("missing"), &roots),
        Err(Refusal::NotFound)
    ));
    assert!(matches!(
        open_within(&root.join("a.txt/below"), &roots),
        Err(Refusal::NotFound)
    ));
    assert!(matches!(
        open_within(&root.join("sub"), &roots),
        Err(Refusal::NotAFile)
    ));
    let fifo = root.join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    assert!(
        matches!(open_within(&fifo, &roots), Err(Refusal::NotAFile)),
        "a FIFO is refused, and opening it does not block"
    );
}

// === plan ===

fn validators() -> Validators {
    Validators::new(
        1000,
        SystemTime::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5),
    )
}

fn head(method: Method, fields: &[(&str, &str)]) -> RequestHead {
    let mut headers = http::HeaderMap::new();
    for (k, v) in fields {
        headers.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    RequestHead::new(&method, &headers)
}

#[test]
fn validators_are_whole_seconds_and_a_strong_tag() {
    let v = validators();
    assert_eq!(
        httpdate::fmt_http_date(v.modified),
        "Tue, 14 Nov 2023 22:13:20 GMT"
    );
    assert_eq!(v.etag, "\"6553f100.5-3e8\"");
}

#[test]
fn plans() {
    let v = validators();
    let date = httpdate::fmt_http_date(v.modified);
    let earlier = httpdate::fmt_http_date(v.modified - std::time::Duration::from_secs(1));
    let g = |fields: &[(&str, &str)]| plan(&head(Method::GET, fields), &v);

    assert_eq!(g(&[]), Plan::Full);
    assert_eq!(g(&[("range", "bytes=0-99")]), Plan::Partial(vec![0..=99]));
    assert_eq!(g(&[("range", "bytes=-10")]), Plan::Partial(vec![990..=999]));
    assert_eq!(
        g(&[("range", "bytes=990-5000")]),
        Plan::Partial(vec![990..=999])
    );
    assert_eq!(
        g(&[("range", "bytes=0-0, 10-19, 500-")]),
        Plan::Partial(vec![0..=0, 10..=19, 500..=999])
    );
    assert_eq!(
        g(&[("range", "bytes=0-9, 2000-3000")]),
        Plan::Partial(vec![0..=9]),
        "unsatisfiable ranges among good ones are dropped"
    );
    assert_eq!(g(&[("range", "bytes=1000-")]), Plan::Unsatisfiable);
    assert_eq!(
        g(&[("range", "bytes=0-500, 100-600, 200-700")]),
        Plan::Unsatisfiable,
        "many overlapping ranges are refused"
    );
    assert_eq!(
        g(&[("range", "lines=1-2")]),
        Plan::Full,
        "a bad unit is ignored"
    );
    assert_eq!(
        g(&[("range", "bytes=9-1")]),
        Plan::Full,
        "a malformed range is ignored"
    );
    assert_eq!(
        plan(&head(Method::HEAD, &[("range", "bytes=0-1")]), &v),
        Plan::Full,
        "ranges are for GET only"
    );

    // If-Range: the current tag or date keeps the range; anything else gets the whole file.
    assert_eq!(
        g(&[("range", "bytes=0-1"), ("if-range", &v.etag)]),
        Plan::Partial(vec![0..=1])
    );
    assert_eq!(
        g(&[("range", "bytes=0-1"), ("if-range", "\"old\"")]),
        Plan::Full
    );
    assert_eq!(
        g(&[
            ("range", "bytes=0-1"),
            ("if-range", &format!("W/{}", v.etag))
        ]),
        Plan::Full,
        "a weak tag never matches If-Range"
    );
    assert_eq!(
        g(&[("range", "bytes=0-1"), ("if-range", &date)]),
        Plan::Partial(vec![0..=1])
    );
    assert_eq!(
        g(&[("range", "bytes=0-1"), ("if-range", &earlier)]),
        Plan::Full
    );

    // Revalidation.
    assert_eq!(g(&[("if-none-match", &v.etag)]), Plan::NotModified);
    assert_eq!(
        g(&[("if-none-match", &format!("\"x\", W/{}", v.etag))]),
        Plan::NotModified,
        "If-None-Match compares weakly"
    );
    assert_eq!(g(&[("if-none-match", "*")]), Plan::NotModified);
    assert_eq!(g(&[("if-none-match", "\"other\"")]), Plan::Full);
    assert_eq!(g(&[("if-modified-since", &date)]), Plan::NotModified);
    assert_eq!(g(&[("if-modified-since", &earlier)]), Plan::Full);
    assert_eq!(
        g(&[("if-none-match", "\"other\""), ("if-modified-since", &date)]),
        Plan::Full,
        "If-None-Match wins over If-Modified-Since"
    );
    assert_eq!(
        plan(&head(Method::HEAD, &[("if-none-match", &v.etag)]), &v),
        Plan::NotModified
    );

    // Preconditions.
    assert_eq!(g(&[("if-match", "\"other\"")]), Plan::PreconditionFailed);
    assert_eq!(g(&[("if-match", &v.etag)]), Plan::Full);
    assert_eq!(
        g(&[("if-match", &format!("W/{}", v.etag))]),
        Plan::PreconditionFailed,
        "If-Match compares strongly"
    );
    assert_eq!(
        g(&[("if-unmodified-since", &earlier)]),
        Plan::PreconditionFailed
    );
    assert_eq!(g(&[("if-unmodified-since", &date)]), Plan::Full);
}

#[test]
fn entity_tag_lists() {
    let list = |s: &str| HeaderValue::from_str(s).unwrap();
    assert!(tags_match(&list("\"a\""), "\"a\"", true));
    assert!(tags_match(&list(" \"b\" ,\"a\""), "\"a\"", true));
    assert!(
        tags_match(&list("\"a,b\", \"c\""), "\"c\"", true),
        "commas inside tags"
    );
    assert!(!tags_match(&list("\"a,b\""), "\"a\"", false));
    assert!(tags_match(&list("W/\"a\""), "\"a\"", false));
    assert!(!tags_match(&list("W/\"a\""), "\"a\"", true));
    assert!(
        !tags_match(&list("a"), "\"a\"", false),
        "unquoted is not a tag"
    );
    assert!(!tags_match(&list("\"a"), "\"a\"", false));
}

// === bodies ===

async fn collect(body: FileBody) -> Bytes {
    body::boxed(body).collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn file_bodies_stream_segments_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let open = || std::fs::File::open(&path).unwrap();

    let whole = collect(FileBody::new(
        open(),
        vec![Segment::File {
            offset: 0,
            len: 10_000,
        }],
        333,
    ))
    .await;
    assert_eq!(&whole[..], &data[..]);

    // Frame sizes: chunks, except that a stretch of up to four chunks comes in one read.
    let frames = |len: u64, chunk: usize| {
        let mut body = FileBody::new(open(), vec![Segment::File { offset: 0, len }], chunk);
        async move {
            let mut sizes = Vec::new();
            while let Some(frame) = body.frame().await {
                sizes.push(frame.unwrap().into_data().unwrap().len());
            }
            sizes
        }
    };
    assert_eq!(frames(1000, 333).await, [1000]);
    assert_eq!(frames(1332, 333).await, [1332]);
    let big = frames(10_000, 333).await;
    assert!(big[..big.len() - 1].iter().all(|&n| n == 333), "{big:?}");
    assert_eq!(big.iter().sum::<usize>(), 10_000);

    let segments = multipart(&[0..=9, 5000..=9999], 10_000, "text/plain", "XYZ");
    let expected_len = super::body::length(&segments);
    let got = collect(FileBody::new(open(), segments, 1024)).await;
    assert_eq!(got.len() as u64, expected_len);
    let mut want = Vec::new();
    want.extend_from_slice(
        b"--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-9/10000\r\n\r\n",
    );
    want.extend_from_slice(&data[..10]);
    want.extend_from_slice(
        b"\r\n--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 5000-9999/10000\r\n\r\n",
    );
    want.extend_from_slice(&data[5000..]);
    want.extend_from_slice(b"\r\n--XYZ--\r\n");
    assert_eq!(got, Bytes::from(want));

    // A file that shrinks while it is served ends the body with an error, not short data.
    let shrinking = FileBody::new(
        open(),
        vec![Segment::File {
            offset: 0,
            len: 20_000,
        }],
        4096,
    );
    assert!(body::boxed(shrinking).collect().await.is_err());
}

// === the layer ===

struct Fixture {
    _dir: tempfile::TempDir,
    root: String,
    policy: Arc<SendfilePolicy>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    std::fs::create_dir_all(root.join("protected")).unwrap();
    let data: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(root.join("a.txt"), &data).unwrap();
    std::fs::write(root.join("protected/p.bin"), b"protected").unwrap();
    let root = root.to_str().unwrap().to_owned();
    let settings = SendfileSettings {
        roots: vec![root.clone()],
        accel_redirect: [("/internal/".to_owned(), format!("{root}/protected"))].into(),
    };
    let policy = Arc::new(SendfilePolicy::new("app", &settings, "clusters.app.sendfile").unwrap());
    Fixture {
        _dir: dir,
        root,
        policy,
    }
}

/// Sends `req` through the layer over a backend answering with `backend_headers` and a body.
async fn through(
    policy: &Arc<SendfilePolicy>,
    req: Request<body::Body>,
    backend_headers: Vec<(&'static str, String)>,
) -> (http::response::Parts, Bytes) {
    let backend = service_fn(move |_req: Request<body::Body>| {
        let headers = backend_headers.clone();
        async move {
            let mut r = Response::builder()
                .status(202)
                .header("content-length", "12")
                .header("etag", "\"backend\"");
            for (k, v) in headers {
                r = r.header(k, v);
            }
            Ok::<_, crate::ProxyError>(r.body(body::full("backend body")).unwrap())
        }
    });
    let response = SendfileLayer::new(policy.clone())
        .layer(backend)
        .oneshot(req)
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}

fn get(fields: &[(&str, &str)]) -> Request<body::Body> {
    let mut r = Request::get("/download");
    for (k, v) in fields {
        r = r.header(*k, *v);
    }
    r.body(body::empty()).unwrap()
}

#[tokio::test]
async fn serves_the_file_and_keeps_the_backends_other_headers() {
    let f = fixture();
    let (parts, body) = through(
        &f.policy,
        get(&[]),
        vec![
            ("x-sendfile", format!("{}/a.txt", f.root)),
            ("set-cookie", "session=1".into()),
            ("cache-control", "private".into()),
            ("x-accel-buffering", "no".into()),
        ],
    )
    .await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(body.len(), 1000);
    assert!(body.starts_with(b"abcdefghijklmnopqrstuvwxyza"));
    let h = &parts.headers;
    assert_eq!(h["content-length"], "1000");
    assert_eq!(h["content-type"], "text/plain");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["set-cookie"], "session=1");
    assert_eq!(h["cache-control"], "private");
    assert_ne!(h["etag"], "\"backend\"");
    assert!(h.contains_key("last-modified"));
    assert!(!h.contains_key("x-sendfile"));
    assert!(!h.contains_key("x-accel-buffering"));
}

#[tokio::test]
async fn backend_content_type_wins_and_accel_redirect_maps_locations() {
    let f = fixture();
    let (parts, body) = through(
        &f.policy,
        get(&[]),
        vec![
            ("x-accel-redirect", "/internal/p.bin".into()),
            ("content-type", "application/x-custom".into()),
        ],
    )
    .await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(&body[..], b"protected");
    assert_eq!(parts.headers["content-type"], "application/x-custom");
    assert!(!parts.headers.contains_key("x-accel-redirect"));

    let (parts, _) = through(
        &f.policy,
        get(&[]),
        vec![("x-accel-redirect", "/elsewhere/p.bin".into())],
    )
    .await;
    assert_eq!(parts.status, StatusCode::NOT_FOUND, "no location matches");
    let (parts, _) = through(
        &f.policy,
        get(&[]),
        vec![("x-accel-redirect", "/internal/../a.txt".into())],
    )
    .await;
    assert_eq!(
        parts.status,
        StatusCode::OK,
        "leaving the location but staying in a root is allowed"
    );
    let (parts, _) = through(
        &f.policy,
        get(&[]),
        vec![(
            "x-accel-redirect",
            "/internal/../../../../etc/passwd".into(),
        )],
    )
    .await;
    assert_eq!(parts.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn ranges_conditionals_head_and_methods() {
    let f = fixture();
    let file = vec![("x-sendfile", format!("{}/a.txt", f.root))];

    let (parts, body) = through(&f.policy, get(&[("range", "bytes=26-51")]), file.clone()).await;
    assert_eq!(parts.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(parts.headers["content-range"], "bytes 26-51/1000");
    assert_eq!(parts.headers["content-length"], "26");
    assert_eq!(&body[..], b"abcdefghijklmnopqrstuvwxyz");

    let (parts, body) = through(&f.policy, get(&[("range", "bytes=0-1,-2")]), file.clone()).await;
    assert_eq!(parts.status, StatusCode::PARTIAL_CONTENT);
    let ct = parts.headers["content-type"].to_str().unwrap().to_owned();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").unwrap();
    assert_eq!(
        parts.headers["content-length"],
        body.len().to_string().as_str()
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(
        text,
        format!(
            "--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/1000\r\n\r\nab\
             \r\n--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 998-999/1000\r\n\r\nkl\
             \r\n--{boundary}--\r\n"
        )
    );

    let (parts, body) = through(&f.policy, get(&[("range", "bytes=5000-")]), file.clone()).await;
    assert_eq!(parts.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(parts.headers["content-range"], "bytes */1000");
    assert!(body.is_empty());

    let (parts, _) = through(&f.policy, get(&[]), file.clone()).await;
    let etag = parts.headers["etag"].to_str().unwrap().to_owned();
    let modified = parts.headers["last-modified"].to_str().unwrap().to_owned();
    let (parts, body) = through(&f.policy, get(&[("if-none-match", &etag)]), file.clone()).await;
    assert_eq!(parts.status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(parts.headers["etag"], etag.as_str());
    let (parts, _) = through(
        &f.policy,
        get(&[("if-modified-since", &modified)]),
        file.clone(),
    )
    .await;
    assert_eq!(parts.status, StatusCode::NOT_MODIFIED);
    let (parts, _) = through(&f.policy, get(&[("if-match", "\"nope\"")]), file.clone()).await;
    assert_eq!(parts.status, StatusCode::PRECONDITION_FAILED);

    let head = Request::head("/download").body(body::empty()).unwrap();
    let (parts, body) = through(&f.policy, head, file.clone()).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.headers["content-length"], "1000");
    assert!(body.is_empty());

    let post = Request::post("/download").body(body::empty()).unwrap();
    let (parts, _) = through(&f.policy, post, file.clone()).await;
    assert_eq!(parts.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(parts.headers["allow"], "GET, HEAD");
}

#[tokio::test]
async fn refusals() {
    let f = fixture();
    let cases = [
        ("/etc/passwd".to_owned(), StatusCode::FORBIDDEN),
        (
            format!("{}/../../../etc/passwd", f.root),
            StatusCode::FORBIDDEN,
        ),
        (format!("{}/missing", f.root), StatusCode::NOT_FOUND),
        (format!("{}/protected", f.root), StatusCode::FORBIDDEN),
        ("a.txt".to_owned(), StatusCode::OK),
    ];
    for (path, status) in cases {
        let (parts, _) = through(&f.policy, get(&[]), vec![("x-sendfile", path.clone())]).await;
        assert_eq!(parts.status, status, "{path}");
    }
    // No header: the backend's response passes untouched.
    let (parts, body) = through(&f.policy, get(&[]), vec![]).await;
    assert_eq!(parts.status, StatusCode::ACCEPTED);
    assert_eq!(&body[..], b"backend body");
}

#[test]
fn policies_name_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    std::fs::write(dir.path().join("file"), "").unwrap();
    let other = tempfile::tempdir().unwrap();
    let err = |roots: Vec<String>, accel: Vec<(&str, String)>| {
        let settings = SendfileSettings {
            roots,
            accel_redirect: accel.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        };
        SendfilePolicy::new("app", &settings, "clusters.app.sendfile").unwrap_err()
    };
    assert_eq!(err(vec![], vec![]).path, "clusters.app.sendfile.roots");
    let e = err(vec![root.clone(), format!("{root}/nope")], vec![]);
    assert_eq!(e.path, "clusters.app.sendfile.roots[1]");
    assert!(e.message.contains("nope"), "{}", e.message);
    assert_eq!(
        err(vec!["relative".into()], vec![]).path,
        "clusters.app.sendfile.roots[0]"
    );
    assert!(
        err(vec![format!("{root}/file")], vec![])
            .message
            .contains("not a directory")
    );
    let e = err(
        vec![root.clone()],
        vec![("/x/", other.path().to_str().unwrap().to_owned())],
    );
    assert_eq!(e.path, "clusters.app.sendfile.accel-redirect./x/");
    assert!(e.message.contains("not inside"), "{}", e.message);
    assert!(
        err(vec![root.clone()], vec![("x/", root.clone())])
            .message
            .contains("URI prefix")
    );
}

#[tokio::test]
async fn accel_redirect_without_locations_is_a_404_not_the_backends_body() {
    let f = fixture();
    let settings = SendfileSettings {
        roots: vec![f.root.clone()],
        accel_redirect: Default::default(),
    };
    let policy = Arc::new(SendfilePolicy::new("app", &settings, "clusters.app.sendfile").unwrap());
    let (parts, body) = through(
        &policy,
        get(&[]),
        vec![("x-accel-redirect", "/internal/p.bin".into())],
    )
    .await;
    assert_eq!(parts.status, StatusCode::NOT_FOUND);
    assert_ne!(&body[..], b"backend body");
    assert!(!parts.headers.contains_key("x-accel-redirect"));
}
