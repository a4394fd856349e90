//! Prometheus metrics at `/metrics` on the admin listener.
//!
//! Nothing is counted here: the request path keeps its counters as atomics in `director-core`
//! (backends, clusters, listeners) and `director-cache`. A scrape walks the registry once and
//! publishes those values through the `metrics` facade into a fresh
//! `metrics-exporter-prometheus` recorder (counters with `absolute`, gauges with `set`), which
//! renders the text format; so the hot path does no label lookups, and a backend removed from
//! its cluster simply stops being reported. Latency histograms are kept as atomic buckets in
//! core and written out in the same text format after the recorder's output.
//!
//! Metric families (labels in braces):
//!
//! - `director_backend_responses_total{cluster,backend,class}`: responses by status class
//!   (`1xx`…`5xx`, `other`); `director_backend_response_seconds{cluster,backend}`: time to the
//!   response head (histogram).
//! - `director_backend_in_flight`, `_requests_total`, `_bytes_in_total`, `_bytes_out_total`,
//!   `_connect_errors_total`, `_response_errors_total`, `_retries_total`, `_redispatches_total`,
//!   `_client_aborts_total`, `_server_aborts_total` `{cluster,backend}`;
//!   `director_backend_tunnels_open{cluster,backend}` (upgraded connections open now).
//! - `director_backend_up{cluster,backend}` (takes new requests), `director_backend_health{…,state}`
//!   (`online`, `offline`, `undefined`), `director_backend_admin_state{…,state}` (`ready`,
//!   `drain`, `maint`), `director_backend_weight`, `director_backend_downs_total`,
//!   `director_backend_downtime_seconds`.
//! - Probes: `director_backend_checks_total`, `director_backend_check_failures_total`,
//!   `director_backend_check_up` (last probe passed), `director_backend_check_duration_seconds`.
//! - `director_cluster_in_flight`, `_queued`, `_requests_total`, `_dropped_total`, `_up`,
//!   `_panic` (1 in panic mode), `_panic_requests_total`, `_ejections_refused_total`
//!   `{cluster}`.
//! - `director_listener_connections`, `_connections_total`, `_requests_total`,
//!   `_bytes_in_total`, `_bytes_out_total` `{listener}`, `director_listener_responses_total{listener,class}`.
//! - Caches: `director_cache_hits_total`, `_misses_total`, `_stale_total`, `_shadow_total`,
//!   `_coalesced_total`, `_stores_total`, `_purges_total`, `_evictions_total`, `_bytes`,
//!   `_objects` `{cluster}`.

use std::{
    convert::Infallible,
    fmt::Write as _,
    future::{Ready, ready},
    sync::Arc,
    task::{Context, Poll},
};

use director_cache::CacheHandle;
use director_core::{
    Body,
    backend::{AdminState, Health},
    body::full,
    registry::Registry,
    stats::{FrontendStats, HistogramSnapshot, LATENCY_BOUNDS},
};
use http::{HeaderValue, Request, Response, header};
use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::PrometheusBuilder;

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// What `/metrics` reports: the registry, the listeners, and the caches by cluster.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    frontends: Vec<Arc<FrontendStats>>,
    // Asked at every scrape: caches come and go with config changes.
    caches: Arc<dyn Fn() -> Vec<(Arc<str>, CacheHandle)> + Send + Sync>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("frontends", &self.frontends.len())
            .field("caches", &(self.caches)().len())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics of `registry`'s clusters and the listeners counted by `frontends`.
    pub fn new(registry: Arc<Registry>, frontends: Vec<Arc<FrontendStats>>) -> Self {
        Metrics {
            registry,
            frontends,
            caches: Arc::new(Vec::new),
        }
    }

    /// Adds the object caches, by cluster name.
    pub fn with_caches(mut self, caches: Vec<(Arc<str>, CacheHandle)>) -> Self {
        self.caches = Arc::new(move || caches.clone());
        self
    }

    /// Adds the object caches of `fronts`, as they are at each scrape.
    pub fn with_cache_fronts(mut self, fronts: crate::cache::CacheFronts) -> Self {
        self.caches = Arc::new(move || {
            fronts
                .handles()
                .into_iter()
                .map(|(name, handle)| (Arc::from(name), handle))
                .collect()
        });
        self
    }

    /// The metrics now, in Prometheus' text format.
    pub fn render(&self) -> String {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            self.publish();
        });
        let mut out = handle.render();
        self.render_histograms(&mut out);
        out
    }

    fn publish(&self) {
        let snapshot = self.registry.load();
        for cluster in snapshot.clusters() {
            let c = cluster.name().to_string();
            let stats = cluster.stats();
            let labels = [("cluster", c.clone())];
            gauge!("director_cluster_in_flight", &labels).set(stats.load.current as f64);
            gauge!("director_cluster_queued", &labels).set(stats.queued.current as f64);
            counter!("director_cluster_requests_total", &labels).absolute(stats.load.total);
            counter!("director_cluster_dropped_total", &labels).absolute(stats.dropped);
            gauge!("director_cluster_panic", &labels).set(f64::from(u8::from(stats.panic)));
            counter!("director_cluster_panic_requests_total", &labels)
                .absolute(stats.panic_requests);
            counter!("director_cluster_ejections_refused_total", &labels)
                .absolute(stats.ejections_refused);
            gauge!("director_cluster_up", &labels).set(f64::from(u8::from(
                cluster.is_enabled() && cluster.has_available_member(),
            )));
            for backend in cluster.backends() {
                let labels = [
                    ("cluster", c.clone()),
                    ("backend", backend.name().to_string()),
                ];
                let s = backend.stats().snapshot();
                let load = backend.load();
                gauge!("director_backend_in_flight", &labels).set(f64::from(backend.in_flight()));
                gauge!("director_backend_tunnels_open", &labels).set(backend.open_tunnels() as f64);
                counter!("director_backend_requests_total", &labels).absolute(load.total);
                for (class, n) in CLASSES.iter().zip(s.responses) {
                    let mut with_class = labels.to_vec();
                    with_class.push(("class", (*class).to_owned()));
                    counter!("director_backend_responses_total", &with_class).absolute(n);
                }
                counter!("director_backend_bytes_in_total", &labels).absolute(s.bytes_in);
                counter!("director_backend_bytes_out_total", &labels).absolute(s.bytes_out);
                counter!("director_backend_connect_errors_total", &labels)
                    .absolute(s.connect_errors);
                counter!("director_backend_response_errors_total", &labels)
                    .absolute(s.response_errors);
                counter!("director_backend_retries_total", &labels).absolute(s.retries);
                counter!("director_backend_redispatches_total", &labels).absolute(s.redispatches);
                counter!("director_backend_client_aborts_total", &labels).absolute(s.client_aborts);
                counter!("director_backend_server_aborts_total", &labels).absolute(s.server_aborts);
                gauge!("director_backend_up", &labels)
                    .set(f64::from(u8::from(backend.is_available())));
                gauge!("director_backend_weight", &labels).set(backend.weight());
                let health = backend.health();
                for (state, value) in [
                    ("online", Health::Online),
                    ("offline", Health::Offline),
                    ("undefined", Health::Undefined),
                ] {
                    let mut with_state = labels.to_vec();
                    with_state.push(("state", state.to_owned()));
                    gauge!("director_backend_health", &with_state)
                        .set(f64::from(u8::from(health == value)));
                }
                let admin = backend.admin_state();
                for (state, value) in [
                    ("ready", AdminState::Ready),
                    ("drain", AdminState::Drain),
                    ("maint", AdminState::Maint),
                ] {
                    let mut with_state = labels.to_vec();
                    with_state.push(("state", state.to_owned()));
                    gauge!("director_backend_admin_state", &with_state)
                        .set(f64::from(u8::from(admin == value)));
                }
                counter!("director_backend_downs_total", &labels).absolute(backend.times_down());
                gauge!("director_backend_downtime_seconds", &labels)
                    .set(backend.downtime().as_secs_f64());
                if let Some(check) = backend.check_info() {
                    counter!("director_backend_checks_total", &labels).absolute(check.checks);
                    counter!("director_backend_check_failures_total", &labels)
                        .absolute(check.failed_checks);
                    gauge!("director_backend_check_up", &labels)
                        .set(f64::from(u8::from(check.status.passed())));
                    if let Some(d) = check.duration {
                        gauge!("director_backend_check_duration_seconds", &labels)
                            .set(d.as_secs_f64());
                    }
                }
            }
        }
        for frontend in &self.frontends {
            let s = frontend.snapshot();
            let labels = [("listener", s.name.to_string())];
            gauge!("director_listener_connections", &labels).set(s.connections.current as f64);
            gauge!("director_listener_connections_max", &labels).set(s.connections.max as f64);
            gauge!("director_listener_connections_limit", &labels).set(s.connection_limit as f64);
            counter!("director_listener_connection_limit_waits_total", &labels)
                .absolute(s.limit_waits);
            counter!("director_listener_timeouts_total", &labels).absolute(s.timeouts);
            counter!("director_listener_connections_total", &labels).absolute(s.connections.total);
            counter!("director_listener_requests_total", &labels).absolute(s.requests);
            counter!("director_listener_bytes_in_total", &labels).absolute(s.bytes_in);
            counter!("director_listener_bytes_out_total", &labels).absolute(s.bytes_out);
            for (class, n) in CLASSES.iter().zip(s.responses) {
                let with_class = [
                    ("listener", s.name.to_string()),
                    ("class", (*class).to_owned()),
                ];
                counter!("director_listener_responses_total", &with_class).absolute(n);
            }
        }
        for (cluster, cache) in &(self.caches)() {
            let s = cache.stats();
            let labels = [("cluster", cluster.to_string())];
            counter!("director_cache_hits_total", &labels).absolute(s.hits);
            counter!("director_cache_misses_total", &labels).absolute(s.misses);
            counter!("director_cache_stale_total", &labels).absolute(s.stale);
            counter!("director_cache_shadow_total", &labels).absolute(s.shadow);
            counter!("director_cache_coalesced_total", &labels).absolute(s.coalesced);
            counter!("director_cache_stores_total", &labels).absolute(s.stores);
            counter!("director_cache_purges_total", &labels).absolute(s.purges);
            counter!("director_cache_evictions_total", &labels).absolute(s.evictions);
            gauge!("director_cache_bytes", &labels).set(s.bytes as f64);
            gauge!("director_cache_objects", &labels).set(s.objects as f64);
        }
    }

    /// Writes the latency histograms, which `metrics` cannot take as ready-made buckets.
    fn render_histograms(&self, out: &mut String) {
        const NAME: &str = "director_backend_response_seconds";
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "# HELP {NAME} Time from sending a request to a backend to its response head.\n# TYPE {NAME} histogram"
        );
        let snapshot = self.registry.load();
        for cluster in snapshot.clusters() {
            for backend in cluster.backends() {
                let labels = format!(
                    "cluster=\"{}\",backend=\"{}\"",
                    escape(cluster.name()),
                    escape(backend.name())
                );
                write_histogram(out, NAME, &labels, &backend.stats().snapshot().latency);
            }
        }
    }
}

fn write_histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    for (bound, count) in LATENCY_BOUNDS.iter().zip(&h.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

/// A label value in the text format: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn describe() {
    let counters: &[(&str, Unit, &str)] = &[
        (
            "director_cluster_requests_total",
            Unit::Count,
            "Requests admitted to a backend of the cluster.",
        ),
        (
            "director_cluster_dropped_total",
            Unit::Count,
            "Requests refused: queue full, queue timeout or no backend.",
        ),
        (
            "director_cluster_panic_requests_total",
            Unit::Count,
            "Requests admitted while the cluster was in panic mode.",
        ),
        (
            "director_cluster_ejections_refused_total",
            Unit::Count,
            "Live failures that left a backend in rotation because of max-ejection-percent.",
        ),
        (
            "director_backend_requests_total",
            Unit::Count,
            "Requests the backend took.",
        ),
        (
            "director_backend_responses_total",
            Unit::Count,
            "Responses from the backend by status class.",
        ),
        (
            "director_backend_bytes_in_total",
            Unit::Bytes,
            "Request body bytes sent to the backend.",
        ),
        (
            "director_backend_bytes_out_total",
            Unit::Bytes,
            "Response body bytes received from the backend.",
        ),
        (
            "director_backend_connect_errors_total",
            Unit::Count,
            "Connections to the backend that failed.",
        ),
        (
            "director_backend_response_errors_total",
            Unit::Count,
            "Exchanges that failed after the request was sent.",
        ),
        (
            "director_backend_retries_total",
            Unit::Count,
            "Failed attempts at the backend that were retried.",
        ),
        (
            "director_backend_redispatches_total",
            Unit::Count,
            "Requests sent on to another backend after failing here.",
        ),
        (
            "director_backend_client_aborts_total",
            Unit::Count,
            "Responses the client stopped reading before the end.",
        ),
        (
            "director_backend_server_aborts_total",
            Unit::Count,
            "Responses the backend broke off.",
        ),
        (
            "director_backend_downs_total",
            Unit::Count,
            "Times the backend went from online to offline.",
        ),
        (
            "director_backend_checks_total",
            Unit::Count,
            "Health probes sent.",
        ),
        (
            "director_backend_check_failures_total",
            Unit::Count,
            "Health probes that failed.",
        ),
        (
            "director_listener_connections_total",
            Unit::Count,
            "Client connections accepted.",
        ),
        (
            "director_listener_requests_total",
            Unit::Count,
            "Requests received.",
        ),
        (
            "director_listener_bytes_in_total",
            Unit::Bytes,
            "Bytes read from clients.",
        ),
        (
            "director_listener_bytes_out_total",
            Unit::Bytes,
            "Bytes written to clients.",
        ),
        (
            "director_listener_responses_total",
            Unit::Count,
            "Responses sent by status class.",
        ),
        (
            "director_listener_connection_limit_waits_total",
            Unit::Count,
            "Times accepting paused because the listener held max-connections connections.",
        ),
        (
            "director_listener_timeouts_total",
            Unit::Count,
            "Client connections closed for sending no request head in time or idling too long.",
        ),
        (
            "director_cache_hits_total",
            Unit::Count,
            "Fresh deliveries from the cache.",
        ),
        (
            "director_cache_misses_total",
            Unit::Count,
            "Cache lookups that went upstream.",
        ),
        (
            "director_cache_stale_total",
            Unit::Count,
            "Stale copies served while refreshing.",
        ),
        (
            "director_cache_shadow_total",
            Unit::Count,
            "Stale copies served because the upstream failed.",
        ),
        (
            "director_cache_coalesced_total",
            Unit::Count,
            "Requests that waited for another's fetch.",
        ),
        (
            "director_cache_stores_total",
            Unit::Count,
            "Responses stored.",
        ),
        (
            "director_cache_purges_total",
            Unit::Count,
            "Objects removed by purge or ban.",
        ),
        (
            "director_cache_evictions_total",
            Unit::Count,
            "Objects evicted or expired.",
        ),
    ];
    for (name, unit, help) in counters {
        describe_counter!(*name, *unit, *help);
    }
    let gauges: &[(&str, Unit, &str)] = &[
        (
            "director_backend_tunnels_open",
            Unit::Count,
            "Upgraded connections (WebSockets and other tunnels) to the backend open now.",
        ),
        (
            "director_cluster_in_flight",
            Unit::Count,
            "Requests at the cluster's backends now.",
        ),
        (
            "director_cluster_queued",
            Unit::Count,
            "Requests waiting in the cluster's queues now.",
        ),
        (
            "director_cluster_up",
            Unit::Count,
            "1 while some backend of the cluster takes requests.",
        ),
        (
            "director_cluster_panic",
            Unit::Count,
            "1 while the cluster is in panic mode (balancing over offline backends too).",
        ),
        (
            "director_backend_in_flight",
            Unit::Count,
            "Requests at the backend now.",
        ),
        (
            "director_backend_up",
            Unit::Count,
            "1 while the backend takes new balanced requests.",
        ),
        (
            "director_backend_weight",
            Unit::Count,
            "The backend's weight.",
        ),
        (
            "director_backend_health",
            Unit::Count,
            "1 for the backend's health state.",
        ),
        (
            "director_backend_admin_state",
            Unit::Count,
            "1 for the backend's operator state.",
        ),
        (
            "director_backend_downtime_seconds",
            Unit::Seconds,
            "Time the backend spent offline.",
        ),
        (
            "director_backend_check_up",
            Unit::Count,
            "1 if the last health probe passed.",
        ),
        (
            "director_backend_check_duration_seconds",
            Unit::Seconds,
            "How long the last health probe took.",
        ),
        (
            "director_listener_connections",
            Unit::Count,
            "Client connections open now.",
        ),
        (
            "director_listener_connections_max",
            Unit::Count,
            "The most client connections open at once so far.",
        ),
        (
            "director_listener_connections_limit",
            Unit::Count,
            "max-connections: accepting pauses at this many open connections.",
        ),
        (
            "director_cache_bytes",
            Unit::Bytes,
            "Bytes held by the cache.",
        ),
        (
            "director_cache_objects",
            Unit::Count,
            "Objects held by the cache.",
        ),
    ];
    for (name, unit, help) in gauges {
        describe_gauge!(*name, *unit, *help);
    }
}

/// Answers `/metrics` with [`Metrics::render`].
#[derive(Clone, Debug)]
pub struct MetricsService {
    metrics: Arc<Metrics>,
}

impl MetricsService {
    /// A service rendering `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        MetricsService {
            metrics: Arc::new(metrics),
        }
    }
}

impl<B> tower::Service<Request<B>> for MetricsService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        let mut response = Response::new(full(self.metrics.render()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_lines_are_cumulative_and_labelled() {
        let mut out = String::new();
        let h = HistogramSnapshot {
            cumulative: (0..=LATENCY_BOUNDS.len() as u64).collect(),
            sum: 1.5,
            count: LATENCY_BOUNDS.len() as u64,
        };
        write_histogram(&mut out, "x_seconds", "a=\"b\"", &h);
        assert!(out.starts_with("x_seconds_bucket{a=\"b\",le=\"0.001\"} 0\n"));
        assert!(out.contains("x_seconds_bucket{a=\"b\",le=\"+Inf\"} 12\n"));
        assert!(out.ends_with("x_seconds_sum{a=\"b\"} 1.5\nx_seconds_count{a=\"b\"} 12\n"));
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
