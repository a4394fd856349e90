//! The request-body spool: a body of unknown length (chunked HTTP/1.1, HTTP/2 without
//! `content-length`) is read whole before the application is asked, so it can be sent with its
//! `CONTENT_LENGTH`, as nginx does. CGI has no way to say "a body of unknown length follows":
//! PHP reads `CONTENT_LENGTH` bytes of `STDIN`, and without it reads none.
//!
//! The body is kept in memory up to [`SpoolConfig::memory`], then in a temporary file in
//! [`SpoolConfig::dir`], unlinked as soon as it is created, so nothing is left behind whatever
//! happens to the request or the process. A body that fails while it is read (the client went
//! away, stalled, or sent more than the embedder's limit) fails the spool with the body's own
//! error as the source: the application is never asked, because the body is not whole. File I/O
//! runs on tokio's blocking pool (`tokio::fs`), never on the runtime threads.
//!
//! Generic over any [`http_body::Body`]: the embedder's limits and timeouts arrive as body
//! errors.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::error::{BoxError, Error, ErrorKind};

/// Read size from a spool file.
const READ_CHUNK: usize = 64 * 1024;

/// Where a spooled body is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Bytes kept in memory; a larger body goes to a temporary file.
    pub memory: usize,
    /// The directory of the temporary files.
    pub dir: PathBuf,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            memory: 64 * 1024,
            dir: std::env::temp_dir(),
        }
    }
}

/// A body read whole: in memory or in an unlinked temporary file. It replays its bytes once, as
/// an [`http_body::Body`] of exact size.
pub struct SpooledBody {
    len: u64,
    kind: Kind,
}

enum Kind {
    Memory(Option<Bytes>),
    File {
        file: tokio::fs::File,
        remaining: u64,
        buf: BytesMut,
    },
}

// === impl SpooledBody ===

impl SpooledBody {
    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the body went to a temporary file.
    pub fn on_disk(&self) -> bool {
        matches!(self.kind, Kind::File { .. })
    }
}

impl Body for SpooledBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Memory(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::File {
                file,
                remaining,
                buf,
            } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                buf.reserve(READ_CHUNK);
                let n = match tokio_util::io::poll_read_buf(Pin::new(file), cx, buf) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(n)) => n as u64,
                };
                if n == 0 || n > *remaining {
                    // Nobody else writes the unlinked file; a change of size is a fault.
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the spool file changed size",
                    ))));
                }
                *remaining -= n;
                Poll::Ready(Some(Ok(Frame::data(buf.split().freeze()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Memory(data) => data.is_none(),
            Kind::File { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Memory(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::File { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}

impl fmt::Debug for SpooledBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpooledBody")
            .field("len", &self.len)
            .field("on_disk", &self.on_disk())
            .finish()
    }
}

/// Reads `body` whole. Fails with [`ErrorKind::RequestBody`] (the body's error as the source)
/// when the body fails, and with [`ErrorKind::Spool`] when the temporary file cannot be
/// written.
pub async fn spool<B>(body: B, config: &SpoolConfig) -> Result<SpooledBody, Error>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = pin!(body);
    let mut memory = BytesMut::new();
    let mut file: Option<tokio::fs::File> = None;
    let mut len: u64 = 0;
    loop {
        // The error is boxed at once so no `B::Error` (maybe !Send) lives across an await.
        let frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx))
            .await
            .map(|f| {
                f.map(|f| f.into_data().ok())
                    .map_err(Into::<BoxError>::into)
            });
        let mut data = match frame {
            None => break,
            Some(Err(e)) => {
                return Err(
                    Error::new(ErrorKind::RequestBody, "request body failed").with_source(e)
                );
            }
            // Trailers have no place in CGI.
            Some(Ok(None)) => continue,
            Some(Ok(Some(data))) => data,
        };
        len += data.remaining() as u64;
        if file.is_none() && memory.len() + data.remaining() <= config.memory {
            while data.has_remaining() {
                let chunk = data.chunk();
                memory.extend_from_slice(chunk);
                let n = chunk.len();
                data.advance(n);
            }
            continue;
        }
        let f = match &mut file {
            Some(f) => f,
            None => {
                let mut f = create_unlinked(&config.dir).await.map_err(spool_error)?;
                f.write_all(&memory).await.map_err(spool_error)?;
                memory = BytesMut::new();
                file.insert(f)
            }
        };
        while data.has_remaining() {
            let chunk = data.chunk();
            f.write_all(chunk).await.map_err(spool_error)?;
            let n = chunk.len();
            data.advance(n);
        }
    }
    let kind = match file {
        None => Kind::Memory(Some(memory.freeze())),
        Some(mut f) => {
            f.flush().await.map_err(spool_error)?;
            f.seek(io::SeekFrom::Start(0)).await.map_err(spool_error)?;
            Kind::File {
                file: f,
                remaining: len,
                buf: BytesMut::new(),
            }
        }
    };
    Ok(SpooledBody { len, kind })
}

fn spool_error(e: io::Error) -> Error {
    Error::new(ErrorKind::Spool, "cannot buffer the request body").with_source(e)
}

/// Creates a temporary file readable only by this user in `dir` and unlinks it at once: the
/// open handle keeps it alive, and nothing is left on disk whatever happens next.
async fn create_unlinked(dir: &Path) -> io::Result<tokio::fs::File> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".director-spool-{pid}-{n}"));
        let opened = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .await;
        match opened {
            Ok(file) => {
                tokio::fs::remove_file(&path).await?;
                return Ok(file);
            }
            // A leftover of an earlier process with the same pid (killed between create and
            // unlink): take the next name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
