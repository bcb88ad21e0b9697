//! The engine's only door to a host: a [`Transport`] runs one command and streams its
//! lines, and can offer the gateway's relay on a remote forward.  [`SshConnector`] makes
//! real ones (over [`crate::ssh`], the only module that speaks russh); tests use the
//! scripted [`super::fake`] server instead, so rollout logic runs without Docker.

use std::sync::Arc;
use std::time::Duration;

use deploy_wire::Stream;
use futures_util::future::BoxFuture;

use crate::commands::RemoteCmd;
use crate::inventory::Host;
use crate::pins::HostKeyPins;
use crate::ssh::{Acceptor, Connection, SshKey, SshOptions};

pub use crate::ssh::Output;

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
    ) -> BoxFuture<'a, Result<Output, String>>;
    /// Asks the host to listen on a free loopback port and hand each connection to
    /// `acceptor`; returns the port.
    fn remote_forward(&self, acceptor: Acceptor) -> BoxFuture<'_, Result<u16, String>>;
    fn cancel_remote_forward(&self, port: u16) -> BoxFuture<'_, ()>;
    /// The host key's fingerprint (for the `connected` event).
    fn fingerprint(&self) -> String;
    /// Commands (channels) run so far.
    fn channels_opened(&self) -> u64;
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// Opens transports.  One per engine run.
pub trait Connector: Send + Sync {
    fn connect<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, Result<Box<dyn Transport>, String>>;
}

/// Real hosts over SSH, with the gateway's key and pinned host keys.
pub struct SshConnector {
    pub key: Arc<SshKey>,
    pub pins: HostKeyPins,
    pub opts: SshOptions,
}

impl Connector for SshConnector {
    fn connect<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, Result<Box<dyn Transport>, String>> {
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
            .await
            .map_err(|e| e.to_string())?;
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
    ) -> BoxFuture<'a, Result<Output, String>> {
        Box::pin(async move {
            Connection::exec(self, cmd, timeout, on_line)
                .await
                .map_err(|e| e.to_string())
        })
    }
    fn remote_forward(&self, acceptor: Acceptor) -> BoxFuture<'_, Result<u16, String>> {
        Box::pin(async move {
            Connection::remote_forward(self, acceptor)
                .await
                .map_err(|e| e.to_string())
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
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(Connection::close(*self))
    }
}
