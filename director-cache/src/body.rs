//! [`CacheBody`]: the response body of the cache service.
//!
//! Either a stored body (one `Bytes`, cloned from the store, no copy) or the upstream body
//! passed through. While a miss streams to its client, the body also *captures* the chunks
//! (cheap `Bytes` clones, copied once at the end) up to the maximum object size; when the stream ends the object is
//! stored and the requests waiting for it are woken. Past the size limit, or on an error or an
//! early drop, capturing stops and the stream simply goes on (or ends).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::handle::Pending;

pin_project! {
    /// The body of responses from [`Cache`](crate::Cache).
    pub struct CacheBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Stored { data: Option<Bytes> },
        Upstream { #[pin] body: B, capture: Option<Capture> },
    }
}

/// Chunks collected so far for a response being stored.
#[derive(Debug)]
pub(crate) struct Capture {
    pending: Pending,
    chunks: Vec<Bytes>,
    size: usize,
    max: usize,
}

// === impl Capture ===

impl Capture {
    pub(crate) fn new(pending: Pending, max: usize) -> Self {
        Self {
            pending,
            chunks: Vec::new(),
            size: 0,
            max,
        }
    }

    /// Adds a chunk; false once the object is too large to store.
    fn push(&mut self, chunk: &Bytes) -> bool {
        self.size += chunk.len();
        if self.size > self.max {
            return false;
        }
        if !chunk.is_empty() {
            self.chunks.push(chunk.clone());
        }
        true
    }

    /// Stores the object. The chunks are copied once into an exact-size buffer: a chunk may be
    /// a slice of a much larger read buffer, which storing it as is would keep alive.
    pub(crate) fn commit(self) {
        let body = if self.chunks.is_empty() {
            Bytes::new()
        } else {
            let mut buf = BytesMut::with_capacity(self.size);
            for c in &self.chunks {
                buf.extend_from_slice(c);
            }
            buf.freeze()
        };
        self.pending.commit(body);
    }
}

// === impl CacheBody ===

impl<B> CacheBody<B> {
    pub(crate) fn empty() -> Self {
        Self {
            kind: Kind::Stored { data: None },
        }
    }

    pub(crate) fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Stored { data: Some(data) },
        }
    }

    /// The upstream body, passed through.
    pub(crate) fn upstream(body: B) -> Self {
        Self {
            kind: Kind::Upstream {
                body,
                capture: None,
            },
        }
    }

    /// The upstream body, captured for storing as it streams.
    pub(crate) fn capturing(body: B, capture: Capture) -> Self
    where
        B: Body,
    {
        if body.is_end_stream() {
            // Nobody will poll an ended body: store it now.
            capture.commit();
            return Self::upstream(body);
        }
        Self {
            kind: Kind::Upstream {
                body,
                capture: Some(capture),
            },
        }
    }
}

// No bound on `B::Error` on purpose: a bound like `Into<BoxError>` breaks `Send` inference for
// spawned futures holding this body when the error is itself `BoxError` (a rustc limitation with higher-ranked lifetimes).
impl<B> Body for CacheBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Stored { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Upstream { mut body, capture } => {
                match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        if let (Some(data), Some(c)) = (frame.data_ref(), capture.as_mut())
                            && !c.push(data)
                        {
                            *capture = None;
                        }
                        // A consumer may stop polling once the body says it has ended.
                        if body.is_end_stream()
                            && let Some(c) = capture.take()
                        {
                            c.commit();
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Some(Err(e)) => {
                        *capture = None;
                        Poll::Ready(Some(Err(e)))
                    }
                    None => {
                        if let Some(c) = capture.take() {
                            c.commit();
                        }
                        Poll::Ready(None)
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Stored { data } => data.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Stored { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Upstream { body, .. } => body.size_hint(),
        }
    }
}

impl<B> fmt::Debug for CacheBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Stored { data } => f
                .debug_struct("CacheBody::Stored")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Upstream { capture, .. } => f
                .debug_struct("CacheBody::Upstream")
                .field("capturing", &capture.is_some())
                .finish(),
        }
    }
}
