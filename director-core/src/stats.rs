//! Traffic counters of backends and listeners, kept as atomics for HAProxy's CSV and Prometheus.
//!
//! The request path only adds to these (relaxed `fetch_add`s, no lock, no label lookup); readers
//! (the stats page, the runtime socket, `/metrics`) take a [`BackendStatsSnapshot`] at scrape
//! time. Health-check details are not counted here: they live with the health monitor and are
//! pulled through [`crate::backend::HealthObserver::check_info`] when a report is rendered.
//!
//! Two lock-free building blocks follow HAProxy's definitions of its `rate` and `*time`
//! columns: [`Rate`] (its `freq_ctr`: events in the current second plus the previous second's,
//! weighted by what is left of the current one) and [`SlidingAverage`] (its `swrate`: an average
//! over about the last 1024 samples). Both read a coarse process-wide clock ([`now_ms`]); their
//! arithmetic is in pure functions that take the time, so tests need no sleeps.
//!
//! ```
//! use director_core::stats::{Rate, SlidingAverage};
//!
//! let rate = Rate::default();
//! rate.add_at(1_200);
//! rate.add_at(1_900);
//! assert_eq!(rate.read_at(1_950), 2); // two this second
//! assert_eq!(rate.read_at(2_500), 1); // half of last second's two
//!
//! let rtime = SlidingAverage::default();
//! rtime.add(10);
//! rtime.add(30);
//! assert_eq!(rtime.snapshot().average, 20);
//! assert_eq!(rtime.snapshot().max, 30);
//! ```

use std::{
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
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

// === The stats clock ===

// The zero of the stats clock: rates and "seconds since" are computed against it.
static CLOCK_BASE: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Milliseconds on the stats clock (a monotonic, process-wide clock for rates and ages).
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// `at` on the stats clock, in milliseconds (instants from before the clock started read 0).
/// Lets the request path reuse an `Instant` it already took instead of reading the clock again.
pub fn ms_at(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(*CLOCK_BASE).as_millis()).unwrap_or(u64::MAX)
}

fn whole_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// === impl Rate ===

/// The length of a [`Rate`]'s period: HAProxy's rates are per second.
pub const RATE_PERIOD_MS: u64 = 1000;

/// Events per second over the last second, and the most seen in one second (HAProxy's
/// `freq_ctr`, read for `rate`, `req_rate`, `conn_rate` and their `_max`).
///
/// It counts the events of the current one-second period and keeps the count of the previous
/// one; a read is `current + previous × (the part of the current second still to come)`, which
/// glides from one second's count to the next instead of jumping at each boundary (and, as in
/// HAProxy, a lone event last second reads 1 until this second ends, to avoid flapping). `max`
/// is the highest count reached within one period, as HAProxy's `*_max` columns.
///
/// Lock-free: the period number and its count share one `AtomicU64`, so a single
/// compare-and-swap both counts and rotates; the rotated-out period goes into `previous` with
/// `fetch_max` (its period number is in the high bits, so the latest always wins). A read that
/// falls between those two steps sees no previous second; these are stats, not accounting.
#[derive(Debug, Default)]
pub struct Rate {
    current: AtomicU64,
    previous: AtomicU64,
    max: AtomicU64,
}

/// A [`Rate`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateSnapshot {
    /// Events per second now.
    pub current: u64,
    /// The most events counted within one second.
    pub max: u64,
}

fn pack(period: u32, count: u32) -> u64 {
    (u64::from(period) << 32) | u64::from(count)
}

fn unpack(packed: u64) -> (u32, u32) {
    ((packed >> 32) as u32, packed as u32)
}

fn period_of(now_ms: u64) -> u32 {
    // 2^32 seconds is 136 years of uptime.
    u32::try_from(now_ms / RATE_PERIOD_MS).unwrap_or(u32::MAX)
}

impl Rate {
    /// Counts one event now.
    pub fn add(&self) {
        self.add_at(now_ms());
    }

    /// Counts one event at `now_ms` on the stats clock; returns the count of its period.
    pub fn add_at(&self, now_ms: u64) -> u64 {
        let period = period_of(now_ms);
        let mut seen = self.current.load(Ordering::Relaxed);
        loop {
            let (at, count) = unpack(seen);
            // A period ahead of ours was opened by a thread that read the clock later: count
            // there rather than step back.
            let next = if at >= period {
                pack(at, count.saturating_add(1))
            } else {
                pack(period, 1)
            };
            match self.current.compare_exchange_weak(
                seen,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if at < period {
                        self.previous.fetch_max(seen, Ordering::Relaxed);
                    }
                    let count = u64::from(unpack(next).1);
                    if count > self.max.load(Ordering::Relaxed) {
                        self.max.fetch_max(count, Ordering::Relaxed);
                    }
                    return count;
                }
                Err(actual) => seen = actual,
            }
        }
    }

    /// Events per second now.
    pub fn read(&self) -> u64 {
        self.read_at(now_ms())
    }

    /// Events per second at `now_ms` on the stats clock.
    pub fn read_at(&self, now_ms: u64) -> u64 {
        let (at, count) = unpack(self.current.load(Ordering::Relaxed));
        let (before, before_count) = unpack(self.previous.load(Ordering::Relaxed));
        let (mut period, mut elapsed) = (period_of(now_ms), now_ms % RATE_PERIOD_MS);
        if at > period {
            // A writer read the clock after us: read as of the start of its period.
            (period, elapsed) = (at, 0);
        }
        let (current, previous) = if at == period {
            let previous = if before.checked_add(1) == Some(period) {
                before_count
            } else {
                0 // no event in the second before this one (or it is being rotated in)
            };
            (count, previous)
        } else if at.checked_add(1) == Some(period) {
            (0, count)
        } else {
            (0, 0)
        };
        if current == 0 && previous <= 1 {
            // HAProxy's "very low rate, avoid flapping": one event last second reads 1 all
            // through this one rather than dropping to 0 at once.
            return u64::from(previous);
        }
        u64::from(current) + u64::from(previous) * (RATE_PERIOD_MS - elapsed) / RATE_PERIOD_MS
    }

    /// The most events counted within one second.
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// The rate now and its maximum.
    pub fn snapshot(&self) -> RateSnapshot {
        self.snapshot_at(now_ms())
    }

    /// The rate at `now_ms` and its maximum.
    pub fn snapshot_at(&self, now_ms: u64) -> RateSnapshot {
        RateSnapshot {
            current: self.read_at(now_ms),
            max: self.max(),
        }
    }
}

// === impl SlidingAverage ===

/// How many samples a [`SlidingAverage`] spans (HAProxy's `TIME_STATS_SAMPLES`).
pub const AVERAGE_SAMPLES: u64 = 1024;

/// The average of about the last [`AVERAGE_SAMPLES`] values, and the largest value ever
/// (HAProxy's `swrate`, read for `qtime`, `ctime`, `rtime`, `ttime` and their `_max`).
///
/// Until the window is full the sum is a plain sum and the average exact; from then on each
/// new value first takes `1/1024` off the sum (`sum - ⌈sum / 1024⌉ + v`), so old values fade
/// out geometrically instead of being stored. This is HAProxy's `swrate_add_dynamic` as its
/// stream code calls it (no decay below a full window); the read is `⌈sum / min(samples,
/// 1024)⌉`. Lock-free: one `fetch_add` (samples), one `fetch_update` (sum), one `fetch_max`.
#[derive(Debug, Default)]
pub struct SlidingAverage {
    sum: AtomicU64,
    samples: AtomicU64,
    max: AtomicU64,
}

/// A [`SlidingAverage`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AverageSnapshot {
    /// The average over about the last [`AVERAGE_SAMPLES`] values (0 before any).
    pub average: u64,
    /// The largest value ever added.
    pub max: u64,
    /// How many values were ever added.
    pub samples: u64,
}

/// Adds `v` to a sliding sum that already holds `count` values (this one makes `count + 1`).
fn swrate_add(sum: u64, count: u64, v: u64) -> u64 {
    let decay = if count >= AVERAGE_SAMPLES {
        sum.saturating_add(AVERAGE_SAMPLES - 1) / AVERAGE_SAMPLES
    } else {
        0
    };
    // `decay <= sum` whenever sum > 0 (⌈s/n⌉ <= s), so this never goes below zero.
    (sum - decay).saturating_add(v)
}

/// The average of a sliding sum over `samples` values.
fn swrate_avg(sum: u64, samples: u64) -> u64 {
    let n = samples.min(AVERAGE_SAMPLES);
    if n == 0 {
        return 0;
    }
    sum.saturating_add(n - 1) / n
}

impl SlidingAverage {
    /// Adds one value.
    pub fn add(&self, v: u64) {
        let count = self.samples.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |sum| {
                Some(swrate_add(sum, count, v))
            });
        if v > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(v, Ordering::Relaxed);
        }
    }

    /// Adds a duration, in whole milliseconds (HAProxy's unit for these columns).
    pub fn add_duration(&self, d: Duration) {
        self.add(whole_ms(d));
    }

    /// The average, maximum and sample count now.
    pub fn snapshot(&self) -> AverageSnapshot {
        let samples = self.samples.load(Ordering::Relaxed);
        AverageSnapshot {
            average: swrate_avg(self.sum.load(Ordering::Relaxed), samples),
            max: self.max.load(Ordering::Relaxed),
            samples,
        }
    }
}

// === impl Sessions ===

/// Sessions of a backend or cluster: their [`Rate`] and when the last one began (HAProxy's
/// `rate`, `rate_max` and `lastsess` on server and BACKEND rows).
#[derive(Debug, Default)]
pub struct Sessions {
    rate: Rate,
    // The last session's start on the stats clock, plus one (0: never).
    last: AtomicU64,
}

/// [`Sessions`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionsSnapshot {
    /// Sessions per second now, and the most in one second.
    pub rate: RateSnapshot,
    /// How long ago the last session began, or `None` if none ever did.
    pub since_last: Option<Duration>,
}

impl Sessions {
    /// A session began at `at` (an `Instant` the caller already has).
    pub fn begin(&self, at: Instant) {
        self.begin_at(ms_at(at));
    }

    /// A session began at `now_ms` on the stats clock.
    pub fn begin_at(&self, now_ms: u64) {
        self.rate.add_at(now_ms);
        self.last.store(now_ms.saturating_add(1), Ordering::Relaxed);
    }

    /// The rate and age of the last session now.
    pub fn snapshot(&self) -> SessionsSnapshot {
        self.snapshot_at(now_ms())
    }

    /// The rate and age of the last session at `now_ms`.
    pub fn snapshot_at(&self, now_ms: u64) -> SessionsSnapshot {
        let last = self.last.load(Ordering::Relaxed);
        SessionsSnapshot {
            rate: self.rate.snapshot_at(now_ms),
            since_last: last
                .checked_sub(1)
                .map(|at| Duration::from_millis(now_ms.saturating_sub(at))),
        }
    }
}

// === impl PhaseTimes ===

/// Sliding averages of a request's phases, in milliseconds (HAProxy's `qtime`, `ctime`,
/// `rtime`, `ttime` and their `_max`).
#[derive(Debug, Default)]
pub struct PhaseTimes {
    /// Time queued before admission.
    pub queue: SlidingAverage,
    /// Time to get a connection to the backend (a reused one counts as about 0).
    pub connect: SlidingAverage,
    /// Time from sending the request (once connected) to the response head.
    pub response: SlidingAverage,
    /// Time from arrival at the cluster to the end of the response body.
    pub total: SlidingAverage,
}

/// [`PhaseTimes`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhaseTimesSnapshot {
    /// `qtime`, `qtime_max`.
    pub queue: AverageSnapshot,
    /// `ctime`, `ctime_max`.
    pub connect: AverageSnapshot,
    /// `rtime`, `rtime_max`.
    pub response: AverageSnapshot,
    /// `ttime`, `ttime_max`.
    pub total: AverageSnapshot,
}

impl PhaseTimes {
    /// The averages now.
    pub fn snapshot(&self) -> PhaseTimesSnapshot {
        PhaseTimesSnapshot {
            queue: self.queue.snapshot(),
            connect: self.connect.snapshot(),
            response: self.response.snapshot(),
            total: self.total.snapshot(),
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
    sessions: Sessions,
    times: PhaseTimes,
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
    /// Attempts sent here: per second and the last one's age (`rate`, `rate_max`, `lastsess`).
    pub sessions: SessionsSnapshot,
    /// Average and longest phases of the requests answered here (`qtime`…`ttime_max`). Queue
    /// and total time are known only for requests balanced by a cluster; connect time only for
    /// HTTP backends (FastCGI and nested clusters have no separate connect step).
    pub times: PhaseTimesSnapshot,
}

impl BackendStats {
    /// A response head with `status` arrived after `elapsed`.
    pub fn response(&self, status: u16, elapsed: Duration) {
        self.responses.record(status);
        self.latency.observe(elapsed);
    }

    /// An attempt was sent here (or began connecting) at `at`.
    pub fn session(&self, at: Instant) {
        self.sessions.begin(at);
    }

    /// An attempt here was answered: it took `connect` to get a connection (`None` where the
    /// transport has no separate connect step) and then `response` to the response head.
    pub fn answered(&self, connect: Option<Duration>, response: Duration) {
        if let Some(connect) = connect {
            self.times.connect.add_duration(connect);
        }
        self.times.response.add_duration(response);
    }

    /// A request answered here, balanced by a cluster, has ended: it waited `queue` for
    /// admission and took `total` from arrival at the cluster to the end of its response.
    pub fn finished(&self, queue: Duration, total: Duration) {
        self.times.queue.add_duration(queue);
        self.times.total.add_duration(total);
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
            sessions: self.sessions.snapshot(),
            times: self.times.snapshot(),
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
    connection_rate: Rate,
    request_rate: Rate,
    connection_limit: AtomicU64,
    limit_waits: AtomicU64,
    timeouts: AtomicU64,
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
    /// Connections accepted per second (`rate`, `conn_rate` and their `_max`).
    pub connection_rate: RateSnapshot,
    /// HTTP requests per second (`req_rate`, `req_rate_max`).
    pub request_rate: RateSnapshot,
    /// The most connections the listener holds at once (`slim`); 0 when unlimited.
    pub connection_limit: u64,
    /// How often accepting paused because the listener held `connection_limit` connections.
    pub limit_waits: u64,
    /// Connections closed because the client stayed silent past a timeout (no request head
    /// in time, or idle too long between requests).
    pub timeouts: u64,
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
            connection_rate: Rate::default(),
            request_rate: Rate::default(),
            connection_limit: AtomicU64::new(0),
            limit_waits: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }

    /// Sets the most connections the listener holds at once (`slim`).
    pub fn set_connection_limit(&self, limit: u64) {
        self.connection_limit.store(limit, Ordering::Relaxed);
    }

    /// Accepting paused: the listener held as many connections as its limit.
    pub fn limit_reached(&self) {
        self.limit_waits.fetch_add(1, Ordering::Relaxed);
    }

    /// A silent or idle connection was closed at its timeout.
    pub fn timed_out(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// The listener's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// A connection was accepted.
    pub fn connection_opened(&self) {
        self.connections.incr();
        self.connection_rate.add();
    }

    /// A connection ended.
    pub fn connection_closed(&self) {
        self.connections.decr();
    }

    /// A request arrived.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.request_rate.add();
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
            connection_rate: self.connection_rate.snapshot(),
            request_rate: self.request_rate.snapshot(),
            connection_limit: self.connection_limit.load(Ordering::Relaxed),
            limit_waits: self.limit_waits.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
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

    #[test]
    fn rate_counts_this_second_and_glides_over_the_last() {
        let r = Rate::default();
        assert_eq!(r.read_at(0), 0);
        assert_eq!(r.add_at(1_200), 1);
        assert_eq!(r.add_at(1_900), 2);
        assert_eq!(r.read_at(1_950), 2);
        // Next second: the previous two weigh what is left of this one.
        assert_eq!(r.read_at(2_000), 2);
        assert_eq!(r.read_at(2_500), 1);
        assert_eq!(r.read_at(2_999), 0);
        assert_eq!(r.add_at(2_500), 1);
        assert_eq!(r.read_at(2_500), 2, "1 now + 2 x 0.5");
        // Two seconds later nothing is left.
        assert_eq!(r.read_at(4_000), 0);
        assert_eq!(r.max(), 2);
    }

    #[test]
    fn rate_of_one_event_does_not_flap() {
        let r = Rate::default();
        r.add_at(999);
        assert_eq!(r.read_at(999), 1);
        assert_eq!(r.read_at(1_998), 1, "1 x 0.002 would floor to 0");
        assert_eq!(r.read_at(2_000), 0);
    }

    #[test]
    fn rate_forgets_a_previous_second_that_was_not_the_last() {
        let r = Rate::default();
        for _ in 0..5 {
            r.add_at(1_000);
        }
        r.add_at(5_100);
        assert_eq!(r.read_at(5_100), 1, "second 1 is not second 4");
        assert_eq!(r.snapshot_at(5_100), RateSnapshot { current: 1, max: 5 });
    }

    #[test]
    fn rate_counts_into_a_later_period_opened_by_another_clock_read() {
        let r = Rate::default();
        r.add_at(3_000);
        // A thread that read the clock just before the boundary counts in the open period.
        assert_eq!(r.add_at(2_999), 2);
        assert_eq!(r.read_at(2_999), 2);
    }

    #[test]
    fn rate_is_exact_under_concurrent_adds_in_one_second() {
        let r = Arc::new(Rate::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..1_000 {
                        r.add_at(7_000 + i % 1_000);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(r.read_at(7_999), 4_000);
        assert_eq!(r.max(), 4_000);
    }

    #[test]
    fn sliding_average_is_exact_until_the_window_fills_then_fades() {
        let a = SlidingAverage::default();
        assert_eq!(a.snapshot(), AverageSnapshot::default());
        a.add(10);
        a.add(31);
        assert_eq!(a.snapshot().average, 21, "ceil(41 / 2), as HAProxy rounds");
        assert_eq!(a.snapshot().max, 31);
        let a = SlidingAverage::default();
        for _ in 0..AVERAGE_SAMPLES {
            a.add(100);
        }
        assert_eq!(a.snapshot().average, 100);
        // One window of zeros takes it to about 1/e, three to about 5%.
        for _ in 0..AVERAGE_SAMPLES {
            a.add(0);
        }
        let after_one = a.snapshot().average;
        assert!((35..=38).contains(&after_one), "{after_one}");
        for _ in 0..2 * AVERAGE_SAMPLES {
            a.add(0);
        }
        assert!(a.snapshot().average <= 6, "{:?}", a.snapshot());
        assert_eq!(a.snapshot().max, 100);
        assert_eq!(a.snapshot().samples, 4 * AVERAGE_SAMPLES);
    }

    #[test]
    fn sliding_average_survives_huge_values() {
        let a = SlidingAverage::default();
        for _ in 0..2_000 {
            a.add(u64::MAX);
        }
        assert_eq!(a.snapshot().max, u64::MAX);
        assert!(a.snapshot().average > 0);
    }

    #[test]
    fn sessions_know_the_age_of_the_last() {
        let s = Sessions::default();
        assert_eq!(s.snapshot_at(10_000).since_last, None);
        s.begin_at(0);
        assert_eq!(
            s.snapshot_at(0).since_last,
            Some(Duration::ZERO),
            "a session at the clock's zero is not 'never'"
        );
        s.begin_at(1_500);
        let snap = s.snapshot_at(4_700);
        assert_eq!(snap.since_last, Some(Duration::from_millis(3_200)));
        assert_eq!(
            snap.rate,
            RateSnapshot { current: 0, max: 1 },
            "one per second"
        );
    }

    #[test]
    fn backend_phase_times() {
        let b = BackendStats::default();
        b.session(Instant::now());
        b.answered(Some(Duration::from_millis(4)), Duration::from_millis(50));
        b.answered(None, Duration::from_millis(70));
        b.finished(Duration::ZERO, Duration::from_millis(60));
        let s = b.snapshot();
        assert_eq!(s.sessions.rate.max, 1);
        assert!(s.sessions.since_last.is_some());
        assert_eq!((s.times.connect.average, s.times.connect.samples), (4, 1));
        assert_eq!((s.times.response.average, s.times.response.max), (60, 70));
        assert_eq!((s.times.queue.average, s.times.total.average), (0, 60));
    }

    proptest::proptest! {
        // Any order of event times (threads race on the clock): reads never panic and never
        // exceed what was counted, and `max` is at least the current rate's own period.
        #[test]
        fn rate_never_overcounts(times in proptest::collection::vec(0u64..10_000, 0..200),
                                 read in 0u64..12_000) {
            let r = Rate::default();
            for &t in &times {
                r.add_at(t);
            }
            let n = times.len() as u64;
            proptest::prop_assert!(r.read_at(read) <= n);
            proptest::prop_assert!(r.max() <= n);
        }

        // In clock order the read is HAProxy's formula over the true per-second counts.
        #[test]
        fn rate_matches_the_formula_in_order(
            mut times in proptest::collection::vec(0u64..6_000, 0..200),
            after in 0u64..3_000,
        ) {
            times.sort_unstable();
            let r = Rate::default();
            for &t in &times {
                r.add_at(t);
            }
            let now = times.last().copied().unwrap_or(0) + after;
            let in_second = |p: u64| times.iter().filter(|&&t| t / 1_000 == p).count() as u64;
            let p = now / 1_000;
            let previous = if p == 0 { 0 } else { in_second(p - 1) };
            let expected = match (in_second(p), previous) {
                (0, previous @ 0..=1) => previous,
                (current, previous) => current + previous * (1_000 - now % 1_000) / 1_000,
            };
            proptest::prop_assert_eq!(r.read_at(now), expected);
            let most = (0..6).map(in_second).max().unwrap_or(0);
            proptest::prop_assert_eq!(r.max(), most);
        }

        // The average stays within the values' range, and equals a constant input.
        #[test]
        fn sliding_average_stays_in_range(values in proptest::collection::vec(0u64..100_000, 1..3_000)) {
            let a = SlidingAverage::default();
            for &v in &values {
                a.add(v);
            }
            let s = a.snapshot();
            let (lo, hi) = (*values.iter().min().unwrap(), *values.iter().max().unwrap());
            proptest::prop_assert!(lo <= s.average && s.average <= hi, "{s:?} {lo}..{hi}");
            proptest::prop_assert_eq!(s.max, hi);
            let c = SlidingAverage::default();
            for _ in &values {
                c.add(values[0]);
            }
            proptest::prop_assert_eq!(c.snapshot().average, values[0]);
        }

        // Below a full window the average is the exact mean, rounded up.
        #[test]
        fn sliding_average_is_the_mean_below_a_window(values in proptest::collection::vec(0u64..100_000, 1..1_024)) {
            let a = SlidingAverage::default();
            for &v in &values {
                a.add(v);
            }
            let n = values.len() as u64;
            proptest::prop_assert_eq!(a.snapshot().average, values.iter().sum::<u64>().div_ceil(n));
        }
    }
}
