//! The admin listener: a separate listener (default `127.0.0.1:8081`) for operators and their
//! tools, never for traffic.
//!
//! Its router mounts services by path prefix; the first match wins:
//!
//! | prefix | what |
//! |---|---|
//! | `/` (exactly) | redirect to the web UI |
//! | `/ui` | the web UI's pages and assets (`director_api::ui`; public: they hold no data) |
//! | `/history` | the last 15 minutes of traffic, for the UI's live page (`director_api::history`) |
//! | anything else | 404 with a JSON error body |
//!
//! Authentication (`admin-token`, `admin-read-token`) guards everything except the web UI's
//! static files (`/`, `/ui/...`), which hold no data; `/ui/session` (the UI's token cookie) and
//! `/history` are behind it (see `with_ui` in `lib.rs`).

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use director_core::{Body, body};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use tower::{Service, util::BoxCloneSyncService};

/// A service mounted on the admin listener.
pub type AdminService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// Routes admin requests by path prefix.
#[derive(Clone, Default)]
pub struct AdminRouter {
    // (prefix, exact: only the prefix itself, service)
    mounts: Arc<Vec<(&'static str, bool, AdminService)>>,
}

impl std::fmt::Debug for AdminRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefixes: Vec<&str> = self.mounts.iter().map(|(p, _, _)| *p).collect();
        f.debug_struct("AdminRouter")
            .field("mounts", &prefixes)
            .finish()
    }
}

impl AdminRouter {
    /// An empty router (everything is 404).
    pub fn new() -> Self {
        AdminRouter::default()
    }

    /// Mounts `service` at `prefix`: it gets requests whose path is `prefix` or starts with
    /// `prefix/` (or, for a prefix ending in `/`, starts with it).
    pub fn mount(mut self, prefix: &'static str, service: AdminService) -> Self {
        Arc::make_mut(&mut self.mounts).push((prefix, false, service));
        self
    }

    /// Mounts `service` at exactly `path` (`/`, say, without catching everything below it).
    pub fn mount_exact(mut self, path: &'static str, service: AdminService) -> Self {
        Arc::make_mut(&mut self.mounts).push((path, true, service));
        self
    }

    fn find(&self, path: &str) -> Option<&AdminService> {
        self.mounts
            .iter()
            .find(|(prefix, exact, _)| {
                path == *prefix
                    || (!exact && prefix.ends_with('/') && path.starts_with(prefix))
                    || !exact
                        && path
                            .strip_prefix(prefix)
                            .is_some_and(|rest| rest.starts_with('/'))
            })
            .map(|(_, _, s)| s)
    }
}

impl Service<Request<Body>> for AdminRouter {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        match self.find(req.uri().path()) {
            Some(service) => {
                let mut service = service.clone();
                Box::pin(async move { service.call(req).await })
            }
            None => Box::pin(std::future::ready(Ok(json_error(
                StatusCode::NOT_FOUND,
                "not found",
                &format!("nothing is served at {}", req.uri().path()),
            )))),
        }
    }
}

/// A JSON error response: `{"error": ..., "detail": ...}`.
pub fn json_error(status: StatusCode, error: &str, detail: &str) -> Response<Body> {
    let text = serde_json::json!({ "error": error, "detail": detail }).to_string() + "\n";
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body::boxed(Full::new(Bytes::from(text))))
        .expect("a valid response")
}
