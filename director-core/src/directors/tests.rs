use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// The directors take real weights; most tests here speak in whole ones.
fn reals(weights: &[u32]) -> Vec<f64> {
    weights.iter().map(|&w| f64::from(w)).collect()
}

fn ring(members: &[(&str, u32)], replicas: u32) -> Ring {
    let members: Vec<(&str, f64)> = members.iter().map(|&(n, w)| (n, f64::from(w))).collect();
    Ring::new(&members, replicas)
}

// === hash_key ===

#[test]
fn hash_key_is_xxh3() {
    // The published XXH3-64 value of the empty input: keys hash the same on every node.
    assert_eq!(hash_key(b""), 0x2D06_8005_38D3_94C2);
    assert_eq!(hash_key(b"/a"), hash_key(b"/a"));
    assert_ne!(hash_key(b"/a"), hash_key(b"/b"));
}

// === SmoothWeighted ===

fn period(wrr: &SmoothWeighted) -> Vec<usize> {
    (0..wrr.len()).map(|n| wrr.at(n)).collect()
}

#[test]
fn smooth_nginx_interleaving_5_1_1() {
    let wrr = SmoothWeighted::new(&reals(&[5, 1, 1]));
    assert_eq!(period(&wrr), [0, 0, 1, 0, 2, 0, 0]);
    // The sequence repeats with the period.
    assert_eq!(wrr.at(7), 0);
    assert_eq!(wrr.at(9), 1);
}

#[test]
fn smooth_exact_shares_over_one_period() {
    // gcd 2: the period is 8, not 16.
    let wrr = SmoothWeighted::new(&reals(&[6, 0, 4, 2, 4]));
    assert_eq!(wrr.len(), 8);
    let mut counts = [0; 5];
    for m in period(&wrr) {
        counts[m] += 1;
    }
    assert_eq!(counts, [3, 0, 2, 1, 2]);
}

#[test]
fn smooth_all_zero_is_empty() {
    let wrr = SmoothWeighted::new(&reals(&[0, 0]));
    assert!(wrr.is_empty());
    assert_eq!(wrr.len(), 0);
    assert_eq!(wrr.order(3, 2).count(), 0);
    assert!(SmoothWeighted::new(&reals(&[])).is_empty());
}

#[test]
fn smooth_order_starts_at_pick_then_each_active_member_once() {
    let wrr = SmoothWeighted::new(&reals(&[1, 0, 2, 1, 0]));
    for n in 0..wrr.len() {
        let order: Vec<usize> = wrr.order(n, 5).collect();
        assert_eq!(order[0], wrr.at(n));
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 2, 3], "order {order:?}");
    }
    // The failover part continues in index order after the pick, wrapping.
    let n = (0..wrr.len()).find(|&n| wrr.at(n) == 2).unwrap();
    assert_eq!(wrr.order(n, 5).collect::<Vec<_>>(), [2, 3, 0]);
}

#[test]
fn smooth_large_weights_are_scaled_to_the_cap() {
    let wrr = SmoothWeighted::new(&reals(&[u32::MAX, 1, u32::MAX / 2]));
    assert!(wrr.len() <= 65_536 + 3, "period {}", wrr.len());
    let mut counts = [0usize; 3];
    for m in period(&wrr) {
        counts[m] += 1;
    }
    // The tiny member keeps one pick per period; the others keep their 2:1 ratio.
    assert_eq!(counts[1], 1);
    let ratio = counts[0] as f64 / counts[2] as f64;
    assert!((ratio - 2.0).abs() < 0.01, "ratio {ratio}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn smooth_period_shares_are_exact(weights in prop::collection::vec(0u32..40, 1..8)) {
        let wrr = SmoothWeighted::new(&reals(&weights));
        let sum: usize = weights.iter().map(|&w| w as usize).sum();
        let mut counts = vec![0usize; weights.len()];
        for m in period(&wrr) {
            counts[m] += 1;
        }
        for (i, &w) in weights.iter().enumerate() {
            // counts[i] / len == w / sum
            prop_assert_eq!(counts[i] * sum, w as usize * wrr.len());
        }
        if sum > 0 {
            let order: Vec<usize> = wrr.order(5, weights.len()).collect();
            let active = weights.iter().filter(|&&w| w > 0).count();
            prop_assert_eq!(order.len(), active);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), active);
            prop_assert!(order.iter().all(|&i| weights[i] > 0));
        }
    }
}

#[test]
fn smooth_real_weights_keep_their_ratio_exactly() {
    // Varnish's reals: 0.5 and 1.0 are 1:2, one pick and two per period of 3.
    let wrr = SmoothWeighted::new(&[0.5, 1.0]);
    assert_eq!(wrr.len(), 3);
    let mut picks = period(&wrr);
    picks.sort_unstable();
    assert_eq!(picks, [0, 1, 1]);
    // 10.0 is 10, and the same schedule as the integers 2:1.
    assert_eq!(
        period(&SmoothWeighted::new(&[10.0, 5.0])),
        period(&SmoothWeighted::new(&reals(&[2, 1])))
    );
    // 2.5 : 0.1 is 25 : 1.
    let wrr = SmoothWeighted::new(&[2.5, 0.1]);
    assert_eq!(wrr.len(), 26);
    assert_eq!(period(&wrr).iter().filter(|&&m| m == 1).count(), 1);
}

#[test]
fn smooth_weights_without_a_short_decimal_are_rounded_at_a_millionth() {
    // 1/3 and 2/3 have no finite decimal: made whole at 10^6, then scaled to the cap.
    let wrr = SmoothWeighted::new(&[1.0 / 3.0, 2.0 / 3.0]);
    assert!(wrr.len() <= 65_536 + 2, "period {}", wrr.len());
    let ones = period(&wrr).iter().filter(|&&m| m == 1).count() as f64;
    let ratio = ones / (wrr.len() as f64 - ones);
    assert!((ratio - 2.0).abs() < 0.001, "ratio {ratio}");
    // A tiny weight is still picked, once per period.
    let wrr = SmoothWeighted::new(&[1.0, 1e-9]);
    assert!(period(&wrr).contains(&1));
    // Negative and NaN weights count as 0.
    let wrr = SmoothWeighted::new(&[-1.0, f64::NAN, 2.0]);
    assert_eq!(period(&wrr), [2]);
    assert_eq!(wrr.order(0, 3).collect::<Vec<_>>(), [2]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn smooth_quarter_weights_shares_are_exact(quarters in prop::collection::vec(0u32..40, 1..8)) {
        // Weights in steps of 0.25 (0.25, 0.5, 1.75, ...): shares exact, as for whole numbers.
        let weights: Vec<f64> = quarters.iter().map(|&q| f64::from(q) / 4.0).collect();
        let wrr = SmoothWeighted::new(&weights);
        let sum: usize = quarters.iter().map(|&q| q as usize).sum();
        let mut counts = vec![0usize; weights.len()];
        for m in period(&wrr) {
            counts[m] += 1;
        }
        for (i, &q) in quarters.iter().enumerate() {
            prop_assert_eq!(counts[i] * sum, q as usize * wrr.len());
        }
    }

    #[test]
    fn smooth_decimal_weights_match_their_whole_multiples(tenths in prop::collection::vec(0u32..100, 1..6)) {
        // w / 10 schedules exactly as w: the same picks in the same order.
        let weights: Vec<f64> = tenths.iter().map(|&t| f64::from(t) / 10.0).collect();
        prop_assert_eq!(period(&SmoothWeighted::new(&weights)), period(&SmoothWeighted::new(&reals(&tenths))));
    }

    #[test]
    fn random_real_weights_pick_only_weighted_members(
        weights in prop::collection::vec(prop_oneof![Just(0.0), 0.001f64..1000.0], 1..8),
        r in any::<u64>(),
    ) {
        let random = WeightedRandom::new(&weights);
        match random.pick(r) {
            Some(i) => prop_assert!(weights[i] > 0.0),
            None => prop_assert!(weights.iter().all(|&w| w == 0.0)),
        }
        let order: Vec<usize> = random.order(r).collect();
        prop_assert_eq!(order.len(), weights.iter().filter(|&&w| w > 0.0).count());
    }
}

// === WeightedRandom ===

#[test]
fn random_10_5_shares() {
    let random = WeightedRandom::new(&reals(&[10, 5]));
    let mut rng = StdRng::seed_from_u64(7);
    let mut counts = [0u32; 2];
    for _ in 0..30_000 {
        counts[random.pick(rng.random()).unwrap()] += 1;
    }
    let share = f64::from(counts[0]) / 30_000.0;
    assert!((share - 2.0 / 3.0).abs() < 0.02, "share of a {share}");
    let share = f64::from(counts[1]) / 30_000.0;
    assert!((share - 1.0 / 3.0).abs() < 0.02, "share of b {share}");
}

#[test]
fn random_real_weights_share_as_their_ratio() {
    // 0.5 : 0.25 is 2 : 1, as 10.0 : 5.0 is.
    for weights in [[0.5, 0.25], [10.0, 5.0]] {
        let random = WeightedRandom::new(&weights);
        let mut rng = StdRng::seed_from_u64(11);
        let mut counts = [0u32; 2];
        for _ in 0..30_000 {
            counts[random.pick(rng.random()).unwrap()] += 1;
        }
        let share = f64::from(counts[0]) / 30_000.0;
        assert!(
            (share - 2.0 / 3.0).abs() < 0.02,
            "{weights:?}: share of a {share}"
        );
    }
}

#[test]
fn random_edges_of_the_range_and_zero_weights() {
    let random = WeightedRandom::new(&reals(&[0, 3, 0, 1, 0]));
    assert_eq!(random.pick(0), Some(1));
    assert_eq!(random.pick(u64::MAX), Some(3));
    // Member 1 owns the first three quarters of the range, member 3 the last one.
    assert_eq!(random.pick((3 << 62) - 1), Some(1));
    assert_eq!(random.pick(3 << 62), Some(3));
    assert_eq!(random.order(u64::MAX).collect::<Vec<_>>(), [3, 1]);
    assert_eq!(random.order(0).collect::<Vec<_>>(), [1, 3]);
}

#[test]
fn random_all_zero_picks_none() {
    let random = WeightedRandom::new(&reals(&[0, 0]));
    assert_eq!(random.pick(12345), None);
    assert_eq!(random.order(12345).count(), 0);
    assert_eq!(WeightedRandom::new(&reals(&[])).pick(1), None);
}

// === Ring ===

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("backend-{i}")).collect()
}

/// Key → owner's name, for `keys`.
fn owners(members: &[(&str, u32)], keys: &[u64]) -> Vec<String> {
    let ring = ring(members, 40);
    keys.iter()
        .map(|&k| members[ring.candidates(k).next().unwrap()].0.to_owned())
        .collect()
}

fn keys(seed: u64, n: usize) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random()).collect()
}

#[test]
fn empty_rings_have_no_candidates() {
    for ring in [
        ring(&[], 40),
        ring(&[("a", 0), ("b", 0)], 40),
        ring(&[("a", 1)], 0),
    ] {
        assert!(ring.is_empty());
        assert_eq!(ring.candidates(42).count(), 0);
        let p = ShardParams {
            alt: 0,
            warmup: 0.0,
            rampup: Duration::ZERO,
            healthy: Healthy::Ignore,
        };
        assert!(shard_order(&ring, 42, &p, |_| true, |_| None, 0.5).is_empty());
    }
}

#[test]
fn ring_points_scale_with_real_weights() {
    // replicas * weight, rounded: 0.5 of 40 is 20; a tiny weight keeps one point.
    assert_eq!(Ring::new(&[("a", 0.5), ("b", 1.0)], 40).len(), 60);
    assert_eq!(Ring::new(&[("a", 2.5)], 10).len(), 25);
    assert_eq!(Ring::new(&[("a", 1e-6)], 10).len(), 1);
    assert!(Ring::new(&[("a", f64::NAN), ("b", -1.0)], 10).is_empty());
    // A member's points depend only on its name and weight: 10.0 is the ring of 10.
    let real = Ring::new(&[("a", 10.0), ("b", 5.0)], 7);
    let whole = ring(&[("a", 10), ("b", 5)], 7);
    for k in keys(3, 200) {
        assert_eq!(real.candidates(k).next(), whole.candidates(k).next());
    }
}

#[test]
fn ring_key_maps_to_first_point_at_or_after_it() {
    let ring = ring(&[("a", 1), ("b", 1)], 10);
    assert_eq!(ring.len(), 20);
    // A key equal to a point belongs to that point's member; one past the top wraps around.
    let a0 = hash_key(b"a-0");
    assert_eq!(ring.candidates(a0).next(), Some(0));
    let b3 = hash_key(b"b-3");
    assert_eq!(ring.candidates(b3).next(), Some(1));
    let lowest = (0..10)
        .flat_map(|i| {
            [
                (hash_key(format!("a-{i}").as_bytes()), 0),
                (hash_key(format!("b-{i}").as_bytes()), 1),
            ]
        })
        .min()
        .unwrap();
    assert_eq!(ring.candidates(u64::MAX).next(), Some(lowest.1));
}

#[test]
fn ring_weights_shift_ownership_proportionally() {
    let keys = keys(3, 20_000);
    let names = names(3);
    for weights in [[1, 1, 1], [1, 2, 1], [1, 3, 2], [4, 1, 1]] {
        let members: Vec<(&str, u32)> = names.iter().map(String::as_str).zip(weights).collect();
        let ring = ring(&members, 160);
        let mut counts = [0usize; 3];
        for &k in &keys {
            counts[ring.candidates(k).next().unwrap()] += 1;
        }
        let total: u32 = weights.iter().sum();
        for i in 0..3 {
            let share = counts[i] as f64 / keys.len() as f64;
            let expected = f64::from(weights[i]) / f64::from(total);
            // Loose: ketama's spread with 160 points per unit of weight.
            assert!(
                (share - expected).abs() < 0.1,
                "weights {weights:?}: member {i} share {share}, expected {expected}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn ring_removal_moves_only_the_removed_members_keys(
        weights in prop::collection::vec(1u32..4, 2..7),
        removed in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let names = names(weights.len());
        let full: Vec<(&str, u32)> = names.iter().map(String::as_str).zip(weights.iter().copied()).collect();
        let removed = removed.index(full.len());
        let gone = full[removed].0;
        let mut rest = full.clone();
        rest.remove(removed);
        let keys = keys(seed, 500);

        let before = owners(&full, &keys);
        let after = owners(&rest, &keys);
        let ring = ring(&full, 40);
        for (i, &k) in keys.iter().enumerate() {
            if before[i] == gone {
                // Its keys go to the next distinct member clockwise.
                let second = ring.candidates(k).nth(1).unwrap();
                prop_assert_eq!(&after[i], full[second].0);
            } else {
                prop_assert_eq!(&after[i], &before[i]);
            }
        }

        // Adding it back (at the end of the list this time) restores the mapping exactly.
        let mut back = rest.clone();
        back.push(full[removed]);
        prop_assert_eq!(owners(&back, &keys), before);
    }

    #[test]
    fn ring_candidates_yield_each_member_with_points_once(
        weights in prop::collection::vec(0u32..4, 0..8),
        key in any::<u64>(),
    ) {
        let names = names(weights.len());
        let members: Vec<(&str, u32)> = names.iter().map(String::as_str).zip(weights.iter().copied()).collect();
        let ring = ring(&members, 20);
        let mut got: Vec<usize> = ring.candidates(key).collect();
        got.sort_unstable();
        let expected: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0).collect();
        prop_assert_eq!(got, expected);
    }
}

// === shard_order ===

const RAMPUP: Duration = Duration::from_secs(100);

fn shard_ring() -> (Ring, u64, Vec<usize>) {
    let names = names(5);
    let members: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    let ring = ring(&members, 40);
    let key = hash_key(b"/some/object");
    let walk = ring.candidates(key).collect();
    (ring, key, walk)
}

fn params(alt: usize, healthy: Healthy) -> ShardParams {
    ShardParams {
        alt,
        warmup: 0.0,
        rampup: Duration::ZERO,
        healthy,
    }
}

#[test]
fn shard_alt_picks_the_nth_alternative() {
    let (ring, key, walk) = shard_ring();
    for healthy in [Healthy::Chosen, Healthy::Ignore, Healthy::All] {
        for alt in 0..5 {
            let order = shard_order(&ring, key, &params(alt, healthy), |_| true, |_| None, 0.5);
            assert_eq!(order[0], walk[alt], "{healthy:?} alt={alt}");
            // Then the rest of the walk, wrapping.
            let expected: Vec<usize> = (0..5).map(|d| walk[(alt + d) % 5]).collect();
            assert_eq!(order, expected);
        }
        // alt is clamped to members - 1.
        let order = shard_order(&ring, key, &params(9, healthy), |_| true, |_| None, 0.5);
        assert_eq!(order[0], walk[4]);
    }
}

#[test]
fn shard_healthy_chosen_counts_skipped_members_whatever_their_health() {
    let (ring, key, walk) = shard_ring();
    let p = |alt| params(alt, Healthy::Chosen);
    // The owner is down: the next healthy member.
    let down = |i: usize| i != walk[0];
    assert_eq!(
        shard_order(&ring, key, &p(0), down, |_| None, 0.5)[0],
        walk[1]
    );
    // alt=1 skips the (dead) owner as one member.
    assert_eq!(
        shard_order(&ring, key, &p(1), down, |_| None, 0.5)[0],
        walk[1]
    );
    // The alternative is down: the next healthy one after it.
    let down = |i: usize| i != walk[1];
    let order = shard_order(&ring, key, &p(1), down, |_| None, 0.5);
    assert_eq!(order, [walk[2], walk[3], walk[4], walk[0]]);
}

#[test]
fn shard_healthy_all_counts_healthy_members_only() {
    let (ring, key, walk) = shard_ring();
    let down = |i: usize| i != walk[0] && i != walk[2];
    let order = shard_order(&ring, key, &params(1, Healthy::All), down, |_| None, 0.5);
    // Healthy walk: walk[1], walk[3], walk[4]; alt=1 is the second of them.
    assert_eq!(order, [walk[3], walk[4], walk[1]]);
    // The same under CHOSEN lands on walk[1] (walk[0] is skipped although dead).
    let order = shard_order(&ring, key, &params(1, Healthy::Chosen), down, |_| None, 0.5);
    assert_eq!(order[0], walk[1]);
}

#[test]
fn shard_healthy_ignore_returns_dead_members_and_skips_warmup() {
    let (ring, key, walk) = shard_ring();
    let mut p = params(0, Healthy::Ignore);
    p.warmup = 1.0;
    let order = shard_order(&ring, key, &p, |_| false, |_| None, 0.0);
    assert_eq!(order, walk);
}

#[test]
fn shard_without_healthy_members_has_no_candidates() {
    let (ring, key, _) = shard_ring();
    for healthy in [Healthy::Chosen, Healthy::All] {
        assert!(shard_order(&ring, key, &params(0, healthy), |_| false, |_| None, 0.5).is_empty());
    }
}

#[test]
fn shard_walk_running_out_falls_back_to_the_last_healthy_member() {
    let (ring, key, walk) = shard_ring();
    let up = |i: usize| i == walk[1] || i == walk[3];
    // Only two healthy members, alt=3 under ALL: the last healthy member passed.
    let order = shard_order(&ring, key, &params(3, Healthy::All), up, |_| None, 0.5);
    assert_eq!(order, [walk[3], walk[1]]);
    // alt=4 under CHOSEN: walk[4] is dead and the walk ends there.
    let order = shard_order(&ring, key, &params(4, Healthy::Chosen), up, |_| None, 0.5);
    assert_eq!(order, [walk[3], walk[1]]);
}

#[test]
fn shard_warmup_sends_its_fraction_to_the_next_member() {
    let (ring, key, walk) = shard_ring();
    let mut p = params(0, Healthy::Chosen);
    p.warmup = 0.3;
    let mut rng = StdRng::seed_from_u64(11);
    let n = 20_000;
    let mut next = 0;
    for _ in 0..n {
        let order = shard_order(&ring, key, &p, |_| true, |_| None, rng.random());
        match order[0] {
            m if m == walk[0] => assert_eq!(order[1], walk[1]),
            m if m == walk[1] => {
                assert_eq!(order[1], walk[0]);
                next += 1;
            }
            m => panic!("unexpected member {m}"),
        }
    }
    let share = f64::from(next) / f64::from(n);
    assert!((share - 0.3).abs() < 0.02, "warmup share {share}");
    // Not with alt > 0.
    p.alt = 1;
    assert_eq!(
        shard_order(&ring, key, &p, |_| true, |_| None, 0.0)[0],
        walk[1]
    );
    p.alt = 0;
    // Not while the next member ramps up.
    p.rampup = RAMPUP;
    let ramping = |i: usize| (i == walk[1]).then_some(Duration::from_secs(10));
    assert_eq!(
        shard_order(&ring, key, &p, |_| true, ramping, 0.0)[0],
        walk[0]
    );
    // The alternative is the next healthy member.
    p.rampup = Duration::ZERO;
    let down = |i: usize| i != walk[1];
    assert_eq!(shard_order(&ring, key, &p, down, |_| None, 0.0)[0], walk[2]);
}

#[test]
fn shard_rampup_grows_a_new_members_share() {
    let (ring, key, walk) = shard_ring();
    let mut p = params(0, Healthy::Chosen);
    p.rampup = RAMPUP;
    p.warmup = 0.5; // not applied while the chosen member ramps up
    let n = 10_000;
    let mut previous = -1.0;
    for secs in [0u64, 25, 50, 75] {
        let mut rng = StdRng::seed_from_u64(secs);
        let up_for = |i: usize| (i == walk[0]).then_some(Duration::from_secs(secs));
        let kept = (0..n)
            .filter(|_| shard_order(&ring, key, &p, |_| true, up_for, rng.random())[0] == walk[0])
            .count();
        let share = kept as f64 / f64::from(n);
        let expected = secs as f64 / 100.0;
        assert!(
            (share - expected).abs() < 0.03,
            "after {secs}s: share {share}"
        );
        assert!(share > previous);
        previous = share;
    }
    // Past the rampup (or unknown), the member has all its traffic again.
    for up_for in [Some(RAMPUP), None] {
        p.warmup = 0.0;
        let order = shard_order(&ring, key, &p, |_| true, |_| up_for, 0.999);
        assert_eq!(order[0], walk[0]);
    }
    // Nothing is diverted while the alternative ramps up too.
    let both = |i: usize| (i == walk[0] || i == walk[1]).then_some(Duration::ZERO);
    assert_eq!(
        shard_order(&ring, key, &p, |_| true, both, 0.999)[0],
        walk[0]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn shard_candidates_are_distinct_and_healthy(
        up in prop::collection::vec(any::<bool>(), 5),
        alt in 0usize..7,
        policy in 0u8..3,
        warmup in 0.0f64..1.0,
        r in 0.0f64..1.0,
        key in any::<u64>(),
    ) {
        let (ring, _, _) = shard_ring();
        let healthy = [Healthy::Chosen, Healthy::Ignore, Healthy::All][usize::from(policy)];
        let p = ShardParams { alt, warmup, rampup: RAMPUP, healthy };
        let order = shard_order(&ring, key, &p, |i| up[i], |i| Some(Duration::from_secs(i as u64 * 40)), r);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        sorted.dedup();
        prop_assert_eq!(sorted.len(), order.len());
        let alive = up.iter().filter(|&&u| u).count();
        if healthy == Healthy::Ignore {
            prop_assert_eq!(order.len(), 5);
        } else {
            prop_assert_eq!(order.len(), alive);
            prop_assert!(order.iter().all(|&i| up[i]));
        }
    }

    #[test]
    fn shard_health_change_moves_only_the_dead_members_keys(
        dead in 0usize..5,
        seed in any::<u64>(),
    ) {
        let (ring, _, _) = shard_ring();
        let p = params(0, Healthy::Chosen);
        for key in keys(seed, 200) {
            let walk: Vec<usize> = ring.candidates(key).collect();
            let before = shard_order(&ring, key, &p, |_| true, |_| None, 0.5)[0];
            let after = shard_order(&ring, key, &p, |i| i != dead, |_| None, 0.5)[0];
            if before == dead {
                prop_assert_eq!(after, walk[1]);
            } else {
                prop_assert_eq!(after, before);
            }
        }
    }
}

// === Fallback ===

#[test]
fn fallback_takes_the_first_healthy_member_and_fails_back() {
    let fallback = Fallback::new(false);
    assert_eq!(fallback.order(3, |_| true), [0, 1, 2]);
    // The first member dies: the second one, then the rest.
    assert_eq!(fallback.order(3, |i| i != 0), [1, 2]);
    // It returns: traffic goes back to it at once.
    assert_eq!(fallback.order(3, |_| true), [0, 1, 2]);
    assert!(fallback.order(3, |_| false).is_empty());
    assert!(fallback.order(0, |_| true).is_empty());
}

#[test]
fn fallback_sticky_keeps_the_current_member() {
    let fallback = Fallback::new(true);
    assert_eq!(fallback.order(3, |_| true), [0, 1, 2]);
    // The first member dies: the second one takes over.
    assert_eq!(fallback.order(3, |i| i != 0), [1, 2]);
    // The first returns, but the second stays current (the rest in list order for spill-over).
    assert_eq!(fallback.order(3, |_| true), [1, 0, 2]);
    // Now the second dies: on to the third, not back to the first.
    assert_eq!(fallback.order(3, |i| i != 1), [2, 0]);
    // The third dies: the search wraps to the start.
    assert_eq!(fallback.order(3, |i| i == 0 || i == 1), [0, 1]);
    // Nothing healthy: no candidates, and the current member is kept.
    assert!(fallback.order(3, |_| false).is_empty());
    assert_eq!(fallback.order(3, |_| true), [0, 1, 2]);
}

#[test]
fn fallback_sticky_survives_a_shrunk_list() {
    let fallback = Fallback::new(true);
    assert_eq!(fallback.order(4, |i| i == 3), [3]);
    assert_eq!(fallback.order(2, |_| true), [0, 1]);
    // The first pick after the shrink made member 0 current; it stays.
    assert_eq!(fallback.order(2, |_| true), [0, 1]);
    assert_eq!(fallback.order(4, |_| true), [0, 1, 2, 3]);
}
