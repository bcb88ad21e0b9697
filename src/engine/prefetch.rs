//! Connections opened ahead: while one batch of a rollout works, the SSH handshakes of
//! the next batch's first wave (its first `parallel` hosts) run in the background
//! ([`Prefetch::warm`]), and within a batch each host that starts opens the connection
//! of the host that will take its place when it ends; so a host starts with its
//! connection up instead of paying a handshake (a round trip or more, more with
//! latency) after the host before it ended.  At most `parallel` connections wait ahead.
//!
//! Decisions:
//! - A handshake (key exchange, host-key check against the pins, login) runs no command
//!   and changes nothing on a host, so opening it early changes nothing a failed canary
//!   may have touched: a halted rollout drops the connections it opened ahead
//!   ([`Prefetch::forget`]) without having run anything on them.
//! - A connection opened ahead is only taken by the host's first connect, and only while
//!   it is fresh ([`MAX_AGE`]: a long batch, a pause between batches); an older one is
//!   closed and the host connects afresh, so a connection that idled past a firewall's
//!   timeout never fails a host; nor is one the host has closed since (a server stopped
//!   between the handshake and its turn is unreachable at its turn, as without
//!   prefetching, not failed on a dead connection).  A handshake that failed ahead is
//!   tried again at the host's turn: the host may be back by then, and its error is the
//!   one of its turn.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;

use crate::error::BackendError;
use crate::inventory::Host;
use crate::transport::{Connector, Transport};

/// How long a connection opened ahead may wait for its host's turn.
pub const MAX_AGE: Duration = Duration::from_secs(60);

type Opening = JoinHandle<Result<Box<dyn Transport>, BackendError>>;

/// A [`Connector`] that hands out connections opened ahead, else connects as `inner`.
pub struct Prefetch {
    inner: Arc<dyn Connector>,
    ahead: Mutex<Ahead>,
}

#[derive(Default)]
struct Ahead {
    opening: HashMap<String, (Instant, Opening)>,
    /// Hosts whose turn came (their connect was asked for): never opened ahead again.
    started: HashSet<String>,
}

impl Prefetch {
    pub fn new(inner: Arc<dyn Connector>) -> Arc<Prefetch> {
        Arc::new(Prefetch {
            inner,
            ahead: Mutex::new(Ahead::default()),
        })
    }

    /// Starts connecting to `hosts` in the background (hosts already opened ahead, or
    /// whose turn already came, are left as they are).  Needs a tokio runtime.
    pub fn warm<'h>(&self, hosts: impl IntoIterator<Item = &'h Host>) {
        let mut ahead = self.ahead.lock().expect("prefetch lock");
        for host in hosts {
            if ahead.opening.contains_key(&host.name) || ahead.started.contains(&host.name) {
                continue;
            }
            let (inner, h) = (self.inner.clone(), host.clone());
            let opening = tokio::spawn(async move { inner.connect(&h).await });
            (ahead.opening).insert(host.name.clone(), (Instant::now(), opening));
        }
    }

    /// Closes every connection opened ahead and not taken (their hosts were not run).
    pub fn forget(&self) {
        let left: Vec<(Instant, Opening)> = {
            let mut ahead = self.ahead.lock().expect("prefetch lock");
            ahead.opening.drain().map(|(_, v)| v).collect()
        };
        for (_, opening) in left {
            tokio::spawn(async move {
                if opening.is_finished() {
                    if let Ok(Ok(conn)) = opening.await {
                        conn.close().await;
                    }
                } else {
                    opening.abort();
                }
            });
        }
    }

    /// The connection opened ahead for `host`, if one is there, fresh and up.
    async fn take(&self, host: &Host) -> Option<Box<dyn Transport>> {
        let (since, opening) = {
            let mut ahead = self.ahead.lock().expect("prefetch lock");
            ahead.started.insert(host.name.clone());
            ahead.opening.remove(&host.name)?
        };
        let conn = match opening.await {
            Ok(Ok(conn)) => conn,
            // Failed or panicked ahead: the host's turn tries again.
            _ => return None,
        };
        if since.elapsed() > MAX_AGE || conn.is_closed() {
            conn.close().await;
            return None;
        }
        Some(conn)
    }
}

impl Connector for Prefetch {
    fn connect<'a>(
        &'a self,
        host: &'a Host,
    ) -> BoxFuture<'a, Result<Box<dyn Transport>, BackendError>> {
        Box::pin(async move {
            match self.take(host).await {
                Some(conn) => Ok(conn),
                None => self.inner.connect(host).await,
            }
        })
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        let ahead = self.ahead.get_mut().expect("prefetch lock");
        for (_, (_, opening)) in ahead.opening.drain() {
            opening.abort();
        }
    }
}
