//! Bodies on the upstream side: the response body that hands its connection back to the pool,
//! and the request body that reports progress to the read timeout.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
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
    body::{Body, BoxError},
    error::{ErrorKind, ProxyError},
};

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
    read_timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    timer_armed: bool,
}

impl UpstreamBody {
    pub(super) fn new(
        inner: Incoming,
        pool_return: Option<PoolReturn>,
        read_timeout: Duration,
    ) -> Self {
        let mut body = UpstreamBody {
            inner,
            pool_return,
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
            shared.release(tx);
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

/// A request body that counts the frames it has handed to the backend connection, so the wait
/// for the response head does not time out while a large upload is still flowing.
#[derive(Debug)]
pub(super) struct ProgressBody {
    inner: Body,
    frames: Arc<AtomicUsize>,
}

impl ProgressBody {
    pub(super) fn wrap(inner: Body, frames: Arc<AtomicUsize>) -> Body {
        crate::body::boxed(ProgressBody { inner, frames })
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
        if polled.is_ready() {
            this.frames.fetch_add(1, Ordering::Relaxed);
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
