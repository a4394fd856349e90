//! Traffic counters of backends and listeners, kept as atomics for HAProxy's CSV and Prometheus.
//!
//! The request path only adds to these (relaxed `fetch_add`s, no lock, no label lookup); readers
//! (the stats page, the runtime socket, `/metrics`) take a [`BackendStatsSnapshot`] at scrape
//! time. Health-check details are not counted here: they live with the health monitor and are
//! pulled through [`crate::backend::HealthObserver::check_info`] when a report is rendered.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::counter::{Counter, CounterSnapshot};

/// Upper bounds (seconds) of the latency histogram's buckets; a last `+Inf` bucket follows.
pub const LATENCY_BOUNDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

// The same bounds in microseconds, for integer comparison on the hot path.
const LATENCY_BOUNDS_US: [u64; 12] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    10_000_000,
];

/// Responses counted by status class: 1xx, 2xx, 3xx, 4xx, 5xx and other (HAProxy's `hrsp_*`).
#[derive(Debug, Default)]
pub struct StatusClasses([AtomicU64; 6]);

impl StatusClasses {
    /// Counts one response with `status`.
    pub fn record(&self, status: u16) {
        let class = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => 5,
        };
        self.0[class].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    pub fn snapshot(&self) -> [u64; 6] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

/// A latency histogram with fixed buckets ([`LATENCY_BOUNDS`]), as atomics.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    // Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: [AtomicU64; 13],
    sum_us: AtomicU64,
}

/// A histogram's values at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative counts per bound of [`LATENCY_BOUNDS`], then the total (`+Inf`).
    pub cumulative: Vec<u64>,
    /// The sum of all observations, in seconds.
    pub sum: f64,
    /// How many observations.
    pub count: u64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The cumulative counts, sum and count now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        HistogramSnapshot {
            count: running,
            cumulative,
            sum: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// Per-backend traffic counters (HAProxy's server columns that are not health or load).
#[derive(Debug, Default)]
pub struct BackendStats {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    responses: StatusClasses,
    connect_errors: AtomicU64,
    response_errors: AtomicU64,
    retries: AtomicU64,
    redispatches: AtomicU64,
    client_aborts: AtomicU64,
    server_aborts: AtomicU64,
    latency: LatencyHistogram,
}

/// A backend's traffic counters at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackendStatsSnapshot {
    /// Request body bytes sent to the backend (`bin`).
    pub bytes_in: u64,
    /// Response body bytes received from it (`bout`).
    pub bytes_out: u64,
    /// Responses by class: 1xx, 2xx, 3xx, 4xx, 5xx, other (`hrsp_*`).
    pub responses: [u64; 6],
    /// Connections that could not be opened (`econ`).
    pub connect_errors: u64,
    /// Exchanges that broke or timed out after the request was sent (`eresp`).
    pub response_errors: u64,
    /// Failed attempts here after which the request was tried again (`wretr`).
    pub retries: u64,
    /// Requests that left this backend for another one after a failure (`wredis`).
    pub redispatches: u64,
    /// Responses the client stopped reading before their end (`cli_abrt`).
    pub client_aborts: u64,
    /// Responses whose body the backend broke off (`srv_abrt`).
    pub server_aborts: u64,
    /// Time from sending the request to the response head.
    pub latency: HistogramSnapshot,
}

impl BackendStats {
    /// A response head with `status` arrived after `elapsed`.
    pub fn response(&self, status: u16, elapsed: Duration) {
        self.responses.record(status);
        self.latency.observe(elapsed);
    }

    /// The backend could not be reached.
    pub fn connect_error(&self) {
        self.connect_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The exchange failed after the request was handed over.
    pub fn response_error(&self) {
        self.response_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A failed attempt here is tried again on another backend.
    pub fn retried_elsewhere(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        self.redispatches.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` request body bytes went to the backend.
    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` response body bytes came from the backend.
    pub fn add_bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    /// The client went away before the response body ended.
    pub fn client_abort(&self) {
        self.client_aborts.fetch_add(1, Ordering::Relaxed);
    }

    /// The backend broke off the response body.
    pub fn server_abort(&self) {
        self.server_aborts.fetch_add(1, Ordering::Relaxed);
        self.response_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> BackendStatsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BackendStatsSnapshot {
            bytes_in: load(&self.bytes_in),
            bytes_out: load(&self.bytes_out),
            responses: self.responses.snapshot(),
            connect_errors: load(&self.connect_errors),
            response_errors: load(&self.response_errors),
            retries: load(&self.retries),
            redispatches: load(&self.redispatches),
            client_aborts: load(&self.client_aborts),
            server_aborts: load(&self.server_aborts),
            latency: self.latency.snapshot(),
        }
    }
}

/// Per-listener counters (HAProxy's FRONTEND rows): connections, requests, bytes, responses.
#[derive(Debug)]
pub struct FrontendStats {
    name: Arc<str>,
    connections: Counter,
    requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    responses: StatusClasses,
}

/// A listener's counters at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendStatsSnapshot {
    /// The listener's name (its address).
    pub name: Arc<str>,
    /// Client connections: open now, most at once, total (`scur`, `smax`, `stot`).
    pub connections: CounterSnapshot,
    /// HTTP requests (`req_tot`).
    pub requests: u64,
    /// Bytes read from clients (`bin`).
    pub bytes_in: u64,
    /// Bytes written to clients (`bout`).
    pub bytes_out: u64,
    /// Responses by class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    pub responses: [u64; 6],
}

impl FrontendStats {
    /// Counters for the listener called `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        FrontendStats {
            name: name.into(),
            connections: Counter::default(),
            requests: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            responses: StatusClasses::default(),
        }
    }

    /// The listener's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// A connection was accepted.
    pub fn connection_opened(&self) {
        self.connections.incr();
    }

    /// A connection ended.
    pub fn connection_closed(&self) {
        self.connections.decr();
    }

    /// A request arrived.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A response with `status` was sent.
    pub fn response(&self, status: u16) {
        self.responses.record(status);
    }

    /// `n` bytes were read from a client.
    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` bytes were written to a client.
    pub fn add_bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> FrontendStatsSnapshot {
        FrontendStatsSnapshot {
            name: self.name.clone(),
            connections: self.connections.snapshot(),
            requests: self.requests.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            responses: self.responses.snapshot(),
        }
    }
}

/// The layer a health check works at (HAProxy's `L4`/`L7` prefixes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckLayer {
    /// A TCP connect check.
    L4,
    /// An application check (HTTP, FastCGI).
    L7,
}

/// The result of the last health check, in HAProxy's vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckStatus {
    /// No check has finished yet (`INI`).
    Init,
    /// A TCP check passed (`L4OK`).
    L4Ok,
    /// The connection timed out (`L4TOUT`).
    L4Timeout,
    /// The connection was refused or failed (`L4CON`).
    L4Connect,
    /// An application check passed (`L7OK`).
    L7Ok,
    /// The application answer timed out (`L7TOUT`).
    L7Timeout,
    /// The application answer was not valid (`L7RSP`).
    L7Response,
    /// The application answered with an unexpected status (`L7STS`).
    L7Status,
}

impl CheckStatus {
    /// HAProxy's code (`check_status`).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Init => "INI",
            CheckStatus::L4Ok => "L4OK",
            CheckStatus::L4Timeout => "L4TOUT",
            CheckStatus::L4Connect => "L4CON",
            CheckStatus::L7Ok => "L7OK",
            CheckStatus::L7Timeout => "L7TOUT",
            CheckStatus::L7Response => "L7RSP",
            CheckStatus::L7Status => "L7STS",
        }
    }

    /// HAProxy's description (`check_desc`).
    pub fn description(self) -> &'static str {
        match self {
            CheckStatus::Init => "Initializing",
            CheckStatus::L4Ok => "Layer4 check passed",
            CheckStatus::L4Timeout => "Layer4 timeout",
            CheckStatus::L4Connect => "Layer4 connection problem",
            CheckStatus::L7Ok => "Layer7 check passed",
            CheckStatus::L7Timeout => "Layer7 timeout",
            CheckStatus::L7Response => "Layer7 invalid response",
            CheckStatus::L7Status => "Layer7 wrong status",
        }
    }

    /// Whether the check passed.
    pub fn passed(self) -> bool {
        matches!(self, CheckStatus::L4Ok | CheckStatus::L7Ok)
    }
}

/// What a backend's health monitor knows, for reports (read at scrape time, not on requests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckInfo {
    /// The last check's result (`Init` before the first one).
    pub status: CheckStatus,
    /// The status code of the last application check, when one is known (`check_code`).
    pub code: Option<u16>,
    /// How long the last check took (`check_duration`).
    pub duration: Option<Duration>,
    /// The last check's error text (`last_chk`).
    pub detail: Option<String>,
    /// Successes needed to come up.
    pub rise: u32,
    /// Failures needed to go down.
    pub fall: u32,
    /// The current run of successes.
    pub consecutive_successes: u32,
    /// The current run of failures.
    pub consecutive_failures: u32,
    /// Checks sent.
    pub checks: u64,
    /// Checks that failed (`chkfail`).
    pub failed_checks: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_and_other() {
        let c = StatusClasses::default();
        for s in [100, 200, 204, 301, 404, 503, 599, 600, 42] {
            c.record(s);
        }
        assert_eq!(c.snapshot(), [1, 2, 1, 1, 2, 2]);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(500)); // <= 1ms
        h.observe(Duration::from_millis(1)); // exactly on the bound: <= 1ms
        h.observe(Duration::from_millis(30)); // <= 50ms
        h.observe(Duration::from_secs(60)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.cumulative.len(), LATENCY_BOUNDS.len() + 1);
        assert_eq!(s.cumulative[0], 2);
        assert_eq!(s.cumulative[4], 2, "25ms bucket");
        assert_eq!(s.cumulative[5], 3, "50ms bucket");
        assert_eq!(s.cumulative[11], 3, "10s bucket");
        assert_eq!(s.cumulative[12], 4);
        assert!((s.sum - 60.0315).abs() < 1e-9);
        assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn backend_counters() {
        let b = BackendStats::default();
        b.response(200, Duration::from_millis(2));
        b.response(502, Duration::from_millis(2));
        b.connect_error();
        b.server_abort();
        b.retried_elsewhere();
        b.add_bytes_in(10);
        b.add_bytes_out(20);
        let s = b.snapshot();
        assert_eq!(s.responses, [0, 1, 0, 0, 1, 0]);
        assert_eq!((s.connect_errors, s.response_errors), (1, 1));
        assert_eq!((s.retries, s.redispatches, s.server_aborts), (1, 1, 1));
        assert_eq!((s.bytes_in, s.bytes_out), (10, 20));
        assert_eq!(s.latency.count, 2);
    }
}
