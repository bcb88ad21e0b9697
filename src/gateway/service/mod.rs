//! The job service: the one path from a request to a running job, used by the API, by
//! `deploy-gateway apply` and (later) by schedules: authorise -> resolve the version
//! (`latest` and specifiers through the artifact source, the previous release from the
//! ledger for a rollback) -> plan -> lock -> audit -> spawn; and cancel.  It knows no HTTP:
//! its errors are a [`ServiceError`], which the API maps to statuses in one place.
//!
//! The rest of the policy sits beside it: `access.rs` (tokens, expiry, read and write
//! scopes, refusals audited with a rate limit), `reads.rs` (what each list shows to whom),
//! `rollback.rs` (which release a rollback goes to) and `status.rs` (the record against
//! what hosts say); the day-two commands: `restart.rs` (what the environment runs,
//! started afresh), `run.rs` (a one-off command, with the `run` right) and `app_logs.rs`
//! (a process's log streamed from the hosts).

mod access;
mod app_logs;
mod candidate;
mod freeze;
mod input;
mod pipeline;
mod reads;
mod restart;
mod rollback;
mod run;
mod schedules;
mod status;
mod throttle;

pub use access::RefusalLog;
pub use app_logs::{LogStream, LogsRequest};
pub use freeze::Shut;
pub use rollback::rollback_target;
pub use schedules::next_slot;
pub use status::{disagrees, observed_host};
pub use throttle::SignInLimits;

use std::time::Duration;

use deploy_wire::api::{DeployRequest, JobInfo, JobKind, JobState, RollbackRequest};

use super::auth::Principal;
use super::jobs::{Jobs, new_job_id};
use super::store::{Db, LockHolder, StoreError, now_ms};
use crate::backend::BackendError;
use crate::error::InputError;
use crate::inventory::App;

/// Why a request was not done.  Messages are for the user; `Internal` causes are logged
/// by whoever reports them, never shown to a client.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    /// Bad input: the request, the inventory or a template.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// An environment that does not exist or that the token may not read (one answer
    /// for both: `input.rs`).
    #[error("{0}")]
    UnknownEnvironment(String),
    /// Too many failed sign-ins from one address (`throttle.rs`): try again after
    /// `retry_after_secs`.
    #[error("too many failed sign-ins from {source_addr}; try again in {retry_after_secs} s")]
    Throttled {
        source_addr: String,
        retry_after_secs: u64,
    },
    #[error(
        "{target}: a job of {holder} is running on this application and environment ({job_id})"
    )]
    Locked {
        target: String,
        holder: String,
        job_id: String,
    },
    /// The request contradicts the state (nothing to roll back to, job not running).
    #[error("{0}")]
    Conflict(String),
    /// A deploy with `if_newer` of the version every host already runs: not a refusal
    /// (not audited), nothing started.
    #[error("{0}")]
    UpToDate(String),
    /// A backend failed (the artifact source, the git host); its message as it said it.
    #[error("{0}")]
    Upstream(BackendError),
    /// A freeze, or no deploy window open now: the reason and when it opens.
    #[error("{0}")]
    Closed(String),
    /// The gateway is at a limit (too many event streams); retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The state database cannot be reached right now (restarting, a broken connection):
    /// nothing was decided, asking again shortly may succeed.  Holds the store's message
    /// (for the log; the answer is generic).
    #[error("{0}")]
    StoreUnavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> ServiceError {
        if e.is_unavailable() {
            return ServiceError::StoreUnavailable(e.to_string());
        }
        ServiceError::Internal(e.to_string())
    }
}

impl From<InputError> for ServiceError {
    /// A request's own error as it is; an error in a file (the inventory, a playbook, a
    /// template) names the file, line and field with every value redacted, here and in
    /// the gateway's log: any token may see it (issue 26).
    fn from(e: InputError) -> ServiceError {
        if e.file.as_os_str() == "<request>" {
            return ServiceError::Invalid(e.to_string());
        }
        let shown = e.redacted();
        tracing::info!("refused a request on bad input: {shown}");
        ServiceError::Invalid(shown)
    }
}

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Which release a job should run.
enum Wanted {
    /// An exact version, `latest` or a specifier set (`pre`: let pre-releases count).
    Version { request: String, pre: bool },
    /// The release that ran on the environment before the live one (rollback).
    Previous,
    /// The one release every host of the environment runs now (restart).
    Live,
}

/// One request for a job, whatever its kind.
struct Order {
    kind: JobKind,
    app: String,
    env: String,
    wanted: Wanted,
    batch: Option<String>,
    /// Past a freeze or a closed window (admins): why.
    force: Option<String>,
    /// `schedule <id>` for a scheduled run.
    triggered_by: Option<String>,
    /// Start nothing when the resolved version already runs everywhere (deploys only).
    if_newer: bool,
}

impl Order {
    fn target(&self) -> String {
        let v = match &self.wanted {
            Wanted::Version { request, .. } => request.as_str(),
            Wanted::Previous => "previous",
            Wanted::Live => "live",
        };
        format!("{}/{} {v}", self.app, self.env)
    }
}

#[derive(Clone)]
pub struct JobService {
    jobs: Jobs,
    /// For listings (bounded by a total timeout; redirects handled by `artifacts`).
    http: reqwest::Client,
    /// Refusals already audited in the current minute, per source and reason.
    refusals: std::sync::Arc<RefusalLog>,
    /// Failed authentications per address (`throttle.rs`).
    throttle: std::sync::Arc<throttle::Throttle>,
    /// Log streams (`app-logs`) open now.
    log_streams: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Set when the gateway stops: every log stream ends.
    end_logs: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl JobService {
    pub fn new(jobs: Jobs) -> JobService {
        let http = crate::artifacts::client(reqwest::Client::builder())
            .timeout(Duration::from_secs(20))
            .build()
            .expect("http client");
        JobService {
            jobs,
            http,
            refusals: Default::default(),
            throttle: std::sync::Arc::new(throttle::Throttle::new(SignInLimits::default())),
            log_streams: Default::default(),
            end_logs: std::sync::Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// The same service with failed sign-ins throttled at `limits` (`[sign_in]`).
    pub fn with_sign_in_limits(mut self, limits: SignInLimits) -> JobService {
        self.throttle = std::sync::Arc::new(throttle::Throttle::new(limits));
        self
    }

    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    pub fn db(&self) -> &Db {
        &self.jobs.db
    }

    /// A deploy (or, with `check`, a check) of a version, `latest` or a specifier set.
    pub async fn deploy(&self, p: &Principal, req: DeployRequest) -> Result<JobInfo> {
        let kind = if req.check {
            JobKind::Check
        } else {
            JobKind::Deploy
        };
        let wanted = Wanted::Version {
            request: req.version,
            pre: req.pre,
        };
        self.submit(
            p,
            Order {
                kind,
                app: req.app,
                env: req.env,
                wanted,
                batch: req.batch,
                force: req.force,
                triggered_by: None,
                if_newer: req.if_newer,
            },
        )
        .await
    }

    /// Back to `to`, or to the release before the live one: a deploy that installs nothing.
    pub async fn rollback(&self, p: &Principal, req: RollbackRequest) -> Result<JobInfo> {
        let wanted = match req.to {
            Some(request) => Wanted::Version {
                request,
                pre: false,
            },
            None => Wanted::Previous,
        };
        let kind = JobKind::Rollback;
        self.submit(
            p,
            Order {
                kind,
                app: req.app,
                env: req.env,
                wanted,
                batch: req.batch,
                force: None,
                triggered_by: None,
                if_newer: false,
            },
        )
        .await
    }

    async fn submit(&self, p: &Principal, order: Order) -> Result<JobInfo> {
        let action = order.kind.as_str();
        if let Wanted::Version { request, .. } = &order.wanted {
            input::what_to_deploy("version", request)?;
        }
        self.env_to_act_on(p, action, &order.app, &order.env, &order.target())
            .await?;
        self.through_the_door(p, &order).await?;
        let version = self.resolve(&order).await?;
        if order.kind == JobKind::Rollback && matches!(order.wanted, Wanted::Version { .. }) {
            self.check_rollback_to(&order.app, &order.env, &version)
                .await?;
        }
        if order.if_newer {
            self.newer_than_live(&order.app, &order.env, &version)
                .await?;
        }
        // An exact version of a deploy must be on the index (a rollback's is on disk).
        let exact = matches!(&order.wanted, Wanted::Version { request, .. }
            if !crate::versions::is_request(request))
            && order.kind != JobKind::Rollback;
        let job = JobInfo {
            id: new_job_id(),
            kind: order.kind,
            check: order.kind == JobKind::Check,
            app: order.app,
            env: order.env,
            version,
            user: p.user.clone(),
            state: JobState::Running,
            created_ms: now_ms(),
            finished_ms: None,
            error: None,
            triggered_by: order.triggered_by,
        };
        let target = format!("{}/{} {}", job.app, job.env, job.version);
        let mut planned = self.jobs.plan(job.clone(), order.batch.as_deref())?;
        if exact {
            self.check_listed(&job.app, &job.version).await?;
        }
        // Read once: the hosts install exactly this file and the ledger records it.
        let file = self.deploy_file(&job).await;
        if let Some((name, sha)) = &file {
            planned.pin(crate::engine::index::WheelPin::new(name, sha));
        }
        let claim = match self.jobs.lock(&job).await? {
            Ok(claim) => claim,
            Err(LockHolder { holder, job_id }) => {
                self.audit(&p.user, action, &target, "refused: locked")
                    .await;
                return Err(ServiceError::Locked {
                    target,
                    holder,
                    job_id,
                });
            }
        };
        let accepted = format!("{target} ({})", job.id);
        self.audit(&p.user, action, &accepted, "accepted").await;
        self.record_artifact(&job, file).await;
        self.jobs.spawn(planned, claim);
        Ok(job)
    }

    /// The exact version an order means.
    async fn resolve(&self, order: &Order) -> Result<String> {
        match &order.wanted {
            Wanted::Version { request, pre } if crate::versions::is_request(request) => {
                let inv = self.jobs.inventory()?;
                let app = inv
                    .app(&order.app)
                    .map_err(|e| ServiceError::NotFound(e.message))?;
                let available = self.available_versions(app).await?;
                crate::versions::resolve(request, &available, *pre).map_err(ServiceError::Invalid)
            }
            Wanted::Version { request, .. } => Ok(request.clone()),
            Wanted::Previous => self.previous_release(&order.app, &order.env).await,
            Wanted::Live => self.live_release(&order.app, &order.env).await,
        }
    }

    /// An exact version, refused when the index answers without it.  An index that
    /// cannot be reached refuses nothing here (the job reports it; a re-deploy of a
    /// release on disk needs no index).
    async fn check_listed(&self, app: &str, version: &str) -> Result<()> {
        let inv = self.jobs.inventory()?;
        let a = inv
            .app(app)
            .map_err(|e| ServiceError::NotFound(e.message))?;
        let available = match self.available_versions(a).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("not checking {app} {version} against its index: {e}");
                return Ok(());
            }
        };
        let wanted = crate::versions::Version::parse(version);
        let same = |v: &String| match (&wanted, crate::versions::Version::parse(v)) {
            (Some(w), Some(x)) => w.cmp(&x) == std::cmp::Ordering::Equal,
            _ => v == version,
        };
        if available.iter().any(same) {
            return Ok(());
        }
        let has = if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        };
        Err(ServiceError::Invalid(format!(
            "version {version} of {app} is not on its index (versions there: {has})"
        )))
    }

    /// The application's versions in its artifact source, oldest first.
    pub async fn available_versions(&self, app: &App) -> Result<Vec<String>> {
        let src = self.jobs.source_for(app).map_err(ServiceError::Invalid)?;
        crate::artifacts::list_versions(&self.http, src.as_ref(), &app.package)
            .await
            .map_err(ServiceError::Upstream)
    }

    /// A job by id, whoever asks (see `reads.rs` for the scoped read).
    pub async fn job(&self, id: &str) -> Result<JobInfo> {
        let jid = id.to_string();
        self.db()
            .call(move |s| s.job(&jid))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no job {id}")))
    }

    /// Asks a running job to stop after the steps in flight.
    pub async fn cancel(&self, p: &Principal, id: &str) -> Result<JobInfo> {
        let job = self.job_for(p, id).await?;
        match job.kind {
            // A build has no environment: whoever may start it may cancel it.
            JobKind::Build => self.may_build(p, &job.app, id).await?,
            _ => self.authorise(p, "cancel", &job.env, id).await?,
        }
        if job.is_finished() {
            return Err(ServiceError::Conflict(format!(
                "job {} is not running (it is {})",
                job.id, job.state
            )));
        }
        if !self.jobs.cancel(&job.id) {
            // Another gateway (or an `apply` run) runs it: it reads the request within
            // a second or so.
            let id = job.id.clone();
            if !self.db().call(move |s| s.request_cancel(&id)).await? {
                return Err(ServiceError::Conflict(format!(
                    "job {} is not running any more",
                    job.id
                )));
            }
        }
        self.audit(&p.user, "cancel", &job.id, "accepted").await;
        Ok(job)
    }

    /// Writes an audit row; a failure is logged, never fatal (the job is already locked
    /// or the refusal already decided).
    pub async fn audit(&self, user: &str, action: &str, target: &str, outcome: &str) {
        let row = [user, action, target, outcome].map(str::to_string);
        let written = self
            .db()
            .call(move |s| s.audit(&row[0], &row[1], &row[2], &row[3]))
            .await;
        if let Err(e) = written {
            tracing::error!("cannot write an audit row ({action} {target}: {outcome}): {e}");
        }
    }
}
