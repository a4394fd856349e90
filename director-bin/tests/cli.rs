//! The command line: `director check`, the examples, and `director demo`.

mod support;

use support::*;

#[test]
fn check_accepts_every_example() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut count = 0;
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let (ok, text) = check(&path);
            assert!(ok, "{}: {text}", path.display());
            count += 1;
        }
    }
    assert!(count >= 2, "examples/*.toml are checked");
}

#[test]
fn check_rejects_typos_and_wrong_types_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, line, key) in [
        (
            "typo.toml",
            "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[clusters.app]\nread-timout = \"5s\"\n",
            5,
            "clusters.app.read-timout",
        ),
        (
            "type.toml",
            "[clusters.app]\n[[clusters.app.backends]]\nname = \"a\"\nurl = 8080\n",
            4,
            "clusters.app.backends[0].url",
        ),
        (
            "semantic.toml",
            "[[routes]]\nhost = \"example.com\"\ncluster = \"nowhere\"\n",
            3,
            "routes[0].cluster",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (ok, out) = check(&path);
        assert!(!ok, "{name} must be refused");
        let expected = format!("{}:{line}:", path.display());
        assert!(out.starts_with(&expected), "{name}: {out}");
        assert!(out.contains(key), "{name}: {out}");
    }
    let (ok, out) = check(&dir.path().join("missing.toml"));
    assert!(!ok);
    assert!(out.contains("missing.toml"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_balancing_backups_buckets_pinning_and_fastcgi() {
    use http::Request;
    use http_body_util::Full;

    let dir = tempfile::tempdir().unwrap();
    let director = Director::spawn(
        dir,
        &["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"],
        1,
    );
    let mut names = Vec::new();
    for _ in 0..4 {
        let reply = get(&director.url("/")).await;
        assert_eq!(reply.status, 200);
        assert!(
            reply.text().starts_with("Hello from demo backend"),
            "{}",
            reply.text()
        );
        names.push(reply.header("x-demo-backend").unwrap().to_owned());
    }
    names.sort();
    assert_eq!(
        names,
        ["alpha", "alpha", "beta", "beta"],
        "gamma is a backup"
    );
    let direct = get(&director.url("/direct")).await;
    assert_eq!(direct.header("x-demo-backend"), Some("alpha"));

    let pinned = send(
        Request::get(director.url("/"))
            .header("cookie", "backend=gamma")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(pinned.header("x-demo-backend"), Some("gamma"));
    let vip = send(
        Request::get(director.url("/"))
            .header("x-bucket", "vip")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(vip.header("x-director-bucket"), Some("vip"));
    assert_eq!(
        get(&director.url("/cached/x")).await.header("x-cache"),
        Some("MISS")
    );
    assert_eq!(
        get(&director.url("/cached/x")).await.header("x-cache"),
        Some("HIT")
    );
    let fcgi = get(&director.url("/app/index.php/hi?x=1")).await;
    assert!(fcgi.text().contains("PATH_INFO=/hi"), "{}", fcgi.text());
    // The denied prefix, in another spelling.
    let denied = get(&director.url("/app/%69nc/config.php")).await;
    assert_eq!(denied.status, 403, "{}", denied.text());
    let file = get(&director.url("/files/hello.txt")).await;
    assert!(
        file.text().starts_with("Hello from a file"),
        "{}",
        file.text()
    );
    assert!(file.header("x-sendfile").is_none());
    let part = send(
        Request::get(director.url("/download/hello.txt"))
            .header("range", "bytes=0-4")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!((part.status.as_u16(), part.text().as_str()), (206, "Hello"));
    // A file from disk, and a rewrite routed again to the FastCGI app.
    let page = get(&director.url("/site/")).await;
    assert!(page.text().contains("Served from disk"), "{}", page.text());
    assert!(page.header("etag").is_some());
    let wiki = get(&director.url("/site/wiki/start")).await;
    assert!(
        wiki.text().contains("QUERY_STRING=page=start"),
        "{}",
        wiki.text()
    );

    // The admin API: the demo's dynamic cluster as JSON, and a cluster created at runtime
    // taking traffic.
    let admin = director.admin();
    let shop = get(&format!("{admin}/api/shop")).await;
    assert_eq!(shop.status, 200, "{}", shop.text());
    assert!(shop.text().contains("\"mutable\": true"), "{}", shop.text());
    let form = |method: &str, path: &str, body: &str| {
        Request::builder()
            .method(method)
            .uri(format!("{admin}/api{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(bytes::Bytes::from(body.to_owned())))
            .unwrap()
    };
    assert_eq!(send(form("PUT", "/blog", "scheduler=rr")).await.status, 201);
    let alpha = shop
        .text()
        .split("\"url\": \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let added = send(form(
        "PUT",
        "/blog/backends/alpha",
        &format!("url={alpha}&capacity=4"),
    ))
    .await;
    assert_eq!(added.status, 201, "{}", added.text());
    let blog = send(
        Request::get(director.url("/"))
            .header("host", "blog")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(
        blog.header("x-demo-backend"),
        Some("alpha"),
        "{}",
        blog.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_mode_balances_without_a_config_file() {
    let a = director_core::testing::TestBackend::tcp("a", "127.0.0.1:0")
        .await
        .unwrap();
    let b = director_core::testing::TestBackend::tcp("b", "127.0.0.1:0")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ua, ub) = (
        a.socket_addr().unwrap().to_string(),
        b.socket_addr().unwrap().to_string(),
    );
    let director = Director::spawn(
        dir,
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &ua,
            "--upstream",
            &ub,
            "--threads",
            "1",
            "--access-log",
            "off",
        ],
        1,
    );
    let first = get(&director.url("/")).await;
    let second = get(&director.url("/")).await;
    assert_ne!(first.header("x-backend"), second.header("x-backend"));
}
