use std::time::Duration;

use director_core::{backend::Role, config::ConfigDuration};

use super::*;

fn pairs(p: &[(&str, &str)]) -> Params {
    Params::from_pairs(p)
}

#[test]
fn x0_cluster_keys_map_onto_the_config() {
    let mut c = default_cluster();
    apply_cluster(
        &pairs(&[
            ("enabled", "false"),
            ("queue-limit", "12"),
            ("queue-timeout", "250ms"),
            ("retry-after", "7"),
            ("max-retry-count", "2"),
            ("sticky-offline-mode", "true"),
            ("enqueue-on-unavailable", "1"),
            ("connect-timeout", "3"),
            ("read-timeout", "30s"),
            ("write-timeout", "4.5"),
            ("health-check-host-header", "probe.example"),
            ("health-check-request-path", "/health"),
            ("health-check-fcgi-script-filename", "/srv/ping.php"),
            ("scheduler", "chance"),
            ("cache-enabled", "true"),
            ("cache-default-ttl", "30"),
            ("cache-default-shadow-ttl", "5"),
            ("cache-deliver-active", "false"),
            ("cache-deliver-shadow", "0"),
            ("sendfile-roots", "/srv/files,/srv/more"),
            ("allow-x-sendfile", "true"),
        ]),
        &mut c,
    )
    .unwrap();
    assert!(!c.enabled);
    assert_eq!(c.queue_limit, 12);
    assert_eq!(c.queue_timeout.unwrap().0, Duration::from_millis(250));
    assert_eq!(c.retry_after, 7);
    assert_eq!(c.max_retry_count, 2);
    assert!(c.enqueue_on_unavailable);
    assert_eq!(c.connect_timeout.unwrap().0, Duration::from_secs(3));
    assert_eq!(c.read_timeout.unwrap().0, Duration::from_secs(30));
    assert_eq!(c.write_timeout.unwrap().0, Duration::from_millis(4500));
    assert_eq!(c.scheduler, SchedulerKind::Chance);
    let h = c.health.as_ref().unwrap();
    assert!(h.sticky_offline);
    assert_eq!(h.host, "probe.example");
    assert_eq!(h.path, "/health");
    assert_eq!(h.script_filename.as_deref(), Some("/srv/ping.php"));
    let cache = c.cache.as_ref().unwrap();
    assert!(cache.enabled);
    assert_eq!(cache.default_ttl.unwrap().0, Duration::from_secs(30));
    assert_eq!(cache.shadow_ttl.unwrap().0, Duration::from_secs(5));
    assert!(!cache.deliver_active && !cache.deliver_shadow);
    assert_eq!(
        c.sendfile.as_ref().unwrap().roots,
        ["/srv/files", "/srv/more"]
    );
    apply_cluster(&pairs(&[("allow-x-sendfile", "false")]), &mut c).unwrap();
    assert_eq!(c.sendfile, None);
    let e = apply_cluster(&pairs(&[("allow-x-sendfile", "true")]), &mut c).unwrap_err();
    assert_eq!(e.detail["field"], "allow-x-sendfile");
}

#[test]
fn director_keys_and_unsetting() {
    let mut c = default_cluster();
    apply_cluster(
        &pairs(&[
            ("hash-key", "client-ip"),
            ("replay-body-limit", "1024"),
            ("health-interval", "500ms"),
            ("health-rise", "3"),
            ("health-fall", "2"),
            ("health-expect", "200,204"),
            ("cache-strategy", "shadowed"),
            ("cache-budget", "1048576"),
            ("scheduler", "least-load"),
        ]),
        &mut c,
    )
    .unwrap();
    assert_eq!(c.hash_key.as_deref(), Some("client-ip"));
    assert_eq!(c.replay_body_limit, 1024);
    let h = c.health.as_ref().unwrap();
    assert_eq!((h.rise, h.fall), (3, 2));
    assert_eq!(h.interval.unwrap().0, Duration::from_millis(500));
    assert_eq!(h.expect.as_deref(), Some(&[200, 204][..]));
    assert_eq!(c.cache.as_ref().unwrap().strategy, "shadowed");
    assert_eq!(c.scheduler, SchedulerKind::LeastLoad);

    apply_cluster(
        &pairs(&[("hash-key", ""), ("health-enabled", "false")]),
        &mut c,
    )
    .unwrap();
    assert_eq!(c.hash_key, None);
    assert_eq!(c.health, None);
}

#[test]
fn turning_an_absent_feature_off_adds_nothing() {
    let mut c = default_cluster();
    apply_cluster(
        &pairs(&[("sticky-offline-mode", "false"), ("cache-enabled", "0")]),
        &mut c,
    )
    .unwrap();
    assert_eq!(c, default_cluster());
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    for (k, v) in [
        ("queue-limt", "1"),
        ("on-client-abort", "later"),
        ("allow-x-sendfile", "true"),
        ("queue-limit", "-1"),
        ("queue-limit", "many"),
        ("scheduler", "fastest"),
        ("enabled", "yes"),
        ("health-mode", "eager"),
        ("retry-after", "1.5"),
    ] {
        let e = apply_cluster(&pairs(&[(k, v)]), &mut default_cluster()).unwrap_err();
        assert_eq!(e.status, 400, "{k}={v}");
        assert_eq!(e.detail["field"], k, "{k}={v}: {e:?}");
    }
}

#[test]
fn backends_from_x0_addresses() {
    let b = new_backend(
        "app01",
        &pairs(&[
            ("role", "backup"),
            ("capacity", "4"),
            ("enabled", "false"),
            ("protocol", "http"),
            ("hostname", "10.10.40.3"),
            ("port", "8080"),
            ("health-check-interval", "2"),
            ("health-check-mode", "paranoid"),
            ("terminate-protection", "true"),
            ("transport", "tcp"),
        ]),
    )
    .unwrap();
    assert_eq!(b.url, "http://10.10.40.3:8080");
    assert_eq!(b.role, Role::Backup);
    assert_eq!(b.capacity, 4);
    assert!(!b.enabled);
    assert!(b.terminate_protection);
    assert_eq!(
        b.health_interval,
        Some(ConfigDuration(Duration::from_secs(2)))
    );
    assert_eq!(b.health_mode.as_deref(), Some("paranoid"));
    for (k, v) in [
        ("health-check-interval", "0"),
        ("health-check-mode", "sometimes"),
        ("health-interval", "soon"),
    ] {
        let e = new_backend("x", &pairs(&[("url", "http://127.0.0.1:9"), (k, v)])).unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.detail["field"].as_str()),
            (400, Some(k)),
            "{k}={v}"
        );
    }

    let b = new_backend(
        "php",
        &pairs(&[("protocol", "fastcgi"), ("path", "/run/php.sock")]),
    )
    .unwrap();
    assert_eq!(b.url, "fastcgi+unix:/run/php.sock");
    let b = new_backend("v6", &pairs(&[("host", "::1"), ("port", "81")])).unwrap();
    assert_eq!(b.url, "http://[::1]:81");
    let b = new_backend(
        "u",
        &pairs(&[("url", "http://127.0.0.1:9"), ("weight", "3")]),
    )
    .unwrap();
    assert_eq!(
        (b.url.as_str(), b.weight.get(), b.enabled, b.capacity),
        ("http://127.0.0.1:9", 3.0, true, 0)
    );
    // Varnish's real weights, from a form or JSON.
    for (text, value) in [("10.0", 10.0), ("0.5", 0.5), ("0", 0.0)] {
        let b = new_backend(
            "r",
            &pairs(&[("url", "http://127.0.0.1:9"), ("weight", text)]),
        )
        .unwrap();
        assert_eq!(b.weight.get(), value, "{text}");
    }
}

#[test]
fn bad_weights_name_the_key() {
    for text in ["-1", "ten", "1e3", "inf", "NaN", "1000001", ""] {
        let e = new_backend(
            "r",
            &pairs(&[("url", "http://127.0.0.1:9"), ("weight", text)]),
        )
        .unwrap_err();
        assert_eq!(e.status, http::StatusCode::BAD_REQUEST, "{text:?}");
        assert_eq!(e.detail["field"], "weight", "{text:?}");
    }
}

#[test]
fn bad_backends_name_the_key() {
    for (params, field) in [
        (vec![("hostname", "10.0.0.1")], "port"),
        (vec![("port", "80")], "hostname"),
        (vec![("hostname", "10.0.0.1"), ("port", "0")], "port"),
        (
            vec![("hostname", "10.0.0.1"), ("port", "80"), ("capacity", "-4")],
            "capacity",
        ),
        (vec![("url", "http://a:1"), ("port", "80")], "port"),
        (vec![("url", "ftp://a:1")], "url"),
        (vec![("path", "relative.sock")], "path"),
        (
            vec![("protocol", "gopher"), ("hostname", "a"), ("port", "1")],
            "protocol",
        ),
        (vec![("url", "http://a:1"), ("role", "primary")], "role"),
        (vec![("url", "http://a:1"), ("colour", "red")], "colour"),
    ] {
        let e = new_backend("b", &pairs(&params)).unwrap_err();
        assert_eq!(e.status, 400, "{params:?}");
        assert_eq!(e.detail["field"], field, "{params:?}: {e:?}");
    }
}

#[test]
fn a_backend_keeps_its_address_and_name() {
    let mut b = new_backend("b", &pairs(&[("hostname", "10.0.0.1"), ("port", "80")])).unwrap();
    // Posting back what was read is fine.
    apply_backend(
        &pairs(&[("hostname", "10.0.0.1"), ("port", "80"), ("capacity", "9")]),
        &mut b,
    )
    .unwrap();
    assert_eq!(b.capacity, 9);
    let e = apply_backend(&pairs(&[("port", "81")]), &mut b).unwrap_err();
    assert_eq!(e.detail["field"], "port");
    let e = apply_backend(&pairs(&[("name", "c")]), &mut b).unwrap_err();
    assert_eq!(e.detail["field"], "name");
}

#[test]
fn buckets() {
    let k = new_bucket("vip", &pairs(&[("rate", "0.2"), ("ceil", "0.4")])).unwrap();
    assert_eq!((k.rate, k.ceil, k.parent), (0.2, Some(0.4), None));
    let k = new_bucket("sub", &pairs(&[("rate", "0.5"), ("parent", "vip")])).unwrap();
    assert_eq!(k.parent.as_deref(), Some("vip"));
    assert_eq!(
        new_bucket("x", &pairs(&[])).unwrap_err().detail["field"],
        "rate"
    );
    assert_eq!(
        new_bucket("x", &pairs(&[("rate", "lots")]))
            .unwrap_err()
            .detail["field"],
        "rate"
    );
    let mut k = new_bucket("vip", &pairs(&[("rate", "0.2")])).unwrap();
    apply_bucket(&pairs(&[("rate", "0.3"), ("ceil", "0.5")]), &mut k).unwrap();
    assert_eq!((k.rate, k.ceil), (0.3, Some(0.5)));
    assert_eq!(
        apply_bucket(&pairs(&[("parent", "other")]), &mut k)
            .unwrap_err()
            .detail["field"],
        "parent"
    );
    assert_eq!(
        apply_bucket(&pairs(&[("burst", "1")]), &mut k)
            .unwrap_err()
            .detail["field"],
        "burst"
    );
}

#[test]
fn shaper_key_picks_the_sharing_and_refuses_others() {
    use director_core::shaper::ShaperMode;
    let mut c = default_cluster();
    assert_eq!(c.shaper, ShaperMode::Htb, "the default");
    apply_cluster(&pairs(&[("shaper", "x0")]), &mut c).unwrap();
    assert_eq!(c.shaper, ShaperMode::X0);
    apply_cluster(&pairs(&[("shaper", "htb")]), &mut c).unwrap();
    assert_eq!(c, default_cluster());
    let e = apply_cluster(&pairs(&[("shaper", "linux")]), &mut c).unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(e.detail["field"], "shaper", "{e:?}");
}
