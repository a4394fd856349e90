//! Response buffering (`buffer-responses`, nginx's `proxy_buffering`): the backend's response
//! body is read at full speed into a spool, so the backend's slot and connection are released as
//! soon as the body is in Director, however slowly the client reads it.
//!
//! It sits just outside the cluster's grant body (see [`crate::cluster`]): a task drives the
//! upstream body (the grant body around the transport's body) to its end, which releases the
//! request's slot and returns the connection to its pool, while the client is served from the
//! spool. Each response keeps at most `memory` bytes in memory (plus one frame); the rest goes to
//! an unlinked temporary file of at most `max-temp-file-size` bytes, written and read on the
//! blocking pool. Beyond both, the task waits for the client to take memory back: the rest of the
//! body streams and the slot is held, as in nginx. A client that goes away stops the task, which
//! drops the upstream body (so `on-client-abort` applies as without buffering).
//!
//! Responses that must stream are never buffered: bodiless ones (HEAD, 204, 304), upgrades,
//! server-sent events (`text/event-stream`) and those the backend marks `X-Accel-Buffering: no`.

use std::{
    collections::VecDeque,
    fs::File,
    future::Future,
    os::unix::fs::FileExt,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use http::{HeaderMap, Response, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::{sync::Notify, task::JoinHandle};

use crate::body::{Body, BoxError};

/// How much of one response may be buffered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferLimits {
    /// Bytes kept in memory per response.
    pub memory: usize,
    /// Bytes written to the response's temporary file at most (0: no file).
    pub max_temp_file: u64,
}

impl BufferLimits {
    /// The memory used when `buffer-responses = true`: 1 MiB per response.
    pub const DEFAULT_MEMORY: usize = 1 << 20;
    /// The default `max-temp-file-size`: 1 GiB, as nginx's `proxy_max_temp_file_size`.
    pub const DEFAULT_MAX_TEMP_FILE: u64 = 1 << 30;
}

/// How much the client side reads from the temporary file at once.
const FILE_CHUNK: usize = 64 * 1024;

/// Whether `response` must reach the client as the backend sends it, buffering or not.
pub fn must_stream(response: &Response<Body>) -> bool {
    let headers = response.headers();
    let token = |name: header::HeaderName, value: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case(value))
            })
        })
    };
    response.body().is_end_stream()
        || response.status().is_informational()
        || token(header::CONTENT_TYPE, "text/event-stream")
        || token(header::HeaderName::from_static("x-accel-buffering"), "no")
}

/// Reads `upstream` into a spool in a task of its own and returns the body that serves the
/// client from it. Needs a Tokio runtime.
pub fn spool(upstream: Body, limits: BufferLimits) -> Body {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        space: Notify::new(),
        gone: Notify::new(),
    });
    // The length stays known to the layers outside (the cache's size check, HTTP/2 framing).
    let remaining = upstream.size_hint().exact();
    tokio::spawn(fill(upstream, shared.clone(), limits));
    crate::body::boxed(SpoolBody {
        shared,
        reading: None,
        remaining,
    })
}

/// The spool of one response, shared by the task that fills it and the body that empties it.
/// Its lock is this response's own, held only to push or pop.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// The client took bytes out of memory.
    space: Notify,
    /// The client went away.
    gone: Notify,
}

#[derive(Debug, Default)]
struct State {
    segments: VecDeque<Segment>,
    /// Bytes of the memory segments queued.
    memory: usize,
    /// The temporary file, once there is one.
    file: Option<Arc<File>>,
    /// Everything the backend sent is queued (the end, or its error).
    done: bool,
    reader: Option<Waker>,
    reader_gone: bool,
}

#[derive(Debug)]
enum Segment {
    Memory(Bytes),
    File { offset: u64, len: usize },
    Trailers(HeaderMap),
    Error(BoxError),
    End,
}

impl Shared {
    fn push(&self, segment: Segment, done: bool) -> bool {
        let waker = {
            let mut state = self.state.lock().expect("spool lock");
            if state.reader_gone {
                return false;
            }
            if let Segment::Memory(data) = &segment {
                state.memory += data.len();
            }
            state.segments.push_back(segment);
            state.done = done;
            state.reader.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }
}

/// Where the next frame of data can go.
enum Room {
    Memory,
    File,
    None,
}

/// Reads the upstream body to its end (or until the client goes away) into the spool.
async fn fill(mut upstream: Body, shared: Arc<Shared>, limits: BufferLimits) {
    let mut file_len = 0u64;
    let mut file_failed = limits.max_temp_file == 0;
    loop {
        let frame = tokio::select! {
            biased;
            () = shared.gone.notified() => return,
            frame = upstream.frame() => frame,
        };
        let frame = match frame {
            None => {
                shared.push(Segment::End, true);
                return;
            }
            Some(Err(err)) => {
                shared.push(Segment::Error(err), true);
                return;
            }
            Some(Ok(frame)) => frame,
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers()
                    && !shared.push(Segment::Trailers(trailers), false)
                {
                    return;
                }
                continue;
            }
        };
        if data.is_empty() {
            continue;
        }
        loop {
            let room = {
                let state = shared.state.lock().expect("spool lock");
                if state.reader_gone {
                    return;
                }
                let file_room =
                    !file_failed && file_len + data.len() as u64 <= limits.max_temp_file;
                if state.memory + data.len() <= limits.memory {
                    Room::Memory
                } else if file_room {
                    Room::File
                } else if state.memory == 0 {
                    // A frame larger than the memory limit still goes through, one at a time.
                    Room::Memory
                } else {
                    Room::None
                }
            };
            match room {
                Room::Memory => {
                    if !shared.push(Segment::Memory(data), false) {
                        return;
                    }
                    break;
                }
                Room::File => match write_file(&shared, file_len, data.clone()).await {
                    Ok(()) => {
                        let segment = Segment::File {
                            offset: file_len,
                            len: data.len(),
                        };
                        file_len += data.len() as u64;
                        if !shared.push(segment, false) {
                            return;
                        }
                        break;
                    }
                    Err(err) => {
                        // A full disk, say: keep streaming from memory instead.
                        tracing::warn!(error = %err, "cannot buffer a response to a temporary file");
                        file_failed = true;
                    }
                },
                // Buffers full: stream the rest at the client's pace (the slot stays taken).
                Room::None => {
                    tokio::select! {
                        biased;
                        () = shared.gone.notified() => return,
                        () = shared.space.notified() => {}
                    }
                }
            }
        }
    }
}

/// Appends `data` at `offset` of the response's temporary file, creating the file (unlinked)
/// the first time.
async fn write_file(shared: &Arc<Shared>, offset: u64, data: Bytes) -> std::io::Result<()> {
    let existing = shared.state.lock().expect("spool lock").file.clone();
    let file = match existing {
        Some(file) => file,
        None => {
            let file = Arc::new(blocking(tempfile::tempfile).await?);
            shared.state.lock().expect("spool lock").file = Some(file.clone());
            file
        }
    };
    // The bytes come back to be freed here: no allocation changes threads on the blocking pool
    // (an allocator's per-thread caches there would hold memory long after).
    let data = blocking(move || file.write_all_at(&data, offset).map(|()| data)).await?;
    drop(data);
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// The body the client reads: the spool's segments in order.
#[derive(Debug)]
struct SpoolBody {
    shared: Arc<Shared>,
    reading: Option<JoinHandle<std::io::Result<Vec<u8>>>>,
    /// Bytes still to come, when the backend declared its length.
    remaining: Option<u64>,
}

impl SpoolBody {
    fn data(&mut self, data: Bytes) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(remaining) = &mut self.remaining {
            *remaining = remaining.saturating_sub(data.len() as u64);
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

impl HttpBody for SpoolBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(reading) = &mut self.reading {
                let read = std::task::ready!(Pin::new(reading).poll(cx));
                self.reading = None;
                return match read {
                    Ok(Ok(data)) => self.data(Bytes::from(data)),
                    Ok(Err(err)) => Poll::Ready(Some(Err(BoxError::from(err)))),
                    Err(err) => Poll::Ready(Some(Err(BoxError::from(err)))),
                };
            }
            let mut state = self.shared.state.lock().expect("spool lock");
            match state.segments.pop_front() {
                Some(Segment::Memory(data)) => {
                    state.memory -= data.len();
                    drop(state);
                    self.shared.space.notify_one();
                    return self.data(data);
                }
                Some(Segment::File { offset, len }) => {
                    let take = len.min(FILE_CHUNK);
                    if take < len {
                        state.segments.push_front(Segment::File {
                            offset: offset + take as u64,
                            len: len - take,
                        });
                    }
                    let file = state.file.clone().expect("a file segment has its file");
                    drop(state);
                    let mut data = vec![0; take];
                    self.reading = Some(tokio::task::spawn_blocking(move || {
                        file.read_exact_at(&mut data, offset)?;
                        Ok(data)
                    }));
                }
                Some(Segment::End) => {
                    state.done = true;
                    return Poll::Ready(None);
                }
                Some(Segment::Trailers(trailers)) => {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Some(Segment::Error(err)) => return Poll::Ready(Some(Err(err))),
                None if state.done => return Poll::Ready(None),
                None => {
                    state.reader = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let state = self.shared.state.lock().expect("spool lock");
        self.reading.is_none() && state.done && state.segments.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        self.remaining
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

impl Drop for SpoolBody {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock().expect("spool lock");
        state.reader_gone = true;
        state.segments.clear();
        drop(state);
        self.shared.gone.notify_one();
    }
}

#[cfg(test)]
mod tests;
