//! Settings of one endpoint's health: mode, thresholds, timing, sticky offline, passive health.
//!
//! Plain data with x0's defaults where x0 had one; `director-bin` fills it from the cluster file.

use std::time::Duration;

use rand::Rng;

use crate::mode::Mode;
use crate::passive::PassiveConfig;
use crate::state::HealthState;

/// Health settings of one endpoint. Build with [`HealthConfig::default`] and the setters.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// When probes are sent. Default: paranoid.
    pub mode: Mode,
    /// Consecutive successes to come online. Default: 2 (x0 classic).
    pub rise: u32,
    /// Consecutive failures to go offline. Default: 1 (x0: any failure takes a backend out).
    pub fall: u32,
    /// Time between probes while undefined or online. Default: 2 s (x0 classic).
    pub interval: Duration,
    /// Time between probes while offline (HAProxy's `downinter`). Default: 2 s.
    pub offline_interval: Duration,
    /// Upper bound of the random delay added to every interval, spreading probes of many
    /// endpoints (HAProxy's `spread-checks`). The first probe is delayed by up to this too.
    /// Default: zero.
    pub jitter: Duration,
    /// Deadline of one probe; a late probe counts as failed. Default: 2 s.
    pub timeout: Duration,
    /// Opportunistic mode: an online endpoint without a successful live request for this long is
    /// probed. `None` means [`interval`](Self::interval).
    pub idle_after: Option<Duration>,
    /// Sticky offline mode (x0 5.8): an endpoint that comes back from `Offline` is disabled
    /// until an operator enables it. The first `Undefined → Online` does not count.
    pub sticky_offline: bool,
    /// Which live failures count toward `fall`.
    pub passive: PassiveConfig,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            mode: Mode::Paranoid,
            rise: 2,
            fall: 1,
            interval: Duration::from_secs(2),
            offline_interval: Duration::from_secs(2),
            jitter: Duration::ZERO,
            timeout: Duration::from_secs(2),
            idle_after: None,
            sticky_offline: false,
            passive: PassiveConfig::default(),
        }
    }
}

impl HealthConfig {
    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets `rise` and `fall`.
    pub fn thresholds(mut self, rise: u32, fall: u32) -> Self {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
        self
    }

    /// Sets both the normal and the offline interval.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self.offline_interval = interval;
        self
    }

    /// Sets the interval used while offline.
    pub fn offline_interval(mut self, interval: Duration) -> Self {
        self.offline_interval = interval;
        self
    }

    /// Sets the jitter bound.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the probe timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the opportunistic idle time.
    pub fn idle_after(mut self, idle: Duration) -> Self {
        self.idle_after = Some(idle);
        self
    }

    /// Turns sticky offline mode on or off.
    pub fn sticky_offline(mut self, sticky: bool) -> Self {
        self.sticky_offline = sticky;
        self
    }

    /// Sets the passive-health rules.
    pub fn passive(mut self, passive: PassiveConfig) -> Self {
        self.passive = passive;
        self
    }

    /// The opportunistic idle time in effect.
    pub fn effective_idle_after(&self) -> Duration {
        self.idle_after.unwrap_or(self.interval)
    }

    /// The base delay before the next probe, for an endpoint in `state`.
    pub fn interval_for(&self, state: HealthState) -> Duration {
        match state {
            HealthState::Offline => self.offline_interval,
            HealthState::Undefined | HealthState::Online => self.interval,
        }
    }

    /// The delay before the next probe: the base for `state` plus a jitter in `[0, jitter]`.
    pub fn next_delay<R: Rng + ?Sized>(&self, state: HealthState, rng: &mut R) -> Duration {
        self.interval_for(state) + jitter(self.jitter, rng)
    }
}

/// A uniform random duration in `[0, max]` (zero when `max` is zero).
pub(crate) fn jitter<R: Rng + ?Sized>(max: Duration, rng: &mut R) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn offline_interval_applies_only_offline() {
        let c = HealthConfig::default()
            .interval(Duration::from_secs(5))
            .offline_interval(Duration::from_secs(1));
        assert_eq!(c.interval_for(HealthState::Online), Duration::from_secs(5));
        assert_eq!(
            c.interval_for(HealthState::Undefined),
            Duration::from_secs(5)
        );
        assert_eq!(c.interval_for(HealthState::Offline), Duration::from_secs(1));
        assert_eq!(c.effective_idle_after(), Duration::from_secs(5));
    }

    #[test]
    fn zero_jitter_is_exact() {
        let c = HealthConfig::default();
        let mut rng = SmallRng::seed_from_u64(7);
        assert_eq!(
            c.next_delay(HealthState::Online, &mut rng),
            Duration::from_secs(2)
        );
    }

    proptest! {
        #[test]
        fn jitter_stays_in_bounds(seed in any::<u64>(), max_ms in 0u64..10_000) {
            let c = HealthConfig::default().jitter(Duration::from_millis(max_ms));
            let mut rng = SmallRng::seed_from_u64(seed);
            let d = c.next_delay(HealthState::Online, &mut rng);
            prop_assert!(d >= c.interval);
            prop_assert!(d <= c.interval + c.jitter);
        }
    }
}
