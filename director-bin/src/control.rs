//! The HAProxy runtime socket's changes, made through the cluster store: the same as the JSON
//! API's (persisted for dynamic clusters, runtime switches for static ones). A relative weight
//! (`set weight B/S 50%`) is a runtime change on every cluster, as in HAProxy.

use std::sync::Arc;

use director_core::{
    backend::AdminState,
    store::{Store, StoreError},
    weight::Weight,
};
use director_haproxy::{Control, ControlError, control::scale_weight};

/// [`Control`] over the cluster store.
#[derive(Clone, Debug)]
pub struct StoreControl {
    store: Arc<Store>,
}

impl StoreControl {
    /// Changes go to `store`.
    pub fn new(store: Arc<Store>) -> Self {
        StoreControl { store }
    }

    fn known(&self, cluster: &str, server: &str) -> Result<(), ControlError> {
        let entry = self.store.get(cluster).ok_or(ControlError::NoSuchCluster)?;
        entry
            .live
            .backend(server)
            .map(|_| ())
            .ok_or(ControlError::NoSuchServer)
    }
}

fn refused(err: StoreError) -> ControlError {
    match err {
        StoreError::NotFound(_) => ControlError::NoSuchServer,
        other => ControlError::Refused(other.to_string()),
    }
}

impl Control for StoreControl {
    fn set_state(
        &self,
        cluster: &str,
        server: &str,
        state: AdminState,
    ) -> Result<(), ControlError> {
        self.known(cluster, server)?;
        self.store
            .set_backend_state(cluster, server, state)
            .map(|_| ())
            .map_err(refused)
    }

    fn set_weight(&self, cluster: &str, server: &str, weight: Weight) -> Result<(), ControlError> {
        self.known(cluster, server)?;
        self.store
            .update(cluster, None, |config| {
                let backend = config
                    .backends
                    .iter_mut()
                    .find(|b| b.name == server)
                    .ok_or_else(|| StoreError::NotFound(server.to_owned()))?;
                backend.weight = weight;
                Ok(())
            })
            .map(|entry| {
                // The configured weight may not have changed while a relative one is in force:
                // an absolute weight replaces it either way, as in HAProxy.
                if let Some(b) = entry.live.backend(server)
                    && b.weight() != weight.get()
                {
                    b.set_weight(weight.get());
                    entry.live.reschedule();
                }
            })
            .map_err(refused)
    }

    fn set_relative_weight(
        &self,
        cluster: &str,
        server: &str,
        percent: f64,
    ) -> Result<(), ControlError> {
        // HAProxy's `n%`: live only, on static clusters too (like enable and disable), and
        // never written: the file keeps the configured weight the percentage refers to.
        let entry = self.store.get(cluster).ok_or(ControlError::NoSuchCluster)?;
        scale_weight(&entry.live, server, percent)
    }
}
