//! Idle connections kept for reuse after a request ended with `FCGI_KEEP_CONN`.
//!
//! One pool per service (that is, per application address). Newest first, so a burst reuses
//! warm connections and old ones age out; each is checked for a peer close before reuse.
//!
//! An idle connection holds an application worker (a php-fpm child serves one connection at a
//! time), so it is closed `idle_timeout` after it was pooled by the pool's reaper task, whether
//! or not a request comes to reuse it. The reaper is one task per pool, started with the first
//! pooled connection. It sleeps until the oldest connection's deadline (a newer connection's
//! deadline is later, so pooling one needs no wake-up) and is woken only when a connection
//! enters the pool while it waits without a deadline; a busy pool wakes it about once per
//! `idle_timeout`, not per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::conn::Conn;

/// The idle connections with the time each was pooled, oldest first, and whether the reaper
/// waits without a deadline (so the next pooled connection must wake it). One lock orders the
/// two, so a connection pooled while the reaper decides to park cannot be missed.
#[derive(Debug, Default)]
struct IdleState {
    conns: Vec<(Conn, Instant)>,
    reaper_parked: bool,
}

type Idle = Mutex<IdleState>;

#[derive(Debug)]
pub(crate) struct Pool {
    idle: Arc<Idle>,
    /// Wakes the reaper: a connection entered an empty pool, or the pool is gone.
    wake: Arc<Notify>,
    reaper_started: AtomicBool,
    max_idle: usize,
    idle_timeout: Duration,
}

// === impl Pool ===

impl Pool {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            idle: Arc::new(Mutex::new(IdleState::default())),
            wake: Arc::new(Notify::new()),
            reaper_started: AtomicBool::new(false),
            max_idle,
            idle_timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdleState> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A usable idle connection, if any; stale ones met on the way are closed. (The reaper
    /// closes expired ones on time; the check here covers a pool without a runtime to run it.)
    pub(crate) fn take(&self) -> Option<Conn> {
        let now = Instant::now();
        let mut idle = self.lock();
        while let Some((mut conn, since)) = idle.conns.pop() {
            if now.duration_since(since) < self.idle_timeout && conn.is_idle_usable() {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection for reuse, or closes it when the pool is full.
    pub(crate) fn put(&self, conn: Conn) {
        let wake = {
            let mut idle = self.lock();
            if idle.conns.len() >= self.max_idle {
                return;
            }
            idle.conns.push((conn, Instant::now()));
            std::mem::take(&mut idle.reaper_parked)
        };
        self.start_reaper();
        if wake {
            self.wake.notify_one();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().conns.len()
    }

    fn start_reaper(&self) {
        if self.reaper_started.load(Ordering::Relaxed) {
            return;
        }
        // Without a runtime (a connection pooled during shutdown) `take` still refuses
        // expired connections.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.reaper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        handle.spawn(reap(
            Arc::downgrade(&self.idle),
            self.wake.clone(),
            self.idle_timeout,
        ));
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The reaper holds only a weak reference; wake it so it sees the pool is gone and ends.
        self.wake.notify_one();
    }
}

/// The reaper: closes each idle connection when its `idle_timeout` is up (and any its peer
/// closed meanwhile), then sleeps until the next deadline, or until woken when the pool was
/// empty. Ends when the pool is dropped.
async fn reap(idle: Weak<Idle>, wake: Arc<Notify>, idle_timeout: Duration) {
    loop {
        let next = {
            let Some(idle) = idle.upgrade() else {
                return;
            };
            let (closed, next) = expire(&idle, idle_timeout);
            if !closed.is_empty() {
                tracing::debug!(
                    connections = closed.len(),
                    "fastcgi: closing idle connections (idle-timeout)"
                );
            }
            // Closed outside the lock.
            drop(closed);
            next
        };
        match next {
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

/// Takes out the connections that expired or whose peer closed; returns them and the next
/// deadline, if any connection is left.
fn expire(idle: &Idle, idle_timeout: Duration) -> (Vec<Conn>, Option<Instant>) {
    let now = Instant::now();
    let mut idle = idle.lock().unwrap_or_else(|p| p.into_inner());
    let mut closed = Vec::new();
    let mut i = 0;
    while i < idle.conns.len() {
        let (conn, since) = &mut idle.conns[i];
        if now.duration_since(*since) >= idle_timeout || !conn.is_idle_usable() {
            closed.push(idle.conns.remove(i).0);
        } else {
            i += 1;
        }
    }
    // Oldest first, so the first one left is the next to expire.
    // An idle timeout too large for the clock never expires.
    let next = idle
        .conns
        .first()
        .and_then(|(_, since)| since.checked_add(idle_timeout));
    idle.reaper_parked = next.is_none();
    (closed, next)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Pool;
    use crate::conn::{Conn, FastCgiAddr};

    async fn connected() -> (Conn, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = FastCgiAddr::Tcp(listener.local_addr().unwrap());
        let conn = Conn::connect(&addr, Duration::from_secs(5)).await.unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        (conn, peer)
    }

    #[tokio::test]
    async fn idle_connections_expire() {
        let (conn, _peer) = connected().await;
        let pool = Pool::new(2, Duration::from_secs(30));
        // Sockets exist before the clock is paused, so no I/O waits on paused time.
        tokio::time::pause();
        pool.put(conn);
        let conn = pool.take().expect("fresh connection is reused");
        assert!(conn.reused);
        pool.put(conn);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(pool.take().is_none(), "expired connection is dropped");
        assert_eq!(pool.len(), 0);
    }

    /// Polls other tasks (the reaper) until `done`, a bounded number of times.
    async fn settle(mut done: impl FnMut() -> bool) -> bool {
        for _ in 0..100 {
            if done() {
                return true;
            }
            tokio::task::yield_now().await;
        }
        done()
    }

    async fn assert_closed_by_pool(peer: &mut tokio::net::TcpStream) {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), peer.read(&mut buf))
            .await
            .expect("the pool closed the connection")
            .unwrap();
        assert_eq!(n, 0, "EOF");
    }

    #[tokio::test]
    async fn idle_connections_are_closed_on_time_with_no_request() {
        let (a, mut peer_a) = connected().await;
        let (b, mut peer_b) = connected().await;
        let pool = Pool::new(2, Duration::from_secs(30));
        tokio::time::pause();
        pool.put(a);
        tokio::time::advance(Duration::from_secs(10)).await;
        pool.put(b);
        tokio::time::advance(Duration::from_secs(19)).await;
        assert!(!settle(|| pool.len() < 2).await, "nothing expires early");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            settle(|| pool.len() == 1).await,
            "the older one is closed at 30 s"
        );
        assert_closed_by_pool(&mut peer_a).await;
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(
            settle(|| pool.len() == 0).await,
            "and the newer one 30 s after it was pooled"
        );
        assert_closed_by_pool(&mut peer_b).await;
    }

    #[tokio::test]
    async fn a_connection_pooled_after_the_pool_emptied_is_reaped_too() {
        let (a, mut peer_a) = connected().await;
        let (b, mut peer_b) = connected().await;
        let pool = Pool::new(1, Duration::from_secs(30));
        tokio::time::pause();
        pool.put(a);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(settle(|| pool.len() == 0).await);
        assert_closed_by_pool(&mut peer_a).await;
        // The reaper now waits without a deadline; pooling must wake it.
        pool.put(b);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(settle(|| pool.len() == 0).await);
        assert_closed_by_pool(&mut peer_b).await;
    }

    #[tokio::test]
    async fn a_reused_and_returned_connection_gets_a_new_deadline() {
        let (a, mut peer_a) = connected().await;
        let pool = Pool::new(1, Duration::from_secs(30));
        tokio::time::pause();
        pool.put(a);
        tokio::time::advance(Duration::from_secs(20)).await;
        let a = pool.take().unwrap();
        pool.put(a);
        // The reaper still aims at the first deadline (20 + 10 s); it must not close early.
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(
            !settle(|| pool.len() == 0).await,
            "kept until 30 s after its return"
        );
        tokio::time::advance(Duration::from_secs(16)).await;
        assert!(settle(|| pool.len() == 0).await);
        assert_closed_by_pool(&mut peer_a).await;
    }

    #[tokio::test]
    async fn the_reaper_ends_with_its_pool() {
        let (a, _peer_a) = connected().await;
        let pool = Pool::new(1, Duration::from_secs(30));
        pool.put(a);
        let idle = std::sync::Arc::downgrade(&pool.idle);
        let wake = pool.wake.clone();
        assert_eq!(
            std::sync::Arc::strong_count(&wake),
            3,
            "pool, reaper and this test"
        );
        drop(pool);
        assert!(idle.upgrade().is_none());
        // The reaper held the only other reference to `wake`; once it ended, this is the last.
        assert!(
            settle(|| std::sync::Arc::strong_count(&wake) == 1).await,
            "reaper ended"
        );
    }

    #[tokio::test]
    async fn closed_and_surplus_connections_are_not_kept() {
        let (a, peer_a) = connected().await;
        let (b, _peer_b) = connected().await;
        let (c, _peer_c) = connected().await;
        let pool = Pool::new(2, Duration::from_secs(30));
        pool.put(a);
        pool.put(b);
        pool.put(c);
        assert_eq!(pool.len(), 2, "max_idle caps the pool");
        drop(peer_a);
        // `b` (newest kept) is fine; `a` was closed by its peer and must be skipped.
        assert!(pool.take().is_some());
        let mut closed_seen = false;
        for _ in 0..200 {
            // The FIN may take a moment to be visible; take() must then refuse `a`.
            let usable = {
                let mut idle = pool.idle.lock().unwrap();
                idle.conns
                    .last_mut()
                    .is_some_and(|(conn, _)| conn.is_idle_usable())
            };
            if !usable {
                closed_seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(closed_seen, "peer close detected");
        assert!(pool.take().is_none());
    }
}
