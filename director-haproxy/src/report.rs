//! The stats report: one row per listener, per backend and per cluster, in HAProxy's columns.
//!
//! [`Report::collect`] walks the registry and the listeners once, at request time, reading the
//! counters `director-core` keeps as atomics; [`crate::csv`] and [`crate::html`] render the same
//! rows. Values follow HAProxy 2.6 (the version the golden header was captured from): status
//! words (`UP`, `DOWN`, `MAINT`, `DRAIN`, `UP 2/3`, `DOWN 1/2`, `no check`, `OPEN`), times in
//! seconds, check durations in milliseconds. Columns Director has no counter for stay empty.
//!
//! Rates and phase times follow HAProxy's definitions: `rate` is sessions per second over the
//! last second (a FRONTEND's client connections, a server's attempts sent to it, a BACKEND's
//! admitted requests), `req_rate` a FRONTEND's HTTP requests per second, and `qtime`, `ctime`,
//! `rtime`, `ttime` (server and BACKEND) average milliseconds over about the last 1024 answered
//! requests, with their `_max`. A FastCGI backend or a nested cluster has no separate connect
//! step, so its `ctime` stays 0.

use std::{
    collections::HashMap,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Instant, SystemTime},
};

use director_core::{
    addr::{BackendAddr, Protocol},
    backend::{AdminState, Backend, Health, Role},
    cluster::Cluster,
    registry::Registry,
    schedule::SchedulerKind,
    stats::{CheckInfo, FrontendStats, PhaseTimesSnapshot, SessionsSnapshot},
};

/// HAProxy 2.6's `show stat` header line, byte for byte (the golden test compares it with the
/// one captured from a real HAProxy).
pub const HEADER: &str = concat!(
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,",
    "eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,",
    "qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,",
    "check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,",
    "hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,",
    "comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,",
    "ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,",
    "check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,",
    "algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,",
    "cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,",
    "ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,",
    "agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,",
    "ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,",
    "h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,",
    "h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,",
    "h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,",
    "h2_total_connections,h2_backend_total_streams,h1_open_connections,",
    "h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,",
    "h1_spliced_bytes_in,h1_spliced_bytes_out,",
    "\n"
);

/// The column names of [`HEADER`], in order.
pub static COLUMNS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    HEADER
        .trim_start_matches("# ")
        .trim_end()
        .trim_end_matches(',')
        .split(',')
        .collect()
});

static INDEX: LazyLock<HashMap<&'static str, usize>> =
    LazyLock::new(|| COLUMNS.iter().enumerate().map(|(i, c)| (*c, i)).collect());

/// HAProxy's row types (`type` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// A listener (`FRONTEND`, type 0).
    Frontend,
    /// A cluster as a whole (`BACKEND`, type 1).
    Backend,
    /// One backend of a cluster (a server, type 2).
    Server,
}

/// One row: a value (possibly empty) for every column of [`HEADER`].
#[derive(Clone, Debug)]
pub struct Row {
    /// What the row stands for.
    pub kind: RowKind,
    cells: Vec<String>,
}

impl Row {
    fn new(kind: RowKind) -> Self {
        Row {
            kind,
            cells: vec![String::new(); COLUMNS.len()],
        }
    }

    fn set(&mut self, column: &str, value: impl ToString) {
        let i = INDEX[column];
        self.cells[i] = value.to_string();
    }

    /// The value of `column` ("" when empty or unknown).
    pub fn get(&self, column: &str) -> &str {
        INDEX.get(column).map_or("", |&i| &self.cells[i])
    }

    /// All values, in column order.
    pub fn cells(&self) -> &[String] {
        &self.cells
    }
}

/// Where reports come from: the cluster registry and the listeners' counters.
#[derive(Clone, Debug)]
pub struct Source {
    registry: Arc<Registry>,
    frontends: Vec<Arc<FrontendStats>>,
    started: Instant,
    started_at: SystemTime,
    stopping: Arc<AtomicBool>,
}

impl Source {
    /// Reports over `registry` and the listeners counted by `frontends`.
    pub fn new(registry: Arc<Registry>, frontends: Vec<Arc<FrontendStats>>) -> Self {
        Source {
            registry,
            frontends,
            started: Instant::now(),
            started_at: SystemTime::now(),
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Marks the process as stopping: the monitor page answers 503 from now on, and `show info`
    /// says `Stopping: 1`.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Whether the process is stopping.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The listeners' counters.
    pub fn frontends(&self) -> &[Arc<FrontendStats>] {
        &self.frontends
    }

    /// When the source was made (process start, near enough).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The wall-clock time the source was made.
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }
}

/// A full report, in HAProxy's row order: every FRONTEND, then per cluster its servers and
/// its BACKEND row.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The rows.
    pub rows: Vec<Row>,
}

impl Report {
    /// Reads every counter of `source` now.
    pub fn collect(source: &Source) -> Report {
        let mut rows = Vec::new();
        let pid = 1;
        let mut iid = 1;
        for frontend in source.frontends() {
            iid += 1;
            rows.push(frontend_row(frontend, iid, pid));
        }
        let snapshot = source.registry().load();
        for cluster in snapshot.clusters() {
            iid += 1;
            let backends = cluster.backends();
            for (i, backend) in backends.iter().enumerate() {
                rows.push(server_row(cluster, backend, iid, i + 1, pid));
            }
            rows.push(backend_row(
                cluster,
                &backends,
                &rows[rows.len() - backends.len()..],
                iid,
                pid,
            ));
        }
        Report { rows }
    }
}

fn frontend_row(frontend: &FrontendStats, iid: usize, pid: u32) -> Row {
    let s = frontend.snapshot();
    let mut row = Row::new(RowKind::Frontend);
    row.set("pxname", &s.name);
    row.set("svname", "FRONTEND");
    row.set("scur", s.connections.current);
    row.set("smax", s.connections.max);
    // `max-connections`: accepting pauses at this many.
    if s.connection_limit > 0 {
        row.set("slim", s.connection_limit);
    }
    row.set("stot", s.connections.total);
    row.set("bin", s.bytes_in);
    row.set("bout", s.bytes_out);
    for c in ["dreq", "dresp", "ereq"] {
        row.set(c, 0);
    }
    row.set("status", "OPEN");
    row.set("pid", pid);
    row.set("iid", iid);
    row.set("sid", 0);
    row.set("type", 0);
    set_responses(&mut row, s.responses);
    row.set("req_tot", s.requests);
    row.set("conn_tot", s.connections.total);
    // Every client connection is a session here, so `rate` and `conn_rate` agree.
    for (column, value) in [
        ("rate", s.connection_rate.current),
        ("rate_max", s.connection_rate.max),
        ("conn_rate", s.connection_rate.current),
        ("conn_rate_max", s.connection_rate.max),
        ("req_rate", s.request_rate.current),
        ("req_rate_max", s.request_rate.max),
        ("rate_lim", 0), // no session rate limit
    ] {
        row.set(column, value);
    }
    row.set("mode", "http");
    row
}

/// `rate`, `rate_max` and `lastsess` (whole seconds, -1 if never) of a server or BACKEND row.
fn set_sessions(row: &mut Row, s: &SessionsSnapshot) {
    row.set("rate", s.rate.current);
    row.set("rate_max", s.rate.max);
    match s.since_last {
        Some(age) => row.set("lastsess", age.as_secs()),
        None => row.set("lastsess", -1),
    }
}

/// The phase averages and maxima of a server or BACKEND row, in milliseconds.
fn set_times(row: &mut Row, t: &PhaseTimesSnapshot) {
    for (name, phase) in [
        ("qtime", t.queue),
        ("ctime", t.connect),
        ("rtime", t.response),
        ("ttime", t.total),
    ] {
        row.set(name, phase.average);
        row.set(&format!("{name}_max"), phase.max);
    }
}

fn set_responses(row: &mut Row, r: [u64; 6]) {
    for (column, n) in [
        "hrsp_1xx",
        "hrsp_2xx",
        "hrsp_3xx",
        "hrsp_4xx",
        "hrsp_5xx",
        "hrsp_other",
    ]
    .into_iter()
    .zip(r)
    {
        row.set(column, n);
    }
}

/// A backend's status in HAProxy's words.
///
/// `MAINT` when disabled; otherwise from health: `DOWN` (with `DOWN s/rise` while coming back),
/// `UP` (with `UP n/fall` while failing checks, `n` being the failures still allowed), `DRAIN`
/// when up but soft-drained, and `no check` for a backend without health checks.
pub fn server_status(backend: &Backend, check: Option<&CheckInfo>) -> String {
    let admin = backend.admin_state();
    if admin == AdminState::Maint {
        return "MAINT".into();
    }
    let down = backend.health() == Health::Offline
        || (backend.url().protocol == Protocol::Cluster && !backend.is_available());
    let Some(check) = check else {
        return match (down, admin) {
            (true, _) => "DOWN".into(),
            (false, AdminState::Drain) => "DRAIN".into(),
            (false, _) => "no check".into(),
        };
    };
    if down {
        let s = check.consecutive_successes;
        if s > 0 && s < check.rise {
            return format!("DOWN {s}/{}", check.rise);
        }
        return "DOWN".into();
    }
    if admin == AdminState::Drain {
        return "DRAIN".into();
    }
    let f = check.consecutive_failures;
    if f > 0 && f < check.fall {
        return format!("UP {}/{}", check.fall - f, check.fall);
    }
    "UP".into()
}

/// HAProxy's `check_health`: 0..rise-1 while down, rise..rise+fall-1 while up.
pub fn check_health(backend: &Backend, check: &CheckInfo) -> u32 {
    if backend.health() == Health::Offline {
        check
            .consecutive_successes
            .min(check.rise.saturating_sub(1))
    } else {
        (check.rise + check.fall - 1).saturating_sub(check.consecutive_failures.min(check.fall - 1))
    }
}

fn server_row(cluster: &Cluster, backend: &Backend, iid: usize, sid: usize, pid: u32) -> Row {
    let load = backend.load();
    let stats = backend.stats().snapshot();
    let check = backend.check_info();
    let mut row = Row::new(RowKind::Server);
    row.set("pxname", cluster.name());
    row.set("svname", backend.name());
    row.set("qcur", 0);
    row.set("qmax", 0);
    row.set("scur", backend.in_flight());
    row.set("smax", load.max);
    if backend.capacity() > 0 {
        row.set("slim", backend.capacity());
    }
    row.set("stot", load.total);
    row.set("bin", stats.bytes_in);
    row.set("bout", stats.bytes_out);
    row.set("dresp", 0);
    row.set("econ", stats.connect_errors);
    row.set("eresp", stats.response_errors);
    row.set("wretr", stats.retries);
    row.set("wredis", stats.redispatches);
    row.set("status", server_status(backend, check.as_ref()));
    row.set("weight", backend.weight());
    row.set("uweight", backend.weight());
    let (act, bck) = match backend.role() {
        Role::Active => (1, 0),
        Role::Backup => (0, 1),
    };
    row.set("act", act);
    row.set("bck", bck);
    row.set("lastchg", backend.since_last_change().as_secs());
    row.set("pid", pid);
    row.set("iid", iid);
    row.set("sid", sid);
    row.set("lbtot", load.total);
    row.set("type", 2);
    set_responses(&mut row, stats.responses);
    row.set("cli_abrt", stats.client_aborts);
    row.set("srv_abrt", stats.server_aborts);
    set_sessions(&mut row, &stats.sessions);
    set_times(&mut row, &stats.times);
    if let Some(check) = &check {
        row.set("chkfail", check.failed_checks);
        row.set("chkdown", backend.times_down());
        row.set("downtime", backend.downtime().as_secs());
        row.set("check_status", check.status.as_str());
        if let Some(code) = check.code {
            row.set("check_code", code);
        }
        if let Some(d) = check.duration {
            row.set("check_duration", d.as_millis());
        }
        if let Some(detail) = &check.detail {
            row.set("last_chk", detail);
        }
        row.set("check_desc", check.status.description());
        row.set("check_rise", check.rise);
        row.set("check_fall", check.fall);
        row.set("check_health", check_health(backend, check));
    }
    if let Some(addr) = address(&backend.url().addr) {
        row.set("addr", addr);
    }
    row.set("mode", "http");
    row
}

fn address(addr: &BackendAddr) -> Option<String> {
    match addr {
        BackendAddr::Tcp(sa) => Some(sa.to_string()),
        BackendAddr::Host(host, port) => Some(format!("{host}:{port}")),
        BackendAddr::Unix(path) => Some(format!("unix@{}", path.display())),
        BackendAddr::Cluster(_) => None,
    }
}

/// HAProxy's name for a scheduler (`algo`), where one matches; Director's own name otherwise.
pub fn algo(kind: SchedulerKind) -> &'static str {
    match kind {
        SchedulerKind::RoundRobin | SchedulerKind::WeightedRoundRobin => "roundrobin",
        SchedulerKind::LeastLoad => "leastconn",
        SchedulerKind::Chance | SchedulerKind::Fallback => "first",
        SchedulerKind::Random => "random",
        other => other.as_str(),
    }
}

fn backend_row(
    cluster: &Cluster,
    backends: &[Arc<Backend>],
    servers: &[Row],
    iid: usize,
    pid: u32,
) -> Row {
    let stats = cluster.stats();
    let mut row = Row::new(RowKind::Backend);
    row.set("pxname", cluster.name());
    row.set("svname", "BACKEND");
    row.set("qcur", stats.queued.current);
    row.set("qmax", stats.queued.max);
    row.set("scur", stats.load.current);
    row.set("smax", stats.load.max);
    row.set("stot", stats.load.total);
    let sum = |column: &str| -> u64 {
        servers
            .iter()
            .map(|r| r.get(column).parse::<u64>().unwrap_or(0))
            .sum()
    };
    for column in [
        "bin",
        "bout",
        "econ",
        "eresp",
        "wretr",
        "wredis",
        "hrsp_1xx",
        "hrsp_2xx",
        "hrsp_3xx",
        "hrsp_4xx",
        "hrsp_5xx",
        "hrsp_other",
        "cli_abrt",
        "srv_abrt",
    ] {
        row.set(column, sum(column));
    }
    row.set("dreq", 0);
    row.set("dresp", 0);
    let up = cluster.is_enabled() && cluster.has_available_member();
    row.set("status", if up { "UP" } else { "DOWN" });
    let available: Vec<&Arc<Backend>> = backends.iter().filter(|b| b.is_available()).collect();
    // Real weights: an integral sum prints as an integer (`5`), HAProxy's usual form.
    let weight: f64 = available.iter().map(|b| b.weight()).sum();
    row.set("weight", weight);
    row.set("uweight", weight);
    row.set(
        "act",
        available
            .iter()
            .filter(|b| b.role() == Role::Active)
            .count(),
    );
    row.set(
        "bck",
        available
            .iter()
            .filter(|b| b.role() == Role::Backup)
            .count(),
    );
    row.set("pid", pid);
    row.set("iid", iid);
    row.set("sid", 0);
    row.set("lbtot", stats.load.total);
    row.set("type", 1);
    row.set("req_tot", stats.load.total);
    set_sessions(&mut row, &stats.sessions);
    set_times(&mut row, &stats.times);
    row.set("mode", "http");
    row.set("algo", algo(cluster.scheduler().kind()));
    row
}
