//! Errors of the proxy path, and where they came from.
//!
//! A [`ProxyError`] carries what went wrong ([`ErrorKind`]), whether any of the request had been
//! written upstream (which decides whether another backend may be tried), and which cluster and
//! backend were involved. Exactly one layer, [`crate::error_response`], turns these into HTTP
//! responses; everything else only returns them.

use std::{fmt, sync::Arc};

use http::StatusCode;

use crate::body::BoxError;

/// What went wrong while proxying a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No route matches the request's host and path.
    NoRoute,
    /// The cluster has no backend that can take the request (none enabled, or every one failed
    /// to connect).
    NoBackend,
    /// Connecting to the backend failed (refused, unreachable, reset during connect).
    ConnectFailed,
    /// Connecting to the backend took longer than the connect timeout.
    ConnectTimeout,
    /// The backend did not answer (or stopped sending) within the read timeout, or did not take
    /// the request within the write timeout.
    Timeout,
    /// The backend broke the exchange: reset, closed early, or sent something that is not HTTP.
    UpstreamBroken,
    /// The backend said it is overloaded (FastCGI `OVERLOADED`), so it took nothing.
    Overloaded,
    /// The request itself is unacceptable to the proxy (for example a bad `Max-Forwards`).
    BadRequest,
    /// The client's request body failed (see [`crate::body::ClientBodyError`]): it broke off,
    /// was badly framed, stalled past `client-body-timeout` or was too large. The client's
    /// fault: never a backend failure, never retried. Its status comes from the body error.
    ClientBody,
}

impl ErrorKind {
    /// The status a client sees for this kind of failure.
    ///
    /// 503 means "no backend could take it, try again later", 504 "a backend took too long",
    /// 502 "a backend broke the exchange".
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::NoRoute => StatusCode::NOT_FOUND,
            ErrorKind::NoBackend | ErrorKind::ConnectFailed | ErrorKind::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorKind::ConnectTimeout | ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::UpstreamBroken => StatusCode::BAD_GATEWAY,
            ErrorKind::BadRequest | ErrorKind::ClientBody => StatusCode::BAD_REQUEST,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ErrorKind::NoRoute => "no route matches this request",
            ErrorKind::NoBackend => "no backend is available",
            ErrorKind::ConnectFailed => "could not connect to the backend",
            ErrorKind::ConnectTimeout => "timed out connecting to the backend",
            ErrorKind::Timeout => "the backend timed out",
            ErrorKind::UpstreamBroken => "the backend broke the connection",
            ErrorKind::Overloaded => "the backend is overloaded",
            ErrorKind::BadRequest => "bad request",
            ErrorKind::ClientBody => "the request body could not be read",
        }
    }
}

/// An error on the proxy path, with its origin.
#[derive(Debug)]
pub struct ProxyError {
    kind: ErrorKind,
    sent: bool,
    cluster: Option<Arc<str>>,
    backend: Option<Arc<str>>,
    retry_after: Option<u32>,
    detail: Option<&'static str>,
    status: Option<StatusCode>,
    source: Option<BoxError>,
}

// === impl ProxyError ===

impl ProxyError {
    /// A new error of `kind`, with nothing sent upstream yet.
    pub fn new(kind: ErrorKind) -> Self {
        ProxyError {
            kind,
            sent: false,
            cluster: None,
            backend: None,
            retry_after: None,
            detail: None,
            status: None,
            source: None,
        }
    }

    /// A [`ErrorKind::ClientBody`] error for `source`, whose status and text come from the
    /// [`ClientBodyError`](crate::body::ClientBodyError) in its chain (400 when there is none).
    /// Marked as sent: a request whose body broke off cannot go anywhere else.
    pub fn client_body(source: impl Into<BoxError>) -> Self {
        let source = source.into();
        let mut err = ProxyError::new(ErrorKind::ClientBody).sent();
        if let Some(found) = crate::body::client_body_error(&*source) {
            err = err
                .with_status(found.status())
                .with_detail(found.describe());
        }
        err.with_source(source)
    }

    /// Whether the client caused this error (its request body failed), so no backend is to
    /// blame.
    pub fn is_client_body(&self) -> bool {
        self.kind == ErrorKind::ClientBody
    }

    /// Answers with `status` instead of the kind's own.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// Records the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Records that (part of) the request reached the backend, so retrying it is not safe in
    /// general.
    pub fn sent(mut self) -> Self {
        self.sent = true;
        self
    }

    /// Names the cluster the request was for.
    pub fn with_cluster(mut self, cluster: Arc<str>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Names the backend that failed.
    pub fn with_backend(mut self, backend: Arc<str>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Asks the client to retry after this many seconds (`Retry-After`).
    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = (seconds > 0).then_some(seconds);
        self
    }

    /// A short static explanation shown to the client instead of the kind's default text.
    pub fn with_detail(mut self, detail: &'static str) -> Self {
        self.detail = Some(detail);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether any of the request was written to a backend.
    pub fn was_sent(&self) -> bool {
        self.sent
    }

    /// The cluster involved, if any.
    pub fn cluster(&self) -> Option<&Arc<str>> {
        self.cluster.as_ref()
    }

    /// The backend involved, if any.
    pub fn backend(&self) -> Option<&Arc<str>> {
        self.backend.as_ref()
    }

    /// Seconds for `Retry-After`, if set.
    pub fn retry_after(&self) -> Option<u32> {
        self.retry_after
    }

    /// The status the client should see.
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| self.kind.status())
    }

    /// The text shown to the client: the detail if one was given, else the kind's description.
    pub fn public_message(&self) -> &'static str {
        self.detail.unwrap_or_else(|| self.kind.describe())
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.public_message())?;
        if let Some(cluster) = &self.cluster {
            write!(f, " (cluster {cluster}")?;
            if let Some(backend) = &self.backend {
                write!(f, ", backend {backend}")?;
            }
            f.write_str(")")?;
        } else if let Some(backend) = &self.backend {
            write!(f, " (backend {backend})")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// Whether `err`, or anything in its chain of causes, is an I/O timeout.
pub fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        if e.downcast_ref::<tokio::time::error::Elapsed>().is_some() {
            return true;
        }
        cur = e.source();
    }
    false
}
