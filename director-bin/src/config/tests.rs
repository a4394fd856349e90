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
