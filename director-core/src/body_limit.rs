//! `max-request-body`: the largest request body a route takes.
//!
//! The router applies it once the route is known (a route's own limit overrides the
//! listener's). A request whose `Content-Length` is over the limit is answered 413 before
//! anything reaches a backend ([`check_length`]); a body of unknown length (chunked, or HTTP/2
//! without `Content-Length`) is wrapped in [`LimitedBody`], which counts its bytes and fails with
//! [`ClientBodyError::TooLarge`] at the first frame that would cross the limit: the backend
//! never receives the whole body, and the transports see an error that the client caused.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{HeaderMap, header::CONTENT_LENGTH};
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::body::{Body, BoxError, ClientBodyError};

/// Whether a request with these headers and body may pass a `limit` (0: no limit), judged by
/// its declared length: `Err` carries the [`ClientBodyError::TooLarge`] to answer with.
pub fn check_length(headers: &HeaderMap, body: &Body, limit: u64) -> Result<(), ClientBodyError> {
    if limit == 0 {
        return Ok(());
    }
    // hyper has already refused a request with an invalid or conflicting Content-Length; what
    // is left is one number, also reflected in the body's exact size hint.
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or_else(|| http_body::Body::size_hint(body).exact());
    match declared {
        Some(n) if n > limit => Err(ClientBodyError::TooLarge(limit)),
        _ => Ok(()),
    }
}

/// `body` with `limit` (0: none) enforced: returned as it is when its exact length is known
/// and within the limit (checked by [`check_length`] first), else counted by [`LimitedBody`].
pub fn limit(body: Body, limit: u64) -> Body {
    use http_body::Body as _;
    if limit == 0 || body.is_end_stream() || body.size_hint().exact().is_some_and(|n| n <= limit) {
        return body;
    }
    crate::body::boxed(LimitedBody::new(body, limit))
}

pin_project! {
    /// A body that fails with [`ClientBodyError::TooLarge`] once more than `limit` bytes pass.
    #[derive(Debug)]
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        remaining: u64,
        limit: u64,
        failed: bool,
    }
}

// === impl LimitedBody ===

impl<B> LimitedBody<B> {
    /// `inner`, cut off after `limit` bytes.
    pub fn new(inner: B, limit: u64) -> Self {
        LimitedBody {
            inner,
            remaining: limit,
            limit,
            failed: false,
        }
    }
}

impl<B> http_body::Body for LimitedBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > *this.remaining {
                        *this.failed = true;
                        return Poll::Ready(Some(Err(
                            ClientBodyError::TooLarge(*this.limit).into()
                        )));
                    }
                    *this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(err)) => Poll::Ready(Some(Err(err.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use http_body_util::BodyExt;

    use super::*;
    use crate::body::{self, client_body_error};

    /// A body of unknown length, as a chunked upload arrives.
    struct Chunks(VecDeque<Bytes>);

    impl http_body::Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn chunked(chunks: &[&'static [u8]]) -> Body {
        body::boxed(Chunks(
            chunks.iter().map(|c| Bytes::from_static(c)).collect(),
        ))
    }

    #[tokio::test]
    async fn a_chunked_body_within_the_limit_passes_whole() {
        let body = limit(chunked(&[b"abcd", b"efgh"]), 8);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"abcdefgh");
    }

    #[tokio::test]
    async fn a_chunked_body_over_the_limit_fails_as_the_clients_error() {
        let mut body = limit(chunked(&[b"abcd", b"efgh", b"i"]), 8);
        let mut passed = 0;
        let err = loop {
            match body.frame().await {
                Some(Ok(frame)) => passed += frame.into_data().unwrap().len(),
                Some(Err(err)) => break err,
                None => panic!("the body ended without an error"),
            }
        };
        assert_eq!(passed, 8, "no byte past the limit is passed on");
        let client = client_body_error(&*err).expect("a client body error");
        assert!(matches!(client, ClientBodyError::TooLarge(8)));
        assert_eq!(client.status(), 413);
        assert!(body.frame().await.is_none(), "nothing after the error");
    }

    #[test]
    fn declared_lengths_are_checked_before_reading() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, "9".parse().unwrap());
        let b = body::full(&b"123456789"[..]);
        assert!(matches!(
            check_length(&headers, &b, 8),
            Err(ClientBodyError::TooLarge(8))
        ));
        assert!(check_length(&headers, &b, 9).is_ok());
        assert!(check_length(&headers, &b, 0).is_ok(), "0 is no limit");
        // HTTP/2 without Content-Length: the body's exact size hint.
        assert!(check_length(&HeaderMap::new(), &b, 8).is_err());
    }

    #[test]
    fn known_lengths_within_the_limit_are_not_wrapped() {
        use http_body::Body as _;
        let b = limit(body::full(&b"1234"[..]), 8);
        assert_eq!(b.size_hint().exact(), Some(4));
        let empty = limit(body::empty(), 1);
        assert!(empty.is_end_stream());
    }
}
