//! What the listener knows about the client connection a request came in on.
//!
//! The listener inserts a [`ClientInfo`] into each request's extensions; the proxy reads it to
//! append `X-Forwarded-For` and to set `X-Forwarded-Proto`. A request without one (a request built
//! by another Tower application, say) is treated as coming from an unknown peer over plain HTTP.

use std::net::SocketAddr;

/// The client side of the connection a request arrived on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The peer address, when the listener is TCP (`None` on UNIX sockets).
    pub remote: Option<SocketAddr>,
    /// The local address the request was accepted on, when TCP.
    pub local: Option<SocketAddr>,
    /// Whether the client connection is TLS (`X-Forwarded-Proto: https`).
    pub tls: bool,
}

impl ClientInfo {
    /// The `X-Forwarded-Proto` value for this connection.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}
