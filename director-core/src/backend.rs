//! A backend: a named upstream server with its transport and administrative state.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use crate::{
    addr::BackendUrl,
    transport::{HttpTransport, TransportOptions},
};

/// One upstream server of a cluster (or a road-warrior route's single target).
#[derive(Debug)]
pub struct Backend {
    name: Arc<str>,
    url: BackendUrl,
    transport: HttpTransport,
    enabled: AtomicBool,
}

impl Backend {
    /// A backend called `name` at `url`, reached with `opts`.
    pub fn new(name: impl Into<Arc<str>>, url: BackendUrl, opts: TransportOptions) -> Self {
        let transport = HttpTransport::new(url.addr.clone(), opts);
        Backend {
            name: name.into(),
            url,
            transport,
            enabled: AtomicBool::new(true),
        }
    }

    /// The backend's name, unique within its cluster.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Where and how to reach it.
    pub fn url(&self) -> &BackendUrl {
        &self.url
    }

    /// Its HTTP transport and connection pool.
    pub fn transport(&self) -> &HttpTransport {
        &self.transport
    }

    /// Whether the operator allows it to take requests.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Enables or disables it; requests in flight are not affected.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }
}
