//! The engine: runs a playbook for one application, environment and release on hosts,
//! over SSH, and reports every step as an [`Event`].  It knows nothing about HTTP.
//!
//! A job has two phases:
//! 1. [`plan`]: everything that can be checked without a server is checked here (names,
//!    application, environment, playbook, templates rendered per host).  Bad input fails
//!    before any connection is opened.
//! 2. [`run`]: all hosts in parallel (up to the environment's `parallel`), one SSH
//!    connection per host for the whole job, steps in playbook order.  A host whose step
//!    fails stops there; the other hosts go on.  An unreachable host fails alone.

pub mod steps;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deploy_wire::{Event, EventKind, HostStatus, JobStatus, StepStatus, names};
use tokio::sync::Semaphore;

use crate::artifacts::{Secret, ServerIndex};
use crate::error::InputError;
use crate::inventory::{App, BatchSize, Environment, Host, Inventory, OnHalt};
use crate::pins::HostKeyPins;
use crate::playbook::{Playbook, Step};
use crate::render::{self, Context, Templates};
use crate::ssh::{Connection, SshKey, SshOptions};

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
}

/// A pinned uv executable (static Linux x86_64), shipped once per server and kept there
/// under its SHA-256.
#[derive(Clone)]
pub struct UvTool {
    pub bytes: Arc<Vec<u8>>,
    /// Lowercase hex SHA-256 of `bytes`.
    pub sha256: String,
}

impl UvTool {
    /// Reads the binary and checks it against its pinned SHA-256 (None: take the file's).
    pub fn load(path: &std::path::Path, sha256: Option<&str>) -> Result<UvTool, String> {
        use sha2::Digest;
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the uv binary {}: {e}", path.display()))?;
        let have = format!("{:x}", sha2::Sha256::digest(&bytes));
        if let Some(want) = sha256
            && !want.eq_ignore_ascii_case(&have)
        {
            return Err(format!(
                "the uv binary {} has SHA-256 {have}, but the config pins {want}",
                path.display()
            ));
        }
        Ok(UvTool {
            bytes: Arc::new(bytes),
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
            IndexAccess::Relay(r) => write!(f, "Relay({})", r.index_path()),
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
            IndexAccess::Relay(_) => vec![],
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
    /// Overrides the environment's rollout batch size (`3`, `25%`).
    pub batch: Option<BatchSize>,
    /// How servers reach the artifacts; None: directly, from the inventory's `index_url`.
    pub index: Option<IndexAccess>,
}

/// Files rendered for one host.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Per slot (index into [`render::SLOTS`]).
    pub supervisor: [String; 2],
    /// nginx pointing at each slot.
    pub nginx: [String; 2],
    /// Holds secrets: never put into an event (see [`render::redact_env_file`]).
    pub env_file: String,
}

/// A validated job, ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spec: JobSpec,
    pub app: App,
    pub env: Environment,
    pub playbook: Playbook,
    pub hosts: Vec<(Host, Rendered)>,
    /// Resolved from `spec.index` or the inventory.
    pub index: IndexAccess,
}

/// Checks a request against the inventory and renders everything, touching no server.
pub fn plan(inv: &Inventory, cfg: &EngineConfig, spec: &JobSpec) -> Result<Plan, InputError> {
    let request = std::path::Path::new("<request>");
    names::check_ident("application name", &spec.app)
        .map_err(|e| InputError::new(request, None, "app", e.to_string()))?;
    names::check_ident("environment name", &spec.env)
        .map_err(|e| InputError::new(request, None, "env", e.to_string()))?;
    names::check_version(&spec.version)
        .map_err(|e| InputError::new(request, None, "version", e.to_string()))?;
    let app = inv.app(&spec.app)?;
    let (env, hosts) = inv.hosts_for(app, &spec.env)?;
    let playbook = Playbook::load(&cfg.playbooks_dir, &app.playbook)?;
    let index = match (&spec.index, &app.index_url) {
        (Some(i), _) => i.clone(),
        (None, _) if env.delivery == crate::inventory::Delivery::Relay => {
            return Err(InputError::new(
                &inv.path,
                None,
                format!(
                    "applications.{}.environments.{}.delivery",
                    app.name, env.name
                ),
                "`delivery: relay` needs the gateway's relay (deploy through `deploy-gateway serve`); `apply` installs directly from index_url",
            ));
        }
        (None, Some(url)) => IndexAccess::Direct(ServerIndex {
            url: url.clone(),
            credentials: None,
        }),
        (None, None) => {
            return Err(InputError::new(
                &inv.path,
                None,
                format!("applications.{}.index_url", app.name),
                "no artifact source: give the application an index_url (or a source in the gateway's config)",
            ));
        }
    };
    let templates = Templates::load(&cfg.templates_dir)?;
    let mut vars = app.env.clone();
    vars.extend(env.env.clone());
    let env_file = render::env_file(&vars);
    let mut rendered = Vec::new();
    for h in hosts {
        let ctx = |slot| Context::new(app, env, &h.user, slot, &spec.version);
        rendered.push((
            h.clone(),
            Rendered {
                supervisor: [
                    templates.render(render::SUPERVISOR_TEMPLATE, &ctx(0))?,
                    templates.render(render::SUPERVISOR_TEMPLATE, &ctx(1))?,
                ],
                nginx: [
                    templates.render(render::NGINX_TEMPLATE, &ctx(0))?,
                    templates.render(render::NGINX_TEMPLATE, &ctx(1))?,
                ],
                env_file: env_file.clone(),
            },
        ));
    }
    Ok(Plan {
        spec: spec.clone(),
        app: app.clone(),
        env: env.clone(),
        playbook,
        hosts: rendered,
        index,
    })
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
    /// The release that was live before this job, if any.
    pub previous: Option<String>,
}

#[derive(Debug, Clone)]
pub struct JobResult {
    pub status: JobStatus,
    pub hosts: Vec<HostResult>,
    pub elapsed: Duration,
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

/// Runs a plan on its hosts and returns when every host has finished.
pub async fn run(plan: Plan, cfg: Arc<EngineConfig>, sink: Arc<dyn EventSink>) -> JobResult {
    run_cancellable(plan, cfg, sink, CancelFlag::default()).await
}

fn cancelled(flag: &CancelFlag) -> bool {
    flag.load(std::sync::atomic::Ordering::SeqCst)
}

/// [`run`], stoppable through `cancel`.
pub async fn run_cancellable(
    plan: Plan,
    cfg: Arc<EngineConfig>,
    sink: Arc<dyn EventSink>,
    cancel: CancelFlag,
) -> JobResult {
    let started = Instant::now();
    let plan = Arc::new(plan);
    sink.emit(Event::now(EventKind::JobStarted {
        app: plan.app.name.clone(),
        env: plan.env.name.clone(),
        version: plan.spec.version.clone(),
        hosts: plan.hosts.iter().map(|(h, _)| h.name.clone()).collect(),
        check: plan.spec.check,
        steps: plan
            .playbook
            .steps
            .iter()
            .map(|s| s.name().to_string())
            .collect(),
    }));
    let mut hosts: Vec<HostResult> = Vec::new();
    let mut failed_so_far = 0u32;
    let rollout = &plan.env.rollout;
    let batches = batches(
        plan.hosts.len(),
        rollout.canary,
        plan.spec.batch.unwrap_or(rollout.batch),
    );
    let nb = batches.len();
    let mut halted: Option<String> = None;
    for (bi, batch) in batches.into_iter().enumerate() {
        if let Some(why) = &halted {
            for i in batch {
                let name = plan.hosts[i].0.name.clone();
                let error = Some(format!("{name}: not started: {why}"));
                sink.emit(Event::now(EventKind::HostFinished {
                    host: name.clone(),
                    status: HostStatus::Cancelled,
                    changed: 0,
                    elapsed_ms: 0,
                    error: error.clone(),
                }));
                hosts.push(HostResult {
                    host: name,
                    status: HostStatus::Cancelled,
                    changed: 0,
                    elapsed: Duration::ZERO,
                    error,
                    connections: 0,
                    channels: 0,
                    previous: None,
                });
            }
            continue;
        }
        let results = run_batch(&plan, &batch, &cfg, &sink, &cancel).await;
        failed_so_far += results
            .iter()
            .filter(|h| matches!(h.status, HostStatus::Failed | HostStatus::Unreachable))
            .count() as u32;
        hosts.extend(results);
        if failed_so_far > rollout.max_failed && !plan.spec.check {
            halted = Some(format!(
                "the rollout halted after batch {}/{nb}: {failed_so_far} host(s) failed (max_failed {})",
                bi + 1,
                rollout.max_failed
            ));
        } else if cancelled(&cancel) {
            halted = Some("the job was cancelled".into());
        } else if bi + 1 < nb && rollout.pause_secs > 0 && !plan.spec.check {
            tokio::time::sleep(Duration::from_secs(rollout.pause_secs as u64)).await;
        }
    }
    // A halted rollout puts upgraded hosts back on their previous release (the same
    // health-gated path, installing nothing), unless the environment says keep.
    if let Some(why) = &halted
        && rollout.on_halt == OnHalt::Rollback
        && !plan.spec.check
        && !cancelled(&cancel)
    {
        let upgraded: Vec<(usize, String)> = hosts
            .iter()
            .filter(|h| h.status == HostStatus::Changed)
            .filter_map(|h| {
                let prev = h.previous.clone()?;
                let i = plan.hosts.iter().position(|(x, _)| x.name == h.host)?;
                (prev != plan.spec.version).then_some((i, prev))
            })
            .collect();
        for (i, prev) in upgraded {
            let name = plan.hosts[i].0.name.clone();
            sink.emit(Event::now(EventKind::Output {
                host: name.clone(),
                step: "rollback".into(),
                stream: deploy_wire::Stream::Stderr,
                line: format!("{why}: rolling {name} back to {prev}"),
            }));
            let mut back = (*plan).clone();
            back.spec.version = prev.clone();
            back.spec.no_install = true;
            // Same host files, rendered for the previous release.
            match plan_for_version(&back, &cfg) {
                Ok(back) => {
                    let r = run_host(&back, i, &cfg, sink.clone(), &CancelFlag::default()).await;
                    if let Some(h) = hosts.iter_mut().find(|h| h.host == name) {
                        h.status = HostStatus::Failed;
                        h.error = Some(match r.status {
                            HostStatus::Ok | HostStatus::Changed => {
                                format!("{name}: rolled back to {prev} because {why}")
                            }
                            _ => format!(
                                "{name}: rolling back to {prev} failed: {}",
                                r.error.unwrap_or_default()
                            ),
                        });
                    }
                }
                Err(e) => eprintln!("deploy: cannot plan the rollback of {name}: {e}"),
            }
        }
    }
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    let failed = hosts.iter().filter(|h| h.status.is_failure()).count() as u32;
    let _ = halted;
    let status = if cancelled(&cancel) && hosts.iter().any(|h| h.status == HostStatus::Cancelled) {
        JobStatus::Cancelled
    } else if failed == 0 {
        JobStatus::Succeeded
    } else {
        JobStatus::Failed
    };
    let elapsed = started.elapsed();
    sink.emit(Event::now(EventKind::JobFinished {
        status,
        elapsed_ms: ms(elapsed),
        hosts_ok: hosts.iter().filter(|h| h.status == HostStatus::Ok).count() as u32,
        hosts_changed: hosts
            .iter()
            .filter(|h| h.status == HostStatus::Changed)
            .count() as u32,
        hosts_failed: failed,
    }));
    JobResult {
        status,
        hosts,
        elapsed,
    }
}

/// Host indexes per batch: the canary alone first (if asked), then batches of `size`.
pub fn batches(n: usize, canary: bool, size: BatchSize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut rest: Vec<usize> = (0..n).collect();
    if canary && n > 1 {
        out.push(vec![rest.remove(0)]);
    }
    let per = size.of(n);
    for chunk in rest.chunks(per) {
        out.push(chunk.to_vec());
    }
    out
}

async fn run_batch(
    plan: &Arc<Plan>,
    batch: &[usize],
    cfg: &Arc<EngineConfig>,
    sink: &Arc<dyn EventSink>,
    cancel: &CancelFlag,
) -> Vec<HostResult> {
    let limit = Arc::new(Semaphore::new(plan.env.parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for &i in batch {
        let (plan, cfg, sink, limit, cancel) = (
            plan.clone(),
            cfg.clone(),
            sink.clone(),
            limit.clone(),
            cancel.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore never closed");
            run_host(&plan, i, &cfg, sink, &cancel).await
        });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        out.push(r.unwrap_or_else(|e| HostResult {
            host: "?".into(),
            status: HostStatus::Failed,
            changed: 0,
            elapsed: Duration::ZERO,
            error: Some(format!("internal error: {e}")),
            connections: 0,
            channels: 0,
            previous: None,
        }));
    }
    out
}

/// Re-renders a plan's host files for `plan.spec.version` (used by halt rollbacks).
fn plan_for_version(plan: &Plan, cfg: &EngineConfig) -> Result<Plan, InputError> {
    let templates = Templates::load(&cfg.templates_dir)?;
    let mut out = plan.clone();
    for (h, r) in out.hosts.iter_mut() {
        let ctx = |slot| Context::new(&plan.app, &plan.env, &h.user, slot, &plan.spec.version);
        r.supervisor = [
            templates.render(render::SUPERVISOR_TEMPLATE, &ctx(0))?,
            templates.render(render::SUPERVISOR_TEMPLATE, &ctx(1))?,
        ];
        r.nginx = [
            templates.render(render::NGINX_TEMPLATE, &ctx(0))?,
            templates.render(render::NGINX_TEMPLATE, &ctx(1))?,
        ];
    }
    Ok(out)
}

async fn run_host(
    plan: &Plan,
    index: usize,
    cfg: &EngineConfig,
    sink: Arc<dyn EventSink>,
    cancel: &CancelFlag,
) -> HostResult {
    let (host, rendered) = &plan.hosts[index];
    let started = Instant::now();
    sink.emit(Event::now(EventKind::HostStarted {
        host: host.name.clone(),
    }));
    let previous = std::sync::Mutex::new(None::<String>);
    let finish = |status: HostStatus,
                  changed: u32,
                  error: Option<String>,
                  connections: u32,
                  channels: u64| {
        let elapsed = started.elapsed();
        sink.emit(Event::now(EventKind::HostFinished {
            host: host.name.clone(),
            status,
            changed,
            elapsed_ms: ms(elapsed),
            error: error.clone(),
        }));
        let previous = previous.lock().unwrap().clone();
        HostResult {
            host: host.name.clone(),
            status,
            changed,
            elapsed,
            error,
            connections,
            channels,
            previous,
        }
    };

    if cancelled(cancel) {
        return finish(
            HostStatus::Cancelled,
            0,
            Some(format!(
                "{}: cancelled before it started; nothing changed",
                host.name
            )),
            0,
            0,
        );
    }
    let pinned = cfg.pins.get(&host.address, host.port);
    let conn = match Connection::connect(
        &host.address,
        host.port,
        &host.user,
        cfg.key.clone(),
        pinned,
        &cfg.ssh,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            return finish(
                HostStatus::Unreachable,
                0,
                Some(format!("{}: {e}", host.name)),
                0,
                0,
            );
        }
    };
    sink.emit(Event::now(EventKind::Connected {
        host: host.name.clone(),
        fingerprint: conn.fingerprint().to_string(),
        elapsed_ms: ms(started.elapsed()),
    }));

    let mut ctx = steps::HostCtx::new(
        plan,
        host,
        rendered,
        &conn,
        cfg.command_timeout,
        sink.clone(),
        cfg.uv.clone(),
    );
    let mut changed = 0;
    let mut failure = None;
    let mut cancelled_at = None;
    // Once `switch` has changed `current`, the host must get to a consistent state
    // (restarted, nginx, healthy) before a cancel is honoured.
    let mut switching = false;
    for step in &plan.playbook.steps {
        if cancelled(cancel) && !switching {
            cancelled_at = Some(step.name());
            break;
        }
        let step_started = Instant::now();
        sink.emit(Event::now(EventKind::StepStarted {
            host: host.name.clone(),
            step: step.name().into(),
        }));
        let report = steps::run(*step, &mut ctx).await;
        sink.emit(Event::now(EventKind::StepFinished {
            host: host.name.clone(),
            step: step.name().into(),
            status: report.status,
            reason: report.reason.clone(),
            diff: report.diff.clone(),
            elapsed_ms: ms(step_started.elapsed()),
        }));
        if *step == Step::Switch && report.status == StepStatus::Changed {
            switching = true;
        }
        if *step == Step::Health {
            switching = false;
        }
        *previous.lock().unwrap() = ctx.previous.clone();
        match report.status {
            StepStatus::Changed => changed += 1,
            StepStatus::Failed => {
                failure = Some(format!(
                    "{}: step {} failed: {}",
                    host.name,
                    step.name(),
                    report.reason
                ));
                break;
            }
            _ => {}
        }
    }
    let channels = conn.channels_opened();
    conn.close().await;
    if let (None, Some(step)) = (&failure, cancelled_at) {
        let msg = format!(
            "{}: cancelled before step {step} ({changed} step(s) had changed something)",
            host.name
        );
        return finish(HostStatus::Cancelled, changed, Some(msg), 1, channels);
    }
    match failure {
        Some(err) => finish(HostStatus::Failed, changed, Some(err), 1, channels),
        None if changed > 0 => finish(HostStatus::Changed, changed, None, 1, channels),
        None => finish(HostStatus::Ok, 0, None, 1, channels),
    }
}

/// The step names, for messages.
pub fn step_names() -> Vec<&'static str> {
    Step::ALL.iter().map(|s| s.name()).collect()
}
