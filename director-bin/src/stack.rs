//! The service tree, assembled in one place, outermost layer first.
//!
//! ```text
//! CatchPanic       a panicking request gets a 500; the connection and other requests live on
//! AccessLog        one line per request, written at the end of its response body (optional)
//! ErrorResponse    the ONE place errors become 400/403/404/413/502/503/504, with Retry-After, Via
//! Forward          CONNECT → 405; one valid Host (absolute-form authority wins); the path
//!                  normalised ONCE, so routes and every backend see the same path; hop-by-hop
//!                  fields, X-Forwarded-*, Via, TRACE/OPTIONS Max-Forwards
//! Router           host + path → cluster (balanced), backend (road warrior) or deny (403);
//!                  max-request-body (413, or a counted body) once the route is known
//! ```

use std::{convert::Infallible, sync::Arc};

use director_core::{
    Body,
    error_response::ErrorResponseLayer,
    forward::ForwardLayer,
    headers::{HeaderPolicy, InvalidPseudonym},
    registry::Registry,
    router::Router,
};
use http::{Request, Response};
use tower::{Service, ServiceBuilder};

use crate::{
    access_log::AccessLogLayer,
    catch_panic::CatchPanicLayer,
    config::{AccessLogFormat, ServerConfig},
};

/// What the stack needs from `[server]`.
#[derive(Clone, Debug)]
pub struct StackSettings {
    /// Header rewriting rules.
    pub headers: HeaderPolicy,
    /// Whether to write access log lines.
    pub access_log: bool,
    /// Whether request paths are normalised before routing (`normalize-path`).
    pub normalize_path: bool,
    /// The listener's `max-request-body` (0: no limit).
    pub max_request_body: u64,
}

impl StackSettings {
    /// The settings of `[server]` (already validated by the config loader).
    pub fn from_server(server: &ServerConfig) -> Self {
        StackSettings {
            headers: header_policy(server).expect("validated when the config was loaded"),
            access_log: server.access_log != AccessLogFormat::Off,
            normalize_path: server.normalize_path,
            max_request_body: server.max_request_body,
        }
    }
}

/// The header rules of `[server]`; an empty pseudonym sends no `Via`.
pub fn header_policy(server: &ServerConfig) -> Result<HeaderPolicy, InvalidPseudonym> {
    let pseudonym = (!server.pseudonym.is_empty()).then_some(server.pseudonym.as_str());
    HeaderPolicy::new(pseudonym, server.trust_forwarded_headers)
}

/// Builds the traffic service tree over `registry`.
pub fn build(
    registry: Arc<Registry>,
    settings: &StackSettings,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ Sync
+ 'static {
    ServiceBuilder::new()
        // Outermost, so that nothing below can take a connection down with a panic.
        .layer(CatchPanicLayer)
        // Outside the error layer, so error responses are logged with their final status.
        .option_layer(settings.access_log.then_some(AccessLogLayer))
        .layer(ErrorResponseLayer::new(
            settings.headers.pseudonym().cloned(),
        ))
        // Above the router: routes must match the path and host the backend will see.
        .layer(ForwardLayer::new(settings.headers.clone()).normalize_path(settings.normalize_path))
        // Tag responses with their cluster and backend only when the access log reads them.
        .service(
            Router::new(registry)
                .tag_responses(settings.access_log)
                .max_request_body(settings.max_request_body),
        )
}
