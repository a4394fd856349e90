use super::*;

fn error(source: &str) -> (usize, usize, String, String) {
    match parse(source, Path::new("test.toml")).unwrap_err() {
        LoadError::Invalid {
            line,
            column,
            key,
            message,
            ..
        } => (line, column, key, message),
        other => panic!("unexpected {other}"),
    }
}

const GOOD: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[clusters.app]
connect-timeout = "2s"

[[clusters.app.backends]]
name = "a"
url = "http://127.0.0.1:3001"

[[routes]]
cluster = "app"
"#;

#[test]
fn a_good_config_loads() {
    let loaded = parse(GOOD, Path::new("good.toml")).unwrap();
    assert_eq!(loaded.config.clusters["app"].backends.len(), 1);
    assert!(loaded.snapshot.cluster("app").is_some());
}

#[test]
fn a_typo_in_a_key_names_line_and_key() {
    let source = GOOD.replace("connect-timeout", "conect-timeout");
    let (line, _, key, message) = error(&source);
    assert_eq!(line, 6);
    assert_eq!(key, "clusters.app.conect-timeout");
    assert!(
        message.contains("unknown field `conect-timeout`"),
        "{message}"
    );
}

#[test]
fn a_wrong_type_names_line_and_key() {
    let source = GOOD.replace("connect-timeout = \"2s\"", "connect-timeout = true");
    let (line, _, key, message) = error(&source);
    assert_eq!(line, 6);
    assert_eq!(key, "clusters.app.connect-timeout");
    assert!(message.contains("duration"), "{message}");
}

#[test]
fn a_bad_url_names_line_and_key() {
    let source = GOOD.replace("http://127.0.0.1:3001", "htp://127.0.0.1:3001");
    let (line, column, key, message) = error(&source);
    assert_eq!((line, column), (10, 1));
    assert_eq!(key, "clusters.app.backends[0].url");
    assert!(message.contains("unknown scheme"), "{message}");
}

#[test]
fn an_unknown_cluster_in_a_route() {
    let source = GOOD.replace("cluster = \"app\"", "cluster = \"ap\"");
    let (line, _, key, _) = error(&source);
    assert_eq!(line, 13);
    assert_eq!(key, "routes[0].cluster");
}

#[test]
fn a_syntax_error_names_the_line() {
    let source = GOOD.replace("name = \"a\"", "name = \"a");
    let (line, _, key, _) = error(&source);
    assert_eq!(line, 9);
    assert_eq!(key, "(document)");
}

#[test]
fn a_bad_listener() {
    let source = GOOD.replace("127.0.0.1:0\"]", "localhost\"]");
    let (line, _, key, _) = error(&source);
    assert_eq!(line, 3);
    assert_eq!(key, "server.listen[0]");
}

#[test]
fn errors_display_file_line_and_key() {
    let source = GOOD.replace("connect-timeout", "conect-timeout");
    let err = parse(&source, Path::new("conf/director.toml")).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("conf/director.toml:6:1: clusters.app.conect-timeout: "),
        "{text}"
    );
}

#[test]
fn admin_hosts_and_socket_mode_are_checked_by_key() {
    let (line, _, key, _) = error("[server]\nadmin-hosts = [\"ok.example\", \"bad host\"]\n");
    assert_eq!((line, key.as_str()), (2, "server.admin-hosts[1]"));
    let (_, _, key, message) = error("[server]\nadmin-socket-mode = 0o1777\n");
    assert_eq!(key, "server.admin-socket-mode");
    assert!(message.contains("0o1777"), "{message}");
    let loaded = parse(
        "[server]\nadmin-hosts = [\"admin.example.com:8081\"]\nadmin-socket-mode = 0o660\n",
        Path::new("t.toml"),
    )
    .unwrap();
    assert_eq!(loaded.config.server.admin_socket_mode, 0o660);
    assert_eq!(ServerConfig::default().admin_socket_mode, 0o600);
}

#[test]
fn check_admin_refuses_a_tokenless_admin_beyond_loopback() {
    let mut server = ServerConfig {
        admin_listen: vec!["0.0.0.0:8081".into()],
        ..ServerConfig::default()
    };
    let (key, message) = check_admin(&server).unwrap_err();
    assert_eq!(key, "admin-listen[0]");
    assert!(message.contains("admin-token"), "{message}");
    server.admin_token = Some("0123456789abcdef".into());
    assert_eq!(check_admin(&server), Ok(()));
    server.admin_listen = vec!["[::]:8081".into()];
    server.admin_token = None;
    assert!(check_admin(&server).is_err());
    server.admin_listen = vec!["[::1]:8081".into(), "unix:/run/director.sock".into()];
    assert_eq!(check_admin(&server), Ok(()));
}

#[test]
fn blank_files_are_recognised() {
    for blank in ["", " \n\t\n", "# only a comment\n\n# another\n"] {
        assert!(is_blank(blank), "{blank:?}");
    }
    for full in [
        "[server]\n",
        "[server]\nlisten = [\"127.0.0.1:0\"]\n",
        "x = 1",
        "[oops",
    ] {
        assert!(!is_blank(full), "{full:?}");
    }
}

#[test]
fn a_cluster_file_with_an_unsafe_name_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("-rf.toml"), "").unwrap();
    // Dot files are not cluster files (an editor's, or a write in progress).
    std::fs::write(dir.path().join(".hidden.toml"), "").unwrap();
    match load_cluster_dir(dir.path()).unwrap_err() {
        LoadError::Invalid { file, key, .. } => {
            assert_eq!(file, dir.path().join("-rf.toml"));
            assert_eq!(key, "(file name)");
        }
        other => panic!("{other}"),
    }
    std::fs::remove_file(dir.path().join("-rf.toml")).unwrap();
    assert!(load_cluster_dir(dir.path()).unwrap().is_empty());
}

#[test]
fn load_makes_a_relative_path_absolute() {
    // The test binary runs in the crate's directory; any relative file there will do.
    let dir = tempfile::tempdir_in(".").unwrap();
    let path = dir.path().join("d.toml");
    std::fs::write(&path, "[server]\ncluster-dir = \"clusters\"\n").unwrap();
    let relative = path
        .strip_prefix(std::env::current_dir().unwrap())
        .unwrap_or(&path);
    assert!(relative.is_relative(), "{}", relative.display());
    let loaded = load(relative).unwrap();
    assert!(loaded.file.as_deref().unwrap().is_absolute());
    assert_eq!(
        loaded.cluster_dir.unwrap(),
        dir.path().canonicalize().unwrap().join("clusters")
    );
}

#[test]
fn client_timeouts_default_and_refuse_zero() {
    let loaded = parse(GOOD, Path::new("good.toml")).unwrap();
    let server = &loaded.config.server;
    assert_eq!(
        server.client_body_timeout.0,
        std::time::Duration::from_secs(60)
    );
    assert_eq!(
        server.tunnel_idle_timeout.0,
        std::time::Duration::from_secs(600)
    );
    for key in ["client-body-timeout", "tunnel-idle-timeout"] {
        let source = GOOD.replace(
            "listen = [\"127.0.0.1:0\"]",
            &format!("listen = [\"127.0.0.1:0\"]\n{key} = \"0s\""),
        );
        let (line, _, at, message) = error(&source);
        assert_eq!((line, at.as_str()), (4, format!("server.{key}").as_str()));
        assert!(message.contains("greater than zero"), "{message}");
    }
}

#[test]
fn zero_connection_limits_name_line_and_key() {
    for (setting, key) in [
        ("max-connections = 0", "server.max-connections"),
        ("max-headers = 0", "server.max-headers"),
        (
            "h2-max-concurrent-streams = 0",
            "server.h2-max-concurrent-streams",
        ),
        ("header-read-timeout = \"0s\"", "server.header-read-timeout"),
        ("keep-alive-timeout = \"0ms\"", "server.keep-alive-timeout"),
    ] {
        let source = GOOD.replace("[server]\n", &format!("[server]\n{setting}\n"));
        let (line, _, found, message) = error(&source);
        assert_eq!((line, found.as_str()), (3, key), "{setting}: {message}");
    }
    let source = GOOD.replace("[server]\n", "[server]\nh2-ping-interval = \"0s\"\n");
    let loaded = parse(&source, Path::new("test.toml")).unwrap();
    assert!(
        loaded.config.server.h2_ping_interval.0.is_zero(),
        "0s turns pings off"
    );
}

#[test]
fn a_fastcgi_spool_dir_that_is_no_directory_names_its_key() {
    let source = "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[clusters.php]\n[clusters.php.fastcgi]\n\
                  document-root = \"/srv\"\nspool-dir = \"/no/such/spool\"\n\n\
                  [[clusters.php.backends]]\nname = \"f\"\nurl = \"fastcgi://127.0.0.1:9000\"\n\n\
                  [[routes]]\ncluster = \"php\"\n";
    let (line, _, key, message) = error(source);
    assert_eq!(key, "clusters.php.fastcgi.spool-dir");
    assert_eq!(line, 7);
    assert!(message.contains("not a directory"), "{message}");
}
