//! One connection to a FastCGI application: the socket, its read buffer, and the few I/O
//! primitives the exchange needs (connect with a timeout, write while reading, read records).
//!
//! The pure record parser lives in [`crate::proto`]; this module only moves bytes.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::error::{Error, ErrorKind};
use crate::proto::Record;

/// Where a FastCGI application listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FastCgiAddr {
    /// A TCP address, IPv4 or IPv6.
    Tcp(SocketAddr),
    /// A UNIX domain socket path.
    Unix(PathBuf),
}

impl fmt::Display for FastCgiAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "{a}"),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl From<SocketAddr> for FastCgiAddr {
    fn from(addr: SocketAddr) -> Self {
        Self::Tcp(addr)
    }
}

impl From<PathBuf> for FastCgiAddr {
    fn from(path: PathBuf) -> Self {
        Self::Unix(path)
    }
}

/// The socket under a connection.
#[derive(Debug)]
pub(crate) enum Io {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A connection: the socket and the bytes read from it but not parsed yet.
#[derive(Debug)]
pub(crate) struct Conn {
    io: Io,
    pub(crate) read_buf: BytesMut,
    /// Whether this connection served an earlier request (came from the pool).
    pub(crate) reused: bool,
}

/// What [`Conn::write_while_reading`] stopped for.
pub(crate) enum Progress {
    /// All output was written.
    Written,
    /// New input arrived; parse it before writing on.
    Read,
}

// === impl Conn ===

impl Conn {
    /// Connects within `timeout`. TCP connections get `TCP_NODELAY`: records are written whole
    /// and small ones (end of stream) must not wait for Nagle.
    pub(crate) async fn connect(addr: &FastCgiAddr, timeout: Duration) -> Result<Self, Error> {
        let connect = async {
            match addr {
                FastCgiAddr::Tcp(a) => {
                    let s = TcpStream::connect(a).await?;
                    s.set_nodelay(true)?;
                    Ok(Io::Tcp(s))
                }
                FastCgiAddr::Unix(p) => UnixStream::connect(p).await.map(Io::Unix),
            }
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(io)) => Ok(Self {
                io,
                read_buf: BytesMut::with_capacity(16 * 1024),
                reused: false,
            }),
            Ok(Err(e)) => Err(Error::new(ErrorKind::Connect, "connect failed").with_source(e)),
            Err(_) => Err(Error::new(ErrorKind::ConnectTimeout, "connect timed out")),
        }
    }

    /// Reads more bytes into the read buffer; `Ready(Ok(0))` means end of stream.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read_buf.capacity() - self.read_buf.len() < 4096 {
            self.read_buf.reserve(16 * 1024);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read_buf)
    }

    /// Reads more bytes into the read buffer. Cancel safe.
    pub(crate) async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Splits the next whole record off the read buffer, if one is there.
    pub(crate) fn next_record(&mut self) -> Result<Option<Record>, Error> {
        Record::parse(&mut self.read_buf)
            .map_err(|e| Error::new(ErrorKind::Protocol, "invalid record").with_source(e))
    }

    /// Reads until a whole record is buffered, waiting at most `timeout` for each read.
    /// `Ok(None)` is end of stream.
    pub(crate) async fn read_record(&mut self, timeout: Duration) -> Result<Option<Record>, Error> {
        loop {
            if let Some(rec) = self.next_record()? {
                return Ok(Some(rec));
            }
            match tokio::time::timeout(timeout, self.fill()).await {
                Err(_) => return Err(Error::new(ErrorKind::ReadTimeout, "read timed out")),
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(Error::new(ErrorKind::ClosedEarly, "read failed").with_source(e));
                }
            }
        }
    }

    /// Writes all of `out`, and meanwhile reads whatever the application sends (unless
    /// `read` is false), so neither side can block the other on full socket buffers. Returns
    /// as soon as anything was read, leaving the rest of `out` in place.
    pub(crate) async fn write_while_reading(
        &mut self,
        out: &mut BytesMut,
        read: bool,
    ) -> io::Result<Progress> {
        std::future::poll_fn(|cx| {
            if read {
                match self.poll_fill(cx) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                    Poll::Ready(Ok(_)) => return Poll::Ready(Ok(Progress::Read)),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            while !out.is_empty() {
                match Pin::new(&mut self.io).poll_write(cx, out) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => out.advance(n),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            Poll::Ready(Ok(Progress::Written))
        })
        .await
    }

    /// Writes all of `out` within `timeout` without reading.
    pub(crate) async fn write_all(
        &mut self,
        out: &mut BytesMut,
        timeout: Duration,
    ) -> Result<(), Error> {
        match tokio::time::timeout(timeout, self.write_while_reading(out, false)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::new(ErrorKind::ClosedEarly, "write failed").with_source(e)),
            Err(_) => Err(Error::new(ErrorKind::WriteTimeout, "write timed out")),
        }
    }

    /// Whether an idle connection is still usable: open, and with nothing unexpected to read.
    pub(crate) fn is_idle_usable(&mut self) -> bool {
        if !self.read_buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Pending means open and quiet; EOF, data or an error all mean "do not reuse".
        matches!(self.poll_fill(&mut cx), Poll::Pending)
    }
}
