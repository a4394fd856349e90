//! Varnish's fallback director (`vmod_directors_fall_back.c`).
//!
//! Members are tried in list order and the first healthy one wins, so the first member gets its
//! traffic back as soon as it recovers. With `sticky`, the director remembers the current
//! member and keeps it while it stays healthy, even when an earlier member recovers; when the
//! current one fails, the search moves on through the list from there, wrapping to the start.
//! Stickiness is about not failing back (unlike x0's sticky offline, which requires a manual
//! re-enable).
//!
//! Varnish takes a write lock on every pick to update the current index; we keep it in an atomic.
//! Two concurrent picks may both move it; each stores a member that was healthy when it looked,
//! so the race only decides which of two healthy members becomes current.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Varnish's fallback director: the first healthy member in order; with `sticky`, keep the
/// current one while it stays healthy even when an earlier one comes back.
#[derive(Debug, Default)]
pub struct Fallback {
    sticky: bool,
    current: AtomicUsize,
}

// === impl Fallback ===

impl Fallback {
    /// A fallback director; `sticky` keeps the current member while it is healthy.
    pub fn new(sticky: bool) -> Self {
        Fallback {
            sticky,
            current: AtomicUsize::new(0),
        }
    }

    /// The candidates among `members`: the first healthy member (with `sticky`, the first
    /// healthy one from the current member on, wrapping), then the other healthy members in
    /// list order, for spill-over. Unhealthy members are left out; the result is empty when
    /// none is healthy. With `sticky`, the first candidate becomes the current member.
    pub fn order(&self, members: usize, healthy: impl Fn(usize) -> bool) -> Vec<usize> {
        let start = if self.sticky {
            // The list may have shrunk since the last pick.
            Some(self.current.load(Ordering::Relaxed)).filter(|&c| c < members)
        } else {
            None
        }
        .unwrap_or(0);
        let up: Vec<bool> = (0..members).map(healthy).collect();
        let Some(first) = (0..members).map(|d| (start + d) % members).find(|&i| up[i]) else {
            return Vec::new();
        };
        if self.sticky {
            self.current.store(first, Ordering::Relaxed);
        }
        let mut order = Vec::with_capacity(members);
        order.push(first);
        order.extend((0..members).filter(|&i| i != first && up[i]));
        order
    }
}
