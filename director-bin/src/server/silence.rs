//! How long a client connection may stay silent: what it has done so far ([`Activity`], shared
//! by the connection's reads, its requests and its responses) and the rules that turn that into
//! a deadline ([`deadline`]), so that no phase a client controls is without a timer.
//!
//! - Until its first request head is complete (HTTP/1), or its first HTTP/2 request arrives
//!   (which also covers version detection and the h2 preface and SETTINGS), a connection has
//!   `header-read-timeout` from accept.
//! - HTTP/1 between requests: `keep-alive-timeout` of idleness, then, from the first byte of the
//!   next head, `header-read-timeout` to finish it.
//! - HTTP/2 with no open stream: `keep-alive-timeout`, then GOAWAY.
//!
//! While a request is in flight nothing here runs: request bodies and responses have timers of
//! their own.

use std::{
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

/// No time recorded.
const NONE: u64 = u64::MAX;

/// The timeouts [`deadline`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// For the first request head, and for a later head from its first byte.
    pub(crate) header_read: Duration,
    /// For idleness between requests.
    pub(crate) keep_alive: Duration,
    /// For a response the client stops reading: how long a write to it may make no progress.
    pub(crate) send: Duration,
}

/// What to do with a connection whose deadline has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Close it: nothing of a request is pending that the client could lose.
    Close,
    /// HTTP/2: send GOAWAY and let it end.
    GoAway,
}

/// What a connection has done, at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct State {
    /// When it was accepted.
    pub(crate) accepted: Instant,
    /// Requests started so far.
    pub(crate) requests: u64,
    /// Requests whose response has not been sent completely.
    pub(crate) in_flight: u32,
    /// Whether it speaks HTTP/2 (known from its first request).
    pub(crate) h2: bool,
    /// When its last response ended (`None` while a response is just ending).
    pub(crate) idle_since: Option<Instant>,
    /// When the first byte of the next HTTP/1 head arrived.
    pub(crate) head_started: Option<Instant>,
    /// Since when a write to the client has been waiting for it to read (`None`: writes flow).
    pub(crate) write_blocked: Option<Instant>,
}

/// When the connection must end and how, or `None` while a request is in flight and the client
/// reads its response (or the end of a request is about to be recorded).
pub(crate) fn deadline(state: &State, timeouts: Timeouts) -> Option<(Instant, Expiry)> {
    if state.in_flight > 0 {
        // A client that stops reading would otherwise hold the response, and the backend's
        // slot behind it, for as long as it likes (nginx's `send_timeout`).
        return state
            .write_blocked
            .map(|since| (since + timeouts.send, Expiry::Close));
    }
    if state.requests == 0 {
        return Some((state.accepted + timeouts.header_read, Expiry::Close));
    }
    let idle_since = state.idle_since?;
    if state.h2 {
        return Some((idle_since + timeouts.keep_alive, Expiry::GoAway));
    }
    match state.head_started {
        Some(started) => Some((started + timeouts.header_read, Expiry::Close)),
        None => Some((idle_since + timeouts.keep_alive, Expiry::Close)),
    }
}

/// A connection's activity, updated by its reads, requests and responses; [`Activity::expired`]
/// waits for its deadline.
#[derive(Debug)]
pub(crate) struct Activity {
    accepted: Instant,
    requests: AtomicU64,
    in_flight: AtomicU32,
    h2: AtomicBool,
    /// Nanoseconds after `accepted`, or [`NONE`].
    idle_since: AtomicU64,
    /// Nanoseconds after `accepted`, or [`NONE`].
    head_started: AtomicU64,
    /// Nanoseconds after `accepted`, or [`NONE`].
    write_blocked: AtomicU64,
    changed: Notify,
}

impl Activity {
    /// A connection accepted now.
    pub(crate) fn new() -> Self {
        Activity {
            accepted: Instant::now(),
            requests: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            h2: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            write_blocked: AtomicU64::new(NONE),
            changed: Notify::new(),
        }
    }

    fn stamp(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_nanos()).unwrap_or(NONE - 1)
    }

    fn instant(&self, stamp: u64) -> Option<Instant> {
        (stamp != NONE).then(|| self.accepted + Duration::from_nanos(stamp))
    }

    /// A request head arrived (its response is pending until [`Activity::response_ended`]).
    pub(crate) fn request_started(&self, h2: bool) {
        if h2 {
            self.h2.store(true, Ordering::SeqCst);
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.idle_since.store(NONE, Ordering::SeqCst);
        self.head_started.store(NONE, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::SeqCst);
    }

    /// A response was sent completely, or given up.
    pub(crate) fn response_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle_since.store(self.stamp(), Ordering::SeqCst);
            self.changed.notify_one();
        }
    }

    /// The client sent bytes: on an idle HTTP/1 connection they start the next head's timer.
    pub(crate) fn bytes_read(&self) {
        if self.requests.load(Ordering::Relaxed) == 0
            || self.h2.load(Ordering::Relaxed)
            || self.in_flight.load(Ordering::Relaxed) > 0
            || self.head_started.load(Ordering::Relaxed) != NONE
        {
            return;
        }
        let stamp = self.stamp();
        if self
            .head_started
            .compare_exchange(NONE, stamp, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// A write to the client could not proceed: it starts the send timer, unless running.
    pub(crate) fn write_pending(&self) {
        if self.write_blocked.load(Ordering::Relaxed) != NONE {
            return;
        }
        let stamp = self.stamp();
        if self
            .write_blocked
            .compare_exchange(NONE, stamp, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// A write to the client went through: the send timer stops (one load when it was not
    /// running, as on almost every write).
    pub(crate) fn write_progressed(&self) {
        if self.write_blocked.load(Ordering::Relaxed) != NONE {
            self.write_blocked.store(NONE, Ordering::SeqCst);
        }
    }

    /// The activity now.
    pub(crate) fn state(&self) -> State {
        State {
            accepted: self.accepted,
            requests: self.requests.load(Ordering::SeqCst),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            h2: self.h2.load(Ordering::SeqCst),
            idle_since: self.instant(self.idle_since.load(Ordering::SeqCst)),
            head_started: self.instant(self.head_started.load(Ordering::SeqCst)),
            write_blocked: self.instant(self.write_blocked.load(Ordering::SeqCst)),
        }
    }

    /// Resolves when the connection's deadline has passed, with what to do about it.
    pub(crate) async fn expired(&self, timeouts: Timeouts) -> Expiry {
        loop {
            let changed = self.changed.notified();
            match deadline(&self.state(), timeouts) {
                Some((at, expiry)) if at <= Instant::now() => return expiry,
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// Marks the end of one request's response when dropped (hyper drops a response body once it
/// has been written, or when the connection fails).
#[derive(Debug)]
pub(crate) struct InFlight(pub(crate) std::sync::Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.response_ended();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const T: Timeouts = Timeouts {
        header_read: Duration::from_millis(500),
        keep_alive: Duration::from_secs(60),
        send: Duration::from_secs(5),
    };

    fn state(accepted: Instant) -> State {
        State {
            accepted,
            requests: 0,
            in_flight: 0,
            h2: false,
            idle_since: Some(accepted),
            head_started: None,
            write_blocked: None,
        }
    }

    #[test]
    fn the_first_head_has_the_header_read_timeout_from_accept() {
        let now = Instant::now();
        let silent = state(now);
        assert_eq!(
            deadline(&silent, T),
            Some((now + T.header_read, Expiry::Close))
        );
        // Bytes of a first head (or of an h2 preface) do not move the deadline.
        let trickling = State {
            head_started: Some(now + Duration::from_millis(400)),
            ..silent
        };
        assert_eq!(
            deadline(&trickling, T),
            Some((now + T.header_read, Expiry::Close))
        );
    }

    #[test]
    fn nothing_expires_while_a_request_is_in_flight() {
        let now = Instant::now();
        let busy = State {
            requests: 1,
            in_flight: 1,
            idle_since: None,
            ..state(now)
        };
        assert_eq!(deadline(&busy, T), None);
        // ...unless the client stops reading its response.
        let unread = State {
            write_blocked: Some(now),
            ..busy
        };
        assert_eq!(deadline(&unread, T), Some((now + T.send, Expiry::Close)));
        // Idle, but the end of the last response is not recorded yet: no deadline from a
        // stale time.
        let ending = State {
            in_flight: 0,
            ..busy
        };
        assert_eq!(deadline(&ending, T), None);
    }

    #[test]
    fn http1_idles_for_keep_alive_then_has_header_read_for_the_next_head() {
        let now = Instant::now();
        let idle = State {
            requests: 3,
            idle_since: Some(now),
            ..state(now - Duration::from_secs(5))
        };
        assert_eq!(
            deadline(&idle, T),
            Some((now + T.keep_alive, Expiry::Close))
        );
        let started = now + Duration::from_secs(30);
        let heading = State {
            head_started: Some(started),
            ..idle
        };
        assert_eq!(
            deadline(&heading, T),
            Some((started + T.header_read, Expiry::Close))
        );
    }

    #[test]
    fn idle_http2_gets_goaway_at_keep_alive() {
        let now = Instant::now();
        let idle = State {
            requests: 1,
            h2: true,
            idle_since: Some(now),
            head_started: Some(now),
            ..state(now)
        };
        assert_eq!(
            deadline(&idle, T),
            Some((now + T.keep_alive, Expiry::GoAway))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_expires_at_the_header_read_timeout() {
        let activity = Activity::new();
        let start = Instant::now();
        assert_eq!(activity.expired(T).await, Expiry::Close);
        assert_eq!(start.elapsed(), T.header_read);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_hold_the_timer_and_their_end_restarts_it() {
        let activity = Arc::new(Activity::new());
        let start = Instant::now();
        let watch = tokio::spawn({
            let activity = activity.clone();
            async move { activity.expired(T).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        activity.request_started(false);
        let guard = InFlight(activity.clone());
        // A response taking far longer than any client timeout is not cut here.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!watch.is_finished());
        drop(guard);
        let ended = Instant::now();
        tokio::time::sleep(Duration::from_secs(10)).await;
        // The next head's first byte: header-read-timeout from now, sooner than keep-alive.
        activity.bytes_read();
        let head = Instant::now();
        assert_eq!(watch.await.unwrap(), Expiry::Close);
        assert_eq!(Instant::now() - head, T.header_read);
        assert!(ended - start >= Duration::from_secs(600));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keep_alive_expires_at_keep_alive_timeout() {
        let activity = Arc::new(Activity::new());
        activity.request_started(false);
        drop(InFlight(activity.clone()));
        let idle = Instant::now();
        assert_eq!(activity.expired(T).await, Expiry::Close);
        assert_eq!(idle.elapsed(), T.keep_alive);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_http2_expires_with_goaway_and_pings_do_not_count() {
        let activity = Arc::new(Activity::new());
        activity.request_started(true);
        drop(InFlight(activity.clone()));
        let idle = Instant::now();
        activity.bytes_read();
        assert_eq!(activity.expired(T).await, Expiry::GoAway);
        assert_eq!(idle.elapsed(), T.keep_alive);
    }
}
