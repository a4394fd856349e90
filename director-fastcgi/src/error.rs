//! The error the service, its response body and the probe yield.
//!
//! The crate never turns a transport failure into a 502/503/504 response itself: exactly one
//! layer of the embedding application does that. [`ErrorKind`] says which status fits, and
//! [`Error::request_sent`] whether any byte of the request reached the application (so a
//! retry on another backend is only safe when it is `false`).

use std::fmt;

/// A boxed error, as tower uses at service boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong, coarse enough to map to a status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Connecting to the application failed (refused, unreachable, no such socket). Map: 503.
    Connect,
    /// Connecting took longer than the connect timeout. Map: 504 (or 503).
    ConnectTimeout,
    /// The application sent nothing for longer than the read timeout. Map: 504.
    ReadTimeout,
    /// Writing one record took longer than the write timeout. Map: 504.
    WriteTimeout,
    /// The application broke the FastCGI or CGI protocol (bad record, bad or oversize header
    /// block, `END_REQUEST` with `UNKNOWN_ROLE`). Map: 502.
    Protocol,
    /// The connection closed or failed before `END_REQUEST`. Map: 502.
    ClosedEarly,
    /// `END_REQUEST` said `OVERLOADED` or `CANT_MPX_CONN`. Map: 503.
    Overloaded,
    /// The client's request body failed while it was being streamed. Map: 400 (the client's
    /// fault; the application connection was closed). The body's own error is the source, so
    /// an embedder can find a more precise cause (a timeout, a size limit) in the chain.
    RequestBody,
    /// The request cannot become CGI variables (a control byte in the decoded path; see
    /// [`RefusedRequest`](crate::cgi::RefusedRequest)). Nothing was sent. Map: 400, the
    /// client's fault.
    BadRequest,
    /// `SCRIPT_FILENAME` is not a regular file under the document root, checked before
    /// connecting ([`FastCgiConfig::check_script`](crate::FastCgiConfig::check_script), like
    /// nginx's `try_files $uri =404`). Nothing was sent. Map: 404, the client's request.
    ScriptNotFound,
    /// A request body of unknown length could not be kept for sending (its temporary file
    /// could not be written: no such directory, disk full). Nothing was sent. Map: 500,
    /// Director's own fault.
    Spool,
}

/// A FastCGI transport error: its [`ErrorKind`], whether the request was (partly) sent, and
/// the underlying cause.
pub struct Error {
    kind: ErrorKind,
    request_sent: bool,
    message: &'static str,
    source: Option<BoxError>,
}

// === impl Error ===

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: &'static str) -> Self {
        Self {
            kind,
            request_sent: false,
            message,
            source: None,
        }
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub(crate) fn sent(mut self, sent: bool) -> Self {
        self.request_sent = sent;
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether any byte of the request was written to the application. When `false`, the
    /// application cannot have started work, so retrying elsewhere is safe.
    pub fn request_sent(&self) -> bool {
        self.request_sent
    }

    /// Whether this is one of the timeout kinds.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::ConnectTimeout | ErrorKind::ReadTimeout | ErrorKind::WriteTimeout
        )
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("request_sent", &self.request_sent)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fastcgi: ")?;
        f.write_str(self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| &**s as &(dyn std::error::Error + 'static))
    }
}
