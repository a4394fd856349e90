//! One endpoint's live health: the shared [`HealthHandle`] and the [`Monitor`] task probing it.
//!
//! The handle is what the rest of the proxy holds. The request path reads it without locks
//! ([`HealthHandle::is_available`] is two atomic loads) and reports live outcomes to it; the admin
//! API enables, disables and snapshots through it; the cluster subscribes to it to learn when an
//! endpoint comes back (and dispatch queued requests at once). The monitor is a thin async shell:
//! it sleeps for the interval, asks the mode whether to probe ([`Mode::should_probe`]), runs the
//! probe under the timeout and feeds the result to the pure [`StateMachine`].
//!
//! Mutations take a short `std::sync::Mutex` (never held across an await); every state change is
//! logged (offline at warn, online at info), published on the handle's `watch` channel and, when
//! configured, on a shared `broadcast` channel of [`Transition`]s.

use std::fmt;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{HealthConfig, jitter};
use crate::mode::{Mode, ProbeContext};
use crate::passive::FailureKind;
use crate::probe::{Probe, ProbeError};
use crate::state::{Change, HealthState, StateMachine};

/// What the handle's `watch` channel carries: whether the endpoint may take traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointStatus {
    /// The health state.
    pub state: HealthState,
    /// The administrative flag (operator, or sticky offline mode).
    pub enabled: bool,
}

impl EndpointStatus {
    /// Online and enabled: eligible for new requests.
    pub fn is_available(&self) -> bool {
        self.enabled && self.state == HealthState::Online
    }
}

/// What caused a state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// An active probe result.
    Probe,
    /// A live request's outcome (passive health, or opportunistic success).
    Live,
}

/// One state change of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The endpoint's name.
    pub endpoint: Arc<str>,
    /// State before.
    pub from: HealthState,
    /// State after.
    pub to: HealthState,
    /// When it happened.
    pub at: Instant,
    /// What caused it.
    pub cause: Cause,
    /// Whether sticky offline mode disabled the endpoint because of this change.
    pub sticky_disabled: bool,
}

/// The last probe's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRecord {
    /// Whether it passed.
    pub ok: bool,
    /// How long it took (up to the timeout).
    pub latency: Duration,
    /// How long ago it finished.
    pub age: Duration,
    /// The failure, as text.
    pub error: Option<String>,
    /// The failure's kind (for HAProxy's `check_status` and `check_code`).
    pub failure: Option<crate::probe::ProbeFailure>,
}

/// A point-in-time view of an endpoint's health, for the admin API and HAProxy's CSV columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSnapshot {
    /// The endpoint's name.
    pub name: Arc<str>,
    /// The configured mode.
    pub mode: Mode,
    /// The health state.
    pub state: HealthState,
    /// The administrative flag.
    pub enabled: bool,
    /// Whether the endpoint is disabled because of sticky offline mode (until enabled).
    pub sticky_disabled: bool,
    /// Current run of successes.
    pub consecutive_successes: u32,
    /// Current run of failures.
    pub consecutive_failures: u32,
    /// Time since the last state change (or since creation). HAProxy: `lastchg`.
    pub since_last_change: Duration,
    /// The last probe, if any finished.
    pub last_probe: Option<ProbeRecord>,
    /// Probes started.
    pub probes_sent: u64,
    /// Probes that failed. HAProxy: `chkfail`.
    pub probes_failed: u64,
    /// Live failures that counted toward `fall`.
    pub passive_failures: u64,
    /// Online → Offline transitions. HAProxy: `chkdown`.
    pub times_down: u64,
    /// Total time spent offline, including the current stretch. HAProxy: `downtime`.
    pub downtime: Duration,
}

/// The live health of one endpoint. Cheap to clone; all clones share the state.
#[derive(Clone)]
pub struct HealthHandle {
    shared: Arc<Shared>,
}

/// The last probe: passed, latency, when it finished, and the failure (text and kind).
type LastProbe = (
    bool,
    Duration,
    Instant,
    Option<(String, crate::probe::ProbeFailure)>,
);

struct Shared {
    name: Arc<str>,
    config: ArcSwap<HealthConfig>,
    /// Wakes a sleeping monitor so a new interval applies at once.
    reconfigured: Notify,
    created: Instant,
    // Lock-free mirrors for the request path.
    state: AtomicU8,
    enabled: AtomicBool,
    failures: AtomicU32,
    /// Nanoseconds after `created` of the last live success, plus one; zero means never.
    last_live_success: AtomicU64,
    probes_sent: AtomicU64,
    inner: Mutex<Inner>,
    status: watch::Sender<EndpointStatus>,
    events: Option<broadcast::Sender<Transition>>,
}

struct Inner {
    machine: StateMachine,
    last_change: Instant,
    offline_since: Option<Instant>,
    downtime: Duration,
    probes_failed: u64,
    passive_failures: u64,
    times_down: u64,
    sticky_disabled: bool,
    last_probe: Option<LastProbe>,
}

// === impl HealthHandle ===

impl HealthHandle {
    /// A handle for endpoint `name`, enabled, in the mode's initial state (lazy: `Online`,
    /// otherwise `Undefined`). Times come from `tokio::time::Instant`, so paused test time
    /// applies.
    pub fn new(name: impl Into<Arc<str>>, config: HealthConfig) -> Self {
        Self::build(name.into(), config, None)
    }

    /// Like [`new`](Self::new), also sending every [`Transition`] to `events` (shared by a
    /// cluster's endpoints, say).
    pub fn with_events(
        name: impl Into<Arc<str>>,
        config: HealthConfig,
        events: broadcast::Sender<Transition>,
    ) -> Self {
        Self::build(name.into(), config, Some(events))
    }

    fn build(
        name: Arc<str>,
        config: HealthConfig,
        events: Option<broadcast::Sender<Transition>>,
    ) -> Self {
        let now = Instant::now();
        let state = config.mode.initial_state();
        let machine = StateMachine::with_state(state, config.rise, config.fall);
        let (status, _) = watch::channel(EndpointStatus {
            state,
            enabled: true,
        });
        HealthHandle {
            shared: Arc::new(Shared {
                name,
                created: now,
                state: AtomicU8::new(state.to_u8()),
                enabled: AtomicBool::new(true),
                failures: AtomicU32::new(0),
                last_live_success: AtomicU64::new(0),
                probes_sent: AtomicU64::new(0),
                inner: Mutex::new(Inner {
                    machine,
                    last_change: now,
                    offline_since: None,
                    downtime: Duration::ZERO,
                    probes_failed: 0,
                    passive_failures: 0,
                    times_down: 0,
                    sticky_disabled: false,
                    last_probe: None,
                }),
                status,
                events,
                config: ArcSwap::from_pointee(config),
                reconfigured: Notify::new(),
            }),
        }
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The settings in effect.
    pub fn config(&self) -> Arc<HealthConfig> {
        self.shared.config.load_full()
    }

    /// Replaces the settings, keeping state and counters (an API update of interval, mode,
    /// thresholds...). New thresholds apply from the next result; a sleeping monitor wakes and
    /// schedules its next probe with the new interval. The initial state of the new mode does
    /// not apply. To change what is probed (path, host), spawn a new [`Monitor`] on this handle
    /// and drop the old one.
    pub fn reconfigure(&self, config: HealthConfig) {
        let mut inner = self.lock();
        inner.machine.set_thresholds(config.rise, config.fall);
        self.shared.config.store(Arc::new(config));
        drop(inner);
        self.shared.reconfigured.notify_waiters();
    }

    /// The health state (one atomic load).
    pub fn state(&self) -> HealthState {
        HealthState::from_u8(self.shared.state.load(Ordering::Acquire))
    }

    /// Whether the state is `Online`.
    pub fn is_online(&self) -> bool {
        self.state() == HealthState::Online
    }

    /// Whether the endpoint is enabled.
    pub fn is_enabled(&self) -> bool {
        self.shared.enabled.load(Ordering::Acquire)
    }

    /// Online and enabled: the endpoint may take new requests.
    pub fn is_available(&self) -> bool {
        self.is_enabled() && self.is_online()
    }

    /// The current state and enabled flag.
    pub fn status(&self) -> EndpointStatus {
        *self.shared.status.borrow()
    }

    /// A receiver of the endpoint's status, updated on every state change and enable/disable.
    pub fn subscribe(&self) -> watch::Receiver<EndpointStatus> {
        self.shared.status.subscribe()
    }

    /// Enables the endpoint (operator action). Clears a sticky-offline disable.
    pub fn enable(&self) {
        self.set_enabled(true);
    }

    /// Disables the endpoint (operator action): it stays out of rotation whatever its health.
    pub fn disable(&self) {
        self.set_enabled(false);
    }

    fn set_enabled(&self, enabled: bool) {
        let mut inner = self.lock();
        inner.sticky_disabled = false;
        if self.shared.enabled.swap(enabled, Ordering::AcqRel) != enabled {
            tracing::info!(endpoint = %self.shared.name, enabled, "endpoint {}", if enabled { "enabled" } else { "disabled" });
            self.publish(&inner);
        }
    }

    /// Reports a successful live request.
    ///
    /// Opportunistic mode counts it as a passing probe (toward `rise`, and it keeps the endpoint
    /// from being probed while traffic flows); other modes only clear the failure run.
    pub fn report_success(&self) {
        let shared = &self.shared;
        let nanos = u64::try_from(shared.created.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        shared
            .last_live_success
            .store(nanos.saturating_add(1), Ordering::Release);
        if shared.config.load().mode.live_success_is_probe() {
            let mut inner = self.lock();
            let change = inner.machine.on_success();
            self.after_result(&mut inner, change, Cause::Live);
        } else if shared.failures.load(Ordering::Acquire) > 0 {
            let mut inner = self.lock();
            inner.machine.clear_failures();
            shared.failures.store(0, Ordering::Release);
        }
    }

    /// Reports a failed live request. Counts toward `fall` if [`crate::PassiveConfig`] says
    /// `kind` counts; returns whether it did.
    pub fn report_failure(&self, kind: FailureKind) -> bool {
        self.report_failure_capped(kind, || true)
    }

    /// Like [`report_failure`](Self::report_failure), but a failure that would take the
    /// endpoint offline first asks `may_go_offline` (an ejection cap kept by whoever groups
    /// the endpoints, called with the handle's lock held). When it says no the failure is not
    /// counted: the endpoint stays in rotation and only probes can take it out. Returns whether
    /// the failure counted toward `fall`.
    pub fn report_failure_capped(
        &self,
        kind: FailureKind,
        may_go_offline: impl FnOnce() -> bool,
    ) -> bool {
        if !self.shared.config.load().passive.counts(kind) {
            return false;
        }
        let mut inner = self.lock();
        if inner.machine.failure_would_fall() && !may_go_offline() {
            tracing::debug!(endpoint = %self.shared.name, ?kind, "live failure not counted: ejection cap");
            return false;
        }
        inner.passive_failures += 1;
        let change = inner.machine.on_failure();
        tracing::debug!(endpoint = %self.shared.name, ?kind, "live request failed");
        self.after_result(&mut inner, change, Cause::Live);
        true
    }

    /// Feeds one probe result (the monitor calls this; custom schedulers may too).
    pub fn record_probe(&self, result: &Result<(), ProbeError>, latency: Duration) {
        let now = Instant::now();
        let mut inner = self.lock();
        let change = match result {
            Ok(()) => {
                inner.last_probe = Some((true, latency, now, None));
                inner.machine.on_success()
            }
            Err(err) => {
                inner.probes_failed += 1;
                inner.last_probe =
                    Some((false, latency, now, Some((err.to_string(), err.failure()))));
                tracing::debug!(endpoint = %self.shared.name, error = %err, "health probe failed");
                inner.machine.on_failure()
            }
        };
        self.after_result(&mut inner, change, Cause::Probe);
    }

    /// A point-in-time view of the counters.
    pub fn snapshot(&self) -> HealthSnapshot {
        let now = Instant::now();
        let inner = self.lock();
        let current_down = inner.offline_since.map_or(Duration::ZERO, |t| now - t);
        HealthSnapshot {
            name: self.shared.name.clone(),
            mode: self.shared.config.load().mode,
            state: inner.machine.state(),
            enabled: self.is_enabled(),
            sticky_disabled: inner.sticky_disabled,
            consecutive_successes: inner.machine.consecutive_successes(),
            consecutive_failures: inner.machine.consecutive_failures(),
            since_last_change: now - inner.last_change,
            last_probe: inner
                .last_probe
                .as_ref()
                .map(|(ok, latency, at, error)| ProbeRecord {
                    ok: *ok,
                    latency: *latency,
                    age: now - *at,
                    error: error.as_ref().map(|(text, _)| text.clone()),
                    failure: error.as_ref().map(|(_, kind)| *kind),
                }),
            probes_sent: self.shared.probes_sent.load(Ordering::Relaxed),
            probes_failed: inner.probes_failed,
            passive_failures: inner.passive_failures,
            times_down: inner.times_down,
            downtime: inner.downtime + current_down,
        }
    }

    /// What the mode rule looks at, now.
    fn probe_context(&self) -> ProbeContext {
        let stamp = self.shared.last_live_success.load(Ordering::Acquire);
        let since_live_success = (stamp > 0).then(|| {
            let at = self.shared.created + Duration::from_nanos(stamp - 1);
            Instant::now().saturating_duration_since(at)
        });
        ProbeContext {
            state: self.state(),
            consecutive_failures: self.shared.failures.load(Ordering::Acquire),
            since_live_success,
            idle_after: self.shared.config.load().effective_idle_after(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent counters behind; keep serving.
        self.shared
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn after_result(&self, inner: &mut Inner, change: Option<Change>, cause: Cause) {
        self.shared
            .failures
            .store(inner.machine.consecutive_failures(), Ordering::Release);
        if let Some(change) = change {
            self.apply(inner, change, cause);
        }
    }

    fn apply(&self, inner: &mut Inner, change: Change, cause: Cause) {
        let shared = &self.shared;
        let now = Instant::now();
        inner.last_change = now;
        if change.to == HealthState::Offline {
            inner.offline_since = Some(now);
            if change.from == HealthState::Online {
                inner.times_down += 1;
            }
        } else if let Some(since) = inner.offline_since.take() {
            inner.downtime += now - since;
        }
        shared.state.store(change.to.to_u8(), Ordering::Release);

        // Sticky offline (x0 5.8, with its quirk fixed): only a comeback from Offline disables.
        let sticky = shared.config.load().sticky_offline
            && change.from == HealthState::Offline
            && change.to == HealthState::Online
            && shared.enabled.load(Ordering::Acquire);
        if sticky {
            shared.enabled.store(false, Ordering::Release);
            inner.sticky_disabled = true;
        }

        let name = &shared.name;
        match change.to {
            HealthState::Offline => {
                tracing::warn!(endpoint = %name, from = %change.from, ?cause, "endpoint is now offline");
            }
            _ => {
                tracing::info!(endpoint = %name, from = %change.from, ?cause, "endpoint is now {}", change.to);
            }
        }
        if sticky {
            tracing::info!(endpoint = %name, "endpoint disabled due to sticky offline mode");
        }

        self.publish(inner);
        if let Some(events) = &shared.events {
            // No receiver is not an error: nobody is listening right now.
            let _ = events.send(Transition {
                endpoint: name.clone(),
                from: change.from,
                to: change.to,
                at: now,
                cause,
                sticky_disabled: sticky,
            });
        }
    }

    /// Sends the status to watchers. Called with the lock held so updates arrive in order.
    fn publish(&self, _inner: &Inner) {
        let status = EndpointStatus {
            state: self.state(),
            enabled: self.is_enabled(),
        };
        self.shared.status.send_if_modified(|cur| {
            let changed = *cur != status;
            *cur = status;
            changed
        });
    }
}

impl fmt::Debug for HealthHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthHandle")
            .field("name", &self.shared.name)
            .field("state", &self.state())
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

/// The task probing one endpoint. Dropping it (or [`stop`](Self::stop)) ends the task; the
/// handle keeps working without probes.
pub struct Monitor {
    handle: HealthHandle,
    task: JoinHandle<()>,
}

// === impl Monitor ===

impl Monitor {
    /// Spawns the probing task on the current tokio runtime. Panics outside a runtime.
    pub fn spawn(handle: HealthHandle, probe: impl Probe) -> Self {
        Self::spawn_inner(handle, Box::new(probe), SmallRng::from_os_rng())
    }

    /// Like [`spawn`](Self::spawn) with a seeded jitter generator, for reproducible schedules.
    pub fn spawn_with_seed(handle: HealthHandle, probe: impl Probe, seed: u64) -> Self {
        Self::spawn_inner(handle, Box::new(probe), SmallRng::seed_from_u64(seed))
    }

    fn spawn_inner(handle: HealthHandle, probe: Box<dyn Probe>, rng: SmallRng) -> Self {
        let task = tokio::spawn(run(handle.clone(), probe, rng));
        Monitor { handle, task }
    }

    /// The endpoint's handle.
    pub fn handle(&self) -> &HealthHandle {
        &self.handle
    }

    /// Stops the task and waits until it has ended.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("handle", &self.handle)
            .field("finished", &self.task.is_finished())
            .finish()
    }
}

/// The probing loop: spread the start, then probe (if the mode says so) and sleep, forever.
async fn run(handle: HealthHandle, probe: Box<dyn Probe>, mut rng: impl Rng + Send) {
    // Random start within the jitter bound, so endpoints configured together do not probe in
    // lockstep. With no jitter the first probe goes out at once (x0 rewrite behaviour).
    let first = jitter(handle.config().jitter, &mut rng);
    tokio::time::sleep(first).await;
    loop {
        // Registered before the probe, so a reconfiguration during it is not missed.
        let reconfigured = pin!(handle.shared.reconfigured.notified());
        let config = handle.config();
        if config.mode.should_probe(&handle.probe_context()) {
            handle.shared.probes_sent.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let result = match tokio::time::timeout(config.timeout, probe.probe()).await {
                Ok(result) => result,
                Err(_) => Err(ProbeError::Timeout(config.timeout)),
            };
            handle.record_probe(&result, started.elapsed());
        }
        let delay = config.next_delay(handle.state(), &mut rng);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = reconfigured => {
                // Sleep the new interval, counted from now.
                let config = handle.config();
                tokio::time::sleep(config.next_delay(handle.state(), &mut rng)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
