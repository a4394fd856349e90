//! Idle connections kept for reuse after a request ended with `FCGI_KEEP_CONN`.
//!
//! One pool per service (that is, per application address). Newest first, so a burst reuses
//! warm connections and old ones age out; each is checked for a peer close before reuse.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::conn::Conn;

#[derive(Debug)]
pub(crate) struct Pool {
    idle: Mutex<Vec<(Conn, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
}

// === impl Pool ===

impl Pool {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
        }
    }

    /// A usable idle connection, if any; stale ones met on the way are closed.
    pub(crate) fn take(&self) -> Option<Conn> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((mut conn, since)) = idle.pop() {
            if now.duration_since(since) < self.idle_timeout && conn.is_idle_usable() {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection for reuse, or closes it when the pool is full.
    pub(crate) fn put(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push((conn, Instant::now()));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
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
                idle.last_mut()
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
