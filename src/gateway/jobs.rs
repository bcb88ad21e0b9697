//! Running jobs: the engine configuration and plan for a request, the (application,
//! environment) lock, the job's own task (a span per job) whose events go to the one
//! writer, the record of its end (ledger rows, audit, state; the lock freed), cancel
//! flags, and start-up recovery.  Policy (who may, which version) is the job service's.
//!
//! A job does not belong to the request that made it: a client that goes away changes
//! nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deploy_wire::api::{JobInfo, JobKind, JobState, LedgerEntry, LedgerResult};
use deploy_wire::{Event, EventKind, HostStatus, JobStatus};
use tracing::Instrument;

use super::config::GatewayConfig;
use super::events::Events;
use super::relay::{Relay, RelayCache};
use super::store::{Db, Lease, LockHolder, NewEvent, Orphans, StoreError, now_ms};
use crate::artifacts::{ArtifactSource, Auth, SimpleIndex};
use crate::engine::{
    self, CancelFlag, EngineConfig, EventSink, IndexAccess, JobSpec, Plan, UvTool,
};
use crate::error::InputError;
use crate::inventory::{App, Delivery, Inventory};
use crate::pins::HostKeyPins;
use crate::ssh::{SshKey, SshOptions};

/// Where the servers of a job get the application's artifacts from.
pub enum Artifacts {
    /// The gateway's sources (`gateway.toml`): directly or through the relay, as each
    /// environment's `delivery` says.
    Gateway(Arc<GatewayConfig>),
    /// The inventory's `index_url` only, reached by the servers themselves (`apply`
    /// without a gateway config: the engine decides, and refuses `delivery: relay`).
    Inventory,
}

/// What running jobs needs: files, the key, limits and the artifact sources.
pub struct Settings {
    pub inventory: PathBuf,
    pub known_hosts: PathBuf,
    pub playbooks: PathBuf,
    pub templates: PathBuf,
    pub command_timeout: Duration,
    pub ssh: SshOptions,
    pub key: Arc<SshKey>,
    pub uv: Option<UvTool>,
    pub artifacts: Artifacts,
    /// How long this process's claim on a running job lasts unless renewed.
    pub lease: Duration,
    /// The owner of this process's leases: a gateway's id (the same across its
    /// restarts), or a fresh one per `apply` run ([`one_off_owner`]).
    pub owner: String,
}

/// The lease time when the config names none.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

impl Settings {
    /// The gateway's settings, from its config.
    pub fn gateway(cfg: Arc<GatewayConfig>, key: SshKey, uv: Option<UvTool>) -> Settings {
        Settings {
            inventory: cfg.inventory.clone(),
            known_hosts: cfg.known_hosts.clone(),
            playbooks: cfg.playbooks.clone(),
            templates: cfg.templates.clone(),
            command_timeout: Duration::from_secs(cfg.command_timeout_secs),
            ssh: SshOptions::default(),
            key: Arc::new(key),
            uv,
            lease: Duration::from_secs(cfg.lease_secs),
            owner: cfg.gateway_id.clone(),
            artifacts: Artifacts::Gateway(cfg),
        }
    }
}

/// A job that passed every input check: ready to be locked and run.
pub struct Planned {
    pub job: JobInfo,
    plan: Plan,
    engine: EngineConfig,
}

/// The work of a job: the engine's run, ending with its result.
pub type JobWork = futures_util::future::BoxFuture<'static, engine::JobResult>;

/// The relay's upstream: connecting, and any read that gets no byte for this long, fail
/// (a stalled upstream cannot hold a job's listing lock or a download forever).
const RELAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RELAY_READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Jobs {
    pub db: Db,
    pub events: Events,
    settings: Arc<Settings>,
    cancels: Arc<Mutex<HashMap<String, CancelFlag>>>,
    /// The relay's client: no total timeout, a large download must not be cut.
    relay_http: reqwest::Client,
    relay_cache: Option<Arc<RelayCache>>,
    /// Where a job's start and end are told (`[[notify]]`), if anywhere.
    notices: Option<Arc<super::notices::Notices>>,
}

/// An owner of leases for a process that runs one job and ends (`apply`): its host,
/// pid and a random part, never the same twice.
pub fn one_off_owner() -> String {
    let (rand, _) = super::auth::new_token().unwrap_or_default();
    let rand: String = rand
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect();
    format!("apply:{}:{}:{rand}", hostname(), std::process::id())
}

/// This machine's name, for owners of leases.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

pub fn new_job_id() -> String {
    let (id, _) = super::auth::new_token().unwrap_or_default();
    format!("{:x}-{id}", now_ms())
}

impl Jobs {
    pub fn new(db: Db, settings: Settings) -> Jobs {
        let relay_cache = match &settings.artifacts {
            Artifacts::Gateway(cfg) => Some(Arc::new(RelayCache::new(
                cfg.relay_cache.clone(),
                cfg.relay_cache_max_mb.saturating_mul(1 << 20),
            ))),
            Artifacts::Inventory => None,
        };
        let events = Events::start(db.clone());
        let notices = match &settings.artifacts {
            Artifacts::Gateway(cfg) => {
                super::notices::Notices::new(&cfg.pipeline, db.clone(), events.clone())
            }
            Artifacts::Inventory => None,
        };
        Jobs {
            events,
            notices,
            db,
            settings: Arc::new(settings),
            cancels: Default::default(),
            relay_http: crate::artifacts::client(reqwest::Client::builder())
                .connect_timeout(RELAY_CONNECT_TIMEOUT)
                .read_timeout(RELAY_READ_TIMEOUT)
                .build()
                .expect("http client"),
            relay_cache,
        }
    }

    /// This process's name as the owner of leases.
    pub fn owner(&self) -> &str {
        &self.settings.owner
    }

    pub fn lease_time(&self) -> Duration {
        self.settings.lease
    }

    /// A lease for this process from now.
    pub fn lease(&self) -> Lease {
        Lease {
            owner: self.settings.owner.clone(),
            until_ms: now_ms() + self.settings.lease.as_millis() as u64,
        }
    }

    /// The jobs running in this process now.
    pub fn running_here(&self) -> Vec<String> {
        self.cancels.lock().unwrap().keys().cloned().collect()
    }

    pub fn inventory(&self) -> Result<Inventory, InputError> {
        Inventory::load(&self.settings.inventory)
    }

    pub fn known_hosts(&self) -> &Path {
        &self.settings.known_hosts
    }

    /// The application's artifact source (for listings and `latest`).
    pub fn source_for(&self, app: &App) -> Result<Arc<dyn ArtifactSource>, String> {
        match &self.settings.artifacts {
            Artifacts::Gateway(cfg) => cfg.source_for(app),
            Artifacts::Inventory => match &app.index_url {
                Some(url) => Ok(Arc::new(SimpleIndex {
                    url: url.clone(),
                    servers_url: None,
                    auth: Auth::None,
                })),
                None => Err(format!(
                    "application `{}` has no `index_url` in the inventory",
                    app.name
                )),
            },
        }
    }

    /// How the servers of `env` reach the artifacts; None: the engine's default.
    fn index_access(
        &self,
        inv: &Inventory,
        job: &JobInfo,
    ) -> Result<Option<IndexAccess>, InputError> {
        let Artifacts::Gateway(cfg) = &self.settings.artifacts else {
            return Ok(None);
        };
        let Some((app, env)) = inv
            .app(&job.app)
            .ok()
            .and_then(|a| Some((a, a.environments.get(&job.env)?)))
        else {
            return Ok(None); // plan() reports it
        };
        let bad = |m: String| {
            InputError::new(
                &cfg.path,
                None,
                format!("applications.{}.source", app.name),
                m,
            )
        };
        let source = cfg.source_for(app).map_err(bad)?;
        Ok(Some(match (env.delivery, &self.relay_cache) {
            (Delivery::Relay, Some(cache)) => IndexAccess::Relay(Arc::new(Relay::new(
                source,
                self.relay_http.clone(),
                cache.clone(),
                self.events.sink(&job.id),
            ))),
            // (The relay cache exists whenever the gateway's sources do.)
            _ => IndexAccess::Direct(source.servers_index().map_err(|e| bad(e.to_string()))?),
        }))
    }

    /// The engine's configuration (files, key, pins, limits), for jobs and `observe`.
    pub fn engine_config(&self) -> Result<EngineConfig, InputError> {
        let s = &self.settings;
        Ok(EngineConfig {
            playbooks_dir: s.playbooks.clone(),
            templates_dir: s.templates.clone(),
            key: s.key.clone(),
            pins: HostKeyPins::load(&s.known_hosts)?,
            ssh: s.ssh.clone(),
            command_timeout: s.command_timeout,
            uv: s.uv.clone(),
        })
    }

    /// Every input check and rendering, before any connection.
    pub fn plan(&self, job: JobInfo, batch: Option<&str>) -> Result<Planned, InputError> {
        let inv = self.inventory()?;
        let engine = self.engine_config()?;
        let batch = batch
            .map(|b| {
                crate::inventory::BatchSize::parse(b)
                    .map_err(|m| InputError::new(Path::new("<request>"), None, "batch", m))
            })
            .transpose()?;
        let spec = JobSpec {
            app: job.app.clone(),
            env: job.env.clone(),
            version: job.version.clone(),
            check: job.check,
            no_install: matches!(job.kind, JobKind::Rollback | JobKind::Restart),
            restart: job.kind == JobKind::Restart,
            batch,
            index: self.index_access(&inv, &job)?,
        };
        let plan = engine::plan(&inv, &engine, &spec)?;
        Ok(Planned { job, plan, engine })
    }

    /// Runs a locked one-off command job (`deploy run`); `cfg` from [`Self::engine_config`],
    /// read before the lock was taken.
    pub fn spawn_oneoff(&self, job: JobInfo, o: engine::oneoff::OneOff, cfg: EngineConfig) {
        self.spawn_with(job, move |sink, cancel| {
            Box::pin(async move {
                let ran = engine::oneoff::run(o, Arc::new(cfg), sink, cancel).await;
                ran.result
            })
        });
    }

    /// The gateway's git hosts, builders and notifiers (none for `apply` without a config).
    pub fn pipeline(&self) -> Option<&super::pipeline_config::Pipeline> {
        match &self.settings.artifacts {
            Artifacts::Gateway(cfg) => Some(&cfg.pipeline),
            Artifacts::Inventory => None,
        }
    }

    /// Runs a locked build job (`deploy build`).
    pub fn spawn_build(&self, job: JobInfo, order: super::build_job::BuildOrder) {
        let (db, info) = (self.db.clone(), job.clone());
        self.spawn_with(job, move |sink, cancel| {
            super::build_job::work(order, info, db, sink, cancel)
        });
    }

    /// Creates the job and takes its (application, environment) lock, unless held.
    pub async fn lock(&self, job: &JobInfo) -> Result<Result<(), LockHolder>, StoreError> {
        let (job, lease) = (job.clone(), self.lease());
        self.db.call(move |s| s.start_job(&job, &lease)).await
    }

    /// Runs a locked job in a task of its own; its end frees the lock.
    pub fn spawn(&self, planned: Planned) {
        let Planned { job, plan, engine } = planned;
        self.spawn_with(job, move |sink, cancel| {
            Box::pin(engine::run_cancellable(
                plan,
                Arc::new(engine),
                sink,
                cancel,
            ))
        });
    }

    /// Runs a locked job whose work is `run` (given the job's sink and cancel flag) in
    /// a task of its own; its end is recorded and frees the lock.
    pub fn spawn_with(
        &self,
        job: JobInfo,
        run: impl FnOnce(Arc<dyn EventSink>, CancelFlag) -> JobWork,
    ) {
        let cancel = CancelFlag::default();
        self.cancels
            .lock()
            .unwrap()
            .insert(job.id.clone(), cancel.clone());
        let (this, sink) = (self.clone(), self.events.job_sink(&job));
        let span = tracing::info_span!("job", id = %job.id, app = %job.app, env = %job.env);
        let work = run(sink, cancel);
        if let Some(n) = &self.notices {
            n.started(&job);
        }
        tokio::spawn(
            async move {
                tracing::info!("{} {} started by {}", job.kind, job.version, job.user);
                let result = work.await;
                this.finish(&job, result).await;
            }
            .instrument(span),
        );
    }

    async fn finish(&self, job: &JobInfo, result: engine::JobResult) {
        // Every event first, so a follower that sees the job ended has seen them all.
        self.events.close(&job.id).await;
        let state = job_state(result.status);
        let id = job.id.clone();
        let info = job.clone();
        let job = job.clone();
        let recorded = self
            .db
            .call(move |s| {
                // A one-off command changes no release: no ledger rows.
                if !job.check && job.kind != JobKind::Run {
                    for h in &result.hosts {
                        let from = s.live(&job.app, &job.env, &h.host)?.map(|e| e.version);
                        // (The live record was kept current by `switched` events.)
                        s.add_ledger(&LedgerEntry {
                            job_id: job.id.clone(),
                            app: job.app.clone(),
                            env: job.env.clone(),
                            host: h.host.clone(),
                            version: job.version.clone(),
                            from_version: from,
                            result: ledger_result(h.status),
                            user: job.user.clone(),
                            ts_ms: now_ms(),
                            artifact: None,
                        })?;
                    }
                }
                if job.kind == JobKind::Deploy && state == JobState::Succeeded {
                    s.add_deploy(&job.app, &job.env, &job.version, &job.id)?;
                }
                let error = (result.hosts.iter().find_map(|h| h.error.clone()))
                    .or_else(|| result.error.clone());
                let target = format!("{}/{} {} ({})", job.app, job.env, job.version, job.id);
                s.audit(
                    &job.user,
                    &format!("{} finished", job.kind),
                    &target,
                    state.as_str(),
                )?;
                s.finish_job(&job.id, state, error.as_deref())
            })
            .await;
        match recorded {
            Ok(true) => tracing::info!("job {}", state),
            Ok(false) => tracing::error!(
                "job {state} here, but another gateway had already marked it interrupted (this gateway's lease on it expired)"
            ),
            Err(e) => tracing::error!("cannot record the end of the job: {e}"),
        }
        self.cancels.lock().unwrap().remove(&id);
        self.events.wake_all();
        if let Some(n) = &self.notices {
            n.ended(&info, state);
        }
    }

    /// Whether a job running here was asked to stop already.
    pub fn is_cancelled(&self, id: &str) -> bool {
        (self.cancels.lock().unwrap().get(id))
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Asks a running job to stop after the steps in flight.  False if it is not running here.
    pub fn cancel(&self, id: &str) -> bool {
        match self.cancels.lock().unwrap().get(id) {
            Some(flag) => {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Marks the running jobs of stopped runners interrupted (each with a final event
    /// that says how long it ran and how its hosts ended) and frees their locks.
    /// Returns their ids.
    pub async fn recover(&self, which: Orphans) -> Result<Vec<String>, StoreError> {
        let ids = self.db.call(move |s| s.interrupt_running(which)).await?;
        self.final_events(ids.clone()).await?;
        Ok(ids)
    }

    /// Marks the running jobs of this gateway's previous life interrupted (a shared
    /// database: other gateways' jobs are left to their leases).  Their ids.
    pub async fn recover_own(&self) -> Result<Vec<String>, StoreError> {
        let owner = self.owner().to_string();
        let ids = self.db.call(move |s| s.interrupt_owned(&owner)).await?;
        self.final_events(ids.clone()).await?;
        Ok(ids)
    }

    /// Stores the final event of each job just marked interrupted (by recovery or by a
    /// lease taken over): how long it ran and how its hosts ended.
    pub async fn final_events(&self, ids: Vec<String>) -> Result<(), StoreError> {
        self.db
            .call(move |s| {
                for id in &ids {
                    let stored = s.events_after(id, 0, u32::MAX)?;
                    let started = s.job(id)?.map(|j| j.created_ms).unwrap_or_else(now_ms);
                    let event = Event::now(interrupted(started, &stored));
                    s.append_events(&[NewEvent {
                        job: id.clone(),
                        seq: stored.last().map(|(seq, _)| *seq).unwrap_or(0) + 1,
                        ts_ms: event.ts_ms,
                        data: serde_json::to_string(&event).expect("events serialize"),
                    }])?;
                }
                Ok(())
            })
            .await
    }
}

/// The final event of a job found running after a restart: its time from `started` to
/// now, and its hosts as their stored `host_finished` events say (a host without one
/// counts as failed: nobody knows where it stopped).
pub fn interrupted(started_ms: u64, stored: &[(u64, String)]) -> EventKind {
    // Each host's last word (a halt rollback may finish a host twice).
    let mut last: BTreeMap<String, Option<HostStatus>> = BTreeMap::new();
    for (_, data) in stored {
        match serde_json::from_str::<Event>(data).map(|e| e.kind) {
            Ok(EventKind::JobStarted { hosts, .. }) => {
                last.extend(hosts.into_iter().map(|h| (h, None)));
            }
            Ok(EventKind::HostFinished { host, status, .. }) => {
                last.insert(host, Some(status));
            }
            _ => {}
        }
    }
    let count = |want: HostStatus| last.values().filter(|s| **s == Some(want)).count() as u32;
    let (ok, changed) = (count(HostStatus::Ok), count(HostStatus::Changed));
    EventKind::JobFinished {
        status: JobStatus::Interrupted,
        elapsed_ms: now_ms().saturating_sub(started_ms),
        hosts_ok: ok,
        hosts_changed: changed,
        hosts_failed: last.len() as u32 - ok - changed,
    }
}

pub fn job_state(status: JobStatus) -> JobState {
    match status {
        JobStatus::Succeeded => JobState::Succeeded,
        JobStatus::Failed => JobState::Failed,
        JobStatus::Cancelled => JobState::Cancelled,
        JobStatus::Interrupted => JobState::Interrupted,
    }
}

fn ledger_result(status: HostStatus) -> LedgerResult {
    match status {
        HostStatus::Ok => LedgerResult::Ok,
        HostStatus::Changed => LedgerResult::Changed,
        HostStatus::Failed => LedgerResult::Failed,
        HostStatus::Unreachable => LedgerResult::Unreachable,
        HostStatus::Cancelled => LedgerResult::Cancelled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploy_wire::StepStatus;

    fn stored(kinds: Vec<EventKind>) -> Vec<(u64, String)> {
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, k)| (i as u64 + 1, serde_json::to_string(&Event::now(k)).unwrap()))
            .collect()
    }

    #[test]
    fn an_interrupted_job_reports_its_real_elapsed_time_and_how_its_hosts_ended() {
        let events = stored(vec![
            EventKind::JobStarted {
                app: "hello".into(),
                env: "staging".into(),
                version: "2.0".into(),
                hosts: vec!["web1".into(), "web2".into(), "web3".into()],
                check: false,
                steps: vec!["switch".into()],
            },
            EventKind::StepFinished {
                host: "web1".into(),
                step: "switch".into(),
                status: StepStatus::Changed,
                reason: String::new(),
                diff: None,
                elapsed_ms: 1,
            },
            EventKind::HostFinished {
                host: "web1".into(),
                status: HostStatus::Changed,
                changed: 1,
                elapsed_ms: 1,
                error: None,
                round_trips: 0,
            },
            EventKind::HostFinished {
                host: "web2".into(),
                status: HostStatus::Ok,
                changed: 0,
                elapsed_ms: 1,
                error: None,
                round_trips: 0,
            },
        ]);
        let started = now_ms() - 22_000;
        let EventKind::JobFinished {
            status,
            elapsed_ms,
            hosts_ok,
            hosts_changed,
            hosts_failed,
        } = interrupted(started, &events)
        else {
            panic!("not a job_finished event");
        };
        assert_eq!(status, JobStatus::Interrupted);
        assert!((22_000..30_000).contains(&elapsed_ms), "{elapsed_ms}");
        assert_eq!((hosts_ok, hosts_changed, hosts_failed), (1, 1, 1));
    }
}
