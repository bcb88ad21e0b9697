//! The gateway's state behind one trait: jobs and their ordered events, the release
//! ledger, (application, environment) locks, token hashes and the audit trail.
//!
//! Decision: the trait is synchronous and async code reaches it through [`Db::call`],
//! which runs the closure on a blocking thread.  A backend is one more file beside
//! `sqlite.rs` (a PostgreSQL one would use the blocking `postgres` client, or a pool)
//! plus one arm in [`Db::open`]; nothing outside this folder names a database crate.

mod sqlite;

use std::path::Path;
use std::sync::Arc;

use deploy_wire::api::{AuditEntry, JobInfo, JobState, LedgerEntry};

pub use sqlite::SqliteStore;

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
    #[error("state database: a store task panicked")]
    Panicked,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A token as stored (never the token itself: its hash is the key).
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: String,
    pub user: String,
    pub envs: Vec<String>,
    pub admin: bool,
    pub created_ms: u64,
    pub revoked: bool,
}

/// Who holds an (application, environment) lock, and with which job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub holder: String,
    pub job_id: String,
}

/// One event to store: its job, sequence number (from 1, per job), time and JSON.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub job: String,
    pub seq: u64,
    pub ts_ms: u64,
    pub data: String,
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

/// The user of a job started by `deploy-gateway apply` begins with this.
pub const APPLY_USER_PREFIX: &str = "apply:";

/// The operations the gateway needs from its state database.  Every method is one
/// short blocking call; `start_job` and `finish_job` are atomic.
pub trait Store: Send + Sync {
    /// Marks the running jobs of `which` interrupted and frees their locks; their ids.
    fn interrupt_running(&self, which: Orphans) -> Result<Vec<String>>;
    /// Creates a running job and takes its (app, env) lock at once, unless it is held.
    fn start_job(&self, job: &JobInfo) -> Result<Result<(), LockHolder>>;
    /// Records a job's end and frees its lock.
    fn finish_job(&self, id: &str, state: JobState, error: Option<&str>) -> Result<()>;
    fn job(&self, id: &str) -> Result<Option<JobInfo>>;
    /// The newest jobs first.
    fn jobs(&self, limit: u32) -> Result<Vec<JobInfo>>;

    /// Stores events (of any jobs) in one transaction.
    fn append_events(&self, events: &[NewEvent]) -> Result<()>;
    fn last_seq(&self, job: &str) -> Result<u64>;
    /// Events with `seq > after`, in order: (seq, JSON).
    fn events_after(&self, job: &str, after: u64, limit: u32) -> Result<Vec<(u64, String)>>;

    fn add_ledger(&self, entry: &LedgerEntry) -> Result<()>;
    /// The newest entries first, of one application or all.
    fn ledger(&self, app: Option<&str>, limit: u32) -> Result<Vec<LedgerEntry>>;
    /// The last good deploy of an application to one host of an environment.
    fn live(&self, app: &str, env: &str, host: &str) -> Result<Option<LedgerEntry>>;

    fn add_token(
        &self,
        id: &str,
        hash: &str,
        user: &str,
        envs: &[String],
        admin: bool,
    ) -> Result<()>;
    /// An active (not revoked) token by its hash.
    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>>;
    fn tokens(&self) -> Result<Vec<TokenRow>>;
    /// False if there is no active token with this id.
    fn revoke_token(&self, id: &str) -> Result<bool>;

    fn audit(&self, user: &str, action: &str, target: &str, outcome: &str) -> Result<()>;
    /// The newest entries first.
    fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>>;
}

/// A shared handle on the store: synchronous through `Deref`, async through `call`.
#[derive(Clone)]
pub struct Db(Arc<dyn Store>);

impl Db {
    /// Opens (creating and migrating) the state database at `path`: the one place that
    /// chooses a backend.
    pub fn open(path: &Path) -> Result<Db> {
        Ok(Db(Arc::new(SqliteStore::open(path)?)))
    }

    /// A private database that lives as long as this process (for `apply` without the
    /// gateway's database: the same code path, nothing shared).
    pub fn in_memory() -> Result<Db> {
        Ok(Db(Arc::new(SqliteStore::in_memory()?)))
    }

    /// Runs `f` on a blocking thread, off the async runtime.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|_| StoreError::Panicked)?
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
