//! The rise/fall state machine of one endpoint, free of time and I/O.
//!
//! Every probe result and every counted live outcome is fed here. The machine answers whether the
//! endpoint changed state; the monitor ([`crate::monitor`]) adds clocks, logs and notifications.
//! Keeping this synchronous lets the property tests in `state/tests.rs` explore long histories.

use std::fmt;
use std::str::FromStr;

/// Health of one endpoint, with x0's names.
///
/// An endpoint starts [`Undefined`](HealthState::Undefined) and never returns there: the first
/// settled result moves it to `Online` or `Offline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HealthState {
    /// No verdict yet (start-up). Not in rotation.
    #[default]
    Undefined,
    /// Failed `fall` times in a row (or once, while still undefined). Not in rotation.
    Offline,
    /// Passed `rise` times in a row. In rotation (when also enabled).
    Online,
}

impl HealthState {
    /// The classic x0 JSON string: `undefined`, `offline` or `online`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Undefined => "undefined",
            HealthState::Offline => "offline",
            HealthState::Online => "online",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            HealthState::Undefined => 0,
            HealthState::Offline => 1,
            HealthState::Online => 2,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => HealthState::Offline,
            2 => HealthState::Online,
            _ => HealthState::Undefined,
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`HealthState::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown health state {0:?} (expected undefined, offline or online)")]
pub struct ParseStateError(String);

impl FromStr for HealthState {
    type Err = ParseStateError;

    /// Accepts the classic (`online`) and the rewrite (`Online`) spellings.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "undefined" => Ok(HealthState::Undefined),
            "offline" => Ok(HealthState::Offline),
            "online" => Ok(HealthState::Online),
            _ => Err(ParseStateError(s.to_owned())),
        }
    }
}

/// A state change reported by [`StateMachine`]: always `from != to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// State before.
    pub from: HealthState,
    /// State after.
    pub to: HealthState,
}

/// Consecutive-success/failure thresholds with hysteresis (HAProxy's `rise`/`fall`).
///
/// * A success resets the failure run; `rise` successes in a row make the endpoint `Online`.
/// * A failure resets the success run; `fall` failures in a row take an `Online` endpoint
///   `Offline`. An `Undefined` endpoint goes `Offline` at its first failure: it is not in rotation,
///   so there is nothing for the hysteresis to protect, and the offline interval applies at once.
/// * The success counter keeps counting after `Online` (x0 does not reset it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMachine {
    state: HealthState,
    rise: u32,
    fall: u32,
    successes: u32,
    failures: u32,
}

impl StateMachine {
    /// A machine in `Undefined`. Thresholds below 1 are raised to 1.
    pub fn new(rise: u32, fall: u32) -> Self {
        Self::with_state(HealthState::Undefined, rise, fall)
    }

    /// A machine starting in `state` (lazy mode assumes `Online`).
    pub fn with_state(state: HealthState, rise: u32, fall: u32) -> Self {
        StateMachine {
            state,
            rise: rise.max(1),
            fall: fall.max(1),
            successes: 0,
            failures: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Successes needed in a row to come online.
    pub fn rise(&self) -> u32 {
        self.rise
    }

    /// Failures needed in a row to go offline.
    pub fn fall(&self) -> u32 {
        self.fall
    }

    /// The current run of successes.
    pub fn consecutive_successes(&self) -> u32 {
        self.successes
    }

    /// The current run of failures.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// Feeds one success.
    pub fn on_success(&mut self) -> Option<Change> {
        self.successes = self.successes.saturating_add(1);
        self.failures = 0;
        if self.successes >= self.rise && self.state != HealthState::Online {
            return Some(self.set(HealthState::Online));
        }
        None
    }

    /// Feeds one failure.
    pub fn on_failure(&mut self) -> Option<Change> {
        self.failures = self.failures.saturating_add(1);
        self.successes = 0;
        let threshold = if self.state == HealthState::Undefined {
            1
        } else {
            self.fall
        };
        if self.failures >= threshold && self.state != HealthState::Offline {
            return Some(self.set(HealthState::Offline));
        }
        None
    }

    /// Whether one more failure would take the endpoint offline (from `Online` or
    /// `Undefined`); lets a caller veto that before feeding it (an ejection cap).
    pub fn failure_would_fall(&self) -> bool {
        let threshold = if self.state == HealthState::Undefined {
            1
        } else {
            self.fall
        };
        self.state != HealthState::Offline && self.failures.saturating_add(1) >= threshold
    }

    /// Changes the thresholds (raised to at least 1); they apply from the next result.
    pub fn set_thresholds(&mut self, rise: u32, fall: u32) {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
    }

    /// Clears the failure run without counting a success toward `rise`.
    ///
    /// Used for successful live traffic in modes where it is not a probe: it proves the endpoint
    /// works, so isolated live failures far apart must not add up to `fall`.
    pub fn clear_failures(&mut self) {
        self.failures = 0;
    }

    fn set(&mut self, to: HealthState) -> Change {
        let from = self.state;
        self.state = to;
        Change { from, to }
    }
}

#[cfg(test)]
mod tests;
