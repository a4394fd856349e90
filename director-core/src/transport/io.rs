//! The upstream socket: TCP or UNIX, with a write-inactivity timeout.
//!
//! A write that makes no progress for `write_timeout` fails with `TimedOut`, which hyper reports
//! as a failed exchange; that is how a backend that stops reading an upload is detected. The timer
//! is only armed when a write would block, so the common path costs nothing.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpStream, UnixStream},
    time::{Instant, Sleep},
};

/// A connected upstream stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A [`Stream`] whose writes time out when they make no progress.
#[derive(Debug)]
pub(crate) struct TimedIo {
    stream: Stream,
    write_timeout: Duration,
    // Allocated on the first blocked write only; re-armed (not re-allocated) afterwards.
    write_timer: Option<Pin<Box<Sleep>>>,
    write_timer_armed: bool,
}

impl TimedIo {
    pub(crate) fn new(stream: Stream, write_timeout: Duration) -> Self {
        TimedIo {
            stream,
            write_timeout,
            write_timer: None,
            write_timer_armed: false,
        }
    }

    /// Called when a write returned `Pending`: arms the timer, or fails if it has expired.
    fn poll_write_timer(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = Instant::now() + self.write_timeout;
        if !self.write_timer_armed {
            self.write_timer_armed = true;
            match &mut self.write_timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.write_timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let timer = self.write_timer.as_mut().expect("armed above");
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "write to backend timed out",
        ))
    }

    fn write_progressed(&mut self) {
        self.write_timer_armed = false;
    }
}

macro_rules! with_stream {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.stream {
            Stream::Tcp($s) => $e,
            Stream::Unix($s) => $e,
        }
    };
}

use std::future::Future;

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        with_stream!(this, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl TimedIo {
    fn finish_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        res: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match res {
            Poll::Pending => match self.poll_write_timer(cx) {
                Poll::Ready(err) => Poll::Ready(Err(err)),
                Poll::Pending => Poll::Pending,
            },
            ready => {
                self.write_progressed();
                ready
            }
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = with_stream!(this, s => Pin::new(s).poll_write(cx, buf));
        this.finish_write(cx, res)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = with_stream!(this, s => Pin::new(s).poll_write_vectored(cx, bufs));
        this.finish_write(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = with_stream!(this, s => Pin::new(s).poll_flush(cx));
        this.finish_write(cx, res)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        with_stream!(this, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// An upgraded connection whose reads of at least one byte bump a shared counter, so a tunnel
/// can tell when neither side has sent anything for its idle timeout.
#[derive(Debug)]
pub(crate) struct Active<T> {
    io: T,
    activity: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<T> Active<T> {
    pub(crate) fn new(io: T, activity: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Self {
        Active { io, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Active<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
