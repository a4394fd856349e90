//! The recent past of every cluster, bucket and backend, for the web UI's live page.
//!
//! A sampler task reads the live clusters once a second (their counters are atomics, so it takes
//! no lock that requests take) and appends one [`Sample`] to a ring buffer of the last 900 (15
//! minutes). Rates are deltas of the monotonic totals between two samples, divided by the time
//! between them. [`HistoryService`] serves the ring as JSON: `GET /history` for everything kept,
//! `GET /history?since=<seq>` for the samples after `seq` only, so a page polls cheaply.
//!
//! The ring sits behind one `Mutex`, taken by the sampler once per interval and by the endpoint,
//! which copies what it needs and renders outside the lock. Memory is bounded by the ring's
//! length times the number of series.
//!
//! The JSON document is columnar: one `time` array (Unix milliseconds) and, per series, one
//! array per measure, aligned with `time`; `null` where a series did not exist or a value is
//! undefined (the first sample of a series has no rate; a backend without capacity limit has no
//! utilisation).
//!
//! ```
//! use std::{sync::Arc, time::{Duration, Instant}};
//! use director_api::history::{History, Sampler};
//! use director_core::{addr::BackendUrl, backend::Backend, cluster::Cluster};
//!
//! let url: BackendUrl = "http://127.0.0.1:9".parse().unwrap();
//! let backend = Arc::new(Backend::new("a", url, Default::default()));
//! let cluster = Arc::new(Cluster::simple("app", vec![backend]));
//! let history = History::new(900, Duration::from_secs(1));
//! let mut sampler = Sampler::default();
//! let start = Instant::now();
//! history.push(0, sampler.sample([&cluster], start));
//! history.push(1000, sampler.sample([&cluster], start + Duration::from_secs(1)));
//! let doc = history.json(None);
//! assert_eq!(doc["time"], serde_json::json!([0, 1000]));
//! assert_eq!(doc["series"][0]["kind"], "cluster");
//! assert_eq!(doc["series"][0]["rps"], serde_json::json!([null, 0.0]));
//! ```

use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};

use director_core::{
    Body,
    backend::{AdminState, Backend, Health, UNLIMITED_TOKENS},
    body,
    cluster::Cluster,
    stats::LATENCY_BOUNDS,
    store::Store,
};
use http::{Method, Request, Response, StatusCode, header};
use serde_json::{Map, Value, json};

/// Samples kept by default: 15 minutes at one per second.
pub const DEFAULT_SAMPLES: usize = 900;

/// The default time between samples.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// What a series describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SeriesKind {
    /// A whole cluster.
    Cluster,
    /// One bucket of a cluster's shaper.
    Bucket,
    /// One backend (member) of a cluster.
    Backend,
}

impl SeriesKind {
    /// Its name in the JSON document.
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesKind::Cluster => "cluster",
            SeriesKind::Bucket => "bucket",
            SeriesKind::Backend => "backend",
        }
    }
}

/// Names one series: a cluster, or a bucket or backend in a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// The cluster.
    pub cluster: Arc<str>,
    /// What it is.
    pub kind: SeriesKind,
    /// The bucket's or backend's name (the cluster's for a cluster).
    pub name: Arc<str>,
}

/// One series' values in one sample. `NaN` means "no value" (`null` in JSON).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Requests per second since the previous sample.
    pub rps: f32,
    /// Requests in flight (tokens held, for a bucket).
    pub load: f32,
    /// How many it may hold at once (0: no limit).
    pub capacity: f32,
    /// Requests waiting in queues (clusters and buckets).
    pub queued: f32,
    /// Responses per second by status class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    pub responses: [f32; 6],
    /// Mean time to the response head over the interval, in milliseconds.
    pub latency_ms: f32,
    /// 95th percentile of that time over the interval (histogram estimate), in milliseconds.
    pub latency_p95_ms: f32,
}

impl Default for Point {
    fn default() -> Self {
        Point {
            rps: f32::NAN,
            load: f32::NAN,
            capacity: f32::NAN,
            queued: f32::NAN,
            responses: [f32::NAN; 6],
            latency_ms: f32::NAN,
            latency_p95_ms: f32::NAN,
        }
    }
}

/// One moment: every series' point.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Its sequence number (1 for the first sample ever, then counting up).
    pub seq: u64,
    /// When it was taken, in Unix milliseconds.
    pub time_ms: u64,
    /// The series and their values, clusters in name order, each followed by its buckets and
    /// backends.
    pub points: Vec<(Arc<SeriesKey>, Point)>,
}

/// A backend's state, and when it last changed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StateSeen {
    health: Health,
    admin: AdminState,
    /// Draining before removal (x0's `terminate`).
    leaving: bool,
    /// Unix ms of the last change of health or admin state.
    since_ms: u64,
}

impl StateSeen {
    fn of(b: &Backend, wall_ms: u64) -> StateSeen {
        StateSeen {
            health: b.health(),
            admin: b.admin_state(),
            leaving: b.is_draining(),
            since_ms: wall_ms.saturating_sub(b.since_last_change().as_millis() as u64),
        }
    }
}

#[derive(Debug)]
struct Ring {
    capacity: usize,
    next_seq: u64,
    samples: VecDeque<Sample>,
    states: Vec<(Arc<SeriesKey>, StateSeen)>,
    started_ms: u64,
}

/// The ring of recent samples, shared by the sampler and the endpoint. Cheap to clone.
#[derive(Clone, Debug)]
pub struct History {
    ring: Arc<Mutex<Ring>>,
    interval: Duration,
}

// === impl History ===

impl History {
    /// An empty history keeping the last `capacity` samples, taken every `interval`.
    pub fn new(capacity: usize, interval: Duration) -> Self {
        History {
            ring: Arc::new(Mutex::new(Ring {
                capacity: capacity.max(1),
                next_seq: 1,
                samples: VecDeque::with_capacity(capacity.max(1)),
                states: Vec::new(),
                started_ms: unix_ms(),
            })),
            interval,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic while holding the lock leaves a consistent ring (pushes are single steps).
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a sample taken at `time_ms` (Unix ms), dropping the oldest beyond the capacity.
    /// Returns its sequence number.
    pub fn push(&self, time_ms: u64, points: Vec<(Arc<SeriesKey>, Point)>) -> u64 {
        let mut ring = self.lock();
        let seq = ring.next_seq;
        ring.next_seq += 1;
        if ring.samples.len() == ring.capacity {
            ring.samples.pop_front();
        }
        ring.samples.push_back(Sample {
            seq,
            time_ms,
            points,
        });
        seq
    }

    fn set_states(&self, states: Vec<(Arc<SeriesKey>, StateSeen)>) {
        self.lock().states = states;
    }

    /// How many samples are kept now.
    pub fn len(&self) -> usize {
        self.lock().samples.len()
    }

    /// Whether no sample was taken yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The JSON document of the samples after `since` (all kept samples with `None`); see the
    /// [module docs](self).
    pub fn json(&self, since: Option<u64>) -> Value {
        let (samples, states, capacity, last, started_ms) = {
            let ring = self.lock();
            let after = since.unwrap_or(0);
            let skip = ring.samples.partition_point(|s| s.seq <= after);
            let samples: Vec<Sample> = ring.samples.range(skip..).cloned().collect();
            (
                samples,
                ring.states.clone(),
                ring.capacity,
                ring.next_seq - 1,
                ring.started_ms,
            )
        };
        render(&samples, &states, capacity, last, self.interval, started_ms)
    }

    /// Starts the sampler task on the current tokio runtime: every interval it samples the
    /// store's live clusters. The task ends when the returned handle is aborted or dropped with
    /// the runtime.
    pub fn spawn_sampler(&self, store: Arc<Store>) -> tokio::task::JoinHandle<()> {
        let history = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(history.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sampler = Sampler::default();
            loop {
                ticks.tick().await;
                let snapshot = store.registry().load_full();
                let mut clusters: Vec<&Arc<Cluster>> = snapshot.clusters().collect();
                clusters.sort_by(|a, b| a.name().cmp(b.name()));
                let points = sampler.sample(clusters, Instant::now());
                history.set_states(sampler.states());
                history.push(unix_ms(), points);
            }
        })
    }

    /// The endpoint serving this history.
    pub fn service(&self) -> HistoryService {
        HistoryService {
            history: self.clone(),
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A float as JSON, rounded to two decimals (no `0.30000001` noise); `NaN` is `null`.
fn num(x: f32) -> Value {
    if x.is_finite() {
        json!((f64::from(x) * 100.0).round() / 100.0)
    } else {
        Value::Null
    }
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

fn render(
    samples: &[Sample],
    states: &[(Arc<SeriesKey>, StateSeen)],
    capacity: usize,
    last: u64,
    interval: Duration,
    started_ms: u64,
) -> Value {
    // Series in order of first appearance; each gets a column per measure.
    let mut index: HashMap<&SeriesKey, usize> = HashMap::new();
    let mut keys: Vec<&SeriesKey> = Vec::new();
    for sample in samples {
        for (key, _) in &sample.points {
            index.entry(key).or_insert_with(|| {
                keys.push(key);
                keys.len() - 1
            });
        }
    }
    let n = samples.len();
    let mut columns: Vec<[Vec<Value>; 13]> = keys
        .iter()
        .map(|_| std::array::from_fn(|_| vec![Value::Null; n]))
        .collect();
    for (i, sample) in samples.iter().enumerate() {
        for (key, p) in &sample.points {
            let c = &mut columns[index[&**key]];
            let utilisation = if p.capacity > 0.0 {
                p.load / p.capacity
            } else {
                f32::NAN
            };
            let values = [
                p.rps,
                p.load,
                p.capacity,
                utilisation,
                p.queued,
                p.latency_ms,
                p.latency_p95_ms,
            ];
            for (j, v) in values.into_iter().enumerate() {
                c[j][i] = num(v);
            }
            for (j, v) in p.responses.into_iter().enumerate() {
                c[7 + j][i] = num(v);
            }
        }
    }
    let series: Vec<Value> = keys
        .iter()
        .zip(columns)
        .map(|(key, c)| {
            let [
                rps,
                load,
                capacity,
                utilisation,
                queued,
                latency,
                p95,
                c1,
                c2,
                c3,
                c4,
                c5,
                other,
            ] = c;
            let responses: Map<String, Value> = CLASSES
                .iter()
                .zip([c1, c2, c3, c4, c5, other])
                .map(|(name, v)| ((*name).to_owned(), Value::Array(v)))
                .collect();
            json!({
                "cluster": &*key.cluster,
                "kind": key.kind.as_str(),
                "name": &*key.name,
                "rps": rps,
                "load": load,
                "capacity": capacity,
                "utilisation": utilisation,
                "queued": queued,
                "responses": responses,
                "latency-ms": latency,
                "latency-p95-ms": p95,
            })
        })
        .collect();
    let states: Vec<Value> = states
        .iter()
        .map(|(key, seen)| {
            json!({
                "cluster": &*key.cluster,
                "name": &*key.name,
                "health": seen.health,
                "admin": seen.admin,
                "leaving": seen.leaving,
                "since": seen.since_ms,
            })
        })
        .collect();
    json!({
        "interval-ms": interval.as_millis() as u64,
        "capacity": capacity,
        "started": started_ms,
        "first": samples.first().map(|s| s.seq),
        "last": last,
        "time": samples.iter().map(|s| s.time_ms).collect::<Vec<_>>(),
        "series": series,
        "backends": states,
    })
}

// === impl Sampler ===

/// Turns the live counters into points: remembers the previous totals of every series to take
/// deltas. Pure apart from reading the clusters' atomics; [`History::spawn_sampler`] drives it.
#[derive(Debug, Default)]
pub struct Sampler {
    previous: HashMap<Arc<SeriesKey>, Totals>,
    states: Vec<(Arc<SeriesKey>, StateSeen)>,
}

/// Monotonic totals of one series at one instant.
#[derive(Clone, Debug)]
struct Totals {
    at: Instant,
    requests: u64,
    traffic: Option<Traffic>,
}

/// A backend's response counters (or their change over an interval).
#[derive(Clone, Debug, Default)]
struct Traffic {
    responses: [u64; 6],
    latency_count: u64,
    latency_sum: f64,
    // Cumulative counts per bound of `LATENCY_BOUNDS`, then the total.
    latency_cumulative: Vec<u64>,
}

impl Traffic {
    fn of(b: &Backend) -> Traffic {
        let s = b.stats().snapshot();
        Traffic {
            responses: s.responses,
            latency_count: s.latency.count,
            latency_sum: s.latency.sum,
            latency_cumulative: s.latency.cumulative,
        }
    }

    /// `self - before`, or `None` if a counter went down (the backend was replaced).
    fn since(&self, before: &Traffic) -> Option<Traffic> {
        let mut d = Traffic {
            latency_count: self.latency_count.checked_sub(before.latency_count)?,
            latency_sum: (self.latency_sum - before.latency_sum).max(0.0),
            ..Traffic::default()
        };
        for i in 0..6 {
            d.responses[i] = self.responses[i].checked_sub(before.responses[i])?;
        }
        if self.latency_cumulative.len() != before.latency_cumulative.len() {
            return None;
        }
        d.latency_cumulative = self
            .latency_cumulative
            .iter()
            .zip(&before.latency_cumulative)
            .map(|(a, b)| a.checked_sub(*b))
            .collect::<Option<_>>()?;
        Some(d)
    }

    fn add(&mut self, other: &Traffic) {
        for i in 0..6 {
            self.responses[i] += other.responses[i];
        }
        self.latency_count += other.latency_count;
        self.latency_sum += other.latency_sum;
        if self.latency_cumulative.len() < other.latency_cumulative.len() {
            self.latency_cumulative
                .resize(other.latency_cumulative.len(), 0);
        }
        for (a, b) in self
            .latency_cumulative
            .iter_mut()
            .zip(&other.latency_cumulative)
        {
            *a += b;
        }
    }

    /// Fills `p`'s response rates and latencies from this change over `secs`.
    fn fill(&self, p: &mut Point, secs: f64) {
        for i in 0..6 {
            p.responses[i] = (self.responses[i] as f64 / secs) as f32;
        }
        if self.latency_count > 0 {
            p.latency_ms = (self.latency_sum / self.latency_count as f64 * 1000.0) as f32;
            p.latency_p95_ms = quantile(&self.latency_cumulative, &LATENCY_BOUNDS, 0.95)
                .map_or(f32::NAN, |s| (s * 1000.0) as f32);
        }
    }
}

impl Sampler {
    /// Reads `clusters` at `now` and returns their points (clusters in the given order).
    pub fn sample<'a>(
        &mut self,
        clusters: impl IntoIterator<Item = &'a Arc<Cluster>>,
        now: Instant,
    ) -> Vec<(Arc<SeriesKey>, Point)> {
        let mut previous = std::mem::take(&mut self.previous);
        let mut points: Vec<(Arc<SeriesKey>, Point)> = Vec::new();
        let mut states = Vec::new();
        let wall = unix_ms();
        for cluster in clusters {
            let name = cluster.name().clone();
            // The cluster's own point comes first.
            let cluster_at = points.len();
            // Records one series' point; returns its key and the change of its traffic
            // counters since the previous sample with the seconds between (if it had one).
            let mut point = |kind: SeriesKind,
                             member: Arc<str>,
                             requests: u64,
                             traffic: Option<Traffic>,
                             mut p: Point| {
                let key = SeriesKey {
                    cluster: name.clone(),
                    kind,
                    name: member,
                };
                let (key, before) = match previous.remove_entry(&key) {
                    Some((key, before)) => (key, Some(before)),
                    None => (Arc::new(key), None),
                };
                let mut change = None;
                p.rps = f32::NAN;
                if let Some(b) = before.filter(|b| now > b.at) {
                    let secs = (now - b.at).as_secs_f64();
                    if requests >= b.requests {
                        p.rps = ((requests - b.requests) as f64 / secs) as f32;
                    }
                    if let (Some(t), Some(bt)) = (&traffic, &b.traffic) {
                        change = t.since(bt).map(|d| (d, secs));
                    }
                }
                if let Some((d, secs)) = &change {
                    d.fill(&mut p, *secs);
                }
                self.previous.insert(
                    key.clone(),
                    Totals {
                        at: now,
                        requests,
                        traffic,
                    },
                );
                points.push((key.clone(), p));
                (key, change)
            };
            let stats = cluster.stats();
            let shaper = cluster.shaper();
            point(
                SeriesKind::Cluster,
                name.clone(),
                stats.load.total,
                None,
                Point {
                    load: stats.load.current as f32,
                    capacity: limit(shaper.capacity()),
                    queued: stats.queued.current as f32,
                    ..Point::default()
                },
            );
            for id in shaper.buckets() {
                if id == director_core::shaper::ROOT {
                    continue;
                }
                let s = shaper.stats(id);
                let queue = cluster.bucket_stats(id);
                point(
                    SeriesKind::Bucket,
                    s.name.as_str().into(),
                    s.load.total,
                    None,
                    Point {
                        load: s.load.current as f32,
                        capacity: limit(s.token_ceil),
                        queued: queue.map_or(f32::NAN, |q| q.queued.current as f32),
                        ..Point::default()
                    },
                );
            }
            // The cluster's responses and latency: its backends' together.
            let mut together: Option<(Traffic, f64)> = None;
            for b in cluster.backends() {
                let load = b.load();
                let (key, change) = point(
                    SeriesKind::Backend,
                    b.name().clone(),
                    load.total,
                    Some(Traffic::of(&b)),
                    Point {
                        load: load.current as f32,
                        capacity: b.capacity() as f32,
                        ..Point::default()
                    },
                );
                if let Some((d, secs)) = change {
                    let sum = together.get_or_insert_with(|| (Traffic::default(), secs));
                    sum.0.add(&d);
                }
                states.push((key, StateSeen::of(&b, wall)));
            }
            if let Some((sum, secs)) = together {
                sum.fill(&mut points[cluster_at].1, secs);
            }
        }
        self.states = states;
        points
    }

    fn states(&self) -> Vec<(Arc<SeriesKey>, StateSeen)> {
        self.states.clone()
    }
}

/// The `q` quantile (0..1) of the observations counted in `cumulative` (cumulative counts per
/// upper bound of `bounds`, then the total), interpolated linearly inside its bucket; `None`
/// without observations. Observations beyond the last bound count as the last bound.
pub fn quantile(cumulative: &[u64], bounds: &[f64], q: f64) -> Option<f64> {
    let total = *cumulative.last()?;
    if total == 0 {
        return None;
    }
    let target = q * total as f64;
    let i = cumulative.iter().position(|&c| c as f64 >= target)?;
    let Some(&upper) = bounds.get(i) else {
        return bounds.last().copied();
    };
    let (lower, below) = match i {
        0 => (0.0, 0),
        _ => (bounds[i - 1], cumulative[i - 1]),
    };
    let inside = (cumulative[i] - below) as f64;
    Some(lower + (upper - lower) * ((target - below as f64) / inside).clamp(0.0, 1.0))
}

/// A capacity as a point value: 0 for "no limit" (a backend without capacity adds a huge
/// number of tokens to its cluster's shaper).
fn limit(tokens: u32) -> f32 {
    if tokens >= UNLIMITED_TOKENS {
        0.0
    } else {
        tokens as f32
    }
}

// === impl HistoryService ===

/// `GET /history[?since=<seq>]`: the history as JSON (see the [module docs](self)). Mount it
/// behind the admin authentication: it shows traffic.
#[derive(Clone, Debug)]
pub struct HistoryService {
    history: History,
}

impl HistoryService {
    fn answer(&self, method: &Method, query: Option<&str>) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
                "the history is read with GET",
            );
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let mut since = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("since", v)) => match v.parse::<u64>() {
                    Ok(v) => since = Some(v),
                    Err(_) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "bad request",
                            &format!("since={v:?} is not a sequence number"),
                        );
                    }
                },
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad request",
                        &format!("unknown parameter {pair:?} (only since=<seq>)"),
                    );
                }
            }
        }
        let text = self.history.json(since).to_string();
        let mut r = Response::new(if method == Method::HEAD {
            body::empty()
        } else {
            body::full(text)
        });
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        r
    }
}

fn error(status: StatusCode, error: &str, detail: &str) -> Response<Body> {
    let text = json!({ "error": error, "detail": detail }).to_string() + "\n";
    let mut r = Response::new(body::full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

impl<B> tower_service::Service<Request<B>> for HistoryService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        std::future::ready(Ok(self.answer(req.method(), req.uri().query())))
    }
}

#[cfg(test)]
mod tests;
