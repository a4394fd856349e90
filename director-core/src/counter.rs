//! A `{current, max, total}` counter, as x0 reports load and queue lengths.
//!
//! Plain atomics: incremented and decremented on the request path without a lock; `max` is a
//! high-water mark updated with `fetch_max`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// A live counter.
#[derive(Debug, Default)]
pub struct Counter {
    current: AtomicU64,
    max: AtomicU64,
    total: AtomicU64,
}

/// A counter's values at one moment (x0's JSON shape).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CounterSnapshot {
    /// In flight now.
    pub current: u64,
    /// The most ever in flight at once.
    pub max: u64,
    /// How many ever.
    pub total: u64,
}

impl Counter {
    /// One more in flight.
    pub fn incr(&self) {
        let now = self.current.fetch_add(1, Ordering::Relaxed) + 1;
        self.max.fetch_max(now, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// One fewer in flight.
    pub fn decr(&self) {
        self.current.fetch_sub(1, Ordering::Relaxed);
    }

    /// How many are in flight now.
    pub fn current(&self) -> u64 {
        self.current.load(Ordering::Relaxed)
    }

    /// The values now.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            current: self.current.load(Ordering::Relaxed),
            max: self.max.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_current_max_total() {
        let c = Counter::default();
        c.incr();
        c.incr();
        c.decr();
        c.incr();
        c.decr();
        assert_eq!(
            c.snapshot(),
            CounterSnapshot {
                current: 1,
                max: 2,
                total: 3
            }
        );
    }
}
