//! The one body type that flows through Director's service tree.
//!
//! Every layer speaks `http::Request<Body>` and `http::Response<Body>`, so layers compose without
//! generic gymnastics. The box is `Send` but not `Sync`: hyper's server needs only `Send`, and
//! requiring `Sync` would exclude streaming bodies.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

/// A boxed, type-erased error, as Tower uses at service boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request and response inside Director.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes` in one piece.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body with no content.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Boxes any body whose error converts into a [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A failure of the client's request body: the client caused it, never the backend.
///
/// The listener wraps every request body so that its errors carry this type; transports look for
/// it in an error's source chain ([`client_body_error`]) to answer the client (400, 408 or 413)
/// without blaming the backend: no passive-health failure, no backend error counter, no retry.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    /// The client's body could not be read: it disconnected mid-body, or its framing was bad
    /// (a malformed chunk size, fewer bytes than its `Content-Length`).
    #[error("the client's request body failed: {0}")]
    Read(#[source] BoxError),
    /// The client sent no body bytes for this long (`client-body-timeout`).
    #[error("the client sent no request body bytes for {0:?}")]
    Timeout(std::time::Duration),
    /// The body is larger than the limit that applies to it (`max-request-body`).
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
}

impl ClientBodyError {
    /// The status the client gets for it: 400, 408 or 413.
    pub fn status(&self) -> http::StatusCode {
        match self {
            ClientBodyError::Read(_) => http::StatusCode::BAD_REQUEST,
            ClientBodyError::Timeout(_) => http::StatusCode::REQUEST_TIMEOUT,
            ClientBodyError::TooLarge(_) => http::StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

/// The [`ClientBodyError`] in `err` or anywhere in its source chain, if the client caused it.
pub fn client_body_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a ClientBodyError> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<ClientBodyError>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}
