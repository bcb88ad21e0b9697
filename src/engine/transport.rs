//! The engine's only door to a host: a [`Transport`] runs one command and streams its
//! lines, and can offer the gateway's relay on a remote forward.  [`SshConnector`] makes
//! real ones (over [`crate::ssh`], the only module that speaks russh); tests use the
//! scripted [`super::fake`] server instead, so rollout logic runs without Docker.
//!
//! Both traits fail with a [`BackendError`]: a host that refused or dropped the
//! connection, or a command that timed out, is retryable; a refused host key or login,
//! or an SSH protocol refusal (a remote forward turned off), is permanent.

use std::sync::Arc;
use std::time::Duration;

use deploy_wire::Stream;
use futures_util::future::BoxFuture;

use crate::commands::RemoteCmd;
use crate::error::{BackendError, ErrorKind};
use crate::inventory::Host;
use crate::pins::HostKeyPins;
use crate::ssh::{Acceptor, Connection, SshError, SshKey, SshOptions};

pub use crate::ssh::{Download, Output};

/// Called with each complete output line of a command.
pub type OnLine<'a> = &'a mut (dyn FnMut(Stream, &str) + Send);

/// One open connection to one host, for the whole job.
pub trait Transport: Send + Sync {
    /// Runs `cmd` and returns its exit status and output; `Err` means the command could
    /// not be run or finished (connection lost, timeout), not that it exited non-zero.
    fn exec<'a>(
        &'a self,
        cmd: &'a RemoteCmd,
        timeout: Duration,
        on_line: OnLine<'a>,
    ) -> BoxFuture<'a, Result<Output, BackendError>>;
    /// Runs `cmd` and keeps its stdout as bytes, at most `limit` of them (an archive
    /// to ship to other hosts); `Err` as for [`Transport::exec`].
    fn download<'a>(
        &'a self,
        cmd: &'a RemoteCmd,
        timeout: Duration,
        limit: usize,
    ) -> BoxFuture<'a, Result<Download, BackendError>>;
    /// Asks the host to listen on a free loopback port and hand each connection to
    /// `acceptor`; returns the port.
    fn remote_forward(&self, acceptor: Acceptor) -> BoxFuture<'_, Result<u16, BackendError>>;
    fn cancel_remote_forward(&self, port: u16) -> BoxFuture<'_, ()>;
    /// The host key's fingerprint (for the `connected` event).
    fn fingerprint(&self) -> String;
    /// Commands (channels) run so far.
    fn channels_opened(&self) -> u64;
    /// The connection is known to be gone (the host closed it, or stopped answering its
    /// keepalives): a connection opened ahead is not handed out then (`prefetch.rs`).
    fn is_closed(&self) -> bool;
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// Opens transports.  One per engine run.
pub trait Connector: Send + Sync {
    fn connect<'a>(
        &'a self,
        host: &'a Host,
    ) -> BoxFuture<'a, Result<Box<dyn Transport>, BackendError>>;
}

impl From<SshError> for BackendError {
    fn from(e: SshError) -> BackendError {
        let kind = match e {
            SshError::Connect { .. }
            | SshError::ConnectTimeout { .. }
            | SshError::CommandTimeout { .. }
            | SshError::Lost(_) => ErrorKind::Retryable,
            SshError::HostKeyUnknown { .. }
            | SshError::HostKeyChanged { .. }
            | SshError::AuthRejected { .. }
            | SshError::Protocol(_) => ErrorKind::Permanent,
        };
        BackendError::new(kind, e.to_string())
    }
}

/// Real hosts over SSH, with the gateway's key and pinned host keys.
pub struct SshConnector {
    pub key: Arc<SshKey>,
    pub pins: HostKeyPins,
    pub opts: SshOptions,
}

impl Connector for SshConnector {
    fn connect<'a>(
        &'a self,
        host: &'a Host,
    ) -> BoxFuture<'a, Result<Box<dyn Transport>, BackendError>> {
        Box::pin(async move {
            let pinned = self.pins.get(&host.address, host.port);
            let conn = Connection::connect(
                &host.address,
                host.port,
                &host.user,
                self.key.clone(),
                pinned,
                &self.opts,
            )
            .await?;
            Ok(Box::new(conn) as Box<dyn Transport>)
        })
    }
}

impl Transport for Connection {
    fn exec<'a>(
        &'a self,
        cmd: &'a RemoteCmd,
        timeout: Duration,
        on_line: OnLine<'a>,
    ) -> BoxFuture<'a, Result<Output, BackendError>> {
        Box::pin(async move {
            Connection::exec(self, cmd, timeout, on_line)
                .await
                .map_err(BackendError::from)
        })
    }
    fn download<'a>(
        &'a self,
        cmd: &'a RemoteCmd,
        timeout: Duration,
        limit: usize,
    ) -> BoxFuture<'a, Result<Download, BackendError>> {
        Box::pin(async move {
            Connection::download(self, cmd, timeout, limit)
                .await
                .map_err(BackendError::from)
        })
    }
    fn remote_forward(&self, acceptor: Acceptor) -> BoxFuture<'_, Result<u16, BackendError>> {
        Box::pin(async move {
            Connection::remote_forward(self, acceptor)
                .await
                .map_err(BackendError::from)
        })
    }
    fn cancel_remote_forward(&self, port: u16) -> BoxFuture<'_, ()> {
        Box::pin(Connection::cancel_remote_forward(self, port))
    }
    fn fingerprint(&self) -> String {
        Connection::fingerprint(self).to_string()
    }
    fn channels_opened(&self) -> u64 {
        Connection::channels_opened(self)
    }
    fn is_closed(&self) -> bool {
        Connection::is_closed(self)
    }
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(Connection::close(*self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_failures_of_the_network_are_retryable_and_refusals_permanent() {
        let addr = || "web1:22".to_string();
        let retryable = [
            SshError::Connect {
                addr: addr(),
                reason: "connection refused".into(),
            },
            SshError::ConnectTimeout {
                addr: addr(),
                secs: 10,
            },
            SshError::CommandTimeout { secs: 600 },
            SshError::Lost("connection reset by peer".into()),
        ];
        for e in retryable {
            let text = e.to_string();
            let b = BackendError::from(e);
            assert!(b.is_retryable(), "{text}");
            assert_eq!(b.to_string(), text);
        }
        let permanent = [
            SshError::HostKeyUnknown {
                addr: addr(),
                offered: "SHA256:x".into(),
            },
            SshError::HostKeyChanged {
                addr: addr(),
                pinned: "SHA256:a".into(),
                offered: "SHA256:b".into(),
            },
            SshError::AuthRejected {
                addr: addr(),
                user: "deploy".into(),
            },
            SshError::Protocol("the server refused a remote port forward".into()),
        ];
        for e in permanent {
            let text = e.to_string();
            let b = BackendError::from(e);
            assert!(!b.is_retryable(), "{text}");
            assert_eq!(b.to_string(), text);
        }
    }
}
