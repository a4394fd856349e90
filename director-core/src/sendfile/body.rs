//! The body of a served file: whole, one range, or multipart/byteranges, streamed from one open
//! handle in bounded chunks.
//!
//! Reads run on Tokio's blocking pool, one chunk at a time, with the next chunk read while the
//! previous one is written to the client; so a response holds at most two chunks, whatever the
//! file's size. A stretch of up to four chunks is read whole, in one trip.

use std::{
    collections::VecDeque,
    fs::File,
    future::Future,
    io::{self, Read, Seek, SeekFrom},
    ops::RangeInclusive,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::task::JoinHandle;

use crate::body::BoxError;

/// A piece of the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Bytes made here (multipart boundaries and part headers).
    Bytes(Bytes),
    /// A stretch of the file.
    File {
        /// Where it starts.
        offset: u64,
        /// How long it is.
        len: u64,
    },
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::Bytes(b) => b.len() as u64,
            Segment::File { len, .. } => *len,
        }
    }
}

/// The segments of a multipart/byteranges body over a file of `total` bytes whose parts have
/// `content_type`, and its exact length.
pub(crate) fn multipart(
    ranges: &[RangeInclusive<u64>],
    total: u64,
    content_type: &str,
    boundary: &str,
) -> Vec<Segment> {
    let mut segments = Vec::with_capacity(ranges.len() * 2 + 1);
    for (i, r) in ranges.iter().enumerate() {
        let lead = if i == 0 { "" } else { "\r\n" };
        segments.push(Segment::Bytes(Bytes::from(format!(
            "{lead}--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{total}\r\n\r\n",
            r.start(),
            r.end()
        ))));
        segments.push(Segment::File {
            offset: *r.start(),
            len: r.end() - r.start() + 1,
        });
    }
    segments.push(Segment::Bytes(Bytes::from(format!(
        "\r\n--{boundary}--\r\n"
    ))));
    segments
}

/// The total length of `segments`.
pub(crate) fn length(segments: &[Segment]) -> u64 {
    segments.iter().map(Segment::len).sum()
}

/// Streams segments of one open file.
#[derive(Debug)]
pub(crate) struct FileBody {
    file: Arc<File>,
    segments: VecDeque<Segment>,
    // The read of the next chunk of the front `File` segment (already taken off it).
    reading: Option<JoinHandle<io::Result<Bytes>>>,
    remaining: u64,
    chunk: usize,
}

impl FileBody {
    /// A body of `segments` of `file`, read `chunk` bytes at a time.
    pub(crate) fn new(file: File, segments: Vec<Segment>, chunk: usize) -> Self {
        let remaining = length(&segments);
        let mut body = FileBody {
            file: Arc::new(file),
            segments: segments.into_iter().filter(|s| s.len() > 0).collect(),
            reading: None,
            remaining,
            chunk: chunk.max(1),
        };
        body.start_read();
        body
    }

    /// Starts reading the next chunk if the front segment is a stretch of the file.
    fn start_read(&mut self) {
        if self.reading.is_some() {
            return;
        }
        let Some(Segment::File { offset, len }) = self.segments.front_mut() else {
            return;
        };
        // A stretch of up to four chunks (a small file, most ranges) is read in one go: one
        // trip to the blocking pool instead of four, for at most 4 chunks held.
        let n = if *len <= 4 * self.chunk as u64 {
            *len
        } else {
            self.chunk as u64
        };
        let at = *offset;
        *offset += n;
        *len -= n;
        if *len == 0 {
            self.segments.pop_front();
        }
        let file = self.file.clone();
        // Allocated here, on the async side where hyper frees it after writing: an allocator
        // with per-thread heaps (mimalloc) then does not pile freed chunks up in the heaps of
        // blocking-pool threads.
        let buf = Vec::with_capacity(n as usize);
        self.reading = Some(tokio::task::spawn_blocking(move || {
            read_at(&file, at, n, buf)
        }));
    }
}

/// Reads exactly `len` bytes at `offset` (into fresh memory, so nothing is copied again).
fn read_at(file: &File, offset: u64, len: u64, mut buf: Vec<u8>) -> io::Result<Bytes> {
    // Only one read of a body runs at a time, so the shared position is not contended.
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.take(len).read_to_end(&mut buf)?;
    if (buf.len() as u64) < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file shrank while it was being served",
        ));
    }
    Ok(Bytes::from(buf))
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(reading) = &mut this.reading {
            let read = match Pin::new(reading).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(read) => read,
            };
            this.reading = None;
            let bytes = match read {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(err)) => return Poll::Ready(Some(Err(err.into()))),
                Err(join) => return Poll::Ready(Some(Err(join.into()))),
            };
            this.remaining -= bytes.len() as u64;
            // Read ahead while this chunk is written.
            this.start_read();
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        match this.segments.pop_front() {
            None => Poll::Ready(None),
            Some(Segment::Bytes(bytes)) => {
                this.remaining -= bytes.len() as u64;
                this.start_read();
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Some(file @ Segment::File { .. }) => {
                this.segments.push_front(file);
                this.start_read();
                self.poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        // A read in flight finishes on its own; nobody waits for it.
        if let Some(reading) = self.reading.take() {
            reading.abort();
        }
    }
}
