//! The stats report and runtime commands over a real registry (no network): the golden header,
//! equal column counts, HAProxy's status words, and changes made through the runtime API.

use std::sync::Arc;

use director_core::{
    backend::Health,
    config::{ClusterConfig, ProxyConfig},
    registry::{Registry, Snapshot},
    stats::FrontendStats,
};
use director_haproxy::{Control, HEADER, RegistryControl, Report, Runtime, Source, csv};

const GOLDEN_HEADER: &str = include_str!("fixtures/haproxy-2.6-header.csv");
const GOLDEN_CSV: &str = include_str!("fixtures/haproxy-2.6-stat.csv");

fn registry() -> Arc<Registry> {
    let clusters: std::collections::BTreeMap<String, ClusterConfig> = toml::from_str(
        r#"
        [app]
        [[app.backends]]
        name = "a"
        url = "http://127.0.0.1:1"
        capacity = 10
        [[app.backends]]
        name = "b"
        url = "http://127.0.0.1:2"
        weight = 3
        [[app.backends]]
        name = "c"
        url = "http://127.0.0.1:3"
        role = "backup"
        [api]
        [[api.backends]]
        name = "x.y"
        url = "http://127.0.0.1:4"
        "#,
    )
    .expect("test config");
    let config = ProxyConfig {
        clusters,
        routes: Vec::new(),
    };
    Arc::new(Registry::new(Snapshot::build(&config).expect("snapshot")))
}

fn parse(text: &str) -> Vec<Vec<String>> {
    let body = text.strip_prefix("# ").expect("header starts with '# '");
    ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body.as_bytes())
        .records()
        .map(|r| r.expect("valid CSV").iter().map(str::to_owned).collect())
        .collect()
}

fn runtime(registry: &Arc<Registry>) -> (Source, Runtime) {
    let source = Source::new(
        registry.clone(),
        vec![Arc::new(FrontendStats::new("127.0.0.1:8080"))],
    );
    let control: Arc<dyn Control> = Arc::new(RegistryControl::new(registry.clone()));
    (source.clone(), Runtime::new(source, control))
}

fn column(rows: &[Vec<String>], row: usize, name: &str) -> String {
    let i = rows[0]
        .iter()
        .position(|c| c == name)
        .expect("known column");
    rows[row][i].clone()
}

fn find(rows: &[Vec<String>], px: &str, sv: &str) -> usize {
    rows.iter()
        .position(|r| r[0] == px && r[1] == sv)
        .unwrap_or_else(|| panic!("row {px}/{sv}"))
}

#[test]
fn header_is_haproxy_2_6_byte_for_byte() {
    assert_eq!(HEADER, GOLDEN_HEADER);
    // The fixture is a whole real dump; its first line is the same header.
    assert!(GOLDEN_CSV.starts_with(GOLDEN_HEADER));
}

#[test]
fn every_row_has_the_header_column_count() {
    let registry = registry();
    let (source, _) = runtime(&registry);
    let rows = parse(&csv::render(&Report::collect(&source)));
    let width = rows[0].len();
    assert_eq!(width, 129, "128 names and the trailing comma");
    // 1 frontend, 4 servers, 2 BACKEND rows.
    assert_eq!(rows.len(), 1 + 1 + 4 + 2);
    for row in &rows {
        assert_eq!(row.len(), width, "row {row:?}");
    }
    // HAProxy's own dump has the same shape, so the comparison above is meaningful.
    for row in parse(GOLDEN_CSV) {
        assert_eq!(row.len(), width);
    }
    // A dotted name stays one column.
    assert_eq!(rows[find(&rows, "api", "x.y")].len(), width);
}

#[test]
fn rows_carry_haproxy_values() {
    let registry = registry();
    let (source, _) = runtime(&registry);
    let rows = parse(&csv::render(&Report::collect(&source)));
    let fe = find(&rows, "127.0.0.1:8080", "FRONTEND");
    assert_eq!(column(&rows, fe, "status"), "OPEN");
    assert_eq!(column(&rows, fe, "type"), "0");
    let a = find(&rows, "app", "a");
    assert_eq!(column(&rows, a, "status"), "no check");
    assert_eq!(column(&rows, a, "slim"), "10");
    assert_eq!(column(&rows, a, "type"), "2");
    assert_eq!(column(&rows, a, "act"), "1");
    assert_eq!(column(&rows, a, "addr"), "127.0.0.1:1");
    let b = find(&rows, "app", "b");
    assert_eq!(column(&rows, b, "weight"), "3");
    let c = find(&rows, "app", "c");
    assert_eq!(
        (column(&rows, c, "act"), column(&rows, c, "bck")),
        ("0".into(), "1".into())
    );
    let be = find(&rows, "app", "BACKEND");
    assert_eq!(column(&rows, be, "status"), "UP");
    assert_eq!(column(&rows, be, "type"), "1");
    assert_eq!(column(&rows, be, "weight"), "5", "1 + 3 + 1");
    assert_eq!(column(&rows, be, "algo"), "roundrobin");

    // Health decides UP/DOWN; every backend down takes the cluster down.
    let snapshot = registry.load();
    let app = snapshot.cluster("app").unwrap();
    for b in app.backends() {
        b.set_health(Health::Offline);
    }
    let rows = parse(&csv::render(&Report::collect(&source)));
    assert_eq!(column(&rows, find(&rows, "app", "a"), "status"), "DOWN");
    assert_eq!(
        column(&rows, find(&rows, "app", "BACKEND"), "status"),
        "DOWN"
    );
    assert_eq!(
        column(&rows, find(&rows, "app", "a"), "chkdown"),
        "",
        "no checks, no chkdown"
    );
}

#[test]
fn runtime_changes_state_and_weight_live() {
    let registry = registry();
    let (source, runtime) = runtime(&registry);
    let status = |sv: &str| {
        let rows = parse(&csv::render(&Report::collect(&source)));
        column(&rows, find(&rows, "app", sv), "status")
    };
    let run = |cmd: &str| runtime.execute(cmd).0;

    assert_eq!(run("disable server app/a"), "\n");
    assert_eq!(status("a"), "MAINT");
    let a = registry
        .load()
        .cluster("app")
        .unwrap()
        .backend("a")
        .unwrap();
    assert!(!a.is_available());
    assert_eq!(run("enable server app/a"), "\n");
    assert_eq!(status("a"), "no check");
    assert!(a.is_available());

    assert_eq!(run("set server app/a state drain"), "\n");
    assert_eq!(status("a"), "DRAIN");
    assert!(!a.is_available(), "drained: no new balanced requests");
    assert!(a.is_enabled(), "but still an enabled member");
    assert_eq!(run("set server app/a state maint"), "\n");
    assert_eq!(status("a"), "MAINT");
    assert_eq!(run("set server app/a state ready"), "\n");
    assert_eq!(status("a"), "no check");

    assert_eq!(run("set weight app/b 7"), "\n");
    assert_eq!(run("get weight app/b"), "7 (initial 7)\n\n");
    assert_eq!(run("set server app/b weight 9"), "\n");
    assert_eq!(a.weight(), 1.0);
    assert_eq!(
        registry
            .load()
            .cluster("app")
            .unwrap()
            .backend("b")
            .unwrap()
            .weight(),
        9.0
    );
    // Relative to the configured weight, which stays: 50% of 9, then 100% restores it.
    assert_eq!(run("set weight app/b 50%"), "\n");
    assert_eq!(run("get weight app/b"), "4.5 (initial 9)\n\n");
    assert_eq!(run("set weight app/b 50%"), "\n");
    assert_eq!(run("get weight app/b"), "4.5 (initial 9)\n\n");
    assert_eq!(run("set server app/b weight 100%"), "\n");
    assert_eq!(run("get weight app/b"), "9 (initial 9)\n\n");
    assert_eq!(run("set weight app/b 2.5"), "\n");
    assert_eq!(run("get weight app/b"), "2.5 (initial 2.5)\n\n");

    // HAProxy's error answers.
    assert_eq!(run("disable server app/zz"), "No such server.\n\n");
    assert_eq!(run("disable server nope/a"), "No such backend.\n\n");
    assert_eq!(run("disable server app"), "Require 'backend/server'.\n\n");
    assert_eq!(
        run("set server app/a state bogus"),
        "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n"
    );
    assert_eq!(
        run("set weight app/b 500"),
        "Absolute weight can only be between 0 and 256 inclusive.\n\n"
    );
    assert_eq!(
        run("set weight app/b x"),
        "Empty weight string empty or preceded by garbage\n"
    );
    assert_eq!(run("set weight app/zz 5"), "No such server.\n\n");
    assert!(run("set server app/a").starts_with("usage: set server <backend>/<server> "));
}

#[test]
fn show_servers_state_and_info_match_haproxy_shapes() {
    let registry = registry();
    let (_, runtime) = runtime(&registry);
    let golden = include_str!("fixtures/haproxy-2.6-show-servers-state.txt");
    let ours = runtime.execute("show servers state").0;
    let header = |s: &str| s.lines().take(2).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        header(&ours),
        header(golden),
        "version line and column names"
    );
    let width = |s: &str| s.lines().nth(2).unwrap().split(' ').count();
    for line in ours.lines().skip(2).filter(|l| !l.is_empty()) {
        assert_eq!(line.split(' ').count(), width(golden), "{line}");
    }
    assert!(ours.ends_with("\n\n"));
    registry
        .load()
        .cluster("app")
        .unwrap()
        .set_backend_enabled("a", false);
    let only = runtime.execute("show servers state app").0;
    let a: Vec<&str> = only
        .lines()
        .find(|l| l.contains(" app 1 a "))
        .unwrap()
        .split(' ')
        .collect();
    assert_eq!(a[6], "1", "srv_admin_state: forced maintenance");
    assert!(!only.contains(" api "));
    assert_eq!(
        runtime.execute("show servers state nope").0,
        "Can't find backend.\n\n"
    );

    let info = runtime.execute("show info").0;
    for key in [
        "Name: ",
        "Version: ",
        "Pid: ",
        "Uptime: ",
        "Uptime_sec: ",
        "CurrConns: ",
    ] {
        assert!(info.lines().any(|l| l.starts_with(key)), "{key} in {info}");
    }
    let golden_info = include_str!("fixtures/haproxy-2.6-show-info.txt");
    assert!(golden_info.lines().any(|l| l.starts_with("Uptime_sec: ")));
    // Every field we print is one of HAProxy's, in HAProxy's order.
    let field = |l: &str| l.split(": ").next().unwrap().to_owned();
    let ours: Vec<String> = info.lines().filter(|l| !l.is_empty()).map(field).collect();
    let theirs: Vec<String> = golden_info.lines().map(field).collect();
    let at: Vec<usize> = ours
        .iter()
        .map(|f| {
            theirs
                .iter()
                .position(|t| t == f)
                .unwrap_or_else(|| panic!("{f} is not a field of HAProxy's show info"))
        })
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "HAProxy's order: {ours:?}"
    );
    let value = |key: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {info}"))
            .parse()
            .unwrap()
    };
    assert!(value("Ulimit-n: ") > 0);
    assert!(value("MaxConnRate: ") >= value("ConnRate: "));
    assert!(info.ends_with("\n\n"));
}

#[test]
fn unknown_commands_and_help_answer_like_haproxy() {
    let registry = registry();
    let (_, runtime) = runtime(&registry);
    let golden_help = include_str!("fixtures/haproxy-2.6-help.txt");
    let help = runtime.execute("help").0;
    assert_eq!(help.lines().next(), golden_help.lines().next());
    // Every command we list is one HAProxy lists too, padded the same way (ours leave out the
    // options Director does not have).
    let words = |l: &str| -> String {
        l.trim_start()
            .split([':', '<', '[', '('])
            .next()
            .unwrap()
            .trim()
            .to_owned()
    };
    for line in help.lines().skip(1).filter(|l| !l.is_empty()) {
        assert_eq!(line.find(": "), Some(42), "{line:?}");
        assert!(
            golden_help
                .lines()
                .any(|g| words(g) == words(line) && g.find(": ") == Some(42)),
            "{line:?}"
        );
    }
    assert!(
        runtime
            .execute("foo bar")
            .0
            .starts_with("Unknown command. Please enter one of the following commands only:\n")
    );
    assert!(
        runtime.execute("show foo").0.starts_with(
            "Unknown command, but maybe one of the following ones is a better match:\n"
        )
    );
}

/// The rate and phase-time columns of each row type, as HAProxy fills them.
#[test]
fn rates_and_phase_times_per_row_type() {
    use std::time::{Duration, Instant};

    let registry = registry();
    let frontend = Arc::new(FrontendStats::new("127.0.0.1:8080"));
    let source = Source::new(registry.clone(), vec![frontend.clone()]);
    let rows = parse(&csv::render(&Report::collect(&source)));
    let (fe, a, be) = (
        find(&rows, "127.0.0.1:8080", "FRONTEND"),
        find(&rows, "app", "a"),
        find(&rows, "app", "BACKEND"),
    );
    // Nothing happened yet: zeros, and -1 for "no session ever" where HAProxy has lastsess.
    for c in [
        "rate",
        "rate_max",
        "req_rate",
        "req_rate_max",
        "conn_rate",
        "rate_lim",
    ] {
        assert_eq!(column(&rows, fe, c), "0", "FRONTEND {c}");
    }
    for c in [
        "lastsess",
        "qtime",
        "ctime",
        "rtime",
        "ttime",
        "qtime_max",
        "ttime_max",
    ] {
        assert_eq!(column(&rows, fe, c), "", "FRONTEND has no {c}");
    }
    for row in [a, be] {
        assert_eq!(column(&rows, row, "lastsess"), "-1");
        for c in [
            "rate",
            "rate_max",
            "qtime",
            "ctime",
            "rtime",
            "ttime",
            "rtime_max",
        ] {
            assert_eq!(column(&rows, row, c), "0", "{c}");
        }
        for c in ["req_rate", "conn_rate", "rate_lim"] {
            assert_eq!(column(&rows, row, c), "", "{} has no {c}", rows[row][1]);
        }
    }

    // One connection with one request; one answered request at backend `a`.
    frontend.connection_opened();
    frontend.request();
    let stats = registry
        .load()
        .cluster("app")
        .unwrap()
        .backend("a")
        .unwrap();
    let stats = stats.stats();
    stats.session(Instant::now());
    stats.answered(Some(Duration::from_millis(3)), Duration::from_millis(50));
    stats.finished(Duration::from_millis(7), Duration::from_millis(60));
    let rows = parse(&csv::render(&Report::collect(&source)));
    for c in [
        "rate",
        "rate_max",
        "conn_rate",
        "conn_rate_max",
        "req_rate",
        "req_rate_max",
    ] {
        assert_eq!(column(&rows, fe, c), "1", "FRONTEND {c}");
    }
    let expect = [
        ("rate", "1"),
        ("rate_max", "1"),
        ("lastsess", "0"),
        ("qtime", "7"),
        ("ctime", "3"),
        ("rtime", "50"),
        ("ttime", "60"),
        ("qtime_max", "7"),
        ("ctime_max", "3"),
        ("rtime_max", "50"),
        ("ttime_max", "60"),
    ];
    for (c, v) in expect {
        assert_eq!(column(&rows, a, c), v, "server {c}");
    }
    assert_eq!(
        column(&rows, find(&rows, "app", "b"), "lastsess"),
        "-1",
        "b saw nothing"
    );
}

/// Which rate and time columns each row type fills (empty or not) is what HAProxy 2.6 does in
/// the captured dump.
#[test]
fn rate_and_time_columns_are_filled_where_haproxy_fills_them() {
    const COLUMNS: [&str; 16] = [
        "rate",
        "rate_lim",
        "rate_max",
        "req_rate",
        "req_rate_max",
        "lastsess",
        "qtime",
        "ctime",
        "rtime",
        "ttime",
        "qtime_max",
        "ctime_max",
        "rtime_max",
        "ttime_max",
        "conn_rate",
        "conn_rate_max",
    ];
    let filled = |rows: &[Vec<String>], row: usize| -> Vec<bool> {
        COLUMNS
            .iter()
            .map(|c| !column(rows, row, c).is_empty())
            .collect()
    };
    let golden = parse(GOLDEN_CSV);
    let type_of = |rows: &[Vec<String>], row: usize| column(rows, row, "type");
    let registry = registry();
    let (source, _) = runtime(&registry);
    let ours = parse(&csv::render(&Report::collect(&source)));
    for kind in ["0", "1", "2"] {
        let g = (1..golden.len())
            .find(|&r| type_of(&golden, r) == kind)
            .expect("the dump has every row type");
        let o = (1..ours.len())
            .find(|&r| type_of(&ours, r) == kind)
            .expect("our report has every row type");
        assert_eq!(filled(&ours, o), filled(&golden, g), "row type {kind}");
    }
}
