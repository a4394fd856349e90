//! Health-aware discovery: a `tower::discover::Discover` of the endpoints that may take traffic.
//!
//! [`HealthyEndpoints`] watches a set of endpoints, each a key, a service and its
//! [`HealthHandle`]. It yields `Change::Insert(key, service.clone())` when an endpoint becomes
//! online and enabled, and `Change::Remove(key)` when it stops being either; endpoints available
//! at the first poll are inserted then. The stream never ends. It plugs into
//! `tower::balance::p2c::Balance` (wrap it in `tower::load::PendingRequestsDiscover` or
//! `PeakEwmaDiscover` for a load metric):
//!
//! ```
//! use std::convert::Infallible;
//! use director_health::{HealthConfig, HealthHandle, HealthyEndpoints};
//! use tower::balance::p2c::Balance;
//! use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
//! use tower::{service_fn, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let a = HealthHandle::new("a", HealthConfig::default().thresholds(1, 1));
//! let b = HealthHandle::new("b", HealthConfig::default().thresholds(1, 1));
//! let echo = |name: &'static str| service_fn(move |_req: ()| async move { Ok::<_, Infallible>(name) });
//!
//! let endpoints = HealthyEndpoints::new()
//!     .with("a", echo("a"), a.clone())
//!     .with("b", echo("b"), b.clone());
//! let mut balance = Balance::new(PendingRequestsDiscover::new(endpoints, CompleteOnResponse::default()));
//!
//! // Only `b` passed a probe, so only `b` is in rotation.
//! b.record_probe(&Ok(()), std::time::Duration::ZERO);
//! for _ in 0..4 {
//!     assert_eq!(balance.ready().await?.call(()).await?, "b");
//! }
//! # let _ = a;
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;
use tower::discover::Change;

use crate::monitor::{EndpointStatus, HealthHandle};

type Watcher = Pin<Box<dyn Future<Output = (usize, watch::Receiver<EndpointStatus>)> + Send>>;

/// A `Discover` stream of the available endpoints of a set. Endpoints join the set with
/// [`push`](Self::push) and leave rotation by health or by being disabled; they never leave the set.
pub struct HealthyEndpoints<K, S> {
    entries: Vec<Entry<K, S>>,
    watchers: FuturesUnordered<Watcher>,
    ready: VecDeque<Change<K, S>>,
    started: bool,
}

struct Entry<K, S> {
    key: K,
    service: S,
    handle: HealthHandle,
    inserted: bool,
}

// === impl HealthyEndpoints ===

impl<K, S> HealthyEndpoints<K, S>
where
    K: Clone,
    S: Clone,
{
    /// An empty set.
    pub fn new() -> Self {
        HealthyEndpoints {
            entries: Vec::new(),
            watchers: FuturesUnordered::new(),
            ready: VecDeque::new(),
            started: false,
        }
    }

    /// Adds an endpoint. `service` is cloned on every insert.
    pub fn push(&mut self, key: K, service: S, handle: HealthHandle) {
        self.entries.push(Entry {
            key,
            service,
            handle,
            inserted: false,
        });
        if self.started {
            self.start(self.entries.len() - 1);
        }
    }

    /// Adds an endpoint, builder style.
    pub fn with(mut self, key: K, service: S, handle: HealthHandle) -> Self {
        self.push(key, service, handle);
        self
    }

    /// The number of endpoints watched.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no endpoint is watched.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queues the change, if any, that brings the consumer's view of entry `idx` up to date.
    fn reconcile(&mut self, idx: usize) {
        let entry = &mut self.entries[idx];
        let available = entry.handle.is_available();
        if available == entry.inserted {
            return;
        }
        entry.inserted = available;
        self.ready.push_back(if available {
            Change::Insert(entry.key.clone(), entry.service.clone())
        } else {
            Change::Remove(entry.key.clone())
        });
    }

    fn start(&mut self, idx: usize) {
        // Subscribe before reading, so a change in between is not missed.
        let rx = self.entries[idx].handle.subscribe();
        self.reconcile(idx);
        self.watch(idx, rx);
    }

    fn watch(&self, idx: usize, mut rx: watch::Receiver<EndpointStatus>) {
        self.watchers.push(Box::pin(async move {
            // The sender lives in the handle we also hold, so this only returns on a change.
            let _ = rx.changed().await;
            (idx, rx)
        }));
    }
}

// Nothing is ever pinned structurally: the stream moves keys and services freely.
impl<K, S> Unpin for HealthyEndpoints<K, S> {}

impl<K: Clone, S: Clone> Default for HealthyEndpoints<K, S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone, S: Clone> FromIterator<(K, S, HealthHandle)> for HealthyEndpoints<K, S> {
    fn from_iter<I: IntoIterator<Item = (K, S, HealthHandle)>>(iter: I) -> Self {
        let mut set = HealthyEndpoints::new();
        for (k, s, h) in iter {
            set.push(k, s, h);
        }
        set
    }
}

impl<K, S> Stream for HealthyEndpoints<K, S>
where
    K: Clone,
    S: Clone,
{
    type Item = Result<Change<K, S>, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if !this.started {
            this.started = true;
            for idx in 0..this.entries.len() {
                this.start(idx);
            }
        }
        loop {
            if let Some(change) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            match Pin::new(&mut this.watchers).poll_next(cx) {
                Poll::Ready(Some((idx, rx))) => {
                    this.reconcile(idx);
                    this.watch(idx, rx);
                }
                // No endpoints at all: nothing will ever change.
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<K: fmt::Debug, S> fmt::Debug for HealthyEndpoints<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthyEndpoints")
            .field(
                "endpoints",
                &self
                    .entries
                    .iter()
                    .map(|e| (&e.key, e.handle.status(), e.inserted))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
