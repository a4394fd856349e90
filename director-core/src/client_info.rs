//! What the listener knows about the client connection a request came in on.
//!
//! The listener inserts a [`ClientInfo`] into each request's extensions; the proxy reads it to
//! append `X-Forwarded-For` and to set `X-Forwarded-Proto`. A request without one (a request built
//! by another Tower application, say) is treated as coming from an unknown peer over plain HTTP.

use std::net::SocketAddr;

use http::HeaderValue;

/// The client side of the connection a request arrived on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The peer address, when the listener is TCP (`None` on UNIX sockets).
    pub remote: Option<SocketAddr>,
    /// The local address the request was accepted on, when TCP.
    pub local: Option<SocketAddr>,
    /// Whether the client connection is TLS (`X-Forwarded-Proto: https`).
    pub tls: bool,
    // The client's IP as an `X-Forwarded-For` entry, formatted once per connection.
    forwarded_for: Option<HeaderValue>,
}

impl ClientInfo {
    /// Describes a client connection.
    pub fn new(remote: Option<SocketAddr>, local: Option<SocketAddr>, tls: bool) -> Self {
        let forwarded_for = remote.and_then(|r| {
            // IPv4 clients of a dual-stack listener arrive as ::ffff:a.b.c.d; log them as IPv4.
            HeaderValue::from_str(&r.ip().to_canonical().to_string()).ok()
        });
        ClientInfo {
            remote,
            local,
            tls,
            forwarded_for,
        }
    }

    /// The client's IP as an `X-Forwarded-For` entry, if known.
    pub fn forwarded_for(&self) -> Option<HeaderValue> {
        match &self.forwarded_for {
            Some(v) => Some(v.clone()),
            None => self
                .remote
                .and_then(|r| HeaderValue::from_str(&r.ip().to_canonical().to_string()).ok()),
        }
    }

    /// The `X-Forwarded-Proto` value for this connection.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}
