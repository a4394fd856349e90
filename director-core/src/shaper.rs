//! The bucket shaper: the classful (HTB-like) admission tree of a cluster.
//!
//! Every balanced request holds one *token* of a *bucket* while it runs (ARCHITECTURE.md, "A
//! request's way": pick bucket ─► take a bucket token ─► scheduler picks a backend). The shaper
//! is the pure, synchronous core of that step: it knows nothing of requests, queues or time. The
//! cluster service asks [`Shaper::try_get`] for a token (or [`Shaper::try_get_assured`] while
//! other requests wait), keeps its own FIFO per bucket when the answer is no, and calls
//! [`Shaper::pick`] whenever a token comes back with [`Shaper::put`] to learn which queue may be
//! served next.
//!
//! # Tree and tokens
//!
//! The buckets form a tree. The root is called `root`; its rate and ceil are both the shaper's
//! capacity, the sum of the capacities of the cluster's online and enabled backends
//! ([`Shaper::resize`] keeps it current). Every other bucket has two fractions of its parent:
//!
//! - `rate`, the **assured** share: `token_rate = floor(parent.token_rate × rate)`;
//! - `ceil`, the **upper bound**: `token_ceil = floor(parent.token_ceil × ceil)`.
//!
//! The rates of siblings add up to at most 1 and `rate ≤ ceil ≤ 1`. With the tree of the seed
//! config (capacity 10, `vip` 0.2/0.4, `main` 0.8/1.0) the token rates and ceils are vip 2/4 and
//! main 8/10.
//!
//! How tokens are shared depends on the [`ShaperMode`]: [`ShaperMode::Htb`] (the default)
//! shares like Linux HTB, [`ShaperMode::X0`] keeps x0's arithmetic.
//!
//! # `htb`: assured shares, borrowing from whatever is idle
//!
//! A request charged to bucket `b` (a leaf, or an inner bucket's own requests) has an
//! **own assured share** `A(b) = token_rate(b) − Σ token_rate(children of b)`: for a leaf its
//! token rate, for the root the capacity not assured to any child. These shares add up to the
//! capacity exactly (the sum telescopes to the root's token rate), so all buckets can hold their
//! assured shares at once. With vip 0.2 and main 0.8 the root's own share is 0; with vip 0.1 and
//! main 0.5 it is 4.
//!
//! A token for `b` is granted when
//!
//! 1. the tokens held by every bucket on the path from `b` to the root (each counting its
//!    descendants') stay within that bucket's token ceil, the root's being the capacity; and
//! 2. either `b` holds fewer tokens of its own than `A(b)` (**assured**), or the caller allows
//!    **borrowing**: then `b` takes any token nobody holds, whichever sibling or cousin it was
//!    assured to, up to its ceil.
//!
//! Tokens are not taken back from a running request, so a bucket that wakes up while others
//! borrow its share gets it as their requests end: [`Shaper::pick`] hands every freed token first
//! to a waiting bucket below its own assured share (the one furthest below it, relative to its
//! share; ties in turn), and only then to borrowers, visiting the tree as x0 did (children
//! round-robin, children before their parent's own queue). The cluster takes tokens for new
//! requests with [`Shaper::try_get_assured`] while any request waits, so a new request borrows
//! only when nobody waits and the queues keep this order. Requests of the root (those no bucket
//! claims) are served the same way: from the root's own share, and by borrowing whatever the
//! children leave idle, so an idle capacity is always used.
//!
//! # `x0`: borrowing only from unreserved headroom
//!
//! A bucket's *commitment* is what it has handed out (its own tokens plus tokens its children
//! borrowed from it) plus what it keeps reserved for its children (the sum of their token
//! rates). A bucket grants a token
//!
//! 1. from its **assured pool** if its commitment stays within its token rate, or else
//! 2. by **borrowing** one token from its parent (recursively, the same two steps), if its
//!    commitment stays within its token ceil.
//!
//! [`Shaper::put`] gives the token back; a bucket that no longer needs a borrowed token returns it
//! to its parent at once.
//!
//! Borrowing draws only on the parent's **unreserved** headroom: the parent's rate minus its
//! children's rates minus what its children borrowed already. A bucket never borrows a sibling's
//! idle assured tokens, as Linux HTB would. If the rates add up to 1, no bucket can borrow and
//! requests charged to the root get no token at all (apart from the odd token left over by the
//! floor rounding). With vip 0.1/0.3 and main 0.5/0.7 on 10 tokens, 4 tokens are unreserved: vip
//! uses its 1 assured token plus up to 2 borrowed ones, and root traffic uses what is left of the
//! 4. [`Shaper::try_get_assured`] is [`Shaper::try_get`] in this mode.
//!
//! The arithmetic of the rates, the floor rounding, the borrowing rule and the dequeue order are
//! x0's (`src/xzero/TokenShaper-inl.h`), and x0's unit tests are ported in `shaper/tests.rs`.
//! The bookkeeping of the assured pool is not copied verbatim, because x0's test
//! `max(R, Rc + Oc) + n ≤ AR` takes the *maximum* of a bucket's load and its children's
//! reservation where it needs their *sum*: on x0's own tree, 10 root requests get 10 tokens, after
//! which vip and main still get their assured 6, 16 tokens on a capacity of 10; likewise main's
//! own requests could take 7 tokens and upload 2 more, beyond main's ceil. Here the reservation
//! is added to the load, which gives the same answers as x0 whenever only leaf buckets take
//! tokens (every case in x0's tests) and never exceeds the capacity or a ceil.
//!
//! # Changes to x0 in both modes
//!
//! All from the recommendations of the spec: [`Shaper::set_rate`] checks the sum of the sibling
//! rates; [`Shaper::destroy`] refuses a bucket that still holds tokens ([`ShaperError::Busy`]);
//! [`Shaper::find`] also finds the root by its name `root`; the floor of `tokens × fraction`
//! forgives binary rounding (`100 × 0.29` gives 29 tokens, not 28).
//!
//! # Resizing
//!
//! [`Shaper::resize`] recomputes every token rate and ceil. Tokens already held stay held, so a
//! bucket may hold more than its new ceil (and the tree more than the new capacity) until they
//! are put back; until then no bucket below an over-committed one gets a new token, so new tokens
//! always respect the new limits.
//!
//! # Concurrency
//!
//! Structure changes ([`create`](Shaper::create), [`set_rate`](Shaper::set_rate),
//! [`destroy`](Shaper::destroy)) take `&mut self`; share the shaper behind whatever publishes a
//! new snapshot. The hot path ([`try_get`](Shaper::try_get), [`put`](Shaper::put),
//! [`pick`](Shaper::pick)) and [`resize`](Shaper::resize) take `&self`. The hot path is lock
//! free. In `htb` mode a grant raises each count on the path with a compare-and-swap that checks
//! the limit, and undoes the ones it raised if a later one refuses, so no count ever passes its
//! limit (a racing request may see a count that is about to be undone and wait for the next
//! token). In `x0` mode each bucket keeps its handed-out and borrowed counts in one atomic word,
//! and takes a parent's token *before* it records the borrow (returning it if the race was
//! lost), so a parent never under-counts. `resize` serialises concurrent resizes with a mutex the
//! hot path never touches.
//!
//! # Example
//!
//! ```
//! use director_core::shaper::{ROOT, Shaper};
//!
//! let mut shaper = Shaper::new(10);
//! let vip = shaper.create("vip", ROOT, 0.2, 0.4).unwrap();
//! let main = shaper.create("main", ROOT, 0.8, 1.0).unwrap();
//!
//! // vip alone is assured 2 tokens and borrows main's idle ones up to its ceil of 4.
//! assert!((0..4).all(|_| shaper.try_get(vip)));
//! assert!(!shaper.try_get(vip));
//! // main gets the other 6 at once; its other requests wait (in the cluster's queue).
//! assert!((0..6).all(|_| shaper.try_get(main)));
//! assert!(!shaper.try_get(main));
//!
//! // A vip request ends: main is below its assured 8, so its queue goes first, before vip's.
//! shaper.put(vip);
//! assert_eq!(shaper.pick(|_| true), Some(main));
//! assert_eq!(shaper.stats(main).load.current, 7);
//! ```

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

#[cfg(test)]
mod tests;

/// Index of a bucket in a shaper; the root is [`ROOT`].
///
/// Ids stay valid until their bucket is destroyed and are never reused by the same shaper.
pub type BucketId = usize;

/// The root bucket, present in every shaper.
pub const ROOT: BucketId = 0;

/// Tolerance for the sum of sibling rates, so that 0.1 + 0.5 + 0.4 counts as 1.
const SUM_TOLERANCE: f64 = 1e-9;

/// Relative tolerance under which `tokens × fraction` counts as a whole number before flooring.
const FLOOR_TOLERANCE: f64 = 1e-12;

/// How a shaper shares its capacity between buckets (the cluster key `shaper`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShaperMode {
    /// Linux HTB's sharing: rates assured, anything idle borrowed up to the ceil, the root
    /// always served (see the [module docs](self)).
    #[default]
    Htb,
    /// x0's arithmetic: borrowing only from a parent's unreserved headroom.
    X0,
}

impl ShaperMode {
    /// The name in the config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ShaperMode::Htb => "htb",
            ShaperMode::X0 => "x0",
        }
    }

    /// Whether it is the default, [`ShaperMode::Htb`] (for skipping it when serialising).
    pub fn is_htb(&self) -> bool {
        *self == ShaperMode::Htb
    }
}

/// Why a change to the bucket tree was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShaperError {
    /// The rate is negative, above the ceil, or makes the sibling rates add up to more than 1.
    #[error("Rate limit overflow.")]
    RateLimitOverflow,
    /// The ceil is below the rate or above 1.
    #[error("Ceil limit overflow.")]
    CeilLimitOverflow,
    /// A bucket of that name exists already somewhere in the tree.
    #[error("Name conflict.")]
    NameConflict,
    /// The bucket is the root (which cannot be changed or destroyed) or is not a live bucket.
    #[error("Invalid child node.")]
    InvalidChildNode,
    /// The bucket (or one of its descendants) still holds tokens.
    #[error("Bucket busy.")]
    Busy,
}

/// A bucket's configuration and load at one moment (x0's bucket JSON, without the queue).
#[derive(Debug, Clone, PartialEq)]
pub struct BucketStats {
    /// The bucket's name, unique in the tree.
    pub name: String,
    /// Assured fraction of the parent (1.0 for the root).
    pub rate: f64,
    /// Ceiling fraction of the parent (1.0 for the root).
    pub ceil: f64,
    /// Assured tokens (the capacity for the root).
    pub token_rate: u32,
    /// Upper bound of tokens (the capacity for the root).
    pub token_ceil: u32,
    /// Tokens held by the bucket and its descendants (x0's `actualRate`).
    pub load: Counter,
}

/// Current, highest and total count of tokens (x0's `{current, max, total}` counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter {
    /// Held now.
    pub current: u64,
    /// The most ever held at once.
    pub max: u64,
    /// How many were ever taken.
    pub total: u64,
}

/// A bucket tree handing out tokens; see the [module docs](self) for the model.
#[derive(Debug)]
pub struct Shaper {
    /// Indexed by [`BucketId`]; a destroyed bucket leaves `None` so that ids stay stable.
    nodes: Vec<Option<Node>>,
    /// Serialises [`Shaper::resize`] calls; never taken by the hot path.
    resize_lock: Mutex<()>,
    mode: ShaperMode,
    /// `htb`: turns among waiting buckets equally far below their assured shares.
    turn: AtomicUsize,
}

#[derive(Debug)]
struct Node {
    name: String,
    parent: Option<BucketId>,
    children: Vec<BucketId>,
    rate: f64,
    ceil: f64,
    token_rate: AtomicU32,
    token_ceil: AtomicU32,
    /// Sum of the children's token rates: kept free for them.
    reserved: AtomicU64,
    /// [`Grants`], packed, so that both change in one compare-and-swap.
    grants: AtomicU64,
    load: LoadCounter,
    /// `htb`: tokens held by the bucket's own requests (not its descendants').
    own: AtomicU32,
    /// Round-robin position among the children for [`Shaper::pick`].
    pick_offset: AtomicUsize,
}

/// What a bucket has handed out: its own tokens plus tokens lent to its children (`used`), and
/// how many of those it borrowed from its parent (`borrowed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Grants {
    used: u32,
    borrowed: u32,
}

#[derive(Debug, Default)]
struct LoadCounter {
    current: AtomicU64,
    max: AtomicU64,
    total: AtomicU64,
}

// === impl Shaper ===

impl Shaper {
    /// A shaper of `capacity` tokens with only the root bucket (named `root`, rate = ceil = 1.0),
    /// sharing as [`ShaperMode::Htb`].
    pub fn new(capacity: u32) -> Self {
        Self::with_mode(capacity, ShaperMode::default())
    }

    /// A shaper of `capacity` tokens with only the root bucket, sharing as `mode`.
    pub fn with_mode(capacity: u32, mode: ShaperMode) -> Self {
        Shaper {
            nodes: vec![Some(Node::new("root", None, 1.0, 1.0, capacity, capacity))],
            resize_lock: Mutex::new(()),
            mode,
            turn: AtomicUsize::new(0),
        }
    }

    /// How the shaper shares its capacity.
    pub fn mode(&self) -> ShaperMode {
        self.mode
    }

    /// Adds a bucket `name` under `parent` with the fractions `rate` and `ceil` of the parent.
    ///
    /// Errors, checked in this order as x0 does: [`ShaperError::InvalidChildNode`] if `parent` is
    /// not a live bucket; [`ShaperError::RateLimitOverflow`] unless `0 ≤ rate` and the sibling
    /// rates including `rate` add up to at most 1; [`ShaperError::CeilLimitOverflow`] unless
    /// `rate ≤ ceil ≤ 1`; [`ShaperError::NameConflict`] if the name is taken anywhere in the tree.
    pub fn create(
        &mut self,
        name: &str,
        parent: BucketId,
        rate: f64,
        ceil: f64,
    ) -> Result<BucketId, ShaperError> {
        let parent_node = self.live(parent).ok_or(ShaperError::InvalidChildNode)?;
        let siblings = self.child_rate_sum(parent, None);
        check_fractions(rate, ceil, siblings)?;
        if self.find(name).is_some() {
            return Err(ShaperError::NameConflict);
        }
        let token_rate = scale(parent_node.token_rate.load(Ordering::Acquire), rate);
        let token_ceil = scale(parent_node.token_ceil.load(Ordering::Acquire), ceil);
        let id = self.nodes.len();
        self.nodes.push(Some(Node::new(
            name,
            Some(parent),
            rate,
            ceil,
            token_rate,
            token_ceil,
        )));
        self.live_mut(parent)
            .ok_or(ShaperError::InvalidChildNode)?
            .children
            .push(id);
        self.rebalance();
        Ok(id)
    }

    /// Sets both fractions of a bucket and recomputes the token rates and ceils of its subtree.
    ///
    /// Errors: [`ShaperError::InvalidChildNode`] for the root or a bucket that is not live;
    /// [`ShaperError::RateLimitOverflow`] unless `0 ≤ rate ≤ ceil` and the sibling rates including
    /// `rate` add up to at most 1 (x0 forgets this last check); [`ShaperError::CeilLimitOverflow`]
    /// unless `ceil ≤ 1`. Tokens held stay held (see the module docs on resizing).
    pub fn set_rate(&mut self, bucket: BucketId, rate: f64, ceil: f64) -> Result<(), ShaperError> {
        let parent = self
            .live(bucket)
            .and_then(|node| node.parent)
            .ok_or(ShaperError::InvalidChildNode)?;
        let siblings = self.child_rate_sum(parent, Some(bucket));
        if rate.is_nan() || rate < 0.0 || rate > ceil || rate + siblings > 1.0 + SUM_TOLERANCE {
            return Err(ShaperError::RateLimitOverflow);
        }
        if ceil.is_nan() || ceil > 1.0 {
            return Err(ShaperError::CeilLimitOverflow);
        }
        let node = self.live_mut(bucket).ok_or(ShaperError::InvalidChildNode)?;
        node.rate = rate;
        node.ceil = ceil;
        self.rebalance();
        Ok(())
    }

    /// Removes a bucket together with its descendants.
    ///
    /// Errors: [`ShaperError::InvalidChildNode`] for the root or a bucket that is not live;
    /// [`ShaperError::Busy`] while the bucket or a descendant holds tokens. Requests queued on
    /// the bucket are the caller's to move (x0 does not handle them; the spec suggests the parent).
    pub fn destroy(&mut self, bucket: BucketId) -> Result<(), ShaperError> {
        let node = self.live(bucket).ok_or(ShaperError::InvalidChildNode)?;
        let parent = node.parent.ok_or(ShaperError::InvalidChildNode)?;
        if node.load.current.load(Ordering::Acquire) > 0 {
            return Err(ShaperError::Busy);
        }
        // An idle bucket still borrows if its children reserve more than its rate (rounding).
        let borrowed = Grants::unpack(node.grants.load(Ordering::Acquire)).borrowed;
        let doomed = self.preorder_from(bucket);
        if let Some(parent_node) = self.live_mut(parent) {
            parent_node.children.retain(|&child| child != bucket);
        }
        for id in doomed {
            self.nodes[id] = None;
        }
        if borrowed > 0 {
            self.release(parent, borrowed);
        }
        self.rebalance();
        Ok(())
    }

    /// The bucket called `name`, anywhere in the tree (`"root"` is the root).
    pub fn find(&self, name: &str) -> Option<BucketId> {
        self.nodes
            .iter()
            .position(|node| node.as_ref().is_some_and(|node| node.name == name))
    }

    /// The bucket's name.
    ///
    /// # Panics
    ///
    /// If `bucket` is not a live bucket of this shaper (as do the other accessors and the hot
    /// path: a stale id is a bug of the caller).
    pub fn name(&self, bucket: BucketId) -> &str {
        &self.node(bucket).name
    }

    /// The bucket's parent; `None` for the root.
    pub fn parent(&self, bucket: BucketId) -> Option<BucketId> {
        self.node(bucket).parent
    }

    /// The bucket's children, in creation order.
    pub fn children(&self, bucket: BucketId) -> &[BucketId] {
        &self.node(bucket).children
    }

    /// Every live bucket, root first, then depth first in creation order (x0's JSON order).
    pub fn buckets(&self) -> impl Iterator<Item = BucketId> + '_ {
        self.preorder_from(ROOT).into_iter()
    }

    /// The number of tokens of the root bucket.
    pub fn capacity(&self) -> u32 {
        self.node(ROOT).token_rate.load(Ordering::Acquire)
    }

    /// Sets the capacity and recomputes every bucket's token rate and ceil (floor rounding).
    ///
    /// Called at runtime when backends come and go. Tokens already held stay held; new tokens
    /// respect the new limits (see the module docs).
    pub fn resize(&self, capacity: u32) {
        let _serial = self
            .resize_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let root = self.node(ROOT);
        root.token_rate.store(capacity, Ordering::Release);
        root.token_ceil.store(capacity, Ordering::Release);
        self.recompute_and_resync();
    }

    /// Takes one token for `bucket`; `false` if the bucket can neither use an assured token nor
    /// borrow one now. A token taken must be given back with [`Shaper::put`] on the same bucket.
    pub fn try_get(&self, bucket: BucketId) -> bool {
        match self.mode {
            ShaperMode::Htb => self.htb_get(bucket, true),
            ShaperMode::X0 => self.x0_get(bucket),
        }
    }

    /// Takes one token for `bucket` only within its own assured share (`htb`; see the module
    /// docs): what a new request may take while others wait, so that borrowing follows the order
    /// of [`Shaper::pick`]. In `x0` mode the same as [`Shaper::try_get`].
    pub fn try_get_assured(&self, bucket: BucketId) -> bool {
        match self.mode {
            ShaperMode::Htb => self.htb_get(bucket, false),
            ShaperMode::X0 => self.x0_get(bucket),
        }
    }

    fn x0_get(&self, bucket: BucketId) -> bool {
        if self.ancestor_over_committed(bucket) || !self.acquire(bucket) {
            return false;
        }
        let mut id = Some(bucket);
        while let Some(current) = id {
            let node = self.node(current);
            node.load.increment();
            id = node.parent;
        }
        true
    }

    /// Gives back one token taken for `bucket` by [`Shaper::try_get`] or [`Shaper::pick`].
    ///
    /// Putting a token that was not taken is a bug of the caller: it panics in debug builds and
    /// is ignored otherwise.
    pub fn put(&self, bucket: BucketId) {
        if self.mode == ShaperMode::Htb {
            return self.htb_put(bucket);
        }
        // The load goes down first so that it never shows more than the tokens really granted.
        let mut id = Some(bucket);
        while let Some(current) = id {
            let node = self.node(current);
            node.load.decrement();
            id = node.parent;
        }
        let released = self.release(bucket, 1);
        debug_assert!(released, "put() on bucket {bucket} which holds no token");
    }

    /// The bucket whose queue is served next, with a token already taken for it.
    ///
    /// `htb`: first the waiting buckets below their own assured share, the furthest below it
    /// (relative to the share) first, ties in turn; then the borrowers in x0's order (below).
    ///
    /// x0's dequeue order: starting at the root, visit the children round-robin (each bucket
    /// keeps an offset that moves backwards by one, wrapping, before each child is tried, and
    /// persists between calls) and recursively, so children come before their parent's own queue.
    /// The first bucket for which `waiting` says yes and which gets a token is returned; the
    /// caller pops its queue's front. `None` if nothing can be served now.
    pub fn pick(&self, waiting: impl Fn(BucketId) -> bool) -> Option<BucketId> {
        if self.mode == ShaperMode::Htb
            && let Some(found) = self.pick_assured(&waiting)
        {
            return Some(found);
        }
        self.pick_from(ROOT, &waiting)
    }

    /// The bucket's configuration and load now.
    pub fn stats(&self, bucket: BucketId) -> BucketStats {
        let node = self.node(bucket);
        BucketStats {
            name: node.name.clone(),
            rate: node.rate,
            ceil: node.ceil,
            token_rate: node.token_rate.load(Ordering::Acquire),
            token_ceil: node.token_ceil.load(Ordering::Acquire),
            load: node.load.snapshot(),
        }
    }

    fn live(&self, id: BucketId) -> Option<&Node> {
        self.nodes.get(id).and_then(Option::as_ref)
    }

    fn live_mut(&mut self, id: BucketId) -> Option<&mut Node> {
        self.nodes.get_mut(id).and_then(Option::as_mut)
    }

    fn node(&self, id: BucketId) -> &Node {
        match self.live(id) {
            Some(node) => node,
            None => panic!("bucket {id} is not a live bucket of this shaper"),
        }
    }

    fn child_rate_sum(&self, parent: BucketId, except: Option<BucketId>) -> f64 {
        self.node(parent)
            .children
            .iter()
            .filter(|&&child| Some(child) != except)
            .map(|&child| self.node(child).rate)
            .sum()
    }

    fn preorder_from(&self, start: BucketId) -> Vec<BucketId> {
        let mut order = Vec::new();
        let mut stack = vec![start];
        while let Some(id) = stack.pop() {
            order.push(id);
            stack.extend(self.node(id).children.iter().rev());
        }
        order
    }

    /// After a structure change: recompute the tokens and settle the borrowed counts.
    fn rebalance(&self) {
        let _serial = self
            .resize_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.recompute_and_resync();
    }

    fn recompute_and_resync(&self) {
        let order = self.preorder_from(ROOT);
        // Parents before children: a child's tokens derive from its parent's.
        for &id in &order {
            let node = self.node(id);
            if let Some(parent) = node.parent {
                let parent = self.node(parent);
                let rate = scale(parent.token_rate.load(Ordering::Acquire), node.rate);
                let ceil = scale(parent.token_ceil.load(Ordering::Acquire), node.ceil);
                node.token_rate.store(rate, Ordering::Release);
                node.token_ceil.store(ceil, Ordering::Release);
            }
        }
        for &id in &order {
            let node = self.node(id);
            let reserved: u64 = node
                .children
                .iter()
                .map(|&child| u64::from(self.node(child).token_rate.load(Ordering::Acquire)))
                .sum();
            node.reserved.store(reserved, Ordering::Release);
        }
        if self.mode == ShaperMode::Htb {
            // Nothing is borrowed from a parent's count in this mode: nothing to settle.
            return;
        }
        // Children before parents: settling a child may charge its parent.
        for &id in order.iter().rev() {
            self.resync(id);
        }
    }

    /// Makes a bucket's borrowed count match what its rate no longer covers, charging the parent
    /// for a shortfall (even beyond its limits: those tokens are held already) or giving back a
    /// surplus.
    fn resync(&self, id: BucketId) {
        let node = self.node(id);
        let Some(parent) = node.parent else { return };
        loop {
            let packed = node.grants.load(Ordering::Acquire);
            let grants = Grants::unpack(packed);
            let needed = node.needed_borrow(grants.used);
            let settled = Grants {
                borrowed: needed,
                ..grants
            };
            if grants.borrowed > needed {
                if node.swap_grants(packed, settled) {
                    self.release(parent, grants.borrowed - needed);
                    return;
                }
            } else if grants.borrowed < needed {
                let shortfall = needed - grants.borrowed;
                self.charge(parent, shortfall);
                if node.swap_grants(packed, settled) {
                    return;
                }
                self.release(parent, shortfall);
            } else {
                return;
            }
        }
    }

    /// Adds to a bucket's handed-out count without any check (see [`Shaper::resync`]).
    fn charge(&self, id: BucketId, tokens: u32) {
        let node = self.node(id);
        let _ = node
            .grants
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |packed| {
                let grants = Grants::unpack(packed);
                Some(
                    Grants {
                        used: grants.used.saturating_add(tokens),
                        ..grants
                    }
                    .pack(),
                )
            });
    }

    /// True if an ancestor of `bucket` has more committed than its ceil, which happens only
    /// after a shrink while tokens are held.
    fn ancestor_over_committed(&self, bucket: BucketId) -> bool {
        let mut id = self.node(bucket).parent;
        while let Some(current) = id {
            let node = self.node(current);
            let grants = Grants::unpack(node.grants.load(Ordering::Acquire));
            if node.commitment(grants.used) > u64::from(node.token_ceil.load(Ordering::Acquire)) {
                return true;
            }
            id = node.parent;
        }
        false
    }

    /// Hands out one token of `id` (for itself or for a borrowing child).
    fn acquire(&self, id: BucketId) -> bool {
        let node = self.node(id);
        // A token taken from the parent but not yet recorded here.
        let mut spare = false;
        loop {
            let packed = node.grants.load(Ordering::Acquire);
            let grants = Grants::unpack(packed);
            let (Some(used), Some(borrowed)) =
                (grants.used.checked_add(1), grants.borrowed.checked_add(1))
            else {
                // Cannot happen below a u32 capacity; never keep a spare token, though.
                if let (true, Some(parent)) = (spare, node.parent) {
                    self.release(parent, 1);
                }
                return false;
            };
            let wanted = node.commitment(grants.used) + 1;
            let rate = u64::from(node.token_rate.load(Ordering::Acquire));
            let ceil = u64::from(node.token_ceil.load(Ordering::Acquire));

            // Assured pool (or a borrowed token the bucket holds beyond its need).
            if wanted <= rate + u64::from(grants.borrowed) {
                let next = Grants { used, ..grants };
                if node.swap_grants(packed, next) {
                    if let (true, Some(parent)) = (spare, node.parent) {
                        self.release(parent, 1);
                    }
                    return true;
                }
                continue;
            }

            // Borrowing, up to the ceil.
            let Some(parent) = node.parent else {
                return false;
            };
            if wanted > ceil {
                if spare {
                    self.release(parent, 1);
                }
                return false;
            }
            if !spare {
                if !self.acquire(parent) {
                    return false;
                }
                spare = true;
                // The state may have moved while the parent was asked: look again.
                continue;
            }
            let next = Grants { used, borrowed };
            if node.swap_grants(packed, next) {
                return true;
            }
        }
    }

    /// Takes back `tokens` handed out by `id` and returns to the parent what `id` no longer needs
    /// to borrow. `false` (and no change) if `id` has fewer than `tokens` handed out.
    fn release(&self, id: BucketId, tokens: u32) -> bool {
        let node = self.node(id);
        loop {
            let packed = node.grants.load(Ordering::Acquire);
            let grants = Grants::unpack(packed);
            let Some(used) = grants.used.checked_sub(tokens) else {
                return false;
            };
            let borrowed = grants.borrowed.min(node.needed_borrow(used));
            if node.swap_grants(packed, Grants { used, borrowed }) {
                let returned = grants.borrowed - borrowed;
                if let (true, Some(parent)) = (returned > 0, node.parent) {
                    self.release(parent, returned);
                }
                return true;
            }
        }
    }

    /// `htb`: a token for `bucket` if every bucket on its path stays within its ceil and, unless
    /// `borrow`, the bucket's own requests stay within its own assured share.
    fn htb_get(&self, bucket: BucketId, borrow: bool) -> bool {
        let node = self.node(bucket);
        let assured = node.own_assured();
        let own = node
            .own
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |own| {
                (borrow || own < assured).then(|| own.saturating_add(1))
            });
        if own.is_err() {
            return false;
        }
        let mut id = Some(bucket);
        while let Some(current) = id {
            let at = self.node(current);
            let ceil = u64::from(at.token_ceil.load(Ordering::Acquire));
            let raised =
                at.load
                    .current
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                        (held < ceil).then_some(held + 1)
                    });
            if raised.is_err() {
                // Undo what was raised below `current`, and the own count.
                let mut undo = Some(bucket);
                while let Some(below) = undo.filter(|&below| below != current) {
                    let at = self.node(below);
                    at.load.decrement();
                    undo = at.parent;
                }
                node.own.fetch_sub(1, Ordering::AcqRel);
                return false;
            }
            id = at.parent;
        }
        let mut id = Some(bucket);
        while let Some(current) = id {
            let at = self.node(current);
            at.load.granted();
            id = at.parent;
        }
        true
    }

    fn htb_put(&self, bucket: BucketId) {
        let node = self.node(bucket);
        let own = node
            .own
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |own| {
                own.checked_sub(1)
            });
        debug_assert!(own.is_ok(), "put() on bucket {bucket} which holds no token");
        if own.is_err() {
            return;
        }
        let mut id = Some(bucket);
        while let Some(current) = id {
            let at = self.node(current);
            at.load.decrement();
            id = at.parent;
        }
    }

    /// `htb`: a token for the waiting bucket furthest below its own assured share, if any can
    /// take one.
    fn pick_assured<F: Fn(BucketId) -> bool>(&self, waiting: &F) -> Option<BucketId> {
        // (bucket, own tokens, own assured share); only when requests wait, so a Vec is fine.
        let mut below: Vec<(BucketId, u64, u64)> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(id, node)| {
                let node = node.as_ref()?;
                let own = u64::from(node.own.load(Ordering::Acquire));
                let assured = u64::from(node.own_assured());
                (own < assured && waiting(id)).then_some((id, own, assured))
            })
            .collect();
        if below.is_empty() {
            return None;
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed) % below.len();
        below.rotate_left(turn);
        // own/assured ascending, compared without division; the sort is stable, so equal
        // ratios keep the rotated order.
        below.sort_by(|a, b| (a.1 * b.2).cmp(&(b.1 * a.2)));
        below
            .into_iter()
            .map(|(id, _, _)| id)
            .find(|&id| self.htb_get(id, false))
    }

    fn pick_from<F: Fn(BucketId) -> bool>(&self, id: BucketId, waiting: &F) -> Option<BucketId> {
        let node = self.node(id);
        let count = node.children.len();
        for _ in 0..count {
            let index = node.step_pick_offset(count);
            if let Some(found) = self.pick_from(node.children[index], waiting) {
                return Some(found);
            }
        }
        (waiting(id) && self.try_get(id)).then_some(id)
    }
}

// === impl Node ===

impl Node {
    fn new(
        name: &str,
        parent: Option<BucketId>,
        rate: f64,
        ceil: f64,
        token_rate: u32,
        token_ceil: u32,
    ) -> Self {
        Node {
            name: name.to_owned(),
            parent,
            children: Vec::new(),
            rate,
            ceil,
            token_rate: AtomicU32::new(token_rate),
            token_ceil: AtomicU32::new(token_ceil),
            reserved: AtomicU64::new(0),
            grants: AtomicU64::new(Grants::default().pack()),
            load: LoadCounter::default(),
            own: AtomicU32::new(0),
            pick_offset: AtomicUsize::new(0),
        }
    }

    /// `htb`: the assured share of the bucket's own requests: its token rate minus its
    /// children's (the root's: the capacity not assured to any child).
    fn own_assured(&self) -> u32 {
        let rate = u64::from(self.token_rate.load(Ordering::Acquire));
        let own = rate.saturating_sub(self.reserved.load(Ordering::Acquire));
        u32::try_from(own).unwrap_or(u32::MAX)
    }

    /// Handed out plus reserved for the children.
    fn commitment(&self, used: u32) -> u64 {
        self.reserved.load(Ordering::Acquire) + u64::from(used)
    }

    /// How much of the commitment the bucket's own rate does not cover.
    fn needed_borrow(&self, used: u32) -> u32 {
        let rate = u64::from(self.token_rate.load(Ordering::Acquire));
        let needed = self.commitment(used).saturating_sub(rate);
        u32::try_from(needed).unwrap_or(u32::MAX)
    }

    fn swap_grants(&self, current: u64, next: Grants) -> bool {
        self.grants
            .compare_exchange(current, next.pack(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// x0's round robin: move the offset back by one (wrapping) and return it.
    fn step_pick_offset(&self, count: usize) -> usize {
        let back = |offset: usize| {
            if offset == 0 || offset > count {
                count - 1
            } else {
                offset - 1
            }
        };
        let previous = self
            .pick_offset
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |offset| {
                Some(back(offset))
            })
            .unwrap_or_else(|offset| offset);
        back(previous)
    }
}

// === impl Grants ===

impl Grants {
    fn pack(self) -> u64 {
        (u64::from(self.used) << 32) | u64::from(self.borrowed)
    }

    fn unpack(packed: u64) -> Self {
        Grants {
            used: (packed >> 32) as u32,
            borrowed: (packed & u64::from(u32::MAX)) as u32,
        }
    }
}

// === impl LoadCounter ===

impl LoadCounter {
    fn increment(&self) {
        let now = self.current.fetch_add(1, Ordering::AcqRel) + 1;
        self.max.fetch_max(now, Ordering::AcqRel);
        self.total.fetch_add(1, Ordering::AcqRel);
    }

    /// Records a grant whose `current` was already raised (`htb`).
    fn granted(&self) {
        self.max
            .fetch_max(self.current.load(Ordering::Acquire), Ordering::AcqRel);
        self.total.fetch_add(1, Ordering::AcqRel);
    }

    fn decrement(&self) {
        let _ = self
            .current
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                current.checked_sub(1)
            });
    }

    fn snapshot(&self) -> Counter {
        Counter {
            current: self.current.load(Ordering::Acquire),
            max: self.max.load(Ordering::Acquire),
            total: self.total.load(Ordering::Acquire),
        }
    }
}

/// The fraction checks of [`Shaper::create`], in x0's order.
fn check_fractions(rate: f64, ceil: f64, siblings: f64) -> Result<(), ShaperError> {
    if rate.is_nan() || rate < 0.0 || rate + siblings > 1.0 + SUM_TOLERANCE {
        return Err(ShaperError::RateLimitOverflow);
    }
    if ceil.is_nan() || ceil < rate || ceil > 1.0 {
        return Err(ShaperError::CeilLimitOverflow);
    }
    Ok(())
}

/// `floor(tokens × fraction)`, where a product within rounding error of a whole number counts
/// as that number (x0 computes in `float`, whose coarser rounding lands on it by luck).
fn scale(tokens: u32, fraction: f64) -> u32 {
    let exact = f64::from(tokens) * fraction;
    let nearest = exact.round();
    let value = if (exact - nearest).abs() <= nearest.abs().max(1.0) * FLOOR_TOLERANCE {
        nearest
    } else {
        exact.floor()
    };
    // The fraction is within [0, 1], so this stays within [0, tokens]; the cast saturates.
    value.clamp(0.0, f64::from(tokens)) as u32
}
