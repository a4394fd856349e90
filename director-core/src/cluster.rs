//! A cluster: backends behind a scheduler, with admission control, queues and retries.
//!
//! A balanced request takes two things before it is sent: a token of its bucket (the
//! [`Shaper`], x0's HTB-like partition of the cluster's capacity) and a slot of a backend (below
//! its capacity). Both are held by one [`Grant`] until the response body ends, and given back
//! together when it is dropped, which also hands freed capacity to queued requests at once.
//!
//! Admission is synchronised without a lock on the common path: tokens and backend slots are
//! atomics taken with compare-and-swap; a bucket's queue (a mutex over a `VecDeque`) is touched
//! only when requests actually wait. Queued requests are served oldest first within a bucket, and
//! across buckets in the shaper's order (see [`Shaper::pick`]); a new request never overtakes
//! requests already waiting in its bucket.
//!
//! Failures: when a backend cannot be reached the request goes to the next one; a request that
//! reached a backend is sent again only if it was kept for replay (see [`crate::replay`]), its
//! method is idempotent, and the backend broke the exchange before answering. Timeouts are not
//! retried (a slow backend would only be asked again). After `max-retry-count + 1` attempts the
//! client gets 503. A failure of the client's own request body ([`ErrorKind::ClientBody`]) is
//! the client's: it goes back to the client as it is, is never retried, never reported to
//! passive health and never counted as a backend error (it counts as a client abort).

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use tokio::sync::oneshot;

use crate::{
    backend::{Backend, BackendTransport, Refusal, Role},
    body::{Body, BoxError},
    counter::{Counter, CounterSnapshot},
    directors::{Healthy, ShardParams},
    error::{ErrorKind, ProxyError},
    key::HashKey,
    replay,
    schedule::{PickContext, PoolDirectors, Scheduler, SchedulerKind},
    shaper::{BucketId, ROOT, Shaper},
    stats::{PhaseTimes, PhaseTimesSnapshot, Sessions, SessionsSnapshot},
};

static X_DIRECTOR_BACKEND: HeaderName = HeaderName::from_static("x-director-backend");
static X_DIRECTOR_BUCKET: HeaderName = HeaderName::from_static("x-director-bucket");

/// Which cluster and backend served a response (a response extension, for logs and stats).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamInfo {
    /// The cluster, or `None` for a road-warrior route.
    pub cluster: Option<Arc<str>>,
    /// The backend that answered, if one did.
    pub backend: Option<Arc<str>>,
}

/// A cluster's admission and retry settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSettings {
    /// The scheduler.
    pub scheduler: SchedulerKind,
    /// `Retry-After` seconds on a 503 (0 sends none).
    pub retry_after: u32,
    /// Requests that may wait in one bucket's queue.
    pub queue_limit: usize,
    /// How long a request may wait in a queue before it gets 504.
    pub queue_timeout: Duration,
    /// Queue (rather than answer 503 at once) while no backend is available.
    pub enqueue_on_unavailable: bool,
    /// What happens to a backend's exchange when the client goes away early.
    pub on_client_abort: crate::config::ClientAbort,
    /// Attempts after the first, when a backend fails before answering.
    pub max_retry_count: u32,
    /// Request bodies up to this many bytes are kept so they can be sent again.
    pub replay_body_limit: usize,
    /// Send `X-Director-Backend` and `X-Director-Bucket` response headers.
    pub response_headers: bool,
    /// The request key of the `hash` and `shard` schedulers.
    pub hash_key: Option<HashKey>,
    /// Points on the hash ring per unit of weight.
    pub ring_replicas: u32,
    /// The shard director's parameters.
    pub shard: ShardParams,
    /// The fallback director keeps the current backend while it stays available.
    pub fallback_sticky: bool,
    /// The status answered when no backend can take a request (503; fnlb mode uses 502).
    pub unavailable_status: http::StatusCode,
    /// Panic mode: while some but fewer than this percentage of the active members in service
    /// are available, requests are balanced over all of them, offline ones included (Envoy's
    /// `healthy_panic_threshold`); 0 turns it off. See [`is_panic`].
    pub panic_threshold: u8,
    /// Read response bodies into a spool (`buffer-responses`); `None` streams them.
    pub buffer: Option<crate::buffer::BufferLimits>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            scheduler: SchedulerKind::RoundRobin,
            retry_after: 10,
            queue_limit: 128,
            queue_timeout: Duration::from_secs(60),
            enqueue_on_unavailable: false,
            on_client_abort: crate::config::ClientAbort::Close,
            max_retry_count: 3,
            replay_body_limit: 64 * 1024,
            response_headers: true,
            hash_key: None,
            ring_replicas: 67,
            shard: ShardParams {
                alt: 0,
                warmup: 0.0,
                rampup: Duration::ZERO,
                healthy: Healthy::Chosen,
            },
            fallback_sticky: false,
            unavailable_status: http::StatusCode::SERVICE_UNAVAILABLE,
            panic_threshold: 0,
            buffer: None,
        }
    }
}

/// How one request is to be dispatched within a cluster.
#[derive(Clone, Debug, Default)]
pub struct Dispatch {
    /// The bucket, by name (unknown or `None`: the root bucket).
    pub bucket: Option<String>,
    /// Send straight to this backend, ignoring its capacity (x0's `director.pass`).
    pub pin: Option<String>,
    /// Attach an [`UpstreamInfo`] to the response.
    pub tag: bool,
}

#[derive(Debug)]
struct Members {
    all: Vec<Arc<Backend>>,
    active: Vec<Arc<Backend>>,
    backup: Vec<Arc<Backend>>,
    directors: [PoolDirectors; 2],
}

impl Members {
    fn new(all: Vec<Arc<Backend>>, settings: &ClusterSettings) -> Self {
        let (active, backup): (Vec<_>, Vec<_>) =
            all.iter().cloned().partition(|b| b.role() == Role::Active);
        let directors = [
            PoolDirectors::new(&active, settings.ring_replicas, settings.fallback_sticky),
            PoolDirectors::new(&backup, settings.ring_replicas, settings.fallback_sticky),
        ];
        Members {
            all,
            active,
            backup,
            directors,
        }
    }
}

/// One bucket's queue and counters.
#[derive(Debug)]
struct Bucket {
    name: HeaderValue,
    waiters: Mutex<VecDeque<Waiter>>,
    queued: Counter,
    dropped: AtomicU64,
}

/// A queued request, waiting for a grant.
#[derive(Debug)]
struct Waiter {
    // Set by whoever settles the waiter first: the dispatcher (grant) or the waiter itself
    // (timeout, client gone). The loser leaves it alone.
    claimed: Arc<AtomicBool>,
    grant: oneshot::Sender<Grant>,
}

/// A named load-balanced group of backends, with its shaper and queues.
#[derive(Debug)]
pub struct Cluster {
    name: Arc<str>,
    members: ArcSwap<Members>,
    scheduler: Scheduler,
    enabled: AtomicBool,
    settings: ClusterSettings,
    shaper: Shaper,
    buckets: Vec<Option<Bucket>>,
    waiting: AtomicUsize,
    load: Counter,
    queued: Counter,
    dropped: AtomicU64,
    sendfile: Option<Arc<crate::sendfile::SendfilePolicy>>,
    sessions: Sessions,
    times: PhaseTimes,
    // Panic mode, decided on every member change (`refresh`) so a request reads one atomic.
    panic: AtomicBool,
    panic_requests: AtomicU64,
    // Serialises passive ejections, so two failing backends cannot both pass the cap. Taken
    // only when a live failure would take a backend offline, never on the request path.
    ejection: Mutex<()>,
    ejections_refused: AtomicU64,
}

/// Whether a cluster is in panic: some but fewer than `threshold` percent of its `in_service`
/// active members (enabled, not draining) are available. Panic spreads the load of the few
/// survivors over the rest; with none available the cluster is down as before (backups,
/// `enqueue-on-unavailable`, 503), unlike Envoy, which then balances over all of them too. A
/// threshold of 0 never panics.
pub fn is_panic(in_service: usize, available: usize, threshold: u8) -> bool {
    threshold > 0 && available > 0 && available * 100 < usize::from(threshold) * in_service
}

/// Whether passive health may take one more member offline: afterwards at most
/// `max_percent` percent of the `in_service` members are held out by passive health
/// (`ejected` already are), and some other member (`available_others`) is still available, so
/// live failures alone never take out the last one.
pub fn may_eject(
    in_service: usize,
    ejected: usize,
    available_others: usize,
    max_percent: u8,
) -> bool {
    available_others > 0 && (ejected + 1) * 100 <= usize::from(max_percent) * in_service
}

/// A cluster's counters at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterStats {
    /// Requests at backends.
    pub load: CounterSnapshot,
    /// Requests waiting in queues.
    pub queued: CounterSnapshot,
    /// Requests refused (queue full, queue timeout, no backend).
    pub dropped: u64,
    /// Admissions per second and the last one's age (HAProxy's `rate`, `rate_max`,
    /// `lastsess` on the BACKEND row).
    pub sessions: SessionsSnapshot,
    /// Phases of answered requests: queued, connecting and waiting for the response head on
    /// the attempt that answered, and from arrival to the end of the body (`qtime`…`ttime_max`).
    pub times: PhaseTimesSnapshot,
    /// Whether it is in panic mode now (see [`is_panic`]).
    pub panic: bool,
    /// Requests admitted while in panic mode.
    pub panic_requests: u64,
    /// Live failures that would have taken a backend offline but for the ejection cap.
    pub ejections_refused: u64,
}

/// A bucket's queue counters at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketQueueStats {
    /// Requests waiting.
    pub queued: CounterSnapshot,
    /// Requests that timed out or found the queue full.
    pub dropped: u64,
}

// === impl Cluster ===

impl Cluster {
    /// A cluster called `name` over `backends`, with `settings` and a shaper whose buckets are
    /// already created (its size is set here from the backends).
    pub fn new(
        name: impl Into<Arc<str>>,
        backends: Vec<Arc<Backend>>,
        settings: ClusterSettings,
        shaper: Shaper,
    ) -> Self {
        let buckets = {
            let max = shaper.buckets().max().unwrap_or(ROOT);
            let mut v: Vec<Option<Bucket>> = (0..=max).map(|_| None).collect();
            for id in shaper.buckets() {
                v[id] = Some(Bucket {
                    name: HeaderValue::from_str(shaper.name(id))
                        .unwrap_or_else(|_| HeaderValue::from_static("root")),
                    waiters: Mutex::new(VecDeque::new()),
                    queued: Counter::default(),
                    dropped: AtomicU64::new(0),
                });
            }
            v
        };
        let cluster = Cluster {
            name: name.into(),
            members: ArcSwap::from_pointee(Members::new(backends, &settings)),
            scheduler: Scheduler::new(settings.scheduler),
            enabled: AtomicBool::new(true),
            settings,
            shaper,
            buckets,
            waiting: AtomicUsize::new(0),
            load: Counter::default(),
            queued: Counter::default(),
            dropped: AtomicU64::new(0),
            sendfile: None,
            sessions: Sessions::default(),
            times: PhaseTimes::default(),
            panic: AtomicBool::new(false),
            panic_requests: AtomicU64::new(0),
            ejection: Mutex::new(()),
            ejections_refused: AtomicU64::new(0),
        };
        let panic = cluster.update_panic();
        cluster.shaper.resize(cluster.online_tokens(panic));
        cluster
    }

    /// A cluster with default settings and only the root bucket.
    pub fn simple(name: impl Into<Arc<str>>, backends: Vec<Arc<Backend>>) -> Self {
        Self::new(name, backends, ClusterSettings::default(), Shaper::new(0))
    }

    /// Lets its backends have Director serve files (X-Sendfile) under `policy`; served through
    /// [`ClusterService`].
    pub fn with_sendfile(mut self, policy: Option<Arc<crate::sendfile::SendfilePolicy>>) -> Self {
        self.sendfile = policy;
        self
    }

    /// Its X-Sendfile policy, if it allows X-Sendfile.
    pub fn sendfile(&self) -> Option<&Arc<crate::sendfile::SendfilePolicy>> {
        self.sendfile.as_ref()
    }

    /// The cluster's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Its members, in configuration order.
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        self.members.load().all.clone()
    }

    /// A member by name.
    pub fn backend(&self, name: &str) -> Option<Arc<Backend>> {
        self.members
            .load()
            .all
            .iter()
            .find(|b| &**b.name() == name)
            .cloned()
    }

    /// Its settings.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// Its scheduler (the policy can be changed at runtime).
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Its shaper.
    pub fn shaper(&self) -> &Shaper {
        &self.shaper
    }

    /// Whether the cluster takes requests at all.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Enables or disables the whole cluster; a disabled cluster answers 503.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Counters of the whole cluster.
    pub fn stats(&self) -> ClusterStats {
        ClusterStats {
            load: self.load.snapshot(),
            queued: self.queued.snapshot(),
            dropped: self.dropped.load(Ordering::Relaxed),
            sessions: self.sessions.snapshot(),
            times: self.times.snapshot(),
            panic: self.is_in_panic(),
            panic_requests: self.panic_requests.load(Ordering::Relaxed),
            ejections_refused: self.ejections_refused.load(Ordering::Relaxed),
        }
    }

    /// Queue counters of one bucket.
    pub fn bucket_stats(&self, bucket: BucketId) -> Option<BucketQueueStats> {
        let b = self.buckets.get(bucket)?.as_ref()?;
        Some(BucketQueueStats {
            queued: b.queued.snapshot(),
            dropped: b.dropped.load(Ordering::Relaxed),
        })
    }

    fn online_tokens(&self, panic: bool) -> u32 {
        self.members
            .load()
            .all
            .iter()
            .fold(0u32, |sum, b| sum.saturating_add(b.tokens_in(panic)))
    }

    /// Whether it is in panic mode now: balancing over its offline members too.
    pub fn is_in_panic(&self) -> bool {
        self.panic.load(Ordering::Relaxed)
    }

    // Decides panic mode from the members' state; logs entering and leaving it.
    fn update_panic(&self) -> bool {
        let threshold = self.settings.panic_threshold;
        if threshold == 0 {
            return false;
        }
        let members = self.members.load();
        let (in_service, available) = members
            .active
            .iter()
            .filter(|b| b.is_in_service())
            .fold((0, 0), |(n, up), b| {
                (n + 1, up + usize::from(b.is_available()))
            });
        let panic = is_panic(in_service, available, threshold);
        if self.panic.swap(panic, Ordering::Relaxed) != panic {
            if panic {
                tracing::warn!(
                    cluster = %self.name,
                    available,
                    in_service,
                    threshold,
                    "cluster in panic: balancing over all its backends, offline ones included"
                );
            } else {
                tracing::info!(
                    cluster = %self.name,
                    available,
                    in_service,
                    "cluster out of panic"
                );
            }
        }
        panic
    }

    /// Recomputes panic mode and the shaper's size from the backends' state (enabled, online,
    /// capacity) and dispatches queued requests to whatever capacity that adds. Call after any
    /// change to a member; it is idempotent.
    pub fn refresh(self: &Arc<Self>) {
        let panic = self.update_panic();
        self.shaper.resize(self.online_tokens(panic));
        self.dispatch_queued();
    }

    /// Asks whether live failures (passive health) may take `backend` offline now, under the
    /// cap `max_percent` (see [`may_eject`]); when they may, the backend counts as ejected from
    /// here on, until it comes back online. A backend that is not a member is not capped.
    /// Active probes never ask: they decide alone.
    pub fn try_passive_ejection(&self, backend: &Backend, max_percent: u8) -> bool {
        let _serial = self
            .ejection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let members = self.members.load();
        if !members.all.iter().any(|b| std::ptr::eq(&**b, backend)) {
            return true;
        }
        let (mut in_service, mut ejected, mut others) = (0, 0, 0);
        for b in members.all.iter().filter(|b| b.is_in_service()) {
            in_service += 1;
            if b.is_passively_ejected() {
                ejected += 1;
            } else if !std::ptr::eq(&**b, backend) && b.is_available() {
                others += 1;
            }
        }
        let allowed = may_eject(in_service, ejected, others, max_percent);
        if allowed {
            backend.mark_passively_ejected();
        } else {
            self.ejections_refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                cluster = %self.name,
                backend = %backend.name(),
                ejected,
                in_service,
                "live failures keep the backend in rotation: ejection cap reached"
            );
        }
        allowed
    }

    /// Enables or disables a member. Returns false for an unknown name.
    pub fn set_backend_enabled(self: &Arc<Self>, name: &str, enabled: bool) -> bool {
        let Some(b) = self.backend(name) else {
            return false;
        };
        b.set_enabled(enabled);
        b.notify_enabled(enabled);
        self.refresh();
        true
    }

    /// Sets a member's operator state (HAProxy's `set server … state`): `Ready` enables it and
    /// ends a soft drain, `Drain` keeps it as a checked member without new balanced requests,
    /// `Maint` disables it. Returns false for an unknown name.
    pub fn set_backend_admin_state(
        self: &Arc<Self>,
        name: &str,
        state: crate::backend::AdminState,
    ) -> bool {
        use crate::backend::AdminState;
        let Some(b) = self.backend(name) else {
            return false;
        };
        match state {
            AdminState::Ready => {
                b.set_soft_drain(false);
                self.set_backend_enabled(name, true)
            }
            AdminState::Drain => {
                b.set_soft_drain(true);
                self.set_backend_enabled(name, true)
            }
            AdminState::Maint => self.set_backend_enabled(name, false),
        }
    }

    /// Changes a member's capacity (0 = no limit). Returns false for an unknown name.
    pub fn set_backend_capacity(self: &Arc<Self>, name: &str, capacity: u32) -> bool {
        let Some(b) = self.backend(name) else {
            return false;
        };
        b.set_capacity(capacity);
        self.refresh();
        true
    }

    /// Changes a member's role. Returns false for an unknown name.
    pub fn set_backend_role(self: &Arc<Self>, name: &str, role: Role) -> bool {
        let Some(b) = self.backend(name) else {
            return false;
        };
        b.set_role(role);
        self.rebuild_members();
        true
    }

    /// Changes a member's weight (for `wrr`, `random`, `hash` and `shard`). Returns false for
    /// an unknown name.
    pub fn set_backend_weight(self: &Arc<Self>, name: &str, weight: u32) -> bool {
        let Some(b) = self.backend(name) else {
            return false;
        };
        b.set_weight(weight);
        self.rebuild_members();
        true
    }

    /// Rebuilds the schedulers from the members' current roles and weights (after changing
    /// them on the backends directly).
    pub fn reschedule(self: &Arc<Self>) {
        self.rebuild_members();
    }

    /// Requests waiting in this cluster's queues now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    fn rebuild_members(self: &Arc<Self>) {
        let all = self.members.load().all.clone();
        self.members
            .store(Arc::new(Members::new(all, &self.settings)));
        self.refresh();
    }

    /// Whether any member could take a request now (a nested cluster counts as healthy while
    /// this holds).
    pub fn has_available_member(&self) -> bool {
        self.is_enabled() && self.members.load().all.iter().any(|b| b.is_available())
    }

    /// Adds a member at runtime; every scheduler (rings and weighted schedules included) is
    /// rebuilt with it. Returns false when the name is taken.
    pub fn add_backend(self: &Arc<Self>, backend: Arc<Backend>) -> bool {
        if self.backend(backend.name()).is_some() {
            return false;
        }
        let mut all = self.members.load().all.clone();
        all.push(backend);
        self.members
            .store(Arc::new(Members::new(all, &self.settings)));
        self.refresh();
        true
    }

    /// Drains a member: it takes no new requests and leaves the cluster once idle. Returns
    /// false for an unknown or terminate-protected backend.
    pub fn drain_backend(self: &Arc<Self>, name: &str) -> bool {
        let Some(b) = self.backend(name) else {
            return false;
        };
        if !b.drain() {
            return false;
        }
        self.remove_if_drained(&b);
        self.refresh();
        true
    }

    fn remove_if_drained(&self, backend: &Arc<Backend>) {
        if !(backend.is_draining() && backend.in_flight() == 0) {
            return;
        }
        self.members.rcu(|members| {
            let all: Vec<Arc<Backend>> = members
                .all
                .iter()
                .filter(|b| !Arc::ptr_eq(b, backend))
                .cloned()
                .collect();
            Members::new(all, &self.settings)
        });
    }

    fn unavailable(&self, kind: ErrorKind) -> ProxyError {
        let err = ProxyError::new(kind)
            .with_cluster(self.name.clone())
            .with_retry_after(self.settings.retry_after);
        if kind == ErrorKind::NoBackend {
            err.with_status(self.settings.unavailable_status)
        } else {
            err
        }
    }

    fn bucket(&self, id: BucketId) -> &Bucket {
        self.buckets[id]
            .as_ref()
            .expect("bucket ids come from the shaper")
    }

    /// A backend for a request: the active pool, then the backup pool while no active backend
    /// is available. Actives that are merely full make the request wait instead.
    fn pick(&self, skip: &[Arc<Backend>], key: Option<u64>) -> Result<Arc<Backend>, Refusal> {
        let members = self.members.load();
        let skip = |b: &Backend| skip.iter().any(|s| std::ptr::eq(&**s, b));
        let ctx = PickContext {
            key,
            shard: Some(self.settings.shard),
            panic: self.is_in_panic(),
        };
        let [active, backup] = &members.directors;
        let picked = match self
            .scheduler
            .pick(0, &members.active, Some(active), ctx, skip)
        {
            Err(Refusal::Unavailable) => {
                self.scheduler
                    .pick(1, &members.backup, Some(backup), ctx, skip)
            }
            other => other,
        };
        if ctx.panic && picked.is_ok() {
            self.panic_requests.fetch_add(1, Ordering::Relaxed);
        }
        picked
    }

    /// Admits a request to `backend` at `admitted` (a time the caller already read).
    fn grant(
        self: &Arc<Self>,
        bucket: Option<BucketId>,
        backend: Arc<Backend>,
        admitted: Instant,
    ) -> Grant {
        self.load.incr();
        self.sessions.begin(admitted);
        Grant {
            cluster: self.clone(),
            bucket,
            backend,
            redispatch: true,
            admitted,
            arrived: admitted,
            queued: Duration::ZERO,
            answered: None,
        }
    }

    /// Takes a token and a backend for a request of `bucket`, waiting in the bucket's queue
    /// when there is none free.
    async fn admit(
        self: &Arc<Self>,
        bucket: BucketId,
        skip: &[Arc<Backend>],
        key: Option<u64>,
        now: Instant,
    ) -> Result<Grant, ProxyError> {
        let queue = self.bucket(bucket);
        // Strict FIFO per bucket: only take a token directly when nobody of this bucket waits.
        // While others wait, borrowing goes through the queues (the shaper's order: buckets
        // below their assured share first).
        if queue.queued.current() == 0 {
            let taken = if self.waiting.load(Ordering::Acquire) == 0 {
                self.shaper.try_get(bucket)
            } else {
                self.shaper.try_get_assured(bucket)
            };
            if taken {
                match self.pick(skip, key) {
                    Ok(backend) => return Ok(self.grant(Some(bucket), backend, now)),
                    Err(refusal) => {
                        self.shaper.put(bucket);
                        if refusal == Refusal::Unavailable && !self.settings.enqueue_on_unavailable
                        {
                            self.dropped.fetch_add(1, Ordering::Relaxed);
                            return Err(self.unavailable(ErrorKind::NoBackend));
                        }
                    }
                }
            } else if self.shaper.capacity() == 0 && !self.settings.enqueue_on_unavailable {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return Err(self.unavailable(ErrorKind::NoBackend));
            }
        }
        self.wait(bucket).await
    }

    /// Queues a request of `bucket` until a grant comes, the queue timeout passes, or the
    /// request is dropped.
    async fn wait(self: &Arc<Self>, bucket: BucketId) -> Result<Grant, ProxyError> {
        let queue = self.bucket(bucket);
        if queue.queued.current() >= self.settings.queue_limit as u64 {
            queue.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(self
                .unavailable(ErrorKind::NoBackend)
                .with_detail("the queue is full"));
        }
        let (tx, mut rx) = oneshot::channel();
        let claimed = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        {
            let mut waiters = queue.waiters.lock().expect("queue lock");
            // Settled waiters are removed lazily; keep the list from growing without bound.
            if waiters.len() > 2 * self.settings.queue_limit + 16 {
                waiters.retain(|w| !w.claimed.load(Ordering::Relaxed));
            }
            waiters.push_back(Waiter {
                claimed: claimed.clone(),
                grant: tx,
            });
            queue.queued.incr();
            self.queued.incr();
            self.waiting.fetch_add(1, Ordering::AcqRel);
        }
        let ticket = Ticket {
            cluster: self,
            bucket,
            claimed,
        };
        // Capacity may have freed between the failed attempt and the push.
        self.dispatch_queued();
        // The time queued (`qtime`) runs to the grant, which the dispatcher stamps.
        let queued = |mut grant: Grant| {
            grant.queued = grant.admitted.saturating_duration_since(started);
            grant
        };
        match tokio::time::timeout(self.settings.queue_timeout, &mut rx).await {
            Ok(Ok(grant)) => {
                ticket.settled();
                Ok(queued(grant))
            }
            Ok(Err(_)) => {
                ticket.settled();
                Err(self.unavailable(ErrorKind::NoBackend))
            }
            Err(_) if ticket.claim() => {
                queue.dropped.fetch_add(1, Ordering::Relaxed);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    cluster = %self.name,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "queued request timed out"
                );
                Err(self
                    .unavailable(ErrorKind::Timeout)
                    .with_detail("the request waited too long in the queue"))
            }
            // The dispatcher claimed this waiter just as the timeout fired: its grant is on the
            // way, so take it rather than lose it.
            Err(_) => match rx.await {
                Ok(grant) => Ok(queued(grant)),
                Err(_) => Err(self.unavailable(ErrorKind::NoBackend)),
            },
        }
    }

    /// Hands free capacity to queued requests: as many as fit, fairly across buckets (the
    /// shaper's order), oldest first within a bucket.
    fn dispatch_queued(self: &Arc<Self>) {
        while self.waiting.load(Ordering::Acquire) > 0 {
            let Some(bucket) = self.shaper.pick(|b| {
                self.buckets
                    .get(b)
                    .and_then(Option::as_ref)
                    .is_some_and(|q| q.queued.current() > 0)
            }) else {
                return;
            };
            let Ok(backend) = self.pick(&[], None) else {
                self.shaper.put(bucket);
                return;
            };
            let queue = self.bucket(bucket);
            let waiter = {
                let mut waiters = queue.waiters.lock().expect("queue lock");
                loop {
                    match waiters.pop_front() {
                        Some(w) if w.claimed.swap(true, Ordering::AcqRel) => continue,
                        other => break other,
                    }
                }
            };
            let Some(waiter) = waiter else {
                backend.release();
                self.shaper.put(bucket);
                continue;
            };
            queue.queued.decr();
            self.queued.decr();
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            let grant = self.grant(Some(bucket), backend, Instant::now());
            if let Err(mut grant) = waiter.grant.send(grant) {
                // The waiter is gone; give the capacity back and keep going here.
                grant.redispatch = false;
            }
        }
    }

    /// Balances `req` over the cluster's backends.
    pub async fn dispatch(
        self: Arc<Self>,
        req: Request<Body>,
        how: Dispatch,
    ) -> Result<Response<Body>, ProxyError> {
        let arrived = Instant::now();
        if !self.is_enabled() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(self
                .unavailable(ErrorKind::NoBackend)
                .with_detail("the cluster is disabled"));
        }
        if let Some(pin) = &how.pin {
            return self.dispatch_pinned(req, pin, how.tag).await;
        }
        let bucket = how
            .bucket
            .as_deref()
            .and_then(|name| self.shaper.find(name))
            .unwrap_or(ROOT);
        let key = match (&self.settings.hash_key, self.scheduler.kind().uses_key()) {
            (Some(spec), true) => Some(spec.of(&req)),
            _ => None,
        };

        let (first, template) = if self.settings.max_retry_count > 0 {
            replay::prepare(req, self.settings.replay_body_limit).await?
        } else {
            (req, None)
        };
        let mut next = Some(first);
        let mut failed: Vec<Arc<Backend>> = Vec::new();
        let mut last: Option<ProxyError> = None;
        let mut attempts = 0u32;
        loop {
            // The first admission happens as the request arrives: no second clock read.
            let now = if attempts == 0 {
                arrived
            } else {
                Instant::now()
            };
            let mut grant = match self.admit(bucket, &failed, key, now).await {
                Ok(grant) => {
                    // The previous backend's failure is now really tried elsewhere.
                    if let Some(left) = failed.last().filter(|_| attempts > 0) {
                        left.stats().retried_elsewhere();
                    }
                    grant
                }
                // No other backend to try: the last backend's own failure says more than
                // "unavailable", unless it could not be reached at all.
                Err(err) => match last {
                    Some(last) if !is_unreachable(last.kind()) => return Err(last),
                    _ => return Err(err),
                },
            };
            attempts += 1;
            let req = match next.take() {
                Some(req) => req,
                None => template
                    .as_ref()
                    .expect("retries need a template")
                    .request(),
            };
            grant.arrived = arrived;
            let backend = grant.backend.clone();
            let result = send(&backend, req).await;
            match &result {
                Ok((response, _)) => backend.report(Ok(response.status())),
                // The client's broken body says nothing about the backend.
                Err(Failure::Failed(e)) if e.is_client_body() => {}
                Err(Failure::Unsent(e, _) | Failure::Failed(e)) => backend.report(Err(e.kind())),
            }
            let err = match result {
                Ok((response, answered)) => {
                    return Ok(self.finish(response, answered, grant, bucket, how.tag));
                }
                Err(Failure::Unsent(err, req)) => {
                    next = Some(*req);
                    err
                }
                Err(Failure::Failed(err)) => {
                    let again = !err.is_client_body()
                        && template.as_ref().is_some_and(|t| {
                            !err.was_sent()
                                || (t.is_idempotent() && err.kind() == ErrorKind::UpstreamBroken)
                        });
                    if !again {
                        return Err(err
                            .with_cluster(self.name.clone())
                            .with_backend(backend.name().clone()));
                    }
                    err
                }
            };
            drop(grant);
            tracing::warn!(
                cluster = %self.name,
                backend = %backend.name(),
                attempt = attempts,
                error = %err,
                "attempt failed"
            );
            last = Some(
                err.with_cluster(self.name.clone())
                    .with_backend(backend.name().clone()),
            );
            failed.push(backend);
            if attempts > self.settings.max_retry_count {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                let err = self.unavailable(ErrorKind::NoBackend);
                // Backends that could not even be reached are simply not available.
                let unreachable = last.as_ref().is_some_and(|e| is_unreachable(e.kind()));
                return Err(if unreachable {
                    err
                } else {
                    err.with_detail("the request failed on every attempt")
                });
            }
        }
    }

    /// x0's `director.pass`: straight to the named backend, ignoring its capacity, without a
    /// bucket, a queue or retries.
    async fn dispatch_pinned(
        self: Arc<Self>,
        req: Request<Body>,
        name: &str,
        tag: bool,
    ) -> Result<Response<Body>, ProxyError> {
        let Some(backend) = self.backend(name) else {
            return Err(self
                .unavailable(ErrorKind::NoBackend)
                .with_detail("the requested backend does not exist"));
        };
        if backend.try_acquire(true).is_err() {
            return Err(self
                .unavailable(ErrorKind::NoBackend)
                .with_backend(backend.name().clone())
                .with_detail("the requested backend is not available"));
        }
        let grant = self.grant(None, backend.clone(), Instant::now());
        match send(&backend, req).await {
            Ok((response, answered)) => Ok(self.finish(response, answered, grant, ROOT, tag)),
            Err(Failure::Unsent(err, _) | Failure::Failed(err)) => Err(err
                .with_cluster(self.name.clone())
                .with_backend(backend.name().clone())),
        }
    }

    fn finish(
        &self,
        mut response: Response<Body>,
        answered: Answered,
        mut grant: Grant,
        bucket: BucketId,
        tag: bool,
    ) -> Response<Body> {
        grant.answered = Some(answered);
        // A nested cluster's member answered: name it as `inner-cluster/backend` (the labels
        // its own stats carry) rather than the member standing for the cluster.
        let nested = (grant.backend.url().protocol == crate::addr::Protocol::Cluster)
            .then(|| response.extensions_mut().remove::<UpstreamInfo>())
            .flatten()
            .and_then(|inner| Some(format!("{}/{}", inner.cluster?, inner.backend?)))
            .and_then(|path| Some((HeaderValue::from_str(&path).ok()?, Arc::<str>::from(path))));
        if self.settings.response_headers {
            let name = nested
                .as_ref()
                .map_or(grant.backend.name_header(), |(header, _)| header);
            let headers = response.headers_mut();
            headers.insert(&X_DIRECTOR_BACKEND, name.clone());
            headers.insert(&X_DIRECTOR_BUCKET, self.bucket(bucket).name.clone());
        }
        // The X-Sendfile layer names the backend when it refuses a path.
        if tag || self.sendfile.is_some() {
            response.extensions_mut().insert(UpstreamInfo {
                cluster: Some(self.name.clone()),
                backend: Some(nested.map_or_else(|| grant.backend.name().clone(), |(_, n)| n)),
            });
        }
        let abort = self.settings.on_client_abort;
        // Buffered, the spool's task reads the grant body to its end at the backend's pace,
        // which frees the slot (and the transport's connection) without waiting for the client.
        let buffer = self
            .settings
            .buffer
            .filter(|_| !crate::buffer::must_stream(&response));
        let response = response.map(|body| GrantBody::wrap(body, grant, abort));
        match buffer {
            Some(limits) => response.map(|body| crate::buffer::spool(body, limits)),
            None => response,
        }
    }
}

/// A waiting request's claim on its queue entry; settles the counters if the request goes away.
struct Ticket<'a> {
    cluster: &'a Arc<Cluster>,
    bucket: BucketId,
    claimed: Arc<AtomicBool>,
}

impl Ticket<'_> {
    /// Claims the entry for the waiter (timeout); false when the dispatcher got there first.
    fn claim(&self) -> bool {
        if self.claimed.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.uncount();
        true
    }

    /// The waiter got its grant (or the channel closed): nothing left to settle.
    fn settled(self) {
        self.claimed.store(true, Ordering::Release);
        std::mem::forget(self);
    }

    fn uncount(&self) {
        self.cluster.bucket(self.bucket).queued.decr();
        self.cluster.queued.decr();
        self.cluster.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        // The client went away while queued.
        if !self.claimed.swap(true, Ordering::AcqRel) {
            self.uncount();
        }
    }
}

/// A request's admission: one token of its bucket and one slot of its backend. Dropping it
/// gives both back and passes the capacity to queued requests.
#[derive(Debug)]
pub struct Grant {
    cluster: Arc<Cluster>,
    bucket: Option<BucketId>,
    backend: Arc<Backend>,
    redispatch: bool,
    // The request's phases, for HAProxy's qtime/ctime/rtime/ttime (recorded at release, as
    // HAProxy does at a stream's end, and only for requests that were answered).
    admitted: Instant,
    arrived: Instant,
    queued: Duration,
    answered: Option<Answered>,
}

impl Grant {
    /// The backend the request was admitted to.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if let Some(answered) = self.answered {
            let total = self.arrived.elapsed();
            let times = &self.cluster.times;
            times.queue.add_duration(self.queued);
            if let Some(connect) = answered.connect {
                times.connect.add_duration(connect);
            }
            times.response.add_duration(answered.response);
            times.total.add_duration(total);
            self.backend.stats().finished(self.queued, total);
        }
        self.backend.release();
        if let Some(bucket) = self.bucket {
            self.cluster.shaper.put(bucket);
        }
        self.cluster.load.decr();
        if self.backend.is_draining() {
            self.cluster.remove_if_drained(&self.backend);
        }
        if self.redispatch {
            self.cluster.dispatch_queued();
        }
    }
}

/// The response body, holding the request's [`Grant`] until the last byte (or until dropped).
#[derive(Debug)]
struct GrantBody {
    inner: Body,
    grant: Option<Grant>,
    abort: crate::config::ClientAbort,
}

impl GrantBody {
    fn wrap(inner: Body, grant: Grant, abort: crate::config::ClientAbort) -> Body {
        let mut body = GrantBody {
            inner,
            grant: Some(grant),
            abort,
        };
        if body.inner.is_end_stream() {
            body.grant = None;
        }
        crate::body::boxed(body)
    }
}

impl Drop for GrantBody {
    fn drop(&mut self) {
        // Dropped before its end: the client stopped reading (HAProxy's `cli_abrt`).
        let Some(grant) = self.grant.take() else {
            return;
        };
        grant.backend.stats().client_abort();
        if self.abort != crate::config::ClientAbort::Ignore {
            return; // Dropping the body closes (or, for FastCGI, notifies) the backend.
        }
        // `ignore`: read the rest so the backend never notices, and keep its slot until then.
        // The transport's read timeout bounds each wait. Without a runtime (shutdown), close.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let mut body = std::mem::replace(&mut self.inner, crate::body::empty());
            runtime.spawn(async move {
                while let Some(Ok(_)) = http_body_util::BodyExt::frame(&mut body).await {}
                drop(grant);
            });
        }
    }
}

impl http_body::Body for GrantBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(frame) = &polled {
            if let Some(grant) = &self.grant {
                match frame {
                    Some(Ok(f)) => {
                        if let Some(data) = f.data_ref() {
                            grant.backend.stats().add_bytes_out(data.len() as u64);
                        }
                    }
                    // The client's body broke off under the response: the client's abort.
                    Some(Err(err)) if crate::body::client_body_error(&**err).is_some() => {
                        grant.backend.stats().client_abort();
                    }
                    Some(Err(_)) => grant.backend.stats().server_abort(),
                    None => {}
                }
            }
            if frame.is_none() || self.inner.is_end_stream() || matches!(frame, Some(Err(_))) {
                self.grant = None;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn is_unreachable(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::ConnectFailed | ErrorKind::ConnectTimeout)
}

/// How an attempt at one backend failed.
enum Failure {
    /// Nothing was sent; here is the request back.
    Unsent(ProxyError, Box<Request<Body>>),
    /// The request was taken (and maybe sent).
    Failed(ProxyError),
}

/// How long an answered attempt took.
#[derive(Clone, Copy, Debug)]
struct Answered {
    /// To get a connection; `None` where the transport has no separate connect step
    /// (FastCGI, nested clusters).
    connect: Option<Duration>,
    /// From then to the response head.
    response: Duration,
}

/// Sends one attempt to `backend` and counts it and its outcome in the backend's stats.
async fn send(
    backend: &Arc<Backend>,
    req: Request<Body>,
) -> Result<(Response<Body>, Answered), Failure> {
    let started = Instant::now();
    let stats = backend.stats();
    stats.session(started);
    let mut connected = None;
    let result = attempt(backend, req, &mut connected).await;
    let elapsed = started.elapsed();
    record(backend, &result, elapsed);
    let response = result?;
    // A pooled connection comes back at once, so reuse counts as about 0 ms, as in HAProxy.
    let connect = connected.map(|at: Instant| at.saturating_duration_since(started));
    let answered = Answered {
        connect,
        response: elapsed.saturating_sub(connect.unwrap_or_default()),
    };
    stats.answered(answered.connect, answered.response);
    Ok((response, answered))
}

async fn attempt(
    backend: &Arc<Backend>,
    req: Request<Body>,
    connected: &mut Option<Instant>,
) -> Result<Response<Body>, Failure> {
    match backend.transport() {
        BackendTransport::Http(transport) => match transport.connect().await {
            // Counted only once connected: an unsent request goes on to another backend.
            Ok(conn) => {
                *connected = Some(Instant::now());
                conn.send(count_request_body(backend, req))
                    .await
                    .map_err(Failure::Failed)
            }
            Err(err) => Err(Failure::Unsent(err, Box::new(req))),
        },
        BackendTransport::Custom(transport) => transport
            .send(count_request_body(backend, req))
            .await
            .map_err(Failure::Failed),
    }
}

/// Counts an attempt's outcome in the backend's stats (HAProxy's hrsp, econ, eresp columns).
fn record(backend: &Backend, result: &Result<Response<Body>, Failure>, elapsed: Duration) {
    let stats = backend.stats();
    match result {
        Ok(response) => stats.response(response.status().as_u16(), elapsed),
        Err(Failure::Unsent(..)) => stats.connect_error(),
        Err(Failure::Failed(err)) if is_unreachable(err.kind()) => stats.connect_error(),
        // HAProxy's `cli_abrt`, not `eresp`: the client's body broke off.
        Err(Failure::Failed(err)) if err.is_client_body() => stats.client_abort(),
        Err(Failure::Failed(_)) => stats.response_error(),
    }
}

/// Counts the request body bytes a backend is sent; bodiless requests (most) are left as they
/// are, so they cost nothing.
fn count_request_body(backend: &Arc<Backend>, req: Request<Body>) -> Request<Body> {
    if req.body().is_end_stream() {
        return req;
    }
    let backend = backend.clone();
    req.map(|inner| crate::body::boxed(CountedBody { inner, backend }))
}

/// A request body that adds what passes through to its backend's `bin`.
#[derive(Debug)]
struct CountedBody {
    inner: Body,
    backend: Arc<Backend>,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.backend.stats().add_bytes_in(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A cluster as a Tower service, for services in front of it (such as an object cache). A
/// request's [`Dispatch`] comes from its extensions (the router puts it there). When the
/// cluster allows X-Sendfile, its [`crate::sendfile`] layer is part of this service, so whatever
/// sits in front sees the files rather than the backends' pointers to them.
#[derive(Clone, Debug)]
pub struct ClusterService {
    cluster: Arc<Cluster>,
}

impl ClusterService {
    /// `cluster` as a service.
    pub fn new(cluster: Arc<Cluster>) -> Self {
        ClusterService { cluster }
    }
}

impl tower::Service<Request<Body>> for ClusterService {
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = crate::router::BoxFuture<Result<Response<Body>, ProxyError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        // Admission happens inside, per request.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let how = req
            .extensions_mut()
            .remove::<Dispatch>()
            .unwrap_or_default();
        match &self.cluster.sendfile {
            Some(policy) => {
                let head = crate::sendfile::RequestHead::new(req.method(), req.headers());
                let response = self.cluster.clone().dispatch(req, how);
                crate::sendfile::respond(policy.clone(), head, response)
            }
            None => Box::pin(self.cluster.clone().dispatch(req, how)),
        }
    }
}

/// A cluster used as one backend of another cluster (a nested director): requests are
/// balanced over its own members.
#[derive(Debug)]
pub struct Nested {
    cluster: Arc<Cluster>,
}

impl Nested {
    /// `cluster` as a transport.
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Nested { cluster }
    }
}

impl crate::transport::Transport for Nested {
    fn send(
        &self,
        req: Request<Body>,
    ) -> crate::router::BoxFuture<Result<Response<Body>, ProxyError>> {
        // Tagged so the outer cluster can name the backend that answered.
        let how = Dispatch {
            tag: true,
            ..Dispatch::default()
        };
        Box::pin(self.cluster.clone().dispatch(req, how))
    }
}

/// Sends `req` straight to one backend: no balancing, no queue, no retry (x0's road warrior).
pub async fn dispatch_direct(
    backend: Arc<Backend>,
    req: Request<Body>,
    tag: bool,
) -> Result<Response<Body>, ProxyError> {
    match send(&backend, req).await {
        Ok((mut response, _)) => {
            if tag {
                response.extensions_mut().insert(UpstreamInfo {
                    cluster: None,
                    backend: Some(backend.name().clone()),
                });
            }
            Ok(response)
        }
        Err(Failure::Unsent(err, _) | Failure::Failed(err)) => {
            Err(err.with_backend(backend.name().clone()))
        }
    }
}

#[cfg(test)]
mod tests;
