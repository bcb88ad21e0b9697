//! Running jobs: the engine configuration and plan for a request, the job's own task
//! (a span per job) whose events go to the one writer, its fence, and cancel flags.
//! Every change of a job's state (claim, end, take-over, recovery) is `job_life`'s;
//! policy (who may, which version) is the job service's.
//!
//! A job does not belong to the request that made it: a client that goes away changes
//! nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deploy_wire::api::{JobInfo, JobKind, JobState};
use deploy_wire::{Event, EventKind, JobStatus};
use tracing::Instrument;

use super::events::Events;
use super::job_life::Claim;
use super::job_life::clock::LeaseClock;
use super::relay::{Relay, RelayCache};
use super::store::{Db, LockHolder, Orphans, StoreError, now_ms};
use crate::artifacts::{ArtifactSource, Auth, SimpleIndex};
use crate::engine::{self, CancelFlag, EngineConfig, EventSink, IndexAccess, JobSpec, Plan};
use crate::error::InputError;
use crate::inventory::{App, Inventory};

/// A job's sink that keeps its `job_finished` event back for the end's transaction.
struct HoldFinal {
    inner: Arc<dyn EventSink>,
    last: Mutex<Option<Event>>,
}

impl EventSink for HoldFinal {
    fn emit(&self, event: Event) {
        match event.kind {
            EventKind::JobFinished { .. } => *self.last.lock().unwrap() = Some(event),
            _ => self.inner.emit(event),
        }
    }
}

pub use super::settings::{Artifacts, DEFAULT_LEASE, Settings};

/// A job that passed every input check: ready to be locked and run.
pub struct Planned {
    pub job: JobInfo,
    plan: Plan,
    engine: EngineConfig,
}

impl Planned {
    /// Pins the file each host installs (its SHA-256 checked on the host).
    pub fn pin(&mut self, wheel: Option<deploy_engine::index::WheelPin>) {
        self.plan.spec.wheel = wheel;
    }

    /// The plan and the engine's configuration (a site's runner runs one host of it).
    pub fn into_parts(self) -> (Plan, EngineConfig) {
        (self.plan, self.engine)
    }
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
    /// What sends the notices (its loop runs in `serve` and `apply`).
    outbox: Option<Arc<super::outbox::Outbox>>,
    /// What this process may believe about its leases (the gates of its jobs).
    pub clock: Arc<LeaseClock>,
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
        let outbox = match &settings.artifacts {
            Artifacts::Gateway(cfg) if !cfg.pipeline.notify.is_empty() => {
                Some(Arc::new(super::outbox::Outbox::gateway(
                    db.clone(),
                    &cfg.pipeline,
                    &settings.owner,
                    events.clone(),
                )))
            }
            _ => None,
        };
        let notices = (outbox.clone()).and_then(|o| super::notices::Notices::new(db.clone(), o));
        Jobs {
            clock: LeaseClock::new(settings.lease),
            events,
            notices,
            outbox,
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

    /// The notification outbox, when `[[notify]]` has routes (its loop is started by
    /// whoever runs jobs for good: `serve`, `apply`).
    pub fn outbox(&self) -> Option<&Arc<super::outbox::Outbox>> {
        self.outbox.as_ref()
    }

    /// This process's name as the owner of leases.
    pub fn owner(&self) -> &str {
        &self.settings.owner
    }

    pub fn lease_time(&self) -> Duration {
        self.settings.lease
    }

    /// A lease for this process from now, by this process's clock (tests; jobs are
    /// claimed by the database's clock: [`super::job_life::claim`]).
    pub fn lease(&self) -> super::store::Lease {
        super::store::Lease {
            owner: self.settings.owner.clone(),
            until_ms: now_ms() + self.settings.lease.as_millis() as u64,
        }
    }

    /// The site whose hosts this process runs (None: hosts with no site).
    pub fn site(&self) -> Option<&str> {
        self.settings.site.as_deref()
    }

    /// How long a host handed to another site waits for its runners (`site_wait_secs`).
    pub fn site_wait(&self) -> Duration {
        self.settings.site_wait
    }

    /// Registers work that is no job of this process's (a part of another's) with a
    /// cancel flag, so that lease renewals and cancel requests reach it like a job's.
    pub fn track(&self, id: &str) -> CancelFlag {
        let flag = CancelFlag::default();
        self.cancels
            .lock()
            .unwrap()
            .insert(id.to_string(), flag.clone());
        flag
    }

    pub fn untrack(&self, id: &str) {
        self.cancels.lock().unwrap().remove(id);
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

    /// The engine's configuration (files, key, pins, limits), for jobs and `observe`.
    pub fn engine_config(&self) -> Result<EngineConfig, InputError> {
        self.settings.engine_config()
    }

    /// Every input check and rendering, before any connection ([`Settings::plan`]); an
    /// environment with `delivery: relay` gets a relay of its own, whose events are
    /// this job's.
    pub fn plan(&self, job: JobInfo, batch: Option<&str>) -> Result<Planned, InputError> {
        let sink = self.events.sink(&job.id);
        self.plan_with(job, batch, sink)
    }

    /// [`Self::plan`], the relay's events going to `sink` (a site's runner: its part's).
    pub fn plan_with(
        &self,
        job: JobInfo,
        batch: Option<&str>,
        sink: Arc<dyn EventSink>,
    ) -> Result<Planned, InputError> {
        let inv = self.inventory()?;
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
            index: None,
            wheel: None,
        };
        let relay = |source| {
            let cache = self.relay_cache.clone()?;
            Some(IndexAccess::Relay(Arc::new(Relay::new(
                source,
                self.relay_http.clone(),
                cache,
                sink.clone(),
            ))))
        };
        let (plan, engine) = self.settings.plan(&inv, spec, relay)?;
        Ok(Planned { job, plan, engine })
    }

    /// Runs a locked one-off command job (`deploy run`); `cfg` from [`Self::engine_config`],
    /// read before the lock was taken.
    pub fn spawn_oneoff(
        &self,
        job: JobInfo,
        o: engine::oneoff::OneOff,
        mut cfg: EngineConfig,
        claim: Claim,
    ) {
        cfg.fence = Some(self.fence(&job, claim));
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

    /// Runs a locked build job (`deploy build`); `resumed`: the build an earlier
    /// follower of this (adopted) job left.
    pub fn spawn_build(
        &self,
        job: JobInfo,
        order: super::build_job::BuildOrder,
        resumed: Option<super::store::BuildFollow>,
    ) {
        let (db, info) = (self.db.clone(), job.clone());
        self.spawn_with(job, move |sink, cancel| {
            super::build_job::work(order, info, db, sink, cancel, resumed)
        });
    }

    /// How long a CI build may wait in its builder's queue.
    pub fn build_queue_limit(&self) -> Duration {
        match &self.settings.artifacts {
            Artifacts::Gateway(cfg) => Duration::from_secs(cfg.build_queue_timeout_secs),
            Artifacts::Inventory => Duration::from_secs(30 * 60),
        }
    }

    /// Creates the job and takes its (application, environment) lock, unless held
    /// ([`super::job_life::claim`]).
    pub async fn lock(&self, job: &JobInfo) -> Result<Result<Claim, LockHolder>, StoreError> {
        super::job_life::claim(self, job).await
    }

    /// Runs a locked job in a task of its own; its end frees the lock.
    pub fn spawn(&self, planned: Planned, claim: Claim) {
        let Planned {
            job,
            plan,
            mut engine,
        } = planned;
        engine.fence = Some(self.fence(&job, claim));
        let site = self.settings.site.clone();
        let elsewhere = plan.hosts.iter().any(|(h, _)| h.site != site);
        let (db, wait, info, wheel) = (
            self.db.clone(),
            self.settings.site_wait,
            job.clone(),
            plan.spec.wheel.clone(),
        );
        self.spawn_with(job, move |sink, cancel| {
            // Hosts of other sites go to their runners (`sites`), the job staying here.
            if elsewhere {
                engine.elsewhere = Some(Arc::new(super::sites::SiteHosts {
                    db,
                    job: info,
                    epoch: claim.epoch,
                    wheel,
                    site,
                    wait,
                    sink: sink.clone(),
                }));
            }
            Box::pin(engine::run_cancellable(
                plan,
                Arc::new(engine),
                sink,
                cancel,
            ))
        });
    }

    /// The fence of a claimed job: its epoch on the hosts, and the gate of its lease.
    fn fence(&self, job: &JobInfo, claim: Claim) -> engine::fence::Fence {
        engine::fence::Fence {
            app: job.app.clone(),
            env: job.env.clone(),
            epoch: claim.epoch,
            gate: self.clock.gate(&job.id),
        }
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
        // The final event is held back: the transaction that records the end stores it.
        let held = Arc::new(HoldFinal {
            inner: sink,
            last: Mutex::new(None),
        });
        let span = tracing::info_span!("job", id = %job.id, app = %job.app, env = %job.env);
        let work = run(held.clone(), cancel);
        if let Some(n) = &self.notices {
            n.started(&job);
        }
        tokio::spawn(
            async move {
                tracing::info!("{} {} started by {}", job.kind, job.version, job.user);
                let result = work.await;
                let last = held.last.lock().unwrap().take();
                let state = job_state(result.status);
                super::job_life::finish(&this, &job, result, last).await;
                this.cancels.lock().unwrap().remove(&job.id);
                if let Some(n) = &this.notices {
                    n.ended(&job, state);
                }
            }
            .instrument(span),
        );
    }

    /// Writes a job's end notice (when a route takes it) for an end recorded outside
    /// the job's own task (`job_life::adopt`'s build that cannot be followed again).
    pub fn notify_end(&self, job: &JobInfo, state: JobState) {
        if let Some(n) = &self.notices {
            n.ended(job, state);
        }
    }

    /// Writes the end notices of jobs another runner left and this process marked
    /// interrupted (recovery, a take-over): sent as `failed`, since the job ended without
    /// its work done.  Nothing when no route is configured or a job cannot be read.
    pub async fn notify_interrupted(&self, ids: &[String]) {
        let Some(n) = &self.notices else {
            return;
        };
        for id in ids {
            let i = id.clone();
            match self.db.call(move |s| s.job(&i)).await {
                Ok(Some(job)) => n.ended(&job, JobState::Interrupted),
                Ok(None) => {}
                Err(e) => tracing::warn!("job {id}: its end notice is lost: {e}"),
            }
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

    /// Marks the running jobs of stopped runners interrupted and frees their locks.
    pub async fn recover(&self, which: Orphans) -> Result<Vec<String>, StoreError> {
        super::job_life::recover(self, which).await
    }

    /// Marks the running jobs of this gateway's previous life interrupted.
    pub async fn recover_own(&self) -> Result<Vec<String>, StoreError> {
        super::job_life::recover_own(self).await
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
