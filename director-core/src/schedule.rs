//! Schedulers: which backend of a pool takes a request.
//!
//! A scheduler is a pure ordering of a pool's members: round-robin starts one past the last
//! backend chosen, chance walks the pool in config order (filling backends one after another),
//! least-load prefers the most free capacity. [`pick`] walks that order and admits the request at
//! the first backend that takes it; when none does, it says whether any was merely full
//! ([`Refusal::Overloaded`]: the request may queue) or all were unavailable
//! ([`Refusal::Unavailable`]: try the backup pool).

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Refusal};

/// The scheduling policy of a cluster, as named in the config and the API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum SchedulerKind {
    /// Round-robin: each request starts one past the backend the previous one got.
    #[default]
    #[serde(rename = "rr")]
    RoundRobin,
    /// The first backend, in config order, that takes the request.
    #[serde(rename = "chance")]
    Chance,
    /// The backend with the most free capacity (ties: config order).
    #[serde(rename = "least-load", alias = "leastload")]
    LeastLoad,
}

impl SchedulerKind {
    /// The name used in the config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerKind::RoundRobin => "rr",
            SchedulerKind::Chance => "chance",
            SchedulerKind::LeastLoad => "least-load",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => SchedulerKind::Chance,
            2 => SchedulerKind::LeastLoad,
            _ => SchedulerKind::RoundRobin,
        }
    }
}

/// `start, start+1, …` wrapping around `len`, each index once.
pub fn rotation(start: usize, len: usize) -> impl Iterator<Item = usize> {
    (0..len).map(move |i| (start + i) % len)
}

/// Indices ordered by free capacity, most first; ties keep their order.
pub fn by_free_capacity(free: &[u64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..free.len()).collect();
    order.sort_by(|&a, &b| free[b].cmp(&free[a]));
    order
}

/// A cluster's scheduler: its kind (changeable at runtime) and round-robin cursors.
#[derive(Debug, Default)]
pub struct Scheduler {
    kind: std::sync::atomic::AtomicU8,
    cursors: [AtomicUsize; 2],
}

impl Scheduler {
    /// A scheduler of `kind`.
    pub fn new(kind: SchedulerKind) -> Self {
        let s = Scheduler::default();
        s.set_kind(kind);
        s
    }

    /// The current policy.
    pub fn kind(&self) -> SchedulerKind {
        SchedulerKind::from_u8(self.kind.load(Ordering::Relaxed))
    }

    /// Changes the policy; requests already admitted are not affected.
    pub fn set_kind(&self, kind: SchedulerKind) {
        self.kind.store(kind as u8, Ordering::Relaxed);
    }

    /// Admits a request at one backend of `pool` (`pool_id` 0 = active, 1 = backup), skipping
    /// the indices `skip` rejects (backends this request already failed on).
    pub fn pick(
        &self,
        pool_id: usize,
        pool: &[Arc<Backend>],
        skip: impl Fn(&Backend) -> bool,
    ) -> Result<Arc<Backend>, Refusal> {
        let cursor = &self.cursors[pool_id.min(1)];
        let mut overloaded = false;
        let mut try_one = |i: usize| -> Option<Arc<Backend>> {
            let backend = &pool[i];
            if skip(backend) {
                return None;
            }
            match backend.try_acquire(false) {
                Ok(()) => Some(backend.clone()),
                Err(Refusal::Overloaded) => {
                    overloaded = true;
                    None
                }
                Err(Refusal::Unavailable) => None,
            }
        };
        let chosen = match self.kind() {
            SchedulerKind::RoundRobin => {
                let start = cursor.load(Ordering::Relaxed) % pool.len().max(1);
                rotation(start, pool.len()).find_map(|i| {
                    let b = try_one(i)?;
                    // x0's intent, fixed: the next request starts one past this one.
                    cursor.store(i + 1, Ordering::Relaxed);
                    Some(b)
                })
            }
            SchedulerKind::Chance => (0..pool.len()).find_map(&mut try_one),
            SchedulerKind::LeastLoad => {
                let free: Vec<u64> = pool
                    .iter()
                    .map(|b| match b.capacity() {
                        0 => u64::MAX,
                        c => u64::from(c.saturating_sub(b.in_flight())),
                    })
                    .collect();
                by_free_capacity(&free).into_iter().find_map(&mut try_one)
            }
        };
        match chosen {
            Some(b) => Ok(b),
            None if overloaded => Err(Refusal::Overloaded),
            None => Err(Refusal::Unavailable),
        }
    }
}

#[cfg(test)]
mod tests;
