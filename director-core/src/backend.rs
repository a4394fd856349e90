//! A backend: a named upstream server, its transport, and its admission state.
//!
//! Admission (x0's `tryProcess`) is lock-free: a backend takes a request when it is online,
//! enabled and not draining, and its in-flight count is below its capacity; the count is raised
//! with a compare-and-swap, so two requests can never both take the last slot.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering},
    },
};

use http::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::{
    addr::BackendUrl,
    counter::{Counter, CounterSnapshot},
    transport::{HttpTransport, Transport, TransportOptions},
    weight::Weight,
};

/// How requests reach a backend.
#[derive(Clone, Debug)]
pub enum BackendTransport {
    /// Director's own HTTP/1.1 transport: connect first, then send, so a connect failure leaves
    /// the request untouched for the next backend.
    Http(HttpTransport),
    /// Any other protocol (FastCGI), plugged in by the embedding application.
    Custom(Arc<dyn Transport>),
}

/// A backend's role in its cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The normal pool, tried first.
    #[default]
    Active,
    /// Used only while no active backend is available (offline, disabled or draining) — never
    /// merely because the actives are full. x0 wrote this role as `standby`; that spelling is
    /// accepted too.
    #[serde(alias = "standby")]
    Backup,
}

/// A backend's health, as a monitor (or passive failure accounting) last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Not probed yet.
    Undefined,
    /// Taking requests.
    Online,
    /// Failing; takes no requests.
    Offline,
}

/// Receives what live traffic says about a backend's health (passive health checking), and the
/// operator's enable/disable, so a health monitor elsewhere can follow both.
///
/// `director-core` knows nothing of probes; the embedding application implements this over its
/// health monitor (Director's binary uses `director-health`).
pub trait HealthObserver: Send + Sync + fmt::Debug + 'static {
    /// A request got a response head with `status` from the backend.
    fn response(&self, status: http::StatusCode);
    /// A request failed at the backend (connect error, timeout, broken exchange).
    fn failure(&self, kind: crate::error::ErrorKind);
    /// The operator enabled or disabled the backend.
    fn enabled(&self, enabled: bool) {
        let _ = enabled;
    }
    /// What the health checks say now, for reports (HAProxy's check columns); `None` when the
    /// observer does not run checks. Called at scrape time, never on the request path.
    fn check_info(&self) -> Option<crate::stats::CheckInfo> {
        None
    }
}

/// The operator's state of a backend, as HAProxy's `set server … state` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminState {
    /// Takes requests (enabled, not drained).
    Ready,
    /// Stays a member and keeps being health-checked, but gets no new balanced requests; pinned
    /// requests still reach it (HAProxy's `DRAIN`, weight 0 in effect).
    Drain,
    /// Disabled: no requests at all (HAProxy's `MAINT`).
    Maint,
}

/// Why a backend did not take a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// At capacity: the request may wait for it.
    Overloaded,
    /// Offline, disabled or draining: the request should go elsewhere.
    Unavailable,
}

/// One upstream server of a cluster (or a road-warrior route's single target).
pub struct Backend {
    name: Arc<str>,
    name_header: HeaderValue,
    url: BackendUrl,
    transport: BackendTransport,
    enabled: AtomicBool,
    draining: AtomicBool,
    // HAProxy's soft drain (`set server … state drain`), unlike `draining` it never removes.
    soft_drain: AtomicBool,
    terminate_protection: AtomicBool,
    role: AtomicU8,
    health: AtomicU8,
    capacity: AtomicU32,
    // f64 bits: the weight the schedulers use, and the configured one (HAProxy's `uweight` and
    // `iweight`; `set weight B/S 50%` is relative to the configured weight).
    weight: AtomicU64,
    initial_weight: AtomicU64,
    in_flight: AtomicU32,
    load: Counter,
    // Replaceable: a backend kept across a config change may get a new monitor.
    observer: arc_swap::ArcSwapOption<Arc<dyn HealthObserver>>,
    // When it last came online (ms since `EPOCH`), for the shard director's rampup.
    online_since_ms: std::sync::atomic::AtomicU64,
    // A nested cluster this member stands for: available while any of its members is.
    nested: std::sync::OnceLock<std::sync::Weak<crate::cluster::Cluster>>,
    stats: crate::stats::BackendStats,
    // Health history for reports: last change (ms since `EPOCH`), when it went down (0 = up),
    // accumulated downtime, UP→DOWN transitions.
    last_change_ms: std::sync::atomic::AtomicU64,
    down_since_ms: std::sync::atomic::AtomicU64,
    downtime_ms: std::sync::atomic::AtomicU64,
    times_down: std::sync::atomic::AtomicU64,
    // Set while live failures (passive health) hold it out of rotation, so its cluster can
    // cap such ejections; cleared when it comes back online.
    passive_ejected: AtomicBool,
}

/// The process's reference instant for timestamps kept in atomics.
static EPOCH: std::sync::LazyLock<std::time::Instant> =
    std::sync::LazyLock::new(std::time::Instant::now);

fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("enabled", &self.is_enabled())
            .field("role", &self.role())
            .field("capacity", &self.capacity())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

// === impl Backend ===

impl Backend {
    /// A backend called `name` at `url`, reached over HTTP/1.1 with `opts`.
    pub fn new(name: impl Into<Arc<str>>, url: BackendUrl, opts: TransportOptions) -> Self {
        let transport = BackendTransport::Http(HttpTransport::for_url(&url, opts));
        Self::with_transport(name, url, transport)
    }

    /// A backend called `name` at `url`, reached through `transport`: enabled, active, online
    /// (until a health monitor says otherwise), no capacity limit.
    pub fn with_transport(
        name: impl Into<Arc<str>>,
        url: BackendUrl,
        transport: BackendTransport,
    ) -> Self {
        let name = name.into();
        let name_header =
            HeaderValue::from_str(&name).unwrap_or_else(|_| HeaderValue::from_static("-"));
        Backend {
            name,
            name_header,
            url,
            transport,
            enabled: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            soft_drain: AtomicBool::new(false),
            terminate_protection: AtomicBool::new(false),
            role: AtomicU8::new(Role::Active as u8),
            health: AtomicU8::new(Health::Online as u8),
            capacity: AtomicU32::new(0),
            weight: AtomicU64::new(1f64.to_bits()),
            initial_weight: AtomicU64::new(1f64.to_bits()),
            in_flight: AtomicU32::new(0),
            load: Counter::default(),
            observer: arc_swap::ArcSwapOption::empty(),
            online_since_ms: std::sync::atomic::AtomicU64::new(0),
            nested: std::sync::OnceLock::new(),
            stats: crate::stats::BackendStats::default(),
            last_change_ms: std::sync::atomic::AtomicU64::new(now_ms()),
            down_since_ms: std::sync::atomic::AtomicU64::new(0),
            downtime_ms: std::sync::atomic::AtomicU64::new(0),
            times_down: std::sync::atomic::AtomicU64::new(0),
            passive_ejected: AtomicBool::new(false),
        }
    }

    /// The backend's name, unique within its cluster.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The name as a header value (`X-Director-Backend`), built once.
    pub fn name_header(&self) -> &HeaderValue {
        &self.name_header
    }

    /// Where and how to reach it.
    pub fn url(&self) -> &BackendUrl {
        &self.url
    }

    /// How requests reach it.
    pub fn transport(&self) -> &BackendTransport {
        &self.transport
    }

    /// Upgraded connections (WebSockets…) to it that are open now; 0 for other transports.
    pub fn open_tunnels(&self) -> usize {
        match &self.transport {
            BackendTransport::Http(transport) => transport.open_tunnels(),
            BackendTransport::Custom(_) => 0,
        }
    }

    /// Whether the operator allows it to take requests.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Enables or disables it; requests in flight are not affected. A cluster member should be
    /// changed through [`crate::cluster::Cluster::set_backend_enabled`], which also resizes the
    /// cluster's capacity.
    pub fn set_enabled(&self, enabled: bool) {
        if self.enabled.swap(enabled, Ordering::Relaxed) != enabled {
            self.last_change_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// Its role.
    pub fn role(&self) -> Role {
        if self.role.load(Ordering::Relaxed) == Role::Backup as u8 {
            Role::Backup
        } else {
            Role::Active
        }
    }

    /// Changes its role.
    pub fn set_role(&self, role: Role) {
        self.role.store(role as u8, Ordering::Relaxed);
    }

    /// Its health.
    pub fn health(&self) -> Health {
        match self.health.load(Ordering::Relaxed) {
            x if x == Health::Online as u8 => Health::Online,
            x if x == Health::Offline as u8 => Health::Offline,
            _ => Health::Undefined,
        }
    }

    /// Records its health; returns the previous state.
    pub fn set_health(&self, health: Health) -> Health {
        let previous = match self.health.swap(health as u8, Ordering::Relaxed) {
            x if x == Health::Online as u8 => Health::Online,
            x if x == Health::Offline as u8 => Health::Offline,
            _ => Health::Undefined,
        };
        if health == Health::Online && previous != Health::Online {
            self.online_since_ms.store(now_ms(), Ordering::Relaxed);
        }
        if health == Health::Online {
            self.passive_ejected.store(false, Ordering::Relaxed);
        }
        if health != previous {
            self.record_change(health == Health::Offline);
            if health == Health::Offline && previous == Health::Online {
                self.times_down.fetch_add(1, Ordering::Relaxed);
            }
        }
        previous
    }

    // Keeps the report history (last change, downtime) across a state change.
    fn record_change(&self, down: bool) {
        let now = now_ms();
        self.last_change_ms.store(now, Ordering::Relaxed);
        // `down_since_ms` holds the instant plus one, so 0 can mean "up".
        let since = self.down_since_ms.load(Ordering::Relaxed);
        if down && since == 0 {
            self.down_since_ms.store(now + 1, Ordering::Relaxed);
        } else if !down && since != 0 {
            self.down_since_ms.store(0, Ordering::Relaxed);
            self.downtime_ms
                .fetch_add((now + 1).saturating_sub(since), Ordering::Relaxed);
        }
    }

    /// Time since its health or admin state last changed (HAProxy's `lastchg`).
    pub fn since_last_change(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            now_ms().saturating_sub(self.last_change_ms.load(Ordering::Relaxed)),
        )
    }

    /// Total time it spent offline, the current stretch included (HAProxy's `downtime`).
    pub fn downtime(&self) -> std::time::Duration {
        let since = self.down_since_ms.load(Ordering::Relaxed);
        let current = if since == 0 {
            0
        } else {
            (now_ms() + 1).saturating_sub(since)
        };
        std::time::Duration::from_millis(self.downtime_ms.load(Ordering::Relaxed) + current)
    }

    /// How many times it went from online to offline (HAProxy's `chkdown`).
    pub fn times_down(&self) -> u64 {
        self.times_down.load(Ordering::Relaxed)
    }

    /// Its traffic counters.
    pub fn stats(&self) -> &crate::stats::BackendStats {
        &self.stats
    }

    /// What its health checks say, if it is checked (read at report time).
    pub fn check_info(&self) -> Option<crate::stats::CheckInfo> {
        self.observer.load().as_ref().and_then(|o| o.check_info())
    }

    /// The operator's state: `Maint` while disabled, `Drain` while soft-drained, else `Ready`.
    pub fn admin_state(&self) -> AdminState {
        if !self.is_enabled() {
            AdminState::Maint
        } else if self.soft_drain.load(Ordering::Relaxed) {
            AdminState::Drain
        } else {
            AdminState::Ready
        }
    }

    /// Soft-drains it (or stops doing so): no new balanced requests, still a checked member.
    /// A cluster member should be changed through
    /// [`crate::cluster::Cluster::set_backend_admin_state`].
    pub fn set_soft_drain(&self, drain: bool) {
        if self.soft_drain.swap(drain, Ordering::Relaxed) != drain {
            self.last_change_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// How long it has been online since it last came up, if it ever went down.
    pub fn up_for(&self) -> Option<std::time::Duration> {
        match self.online_since_ms.load(Ordering::Relaxed) {
            0 => None,
            since => Some(std::time::Duration::from_millis(
                now_ms().saturating_sub(since),
            )),
        }
    }

    /// Its weight for the weighted schedulers (0 = never chosen by them): a finite real, not
    /// negative.
    pub fn weight(&self) -> f64 {
        f64::from_bits(self.weight.load(Ordering::Relaxed))
    }

    /// The weight its configuration gives it (HAProxy's initial weight); [`Backend::weight`]
    /// differs after a runtime change such as `set weight B/S 50%`.
    pub fn initial_weight(&self) -> f64 {
        f64::from_bits(self.initial_weight.load(Ordering::Relaxed))
    }

    /// Sets the weight the schedulers use (a runtime change; the configured weight stays).
    /// Values below 0, and NaN, count as 0; infinity as [`Weight::MAX`]. A cluster member
    /// should be changed through its cluster, which rebuilds the weighted schedules.
    pub fn set_weight(&self, weight: impl Into<f64>) {
        let w = weight.into();
        let w = if w >= 0.0 { w.min(Weight::MAX) } else { 0.0 };
        self.weight.store(w.to_bits(), Ordering::Relaxed);
    }

    /// Sets its configured weight, and the weight the schedulers use with it.
    pub fn configure_weight(&self, weight: Weight) {
        self.initial_weight
            .store(weight.get().to_bits(), Ordering::Relaxed);
        self.set_weight(weight.get());
    }

    /// Makes this member stand for a nested cluster (a director used as a backend).
    pub fn nest(&self, cluster: &Arc<crate::cluster::Cluster>) {
        let _ = self.nested.set(Arc::downgrade(cluster));
    }

    /// Concurrent requests it takes; 0 means no limit.
    pub fn capacity(&self) -> u32 {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Sets its capacity (0 = no limit).
    pub fn set_capacity(&self, capacity: u32) {
        self.capacity.store(capacity, Ordering::Relaxed);
    }

    /// Whether it refuses to be drained and removed.
    pub fn is_terminate_protected(&self) -> bool {
        self.terminate_protection.load(Ordering::Relaxed)
    }

    /// Protects it from being drained and removed.
    pub fn set_terminate_protection(&self, protected: bool) {
        self.terminate_protection
            .store(protected, Ordering::Relaxed);
    }

    /// Whether it is draining (x0's "terminate"): no new requests; removed once idle.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Starts draining, unless protected. Returns whether it now drains.
    pub fn drain(&self) -> bool {
        if self.is_terminate_protected() {
            return false;
        }
        self.draining.store(true, Ordering::Relaxed);
        true
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Its load counter (current, max, total).
    pub fn load(&self) -> CounterSnapshot {
        self.load.snapshot()
    }

    /// Whether it could take a request now, as far as health and the operator go. A backend
    /// not probed yet (`Undefined`) counts as available: a dead one is found by its first failed
    /// request (passive health) instead of every backend being shut out until its first probes.
    pub fn is_available(&self) -> bool {
        !self.soft_drain.load(Ordering::Relaxed) && self.is_available_when_pinned()
    }

    /// Whether the operator keeps it in rotation (enabled, not draining, not soft-drained),
    /// whatever its health: the members a cluster in panic balances over.
    pub fn is_in_service(&self) -> bool {
        self.is_enabled() && !self.is_draining() && !self.soft_drain.load(Ordering::Relaxed)
    }

    /// [`Backend::is_available`], or in a cluster in panic, [`Backend::is_in_service`].
    pub fn is_available_in(&self, panic: bool) -> bool {
        if panic {
            self.is_in_service()
        } else {
            self.is_available()
        }
    }

    /// Whether live failures (passive health) took it out of rotation and it has not come
    /// back online since.
    pub fn is_passively_ejected(&self) -> bool {
        self.passive_ejected.load(Ordering::Relaxed)
    }

    /// Marks it as taken out by passive health; its cluster does this under its ejection lock
    /// (see [`crate::cluster::Cluster::try_passive_ejection`]). Cleared when it comes back
    /// online.
    pub fn mark_passively_ejected(&self) {
        self.passive_ejected.store(true, Ordering::Relaxed);
    }

    /// Like [`Backend::is_available`], but a soft-drained backend counts: HAProxy still serves
    /// persistent (here: pinned) requests on a server in `DRAIN`.
    fn is_available_when_pinned(&self) -> bool {
        self.is_enabled()
            && !self.is_draining()
            && self.health() != Health::Offline
            && self
                .nested
                .get()
                .is_none_or(|c| c.upgrade().is_some_and(|c| c.has_available_member()))
    }

    /// Attaches the health observer that live outcomes are reported to, replacing any earlier
    /// one; `None` detaches it.
    pub fn observe(&self, observer: Option<Arc<dyn HealthObserver>>) {
        self.observer.store(observer.map(Arc::new));
    }

    /// Reports a live outcome (the response status, or why it failed) to the observer, if any.
    pub fn report(&self, outcome: Result<http::StatusCode, crate::error::ErrorKind>) {
        if let Some(observer) = &*self.observer.load() {
            match outcome {
                Ok(status) => observer.response(status),
                Err(kind) => observer.failure(kind),
            }
        }
    }

    /// Tells the observer the operator enabled or disabled the backend.
    pub fn notify_enabled(&self, enabled: bool) {
        if let Some(observer) = &*self.observer.load() {
            observer.enabled(enabled);
        }
    }

    /// Tokens it adds to its cluster's shaper: its capacity while available (no limit counts
    /// as [`UNLIMITED_TOKENS`]).
    pub fn tokens(&self) -> u32 {
        self.tokens_in(false)
    }

    /// Like [`Backend::tokens`]; in a cluster in panic an offline backend in service counts.
    pub fn tokens_in(&self, panic: bool) -> u32 {
        match (self.is_available_in(panic), self.capacity()) {
            (false, _) => 0,
            (true, 0) => UNLIMITED_TOKENS,
            (true, c) => c,
        }
    }

    /// Takes one request slot if it is available and below capacity (`ignore_capacity` for
    /// pinned requests). The slot is given back with [`Backend::release`].
    pub fn try_acquire(&self, ignore_capacity: bool) -> Result<(), Refusal> {
        self.try_acquire_in(ignore_capacity, false)
    }

    /// Like [`Backend::try_acquire`]; in a cluster in `panic` a backend that is offline but in
    /// service ([`Backend::is_in_service`]) takes requests too (Envoy's panic mode).
    pub fn try_acquire_in(&self, ignore_capacity: bool, panic: bool) -> Result<(), Refusal> {
        let available = if ignore_capacity {
            self.is_available_when_pinned()
        } else {
            self.is_available_in(panic)
        };
        if !available {
            return Err(Refusal::Unavailable);
        }
        let capacity = self.capacity();
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (ignore_capacity || capacity == 0 || n < capacity).then_some(n + 1)
            });
        match taken {
            Ok(_) => {
                self.load.incr();
                Ok(())
            }
            Err(_) => Err(Refusal::Overloaded),
        }
    }

    /// Gives back a slot taken with [`Backend::try_acquire`].
    pub fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.load.decr();
    }
}

/// Shaper tokens a backend without a capacity limit adds: large enough to never be the limit,
/// small enough that a cluster of many still fits in a `u32`.
pub const UNLIMITED_TOKENS: u32 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(capacity: u32) -> Backend {
        let b = Backend::new(
            "b",
            "http://127.0.0.1:1".parse().unwrap(),
            TransportOptions::default(),
        );
        b.set_capacity(capacity);
        b
    }

    #[test]
    fn admission_follows_capacity_health_and_switches() {
        let b = backend(2);
        assert_eq!(b.try_acquire(false), Ok(()));
        assert_eq!(b.try_acquire(false), Ok(()));
        assert_eq!(b.try_acquire(false), Err(Refusal::Overloaded));
        assert_eq!(
            b.try_acquire(true),
            Ok(()),
            "pinned requests ignore capacity"
        );
        b.release();
        b.release();
        assert_eq!(b.try_acquire(false), Ok(()));
        b.set_enabled(false);
        assert_eq!(b.try_acquire(false), Err(Refusal::Unavailable));
        b.set_enabled(true);
        b.set_health(Health::Offline);
        assert_eq!(b.try_acquire(true), Err(Refusal::Unavailable));
        assert_eq!(b.tokens(), 0);
        b.set_health(Health::Online);
        assert_eq!(b.tokens(), 2);
        assert!(b.drain());
        assert_eq!(b.try_acquire(false), Err(Refusal::Unavailable));
        assert_eq!(b.load().max, 3);
    }

    #[test]
    fn soft_drain_keeps_pinned_requests_and_maint_follows_enabled() {
        let b = backend(0);
        assert_eq!(b.admin_state(), AdminState::Ready);
        b.set_soft_drain(true);
        assert_eq!(b.admin_state(), AdminState::Drain);
        assert!(!b.is_available());
        assert_eq!(b.tokens(), 0);
        assert_eq!(b.try_acquire(false), Err(Refusal::Unavailable));
        assert_eq!(
            b.try_acquire(true),
            Ok(()),
            "pinned requests still reach it"
        );
        b.set_enabled(false);
        assert_eq!(b.admin_state(), AdminState::Maint);
        assert_eq!(b.try_acquire(true), Err(Refusal::Unavailable));
        b.set_enabled(true);
        b.set_soft_drain(false);
        assert!(b.is_available());
    }

    #[test]
    fn health_history_counts_downs_and_downtime() {
        let b = backend(0);
        assert_eq!(b.times_down(), 0);
        b.set_health(Health::Offline);
        b.set_health(Health::Offline);
        assert_eq!(b.times_down(), 1);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(b.downtime() >= std::time::Duration::from_millis(20));
        b.set_health(Health::Online);
        let down = b.downtime();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(b.downtime(), down, "downtime stops growing once up");
        assert!(b.since_last_change() >= std::time::Duration::from_millis(5));
    }

    #[test]
    fn unlimited_and_protected() {
        let b = backend(0);
        for _ in 0..1000 {
            b.try_acquire(false).unwrap();
        }
        assert_eq!(b.tokens(), UNLIMITED_TOKENS);
        b.set_terminate_protection(true);
        assert!(!b.drain());
        assert!(!b.is_draining());
    }

    #[test]
    fn the_last_slot_goes_to_one_thread_only() {
        let b = Arc::new(backend(1));
        let winners: usize = (0..8)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || b.try_acquire(false).is_ok() as usize)
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(winners, 1);
    }
}
