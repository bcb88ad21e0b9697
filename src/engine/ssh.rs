//! The SSH transport: the only module that talks to russh.
//!
//! One [`Connection`] per host per job, reused for every command.  Guards the pitfalls of
//! russh (see shared/notes/crates.md): a connect timeout (russh has none), a timeout per
//! command, every channel explicitly closed (dropping one does not free sshd's session
//! slot), at most [`MAX_CHANNELS`] channels at once (OpenSSH's MaxSessions is 10), and no
//! inactivity timeout (it kills long pip installs); keepalives detect dead peers instead.
//!
//! Host keys: the server's key must match the pinned SHA-256 fingerprint.  Unknown and
//! changed keys are refused; [`fetch_fingerprint`] exists for the explicit pinning act.
//!
//! Remote forwards ([`Connection::remote_forward`]): the server listens on one of its
//! loopback ports and every connection to it arrives here as a byte stream, handed to an
//! [`Acceptor`] (the gateway's artifact relay).  Nothing listens on the gateway's side.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deploy_wire::Stream;
use russh::client;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

use crate::commands::RemoteCmd;

/// The gateway's private key, as the rest of the crate names it.
pub use russh::keys::PrivateKey as SshKey;

/// Channels open at once on one connection; below OpenSSH's default MaxSessions (10).
pub const MAX_CHANNELS: usize = 8;
/// At most this much of a command's stdout/stderr is kept in memory (lines still stream).
const KEEP_BYTES: usize = 1 << 20;
/// The longest output line kept whole; longer ones are cut (memory stays bounded).
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connecting to {addr} timed out after {secs}s")]
    ConnectTimeout { addr: String, secs: u64 },
    #[error(
        "host key of {addr} is not pinned (it offers {offered}); pin it explicitly with `deploy-gateway trust-host` after checking that fingerprint"
    )]
    HostKeyUnknown { addr: String, offered: String },
    #[error(
        "HOST KEY CHANGED for {addr}: pinned {pinned}, but the server offers {offered}; refusing to connect (if the server was rebuilt, verify and re-pin with `deploy-gateway trust-host --replace`)"
    )]
    HostKeyChanged {
        addr: String,
        pinned: String,
        offered: String,
    },
    #[error("{addr} refused public-key login for user `{user}`")]
    AuthRejected { addr: String, user: String },
    #[error("SSH error: {0}")]
    Protocol(String),
    #[error("command timed out after {secs}s")]
    CommandTimeout { secs: u64 },
    #[error("connection lost: {0}")]
    Lost(String),
}

impl SshError {
    /// True when the host was never reached (nothing could have changed on it).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SshError::Connect { .. }
                | SshError::ConnectTimeout { .. }
                | SshError::HostKeyUnknown { .. }
                | SshError::HostKeyChanged { .. }
                | SshError::AuthRejected { .. }
        )
    }
}

#[derive(Debug, Clone)]
pub struct SshOptions {
    pub connect_timeout: Duration,
    pub keepalive: Duration,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            connect_timeout: Duration::from_secs(10),
            // Three unanswered keepalives drop the connection: a dead host is noticed
            // within about 20 s, even in the middle of a long, silent pip install.
            keepalive: Duration::from_secs(5),
        }
    }
}

/// What a finished command left.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: u32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.status == 0
    }
    /// The last lines of stderr (or stdout), for an error message.
    pub fn tail(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let lines: Vec<&str> = text.trim_end().lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

/// What a command printed on stdout as bytes (an archive), beside its exit status and
/// stderr: [`Connection::download`].
#[derive(Debug, Clone)]
pub struct Download {
    pub status: u32,
    pub bytes: bytes::Bytes,
    pub stderr: String,
    /// Stdout went past the limit: `bytes` holds only its start.
    pub over_limit: bool,
}

/// Loads the gateway's private key (OpenSSH or PKCS#8).  The error never includes the
/// key's contents.
pub fn load_key(path: &std::path::Path) -> Result<PrivateKey, String> {
    russh::keys::load_secret_key(path, None)
        .map_err(|e| format!("cannot load SSH key {}: {e}", path.display()))
}

/// A byte stream a server opened to the gateway through a remote forward.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// Serves one forwarded connection (it should spawn and return at once).
pub type Acceptor = Arc<dyn Fn(Box<dyn Duplex>) + Send + Sync>;

#[derive(Default)]
struct Seen {
    fingerprint: Option<String>,
}

struct Verifier {
    pinned: Option<String>,
    accept_any: bool,
    seen: Arc<Mutex<Seen>>,
    /// Where forwarded connections go; none until a remote forward is asked for.
    acceptor: Arc<Mutex<Option<Acceptor>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false); // host certificates: not supported yet
        };
        let fp = key.fingerprint(HashAlg::Sha256).to_string();
        let ok = self.accept_any || self.pinned.as_deref() == Some(fp.as_str());
        self.seen.lock().unwrap().fingerprint = Some(fp);
        Ok(ok)
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: russh::Channel<client::Msg>,
        _connected_address: &str,
        _connected_port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let acceptor = self.acceptor.lock().unwrap().clone();
        match acceptor {
            Some(serve) => {
                reply.accept().await;
                serve(Box::new(channel.into_stream()));
            }
            // We asked for no forward: refuse (dropping the reply rejects the channel).
            None => drop(reply),
        }
        Ok(())
    }
}

/// Unanswered keepalives before the connection counts as dead.
const KEEPALIVE_MAX: usize = 3;

/// An authenticated SSH connection to one host.
pub struct Connection {
    keepalive: Duration,
    handle: client::Handle<Verifier>,
    acceptor: Arc<Mutex<Option<Acceptor>>>,
    channels: Semaphore,
    fingerprint: String,
    opened: std::sync::atomic::AtomicU64,
}

async fn handshake(
    address: &str,
    port: u16,
    pinned: Option<String>,
    accept_any: bool,
    opts: &SshOptions,
    acceptor: Arc<Mutex<Option<Acceptor>>>,
) -> Result<(client::Handle<Verifier>, String), SshError> {
    let addr = format!("{address}:{port}");
    let cfg = Arc::new(client::Config {
        inactivity_timeout: None,
        keepalive_interval: Some(opts.keepalive),
        keepalive_max: KEEPALIVE_MAX,
        nodelay: true,
        ..Default::default()
    });
    let seen = Arc::new(Mutex::new(Seen::default()));
    let verifier = Verifier {
        pinned: pinned.clone(),
        accept_any,
        seen: seen.clone(),
        acceptor,
    };
    let connect = client::connect(cfg, (address, port), verifier);
    let result = match tokio::time::timeout(opts.connect_timeout, connect).await {
        Err(_) => {
            return Err(SshError::ConnectTimeout {
                addr,
                secs: opts.connect_timeout.as_secs(),
            });
        }
        Ok(r) => r,
    };
    let offered = seen.lock().unwrap().fingerprint.clone();
    match result {
        Ok(handle) => Ok((handle, offered.unwrap_or_default())),
        Err(e) => Err(match (offered, pinned) {
            (Some(offered), None) if !accept_any => SshError::HostKeyUnknown { addr, offered },
            (Some(offered), Some(pinned)) if offered != pinned => SshError::HostKeyChanged {
                addr,
                pinned,
                offered,
            },
            _ => SshError::Connect {
                addr,
                reason: e.to_string(),
            },
        }),
    }
}

/// Connects without a pin and returns the fingerprint the server offers: the first half
/// of the explicit pinning act (the operator compares it, then pins it).
pub async fn fetch_fingerprint(
    address: &str,
    port: u16,
    opts: &SshOptions,
) -> Result<String, SshError> {
    let (handle, fp) = handshake(address, port, None, true, opts, Default::default()).await?;
    let _ = handle
        .disconnect(Disconnect::ByApplication, "fingerprint only", "en")
        .await;
    Ok(fp)
}

impl Connection {
    /// Connects, checks the host key against `pinned` and logs in with `key`.
    pub async fn connect(
        address: &str,
        port: u16,
        user: &str,
        key: Arc<PrivateKey>,
        pinned: Option<&str>,
        opts: &SshOptions,
    ) -> Result<Connection, SshError> {
        let addr = format!("{address}:{port}");
        let acceptor: Arc<Mutex<Option<Acceptor>>> = Default::default();
        let (mut handle, fingerprint) = handshake(
            address,
            port,
            pinned.map(str::to_string),
            false,
            opts,
            acceptor.clone(),
        )
        .await?;
        let login = async {
            let alg = handle.best_supported_rsa_hash().await?.flatten();
            handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, alg))
                .await
        };
        let auth = tokio::time::timeout(opts.connect_timeout, login)
            .await
            .map_err(|_| SshError::ConnectTimeout {
                addr: addr.clone(),
                secs: opts.connect_timeout.as_secs(),
            })?
            .map_err(|e| SshError::Connect {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        if !auth.success() {
            return Err(SshError::AuthRejected {
                addr,
                user: user.to_string(),
            });
        }
        Ok(Connection {
            keepalive: opts.keepalive,
            handle,
            acceptor,
            channels: Semaphore::new(MAX_CHANNELS),
            fingerprint,
            opened: Default::default(),
        })
    }

    /// Why the connection is gone: a dead connection says the host stopped answering.
    fn lost(&self, detail: String) -> SshError {
        if self.handle.is_closed() {
            SshError::Lost(format!(
                "the host stopped answering (no reply to {KEEPALIVE_MAX} SSH keepalives {}s apart)",
                self.keepalive.as_secs()
            ))
        } else {
            SshError::Lost(detail)
        }
    }

    /// The session has ended (the host closed it, or its keepalives went unanswered).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// How many channels this connection has opened so far.
    pub fn channels_opened(&self) -> u64 {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs one command on its own channel, streaming complete output lines to `on_line`,
    /// and returns its exit status and (bounded) output.  The channel is closed whatever
    /// happens, including on timeout.
    pub async fn exec(
        &self,
        cmd: &RemoteCmd,
        timeout: Duration,
        on_line: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> Result<Output, SshError> {
        let (_permit, mut ch) = self.open_channel().await?;
        let started = Instant::now();
        let result = tokio::time::timeout(timeout, drive(&mut ch, cmd, on_line)).await;
        let _ = ch.close().await;
        self.settle(result, started)
    }

    /// Runs one command and keeps its stdout as bytes, up to `limit` (an archive the
    /// engine ships to other hosts); otherwise as [`Self::exec`].
    pub async fn download(
        &self,
        cmd: &RemoteCmd,
        timeout: Duration,
        limit: usize,
    ) -> Result<Download, SshError> {
        let (_permit, mut ch) = self.open_channel().await?;
        let started = Instant::now();
        let result = tokio::time::timeout(timeout, drive_bytes(&mut ch, cmd, limit)).await;
        let _ = ch.close().await;
        self.settle(result, started)
    }

    /// A channel for one command, once one of the [`MAX_CHANNELS`] is free (the permit
    /// holds it).
    async fn open_channel(
        &self,
    ) -> Result<
        (
            tokio::sync::SemaphorePermit<'_>,
            russh::Channel<client::Msg>,
        ),
        SshError,
    > {
        let permit = self
            .channels
            .acquire()
            .await
            .map_err(|e| SshError::Protocol(e.to_string()))?;
        let ch = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.lost(e.to_string()))?;
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok((permit, ch))
    }

    /// A command's end: its timeout, a lost connection (marked as such), or its result.
    fn settle<T>(
        &self,
        result: Result<Result<T, SshError>, tokio::time::error::Elapsed>,
        started: Instant,
    ) -> Result<T, SshError> {
        match result {
            Err(_) => Err(SshError::CommandTimeout {
                secs: started.elapsed().as_secs(),
            }),
            Ok(Err(SshError::Lost(e))) => Err(self.lost(e)),
            Ok(r) => r,
        }
    }

    /// Asks the server to listen on a free port of its loopback interface and to send
    /// every connection to it back through this connection, to `acceptor`.  Returns the
    /// port.  Needs `AllowTcpForwarding` (OpenSSH's default: yes).
    pub async fn remote_forward(&self, acceptor: Acceptor) -> Result<u16, SshError> {
        *self.acceptor.lock().unwrap() = Some(acceptor);
        let port = self
            .handle
            .tcpip_forward("127.0.0.1", 0)
            .await
            .map_err(|e| {
                SshError::Protocol(format!(
                    "the server refused a remote port forward (is AllowTcpForwarding off?): {e}"
                ))
            })?;
        u16::try_from(port).map_err(|_| SshError::Protocol(format!("bad forwarded port {port}")))
    }

    /// Stops a remote forward; later connections to the port are refused.
    pub async fn cancel_remote_forward(&self, port: u16) {
        let _ = self
            .handle
            .cancel_tcpip_forward("127.0.0.1", port as u32)
            .await;
        *self.acceptor.lock().unwrap() = None;
    }

    /// Says goodbye to the server.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

struct LineBuf {
    stream: Stream,
    partial: Vec<u8>,
    kept: Vec<u8>,
}

impl LineBuf {
    fn new(stream: Stream) -> Self {
        LineBuf {
            stream,
            partial: Vec::new(),
            kept: Vec::new(),
        }
    }
    fn push(&mut self, data: &[u8], on_line: &mut (dyn FnMut(Stream, &str) + Send)) {
        if self.kept.len() < KEEP_BYTES {
            let n = data.len().min(KEEP_BYTES - self.kept.len());
            self.kept.extend_from_slice(&data[..n]);
        }
        self.partial.extend_from_slice(data);
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            on_line(
                self.stream,
                String::from_utf8_lossy(&line[..line.len() - 1]).trim_end_matches('\r'),
            );
        }
        // A line that never ends (a progress bar, a binary) is cut into bounded pieces.
        while self.partial.len() >= MAX_LINE {
            let piece: Vec<u8> = self.partial.drain(..MAX_LINE).collect();
            on_line(
                self.stream,
                &format!("{} [...]", String::from_utf8_lossy(&piece)),
            );
        }
    }
    fn finish(mut self, on_line: &mut (dyn FnMut(Stream, &str) + Send)) -> String {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            on_line(self.stream, &String::from_utf8_lossy(&rest));
        }
        String::from_utf8_lossy(&self.kept).into_owned()
    }
}

/// Starts `cmd` on the channel and sends its stdin, then EOF.
async fn start(ch: &mut russh::Channel<client::Msg>, cmd: &RemoteCmd) -> Result<(), SshError> {
    let lost = |e: russh::Error| SshError::Lost(e.to_string());
    ch.exec(true, cmd.line.as_bytes()).await.map_err(lost)?;
    if let Some(stdin) = &cmd.stdin {
        ch.data_bytes(stdin.clone()).await.map_err(lost)?;
    }
    // Always send EOF: a command that reads stdin must not wait forever.
    ch.eof().await.map_err(lost)
}

fn no_status() -> SshError {
    SshError::Lost("the channel closed without an exit status".into())
}

/// Runs `cmd` on the channel and hands each piece of its output to `data` with its
/// stream, until the channel closes; returns the exit status (None: the channel closed
/// without one, which the caller reports once it has kept what was printed).
async fn pump(
    ch: &mut russh::Channel<client::Msg>,
    cmd: &RemoteCmd,
    data: &mut (dyn FnMut(Stream, &[u8]) + Send),
) -> Result<Option<u32>, SshError> {
    start(ch, cmd).await?;
    let mut status = None;
    while let Some(msg) = ch.wait().await {
        match msg {
            ChannelMsg::Data { data: d } => data(Stream::Stdout, &d),
            ChannelMsg::ExtendedData { data: d, ext: 1 } => data(Stream::Stderr, &d),
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                return Err(SshError::Lost(format!(
                    "command killed by signal {signal_name:?}"
                )));
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    Ok(status)
}

/// Stdout kept as bytes (up to `limit`), stderr as text.
async fn drive_bytes(
    ch: &mut russh::Channel<client::Msg>,
    cmd: &RemoteCmd,
    limit: usize,
) -> Result<Download, SshError> {
    let mut out = Vec::new();
    let mut over_limit = false;
    let mut err = LineBuf::new(Stream::Stderr);
    let status = pump(ch, cmd, &mut |stream, d: &[u8]| match stream {
        Stream::Stdout if out.len() + d.len() <= limit => out.extend_from_slice(d),
        Stream::Stdout => over_limit = true,
        Stream::Stderr => err.push(d, &mut |_, _| {}),
    })
    .await?;
    let stderr = err.finish(&mut |_, _| {});
    Ok(Download {
        status: status.ok_or_else(no_status)?,
        bytes: out.into(),
        stderr,
        over_limit,
    })
}

/// Both streams as (bounded) text, each complete line handed to `on_line`.
async fn drive(
    ch: &mut russh::Channel<client::Msg>,
    cmd: &RemoteCmd,
    on_line: &mut (dyn FnMut(Stream, &str) + Send),
) -> Result<Output, SshError> {
    let (mut out, mut err) = (LineBuf::new(Stream::Stdout), LineBuf::new(Stream::Stderr));
    let status = pump(ch, cmd, &mut |stream, d: &[u8]| match stream {
        Stream::Stdout => out.push(d, on_line),
        Stream::Stderr => err.push(d, on_line),
    })
    .await?;
    let (stdout, stderr) = (out.finish(on_line), err.finish(on_line));
    Ok(Output {
        status: status.ok_or_else(no_status)?,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_without_newlines_is_cut_into_bounded_lines() {
        let mut b = LineBuf::new(Stream::Stdout);
        let mut lines = Vec::new();
        let mut on = |_: Stream, l: &str| lines.push(l.len());
        for _ in 0..100 {
            b.push(&[b'x'; 10_000], &mut on);
        }
        assert!(b.partial.len() < MAX_LINE, "{}", b.partial.len());
        let kept = b.finish(&mut on);
        assert_eq!(lines.len(), 1_000_000 / MAX_LINE + 1);
        assert!(lines.iter().all(|n| *n <= MAX_LINE + 6));
        assert_eq!(kept.len(), KEEP_BYTES.min(1_000_000));
        let mut b = LineBuf::new(Stream::Stderr);
        let mut got = Vec::new();
        b.push(b"a\r\nb\nc", &mut |_, l: &str| got.push(l.to_string()));
        b.finish(&mut |_, l: &str| got.push(l.to_string()));
        assert_eq!(got, ["a", "b", "c"]);
    }
}
