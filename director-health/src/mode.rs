//! The three x0 health-check modes and the pure rule deciding, at each tick, whether to probe.
//!
//! x0 stored the mode but ran every backend as `paranoid`; here each mode does what its name
//! promises. The rule is a plain function of the endpoint's situation so it is unit-tested
//! without clocks; the monitor ([`crate::monitor`]) only asks it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::state::HealthState;

/// When the monitor sends probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Probe every interval, whatever the state or traffic.
    #[default]
    Paranoid,
    /// Successful live traffic counts as a passing probe; probes go only to endpoints that are
    /// not online, that saw a failure, or that had no successful live request for the idle time.
    Opportunistic,
    /// Endpoints start assumed online; probes run only after a failure until the endpoint is
    /// back, then stop. Failures of an online endpoint come from live traffic, so lazy mode needs
    /// passive health ([`crate::PassiveConfig`]) to notice anything.
    Lazy,
}

impl Mode {
    /// The x0 name: `paranoid`, `opportunistic` or `lazy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Paranoid => "paranoid",
            Mode::Opportunistic => "opportunistic",
            Mode::Lazy => "lazy",
        }
    }

    /// The state a new endpoint starts in: `Online` for lazy (assumed healthy), else `Undefined`.
    pub fn initial_state(self) -> HealthState {
        match self {
            Mode::Lazy => HealthState::Online,
            Mode::Paranoid | Mode::Opportunistic => HealthState::Undefined,
        }
    }

    /// Whether a successful live request counts as a passing probe (toward `rise`).
    pub fn live_success_is_probe(self) -> bool {
        matches!(self, Mode::Opportunistic)
    }

    /// Whether the monitor should probe now.
    pub fn should_probe(self, ctx: &ProbeContext) -> bool {
        let troubled = ctx.state != HealthState::Online || ctx.consecutive_failures > 0;
        match self {
            Mode::Paranoid => true,
            Mode::Lazy => troubled,
            Mode::Opportunistic => {
                troubled
                    || ctx
                        .since_live_success
                        .is_none_or(|idle| idle >= ctx.idle_after)
            }
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`Mode::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown health-check mode {0:?} (expected paranoid, opportunistic or lazy)")]
pub struct ParseModeError(String);

impl FromStr for Mode {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "paranoid" => Ok(Mode::Paranoid),
            "opportunistic" => Ok(Mode::Opportunistic),
            "lazy" => Ok(Mode::Lazy),
            _ => Err(ParseModeError(s.to_owned())),
        }
    }
}

/// What [`Mode::should_probe`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeContext {
    /// The endpoint's state.
    pub state: HealthState,
    /// Its current run of failures (probed or passive).
    pub consecutive_failures: u32,
    /// Time since the last successful live request, `None` if there was none.
    pub since_live_success: Option<Duration>,
    /// How long without successful traffic makes an endpoint idle (opportunistic).
    pub idle_after: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx(state: HealthState, failures: u32, since: Option<u64>) -> ProbeContext {
        ProbeContext {
            state,
            consecutive_failures: failures,
            since_live_success: since.map(Duration::from_secs),
            idle_after: Duration::from_secs(2),
        }
    }

    #[test]
    fn lazy_probes_only_when_troubled() {
        assert!(!Mode::Lazy.should_probe(&ctx(HealthState::Online, 0, None)));
        assert!(Mode::Lazy.should_probe(&ctx(HealthState::Online, 1, None)));
        assert!(Mode::Lazy.should_probe(&ctx(HealthState::Offline, 0, Some(0))));
        assert!(Mode::Lazy.should_probe(&ctx(HealthState::Undefined, 0, None)));
    }

    #[test]
    fn opportunistic_probes_idle_endpoints() {
        let m = Mode::Opportunistic;
        assert!(!m.should_probe(&ctx(HealthState::Online, 0, Some(1))));
        assert!(m.should_probe(&ctx(HealthState::Online, 0, Some(2))));
        assert!(m.should_probe(&ctx(HealthState::Online, 0, None)));
        assert!(m.should_probe(&ctx(HealthState::Online, 1, Some(0))));
        assert!(m.should_probe(&ctx(HealthState::Offline, 0, Some(0))));
    }

    #[test]
    fn names_round_trip() {
        for m in [Mode::Paranoid, Mode::Opportunistic, Mode::Lazy] {
            assert_eq!(m.as_str().parse::<Mode>(), Ok(m));
            assert_eq!(m.to_string(), m.as_str());
        }
        assert!("eager".parse::<Mode>().is_err());
        assert_eq!(Mode::Lazy.initial_state(), HealthState::Online);
        assert_eq!(Mode::Paranoid.initial_state(), HealthState::Undefined);
    }

    fn any_state() -> impl Strategy<Value = HealthState> {
        prop_oneof![
            Just(HealthState::Undefined),
            Just(HealthState::Offline),
            Just(HealthState::Online)
        ]
    }

    proptest! {
        /// Paranoid probes whenever lazy or opportunistic would, and lazy never probes more than
        /// opportunistic; a troubled endpoint is probed in every mode.
        #[test]
        fn modes_are_ordered(
            state in any_state(),
            failures in 0u32..4,
            since in proptest::option::of(0u64..10),
        ) {
            let c = ctx(state, failures, since);
            let lazy = Mode::Lazy.should_probe(&c);
            let opp = Mode::Opportunistic.should_probe(&c);
            prop_assert!(Mode::Paranoid.should_probe(&c));
            prop_assert!(!lazy || opp);
            if state != HealthState::Online || failures > 0 {
                prop_assert!(lazy && opp);
            }
        }
    }
}
