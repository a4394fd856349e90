//! A backend: a named upstream server with its transport and administrative state.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use crate::{
    addr::BackendUrl,
    transport::{HttpTransport, Transport, TransportOptions},
};

/// How requests reach a backend.
#[derive(Clone, Debug)]
pub enum BackendTransport {
    /// Director's own HTTP/1.1 transport: connect first, then send, so a connect failure leaves
    /// the request untouched for the next backend.
    Http(HttpTransport),
    /// Any other protocol (FastCGI), plugged in by the embedding application.
    Custom(Arc<dyn Transport>),
}

/// One upstream server of a cluster (or a road-warrior route's single target).
#[derive(Debug)]
pub struct Backend {
    name: Arc<str>,
    url: BackendUrl,
    transport: BackendTransport,
    enabled: AtomicBool,
}

impl Backend {
    /// A backend called `name` at `url`, reached over HTTP/1.1 with `opts`.
    pub fn new(name: impl Into<Arc<str>>, url: BackendUrl, opts: TransportOptions) -> Self {
        let transport = BackendTransport::Http(HttpTransport::new(url.addr.clone(), opts));
        Self::with_transport(name, url, transport)
    }

    /// A backend called `name` at `url`, reached through `transport`.
    pub fn with_transport(
        name: impl Into<Arc<str>>,
        url: BackendUrl,
        transport: BackendTransport,
    ) -> Self {
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

    /// How requests reach it.
    pub fn transport(&self) -> &BackendTransport {
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
