//! A ketama-style consistent-hash ring.
//!
//! Each member gets `replicas * weight` points on a 64-bit circle, placed by hashing
//! `"{name}-{i}"` with [`hash_key`]. A key belongs to the member of the first point at or after
//! the key's hash, wrapping past the top. Because a member's points depend only on its own name
//! and weight, removing a member moves only the keys it owned (to the next member clockwise),
//! and adding it back restores the old mapping exactly. Varnish's shard director builds the
//! same kind of circle (SHA-256 of ident and replica number, 67 replicas by default).
//!
//! [`Ring::candidates`] walks on from the key's point and yields each distinct member once:
//! the owner, then "the next distinct backends clockwise", which is Varnish's list of
//! alternatives and fnlb's fallback order, different for each key.

use std::fmt::{self, Write as _};

use super::hash_key;

/// At most this many points per member, whatever `replicas * weight` says. The cap depends
/// only on the member itself, so it keeps the "only its own keys move" property (scaling all
/// members against their total would not).
const MAX_POINTS_PER_MEMBER: u64 = 1 << 16;

/// A consistent-hash ring (ketama-style): each member gets `replicas * weight` points placed by
/// hashing "name-i"; a key maps to the first point at or after hash(key), wrapping.
#[derive(Clone)]
pub struct Ring {
    /// `(point, member index)`, sorted by point (ties broken by member name, then index).
    points: Vec<(u64, usize)>,
    /// The number of members given to [`Ring::new`] (the range of member indices).
    members: usize,
    /// How many distinct members have at least one point.
    owners: usize,
}

// === impl Ring ===

impl Ring {
    /// A ring over `members`, `(name, weight)` each, with `replicas` points per unit of
    /// weight (capped at 65 536 points per member). Members are identified by index in the
    /// result; names place the points, so they should be unique and stable across rebuilds.
    /// Real weights get `replicas * weight` points rounded, at least 1 (Varnish's shard scales
    /// its replicas by a real weight too). A member with weight 0 (or negative, or NaN) gets no
    /// points and is never a candidate.
    pub fn new(members: &[(&str, f64)], replicas: u32) -> Self {
        let mut points = Vec::new();
        let mut owners = 0;
        let mut label = String::new();
        for (index, &(name, weight)) in members.iter().enumerate() {
            let count = if weight > 0.0 && replicas > 0 {
                // Saturating float-to-int cast, then the per-member cap.
                ((f64::from(replicas) * weight).round().max(1.0) as u64).min(MAX_POINTS_PER_MEMBER)
            } else {
                0
            };
            if count > 0 {
                owners += 1;
            }
            for i in 0..count {
                label.clear();
                // Writing into a String cannot fail.
                let _ = write!(label, "{name}-{i}");
                points.push((hash_key(label.as_bytes()), index));
            }
        }
        // Ties are broken by name so they do not depend on the member's position in the list.
        points.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| members[a.1].0.cmp(members[b.1].0))
                .then(a.1.cmp(&b.1))
        });
        Ring {
            points,
            members: members.len(),
            owners,
        }
    }

    /// Whether no member has a point (no members, all weights 0, or `replicas` 0).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The number of points on the ring.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Distinct members in ring order starting at the key's point: the owner first, then the
    /// next distinct member clockwise, and so on (every member with points exactly once).
    pub fn candidates(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|p| p.0 < key) % self.points.len().max(1);
        Candidates {
            ring: self,
            next: start,
            steps: 0,
            seen: vec![false; self.members],
            found: 0,
        }
    }
}

impl fmt::Debug for Ring {
    // The points are many and meaningless to a reader; show the sizes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("points", &self.points.len())
            .field("members", &self.members)
            .field("owners", &self.owners)
            .finish()
    }
}

/// The walk behind [`Ring::candidates`].
struct Candidates<'a> {
    ring: &'a Ring,
    next: usize,
    steps: usize,
    seen: Vec<bool>,
    found: usize,
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let points = &self.ring.points;
        // Stop as soon as every owner was yielded, or after one full turn.
        while self.found < self.ring.owners && self.steps < points.len() {
            let member = points[self.next].1;
            self.next = (self.next + 1) % points.len();
            self.steps += 1;
            if !self.seen[member] {
                self.seen[member] = true;
                self.found += 1;
                return Some(member);
            }
        }
        None
    }
}
