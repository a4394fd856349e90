//! The response body: `STDOUT` after the CGI header block, streamed as records arrive.
//!
//! The body owns the connection (it is `'static`, so hyper can send it), applies the read
//! timeout between records, logs `STDERR`, and at `END_REQUEST` returns the connection to the
//! pool.
//!
//! When the application said `Content-Length`, the body is that many bytes: more is a protocol
//! error, and so is `END_REQUEST` before them. The frame with the last bytes is held until
//! `END_REQUEST` arrives (php-fpm sends both in one write), and the body reports its end with
//! that frame: hyper stops polling a body once its `Content-Length` is written, so a body that
//! waited for one more poll would be dropped as if the client had gone away, its connection
//! closed and its response never stored by the cache. A failure after the head went out ends the stream with an [`Error`]; dropping the
//! body early is a client abort (see [`ClientAbort`](crate::ClientAbort)).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::error::{Error, ErrorKind};
use crate::exchange::{self, Exchange, REQUEST_ID};
use crate::proto::RecordType;

/// The body of a FastCGI response.
pub struct ResponseBody {
    /// Bytes already read past the header block, delivered first.
    pending: Bytes,
    /// The live exchange; `None` once `END_REQUEST` arrived or the stream failed.
    streaming: Option<Box<Streaming>>,
}

struct Streaming {
    exchange: Exchange,
    deadline: Pin<Box<Sleep>>,
    /// Bytes still to come when the application said `Content-Length`.
    remaining: Option<u64>,
    /// The last bytes of a `Content-Length` body, held until `END_REQUEST` so the frame that
    /// carries them also ends the body (see the module docs).
    last: Option<Bytes>,
}

// === impl ResponseBody ===

impl ResponseBody {
    /// A body whose every byte is already here.
    pub(crate) fn complete(data: Bytes) -> Self {
        Self {
            pending: data,
            streaming: None,
        }
    }

    /// A body that streams from `exchange` after `pending`, ending at `END_REQUEST`, with
    /// `remaining` bytes to go when the application said `Content-Length`.
    pub(crate) fn streaming(pending: Bytes, exchange: Exchange, remaining: Option<u64>) -> Self {
        let timeout = exchange.shared().config.read_timeout;
        Self {
            pending,
            streaming: Some(Box::new(Streaming {
                exchange,
                deadline: Box::pin(tokio::time::sleep(timeout)),
                remaining,
                last: None,
            })),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::complete(Bytes::new())
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if let Some(s) = self.streaming.take() {
            s.exchange.discard();
        }
        Poll::Ready(Some(Err(error.sent(true))))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut this.pending)))));
        }
        loop {
            let Some(s) = this.streaming.as_mut() else {
                return Poll::Ready(None);
            };
            let timeout = s.exchange.shared().config.read_timeout;
            let conn = s.exchange.conn();
            let rec = match conn.next_record() {
                Ok(Some(rec)) => rec,
                Ok(None) => match conn.poll_fill(cx) {
                    Poll::Ready(Ok(0)) => {
                        return this.fail(Error::new(
                            ErrorKind::ClosedEarly,
                            "connection closed mid-response",
                        ));
                    }
                    Poll::Ready(Ok(_)) => {
                        s.deadline.as_mut().reset(Instant::now() + timeout);
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        return this.fail(
                            Error::new(ErrorKind::ClosedEarly, "read failed").with_source(e),
                        );
                    }
                    Poll::Pending => {
                        if s.deadline.as_mut().poll(cx).is_ready() {
                            return this.fail(Error::new(ErrorKind::ReadTimeout, "read timed out"));
                        }
                        return Poll::Pending;
                    }
                },
                Err(e) => return this.fail(e),
            };
            match rec.record_type {
                RecordType::Stdout if rec.request_id == REQUEST_ID && !rec.content.is_empty() => {
                    let Some(remaining) = s.remaining.as_mut() else {
                        return Poll::Ready(Some(Ok(Frame::data(rec.content))));
                    };
                    let len = rec.content.len() as u64;
                    if len > *remaining {
                        return this.fail(Error::new(
                            ErrorKind::Protocol,
                            "the application sent more than its Content-Length",
                        ));
                    }
                    *remaining -= len;
                    if *remaining > 0 {
                        return Poll::Ready(Some(Ok(Frame::data(rec.content))));
                    }
                    s.last = Some(rec.content);
                }
                RecordType::EndRequest if rec.request_id == REQUEST_ID => {
                    if s.remaining.is_some_and(|r| r > 0) {
                        return this.fail(Error::new(
                            ErrorKind::ClosedEarly,
                            "the application ended the request before its Content-Length",
                        ));
                    }
                    let checked = exchange::end_request(&rec).and_then(exchange::check_end);
                    return match checked {
                        Ok(()) => {
                            let last = this.streaming.take().and_then(|s| {
                                s.exchange.finish();
                                s.last
                            });
                            // `streaming` is gone, so the body says it ended with its last
                            // frame: consumers that stop there (hyper at the length, the
                            // cache, the cluster's accounting) see it complete.
                            Poll::Ready(last.map(|d| Ok(Frame::data(d))))
                        }
                        Err(e) => this.fail(e),
                    };
                }
                _ => exchange::log_record(&rec, &s.exchange.shared().addr),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.streaming.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let held = |s: &Streaming| s.last.as_ref().map_or(0, |d| d.len() as u64);
        if let Some(s) = &self.streaming
            && let Some(remaining) = s.remaining
        {
            SizeHint::with_exact(self.pending.len() as u64 + held(s) + remaining)
        } else if self.streaming.is_none() {
            SizeHint::with_exact(self.pending.len() as u64)
        } else {
            let mut hint = SizeHint::new();
            hint.set_lower(self.pending.len() as u64);
            hint
        }
    }
}

impl Default for ResponseBody {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("pending", &self.pending.len())
            .field("streaming", &self.streaming.is_some())
            .finish()
    }
}
