//! deploy-engine: everything a deploy to hosts needs, and nothing of HTTP or a database:
//! the inventory and playbooks, templates, remote commands as data, the process-manager
//! seam, SSH (the only russh user) and the engine that runs a playbook on hosts and
//! reports every step as an [`Event`]. Its dependencies have no HTTP client or server and
//! no database driver, so Cargo keeps that wall (the gateway, `deploy`, builds on it).
//!
//! A job has two parts:
//! 1. [`plan()`] ([`plan.rs`](mod@plan)): every check that needs no server (names,
//!    application, environment, playbook, templates rendered per host).  Bad input fails
//!    before any connection is opened.
//! 2. [`run`] ([`rollout`]): job-level [`phases`] before the hosts, then the hosts in
//!    batches (canary, batch size, pause, `max_failed`, halt and halt-rollback, cancel),
//!    then the `after` phases.  Each host ([`host`]) gets one connection ([`transport`])
//!    for the whole job; for each step the engine reads the [`facts`] the step needs, the
//!    step decides ([`steps`]) and returns [`ops`], and the engine runs them.  A host whose
//!    step fails stops there; the other hosts of its batch go on.  An unreachable host
//!    fails alone.
//!
//! Day-two work besides rollouts: [`oneoff`] (`deploy run`: one command as the app user
//! on one host) and [`app_logs`] (`deploy app-logs`: a process's log tailed from hosts).
//!
//! The scripted fake server ([`fake`]) is compiled for this crate's tests and, with the
//! `fake` feature, for other crates' tests; never into a binary.

// What a host deploy is made of (see ARCHITECTURE.md's codemap).
pub mod commands;
pub mod elsewhere;
pub mod error;
pub mod index;
pub mod inventory;
pub mod pins;
pub mod playbook;
pub mod procman;
pub mod random;
pub mod render;
pub mod schedule;
pub mod shell;
pub mod ssh;
pub mod versions;

pub use deploy_wire as wire;

// The engine proper.
pub mod app_logs;
mod exec;
mod exec_share;
pub mod facts;
pub mod failure;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod fence;
mod group;
mod host;
pub mod observe;
pub mod oneoff;
pub mod ops;
pub mod phases;
pub mod plan;
mod prefetch;
mod reads;
pub mod rollout;
mod round_trips;
pub mod share;
pub mod steps;
#[cfg(any(test, feature = "fake"))]
pub mod testbed;
pub mod transport;

#[cfg(test)]
mod app_tests;
#[cfg(test)]
mod boot_tests;
#[cfg(test)]
mod check_golden_tests;
#[cfg(test)]
mod day_two_tests;
#[cfg(test)]
mod disk_tests;
#[cfg(test)]
mod elsewhere_tests;
#[cfg(test)]
mod prefetch_tests;
#[cfg(test)]
mod scale_tests;
#[cfg(test)]
mod share_tests;
#[cfg(test)]
mod systemd_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wheel_tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deploy_wire::{Event, HostStatus, JobStatus};

use crate::index::{Secret, ServerIndex};
use crate::inventory::BatchSize;
use crate::pins::HostKeyPins;
use crate::playbook::Step;
use crate::ssh::{SshKey, SshOptions};

pub use plan::{Plan, Rendered, plan};
pub use rollout::batches;
use transport::{Connector, SshConnector};

/// Where events go.  The gateway persists and streams them; tests collect them.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event);
}

impl EventSink for tokio::sync::mpsc::UnboundedSender<Event> {
    fn emit(&self, event: Event) {
        let _ = self.send(event);
    }
}

/// Collects events in memory (tests, benchmarks).
#[derive(Default)]
pub struct Collect(pub Mutex<Vec<Event>>);

impl EventSink for Collect {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

/// What the engine needs besides the inventory: files, the key, pins and limits.
pub struct EngineConfig {
    pub playbooks_dir: PathBuf,
    pub templates_dir: PathBuf,
    pub key: Arc<SshKey>,
    pub pins: HostKeyPins,
    pub ssh: SshOptions,
    /// Limit for one remote command (a pip install included).
    pub command_timeout: Duration,
    /// The uv binary shipped to servers of applications with `installer: uv`; without
    /// it they are built with pip.
    pub uv: Option<UvTool>,
    /// The job's fence (its epoch on the hosts, and the lease it must hold before each
    /// command); None for work that belongs to no job (`observe`, tests).
    pub fence: Option<fence::Fence>,
    /// Who runs the hosts of other sites (`elsewhere.rs`); None: every host runs here.
    pub elsewhere: Option<Arc<dyn elsewhere::Elsewhere>>,
}

/// A pinned uv executable (static Linux x86_64), shipped once per server and kept there
/// under its SHA-256.
#[derive(Clone)]
pub struct UvTool {
    pub bytes: bytes::Bytes,
    /// Lowercase hex SHA-256 of `bytes`.
    pub sha256: String,
}

impl UvTool {
    /// Reads the binary and checks it against its pinned SHA-256 (None: take the file's).
    pub fn load(path: &std::path::Path, sha256: Option<&str>) -> Result<UvTool, String> {
        use sha2::Digest;
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the uv binary {}: {e}", path.display()))?;
        let have = hex::encode(sha2::Sha256::digest(&bytes));
        if let Some(want) = sha256
            && !want.eq_ignore_ascii_case(&have)
        {
            return Err(format!(
                "the uv binary {} has SHA-256 {have}, but the config pins {want}",
                path.display()
            ));
        }
        Ok(UvTool {
            bytes: bytes::Bytes::from(bytes),
            sha256: have,
        })
    }
}

impl std::fmt::Debug for UvTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UvTool({}, {} bytes)", self.sha256, self.bytes.len())
    }
}

/// How the servers of a job reach the release's artifacts.  Decided by the caller (the
/// gateway, from its artifact sources and the environment's `delivery`).
#[derive(Clone)]
pub enum IndexAccess {
    /// The server's installer uses this index itself; its credentials, if any, reach
    /// the installer only through its environment, fed on stdin.
    Direct(ServerIndex),
    /// Through the gateway's relay: a remote forward of the host's SSH connection, whose
    /// connections the relay serves.
    Relay(Arc<dyn Relay>),
}

/// A package index the engine can offer a server through its SSH connection.  The
/// engine only moves bytes; what is spoken on them is the relay's business.
pub trait Relay: Send + Sync {
    /// Serves the connections of one host (events about them name `host`).
    fn acceptor(&self, host: &str) -> crate::ssh::Acceptor;
    /// The index's path on the relay, e.g. `/simple/`.
    fn index_path(&self) -> String;
}

impl std::fmt::Debug for IndexAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexAccess::Direct(i) => write!(f, "Direct({i:?})"),
            IndexAccess::Relay(_) => write!(f, "Relay(..)"),
        }
    }
}

impl IndexAccess {
    /// What to say about it in a report.
    pub fn describe(&self) -> String {
        match self {
            IndexAccess::Direct(i) => i.url.clone(),
            IndexAccess::Relay(_) => "the gateway's relay".into(),
        }
    }
    /// Secrets whose appearance in any output must be scrubbed.
    pub fn secrets(&self) -> Vec<Secret> {
        match self {
            IndexAccess::Direct(i) => match &i.credentials {
                Some((_, pw)) => vec![pw.clone(), i.url_with_credentials()],
                None => vec![],
            },
            // Its path holds the job's relay secret.
            IndexAccess::Relay(r) => vec![Secret::new(r.index_path())],
        }
    }
}

/// One request: deploy `version` of `app` to `env` (or, with `check`, say what would change).
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub app: String,
    pub env: String,
    pub version: String,
    pub check: bool,
    /// A rollback: the release must already be complete on every host; nothing is installed.
    pub no_install: bool,
    /// A restart (`deploy restart`): the release starts afresh in the idle slot and takes
    /// the traffic (health-gated, zero downtime), and the other processes restart, even
    /// when nothing changed.  Installs nothing (set with `no_install`).
    pub restart: bool,
    /// Overrides the environment's rollout batch size (`3`, `25%`).
    pub batch: Option<BatchSize>,
    /// How servers reach the artifacts; None: directly, from the inventory's `index_url`.
    pub index: Option<IndexAccess>,
    /// The file each host must install (its SHA-256 checked by the installer, kept in the
    /// release's marker); None: whatever the index serves for the version, unchecked
    /// against the ledger (the index gave no hash, or could not be read at submit).
    pub wheel: Option<crate::index::WheelPin>,
}

/// How one host ended.
#[derive(Debug, Clone)]
pub struct HostResult {
    pub host: String,
    pub status: HostStatus,
    pub changed: u32,
    pub elapsed: Duration,
    pub error: Option<String>,
    /// SSH connections opened for this host (1, or 0 if unreachable).
    pub connections: u32,
    /// SSH channels (one per remote command) opened on that connection.
    pub channels: u64,
    /// Remote commands waited for in sequence (concurrent ones count once).
    pub round_trips: u32,
    /// The release that was live before this job, if any.
    pub previous: Option<String>,
    /// The release the host serves after this job, as far as the engine knows (None if
    /// it never read the host).
    pub serving: Option<String>,
    /// The job's release's environment hash on this host (`share.rs`), when the job
    /// read it from the release's marker, built it or unpacked it.
    pub env_sha256: Option<String>,
}

impl HostResult {
    /// A host's result before (or without) any work on it: nothing read, nothing
    /// changed, no connection.
    pub fn untouched(
        host: &str,
        status: HostStatus,
        error: Option<String>,
        elapsed: Duration,
    ) -> HostResult {
        HostResult {
            host: host.to_string(),
            status,
            changed: 0,
            elapsed,
            error,
            connections: 0,
            channels: 0,
            round_trips: 0,
            previous: None,
            serving: None,
            env_sha256: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct JobResult {
    pub status: JobStatus,
    pub hosts: Vec<HostResult>,
    pub elapsed: Duration,
    /// Why the job failed as a whole (a job-level phase, a build), beside its hosts'.
    pub error: Option<String>,
}

impl JobResult {
    pub fn changed_steps(&self) -> u32 {
        self.hosts.iter().map(|h| h.changed).sum()
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Set to stop a job: each host stops before its next step (the step in flight finishes).
pub type CancelFlag = Arc<std::sync::atomic::AtomicBool>;

fn cancelled(flag: &CancelFlag) -> bool {
    flag.load(std::sync::atomic::Ordering::SeqCst)
}

/// Runs a plan on its hosts over SSH and returns when every host has finished.
pub async fn run(plan: Plan, cfg: Arc<EngineConfig>, sink: Arc<dyn EventSink>) -> JobResult {
    run_cancellable(plan, cfg, sink, CancelFlag::default()).await
}

/// [`run`], stoppable through `cancel`: each host stops before its next step (never
/// between a switch and its health check).
pub async fn run_cancellable(
    plan: Plan,
    cfg: Arc<EngineConfig>,
    sink: Arc<dyn EventSink>,
    cancel: CancelFlag,
) -> JobResult {
    let connector = Arc::new(SshConnector {
        key: cfg.key.clone(),
        pins: cfg.pins.clone(),
        opts: cfg.ssh.clone(),
    });
    run_with(plan, cfg, connector, sink, cancel).await
}

/// [`run_cancellable`] with any [`Connector`] (tests use [`fake`] servers).
pub async fn run_with(
    plan: Plan,
    cfg: Arc<EngineConfig>,
    connector: Arc<dyn Connector>,
    sink: Arc<dyn EventSink>,
    cancel: CancelFlag,
) -> JobResult {
    let connector = fence::connector(connector, cfg.fence.as_ref());
    rollout::run(rollout::Run {
        plan: Arc::new(plan),
        cfg,
        connector,
        sink,
        cancel,
        share: Default::default(),
    })
    .await
}

/// The step names, for messages.
/// The repository's root (its `playbooks/` and `templates/`), for tests.
#[cfg(any(test, feature = "fake"))]
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

pub fn step_names() -> Vec<&'static str> {
    Step::ALL.iter().map(|s| s.name()).collect()
}
