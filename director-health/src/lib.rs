//! Health monitoring for Tower services: probes, the rise/fall state machine, one monitor task
//! per endpoint, passive failure accounting and a health-aware `tower::discover::Discover`.
//!
//! # Where it sits
//!
//! In Director a request goes listener → service tree → router → cluster service, whose
//! scheduler picks a backend and hands the request to that backend's transport. This crate
//! decides which backends the scheduler may pick: every backend has a [`HealthHandle`] that the
//! cluster reads on the hot path ([`HealthHandle::is_available`], two atomic loads), a [`Monitor`]
//! task that probes it, and a [`PassiveHealthLayer`] around its transport that counts live
//! failures. It depends on no other Director crate; any Tower application can use it alone,
//! for example with `tower::balance` through [`HealthyEndpoints`].
//!
//! # Layout
//!
//! * [`state`]: the pure rise/fall [`StateMachine`] over [`HealthState`]
//!   (`Undefined`/`Offline`/`Online`), property-tested.
//! * [`mode`]: x0's modes ([`Mode`]: paranoid, opportunistic, lazy) and the pure rule deciding
//!   whether to probe now.
//! * [`config`]: [`HealthConfig`]: thresholds, interval, offline interval, jitter, timeout,
//!   sticky offline mode, passive rules.
//! * [`probe`]: the object-safe [`Probe`] trait, [`probe_fn`] for closures (how a FastCGI probe
//!   plugs in), [`HttpProbe`] (x0 probe headers, expected statuses, TCP or UNIX) and
//!   [`TcpProbe`].
//! * [`monitor`]: [`HealthHandle`] (shared live state, enable/disable, reports, snapshot,
//!   reconfigure, subscriptions) and [`Monitor`] (the probing task).
//! * [`passive`]: [`PassiveHealthLayer`], a Tower layer feeding live outcomes to the handle.
//! * [`discover`]: [`HealthyEndpoints`], `Change::Insert`/`Remove` as endpoints come and go.
//! * `test_util` (feature `test-util`): a scriptable loopback HTTP backend and a tiny client.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use director_health::{HealthConfig, HealthHandle, HealthState, Monitor, ProbeError, probe_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let config = HealthConfig::default()
//!     .thresholds(2, 1)
//!     .interval(Duration::from_secs(1));
//! let handle = HealthHandle::new("app-1", config);
//! // A real deployment uses `HttpProbe::builder(addr)...build()?` here.
//! let monitor = Monitor::spawn(handle.clone(), probe_fn(|| async { Ok::<(), ProbeError>(()) }));
//!
//! let mut status = handle.subscribe();
//! status.wait_for(|s| s.is_available()).await.unwrap();
//! assert_eq!(handle.state(), HealthState::Online);
//! assert_eq!(handle.snapshot().probes_sent, 2);
//! monitor.stop().await;
//! # }
//! ```

pub mod config;
pub mod discover;
pub mod mode;
pub mod monitor;
pub mod passive;
pub mod probe;
pub mod state;
#[cfg(feature = "test-util")]
pub mod test_util;

pub use config::HealthConfig;
pub use discover::HealthyEndpoints;
pub use mode::Mode;
pub use monitor::{
    Cause, EndpointStatus, HealthHandle, HealthSnapshot, Monitor, ProbeRecord, Transition,
};
pub use passive::{FailureKind, PassiveConfig, PassiveHealth, PassiveHealthLayer};
pub use probe::{
    BoxError, ExpectedStatus, HttpProbe, Probe, ProbeError, ProbeFailure, ProbeFuture, Target,
    TcpProbe, probe_fn,
};
pub use state::{HealthState, StateMachine};
