//! The connect probe: passes when a connection opens (HAProxy's L4 check, Envoy's TCP check
//! without payload). Works for TCP and UNIX sockets.

use std::time::Duration;

use super::{Probe, ProbeError, ProbeFuture, Target};

/// Passes when a connection to the target can be opened; the connection is closed at once.
#[derive(Debug, Clone)]
pub struct TcpProbe {
    target: Target,
    timeout: Option<Duration>,
}

// === impl TcpProbe ===

impl TcpProbe {
    /// A probe of `target`.
    pub fn new(target: impl Into<Target>) -> Self {
        TcpProbe {
            target: target.into(),
            timeout: None,
        }
    }

    /// A connect deadline on top of the monitor's timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The endpoint probed.
    pub fn target(&self) -> &Target {
        &self.target
    }

    async fn connect(target: Target) -> Result<(), ProbeError> {
        match target {
            Target::Tcp(addr) => tokio::net::TcpStream::connect(addr).await.map(drop),
            #[cfg(unix)]
            Target::Unix(path) => tokio::net::UnixStream::connect(path).await.map(drop),
        }
        .map_err(ProbeError::Connect)
    }
}

impl Probe for TcpProbe {
    fn probe(&self) -> ProbeFuture {
        let target = self.target.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            match timeout {
                Some(t) => tokio::time::timeout(t, Self::connect(target))
                    .await
                    .map_err(|_| ProbeError::Timeout(t))?,
                None => Self::connect(target).await,
            }
        })
    }
}
