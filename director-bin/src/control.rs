//! The HAProxy runtime socket's changes, made through the cluster store: the same as the JSON
//! API's (persisted for dynamic clusters, runtime switches for static ones).

use std::sync::Arc;

use director_core::{
    backend::AdminState,
    store::{Store, StoreError},
};
use director_haproxy::{Control, ControlError};

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

    fn set_weight(&self, cluster: &str, server: &str, weight: u32) -> Result<(), ControlError> {
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
            .map(|_| ())
            .map_err(refused)
    }
}
