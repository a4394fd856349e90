//! Bodies on the upstream side: the response body that hands its connection back to the pool,
//! and the request body that reports its progress (to the read timeout) and whether the client
//! broke it (so a failure that follows is the client's).

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::{body::Incoming, client::conn::http1};
use tokio::time::{Instant, Sleep};

use super::Shared;
use crate::{
    body::{Body, BoxError, ClientBodyError, client_body_error},
    error::{ErrorKind, ProxyError},
};

/// What the backend connection has done with the request body so far.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Frames handed to the connection.
    frames: AtomicUsize,
    /// The connection is waiting for the client's next bytes (its last poll was pending), a
    /// phase the client controls and `client-body-timeout` bounds.
    waiting_for_client: AtomicBool,
    /// The client's body failed ([`ClientBodyError`]).
    client_failed: AtomicBool,
}

impl Progress {
    pub(super) fn frames(&self) -> usize {
        self.frames.load(Ordering::Relaxed)
    }

    pub(super) fn waiting_for_client(&self) -> bool {
        self.waiting_for_client.load(Ordering::Relaxed)
    }

    pub(super) fn client_failed(&self) -> bool {
        self.client_failed.load(Ordering::Relaxed)
    }
}

/// A connection waiting to go back to its pool once the response has been read.
#[derive(Debug)]
pub(super) struct PoolReturn {
    pub(super) shared: Arc<Shared>,
    pub(super) tx: http1::SendRequest<Body>,
}

/// A backend's response body.
///
/// It returns the connection to the pool as soon as the last byte has been read (so keep-alive
/// works without waiting for the client), and fails with a timeout when the backend stays silent
/// for longer than the read timeout between chunks.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Incoming,
    pool_return: Option<PoolReturn>,
    request: Option<Arc<Progress>>,
    read_timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    timer_armed: bool,
}

impl UpstreamBody {
    pub(super) fn new(
        inner: Incoming,
        pool_return: Option<PoolReturn>,
        request: Option<Arc<Progress>>,
        read_timeout: Duration,
    ) -> Self {
        let mut body = UpstreamBody {
            inner,
            pool_return,
            request,
            read_timeout,
            timer: None,
            timer_armed: false,
        };
        // Bodiless responses (HEAD, 204, 304) may never be polled: release right away.
        body.release_if_done();
        body
    }

    fn release_if_done(&mut self) {
        if self.inner.is_end_stream()
            && let Some(PoolReturn { shared, tx }) = self.pool_return.take()
        {
            Shared::release(&shared, tx);
        }
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = Instant::now() + self.read_timeout;
        if !self.timer_armed {
            self.timer_armed = true;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        self.timer.as_mut().expect("armed above").as_mut().poll(cx)
    }
}

use std::future::Future;

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer_armed = false;
                this.release_if_done();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                // The connection is broken; dropping the sender lets it close.
                this.pool_return = None;
                // The client's body broke off after the response began: hyper ended the
                // exchange, and the fault is the client's.
                if this.request.as_ref().is_some_and(|p| p.client_failed()) {
                    let cause = ClientBodyError::Read(err.into());
                    return Poll::Ready(Some(Err(ProxyError::client_body(cause).into())));
                }
                Poll::Ready(Some(Err(ProxyError::new(ErrorKind::UpstreamBroken)
                    .with_source(err)
                    .sent()
                    .into())))
            }
            Poll::Ready(None) => {
                this.release_if_done();
                Poll::Ready(None)
            }
            Poll::Pending => match this.poll_timer(cx) {
                Poll::Ready(()) => {
                    this.pool_return = None;
                    Poll::Ready(Some(Err(ProxyError::new(ErrorKind::Timeout)
                        .with_detail("the backend stopped sending the response body")
                        .sent()
                        .into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that records its [`Progress`], so the wait for the response head does not
/// time out while a large upload is still flowing or while the client is the one to wait for.
#[derive(Debug)]
pub(super) struct ProgressBody {
    inner: Body,
    progress: Arc<Progress>,
}

impl ProgressBody {
    pub(super) fn wrap(inner: Body, progress: Arc<Progress>) -> Body {
        crate::body::boxed(ProgressBody { inner, progress })
    }
}

impl HttpBody for ProgressBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let progress = &this.progress;
        match &polled {
            Poll::Pending => progress.waiting_for_client.store(true, Ordering::Relaxed),
            Poll::Ready(item) => {
                progress.waiting_for_client.store(false, Ordering::Relaxed);
                progress.frames.fetch_add(1, Ordering::Relaxed);
                if let Some(Err(err)) = item
                    && client_body_error(&**err).is_some()
                {
                    progress.client_failed.store(true, Ordering::Relaxed);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
