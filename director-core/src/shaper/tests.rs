//! Tests of the bucket shaper.
//!
//! The `x0_*` tests port `src/xzero/TokenShaper-test.cc` of christianparpart/x0 one to one where
//! the interface allows (x0's `setRate(r)`/`setCeil(c)` become `set_rate(r, c)` with the other
//! fraction unchanged; `setName` and the queue-timeout test have no counterpart here, as renaming
//! and queues belong to the caller). The rest covers the issue's example, the dequeue order,
//! mutations, resizing, a model-based property test and a threaded hammer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::thread;

use proptest::prelude::*;

use super::*;

/// x0's test fixture: capacity 10, vip 0.1/0.3, main 0.5/0.7, main/upload 0.5/0.5.
struct X0 {
    shaper: Shaper,
    vip: BucketId,
    main: BucketId,
    upload: BucketId,
}

fn x0_setup() -> X0 {
    x0_tree(ShaperMode::X0)
}

/// x0's fixture tree, sharing as `mode`.
fn x0_tree(mode: ShaperMode) -> X0 {
    let mut shaper = Shaper::with_mode(10, mode);
    let vip = shaper.create("vip", ROOT, 0.1, 0.3).unwrap();
    let main = shaper.create("main", ROOT, 0.5, 0.7).unwrap();
    let upload = shaper.create("upload", main, 0.5, 0.5).unwrap();
    X0 {
        shaper,
        vip,
        main,
        upload,
    }
}

/// The issue's tree: capacity 10, vip 0.1/0.3 and main 0.5/0.7.
fn issue_setup() -> (Shaper, BucketId, BucketId) {
    issue_setup_as(ShaperMode::X0)
}

fn issue_setup_as(mode: ShaperMode) -> (Shaper, BucketId, BucketId) {
    let mut shaper = Shaper::with_mode(10, mode);
    let vip = shaper.create("vip", ROOT, 0.1, 0.3).unwrap();
    let main = shaper.create("main", ROOT, 0.5, 0.7).unwrap();
    (shaper, vip, main)
}

fn tokens(shaper: &Shaper, bucket: BucketId) -> (u32, u32) {
    let stats = shaper.stats(bucket);
    (stats.token_rate, stats.token_ceil)
}

fn fractions(shaper: &Shaper, bucket: BucketId) -> (f64, f64) {
    let stats = shaper.stats(bucket);
    (stats.rate, stats.ceil)
}

/// x0's `actualRate()`.
fn load(shaper: &Shaper, bucket: BucketId) -> u64 {
    shaper.stats(bucket).load.current
}

/// x0's `overRate()`.
fn over_rate(shaper: &Shaper, bucket: BucketId) -> u64 {
    load(shaper, bucket).saturating_sub(u64::from(shaper.stats(bucket).token_rate))
}

fn take(shaper: &Shaper, bucket: BucketId, max: usize) -> usize {
    (0..max).take_while(|_| shaper.try_get(bucket)).count()
}

fn grants(shaper: &Shaper, bucket: BucketId) -> Grants {
    Grants::unpack(shaper.node(bucket).grants.load(Ordering::Acquire))
}

/// Every bucket idle: nothing handed out, nothing borrowed beyond what reservations need.
fn assert_idle(shaper: &Shaper) {
    for bucket in shaper.buckets() {
        assert_eq!(load(shaper, bucket), 0, "load of {}", shaper.name(bucket));
        let lent: u32 = shaper
            .children(bucket)
            .iter()
            .map(|&child| grants(shaper, child).borrowed)
            .sum();
        assert_eq!(grants(shaper, bucket).used, lent, "{}", shaper.name(bucket));
        let own = shaper.node(bucket).own.load(Ordering::Acquire);
        assert_eq!(own, 0, "own tokens of {}", shaper.name(bucket));
    }
}

// === ported from x0 ===

#[test]
fn x0_setup_computes_token_rates() {
    let X0 {
        shaper,
        vip,
        main,
        upload,
    } = x0_setup();
    assert_eq!(fractions(&shaper, vip), (0.1, 0.3));
    assert_eq!(tokens(&shaper, vip), (1, 3));
    assert_eq!(fractions(&shaper, main), (0.5, 0.7));
    assert_eq!(tokens(&shaper, main), (5, 7));
    assert_eq!(fractions(&shaper, upload), (0.5, 0.5));
    assert_eq!(tokens(&shaper, upload), (2, 3));
    assert_eq!(fractions(&shaper, ROOT), (1.0, 1.0));
    assert_eq!(tokens(&shaper, ROOT), (10, 10));
    assert_eq!(shaper.capacity(), 10);
}

#[test]
fn x0_create_errors() {
    let X0 {
        mut shaper, vip, ..
    } = x0_setup();
    assert_eq!(
        shaper.create("special", ROOT, 0.41, 1.0),
        Err(ShaperError::RateLimitOverflow)
    );
    assert_eq!(
        shaper.create("special", ROOT, 1.1, 1.0),
        Err(ShaperError::RateLimitOverflow)
    );
    assert_eq!(
        shaper.create("special", ROOT, -0.1, 1.0),
        Err(ShaperError::RateLimitOverflow)
    );
    assert_eq!(
        shaper.create("special", vip, 1.0, 0.40),
        Err(ShaperError::CeilLimitOverflow)
    );
    assert_eq!(
        shaper.create("special", vip, 1.0, 1.01),
        Err(ShaperError::CeilLimitOverflow)
    );
    assert_eq!(
        shaper.create("vip", vip, 1.0, 1.0),
        Err(ShaperError::NameConflict)
    );
    // The remaining 0.4 of the root fits exactly, despite binary rounding of 0.1 + 0.5 + 0.4.
    assert!(shaper.create("special", ROOT, 0.4, 0.4).is_ok());
}

#[test]
fn x0_mutate_errors() {
    let X0 {
        mut shaper, vip, ..
    } = x0_setup();
    // setRate(0.4), setRate(-0.1), setRate(1.1) with vip's ceil of 0.3.
    assert_eq!(
        shaper.set_rate(vip, 0.4, 0.3),
        Err(ShaperError::RateLimitOverflow)
    );
    assert_eq!(
        shaper.set_rate(vip, -0.1, 0.3),
        Err(ShaperError::RateLimitOverflow)
    );
    assert_eq!(
        shaper.set_rate(vip, 1.1, 0.3),
        Err(ShaperError::RateLimitOverflow)
    );
    // setCeil(0.09) below the rate: x0's two-fraction setRate calls this a rate overflow.
    assert_eq!(
        shaper.set_rate(vip, 0.1, 0.09),
        Err(ShaperError::RateLimitOverflow)
    );
    assert_eq!(
        shaper.set_rate(vip, 0.1, 1.1),
        Err(ShaperError::CeilLimitOverflow)
    );
    // Nothing changed.
    assert_eq!(fractions(&shaper, vip), (0.1, 0.3));
    assert_eq!(tokens(&shaper, vip), (1, 3));
}

#[test]
fn x0_get_put() {
    let X0 { shaper, vip, .. } = x0_setup();
    assert!(shaper.try_get(vip));
    assert_eq!(load(&shaper, vip), 1);
    assert_eq!(load(&shaper, ROOT), 1);

    shaper.put(vip);
    assert_eq!(load(&shaper, vip), 0);
    assert_eq!(load(&shaper, ROOT), 0);
    assert_idle(&shaper);
}

#[test]
fn x0_get_overrate() {
    let X0 { shaper, vip, .. } = x0_setup();
    assert!(shaper.try_get(vip));
    assert_eq!((load(&shaper, vip), over_rate(&shaper, vip)), (1, 0));
    assert_eq!((load(&shaper, ROOT), over_rate(&shaper, ROOT)), (1, 0));

    // Beyond vip's rate: borrowed from the root.
    assert!(shaper.try_get(vip));
    assert_eq!((load(&shaper, vip), over_rate(&shaper, vip)), (2, 1));
    assert_eq!((load(&shaper, ROOT), over_rate(&shaper, ROOT)), (2, 0));

    assert!(shaper.try_get(vip));
    assert_eq!((load(&shaper, vip), over_rate(&shaper, vip)), (3, 2));
    assert_eq!((load(&shaper, ROOT), over_rate(&shaper, ROOT)), (3, 0));

    // vip's ceil is reached.
    assert!(!shaper.try_get(vip));

    shaper.put(vip);
    assert_eq!((load(&shaper, vip), over_rate(&shaper, vip)), (2, 1));
    assert_eq!((load(&shaper, ROOT), over_rate(&shaper, ROOT)), (2, 0));

    shaper.put(vip);
    assert_eq!((load(&shaper, vip), over_rate(&shaper, vip)), (1, 0));
    assert_eq!((load(&shaper, ROOT), over_rate(&shaper, ROOT)), (1, 0));
    assert_eq!(grants(&shaper, vip).borrowed, 0);
    assert_eq!(grants(&shaper, ROOT).used, 0);
}

#[test]
fn x0_odd_over_rate() {
    let X0 { shaper, vip, .. } = x0_setup();
    shaper.resize(11);
    assert!(shaper.try_get(vip));
    assert!(shaper.try_get(vip));
    assert!(shaper.try_get(vip));
    assert!(!shaper.try_get(vip));
    shaper.put(vip);
    assert_eq!(load(&shaper, vip), 2);
}

#[test]
fn x0_resize() {
    let X0 {
        shaper,
        vip,
        main,
        upload,
    } = x0_setup();
    shaper.resize(100);
    assert_eq!(fractions(&shaper, vip), (0.1, 0.3));
    assert_eq!(tokens(&shaper, vip), (10, 30));
    assert_eq!(fractions(&shaper, main), (0.5, 0.7));
    assert_eq!(tokens(&shaper, main), (50, 70));
    assert_eq!(fractions(&shaper, upload), (0.5, 0.5));
    assert_eq!(tokens(&shaper, upload), (25, 35));

    shaper.resize(200);
    assert_eq!(tokens(&shaper, vip), (20, 60));
    assert_eq!(tokens(&shaper, main), (100, 140));
    assert_eq!(tokens(&shaper, upload), (50, 70));
    assert_eq!(shaper.capacity(), 200);
}

#[test]
fn x0_set_rate() {
    let X0 {
        mut shaper,
        main,
        upload,
        ..
    } = x0_setup();
    shaper.set_rate(main, 0.6, 0.7).unwrap();
    assert_eq!(fractions(&shaper, main), (0.6, 0.7));
    assert_eq!(tokens(&shaper, main), (6, 7));
    assert_eq!(tokens(&shaper, upload), (3, 3));
}

#[test]
fn x0_set_ceil() {
    let X0 {
        mut shaper,
        main,
        upload,
        ..
    } = x0_setup();
    shaper.set_rate(main, 0.5, 0.8).unwrap();
    assert_eq!(fractions(&shaper, main), (0.5, 0.8));
    assert_eq!(tokens(&shaper, main), (5, 8));
    assert_eq!(tokens(&shaper, upload), (2, 4));
}

#[test]
fn x0_get_with_enqueue_put_dequeue() {
    let X0 { shaper, vip, .. } = x0_setup();
    // The caller's queues, as x0 keeps them inside the nodes.
    let mut queues: Vec<VecDeque<i32>> = vec![VecDeque::new(); 4];
    let dequeue = |queues: &mut Vec<VecDeque<i32>>| {
        let bucket = shaper.pick(|bucket| !queues[bucket].is_empty())?;
        queues[bucket].pop_front()
    };

    assert!(shaper.try_get(vip));
    assert!(shaper.try_get(vip));
    assert!(shaper.try_get(vip));
    assert!(!shaper.try_get(vip));

    queues[vip].push_back(42);
    queues[vip].push_back(43);

    // No spare token on vip.
    assert_eq!(dequeue(&mut queues), None);

    shaper.put(vip);
    assert_eq!(dequeue(&mut queues), Some(42));
    assert_eq!(queues[vip].len(), 1);
    assert_eq!(dequeue(&mut queues), None);

    shaper.put(vip);
    assert_eq!(dequeue(&mut queues), Some(43));
    assert!(queues[vip].is_empty());

    // The two dequeued items hold a token each; give back all three.
    assert_eq!(load(&shaper, vip), 3);
    shaper.put(vip);
    shaper.put(vip);
    shaper.put(vip);
    assert_eq!(dequeue(&mut queues), None);
    assert_idle(&shaper);
}

// === the issue's example ===

#[test]
fn vip_never_holds_more_than_three_tokens() {
    let (shaper, vip, _main) = issue_setup();
    assert_eq!(take(&shaper, vip, 10), 3);
    assert_eq!(load(&shaper, vip), 3);
    shaper.put(vip);
    assert_eq!(take(&shaper, vip, 10), 1);
    assert_eq!(load(&shaper, vip), 3);
}

#[test]
fn root_traffic_uses_the_unreserved_tokens() {
    let (shaper, vip, _main) = issue_setup();
    // 10 − (1 + 5) reserved = 4.
    assert_eq!(take(&shaper, ROOT, 10), 4);
    for _ in 0..4 {
        shaper.put(ROOT);
    }
    // vip borrows 2 of the 4; root traffic gets what is left.
    assert_eq!(take(&shaper, vip, 10), 3);
    assert_eq!(take(&shaper, ROOT, 10), 2);
    assert_eq!(load(&shaper, ROOT), 5);
}

#[test]
fn buckets_under_load_get_at_least_their_rate() {
    let (shaper, vip, main) = issue_setup();
    // Root traffic first takes everything it may...
    assert_eq!(take(&shaper, ROOT, 10), 4);
    // ...and vip and main still get their assured tokens, but cannot borrow.
    assert_eq!(take(&shaper, vip, 10), 1);
    assert_eq!(take(&shaper, main, 10), 5);
    assert_eq!(load(&shaper, ROOT), 10);
    for _ in 0..4 {
        shaper.put(ROOT);
    }
    // Greedy vip borrows up to its ceil, main still borrows the rest up to its own ceil.
    assert_eq!(take(&shaper, vip, 10), 2);
    assert_eq!(take(&shaper, main, 10), 2);
    assert_eq!((load(&shaper, vip), load(&shaper, main)), (3, 7));
    assert_eq!(load(&shaper, ROOT), 10);
    assert!(!shaper.try_get(ROOT));
}

#[test]
fn root_traffic_cannot_take_reserved_tokens() {
    // x0's `max(R, Rc + Oc)` would hand the root all 10 tokens here, and then vip and main their
    // assured 6 on top: 16 of 10.
    let X0 {
        shaper,
        vip,
        main,
        upload,
    } = x0_setup();
    assert_eq!(take(&shaper, ROOT, 20), 4);
    assert_eq!(take(&shaper, vip, 20), 1);
    // upload's third token is borrowed from main's unreserved 3, leaving main 2 of its own.
    assert_eq!(take(&shaper, upload, 20), 3);
    assert_eq!(take(&shaper, main, 20), 2);
    assert_eq!(load(&shaper, ROOT), 10);
}

#[test]
fn inner_bucket_keeps_its_childrens_reservation_within_its_ceil() {
    let X0 {
        shaper,
        main,
        upload,
        ..
    } = x0_setup();
    // main: 5 assured of which upload reserves 2, so 3 assured plus 2 borrowed up to the ceil 7.
    assert_eq!(take(&shaper, main, 20), 5);
    // upload still gets its assured 2, but cannot borrow beyond main's ceil.
    assert_eq!(take(&shaper, upload, 20), 2);
    assert_eq!(load(&shaper, main), 7);
    for _ in 0..5 {
        shaper.put(main);
    }
    // With main idle, upload borrows from main up to its own ceil of 3.
    assert_eq!(take(&shaper, upload, 20), 1);
    assert_eq!(load(&shaper, main), 3);
}

// === pick ===

#[test]
fn pick_serves_children_before_their_parent() {
    let X0 {
        shaper,
        vip,
        main,
        upload,
    } = x0_setup();
    assert_eq!(shaper.pick(|b| b == ROOT || b == vip), Some(vip));
    assert_eq!(
        shaper.pick(|b| b == ROOT || b == main || b == upload),
        Some(upload)
    );
    assert_eq!(shaper.pick(|b| b == ROOT || b == main), Some(main));
    assert_eq!(shaper.pick(|b| b == ROOT), Some(ROOT));
    assert_eq!(load(&shaper, ROOT), 4);
}

#[test]
fn pick_visits_children_round_robin_backwards() {
    let mut shaper = Shaper::with_mode(100, ShaperMode::X0);
    let a = shaper.create("a", ROOT, 0.2, 1.0).unwrap();
    let b = shaper.create("b", ROOT, 0.2, 1.0).unwrap();
    let c = shaper.create("c", ROOT, 0.2, 1.0).unwrap();
    let order: Vec<_> = (0..7).map(|_| shaper.pick(|_| true).unwrap()).collect();
    assert_eq!(order, [c, b, a, c, b, a, c]);
}

#[test]
fn pick_skips_buckets_without_tokens_and_takes_nothing_when_idle() {
    let (shaper, vip, main) = issue_setup();
    assert_eq!(shaper.pick(|_| false), None);
    assert_eq!(load(&shaper, ROOT), 0);

    assert_eq!(take(&shaper, vip, 10), 3);
    let waiting = |b: BucketId| b == vip || b == main;
    assert_eq!(shaper.pick(waiting), Some(main));
    assert_eq!(shaper.pick(waiting), Some(main));
    assert_eq!(load(&shaper, vip), 3);

    // Children that cannot be served leave the turn to the parent's own queue.
    assert_eq!(shaper.pick(|b| b == vip || b == ROOT), Some(ROOT));
}

#[test]
fn pick_recurses_into_grandchildren() {
    let X0 { shaper, upload, .. } = x0_setup();
    assert_eq!(shaper.pick(|b| b == upload), Some(upload));
    assert_eq!(shaper.pick(|b| b == upload), Some(upload));
    assert_eq!(shaper.pick(|b| b == upload), Some(upload));
    assert_eq!(shaper.pick(|b| b == upload), None);
}

// === mutations ===

#[test]
fn error_texts() {
    assert_eq!(
        ShaperError::RateLimitOverflow.to_string(),
        "Rate limit overflow."
    );
    assert_eq!(
        ShaperError::CeilLimitOverflow.to_string(),
        "Ceil limit overflow."
    );
    assert_eq!(ShaperError::NameConflict.to_string(), "Name conflict.");
    assert_eq!(
        ShaperError::InvalidChildNode.to_string(),
        "Invalid child node."
    );
    assert_eq!(ShaperError::Busy.to_string(), "Bucket busy.");
}

#[test]
fn tree_navigation() {
    let X0 {
        shaper,
        vip,
        main,
        upload,
    } = x0_setup();
    assert_eq!(shaper.find("root"), Some(ROOT));
    assert_eq!(shaper.find("upload"), Some(upload));
    assert_eq!(shaper.find("nope"), None);
    assert_eq!(shaper.name(main), "main");
    assert_eq!(shaper.parent(upload), Some(main));
    assert_eq!(shaper.parent(ROOT), None);
    assert_eq!(shaper.children(ROOT), [vip, main]);
    assert_eq!(
        shaper.buckets().collect::<Vec<_>>(),
        [ROOT, vip, main, upload]
    );
}

#[test]
fn create_checks_parent_and_nested_sums() {
    let X0 {
        mut shaper, main, ..
    } = x0_setup();
    assert_eq!(
        shaper.create("x", 99, 0.1, 0.1),
        Err(ShaperError::InvalidChildNode)
    );
    assert_eq!(
        shaper.create("x", main, 0.6, 0.6),
        Err(ShaperError::RateLimitOverflow)
    );
    assert_eq!(
        shaper.create("x", main, f64::NAN, 0.6),
        Err(ShaperError::RateLimitOverflow)
    );
    assert_eq!(
        shaper.create("x", main, 0.1, f64::NAN),
        Err(ShaperError::CeilLimitOverflow)
    );
    assert_eq!(
        shaper.create("root", main, 0.1, 0.1),
        Err(ShaperError::NameConflict)
    );
    let x = shaper.create("x", main, 0.5, 1.0).unwrap();
    assert_eq!(tokens(&shaper, x), (2, 7));
}

#[test]
fn set_rate_checks_root_and_sibling_sum() {
    let X0 {
        mut shaper, vip, ..
    } = x0_setup();
    assert_eq!(
        shaper.set_rate(ROOT, 0.5, 0.5),
        Err(ShaperError::InvalidChildNode)
    );
    assert_eq!(
        shaper.set_rate(42, 0.5, 0.5),
        Err(ShaperError::InvalidChildNode)
    );
    // x0 accepts this and overbooks the root: 0.6 + 0.5 > 1.
    assert_eq!(
        shaper.set_rate(vip, 0.6, 0.6),
        Err(ShaperError::RateLimitOverflow)
    );
    shaper.set_rate(vip, 0.5, 0.6).unwrap();
    assert_eq!(tokens(&shaper, vip), (5, 6));
    // Now the rates add up to 1: no root traffic at all.
    assert!(!shaper.try_get(ROOT));
}

#[test]
fn set_rate_below_held_tokens_blocks_until_drained() {
    let (mut shaper, vip, main) = issue_setup();
    assert_eq!(take(&shaper, vip, 10), 3);
    shaper.set_rate(vip, 0.1, 0.1).unwrap();
    assert_eq!(tokens(&shaper, vip), (1, 1));
    assert_eq!(load(&shaper, vip), 3);
    assert!(!shaper.try_get(vip));
    // The root still counts vip's 2 tokens beyond its rate.
    assert_eq!(take(&shaper, main, 10), 7);
    assert!(!shaper.try_get(ROOT));
    shaper.put(vip);
    shaper.put(vip);
    assert!(!shaper.try_get(vip));
    shaper.put(vip);
    assert!(shaper.try_get(vip));
}

#[test]
fn destroy_refuses_root_unknown_and_busy_buckets() {
    let X0 {
        mut shaper,
        main,
        upload,
        ..
    } = x0_setup();
    assert_eq!(shaper.destroy(ROOT), Err(ShaperError::InvalidChildNode));
    assert_eq!(shaper.destroy(17), Err(ShaperError::InvalidChildNode));
    assert!(shaper.try_get(upload));
    assert_eq!(shaper.destroy(main), Err(ShaperError::Busy));
    assert_eq!(shaper.destroy(upload), Err(ShaperError::Busy));
    shaper.put(upload);
    shaper.destroy(main).unwrap();
    assert_eq!(shaper.find("main"), None);
    assert_eq!(shaper.find("upload"), None);
    assert_eq!(shaper.destroy(upload), Err(ShaperError::InvalidChildNode));
}

#[test]
fn destroy_frees_the_reservation_and_never_reuses_ids() {
    let (mut shaper, vip, main) = issue_setup();
    assert_eq!(take(&shaper, ROOT, 10), 4);
    shaper.destroy(main).unwrap();
    assert_eq!(take(&shaper, ROOT, 10), 5);
    let again = shaper.create("main", ROOT, 0.5, 0.7).unwrap();
    assert_ne!(again, main);
    assert_eq!(shaper.children(ROOT), [vip, again]);
    // The root holds 9 and vip's reservation is 1: the new main gets nothing until they go.
    assert!(!shaper.try_get(again));
    for _ in 0..9 {
        shaper.put(ROOT);
    }
    assert_eq!(take(&shaper, again, 10), 7);
}

// === resize ===

#[test]
fn shrinking_keeps_held_tokens_and_blocks_new_ones() {
    let (shaper, vip, main) = issue_setup();
    assert_eq!(take(&shaper, vip, 10), 3);
    shaper.resize(3);
    assert_eq!(tokens(&shaper, vip), (0, 0));
    assert_eq!(tokens(&shaper, main), (1, 2));
    assert_eq!(load(&shaper, vip), 3);
    // The tree holds 3 of 3 and main's reservation is 1 more: nobody gets a token.
    assert!(!shaper.try_get(main));
    assert!(!shaper.try_get(vip));
    assert!(!shaper.try_get(ROOT));

    shaper.put(vip);
    assert_eq!(take(&shaper, main, 10), 1);
    assert_eq!(load(&shaper, ROOT), 3);
    shaper.put(vip);
    shaper.put(vip);
    assert_eq!(take(&shaper, main, 10), 1);
    assert_eq!(take(&shaper, ROOT, 10), 1);
    assert_eq!(load(&shaper, ROOT), 3);
}

#[test]
fn growing_returns_borrowed_tokens() {
    let (shaper, vip, _main) = issue_setup();
    assert_eq!(take(&shaper, vip, 10), 3);
    assert_eq!(grants(&shaper, vip).borrowed, 2);
    shaper.resize(100);
    assert_eq!(grants(&shaper, vip).borrowed, 0);
    // 100 − (10 + 50) reserved.
    assert_eq!(take(&shaper, ROOT, 100), 40);
    assert_eq!(take(&shaper, vip, 100), 7);
}

#[test]
fn floor_forgives_binary_rounding() {
    assert_eq!(scale(100, 0.29), 29);
    assert_eq!(scale(10, 0.3), 3);
    assert_eq!(scale(7, 0.5), 3);
    assert_eq!(scale(11, 0.7), 7);
    assert_eq!(scale(0, 0.5), 0);
    assert_eq!(scale(u32::MAX, 1.0), u32::MAX);
}

// === htb ===

/// The seed config's tree: capacity 10, vip 0.2/0.4 and main 0.8/1.0 (rates adding up to 1).
fn seed_setup() -> (Shaper, BucketId, BucketId) {
    let mut shaper = Shaper::new(10);
    let vip = shaper.create("vip", ROOT, 0.2, 0.4).unwrap();
    let main = shaper.create("main", ROOT, 0.8, 1.0).unwrap();
    (shaper, vip, main)
}

fn put_n(shaper: &Shaper, bucket: BucketId, n: usize) {
    for _ in 0..n {
        shaper.put(bucket);
    }
}

#[test]
fn htb_is_the_default_and_x0_is_kept_by_name() {
    assert_eq!(Shaper::new(1).mode(), ShaperMode::Htb);
    assert_eq!(ShaperMode::default().as_str(), "htb");
    assert_eq!(ShaperMode::X0.as_str(), "x0");
    assert!(ShaperMode::Htb.is_htb() && !ShaperMode::X0.is_htb());
}

#[test]
fn seed_buckets_alone_borrow_up_to_their_ceil() {
    let (shaper, vip, main) = seed_setup();
    assert_eq!(take(&shaper, vip, 20), 4, "vip alone: its ceil");
    put_n(&shaper, vip, 4);
    assert_eq!(
        take(&shaper, main, 20),
        10,
        "main alone: its ceil, the capacity"
    );
    put_n(&shaper, main, 10);
    assert_eq!(take(&shaper, ROOT, 20), 10, "root alone: the idle capacity");
    put_n(&shaper, ROOT, 10);
    assert_idle(&shaper);

    // The same tree under x0's arithmetic: nothing to borrow, nothing for the root.
    let mut x0 = Shaper::with_mode(10, ShaperMode::X0);
    let vip = x0.create("vip", ROOT, 0.2, 0.4).unwrap();
    let main = x0.create("main", ROOT, 0.8, 1.0).unwrap();
    assert_eq!(take(&x0, vip, 20), 2);
    assert_eq!(take(&x0, main, 20), 8);
    put_n(&x0, vip, 2);
    put_n(&x0, main, 8);
    assert_eq!(take(&x0, ROOT, 20), 0);
}

#[test]
fn seed_buckets_saturated_converge_to_their_rates() {
    let (shaper, vip, main) = seed_setup();
    // main came first and holds everything; vip's requests wait.
    assert_eq!(take(&shaper, main, 20), 10);
    assert!(!shaper.try_get(vip) && !shaper.try_get_assured(vip));
    // Both queues wait: freed tokens go to vip until it holds its assured 2 ...
    let both = |_: BucketId| true;
    shaper.put(main);
    assert_eq!(shaper.pick(both), Some(vip));
    shaper.put(main);
    assert_eq!(shaper.pick(both), Some(vip));
    // ... then to main, below its assured 8; vip, at its rate, does not borrow while main is
    // below its own.
    shaper.put(main);
    assert_eq!(shaper.pick(both), Some(main));
    assert_eq!(shaper.pick(both), None, "full");
    for _ in 0..5 {
        shaper.put(main);
        assert_eq!(shaper.pick(both), Some(main));
        shaper.put(vip);
        assert_eq!(shaper.pick(both), Some(vip));
    }
    assert_eq!((load(&shaper, vip), load(&shaper, main)), (2, 8));
    // Once main's queue is empty, vip borrows main's idle token, up to its ceil.
    shaper.put(main);
    assert_eq!(shaper.pick(|b| b == vip), Some(vip));
    assert_eq!((load(&shaper, vip), load(&shaper, main)), (3, 7));
}

#[test]
fn new_requests_borrow_only_while_nobody_waits() {
    let (shaper, vip, main) = seed_setup();
    assert_eq!(take(&shaper, main, 6), 6);
    // 4 tokens idle: vip's 2 are assured, the other 2 borrowed.
    assert!(shaper.try_get_assured(vip) && shaper.try_get_assured(vip));
    assert!(!shaper.try_get_assured(vip), "beyond its own share");
    assert!(shaper.try_get(vip), "borrowing");
    // main is assured 8 and holds 6: it takes the last token either way.
    assert!(shaper.try_get_assured(main));
    assert!(!shaper.try_get_assured(main) && !shaper.try_get(main));
    // The root's own share is 0 here: it only borrows.
    shaper.put(main);
    assert!(!shaper.try_get_assured(ROOT));
    assert!(shaper.try_get(ROOT));
}

#[test]
fn root_share_is_the_capacity_no_child_is_assured() {
    // vip 0.1 and main 0.5 of 10: 1 + 5 assured, the root's own share is 4.
    let (shaper, vip, main) = issue_setup_as(ShaperMode::Htb);
    assert_eq!(shaper.node(ROOT).own_assured(), 4);
    assert_eq!(shaper.node(vip).own_assured(), 1);
    assert_eq!(shaper.node(main).own_assured(), 5);
    assert_eq!((0..10).filter(|_| shaper.try_get_assured(ROOT)).count(), 4);
    // Inner buckets: main 5 with upload 0.5 of it (2): main's own share is 3.
    let X0 {
        shaper,
        main,
        upload,
        ..
    } = x0_tree(ShaperMode::Htb);
    assert_eq!(shaper.node(main).own_assured(), 3);
    assert_eq!(shaper.node(upload).own_assured(), 2);
    assert_eq!(shaper.node(ROOT).own_assured(), 4);
}

#[test]
fn htb_ceilings_bind_through_the_tree() {
    // upload is capped at 3 (0.5 of main's ceil 7), main at 7 with its children.
    let X0 {
        shaper,
        vip,
        main,
        upload,
    } = x0_tree(ShaperMode::Htb);
    assert_eq!(take(&shaper, upload, 20), 3);
    assert_eq!(take(&shaper, main, 20), 4, "main's own up to main's ceil 7");
    assert_eq!(take(&shaper, vip, 20), 3);
    assert_eq!(take(&shaper, ROOT, 20), 0, "capacity reached");
    assert_eq!(load(&shaper, main), 7);
    put_n(&shaper, upload, 3);
    put_n(&shaper, main, 4);
    put_n(&shaper, vip, 3);
    assert_idle(&shaper);
}

#[test]
fn pick_serves_the_bucket_furthest_below_its_share_first() {
    let mut shaper = Shaper::new(20);
    let a = shaper.create("a", ROOT, 0.5, 1.0).unwrap(); // 10
    let b = shaper.create("b", ROOT, 0.25, 1.0).unwrap(); // 5
    // The root's own share is 5.
    assert_eq!(take(&shaper, ROOT, 20), 20);
    // a at 0/10, b at 0/5: equal; then each grant moves the one served up.
    let mut served = Vec::new();
    for _ in 0..6 {
        shaper.put(ROOT);
        served.push(shaper.pick(|id| id == a || id == b).unwrap());
    }
    assert_eq!(
        served.iter().filter(|&&id| id == a).count(),
        4,
        "{served:?}"
    );
    assert_eq!(
        served.iter().filter(|&&id| id == b).count(),
        2,
        "{served:?}"
    );
    // The root (own share 5, holding 14) is a borrower now: a and b, below theirs, come first.
    shaper.put(ROOT);
    assert_ne!(shaper.pick(|_| true), Some(ROOT));
}

#[test]
fn borrowers_are_served_round_robin_children_before_parent() {
    // a and b are assured nothing, c (idle) everything: every waiting bucket borrows.
    let mut shaper = Shaper::new(4);
    let a = shaper.create("a", ROOT, 0.0, 1.0).unwrap();
    let b = shaper.create("b", ROOT, 0.0, 1.0).unwrap();
    let c = shaper.create("c", ROOT, 1.0, 1.0).unwrap();
    assert_eq!((take(&shaper, a, 2), take(&shaper, b, 2)), (2, 2));
    let mut last = a;
    let mut served = Vec::new();
    for _ in 0..4 {
        shaper.put(last);
        // The root waits too, but its children come first.
        last = shaper.pick(|id| id != c).unwrap();
        served.push(last);
    }
    assert_eq!(
        served.iter().filter(|&&id| id == a).count(),
        2,
        "{served:?}"
    );
    assert_eq!(
        served.iter().filter(|&&id| id == b).count(),
        2,
        "{served:?}"
    );
}

#[test]
fn htb_shrinking_keeps_held_tokens_and_blocks_new_ones() {
    let (shaper, vip, main) = seed_setup();
    assert_eq!(take(&shaper, main, 10), 10);
    shaper.resize(5);
    assert!(!shaper.try_get(vip) && !shaper.try_get_assured(vip));
    put_n(&shaper, main, 6);
    // 4 held of 5: vip is assured floor(5 × 0.2) = 1.
    assert!(shaper.try_get_assured(vip));
    assert!(!shaper.try_get(vip));
    put_n(&shaper, main, 4);
    shaper.put(vip);
    assert_idle(&shaper);
    assert_eq!(take(&shaper, vip, 10), 2, "vip's ceil of 5 × 0.4");
}

#[test]
fn htb_destroy_and_set_rate_keep_the_counts() {
    let (mut shaper, vip, main) = seed_setup();
    assert!(shaper.try_get(vip));
    assert_eq!(shaper.destroy(vip), Err(ShaperError::Busy));
    shaper.put(vip);
    shaper.destroy(vip).unwrap();
    // main alone, rate 0.8: the root's own share grows to 2.
    assert_eq!(shaper.node(ROOT).own_assured(), 2);
    shaper.set_rate(main, 0.5, 0.5).unwrap();
    assert_eq!(take(&shaper, main, 20), 5);
    assert_eq!(take(&shaper, ROOT, 20), 5);
    put_n(&shaper, main, 5);
    put_n(&shaper, ROOT, 5);
    assert_idle(&shaper);
}

// === properties ===

/// A tree to build: per bucket, a parent among the earlier ones (0 is the root), the share of
/// the parent's remaining rate it takes, and where its ceil lies between its rate and 1.
fn tree_strategy() -> impl Strategy<Value = (u32, Vec<(usize, f64, f64)>)> {
    (
        0u32..=40,
        prop::collection::vec((any::<usize>(), 0.0f64..=1.0, 0.0f64..=1.0), 0..6),
    )
}

#[derive(Debug, Clone)]
enum Op {
    Get(usize),
    Put(usize),
    Resize(u32),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<usize>().prop_map(Op::Get),
        4 => any::<usize>().prop_map(Op::Put),
        1 => (0u32..=40).prop_map(Op::Resize),
    ]
}

fn build(capacity: u32, spec: &[(usize, f64, f64)]) -> (Shaper, Vec<BucketId>) {
    build_as(ShaperMode::X0, capacity, spec)
}

fn build_as(
    mode: ShaperMode,
    capacity: u32,
    spec: &[(usize, f64, f64)],
) -> (Shaper, Vec<BucketId>) {
    let mut shaper = Shaper::with_mode(capacity, mode);
    let mut ids = vec![ROOT];
    for (index, &(parent, share, ceil)) in spec.iter().enumerate() {
        let parent = ids[parent % ids.len()];
        let used: f64 = shaper
            .children(parent)
            .iter()
            .map(|&child| shaper.stats(child).rate)
            .sum();
        let rate = ((1.0 - used) * share).max(0.0);
        let ceil = rate + (1.0 - rate) * ceil;
        let id = shaper
            .create(&format!("b{index}"), parent, rate, ceil.min(1.0))
            .unwrap();
        ids.push(id);
    }
    (shaper, ids)
}

/// A reference model of the shaper, computed from scratch from who holds what.
struct Model<'a> {
    shaper: &'a Shaper,
    own: Vec<u32>,
}

impl Model<'_> {
    fn rate(&self, b: BucketId) -> u64 {
        u64::from(self.shaper.stats(b).token_rate)
    }

    fn ceil(&self, b: BucketId) -> u64 {
        u64::from(self.shaper.stats(b).token_ceil)
    }

    fn load(&self, b: BucketId) -> u64 {
        u64::from(self.own[b])
            + self
                .shaper
                .children(b)
                .iter()
                .map(|&c| self.load(c))
                .sum::<u64>()
    }

    /// Own tokens plus, per child, the larger of its rate and its commitment.
    fn committed(&self, b: BucketId) -> u64 {
        u64::from(self.own[b])
            + self
                .shaper
                .children(b)
                .iter()
                .map(|&c| self.rate(c).max(self.committed(c)))
                .sum::<u64>()
    }

    fn grantable(&self, b: BucketId) -> bool {
        let wanted = self.committed(b) + 1;
        wanted <= self.rate(b)
            || self
                .shaper
                .parent(b)
                .is_some_and(|p| wanted <= self.ceil(b) && self.grantable(p))
    }

    fn ancestor_over(&self, b: BucketId) -> bool {
        let mut id = self.shaper.parent(b);
        while let Some(a) = id {
            if self.committed(a) > self.ceil(a) {
                return true;
            }
            id = self.shaper.parent(a);
        }
        false
    }

    fn can_get(&self, b: BucketId) -> bool {
        !self.ancestor_over(b) && self.grantable(b)
    }
}

proptest! {
    // No regression files: this module owns no file outside `shaper/`.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random trees and random get/put/resize sequences: the shaper answers as the reference
    /// model does, never hands out more than the capacity or a ceil, and never starves a bucket
    /// below its rate.
    #[test]
    fn shaper_matches_model_and_respects_limits(
        (capacity, spec) in tree_strategy(),
        ops in prop::collection::vec(op_strategy(), 0..80),
    ) {
        let (shaper, ids) = build(capacity, &spec);
        let mut own = vec![0u32; ids.len()];
        for op in ops {
            match op {
                Op::Get(pick) => {
                    let b = ids[pick % ids.len()];
                    let model = Model { shaper: &shaper, own: own.clone() };
                    let expected = model.can_get(b);
                    // Never starved: below its rate (counting its children's reservations)
                    // and no ancestor over-committed after a shrink.
                    if !model.ancestor_over(b) && model.committed(b) < model.rate(b) {
                        prop_assert!(expected);
                    }
                    let got = shaper.try_get(b);
                    prop_assert_eq!(got, expected, "try_get({})", shaper.name(b));
                    if got {
                        own[b] += 1;
                        let model = Model { shaper: &shaper, own: own.clone() };
                        prop_assert!(model.load(ROOT) <= u64::from(shaper.capacity()));
                        let mut id = Some(b);
                        while let Some(a) = id {
                            prop_assert!(model.load(a) <= model.ceil(a), "ceil of {}", shaper.name(a));
                            id = shaper.parent(a);
                        }
                    }
                }
                Op::Put(pick) => {
                    let b = ids[pick % ids.len()];
                    if own[b] > 0 {
                        shaper.put(b);
                        own[b] -= 1;
                    }
                }
                Op::Resize(capacity) => shaper.resize(capacity),
            }
            let model = Model { shaper: &shaper, own: own.clone() };
            for &b in &ids {
                prop_assert_eq!(load(&shaper, b), model.load(b));
                // The counters are exactly the model's: handed out = own + lent, and borrowed
                // = what the rate does not cover.
                let g = grants(&shaper, b);
                let lent: u32 = shaper.children(b).iter().map(|&c| grants(&shaper, c).borrowed).sum();
                prop_assert_eq!(g.used, own[b] + lent);
                if b != ROOT {
                    let committed = model.committed(b);
                    prop_assert_eq!(u64::from(g.borrowed), committed.saturating_sub(model.rate(b)));
                }
            }
        }
        for (b, count) in own.iter().enumerate() {
            for _ in 0..*count {
                shaper.put(ids[b]);
            }
        }
        assert_idle(&shaper);
    }

    /// Without resizes every leaf holding fewer tokens than its rate gets one, whatever the
    /// other buckets hold.
    #[test]
    fn leaves_below_their_rate_always_get_a_token(
        (capacity, spec) in tree_strategy(),
        gets in prop::collection::vec(any::<usize>(), 0..80),
    ) {
        let (shaper, ids) = build(capacity, &spec);
        for pick in gets {
            let b = ids[pick % ids.len()];
            let below = load(&shaper, b) < u64::from(shaper.stats(b).token_rate);
            let got = shaper.try_get(b);
            if shaper.children(b).is_empty() && below {
                prop_assert!(got, "leaf {} starved", shaper.name(b));
            }
            prop_assert!(load(&shaper, ROOT) <= u64::from(capacity));
        }
    }
}

/// The cluster's use of the shaper (cluster.rs `admit`, `wait`, `dispatch_queued` and
/// `Grant::drop`), single-threaded: a FIFO per bucket, tokens taken directly only when the
/// bucket's own queue is empty (and only within the assured share while anyone waits), and
/// every queue served through [`Shaper::pick`] after each arrival and each release.
struct Sim {
    shaper: Shaper,
    ids: Vec<BucketId>,
    /// Tokens held per bucket (own requests), indexed by bucket id.
    held: Vec<u32>,
    /// Requests queued per bucket.
    queued: Vec<u32>,
}

impl Sim {
    fn assured(&self, b: BucketId) -> u32 {
        let children: u32 = self
            .shaper
            .children(b)
            .iter()
            .map(|&c| self.shaper.stats(c).token_rate)
            .sum();
        self.shaper.stats(b).token_rate.saturating_sub(children)
    }

    /// Tokens held by `b` and its descendants.
    fn subtree(&self, b: BucketId) -> u32 {
        self.held[b]
            + self
                .shaper
                .children(b)
                .iter()
                .map(|&c| self.subtree(c))
                .sum::<u32>()
    }

    /// Whether the limits (every ceil on the path, the capacity at the root) leave room for one
    /// more token of `b`.
    fn room(&self, b: BucketId) -> bool {
        let mut id = Some(b);
        while let Some(a) = id {
            if self.subtree(a) >= self.shaper.stats(a).token_ceil {
                return false;
            }
            id = self.shaper.parent(a);
        }
        true
    }

    /// Buckets with queued demand below their own assured share that the limits let in.
    fn starved_with_room(&self) -> Vec<BucketId> {
        self.ids
            .iter()
            .copied()
            .filter(|&b| self.queued[b] > 0 && self.held[b] < self.assured(b) && self.room(b))
            .collect()
    }

    /// Records a grant to `b`, checking it took no token a starved bucket was owed.
    fn granted(&mut self, b: BucketId) -> Result<(), TestCaseError> {
        if self.held[b] >= self.assured(b) {
            let starved = self.starved_with_room();
            prop_assert!(
                starved.is_empty(),
                "{} borrowed while {:?} waited below their assured share",
                self.shaper.name(b),
                starved
            );
        }
        self.held[b] += 1;
        Ok(())
    }

    fn arrive(&mut self, b: BucketId) -> Result<(), TestCaseError> {
        let anyone_waits = self.queued.iter().any(|&q| q > 0);
        let taken = self.queued[b] == 0
            && if anyone_waits {
                self.shaper.try_get_assured(b)
            } else {
                self.shaper.try_get(b)
            };
        if taken {
            self.granted(b)
        } else {
            self.queued[b] += 1;
            self.dispatch()
        }
    }

    fn finish(&mut self, b: BucketId) -> Result<(), TestCaseError> {
        self.shaper.put(b);
        self.held[b] -= 1;
        let owed = self.starved_with_room();
        let first = self.dispatch_first()?;
        if !owed.is_empty() {
            let first = first.expect("a starved bucket had room");
            prop_assert!(
                owed.contains(&first),
                "freed token went to {} while {:?} waited below their share",
                self.shaper.name(first),
                owed
            );
        }
        self.dispatch()
    }

    fn dispatch_first(&mut self) -> Result<Option<BucketId>, TestCaseError> {
        let queued = self.queued.clone();
        let Some(b) = self.shaper.pick(|id| queued[id] > 0) else {
            return Ok(None);
        };
        prop_assert!(
            queued[b] > 0,
            "picked {} without demand",
            self.shaper.name(b)
        );
        self.queued[b] -= 1;
        self.granted(b)?;
        Ok(Some(b))
    }

    fn dispatch(&mut self) -> Result<(), TestCaseError> {
        while self.dispatch_first()?.is_some() {}
        Ok(())
    }

    /// The invariants at rest.
    fn check(&self) -> Result<(), TestCaseError> {
        let capacity = self.shaper.capacity();
        prop_assert!(self.subtree(ROOT) <= capacity, "over capacity");
        for &b in &self.ids {
            let stats = self.shaper.stats(b);
            prop_assert_eq!(stats.load.current, u64::from(self.subtree(b)));
            prop_assert!(
                self.subtree(b) <= stats.token_ceil,
                "{} above its ceil",
                stats.name
            );
            // Work conservation: a bucket with queued demand has no room left.
            prop_assert!(
                self.queued[b] == 0 || !self.room(b),
                "{} waits while the limits leave it room",
                stats.name
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Step {
    Arrive(usize),
    Finish(usize),
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any::<usize>().prop_map(Step::Arrive),
        2 => any::<usize>().prop_map(Step::Finish),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// `htb` under the cluster's protocol, random trees and random arrivals and completions:
    /// total never above the capacity, no bucket above its ceil, no idle token while a queued
    /// request has room (work conservation), no token to a bucket at or above its assured share
    /// while a bucket below its own waits with room, and a freed token goes first to such a
    /// bucket.
    #[test]
    fn htb_assures_rates_respects_ceils_and_conserves_work(
        (capacity, spec) in tree_strategy(),
        steps in prop::collection::vec(step_strategy(), 0..120),
    ) {
        let (shaper, ids) = build_as(ShaperMode::Htb, capacity, &spec);
        let slots = ids.iter().max().map_or(1, |&m| m + 1);
        let mut sim = Sim { shaper, ids, held: vec![0; slots], queued: vec![0; slots] };
        for step in steps {
            match step {
                Step::Arrive(pick) => {
                    let b = sim.ids[pick % sim.ids.len()];
                    sim.arrive(b)?;
                }
                Step::Finish(pick) => {
                    let holding: Vec<BucketId> =
                        sim.ids.iter().copied().filter(|&b| sim.held[b] > 0).collect();
                    if let Some(&b) = holding.get(pick % holding.len().max(1)) {
                        sim.finish(b)?;
                    }
                }
            }
            sim.check()?;
        }
        // Every request ends: the queues drain and nothing stays held.
        while let Some(b) = sim.ids.iter().copied().find(|&b| sim.held[b] > 0) {
            sim.finish(b)?;
            sim.check()?;
        }
        // (Requests of a bucket whose ceil is 0 tokens stay queued: the cluster times them out.)
        assert_idle(&sim.shaper);
    }

    /// A bucket below its assured share gets a token at once, whatever the others hold, while
    /// every bucket stays within its assured share (they all fit in the capacity).
    #[test]
    fn htb_assured_shares_fit_together(
        (capacity, spec) in tree_strategy(),
        gets in prop::collection::vec(any::<usize>(), 0..80),
    ) {
        let (shaper, ids) = build_as(ShaperMode::Htb, capacity, &spec);
        let total: u32 = ids.iter().map(|&b| shaper.node(b).own_assured()).sum();
        prop_assert_eq!(total, capacity, "the own shares add up to the capacity");
        for pick in gets {
            let b = ids[pick % ids.len()];
            let own = shaper.node(b).own.load(Ordering::Acquire);
            let below = own < shaper.node(b).own_assured();
            prop_assert_eq!(shaper.try_get_assured(b), below, "{}", shaper.name(b));
        }
    }
}

// === concurrency ===

/// A tiny xorshift, so that the threads need no RNG crate.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn threads_never_exceed_ceilings_or_capacity() {
    for mode in [ShaperMode::X0, ShaperMode::Htb] {
        threads_never_exceed_ceilings_or_capacity_as(mode);
    }
}

fn threads_never_exceed_ceilings_or_capacity_as(mode: ShaperMode) {
    let X0 {
        shaper,
        vip,
        main,
        upload,
    } = x0_tree(mode);
    shaper.resize(20);
    let shaper = Arc::new(shaper);
    let buckets = [ROOT, vip, main, upload];
    // Per bucket, tokens held by it and its descendants as the threads see them: raised after a
    // grant and lowered before a put, so never more than the shaper really handed out.
    let held: Arc<Vec<AtomicI64>> = Arc::new((0..4).map(|_| AtomicI64::new(0)).collect());
    let ceil: Vec<i64> = buckets
        .iter()
        .map(|&b| i64::from(shaper.stats(b).token_ceil))
        .collect();
    let ceil = Arc::new(ceil);

    let threads: Vec<_> = (0..4u64)
        .map(|seed| {
            let (shaper, held, ceil) = (shaper.clone(), held.clone(), ceil.clone());
            thread::spawn(move || {
                let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut mine: Vec<usize> = Vec::new();
                for _ in 0..20_000 {
                    let r = next(&mut rng);
                    if r.is_multiple_of(3) && !mine.is_empty() {
                        let index = mine.swap_remove((r as usize / 3) % mine.len());
                        let mut id = Some(buckets[index]);
                        while let Some(b) = id {
                            let slot = buckets.iter().position(|&x| x == b).unwrap();
                            held[slot].fetch_sub(1, Ordering::SeqCst);
                            id = shaper.parent(b);
                        }
                        shaper.put(buckets[index]);
                    } else {
                        let index = (r >> 8) as usize % buckets.len();
                        if shaper.try_get(buckets[index]) {
                            mine.push(index);
                            let mut id = Some(buckets[index]);
                            while let Some(b) = id {
                                let slot = buckets.iter().position(|&x| x == b).unwrap();
                                let now = held[slot].fetch_add(1, Ordering::SeqCst) + 1;
                                assert!(now <= ceil[slot], "bucket {b} holds {now}");
                                id = shaper.parent(b);
                            }
                        }
                    }
                }
                for index in mine {
                    let mut id = Some(buckets[index]);
                    while let Some(b) = id {
                        let slot = buckets.iter().position(|&x| x == b).unwrap();
                        held[slot].fetch_sub(1, Ordering::SeqCst);
                        id = shaper.parent(b);
                    }
                    shaper.put(buckets[index]);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for (slot, &b) in buckets.iter().enumerate() {
        let stats = shaper.stats(b);
        assert!(stats.load.max <= u64::from(stats.token_ceil), "{stats:?}");
        assert!(stats.load.total > 0, "{stats:?}");
        assert_eq!(held[slot].load(Ordering::SeqCst), 0);
    }
    assert_idle(&shaper);
}

#[test]
fn threads_with_resizes_and_picks_leave_nothing_behind() {
    for mode in [ShaperMode::X0, ShaperMode::Htb] {
        threads_with_resizes_and_picks_leave_nothing_behind_as(mode);
    }
}

fn threads_with_resizes_and_picks_leave_nothing_behind_as(mode: ShaperMode) {
    let X0 {
        shaper,
        vip,
        main,
        upload,
    } = x0_tree(mode);
    let shaper = Arc::new(shaper);
    let buckets = [ROOT, vip, main, upload];
    let workers: Vec<_> = (0..3u64)
        .map(|seed| {
            let shaper = shaper.clone();
            thread::spawn(move || {
                let mut rng = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 7;
                let mut mine: Vec<BucketId> = Vec::new();
                for _ in 0..10_000 {
                    let r = next(&mut rng);
                    match r % 4 {
                        0 if !mine.is_empty() => {
                            let b = mine.swap_remove((r as usize >> 4) % mine.len());
                            shaper.put(b);
                        }
                        1 => {
                            let wanted = buckets[(r >> 8) as usize % buckets.len()];
                            if let Some(b) = shaper.pick(|b| b == wanted || b == ROOT) {
                                mine.push(b);
                            }
                        }
                        _ => {
                            let b = buckets[(r >> 8) as usize % buckets.len()];
                            if shaper.try_get(b) {
                                mine.push(b);
                            }
                        }
                    }
                }
                for b in mine {
                    shaper.put(b);
                }
            })
        })
        .collect();
    let resizer = {
        let shaper = shaper.clone();
        thread::spawn(move || {
            for round in 0..2_000u32 {
                shaper.resize([10, 3, 40, 0, 17][round as usize % 5]);
            }
        })
    };
    for worker in workers {
        worker.join().unwrap();
    }
    resizer.join().unwrap();
    shaper.resize(10);
    assert_idle(&shaper);
    // Back to the fresh shaper's answers.
    if mode == ShaperMode::X0 {
        assert_eq!(take(&shaper, ROOT, 20), 4);
        assert_eq!(take(&shaper, vip, 20), 1);
    } else {
        assert_eq!(take(&shaper, vip, 20), 3);
        assert_eq!(take(&shaper, ROOT, 20), 7);
    }
}

#[test]
fn shaper_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Shaper>();
}
