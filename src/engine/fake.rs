//! A scripted fake of a server, for tests that need no Docker: it understands the
//! commands this crate builds (layout, releases, files, supervisord, systemd, nginx, curl probes)
//! and keeps the state they change, so the engine's batches, canary, halt, rollback,
//! cancel and prune run against it in milliseconds.  It models only what the commands
//! say; it is no substitute for the container tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::transport::{Connector, OnLine, Output, Transport};
use crate::commands::{RemoteCmd, batch};
use crate::error::BackendError;
use crate::inventory::Host;
use crate::ssh::Acceptor;

#[path = "fake_shell.rs"]
mod shell;
#[path = "fake_systemd.rs"]
mod systemd;
use shell::{out, version_of};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rel {
    Partial,
    Complete,
    Failed,
}

/// The platform every fake host has unless told otherwise.
pub const FAKE_PLATFORM: &str = "x86_64 glibc-2.36 /usr/bin/python3.11 fake";

/// The environment hash of a fake build of `version`.
pub fn fake_env(version: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("env of {version}")))
}

/// What a fake server has.  Slots index `blue`, `green`; `base_port` is the app's port.
#[derive(Debug, Default)]
pub struct State {
    pub layout: bool,
    /// name -> (creation order, state)
    pub releases: BTreeMap<String, (u64, Rel)>,
    pub files: BTreeMap<String, String>,
    /// The live pointer's target (`green@1.1.0.sock`).
    pub live: Option<String>,
    pub current: Option<String>,
    /// program -> (pid, release dir it runs)
    pub running: BTreeMap<String, (u32, String)>,
    /// Versions whose health check answers 500.
    pub broken: BTreeSet<String>,
    /// Versions whose other processes exit at start (their watch fails).
    pub crashing: BTreeSet<String>,
    /// The host cannot be reached.
    pub down: bool,
    /// Commands containing this fail with exit 1.
    pub fail_when: Option<String>,
    /// After a command containing this has run, the host stops answering (its network
    /// is cut): later commands fail and connecting is refused.
    pub die_after: Option<String>,
    pub reloads: u32,
    /// (release, hook) markers.
    pub hooks: BTreeSet<(String, String)>,
    pub log: Vec<String>,
    /// The highest job epoch seen per (application, environment), as the fence keeps it.
    pub fences: BTreeMap<String, u64>,
    /// release -> the SHA-256 its marker records (a pinned install's); none: unknown.
    pub wheels: BTreeMap<String, String>,
    /// version -> the SHA-256 of the file the index serves for it now; unset: the file
    /// any pin asks for.
    pub index_serves: BTreeMap<String, String>,
    /// `/srv` is full: installs fail as uv does when it runs out of space.
    pub disk_full: bool,
    /// The platform line the host prints (`share.rs`); unset: [`FAKE_PLATFORM`].
    pub platform: Option<String>,
    /// Releases this host unpacked from another's build (rather than installed).
    pub unpacked: BTreeSet<String>,
    /// Releases this host built from another's changes over a release it had.
    pub linked: BTreeSet<String>,
    /// systemd: the units linked to start at boot.
    pub enabled: BTreeSet<String>,
    /// systemd: how many instances of a process's template run.
    pub copies: BTreeMap<String, u32>,
    clock: u64,
}

impl State {
    /// A slot's program (`hello-blue` under supervisord, `deploy-hello-blue` under
    /// systemd) as it runs: pid and release directory.
    pub fn slot_running(&self, slot: &str) -> Option<&(u32, String)> {
        self.running
            .get(&format!("hello-{slot}"))
            .or_else(|| self.running.get(&format!("deploy-hello-{slot}")))
    }
}

/// One fake server.
#[derive(Debug, Default)]
pub struct Server(pub Mutex<State>);

impl Server {
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
    /// The version nginx sends traffic to, if any.
    pub fn serving(&self) -> Option<String> {
        let s = self.state();
        let (slot, _) = crate::commands::parse_slot_socket(s.live.as_deref()?)?;
        s.slot_running(&slot).map(|(_, dir)| version_of(dir))
    }
    /// How many slots run.
    pub fn running(&self) -> usize {
        self.state().running.len()
    }
}

/// A set of fake servers by host name; connects to them as a [`Connector`].
#[derive(Default)]
pub struct Fleet {
    pub servers: Mutex<HashMap<String, Arc<Server>>>,
    /// Host names in the order they were connected to.
    pub connects: Mutex<Vec<String>>,
}

impl Fleet {
    pub fn server(&self, host: &str) -> Arc<Server> {
        self.servers
            .lock()
            .unwrap()
            .entry(host.to_string())
            .or_default()
            .clone()
    }
}

impl Connector for Fleet {
    fn connect<'a>(
        &'a self,
        host: &'a Host,
    ) -> BoxFuture<'a, Result<Box<dyn Transport>, BackendError>> {
        Box::pin(async move {
            let server = self.server(&host.name);
            self.connects.lock().unwrap().push(host.name.clone());
            if server.state().down {
                return Err(BackendError::retryable(format!(
                    "cannot connect to {}:{}: connection refused",
                    host.address, host.port
                )));
            }
            Ok(Box::new(Conn {
                server,
                channels: Default::default(),
            }) as Box<dyn Transport>)
        })
    }
}

struct Conn {
    server: Arc<Server>,
    channels: Mutex<u64>,
}

impl Transport for Conn {
    fn exec<'a>(
        &'a self,
        cmd: &'a RemoteCmd,
        _t: Duration,
        on_line: OnLine<'a>,
    ) -> BoxFuture<'a, Result<Output, BackendError>> {
        *self.channels.lock().unwrap() += 1;
        let (out, arrived) = self.server.state().run(cmd);
        let printed = match &out {
            Ok(o) => o.stdout.as_str(),
            Err(_) => arrived.as_str(),
        };
        for line in printed.lines() {
            on_line(deploy_wire::Stream::Stdout, line);
        }
        Box::pin(async move {
            tokio::task::yield_now().await;
            out
        })
    }
    /// A packed release is the fake's text for it (`fake_shell.rs`), as bytes.
    fn download<'a>(
        &'a self,
        cmd: &'a RemoteCmd,
        _t: Duration,
        limit: usize,
    ) -> BoxFuture<'a, Result<crate::ssh::Download, BackendError>> {
        *self.channels.lock().unwrap() += 1;
        let (out, _) = self.server.state().run(cmd);
        Box::pin(async move {
            tokio::task::yield_now().await;
            let o = out?;
            Ok(crate::ssh::Download {
                status: o.status,
                over_limit: o.stdout.len() > limit,
                bytes: o.stdout.into(),
                stderr: o.stderr,
            })
        })
    }
    fn remote_forward(&self, _a: Acceptor) -> BoxFuture<'_, Result<u16, BackendError>> {
        Box::pin(async { Err(BackendError::permanent("the fake has no forwards")) })
    }
    fn cancel_remote_forward(&self, _port: u16) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn fingerprint(&self) -> String {
        "SHA256:fake".into()
    }
    fn channels_opened(&self) -> u64 {
        *self.channels.lock().unwrap()
    }
    /// A server that went down closed its connections.
    fn is_closed(&self) -> bool {
        self.server.state().down
    }
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

impl State {
    /// Runs a command (a batch: its parts); on a lost connection, also what it had
    /// printed before (a batch's finished parts).
    fn run(&mut self, cmd: &RemoteCmd) -> (Result<Output, BackendError>, String) {
        if let Some((key, epoch, line)) = crate::fence::parse(&cmd.line) {
            // The guard, as the host's shell runs it: an older epoch changes nothing.
            let seen = self.fences.entry(key).or_insert(0);
            if *seen > epoch {
                let refused = Output {
                    status: crate::fence::REFUSED,
                    stdout: String::new(),
                    stderr: format!("deploy: refused: this host has seen job epoch {seen}"),
                };
                return (Ok(refused), String::new());
            }
            *seen = epoch;
            let stdin = cmd.stdin.clone();
            return self.run(&RemoteCmd { line, stdin });
        }
        if cmd.line == "sh -s"
            && let Some((nonce, stop, parts)) = cmd.stdin.as_deref().and_then(batch::parse_script)
        {
            return self.exec_batch(&nonce, stop, &parts);
        }
        (self.exec(cmd), String::new())
    }

    fn exec(&mut self, cmd: &RemoteCmd) -> Result<Output, BackendError> {
        let l = cmd.line.as_str();
        self.log.push(l.to_string());
        if self.down {
            return Err(BackendError::retryable("the connection was lost"));
        }
        if self.fail_when.as_deref().is_some_and(|f| l.contains(f)) {
            return Ok(Output {
                status: 1,
                stdout: String::new(),
                stderr: "injected failure".into(),
            });
        }
        let stdin = cmd
            .stdin
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).to_string())
            .unwrap_or_default();
        self.clock += 1;
        let result = self.interpret(l, stdin);
        if self.die_after.as_deref().is_some_and(|d| l.contains(d)) {
            self.down = true;
        }
        result
    }

    /// A batch: its parts one by one, answered in the shell's frames; a lost connection
    /// loses the whole answer (what ran before it stays done).
    fn exec_batch(
        &mut self,
        nonce: &str,
        stop: bool,
        parts: &[RemoteCmd],
    ) -> (Result<Output, BackendError>, String) {
        let (mut stdout, mut stderr) = (String::new(), String::new());
        for (i, p) in parts.iter().enumerate() {
            let o = match self.exec(p) {
                Ok(o) => o,
                Err(e) => return (Err(e), stdout),
            };
            let part = batch::PartOutput {
                status: o.status,
                stdout: o.stdout,
                stderr: o.stderr,
            };
            let (so, se) = batch::frame(nonce, i, &part);
            stdout.push_str(&so);
            stderr.push_str(&se);
            if stop && part.status != 0 {
                break;
            }
        }
        (
            out(0, stdout).map(|o| Output { stderr, ..o }),
            String::new(),
        )
    }
}
