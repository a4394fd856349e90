use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::*;

#[derive(Debug)]
struct Item {
    dies_at: Option<Instant>,
}

impl Expiring for Item {
    fn is_expired(&self, now: Instant) -> bool {
        self.dies_at.is_some_and(|d| d <= now)
    }
}

fn put(store: &Store<Item>, hash: u128, weight: usize, budget: usize) -> Removed {
    store.update(hash, budget, |_| {
        Some((Arc::new(Item { dies_at: None }), weight))
    })
}

#[test]
fn get_update_remove() {
    let s = Store::new();
    assert!(s.get(1).is_none());
    put(&s, 1, 10, 100);
    put(&s, 1, 30, 100);
    assert!(s.get(1).is_some());
    assert_eq!((s.weight(), s.len()), (30, 1));
    assert!(s.remove(1));
    assert!(!s.remove(1));
    assert_eq!((s.weight(), s.len()), (0, 0));
}

#[test]
fn referenced_entries_get_a_second_chance() {
    let s = Store::new();
    // Same shard (top bits zero), inserted in order 1, 2, 3.
    for h in 1..=3u128 {
        put(&s, h, 10, 30);
    }
    assert!(s.get(1).is_some());
    let removed = put(&s, 4, 10, 30);
    assert_eq!(removed.objects, 1);
    assert!(s.get(1).is_some(), "recently used entry survives");
    assert!(s.get(2).is_none(), "oldest unused entry goes");
}

#[test]
fn expired_entries_go_even_when_referenced() {
    let s = Store::new();
    let past = Instant::now().checked_sub(Duration::from_secs(1));
    s.update(1, 100, |_| Some((Arc::new(Item { dies_at: past }), 50)));
    put(&s, 2, 50, 100);
    assert!(s.get(1).is_some());
    assert!(s.get(2).is_some());
    put(&s, 3, 50, 100);
    assert!(s.get(1).is_none());
    assert!(s.get(2).is_some());
}

#[test]
fn remove_if_and_oversized() {
    let s = Store::new();
    for h in 0..10u128 {
        put(&s, h << 100, 5, 1000);
    }
    let r = s.remove_if(|_| true);
    assert_eq!(
        r,
        Removed {
            objects: 10,
            bytes: 50
        }
    );
    // A value larger than the budget does not stay.
    put(&s, 7, 500, 100);
    assert_eq!((s.weight(), s.len()), (0, 0));
}

proptest! {
    /// Whatever is inserted, updated and removed, the accounted weight is the sum of what is
    /// stored and, at rest, never above the budget.
    #[test]
    fn weight_stays_within_budget(
        ops in proptest::collection::vec((0u128..64, 1usize..200, any::<bool>(), any::<bool>()), 1..300),
        budget in 100usize..2000,
    ) {
        let s = Store::new();
        for (key, weight, remove, read) in ops {
            let hash = key.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
            if remove {
                s.remove(hash);
            } else {
                put(&s, hash, weight, budget);
            }
            if read {
                let _ = s.get(hash);
            }
            prop_assert!(s.weight() <= budget);
        }
        let before = (s.len(), s.weight());
        let removed = s.remove_if(|_| true);
        prop_assert_eq!((removed.objects, removed.bytes), before);
        prop_assert_eq!(s.weight(), 0);
        prop_assert_eq!(s.len(), 0);
    }
}
