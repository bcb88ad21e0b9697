//! The gateway's state behind one trait: jobs and their ordered events, the release
//! ledger, (application, environment) locks, token hashes, the audit trail, the
//! notification outbox and dashboard sessions (their rows: `outbox.rs`).
//!
//! Decision: the trait is synchronous and async code reaches it through [`Db::call`],
//! which runs the closure on a blocking thread.  The queries are written once
//! (`queries*.rs`, over the seam in `sql.rs`); a backend is one file (`sqlite.rs`,
//! `postgres.rs`) plus one arm in [`Db::open`]; nothing outside this folder names a
//! database crate.  SQLite is for one gateway; PostgreSQL may be shared by several,
//! which agree through row locks, `ON CONFLICT` claims and leases (ARCHITECTURE.md).

mod outbox;
mod postgres;
mod queries;
mod queries_access;
mod queries_builds;
mod queries_leases;
mod queries_outbox;
mod queries_pipeline;
mod queries_schedules;
mod queries_sites;
pub mod sql;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deploy_wire::api::{AuditEntry, JobInfo, JobState, LedgerEntry};
use deploy_wire::pipeline::{ArtifactRef, BuildRecord};
use deploy_wire::schedule::{FreezeInfo, ScheduleRun};

pub use outbox::{Attempted, Delivery, DeliveryState, NewDelivery, SessionRow};
pub use queries::SqlStore;

/// Where the state lives (`database` in gateway.toml).
#[derive(Debug, Clone)]
pub enum Location {
    /// A SQLite file: one gateway (and its `apply` runs).
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://user@host:port/name`, no password in it),
    /// which several gateways may share.
    Postgres {
        url: String,
        password: Option<crate::artifacts::Secret>,
    },
}

impl Location {
    /// `database` of gateway.toml: a `postgres://` URL (its password given apart), else
    /// a SQLite file (relative to the config's directory, as `abs` makes it).
    pub fn from_config(
        database: &str,
        password: Option<crate::artifacts::Secret>,
        abs: &dyn Fn(PathBuf) -> PathBuf,
    ) -> std::result::Result<Location, String> {
        if database.starts_with("postgres://") || database.starts_with("postgresql://") {
            return Ok(Location::Postgres {
                url: database.to_string(),
                password,
            });
        }
        if database.contains("://") {
            return Err(format!(
                "expected a file path (SQLite) or a postgres:// URL, got {database:?}"
            ));
        }
        if password.is_some() {
            return Err("database_password_env/_file is for a postgres:// database".into());
        }
        Ok(Location::Sqlite(abs(PathBuf::from(database))))
    }

    /// The SQLite file, if the state is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Location::Sqlite(p) => Some(p),
            Location::Postgres { .. } => None,
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres { url, .. } => f.write_str(&redact(url)),
        }
    }
}

/// A database URL as it may be shown: a password in it (which is refused anyway)
/// becomes `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_string(),
    }
}

/// A claim that one gateway (`owner`, an id of the process) holds until `until_ms`
/// unless it renews it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub until_ms: u64,
}

/// A failure of the state database, saying what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database {path}: {message}")]
    Open { path: String, message: String },
    #[error("state database: {doing}: {message}")]
    Query {
        doing: &'static str,
        message: String,
    },
    #[error("state database: {doing}: unexpected value: {message}")]
    Corrupt {
        doing: &'static str,
        message: String,
    },
    /// The database could not be reached or the connection broke (a restart, a network
    /// cut): asking again shortly may succeed.  The API answers it with 503
    /// `store_unavailable` and `Retry-After`, so that followers wait instead of giving up.
    #[error("state database unavailable: {doing}: {message}")]
    Unavailable {
        doing: &'static str,
        message: String,
    },
    #[error("state database: a store task panicked")]
    Panicked,
    /// The process is stopping: its runtime dropped the call before it ran.
    #[error("state database: not asked, the process is stopping")]
    Stopping,
}

impl StoreError {
    /// The database was unreachable (not: it refused the statement, or a value is bad).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A token as stored (never the token itself: its hash is the key).
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: String,
    pub user: String,
    /// Environments it may read and act on (deploy, rollback, cancel).
    pub envs: Vec<String>,
    /// Environments it may only read.
    pub read_envs: Vec<String>,
    pub admin: bool,
    pub created_ms: u64,
    pub revoked: bool,
    /// After this instant the token is refused (401).
    pub expires_ms: Option<u64>,
    /// Updated at most once a minute (see `JobService::authenticate`).
    pub last_used_ms: Option<u64>,
    /// May run one-off commands (`deploy run`) in the environments it may act on.
    pub run: bool,
}

/// A token to store: its public id, its hash and what it may do.
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    pub id: String,
    pub hash: String,
    pub user: String,
    pub envs: Vec<String>,
    pub read_envs: Vec<String>,
    pub admin: bool,
    pub expires_ms: Option<u64>,
    /// The `run` right (`deploy run`).
    pub run: bool,
}

/// Which environments a listing may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Envs(Vec<String>),
}

impl Scope {
    pub fn allows(&self, env: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Envs(e) => e.iter().any(|x| x == env),
        }
    }
}

/// The release a host serves, recorded the moment its live pointer changed (a
/// `switched` event), so interrupted and failed jobs leave the truth behind too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRow {
    pub app: String,
    pub env: String,
    pub host: String,
    pub version: String,
    pub slot: String,
    pub job_id: String,
    pub user: String,
    pub ts_ms: u64,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: u64,
    pub events: u64,
    pub audit: u64,
    /// Notifications of the pruned jobs (whatever their state).
    pub deliveries: u64,
    /// Expired dashboard sessions (`prune_sessions`, in the same retention pass).
    pub sessions: u64,
}

/// Who holds an (application, environment) lock, and with which job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub holder: String,
    pub job_id: String,
}

/// One event to store: its job, sequence number (from 1, per job), time and JSON.
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    pub job: String,
    pub seq: u64,
    pub ts_ms: u64,
    pub data: String,
    /// A note about the job stored even after its end (a notification's delivery), not
    /// a step of its story.
    pub note: bool,
}

/// A CI build a build job follows: the builder's id for it, its number and page once
/// it left the queue, how far its console was read, and when it was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildFollow {
    pub job_id: String,
    pub app: String,
    pub commit: String,
    pub builder_id: String,
    /// (number, page URL).
    pub build: Option<(String, String)>,
    pub offset: u64,
    pub queued_ms: u64,
}

/// Which running build jobs a process adopts (their follower stopped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adopt {
    /// Those whose lease ended before this instant (database clock).
    Expired(u64),
    /// Those of this owner (a gateway's previous life).
    Owner(String),
    /// Those of stopped runners (SQLite: one gateway per file).
    Orphans(Orphans),
}

/// How a job ended: its state, its error and its final event (`job_finished`).
#[derive(Debug, Clone)]
pub struct JobEnd {
    pub state: JobState,
    pub error: Option<String>,
    pub event: deploy_wire::Event,
}

impl JobEnd {
    /// An end whose final event says only its state (tests, and jobs whose work ended
    /// without one).
    pub fn plain(state: JobState, error: Option<&str>) -> JobEnd {
        let status = match state {
            JobState::Succeeded => deploy_wire::JobStatus::Succeeded,
            JobState::Cancelled => deploy_wire::JobStatus::Cancelled,
            JobState::Interrupted => deploy_wire::JobStatus::Interrupted,
            _ => deploy_wire::JobStatus::Failed,
        };
        JobEnd {
            state,
            error: error.map(str::to_string),
            event: deploy_wire::Event::now(deploy_wire::EventKind::JobFinished {
                status,
                elapsed_ms: 0,
                hosts_ok: 0,
                hosts_changed: 0,
                hosts_failed: 0,
                hosts_unreachable: 0,
                hosts_cancelled: 0,
            }),
        }
    }
}

/// Whose running jobs start-up recovery marks interrupted.  A job belongs to `apply`
/// when its user starts with [`APPLY_USER_PREFIX`], else to a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphans {
    /// Every running job (no runner is alive).
    All,
    /// Jobs of gateways (an `apply` runs right now and owns its own job).
    Gateway,
    /// Jobs of `apply` runs (a gateway runs right now and owns its jobs).
    Apply,
}

/// A schedule as stored: its request, its author's token (its runs act with that
/// token's rights) and its next slot.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    pub id: String,
    pub app: String,
    pub env: String,
    pub what: String,
    pub at_ms: Option<u64>,
    pub cron: Option<String>,
    pub tz: String,
    pub lock_wait_secs: u64,
    pub grace_secs: u64,
    pub user: String,
    pub token_id: String,
    pub paused: bool,
    pub created_ms: u64,
    pub next_ms: Option<u64>,
}

/// The user of a job started by `deploy-gateway apply` begins with this.
pub const APPLY_USER_PREFIX: &str = "apply:";

/// A host of a job handed to the runners of its site (`site_parts`; `gateway::sites`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPart {
    /// `<job>/<host>` (a rollback's: `<job>/<host>/rollback`).
    pub id: String,
    pub job_id: String,
    pub host: String,
    pub site: String,
    /// A halted rollout's rollback of the host to this release.
    pub rollback_to: Option<String>,
    /// The file the host must install (`WheelPin` as JSON), as the job pinned it.
    pub wheel: Option<String>,
    /// The job's fencing epoch, which the part's commands carry.
    pub epoch: u64,
}

/// Where a part is: `queued` for its site, `running` under a runner's lease, then
/// `done` (its result written), `lost` (its runner stopped while it ran) or `abandoned`
/// (no runner of its site took it in time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartState {
    Queued,
    Running,
    Done,
    Lost,
    Abandoned,
}

impl PartState {
    pub fn as_str(self) -> &'static str {
        match self {
            PartState::Queued => "queued",
            PartState::Running => "running",
            PartState::Done => "done",
            PartState::Lost => "lost",
            PartState::Abandoned => "abandoned",
        }
    }

    fn parse(s: &str) -> PartState {
        match s {
            "queued" => PartState::Queued,
            "running" => PartState::Running,
            "done" => PartState::Done,
            "abandoned" => PartState::Abandoned,
            _ => PartState::Lost,
        }
    }
}

/// A part as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub id: String,
    pub job_id: String,
    pub host: String,
    pub site: String,
    pub rollback_to: Option<String>,
    pub wheel: Option<String>,
    pub epoch: u64,
    pub state: PartState,
    pub owner: Option<String>,
    pub lease_until: Option<u64>,
    pub cancel: bool,
    /// The host's result as JSON, once `done`.
    pub result: Option<String>,
}

/// The operations the gateway needs from its state database.  Every method is one
/// short blocking call; `start_job` and `finish_job` are atomic.
pub trait Store: Send + Sync {
    /// Whether several gateways may share this database (then a starting gateway frees
    /// nothing: expired leases are taken over instead).
    fn shared(&self) -> bool {
        false
    }
    /// Calls `wake(job)` whenever another gateway stored events of `job` (`""`: any).
    fn watch(&self, _wake: Box<dyn Fn(&str) + Send + Sync>) {}
    /// Marks the running jobs of `which` interrupted and frees their locks, but for build
    /// jobs whose CI build is still followed (they are adopted); their ids.
    fn interrupt_running(&self, which: Orphans) -> Result<Vec<String>>;
    /// Creates a running job held by `lease` and takes its (app, env) lock at once,
    /// unless it is held; the job's fencing epoch (greater than any before it).
    fn start_job(&self, job: &JobInfo, lease: &Lease) -> Result<Result<u64, LockHolder>>;
    /// Records a job's end with its final event and frees its lock, in one transaction;
    /// false (and nothing stored) if the job was no longer running (another gateway
    /// took its expired lease over and marked it interrupted).
    fn finish_job(&self, id: &str, end: &JobEnd) -> Result<bool>;
    /// The fencing epoch a job was started with (None before version 7 of the schema).
    fn job_epoch(&self, id: &str) -> Result<Option<u64>>;
    fn job(&self, id: &str) -> Result<Option<JobInfo>>;
    /// The newest jobs first, of the environments `scope` allows.
    fn jobs(&self, limit: u32, scope: &Scope) -> Result<Vec<JobInfo>>;

    /// Stores events (of any jobs) in one transaction; an event of a job that is no
    /// longer running is refused (unless it is a note), and so is a number already
    /// taken.  How many were refused.
    fn append_events(&self, events: &[NewEvent]) -> Result<u64>;
    fn last_seq(&self, job: &str) -> Result<u64>;
    /// Events with `seq > after`, in order: (seq, JSON).
    fn events_after(&self, job: &str, after: u64, limit: u32) -> Result<Vec<(u64, String)>>;

    fn add_ledger(&self, entry: &LedgerEntry) -> Result<()>;
    /// The newest entries first, of one application or all, in the environments of `scope`.
    fn ledger(&self, app: Option<&str>, limit: u32, scope: &Scope) -> Result<Vec<LedgerEntry>>;
    /// The last good deploy of an application to one host of an environment.
    fn live(&self, app: &str, env: &str, host: &str) -> Result<Option<LedgerEntry>>;

    /// Records where a host's live pointer now points (one row per app, env, host).
    fn set_live(&self, rows: &[LiveRow]) -> Result<()>;
    /// What a host serves, as last recorded by a `switched` event.
    fn live_row(&self, app: &str, env: &str, host: &str) -> Result<Option<LiveRow>>;
    /// Remembers a deploy job that succeeded (the history rollbacks choose from).
    fn add_deploy(&self, app: &str, env: &str, version: &str, job_id: &str) -> Result<()>;
    /// Versions of the deploys that succeeded on (app, env), newest first.
    fn deploy_history(&self, app: &str, env: &str, limit: u32) -> Result<Vec<String>>;

    fn create_token(&self, t: &NewToken) -> Result<()>;
    /// A read+write token without expiry (the shape before read scopes).
    fn add_token(
        &self,
        id: &str,
        hash: &str,
        user: &str,
        envs: &[String],
        admin: bool,
    ) -> Result<()> {
        self.create_token(&NewToken {
            id: id.into(),
            hash: hash.into(),
            user: user.into(),
            envs: envs.to_vec(),
            admin,
            ..NewToken::default()
        })
    }
    /// An active (not revoked) token by its hash, expired or not.
    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>>;
    /// Sets a token's last use.
    fn touch_token(&self, id: &str, at_ms: u64) -> Result<()>;
    fn tokens(&self) -> Result<Vec<TokenRow>>;
    /// False if there is no active token with this id.
    fn revoke_token(&self, id: &str) -> Result<bool>;

    /// Records a build the gateway ran (the ledger's commit -> build -> wheel link).
    fn add_build(&self, b: &BuildRecord) -> Result<()>;
    /// The newest recorded build of a commit of `app`.
    fn build_of_commit(&self, app: &str, commit: &str) -> Result<Option<BuildRecord>>;
    /// The newest recorded build that produced `version` of `app`.
    fn build_of_version(&self, app: &str, version: &str) -> Result<Option<BuildRecord>>;
    /// The newest builds of `app` first.
    fn builds(&self, app: &str, limit: u32) -> Result<Vec<BuildRecord>>;
    /// Records the file (and its SHA-256) a job installs.
    fn set_job_artifact(&self, job_id: &str, file: &str, sha256: &str) -> Result<()>;
    /// The file a job installed, with the build that made it where known.
    fn job_artifact(&self, job_id: &str) -> Result<Option<ArtifactRef>>;
    /// The file (name, SHA-256) last recorded for a version of `app` by any job.
    fn version_artifact(&self, app: &str, version: &str) -> Result<Option<(String, String)>>;
    /// Records (or updates) the CI build a build job follows.
    fn set_build_follow(&self, f: &BuildFollow) -> Result<()>;
    fn build_follow(&self, job_id: &str) -> Result<Option<BuildFollow>>;
    /// The build job's build ended (recorded, failed or cancelled): nobody adopts it.
    fn end_build_follow(&self, job_id: &str) -> Result<()>;
    /// The newest build of (app, commit) that no running job follows and that nobody
    /// saw end (its follower stopped): a new build of that commit adopts it.
    fn unfollowed_build(&self, app: &str, commit: &str) -> Result<Option<BuildFollow>>;
    /// Claims the running build jobs `from` says, with a build still followed, for
    /// `lease` (a new epoch each); each job is returned to one caller only.
    fn adopt_builds(&self, lease: &Lease, from: &Adopt) -> Result<Vec<(JobInfo, u64)>>;

    fn add_schedule(&self, s: &ScheduleRow) -> Result<()>;
    /// Schedules not removed: all, or the one with `id`.
    fn schedules(&self, id: Option<&str>) -> Result<Vec<ScheduleRow>>;
    /// Sets a schedule's next slot; false if there is no such schedule.
    fn set_schedule_next(&self, id: &str, next_ms: Option<u64>) -> Result<bool>;
    fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<bool>;
    fn remove_schedule(&self, id: &str, at_ms: u64) -> Result<bool>;
    /// Records a run for (schedule, slot) unless one exists: true if this call did
    /// (a slot runs at most once, whatever restarts happen).
    /// A `running` run is held by `lease` until it has started its job.
    fn claim_run(&self, id: &str, run: &ScheduleRun, lease: Option<&Lease>) -> Result<bool>;
    fn update_run(&self, id: &str, run: &ScheduleRun) -> Result<()>;
    /// The newest runs first.
    fn schedule_runs(&self, id: &str, limit: u32) -> Result<Vec<ScheduleRun>>;
    /// Marks every run still `running` failed with `reason` (a gateway that starts has
    /// none of its own yet): all of them, or those `owner` claimed; how many.
    fn interrupt_runs(&self, reason: &str, at_ms: u64, owner: Option<&str>) -> Result<usize>;
    /// Freezes `env` (replacing its freeze, if any).
    fn set_freeze(&self, f: &FreezeInfo) -> Result<()>;
    /// False if `env` was not frozen.
    fn lift_freeze(&self, env: &str) -> Result<bool>;
    /// Every freeze, expired ones too (the caller compares with its clock).
    fn freezes(&self) -> Result<Vec<FreezeInfo>>;

    /// Extends the leases `lease.owner` holds to `lease.until_ms`; the ids of the
    /// running jobs it still holds.
    fn renew_leases(&self, lease: &Lease) -> Result<Vec<String>>;
    /// Takes over what leases that ended before `now_ms` held: their jobs interrupted
    /// (locks freed), their schedule runs failed.  Each job is returned to exactly one
    /// caller, with the gateway that held it.
    fn expire_leases(&self, now_ms: u64) -> Result<Vec<(String, String)>>;
    /// Holds `owner` as this process's while it lives; false if a live process holds it
    /// (two gateways with one id on a shared database).
    fn hold_identity(&self, owner: &str) -> Result<bool>;
    /// Whether this process still holds `owner`, taking it again on a new session when
    /// the database lost the old one (a restart); false if another process holds it now.
    fn check_identity(&self, owner: &str) -> Result<bool>;
    /// The database's clock (ms since the epoch): leases are judged by it, never by the
    /// clocks of the gateways.
    fn clock_ms(&self) -> Result<u64>;
    /// Marks the running jobs of `owner` (a gateway's previous life) interrupted and
    /// frees their locks, but for build jobs whose CI build is still followed (they are
    /// adopted); their ids.
    fn interrupt_owned(&self, owner: &str) -> Result<Vec<String>>;
    /// Leaves a cancel for the process that runs job `id`; false if it is not running.
    fn request_cancel(&self, id: &str) -> Result<bool>;
    /// The running jobs and parts of `owner` that someone asked to cancel.
    fn cancel_requests(&self, owner: &str) -> Result<Vec<String>>;

    /// Queues a part of a job for the runners of its site.
    fn add_part(&self, part: &NewPart) -> Result<()>;
    /// Claims up to `limit` queued parts of `site` (of jobs still running) for
    /// `lease.owner`, each for one caller only.
    fn claim_parts(&self, site: &str, lease: &Lease, limit: u32) -> Result<Vec<Part>>;
    fn part(&self, id: &str) -> Result<Option<Part>>;
    /// Stores a part's events (numbered by the runner that runs it).
    fn add_part_events(&self, id: &str, events: &[(u64, String)]) -> Result<()>;
    fn part_events_after(&self, id: &str, after: u64) -> Result<Vec<(u64, String)>>;
    /// Moves a part from `from` to `to` (and stores its result); false if it was not in
    /// `from`, or (with `owner`) not that runner's.
    fn set_part_state(
        &self,
        id: &str,
        from: PartState,
        to: PartState,
        owner: Option<&str>,
        result: Option<&str>,
    ) -> Result<bool>;
    /// Asks the runner of a part to stop it (between steps).
    fn cancel_part(&self, id: &str) -> Result<()>;
    /// Marks the running parts of `owner` (a runner's previous life) lost; their ids.
    fn lose_parts_of(&self, owner: &str) -> Result<Vec<String>>;
    /// How many parts of job `job` a runner runs now.
    fn parts_running(&self, job: &str) -> Result<u64>;
    /// Asks the runners of `site` what the hosts of (`app`, `env`) there run.
    fn add_ask(&self, id: &str, site: &str, app: &str, env: &str) -> Result<()>;
    /// Claims up to `limit` queued asks of `site` for `owner`: (id, app, env) each.
    fn claim_asks(
        &self,
        site: &str,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<(String, String, String)>>;
    fn answer_ask(&self, id: &str, answer: &str) -> Result<()>;
    /// An ask's answer, once given.
    fn ask_answer(&self, id: &str) -> Result<Option<String>>;
    /// Forgets an ask (and any older than an hour).
    fn drop_ask(&self, id: &str) -> Result<()>;

    fn audit(&self, user: &str, action: &str, target: &str, outcome: &str) -> Result<()>;
    /// The newest entries first.
    fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>>;
    /// Removes finished jobs (and their events and notifications) and audit rows older
    /// than `before_ms`.  The ledger, the live rows and the deploy history are kept.
    fn prune(&self, before_ms: u64) -> Result<Pruned>;

    /// Writes notifications to the outbox, pending and due at their `due_ms`; a key
    /// already there is left as it is.  How many were new.
    fn add_deliveries(&self, rows: &[NewDelivery]) -> Result<u64>;
    /// Claims up to `limit` pending notifications of `routes` due at `now_ms` (none of a
    /// job another process runs): each counts an attempt and is held by `owner` until
    /// `until_ms`, after which it is due again unless its outcome was recorded.  A row is
    /// claimed by one caller at a time, however many gateways ask at once.
    fn claim_deliveries(
        &self,
        owner: &str,
        routes: &[String],
        now_ms: u64,
        until_ms: u64,
        limit: u32,
    ) -> Result<Vec<Delivery>>;
    /// Records how attempt `attempt` of a notification ended (and its payload, when the
    /// attempt completed it); false, and nothing changed, if the row is no longer
    /// pending with that attempt (a later claim took it: the claim had expired).
    fn record_delivery(
        &self,
        id: &str,
        attempt: u32,
        outcome: &Attempted,
        payload: Option<&str>,
    ) -> Result<bool>;
    /// A job's notifications, by when they were written, then by key.
    fn deliveries(&self, job_id: &str) -> Result<Vec<Delivery>>;

    /// Stores a dashboard session under the hash of its id, dropping expired ones (as of
    /// its `created_ms`) and, past `max` sessions, those that end first.
    fn create_session(&self, hash: &str, row: &SessionRow, max: u32) -> Result<()>;
    /// The session with this hash, unless it has expired at `now_ms`.
    fn session(&self, hash: &str, now_ms: u64) -> Result<Option<SessionRow>>;
    /// Ends a session (sign-out, or its token is no longer valid); false if there was none.
    fn end_session(&self, hash: &str) -> Result<bool>;
    /// Removes the sessions expired at `now_ms`; how many.
    fn prune_sessions(&self, now_ms: u64) -> Result<u64>;
}

/// A shared handle on the store: synchronous through `Deref`, async through `call`.
#[derive(Clone)]
pub struct Db(Arc<dyn Store>);

impl Db {
    /// Opens (creating and migrating) the state database: the one place that chooses
    /// a backend.
    pub fn open(at: &Location) -> Result<Db> {
        Ok(match at {
            Location::Sqlite(path) => Db(Arc::new(SqlStore::new(sqlite::Sqlite::open(path)?))),
            Location::Postgres { url, password } => {
                let pg = postgres::Postgres::open(url, password.as_ref().map(|p| p.expose()))?;
                Db(Arc::new(SqlStore::new(pg)))
            }
        })
    }

    /// A private database that lives as long as this process (for `apply` without the
    /// gateway's database: the same code path, nothing shared).
    pub fn in_memory() -> Result<Db> {
        Ok(Db(Arc::new(SqlStore::new(sqlite::Sqlite::in_memory()?))))
    }

    /// Runs `f` on a blocking thread, off the async runtime.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| match e.is_panic() {
                true => StoreError::Panicked,
                false => StoreError::Stopping,
            })?
    }
}

impl std::ops::Deref for Db {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        self.0.as_ref()
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
