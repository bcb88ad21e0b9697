//! `deploy app-logs`: a process's log read from each host of an environment (the live
//! slot's for `web`, every copy's for the other processes) with the command its process
//! manager builds (supervisord: `tail` of its files; systemd: `journalctl`), line by
//! line, into a bounded channel; the gateway streams it to the client.
//!
//! When a followed log's client goes away, the gateway closes the hosts' connections.
//! sshd does not kill the commands of a session that ended (no TTY: a `sleep` under
//! `sudo` lives on), but GNU `tail -F` (coreutils 8.28 and later) exits as soon as the
//! reader of its output pipe is gone, even on a quiet log, and `sudo` with it;
//! `tests/day_two.rs` checks that no `tail` is left on the servers.  `journalctl -f`
//! likewise ends on a hang-up of its output (systemd 240 and later: it polls stdout for
//! `POLLHUP`, systemd/systemd#10511); not yet checked on a real host by a test here.

use std::sync::Arc;
use std::time::Duration;

use deploy_wire::Stream;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::EngineConfig;
use super::oneoff::live_release;
use super::transport::{Connector, SshConnector, Transport};
use crate::commands::RemoteCmd;
use crate::inventory::Host;
use crate::procman::{CopyMarks, ProcessManager};
use crate::shell;

/// A followed log is read for at most this long.
const FOLLOW_LIMIT: Duration = Duration::from_secs(12 * 3600);

/// Whose log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The web process: the live slot's log (the live pointer says which slot).
    Web,
    /// Another process of the application, with its number of copies.
    Process { name: String, copies: u32 },
}

/// What to read.
#[derive(Debug, Clone)]
pub struct TailSpec {
    pub app: String,
    pub source: Source,
    /// Lines from the end to start with.
    pub lines: u32,
    /// Go on with new lines until the receiver is dropped.
    pub follow: bool,
}

/// One line for the client: from the log, or the gateway's word about a host (`notice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    pub host: String,
    /// Which copy of a process with several.
    pub copy: Option<u32>,
    pub line: String,
    pub notice: bool,
}

/// `sudo -n tail -n LINES -- FILES`: the last lines, then the command ends.
pub fn tail_lines(files: &[String], lines: u32) -> RemoteCmd {
    RemoteCmd::new(format!("sudo -n tail -n {lines} -- {}", shell::join(files)))
}

/// `sudo -n tail -n LINES -F -- FILES`: the last lines, then new ones (across rotation)
/// until the connection closes (see the module's doc).
pub fn tail_follow(files: &[String], lines: u32) -> RemoteCmd {
    RemoteCmd::new(format!(
        "sudo -n tail -n {lines} -F -- {}",
        shell::join(files)
    ))
}

/// Reads the log on every host over SSH, concurrently, until each `tail` ends (or, with
/// `follow`, until the receiver of `tx` is dropped: then every connection is closed).
pub async fn tail(
    cfg: Arc<EngineConfig>,
    hosts: Vec<Host>,
    pm: Arc<dyn ProcessManager>,
    spec: TailSpec,
    tx: mpsc::Sender<LogEvent>,
) {
    let connector = SshConnector {
        key: cfg.key.clone(),
        pins: cfg.pins.clone(),
        opts: cfg.ssh.clone(),
    };
    tail_with(&cfg, &connector, &hosts, pm.as_ref(), &spec, &tx).await;
}

/// [`tail`] through any [`Connector`].
pub async fn tail_with(
    cfg: &EngineConfig,
    connector: &dyn Connector,
    hosts: &[Host],
    pm: &dyn ProcessManager,
    spec: &TailSpec,
    tx: &mpsc::Sender<LogEvent>,
) {
    let each = hosts
        .iter()
        .map(|h| tail_host(cfg, connector, h, pm, spec, tx.clone()));
    futures_util::future::join_all(each).await;
}

/// One host: a notice instead of a panic or an error when it cannot be read.
async fn tail_host(
    cfg: &EngineConfig,
    connector: &dyn Connector,
    h: &Host,
    pm: &dyn ProcessManager,
    spec: &TailSpec,
    tx: mpsc::Sender<LogEvent>,
) {
    let notice = |line: String| LogEvent {
        host: h.name.clone(),
        copy: None,
        line,
        notice: true,
    };
    let conn = tokio::select! {
        c = connector.connect(h) => c,
        _ = tx.closed() => return,
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send(notice(format!("unreachable: {e}"))).await;
            return;
        }
    };
    let read = tokio::select! {
        r = read_host(cfg, conn.as_ref(), h, pm, spec, &tx) => r,
        _ = tx.closed() => Ok(()),
    };
    // Also when the client went away: the wrapper on the host then ends `tail`.
    conn.close().await;
    if let Err(e) = read {
        let _ = tx.send(notice(e)).await;
    }
}

async fn read_host(
    cfg: &EngineConfig,
    conn: &dyn Transport,
    h: &Host,
    pm: &dyn ProcessManager,
    spec: &TailSpec,
    tx: &mpsc::Sender<LogEvent>,
) -> Result<(), String> {
    let logs = crate::commands::AppPaths::new(&spec.app).logs();
    let (program, copies) = match &spec.source {
        Source::Web => {
            let Some((slot, _)) = live_release(conn, &spec.app, cfg.command_timeout)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Err(format!("nothing is live on {}", h.name));
            };
            (pm.program(&spec.app, &slot), None)
        }
        Source::Process { name, copies } => (pm.program(&spec.app, name), Some(*copies)),
    };
    let read = pm.read_log(&logs, &program, copies, spec.lines, spec.follow);
    let limit = if spec.follow {
        FOLLOW_LIMIT
    } else {
        cfg.command_timeout
    };
    let mut demux = Demux::of(&read.copies);
    let mut out = Outbox {
        host: &h.name,
        tx,
        dropped: 0,
    };
    let status = {
        let mut on_line = |s: Stream, line: &str| match s {
            Stream::Stderr => out.push(None, line.to_string(), true),
            Stream::Stdout => {
                for (copy, l) in demux.feed(line) {
                    out.push(copy, l, false);
                }
            }
        };
        conn.exec(&read.cmd, limit, &mut on_line)
            .await
            .map_err(|e| e.to_string())?
            .status
    };
    if out.dropped > 0 {
        let n = out.dropped;
        return Err(format!("{n} line(s) left out: the client read too slowly"));
    }
    match status {
        0 => Ok(()),
        n => {
            let tool = read
                .cmd
                .line
                .split_whitespace()
                .nth(2)
                .unwrap_or("the reader");
            Err(format!("{tool} exited {n}"))
        }
    }
}

/// Hands lines to the channel without waiting: when it is full (a slow client), lines
/// are counted and left out, and the count is said as soon as there is room.
struct Outbox<'a> {
    host: &'a str,
    tx: &'a mpsc::Sender<LogEvent>,
    dropped: u64,
}

impl Outbox<'_> {
    fn push(&mut self, copy: Option<u32>, line: String, notice: bool) {
        if self.dropped > 0 {
            let n = self.dropped;
            let said = self.event(
                None,
                format!("{n} line(s) left out: the client read too slowly"),
                true,
            );
            match self.tx.try_send(said) {
                Ok(()) => self.dropped = 0,
                Err(_) => {
                    self.dropped += 1;
                    return;
                }
            }
        }
        let ev = self.event(copy, line, notice);
        if let Err(TrySendError::Full(_)) = self.tx.try_send(ev) {
            self.dropped += 1;
        }
    }

    fn event(&self, copy: Option<u32>, line: String, notice: bool) -> LogEvent {
        LogEvent {
            host: self.host.to_string(),
            copy,
            line,
            notice,
        }
    }
}

/// Which copy each line of a log comes from: after `tail`'s `==> FILE <==` headers
/// (for several files), or by the copy's identifier in the line (the journal's).
pub struct Demux {
    files: Vec<String>,
    idents: Vec<String>,
    copy: Option<u32>,
    blank: bool,
}

impl Demux {
    /// `tail` of `files`: `tail` announces each switch with `==> FILE <==`, after a
    /// blank line (both dropped).  One file: no copies.
    pub fn new(files: &[String]) -> Demux {
        Demux {
            files: files.to_vec(),
            idents: Vec::new(),
            copy: None,
            blank: false,
        }
    }

    /// As the process manager's [`CopyMarks`] say.
    pub fn of(marks: &CopyMarks) -> Demux {
        match marks {
            CopyMarks::None => Demux::new(&[]),
            CopyMarks::TailHeaders(files) => Demux::new(files),
            CopyMarks::Idents(idents) => Demux {
                idents: idents.clone(),
                ..Demux::new(&[])
            },
        }
    }

    /// The lines to show for one line of output (a blank line waits for the next).
    pub fn feed(&mut self, line: &str) -> Vec<(Option<u32>, String)> {
        if !self.idents.is_empty() {
            // `<time> <host> <ident>[<pid>]: <message>`: the identifier ends in `[`.
            let copy = self
                .idents
                .iter()
                .position(|i| line.contains(&format!(" {i}[")))
                .map(|i| i as u32);
            return vec![(copy, line.to_string())];
        }
        if self.files.len() < 2 {
            return vec![(None, line.to_string())];
        }
        let header = line
            .strip_prefix("==> ")
            .and_then(|l| l.strip_suffix(" <=="))
            .and_then(|f| self.files.iter().position(|x| x == f));
        if let Some(i) = header {
            self.blank = false;
            self.copy = Some(i as u32);
            return vec![];
        }
        let mut out = Vec::new();
        if std::mem::take(&mut self.blank) {
            out.push((self.copy, String::new()));
        }
        if line.is_empty() {
            self.blank = true;
        } else {
            out.push((self.copy, line.to_string()));
        }
        out
    }
}
