//! Request coalescing: at most one upstream fetch per object (or variant) at a time.
//!
//! The first request to miss becomes the *leader* and holds a [`FlightGuard`]; later ones get
//! a [`Waiter`] and wait until the guard is dropped: when the leader's response has been
//! stored, when it turned out uncacheable, failed, or the client went away. Dropping is the only
//! wake-up, so a cancelled leader can never strand its waiters; before it, the leader may record
//! an [`Outcome`] (failed upstream, or a response for itself alone). Only misses touch this map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

const SHARDS: usize = 16;

/// Fetch id → the receiver new waiters clone.
type Shard = HashMap<u128, watch::Receiver<Outcome>>;

/// How a leader's fetch ended, as far as its waiters need to know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored, or not storable for anyone: look again, then go upstream if need be.
    #[default]
    Done,
    /// The upstream failed: serve a shadow copy rather than all retrying it.
    Failed,
    /// The response answered the leader alone (its cookie or Authorization): a waiter whose own
    /// response may be stored fetches again for the others.
    Private,
}

/// The fetches in flight.
#[derive(Debug)]
pub(crate) struct Flights {
    shards: Box<[Mutex<Shard>]>,
}

/// Held by the request that fetches; dropping it wakes the waiters.
#[derive(Debug)]
pub(crate) struct FlightGuard {
    flights: Arc<Flights>,
    id: u128,
    /// What the leader knows of its fetch's outcome so far.
    done: watch::Sender<Outcome>,
}

/// Held by a request waiting for the leader.
#[derive(Debug)]
pub(crate) struct Waiter(watch::Receiver<Outcome>);

/// The outcome of joining a flight.
#[derive(Debug)]
pub(crate) enum Join {
    Leader(FlightGuard),
    Follower(Waiter),
}

// === impl Flights ===

impl Flights {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    #[allow(clippy::cast_possible_truncation)] // the low bits pick the shard
    fn shard(&self, id: u128) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[id as usize % SHARDS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Becomes the leader for `id`, or a waiter if a fetch is already running.
    pub(crate) fn join(self: &Arc<Self>, id: u128) -> Join {
        let mut shard = self.shard(id);
        if let Some(rx) = shard.get(&id) {
            return Join::Follower(Waiter(rx.clone()));
        }
        let (tx, rx) = watch::channel(Outcome::Done);
        shard.insert(id, rx);
        Join::Leader(FlightGuard {
            flights: Arc::clone(self),
            id,
            done: tx,
        })
    }

    /// Becomes the leader for `id` only if nobody is fetching it.
    pub(crate) fn try_lead(self: &Arc<Self>, id: u128) -> Option<FlightGuard> {
        match self.join(id) {
            Join::Leader(g) => Some(g),
            Join::Follower(_) => None,
        }
    }

    /// Number of fetches in flight.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.len()))
            .sum()
    }
}

// === impl FlightGuard ===

impl FlightGuard {
    /// Tells the waiters that the upstream failed, so they need not all try it again.
    pub(crate) fn failed(&self) {
        self.done.send_replace(Outcome::Failed);
    }

    /// Tells the waiters that the response was for the leader alone and not stored.
    pub(crate) fn private(&self) {
        self.done.send_replace(Outcome::Private);
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        // Unregister first, so a woken waiter that misses again starts a new flight rather than
        // joining this finished one; the sender drops right after and wakes everyone.
        self.flights.shard(self.id).remove(&self.id);
    }
}

// === impl Waiter ===

impl Waiter {
    /// Resolves when the leader is done, with the outcome it reported.
    pub(crate) async fn done(mut self) -> Outcome {
        while self.0.changed().await.is_ok() {}
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn leader_then_followers_then_released() {
        let flights = Arc::new(Flights::new());
        let Join::Leader(guard) = flights.join(7) else {
            panic!("first is leader")
        };
        let Join::Follower(w1) = flights.join(7) else {
            panic!("second follows")
        };
        assert!(flights.try_lead(7).is_none());
        assert!(flights.try_lead(8).is_some(), "other ids are independent");
        assert_eq!(flights.len(), 1);
        let mut wait = tokio_test::task::spawn(w1.done());
        tokio_test::assert_pending!(wait.poll());
        drop(guard);
        assert!(wait.is_woken());
        assert_eq!(tokio_test::assert_ready!(wait.poll()), Outcome::Done);
        assert_eq!(flights.len(), 0);
        let Join::Leader(guard) = flights.join(7) else {
            panic!("finished flights are gone")
        };
        let Join::Follower(w2) = flights.join(7) else {
            panic!("second follows")
        };
        let mut wait = tokio_test::task::spawn(w2.done());
        tokio_test::assert_pending!(wait.poll());
        guard.failed();
        tokio_test::assert_pending!(wait.poll());
        drop(guard);
        assert_eq!(
            tokio_test::assert_ready!(wait.poll()),
            Outcome::Failed,
            "the failure is reported"
        );
        let Join::Leader(guard) = flights.join(7) else {
            panic!("finished flights are gone")
        };
        let Join::Follower(w3) = flights.join(7) else {
            panic!("second follows")
        };
        guard.private();
        drop(guard);
        assert_eq!(w3.done().await, Outcome::Private);
    }
}
