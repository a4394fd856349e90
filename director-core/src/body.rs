//! The one body type that flows through Director's service tree.
//!
//! Every layer speaks `http::Request<Body>` and `http::Response<Body>`, so layers compose without
//! generic gymnastics. The box is `Send` but not `Sync`: hyper's server needs only `Send`, and
//! requiring `Sync` would exclude streaming bodies.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use tokio::time::{Instant, Sleep};

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
    /// A short explanation for the client.
    pub fn describe(&self) -> &'static str {
        match self {
            ClientBodyError::Read(_) => "the request body could not be read",
            ClientBodyError::Timeout(_) => "the request body was not sent in time",
            ClientBodyError::TooLarge(_) => "the request body is too large",
        }
    }

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

/// A client's request body as the listener hands it on: its errors become
/// [`ClientBodyError::Read`], and a client that sends no body bytes for `timeout` while Director
/// waits for them gets [`ClientBodyError::Timeout`] (`client-body-timeout`).
///
/// The timer runs only while a reader waits (`poll_frame` returned `Pending`), so a backend that
/// is slow to read the upload never makes it the client's fault. One `Sleep` is allocated on the
/// first wait and re-armed afterwards.
#[derive(Debug)]
pub struct ClientBody<B> {
    inner: B,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    timer_armed: bool,
    failed: bool,
}

impl<B> ClientBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// Wraps a client's `body`, failing after `timeout` without body bytes.
    pub fn new(inner: B, timeout: Duration) -> Self {
        ClientBody {
            inner,
            timeout,
            timer: None,
            timer_armed: false,
            failed: false,
        }
    }

    /// Wraps and boxes a client's `body`.
    pub fn wrap(inner: B, timeout: Duration) -> Body {
        Self::new(inner, timeout).boxed_unsync()
    }
}

impl<B> http_body::Body for ClientBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer_armed = false;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.failed = true;
                Poll::Ready(Some(Err(ClientBodyError::Read(err.into()).into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = Instant::now() + this.timeout;
                if !this.timer_armed {
                    this.timer_armed = true;
                    match &mut this.timer {
                        Some(timer) => timer.as_mut().reset(deadline),
                        None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                let timer = this.timer.as_mut().expect("armed above");
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.failed = true;
                        Poll::Ready(Some(Err(ClientBodyError::Timeout(this.timeout).into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
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
    use tokio::sync::mpsc;

    use super::*;

    /// A body fed by a channel, as a client's upload arrives.
    struct Fed(mpsc::Receiver<Result<Bytes, BoxError>>);

    impl http_body::Body for Fed {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0
                .poll_recv(cx)
                .map(|item| item.map(|r| r.map(Frame::data)))
        }
    }

    fn fed(timeout: Duration) -> (mpsc::Sender<Result<Bytes, BoxError>>, Body) {
        let (tx, rx) = mpsc::channel(4);
        (tx, ClientBody::wrap(Fed(rx), timeout))
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_times_out_after_its_last_bytes() {
        let timeout = Duration::from_secs(30);
        let (tx, mut body) = fed(timeout);
        let started = Instant::now();
        // Bytes every 20 s keep it alive past the timeout.
        let feeder = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                tx.send(Ok(Bytes::from_static(b"x"))).await.unwrap();
            }
            // Then silence, with the sender still open.
            std::future::pending::<()>().await;
        });
        for _ in 0..3 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "x");
        }
        let err = body.frame().await.unwrap().unwrap_err();
        let found = client_body_error(&*err).expect("a client body error");
        assert!(matches!(found, ClientBodyError::Timeout(t) if *t == timeout));
        assert_eq!(found.status(), http::StatusCode::REQUEST_TIMEOUT);
        assert_eq!(started.elapsed(), Duration::from_secs(60 + 30));
        assert!(body.frame().await.is_none(), "nothing after the error");
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn read_errors_are_the_clients() {
        let (tx, mut body) = fed(Duration::from_secs(30));
        tx.send(Err("connection reset".into())).await.unwrap();
        let err = body.frame().await.unwrap().unwrap_err();
        let found = client_body_error(&*err).expect("a client body error");
        assert!(matches!(found, ClientBodyError::Read(_)));
        assert_eq!(found.status(), http::StatusCode::BAD_REQUEST);
    }

    #[tokio::test(start_paused = true)]
    async fn no_timer_runs_while_nobody_reads() {
        let (tx, mut body) = fed(Duration::from_secs(30));
        // A reader that waits longer than the timeout before asking is not the client's delay.
        tokio::time::sleep(Duration::from_secs(120)).await;
        tx.send(Ok(Bytes::from_static(b"late"))).await.unwrap();
        drop(tx);
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "late");
        assert!(body.frame().await.is_none());
    }
}
