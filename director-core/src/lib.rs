//! `director-core`: Director's scheduling layer, as Tower services.
//!
//! This crate holds what a load-balanced request needs between the listener and the backend:
//! the config model of clusters, backends and routes; the registry that swaps them as one
//! snapshot; the router; the cluster service with its scheduler; the HTTP/1.1 transport with its
//! keep-alive pool; the proxy header rules; and the one layer that turns errors into responses.
//! It knows nothing of listeners, FastCGI, caching or the admin API (see `ARCHITECTURE.md`).
//!
//! A request's way through the services of this crate, outermost first:
//!
//! ```text
//! ErrorResponse      errors → 400/403/404/413/502/503/504 responses, Retry-After, Via
//!  └─ Forward        CONNECT refused, one Host, path normalised; hop-by-hop fields,
//!      │             X-Forwarded-*, Via, TRACE/OPTIONS Max-Forwards
//!      └─ Router     host + path → route (one ArcSwap load per request); deny; body limit
//!          ├─ Cluster::dispatch   bucket token + backend slot (or queue) → transport; retries
//!          │    (per cluster, optionally behind: cache front ─► Sendfile, X-Sendfile → file)
//!          └─ dispatch_direct     one backend, no balancing ("road warrior")
//!                └─ HttpTransport pooled HTTP/1.1 connections over TCP or UNIX sockets
//! ```
//!
//! # Layout
//!
//! - [`addr`]: backend URLs and addresses (TCP v4/v6, host names, UNIX sockets).
//! - [`body`]: the one boxed body type used throughout.
//! - [`buffer`]: `buffer-responses`: a response spooled (memory, then a temp file) so the
//!   backend's slot is freed before a slow client has read it.
//! - [`body_limit`]: `max-request-body`: 413 by declared length, a counting body otherwise.
//! - [`client_info`]: what the listener knows of the client (inserted per request).
//! - [`config`]: serde types for clusters, backends, routes; durations; config errors.
//! - [`registry`]: builds and swaps the live snapshot of clusters and routes.
//! - [`route`]: host and path matching.
//! - [`router`]: the routing service.
//! - [`cluster`]: clusters: admission (tokens and backend slots), queues, retries, pinning;
//!   the road-warrior dispatch.
//! - [`backend`]: a backend's identity, transport and enabled flag.
//! - [`schedule`]: schedulers (rr, chance, least-load) and the pool pick.
//! - [`sendfile`]: X-Sendfile and X-Accel-Redirect: files named by a backend, served by
//!   Director from allowed roots (ranges, conditional requests, flat-memory streaming).
//! - [`shaper`]: x0's TokenShaper, the HTB-like bucket tree partitioning a cluster's capacity.
//! - [`counter`]: `{current, max, total}` counters.
//! - [`weight`]: a backend's weight, a real number (Varnish's `10.0`, `0.5`).
//! - [`directors`]: Varnish's and fnlb's selection algorithms (weighted, hash ring, shard,
//!   fallback), pure.
//! - [`key`]: the request key the hashing schedulers use.
//! - [`replay`]: keeping a request so a retry can send it again.
//! - [`transport`]: the HTTP/1.1 client with its pool, timeouts and upgrade tunnelling.
//! - [`headers`]: pure proxy header rules.
//! - [`normalize`]: the one normal form of a request path (percent-encoding, slashes, dot
//!   segments), pure.
//! - [`forward`]: the layer applying them, and the path normalisation, before routing.
//! - [`error`] and [`error_response`]: proxy errors and their single mapping to responses.
//! - `testing` (feature `test-util`): scriptable loopback backends for tests.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use director_core::{
//!     body, config::ProxyConfig, error_response::ErrorResponseLayer, forward::ForwardLayer,
//!     headers::HeaderPolicy, registry::{Registry, Snapshot}, router::Router,
//! };
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // No clusters and no routes: every request is answered 404 by the error layer.
//! let registry = Arc::new(Registry::new(Snapshot::build(&ProxyConfig::default()).unwrap()));
//! let service = ServiceBuilder::new()
//!     .layer(ErrorResponseLayer::new(Some("director".into())))
//!     .layer(ForwardLayer::new(HeaderPolicy::default()))
//!     .service(Router::new(registry));
//! let request = http::Request::get("/").header("host", "example.com").body(body::empty()).unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 404);
//! # }
//! ```

pub mod addr;
pub mod backend;
pub mod body;
pub mod body_limit;
pub mod buffer;
pub mod client_info;
pub mod cluster;
pub mod config;
pub mod counter;
pub mod directors;
pub mod error;
pub mod error_response;
pub mod files;
pub mod forward;
pub mod headers;
pub mod key;
pub mod normalize;
pub mod registry;
pub mod replay;
pub mod rewrite;
pub mod route;
pub mod router;
pub mod schedule;
pub mod sendfile;
pub mod shaper;
pub mod stats;
pub mod store;
pub mod transport;
pub mod weight;

#[cfg(feature = "test-util")]
pub mod testing;

pub use body::{Body, BoxError};
pub use error::{ErrorKind, ProxyError};
