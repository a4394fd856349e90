//! X-Sendfile: a backend names a file, and Director serves it.
//!
//! Between a cluster's front (an object cache, say) and the cluster itself, this layer looks at
//! each backend response of a cluster that allows it (`[clusters.NAME.sendfile]`; a road-warrior
//! route may allow it too, with `[routes.sendfile]`, applied around its one backend). A response
//! carrying `X-Sendfile: /path` (or nginx's `X-Accel-Redirect: /uri`, mapped through a location
//! to a directory) is replaced by that file, served as a static file server would:
//!
//! - an `X-Accel-Redirect` that no `accel-redirect` location maps (or any, when the policy has
//!   none) gets 404 and a warning naming cluster (or route), backend and URI, as nginx answers an
//!   internal redirect to no location; never the backend's own (usually empty) body;
//!
//! - the file must lie inside one of the cluster's roots once `..` and symlinks are resolved,
//!   else 403 and a warning naming cluster, backend and path; a missing file gets 404; a
//!   directory (or device, FIFO, socket) gets 403;
//! - GET and HEAD only (others get 405), with `Content-Type` (the backend's, else by
//!   extension), `Content-Length`, `Last-Modified`, `ETag` (from mtime and length) and
//!   `Accept-Ranges: bytes`; `If-Match`/`If-Unmodified-Since` (412),
//!   `If-None-Match`/`If-Modified-Since` (304), `Range` with one range (206) or several
//!   (206 multipart/byteranges) or none satisfiable (416), and `If-Range` (see [`plan`]);
//! - the backend's status and body are replaced; its other headers (cookies, cache headers)
//!   are kept, its `Content-Length`, `Transfer-Encoding`, `Content-Encoding`, validators and
//!   `X-Accel-*` fields dropped;
//! - the backend is released as soon as its headers are in: its remaining body is drained in
//!   the background when small (so the connection can be reused) or dropped, either of which
//!   gives back the cluster's capacity slot while the file is still being sent;
//! - the file streams from the one handle that was checked, in bounded chunks (flat memory).
//!
//! Clusters that do not allow it never honour the headers: the forwarding layer strips
//! `X-Sendfile` and `X-Accel-Redirect` from every response it passes (see
//! [`crate::headers::prepare_response`]), and this layer is not in their path at all.
//!
//! ```
//! use std::sync::Arc;
//! use director_core::{body, config::SendfileSettings, sendfile::{SendfileLayer, SendfilePolicy}};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("a.txt"), "from disk").unwrap();
//! let root = dir.path().to_str().unwrap().to_owned();
//! let settings = SendfileSettings { roots: vec![root.clone()], accel_redirect: Default::default() };
//! let policy = SendfilePolicy::new("app", &settings, "clusters.app.sendfile").unwrap();
//! // A "backend" that always points at the file.
//! let backend = service_fn(move |_req| {
//!     let path = format!("{root}/a.txt");
//!     async move {
//!         Ok::<_, director_core::ProxyError>(
//!             http::Response::builder().header("x-sendfile", path).body(body::full("ignored")).unwrap(),
//!         )
//!     }
//! });
//! let service = SendfileLayer::new(Arc::new(policy)).layer(backend);
//! let response = service.oneshot(http::Request::get("/").body(body::empty()).unwrap()).await.unwrap();
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.headers()["content-length"], "9");
//! # }
//! ```

mod body;
pub(crate) mod path;
pub mod plan;

use std::{
    future::Future,
    path::PathBuf,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use tower::{Layer, Service};

pub use plan::RequestHead;

use crate::{
    body::Body,
    cluster::UpstreamInfo,
    config::{ConfigError, SendfileSettings},
    error::ProxyError,
    router::BoxFuture,
};

use self::{
    body::{FileBody, Segment},
    path::{Refusal, Root},
    plan::{Plan, Validators},
};

static X_SENDFILE: HeaderName = HeaderName::from_static("x-sendfile");
static X_ACCEL_REDIRECT: HeaderName = HeaderName::from_static("x-accel-redirect");
/// nginx's companions of `X-Accel-Redirect`; not implemented, so not passed on either.
static X_ACCEL_COMPANIONS: [HeaderName; 4] = [
    HeaderName::from_static("x-accel-buffering"),
    HeaderName::from_static("x-accel-charset"),
    HeaderName::from_static("x-accel-expires"),
    HeaderName::from_static("x-accel-limit-rate"),
];

/// Bytes read from the file at a time.
pub(crate) const CHUNK: usize = 256 * 1024;
/// A backend body up to this long is read to its end (so the connection can be reused).
const DRAIN_LIMIT: u64 = 64 * 1024;
/// How long draining a backend body may take before it is dropped instead.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A cluster's X-Sendfile settings, checked: canonical roots and X-Accel-Redirect locations.
#[derive(Debug)]
pub struct SendfilePolicy {
    cluster: Arc<str>,
    roots: Vec<Root>,
    // Longest prefix first, so the most specific location wins.
    locations: Vec<(String, PathBuf)>,
    chunk: usize,
}

// === impl SendfilePolicy ===

impl SendfilePolicy {
    /// Checks `settings` of cluster `cluster`; errors name the key under `at`
    /// (`clusters.NAME.sendfile`). Roots must exist: they are canonicalised here.
    pub fn new(cluster: &str, settings: &SendfileSettings, at: &str) -> Result<Self, ConfigError> {
        if settings.roots.is_empty() {
            return Err(ConfigError::new(
                format!("{at}.roots"),
                "give at least one directory files may be served from",
            ));
        }
        let directory = |path: &str, key: String| -> Result<(PathBuf, PathBuf), ConfigError> {
            let given = std::path::Path::new(path);
            if !given.is_absolute() {
                return Err(ConfigError::new(
                    key,
                    format!("{path:?} is not an absolute path"),
                ));
            }
            let real = std::fs::canonicalize(given)
                .map_err(|e| ConfigError::new(&key, format!("cannot use {path:?}: {e}")))?;
            if !real.is_dir() {
                return Err(ConfigError::new(
                    key,
                    format!("{path:?} is not a directory"),
                ));
            }
            Ok((path::normalize(given), real))
        };
        let mut roots = Vec::with_capacity(settings.roots.len());
        for (i, root) in settings.roots.iter().enumerate() {
            let (given, real) = directory(root, format!("{at}.roots[{i}]"))?;
            roots.push(Root { given, real });
        }
        let mut locations = Vec::with_capacity(settings.accel_redirect.len());
        for (prefix, dir) in &settings.accel_redirect {
            let key = format!("{at}.accel-redirect.{prefix}");
            if !prefix.starts_with('/') {
                return Err(ConfigError::new(
                    key,
                    "an X-Accel-Redirect location is a URI prefix such as \"/protected/\"",
                ));
            }
            let (_, real) = directory(dir, key.clone())?;
            if !roots.iter().any(|r| real.starts_with(&r.real)) {
                return Err(ConfigError::new(
                    key,
                    format!("{dir:?} is not inside any of the sendfile roots"),
                ));
            }
            locations.push((prefix.clone(), real));
        }
        locations.sort_by_key(|l| std::cmp::Reverse(l.0.len()));
        Ok(SendfilePolicy {
            cluster: cluster.into(),
            roots,
            locations,
            chunk: CHUNK,
        })
    }

    /// The cluster it belongs to.
    pub fn cluster(&self) -> &Arc<str> {
        &self.cluster
    }

    /// The canonical roots.
    pub fn roots(&self) -> impl Iterator<Item = &std::path::Path> {
        self.roots.iter().map(|r| r.real.as_path())
    }
}

// === impl SendfileLayer ===

/// Adds [`Sendfile`] to a stack.
#[derive(Clone, Debug)]
pub struct SendfileLayer {
    policy: Arc<SendfilePolicy>,
}

impl SendfileLayer {
    /// A layer honouring X-Sendfile under `policy`.
    pub fn new(policy: Arc<SendfilePolicy>) -> Self {
        SendfileLayer { policy }
    }
}

impl<S> Layer<S> for SendfileLayer {
    type Service = Sendfile<S>;

    fn layer(&self, inner: S) -> Sendfile<S> {
        Sendfile {
            inner,
            policy: self.policy.clone(),
        }
    }
}

// === impl Sendfile ===

/// Replaces backend responses carrying `X-Sendfile` or `X-Accel-Redirect` with the file.
#[derive(Clone, Debug)]
pub struct Sendfile<S> {
    inner: S,
    policy: Arc<SendfilePolicy>,
}

impl<S> Sendfile<S> {
    /// `inner` with X-Sendfile honoured under `policy`.
    pub fn new(inner: S, policy: Arc<SendfilePolicy>) -> Self {
        Sendfile { inner, policy }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<Request<Body>> for Sendfile<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = ProxyError>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = BoxFuture<Result<Response<Body>, ProxyError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let head = RequestHead::new(req.method(), req.headers());
        respond(self.policy.clone(), head, self.inner.call(req))
    }
}

/// Awaits the backend's `response` to a request with `head`, and serves the file it names
/// under `policy`, if it names one.
pub fn respond<F>(
    policy: Arc<SendfilePolicy>,
    head: RequestHead,
    response: F,
) -> BoxFuture<F::Output>
where
    F: Future<Output = Result<Response<Body>, ProxyError>> + Send + 'static,
{
    Box::pin(async move {
        let response = response.await?;
        Ok(serve(&policy, &head, response).await)
    })
}

/// What the backend asked for.
enum Wanted {
    Sendfile(HeaderValue),
    Accel(HeaderValue),
}

async fn serve(
    policy: &SendfilePolicy,
    head: &RequestHead,
    response: Response<Body>,
) -> Response<Body> {
    let (mut parts, backend_body) = response.into_parts();
    let wanted = match parts.headers.remove(&X_SENDFILE) {
        Some(v) => Wanted::Sendfile(v),
        None => match parts.headers.remove(&X_ACCEL_REDIRECT) {
            Some(v) => Wanted::Accel(v),
            None => return Response::from_parts(parts, backend_body),
        },
    };
    parts.headers.remove(&X_ACCEL_REDIRECT);
    for name in &X_ACCEL_COMPANIONS {
        parts.headers.remove(name);
    }
    release(backend_body);

    let backend = parts
        .extensions
        .get::<UpstreamInfo>()
        .and_then(|u| u.backend.clone());
    let candidate = match &wanted {
        Wanted::Sendfile(v) => path::sendfile_candidate(v.as_bytes(), &policy.roots),
        Wanted::Accel(v) => path::accel_candidate(v.as_bytes(), &policy.locations),
    };
    let shown = || match &wanted {
        Wanted::Sendfile(v) | Wanted::Accel(v) => {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        }
    };
    let Some(candidate) = candidate else {
        // As nginx, whose internal redirect to a location that does not exist is a 404; the
        // backend's own body (often empty) would be a silent 200 the application never meant.
        match &wanted {
            Wanted::Accel(_) => tracing::warn!(
                cluster = %policy.cluster,
                backend = %backend.as_deref().unwrap_or("-"),
                header = "X-Accel-Redirect",
                uri = %shown(),
                locations = policy.locations.len(),
                "X-Accel-Redirect maps to no accel-redirect location; answering 404"
            ),
            Wanted::Sendfile(_) => tracing::warn!(
                cluster = %policy.cluster,
                backend = %backend.as_deref().unwrap_or("-"),
                header = "X-Sendfile",
                path = %shown(),
                "X-Sendfile names no usable path; answering 404"
            ),
        }
        return plain(StatusCode::NOT_FOUND, "file not found\n");
    };
    if head.method != Method::GET && head.method != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }

    let roots = policy.roots.clone();
    let opened = tokio::task::spawn_blocking(move || path::open_within(&candidate, &roots)).await;
    let opened = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(refusal)) => return refused(policy, backend.as_deref(), &shown(), refusal),
        Err(join) => {
            tracing::error!(error = %join, "X-Sendfile: opening the file failed");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
        }
    };

    let content_type = match parts.headers.get(header::CONTENT_TYPE) {
        Some(t) => t.clone(),
        None => content_type_of(&opened.path),
    };
    answer(parts, opened, head, content_type, policy.chunk)
}

/// The `Content-Type` of a file, by its extension.
pub(crate) fn content_type_of(path: &std::path::Path) -> HeaderValue {
    HeaderValue::from_static(
        mime_guess::from_path(path)
            .first_raw()
            .unwrap_or("application/octet-stream"),
    )
}

/// Answers a request with `head` with the `opened` file, as `content_type`, over the response
/// head `parts` (whose length, encoding and validator fields are replaced): 200, 206, 304, 412
/// or 416, streamed in `chunk`-sized reads. Shared by X-Sendfile and `root` routes.
pub(crate) fn answer(
    mut parts: http::response::Parts,
    opened: path::Opened,
    head: &RequestHead,
    content_type: HeaderValue,
    chunk: usize,
) -> Response<Body> {
    let validators = Validators::new(
        opened.meta.len(),
        opened.meta.modified().unwrap_or(std::time::UNIX_EPOCH),
    );
    let h = &mut parts.headers;
    for name in [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONTENT_ENCODING,
        header::CONTENT_RANGE,
        header::ETAG,
        header::LAST_MODIFIED,
    ] {
        h.remove(name);
    }
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&validators.etag).expect("hex digits and quotes"),
    );
    h.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_str(&httpdate::fmt_http_date(validators.modified)).expect("an HTTP date"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_TYPE, content_type.clone());

    let len = validators.len;
    let head_only = head.method == Method::HEAD;
    let (status, segments) = match plan::plan(head, &validators) {
        Plan::NotModified => {
            h.remove(header::CONTENT_TYPE);
            (StatusCode::NOT_MODIFIED, None)
        }
        Plan::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, Some(Vec::new())),
        Plan::Unsatisfiable => {
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).expect("digits"),
            );
            (StatusCode::RANGE_NOT_SATISFIABLE, Some(Vec::new()))
        }
        Plan::Full => (StatusCode::OK, Some(vec![Segment::File { offset: 0, len }])),
        Plan::Partial(ranges) if ranges.len() == 1 => {
            let r = &ranges[0];
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {}-{}/{len}", r.start(), r.end()))
                    .expect("digits"),
            );
            (
                StatusCode::PARTIAL_CONTENT,
                Some(vec![Segment::File {
                    offset: *r.start(),
                    len: r.end() - r.start() + 1,
                }]),
            )
        }
        Plan::Partial(ranges) => {
            let boundary = format!("{:016x}", rand::random::<u64>());
            let part_type = content_type.to_str().unwrap_or("application/octet-stream");
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}"))
                    .expect("hex digits"),
            );
            (
                StatusCode::PARTIAL_CONTENT,
                Some(body::multipart(&ranges, len, part_type, &boundary)),
            )
        }
    };
    parts.status = status;
    let body = match segments {
        None => crate::body::empty(),
        Some(segments) => {
            let length = body::length(&segments);
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            if head_only || length == 0 {
                crate::body::empty()
            } else {
                crate::body::boxed(FileBody::new(opened.file, segments, chunk))
            }
        }
    };
    Response::from_parts(parts, body)
}

/// Lets go of the backend's body: a short one is read to its end in the background (the
/// connection goes back to the pool), a long one dropped (the connection closes). Either way
/// the request's capacity slot is given back without waiting for the file to be sent.
fn release(body: Body) {
    if body.is_end_stream() {
        return;
    }
    if body.size_hint().lower() > DRAIN_LIMIT {
        return;
    }
    tokio::spawn(async move {
        let mut body = body;
        let mut seen = 0u64;
        let drain = async {
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if seen > DRAIN_LIMIT {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    });
}

fn refused(
    policy: &SendfilePolicy,
    backend: Option<&str>,
    shown: &str,
    refusal: Refusal,
) -> Response<Body> {
    let backend = backend.unwrap_or("-");
    match refusal {
        Refusal::Outside(resolved) => {
            tracing::warn!(
                cluster = %policy.cluster,
                backend = %backend,
                path = %shown,
                resolved = %resolved.display(),
                "X-Sendfile refused: the path is outside the allowed roots"
            );
            plain(StatusCode::FORBIDDEN, "forbidden\n")
        }
        Refusal::NotFound => plain(StatusCode::NOT_FOUND, "file not found\n"),
        Refusal::NotAFile => {
            tracing::warn!(cluster = %policy.cluster, backend = %backend, path = %shown,
                "X-Sendfile refused: not a regular file");
            plain(StatusCode::FORBIDDEN, "forbidden\n")
        }
        Refusal::Unreadable(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::warn!(cluster = %policy.cluster, backend = %backend, path = %shown, error = %err,
                "X-Sendfile refused: the file cannot be read");
            plain(StatusCode::FORBIDDEN, "forbidden\n")
        }
        Refusal::Unreadable(err) => {
            tracing::error!(cluster = %policy.cluster, backend = %backend, path = %shown, error = %err,
                "X-Sendfile: the file cannot be opened");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(crate::body::full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    r
}

#[cfg(test)]
mod tests;
