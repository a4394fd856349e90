use proptest::prelude::*;

use super::*;
use crate::{backend::Health, transport::TransportOptions};

fn pool(capacities: &[u32]) -> Vec<Arc<Backend>> {
    capacities
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let b = Backend::new(
                format!("b{i}"),
                "http://127.0.0.1:1".parse().unwrap(),
                TransportOptions::default(),
            );
            b.set_capacity(c);
            Arc::new(b)
        })
        .collect()
}

fn names(picks: &[Arc<Backend>]) -> Vec<&str> {
    picks.iter().map(|b| &**b.name()).collect()
}

#[test]
fn round_robin_alternates_and_skips_full_backends() {
    let s = Scheduler::new(SchedulerKind::RoundRobin);
    let p = pool(&[0, 0, 0]);
    let picks: Vec<_> = (0..6)
        .map(|_| {
            s.pick(0, &p, None, PickContext::default(), |_| false)
                .unwrap()
        })
        .collect();
    assert_eq!(names(&picks), ["b0", "b1", "b2", "b0", "b1", "b2"]);

    let p = pool(&[1, 1]);
    let a = s
        .pick(0, &p, None, PickContext::default(), |_| false)
        .unwrap();
    let b = s
        .pick(0, &p, None, PickContext::default(), |_| false)
        .unwrap();
    assert_ne!(a.name(), b.name());
    assert_eq!(
        s.pick(0, &p, None, PickContext::default(), |_| false)
            .unwrap_err(),
        Refusal::Overloaded
    );
    a.release();
    assert_eq!(
        s.pick(0, &p, None, PickContext::default(), |_| false)
            .unwrap()
            .name(),
        a.name(),
        "the one that freed"
    );
}

#[test]
fn weighted_round_robin_honours_real_weights() {
    // Varnish's 0.5 and 1.0: 1:2 over every period of 3 picks.
    let s = Scheduler::new(SchedulerKind::WeightedRoundRobin);
    let p = pool(&[0, 0]);
    p[0].set_weight(0.5);
    p[1].set_weight(1.0);
    let directors = PoolDirectors::new(&p, 40, false);
    for _ in 0..4 {
        let mut counts = [0; 2];
        for _ in 0..3 {
            let b = s
                .pick(0, &p, Some(&directors), PickContext::default(), |_| false)
                .unwrap();
            b.release();
            counts[usize::from(&**b.name() == "b1")] += 1;
        }
        assert_eq!(counts, [1, 2]);
    }
    // A runtime weight leaves the configured one alone.
    p[0].configure_weight(crate::weight::Weight::new(4.0).unwrap());
    p[0].set_weight(2.0);
    assert_eq!((p[0].weight(), p[0].initial_weight()), (2.0, 4.0));
}

#[test]
fn chance_fills_backends_in_order() {
    let s = Scheduler::new(SchedulerKind::Chance);
    let p = pool(&[2, 2]);
    let picks: Vec<_> = (0..4)
        .map(|_| {
            s.pick(0, &p, None, PickContext::default(), |_| false)
                .unwrap()
        })
        .collect();
    assert_eq!(names(&picks), ["b0", "b0", "b1", "b1"]);
}

#[test]
fn least_load_prefers_free_capacity() {
    let s = Scheduler::new(SchedulerKind::LeastLoad);
    let p = pool(&[2, 5, 3]);
    let picks: Vec<_> = (0..5)
        .map(|_| {
            s.pick(0, &p, None, PickContext::default(), |_| false)
                .unwrap()
        })
        .collect();
    // free 2,5,3 → b1; 2,4,3 → b1; 2,3,3 (tie: config order) → b1; 2,2,3 → b2; 2,2,2 → b0
    assert_eq!(names(&picks), ["b1", "b1", "b1", "b2", "b0"]);
}

#[test]
fn unavailable_versus_overloaded() {
    let s = Scheduler::default();
    let p = pool(&[1, 1]);
    p[0].set_enabled(false);
    p[1].set_health(Health::Offline);
    assert_eq!(
        s.pick(0, &p, None, PickContext::default(), |_| false)
            .unwrap_err(),
        Refusal::Unavailable
    );
    p[1].set_health(Health::Online);
    s.pick(0, &p, None, PickContext::default(), |_| false)
        .unwrap();
    assert_eq!(
        s.pick(0, &p, None, PickContext::default(), |_| false)
            .unwrap_err(),
        Refusal::Overloaded
    );
    assert_eq!(
        s.pick(0, &[], None, PickContext::default(), |_| false)
            .unwrap_err(),
        Refusal::Unavailable
    );
}

#[test]
fn skipped_backends_are_not_picked() {
    let s = Scheduler::default();
    let p = pool(&[0, 0]);
    for _ in 0..4 {
        let b = s
            .pick(0, &p, None, PickContext::default(), |b| &**b.name() == "b0")
            .unwrap();
        assert_eq!(&**b.name(), "b1");
    }
}

#[derive(Debug, Clone)]
struct State {
    capacity: u32,
    in_flight: u32,
    enabled: bool,
    online: bool,
}

fn state() -> impl Strategy<Value = State> {
    (0u32..4, 0u32..5, any::<bool>(), any::<bool>()).prop_map(
        |(capacity, in_flight, enabled, online)| State {
            capacity,
            in_flight,
            enabled,
            online,
        },
    )
}

proptest! {
    #[test]
    fn never_picks_a_disabled_offline_or_full_backend(
        states in proptest::collection::vec(state(), 0..8),
        kind in prop_oneof![Just(SchedulerKind::RoundRobin), Just(SchedulerKind::Chance), Just(SchedulerKind::LeastLoad)],
        rounds in 1usize..10,
    ) {
        let p = pool(&states.iter().map(|s| s.capacity).collect::<Vec<_>>());
        for (b, s) in p.iter().zip(&states) {
            for _ in 0..s.in_flight {
                let _ = b.try_acquire(true);
            }
            b.set_enabled(s.enabled);
            b.set_health(if s.online { Health::Online } else { Health::Offline });
        }
        let sched = Scheduler::new(kind);
        for _ in 0..rounds {
            let before: Vec<u32> = p.iter().map(|b| b.in_flight()).collect();
            match sched.pick(0, &p, None, PickContext::default(), |_| false) {
                Ok(b) => {
                    let i = p.iter().position(|x| Arc::ptr_eq(x, &b)).unwrap();
                    prop_assert!(states[i].enabled && states[i].online);
                    prop_assert!(states[i].capacity == 0 || before[i] < states[i].capacity);
                }
                Err(Refusal::Overloaded) => {
                    prop_assert!(p.iter().zip(&states).any(|(b, s)| s.enabled && s.online && s.capacity > 0 && b.in_flight() >= s.capacity));
                    prop_assert!(!p.iter().zip(&states).any(|(b, s)| s.enabled && s.online && (s.capacity == 0 || b.in_flight() < s.capacity)));
                }
                Err(Refusal::Unavailable) => {
                    prop_assert!(!states.iter().any(|s| s.enabled && s.online));
                }
            }
        }
    }

    #[test]
    fn rotation_visits_every_member_once(start in 0usize..1000, len in 0usize..50) {
        let mut seen: Vec<usize> = rotation(start % len.max(1), len).collect();
        seen.sort_unstable();
        prop_assert_eq!(seen, (0..len).collect::<Vec<_>>());
    }
}
