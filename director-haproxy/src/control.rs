//! How the runtime socket changes backends: the small [`Control`] trait.
//!
//! The socket parses HAProxy's commands and calls this trait; it never touches clusters itself.
//! [`RegistryControl`] applies changes live to the clusters of a
//! [`director_core::registry::Registry`]. An application that keeps clusters elsewhere too (a
//! persistent cluster store, so that changes survive a restart) implements the trait over that
//! store, so a change made here is the same as one made through the JSON API.

use std::sync::Arc;

use director_core::{backend::AdminState, cluster::Cluster, registry::Registry, weight::Weight};

/// Why a change was refused. The runtime socket answers each with HAProxy's wording.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No cluster (HAProxy: backend) has this name.
    #[error("No such backend.")]
    NoSuchCluster,
    /// The cluster has no backend (HAProxy: server) of this name.
    #[error("No such server.")]
    NoSuchServer,
    /// The change is not allowed (for example on a static cluster), or could not be stored.
    #[error("{0}")]
    Refused(String),
}

/// Changes to backends requested through the runtime socket.
///
/// Implementations apply a change completely (live, and wherever it must persist) before
/// returning `Ok`. Both methods are called from an async task but must not block for long.
pub trait Control: Send + Sync + 'static {
    /// Sets the operator state of `server` in `cluster`: `Ready`, `Drain` (a member that is
    /// checked but gets no new balanced requests) or `Maint` (disabled).
    fn set_state(&self, cluster: &str, server: &str, state: AdminState)
    -> Result<(), ControlError>;

    /// Sets the weight of `server` in `cluster` (the socket allows 0..=256, as HAProxy does;
    /// reals too): the weight it is configured with, and the one the schedulers use.
    fn set_weight(&self, cluster: &str, server: &str, weight: Weight) -> Result<(), ControlError>;

    /// Sets the weight the schedulers use for `server` to `percent` % of its configured
    /// (initial) weight: HAProxy's `set weight <b>/<s> <n>%`. A runtime change that leaves the
    /// configured weight alone (so `100%` restores it) and is never persisted.
    fn set_relative_weight(
        &self,
        cluster: &str,
        server: &str,
        percent: f64,
    ) -> Result<(), ControlError>;
}

/// Sets `server`'s current weight in the live `cluster` to `percent` % of its configured
/// weight and rebuilds the cluster's weighted schedules: [`Control::set_relative_weight`] for
/// any implementation.
pub fn scale_weight(
    cluster: &Arc<Cluster>,
    server: &str,
    percent: f64,
) -> Result<(), ControlError> {
    let backend = cluster.backend(server).ok_or(ControlError::NoSuchServer)?;
    backend.set_weight(backend.initial_weight() * percent / 100.0);
    cluster.reschedule();
    Ok(())
}

/// Applies changes live to the clusters of a registry (nothing is written anywhere).
#[derive(Clone, Debug)]
pub struct RegistryControl {
    registry: Arc<Registry>,
}

impl RegistryControl {
    /// Changes the clusters of `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        RegistryControl { registry }
    }
}

impl Control for RegistryControl {
    fn set_state(
        &self,
        cluster: &str,
        server: &str,
        state: AdminState,
    ) -> Result<(), ControlError> {
        let snapshot = self.registry.load();
        let cluster = snapshot
            .cluster(cluster)
            .ok_or(ControlError::NoSuchCluster)?;
        if cluster.set_backend_admin_state(server, state) {
            Ok(())
        } else {
            Err(ControlError::NoSuchServer)
        }
    }

    fn set_weight(&self, cluster: &str, server: &str, weight: Weight) -> Result<(), ControlError> {
        // Live only: the registry's clusters have no file; the new weight becomes the
        // configured one until the next reload.
        let snapshot = self.registry.load();
        let cluster = snapshot
            .cluster(cluster)
            .ok_or(ControlError::NoSuchCluster)?;
        let backend = cluster.backend(server).ok_or(ControlError::NoSuchServer)?;
        backend.configure_weight(weight);
        cluster.reschedule();
        Ok(())
    }

    fn set_relative_weight(
        &self,
        cluster: &str,
        server: &str,
        percent: f64,
    ) -> Result<(), ControlError> {
        let snapshot = self.registry.load();
        let cluster = snapshot
            .cluster(cluster)
            .ok_or(ControlError::NoSuchCluster)?;
        scale_weight(cluster, server, percent)
    }
}
