use super::*;
use proptest::prelude::*;

#[test]
fn undefined_to_online_after_rise_successes() {
    let mut m = StateMachine::new(3, 2);
    assert_eq!(m.on_success(), None);
    assert_eq!(m.on_success(), None);
    assert_eq!(
        m.on_success(),
        Some(Change {
            from: HealthState::Undefined,
            to: HealthState::Online
        })
    );
    assert_eq!(m.on_success(), None);
    assert_eq!(m.consecutive_successes(), 4);
}

#[test]
fn online_to_offline_after_fall_failures() {
    let mut m = StateMachine::with_state(HealthState::Online, 2, 3);
    assert_eq!(m.on_failure(), None);
    assert_eq!(m.on_failure(), None);
    assert_eq!(
        m.on_failure(),
        Some(Change {
            from: HealthState::Online,
            to: HealthState::Offline
        })
    );
    assert_eq!(m.on_failure(), None);
}

#[test]
fn success_breaks_a_failure_run() {
    let mut m = StateMachine::with_state(HealthState::Online, 1, 2);
    assert_eq!(m.on_failure(), None);
    assert_eq!(m.on_success(), None);
    assert_eq!(m.on_failure(), None);
    assert_eq!(m.state(), HealthState::Online);
}

#[test]
fn clear_failures_does_not_count_toward_rise() {
    let mut m = StateMachine::with_state(HealthState::Online, 2, 2);
    m.on_failure();
    m.clear_failures();
    assert_eq!(m.consecutive_failures(), 0);
    assert_eq!(m.on_failure(), None);
    let mut off = StateMachine::with_state(HealthState::Offline, 2, 2);
    off.clear_failures();
    assert_eq!(off.state(), HealthState::Offline);
    assert_eq!(off.consecutive_successes(), 0);
}

#[test]
fn undefined_fails_at_once() {
    let mut m = StateMachine::new(2, 5);
    assert_eq!(
        m.on_failure(),
        Some(Change {
            from: HealthState::Undefined,
            to: HealthState::Offline
        })
    );
}

#[test]
fn zero_thresholds_are_raised_to_one() {
    let m = StateMachine::new(0, 0);
    assert_eq!((m.rise(), m.fall()), (1, 1));
}

#[test]
fn state_strings_round_trip() {
    for s in [
        HealthState::Undefined,
        HealthState::Offline,
        HealthState::Online,
    ] {
        assert_eq!(s.as_str().parse::<HealthState>(), Ok(s));
        assert_eq!(HealthState::from_u8(s.to_u8()), s);
    }
    assert_eq!("Online".parse::<HealthState>(), Ok(HealthState::Online));
    assert!("up".parse::<HealthState>().is_err());
}

proptest! {
    /// Replays any history and checks each reported change against the thresholds.
    #[test]
    fn changes_respect_thresholds(
        rise in 1u32..6,
        fall in 1u32..6,
        history in proptest::collection::vec(any::<bool>(), 0..200),
    ) {
        let mut m = StateMachine::new(rise, fall);
        let mut run_ok = 0u32;
        let mut run_err = 0u32;
        let mut left_undefined = false;
        for ok in history {
            let before = m.state();
            let change = if ok {
                run_ok += 1;
                run_err = 0;
                m.on_success()
            } else {
                run_err += 1;
                run_ok = 0;
                m.on_failure()
            };
            if let Some(c) = change {
                prop_assert_ne!(c.from, c.to);
                prop_assert_eq!(c.from, before);
                prop_assert_eq!(c.to, m.state());
                prop_assert_ne!(c.to, HealthState::Undefined);
                match c.to {
                    HealthState::Online => prop_assert!(ok && run_ok >= rise),
                    HealthState::Offline => {
                        prop_assert!(!ok);
                        if before == HealthState::Online {
                            prop_assert!(run_err >= fall);
                        }
                    }
                    HealthState::Undefined => unreachable!(),
                }
            } else {
                prop_assert_eq!(before, m.state());
            }
            if m.state() != HealthState::Undefined {
                left_undefined = true;
            }
            if left_undefined {
                prop_assert_ne!(m.state(), HealthState::Undefined);
            }
            // The machine settles exactly when the runs say it should.
            if run_ok >= rise {
                prop_assert_eq!(m.state(), HealthState::Online);
            }
            if run_err >= fall {
                prop_assert_eq!(m.state(), HealthState::Offline);
            }
            prop_assert_eq!(m.consecutive_successes(), run_ok);
            prop_assert_eq!(m.consecutive_failures(), run_err);
        }
    }
}
