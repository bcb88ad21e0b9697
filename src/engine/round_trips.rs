//! Counts a host's sequential round trips: a transport wrapper that counts the times
//! the host goes from no command in flight to one.  Commands run at the same time (a
//! step's fact reads) count once; commands run one after another count one each.  This
//! is the number latency multiplies (`host_finished.round_trips`; `ci/bench.py`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::transport::{OnLine, Transport};
use crate::commands::RemoteCmd;
use crate::error::BackendError;
use crate::ssh::{Acceptor, Download, Output};

pub(super) struct Counted<'a> {
    inner: &'a dyn Transport,
    in_flight: AtomicU32,
    trips: AtomicU32,
}

impl<'a> Counted<'a> {
    pub fn new(inner: &'a dyn Transport) -> Counted<'a> {
        Counted {
            inner,
            in_flight: AtomicU32::new(0),
            trips: AtomicU32::new(0),
        }
    }

    pub fn round_trips(&self) -> u32 {
        self.trips.load(Ordering::SeqCst)
    }
}

/// One command in flight while it lives.
struct InFlight<'b>(&'b AtomicU32);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Transport for Counted<'_> {
    fn exec<'b>(
        &'b self,
        cmd: &'b RemoteCmd,
        timeout: Duration,
        on_line: OnLine<'b>,
    ) -> BoxFuture<'b, Result<Output, BackendError>> {
        Box::pin(async move {
            if self.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
                self.trips.fetch_add(1, Ordering::SeqCst);
            }
            let _flight = InFlight(&self.in_flight);
            self.inner.exec(cmd, timeout, on_line).await
        })
    }
    fn download<'b>(
        &'b self,
        cmd: &'b RemoteCmd,
        timeout: Duration,
        limit: usize,
    ) -> BoxFuture<'b, Result<Download, BackendError>> {
        Box::pin(async move {
            if self.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
                self.trips.fetch_add(1, Ordering::SeqCst);
            }
            let _flight = InFlight(&self.in_flight);
            self.inner.download(cmd, timeout, limit).await
        })
    }
    fn remote_forward(&self, acceptor: Acceptor) -> BoxFuture<'_, Result<u16, BackendError>> {
        self.inner.remote_forward(acceptor)
    }
    fn cancel_remote_forward(&self, port: u16) -> BoxFuture<'_, ()> {
        self.inner.cancel_remote_forward(port)
    }
    fn fingerprint(&self) -> String {
        self.inner.fingerprint()
    }
    fn channels_opened(&self) -> u64 {
        self.inner.channels_opened()
    }
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
    /// The wrapped connection is closed by its owner.
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command takes 20 ms and succeeds.
    struct Slow;

    impl Transport for Slow {
        fn exec<'b>(
            &'b self,
            _: &'b RemoteCmd,
            _: Duration,
            _: OnLine<'b>,
        ) -> BoxFuture<'b, Result<Output, BackendError>> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(Output {
                    status: 0,
                    stdout: String::new(),
                    stderr: String::new(),
                })
            })
        }
        fn download<'b>(
            &'b self,
            _: &'b RemoteCmd,
            _: Duration,
            _: usize,
        ) -> BoxFuture<'b, Result<crate::ssh::Download, BackendError>> {
            Box::pin(async { Err(BackendError::permanent("no downloads here")) })
        }
        fn remote_forward(&self, _: Acceptor) -> BoxFuture<'_, Result<u16, BackendError>> {
            Box::pin(async { Err(BackendError::permanent("no")) })
        }
        fn cancel_remote_forward(&self, _: u16) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
        fn fingerprint(&self) -> String {
            String::new()
        }
        fn channels_opened(&self) -> u64 {
            0
        }
        fn is_closed(&self) -> bool {
            false
        }
        fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn concurrent_commands_count_once_and_sequential_ones_each() {
        let c = Counted::new(&Slow);
        let cmd = RemoteCmd::new("true");
        let run = || async {
            let mut quiet = |_: deploy_wire::Stream, _: &str| {};
            c.exec(&cmd, Duration::from_secs(1), &mut quiet)
                .await
                .unwrap();
        };
        futures_util::future::join3(run(), run(), run()).await;
        assert_eq!(c.round_trips(), 1, "three at once");
        run().await;
        run().await;
        assert_eq!(c.round_trips(), 3, "then two, one after the other");
    }
}
