//! The state database as one SQLite file (rusqlite, bundled): the schema, its
//! migrations by `user_version`, and every query.  The only file that names rusqlite.
//!
//! One connection behind a mutex is plenty for a bastion's load and keeps writes serial
//! (SQLite allows one writer anyway); WAL lets readers go on while it writes.

use std::path::Path;
use std::sync::Mutex;

use deploy_wire::api::{AuditEntry, JobInfo, JobState, LedgerEntry};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::sqlite_access as access;
use super::sqlite_pipeline as pipeline;
use super::sqlite_schedules as schedules;
use super::{
    APPLY_USER_PREFIX, LiveRow, LockHolder, NewEvent, NewToken, Orphans, Pruned, Result, Scope,
    Store, StoreError, TokenRow, now_ms,
};
use deploy_wire::pipeline::{ArtifactRef, BuildRecord};
use deploy_wire::schedule::{FreezeInfo, ScheduleRun};

const SCHEMA: &[&str] = &[
    // version 1
    "CREATE TABLE jobs (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, app TEXT NOT NULL, env TEXT NOT NULL,
        version TEXT NOT NULL, check_mode INTEGER NOT NULL, user TEXT NOT NULL,
        state TEXT NOT NULL, created_ms INTEGER NOT NULL, finished_ms INTEGER, error TEXT);
     CREATE TABLE events (
        job_id TEXT NOT NULL, seq INTEGER NOT NULL, ts_ms INTEGER NOT NULL, data TEXT NOT NULL,
        PRIMARY KEY (job_id, seq));
     CREATE TABLE locks (
        app TEXT NOT NULL, env TEXT NOT NULL, job_id TEXT NOT NULL, holder TEXT NOT NULL,
        since_ms INTEGER NOT NULL, PRIMARY KEY (app, env));
     CREATE TABLE tokens (
        id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, user TEXT NOT NULL, envs TEXT NOT NULL,
        admin INTEGER NOT NULL, created_ms INTEGER NOT NULL, revoked_ms INTEGER);
     CREATE TABLE ledger (
        id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, app TEXT NOT NULL,
        env TEXT NOT NULL, host TEXT NOT NULL, version TEXT NOT NULL, from_version TEXT,
        result TEXT NOT NULL, user TEXT NOT NULL, ts_ms INTEGER NOT NULL);
     CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, user TEXT NOT NULL,
        action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL);",
    // version 2: read scopes and expiry on tokens; the live record (written on each
    // `switched` event); the history of deploys that succeeded (rollback targets);
    // indexes for retention and scoped lists.
    "ALTER TABLE tokens ADD COLUMN read_envs TEXT NOT NULL DEFAULT '';
     ALTER TABLE tokens ADD COLUMN expires_ms INTEGER;
     ALTER TABLE tokens ADD COLUMN last_used_ms INTEGER;
     CREATE TABLE live (
        app TEXT NOT NULL, env TEXT NOT NULL, host TEXT NOT NULL, version TEXT NOT NULL,
        slot TEXT NOT NULL, job_id TEXT NOT NULL, user TEXT NOT NULL, ts_ms INTEGER NOT NULL,
        PRIMARY KEY (app, env, host));
     CREATE TABLE deploys (
        id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, env TEXT NOT NULL,
        version TEXT NOT NULL, job_id TEXT NOT NULL, ts_ms INTEGER NOT NULL);
     INSERT INTO deploys (app, env, version, job_id, ts_ms)
        SELECT app, env, version, id, COALESCE(finished_ms, created_ms) FROM jobs
        WHERE kind = 'deploy' AND state = 'succeeded' ORDER BY created_ms;
     CREATE INDEX deploys_target ON deploys (app, env, id);
     CREATE INDEX jobs_finished ON jobs (finished_ms);
     CREATE INDEX audit_ts ON audit (ts_ms);",
    // version 3: the `run` right of tokens (`deploy run`), separate from their scopes.
    "ALTER TABLE tokens ADD COLUMN run INTEGER NOT NULL DEFAULT 0;",
    // version 4: the pipeline's ledger: builds (commit -> CI build -> wheel) and the
    // file each job installed (by SHA-256, as the index gave it).
    "CREATE TABLE builds (
        id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, commit_id TEXT NOT NULL,
        number TEXT NOT NULL, url TEXT NOT NULL, version TEXT NOT NULL, file TEXT NOT NULL,
        sha256 TEXT NOT NULL, job_id TEXT NOT NULL, ts_ms INTEGER NOT NULL);
     CREATE INDEX builds_commit ON builds (app, commit_id);
     CREATE INDEX builds_version ON builds (app, version);
     CREATE TABLE job_artifacts (
        job_id TEXT PRIMARY KEY, file TEXT NOT NULL, sha256 TEXT NOT NULL);",
    // version 5: schedules (and their runs, one per slot of time), freezes, and what
    // started a job.
    "ALTER TABLE jobs ADD COLUMN triggered_by TEXT;
     CREATE TABLE schedules (
        id TEXT PRIMARY KEY, app TEXT NOT NULL, env TEXT NOT NULL, what TEXT NOT NULL,
        at_ms INTEGER, cron TEXT, tz TEXT NOT NULL, lock_wait_secs INTEGER NOT NULL,
        grace_secs INTEGER NOT NULL, user TEXT NOT NULL, token_id TEXT NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL, next_ms INTEGER,
        removed_ms INTEGER);
     CREATE TABLE schedule_runs (
        schedule_id TEXT NOT NULL, slot_ms INTEGER NOT NULL, state TEXT NOT NULL,
        job_id TEXT, reason TEXT NOT NULL, ts_ms INTEGER NOT NULL,
        PRIMARY KEY (schedule_id, slot_ms));
     CREATE TABLE freezes (
        env TEXT PRIMARY KEY, until_ms INTEGER NOT NULL, reason TEXT NOT NULL,
        user TEXT NOT NULL, created_ms INTEGER NOT NULL);",
];

const JOB_COLS: &str = "id, kind, app, env, version, check_mode, user, state, created_ms, finished_ms, error, triggered_by";
const LEDGER_COLS: &str = "job_id, app, env, host, version, from_version, result, user, ts_ms";
pub(super) const TOKEN_COLS: &str =
    "id, user, envs, admin, created_ms, revoked_ms, read_envs, expires_ms, last_used_ms, run";

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

/// A word column (job state, kind, ledger result) read back into its enum.
fn word<T: std::str::FromStr<Err = String>>(r: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    text.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<JobInfo> {
    Ok(JobInfo {
        id: r.get(0)?,
        kind: word(r, 1)?,
        app: r.get(2)?,
        env: r.get(3)?,
        version: r.get(4)?,
        check: r.get::<_, i64>(5)? != 0,
        user: r.get(6)?,
        state: word(r, 7)?,
        created_ms: r.get::<_, i64>(8)? as u64,
        finished_ms: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        error: r.get(10)?,
        triggered_by: r.get(11)?,
    })
}

fn ledger_from_row(r: &Row<'_>) -> rusqlite::Result<LedgerEntry> {
    Ok(LedgerEntry {
        job_id: r.get(0)?,
        app: r.get(1)?,
        env: r.get(2)?,
        host: r.get(3)?,
        version: r.get(4)?,
        from_version: r.get(5)?,
        result: word(r, 6)?,
        user: r.get(7)?,
        ts_ms: r.get::<_, i64>(8)? as u64,
        artifact: None,
    })
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

pub(super) fn token_from_row(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        user: r.get(1)?,
        envs: list(&r.get::<_, String>(2)?),
        admin: r.get::<_, i64>(3)? != 0,
        created_ms: r.get::<_, i64>(4)? as u64,
        revoked: r.get::<_, Option<i64>>(5)?.is_some(),
        read_envs: list(&r.get::<_, String>(6)?),
        expires_ms: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
        last_used_ms: r.get::<_, Option<i64>>(8)?.map(|v| v as u64),
        run: r.get::<_, i64>(9)? != 0,
    })
}

/// A scope as one SQL parameter: NULL for all, else a JSON array of environments
/// (matched with `json_each`).
fn scope_param(scope: &Scope) -> Option<String> {
    match scope {
        Scope::All => None,
        Scope::Envs(e) => Some(serde_json::to_string(e).expect("strings serialize")),
    }
}

const IN_SCOPE: &str = "(?2 IS NULL OR env IN (SELECT value FROM json_each(?2)))";

/// The SQL condition selecting the running jobs of `which`.
fn orphans_sql(which: Orphans) -> String {
    let apply = format!(
        "substr(user, 1, {}) = '{APPLY_USER_PREFIX}'",
        APPLY_USER_PREFIX.len()
    );
    match which {
        Orphans::All => "state = 'running'".into(),
        Orphans::Gateway => format!("state = 'running' AND NOT {apply}"),
        Orphans::Apply => format!("state = 'running' AND {apply}"),
    }
}

impl SqliteStore {
    /// Opens (creating and migrating) the state file.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let fail = |e: &dyn std::fmt::Display| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        }
        let conn = Connection::open(path).map_err(|e| fail(&e))?;
        let setup = || -> rusqlite::Result<()> {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "busy_timeout", 5000)?;
            conn.pragma_update(None, "synchronous", "NORMAL")
        };
        setup().map_err(|e| fail(&e))?;
        Self::migrate(conn).map_err(|e| fail(&e))
    }

    /// A database in memory, gone with the process.
    pub fn in_memory() -> Result<SqliteStore> {
        let conn = Connection::open_in_memory().map_err(|e| StoreError::Open {
            path: ":memory:".into(),
            message: e.to_string(),
        })?;
        Self::migrate(conn).map_err(|e| StoreError::Open {
            path: ":memory:".into(),
            message: e.to_string(),
        })
    }

    fn migrate(conn: Connection) -> rusqlite::Result<SqliteStore> {
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, ddl) in SCHEMA.iter().enumerate().skip(version as usize) {
            conn.execute_batch(&format!(
                "BEGIN; {ddl}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))?;
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    /// Runs `f` on the connection; `doing` names the operation in errors.
    pub(super) fn with<T>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c).map_err(|e| match e {
            rusqlite::Error::FromSqlConversionFailure(_, _, m) => StoreError::Corrupt {
                doing,
                message: m.to_string(),
            },
            e => StoreError::Query {
                doing,
                message: e.to_string(),
            },
        })
    }
}

impl Store for SqliteStore {
    fn interrupt_running(&self, which: Orphans) -> Result<Vec<String>> {
        let cond = orphans_sql(which);
        self.with("interrupting the jobs of a stopped runner", |c| {
            let tx = c.transaction()?;
            let ids: Vec<String> = {
                let mut st = tx.prepare(&format!("SELECT id FROM jobs WHERE {cond}"))?;
                st.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            for id in &ids {
                tx.execute(
                    "UPDATE jobs SET state='interrupted', finished_ms=?2, error='the gateway stopped while this job ran' WHERE id=?1",
                    params![id, now_ms() as i64],
                )?;
                tx.execute("DELETE FROM locks WHERE job_id=?1", params![id])?;
            }
            tx.commit()?;
            Ok(ids)
        })
    }

    fn start_job(&self, job: &JobInfo) -> Result<Result<(), LockHolder>> {
        self.with("starting a job", |c| {
            let tx = c.transaction()?;
            let held = tx
                .query_row(
                    "SELECT holder, job_id FROM locks WHERE app=?1 AND env=?2",
                    params![job.app, job.env],
                    |r| {
                        Ok(LockHolder {
                            holder: r.get(0)?,
                            job_id: r.get(1)?,
                        })
                    },
                )
                .optional()?;
            if let Some(h) = held {
                return Ok(Err(h));
            }
            tx.execute(
                "INSERT INTO locks (app, env, job_id, holder, since_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![job.app, job.env, job.id, job.user, now_ms() as i64],
            )?;
            tx.execute(
                &format!("INSERT INTO jobs ({JOB_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, NULL, ?10)"),
                params![job.id, job.kind.as_str(), job.app, job.env, job.version, job.check as i64, job.user, job.state.as_str(), job.created_ms as i64, job.triggered_by],
            )?;
            tx.commit()?;
            Ok(Ok(()))
        })
    }

    fn finish_job(&self, id: &str, state: JobState, error: Option<&str>) -> Result<()> {
        self.with("finishing a job", |c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE jobs SET state=?2, finished_ms=?3, error=?4 WHERE id=?1",
                params![id, state.as_str(), now_ms() as i64, error],
            )?;
            tx.execute("DELETE FROM locks WHERE job_id=?1", params![id])?;
            tx.commit()
        })
    }

    fn job(&self, id: &str) -> Result<Option<JobInfo>> {
        self.with("reading a job", |c| {
            c.query_row(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE id=?1"),
                params![id],
                job_from_row,
            )
            .optional()
        })
    }

    fn jobs(&self, limit: u32, scope: &Scope) -> Result<Vec<JobInfo>> {
        let scope = scope_param(scope);
        self.with("listing jobs", |c| {
            let mut st = c.prepare(&format!(
                "SELECT {JOB_COLS} FROM jobs WHERE {IN_SCOPE} ORDER BY created_ms DESC, id DESC LIMIT ?1"
            ))?;
            st.query_map(params![limit, scope], job_from_row)?.collect()
        })
    }

    fn append_events(&self, events: &[NewEvent]) -> Result<()> {
        self.with("storing events", |c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO events (job_id, seq, ts_ms, data) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for e in events {
                    st.execute(params![e.job, e.seq as i64, e.ts_ms as i64, e.data])?;
                }
            }
            tx.commit()
        })
    }

    fn last_seq(&self, job: &str) -> Result<u64> {
        self.with("reading the last event number", |c| {
            c.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE job_id=?1",
                params![job],
                |r| r.get::<_, i64>(0),
            )
            .map(|v| v as u64)
        })
    }

    fn events_after(&self, job: &str, after: u64, limit: u32) -> Result<Vec<(u64, String)>> {
        self.with("reading events", |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, data FROM events WHERE job_id=?1 AND seq>?2 ORDER BY seq LIMIT ?3",
            )?;
            st.query_map(params![job, after as i64, limit], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
            })?
            .collect()
        })
    }

    fn add_ledger(&self, e: &LedgerEntry) -> Result<()> {
        self.with("adding a ledger entry", |c| {
            c.execute(
                &format!("INSERT INTO ledger ({LEDGER_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)"),
                params![
                    e.job_id,
                    e.app,
                    e.env,
                    e.host,
                    e.version,
                    e.from_version,
                    e.result.as_str(),
                    e.user,
                    e.ts_ms as i64
                ],
            )
            .map(|_| ())
        })
    }

    fn ledger(&self, app: Option<&str>, limit: u32, scope: &Scope) -> Result<Vec<LedgerEntry>> {
        let scope = scope_param(scope);
        self.with("reading the ledger", |c| {
            let mut st = c.prepare(&format!(
                "SELECT {LEDGER_COLS} FROM ledger WHERE (?1 IS NULL OR app=?1) AND {IN_SCOPE} ORDER BY id DESC LIMIT ?3"
            ))?;
            st.query_map(params![app, scope, limit], ledger_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .and_then(|rows| {
            // Each row with the file its job installed (few rows: one query each).
            rows.into_iter()
                .map(|mut e| {
                    e.artifact = pipeline::job_artifact(self, &e.job_id)?;
                    Ok(e)
                })
                .collect()
        })
    }

    fn live(&self, app: &str, env: &str, host: &str) -> Result<Option<LedgerEntry>> {
        self.with("reading the live release", |c| {
            c.query_row(
                &format!("SELECT {LEDGER_COLS} FROM ledger WHERE app=?1 AND env=?2 AND host=?3 AND result IN ('changed', 'ok') ORDER BY id DESC LIMIT 1"),
                params![app, env, host],
                ledger_from_row,
            )
            .optional()
        })
    }

    fn set_live(&self, rows: &[LiveRow]) -> Result<()> {
        access::set_live(self, rows)
    }

    fn live_row(&self, app: &str, env: &str, host: &str) -> Result<Option<LiveRow>> {
        access::live_row(self, app, env, host)
    }

    fn add_deploy(&self, app: &str, env: &str, version: &str, job_id: &str) -> Result<()> {
        access::add_deploy(self, app, env, version, job_id)
    }

    fn deploy_history(&self, app: &str, env: &str, limit: u32) -> Result<Vec<String>> {
        access::deploy_history(self, app, env, limit)
    }

    fn create_token(&self, t: &NewToken) -> Result<()> {
        access::create_token(self, t)
    }

    fn touch_token(&self, id: &str, at_ms: u64) -> Result<()> {
        access::touch_token(self, id, at_ms)
    }

    fn prune(&self, before_ms: u64) -> Result<Pruned> {
        access::prune(self, before_ms)
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>> {
        access::token_by_hash(self, hash)
    }

    fn tokens(&self) -> Result<Vec<TokenRow>> {
        self.with("listing tokens", |c| {
            let mut st = c.prepare(&format!(
                "SELECT {TOKEN_COLS} FROM tokens ORDER BY created_ms"
            ))?;
            st.query_map([], token_from_row)?.collect()
        })
    }

    fn revoke_token(&self, id: &str) -> Result<bool> {
        self.with("revoking a token", |c| {
            c.execute(
                "UPDATE tokens SET revoked_ms=?2 WHERE id=?1 AND revoked_ms IS NULL",
                params![id, now_ms() as i64],
            )
            .map(|n| n > 0)
        })
    }

    fn add_build(&self, b: &BuildRecord) -> Result<()> {
        pipeline::add_build(self, b)
    }

    fn build_of_commit(&self, app: &str, commit: &str) -> Result<Option<BuildRecord>> {
        pipeline::build_by(self, app, "commit_id", commit)
    }

    fn build_of_version(&self, app: &str, version: &str) -> Result<Option<BuildRecord>> {
        pipeline::build_by(self, app, "version", version)
    }

    fn builds(&self, app: &str, limit: u32) -> Result<Vec<BuildRecord>> {
        pipeline::builds(self, app, limit)
    }

    fn set_job_artifact(&self, job_id: &str, file: &str, sha256: &str) -> Result<()> {
        pipeline::set_job_artifact(self, job_id, file, sha256)
    }

    fn job_artifact(&self, job_id: &str) -> Result<Option<ArtifactRef>> {
        pipeline::job_artifact(self, job_id)
    }

    fn version_artifact(&self, app: &str, version: &str) -> Result<Option<(String, String)>> {
        pipeline::version_artifact(self, app, version)
    }

    fn add_schedule(&self, s: &super::ScheduleRow) -> Result<()> {
        schedules::add(self, s)
    }

    fn schedules(&self, id: Option<&str>) -> Result<Vec<super::ScheduleRow>> {
        schedules::list(self, id)
    }

    fn set_schedule_next(&self, id: &str, next_ms: Option<u64>) -> Result<bool> {
        schedules::set(self, id, "next_ms", next_ms.map(|v| v as i64))
    }

    fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<bool> {
        schedules::set(self, id, "paused", Some(paused as i64))
    }

    fn remove_schedule(&self, id: &str, at_ms: u64) -> Result<bool> {
        schedules::set(self, id, "removed_ms", Some(at_ms as i64))
    }

    fn claim_run(&self, id: &str, run: &ScheduleRun) -> Result<bool> {
        schedules::claim(self, id, run)
    }

    fn update_run(&self, id: &str, run: &ScheduleRun) -> Result<()> {
        schedules::update_run(self, id, run)
    }

    fn schedule_runs(&self, id: &str, limit: u32) -> Result<Vec<ScheduleRun>> {
        schedules::runs(self, id, limit)
    }

    fn interrupt_runs(&self, reason: &str, at_ms: u64) -> Result<usize> {
        schedules::interrupt_runs(self, reason, at_ms)
    }

    fn set_freeze(&self, f: &FreezeInfo) -> Result<()> {
        schedules::set_freeze(self, f)
    }

    fn lift_freeze(&self, env: &str) -> Result<bool> {
        schedules::lift_freeze(self, env)
    }

    fn freezes(&self) -> Result<Vec<FreezeInfo>> {
        schedules::freezes(self)
    }

    fn audit(&self, user: &str, action: &str, target: &str, outcome: &str) -> Result<()> {
        self.with("writing the audit trail", |c| {
            c.execute(
                "INSERT INTO audit (ts_ms, user, action, target, outcome) VALUES (?1,?2,?3,?4,?5)",
                params![now_ms() as i64, user, action, target, outcome],
            )
            .map(|_| ())
        })
    }

    fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        self.with("reading the audit trail", |c| {
            let mut st = c.prepare(
                "SELECT ts_ms, user, action, target, outcome FROM audit ORDER BY id DESC LIMIT ?1",
            )?;
            st.query_map(params![limit], |r| {
                Ok(AuditEntry {
                    ts_ms: r.get::<_, i64>(0)? as u64,
                    user: r.get(1)?,
                    action: r.get(2)?,
                    target: r.get(3)?,
                    outcome: r.get(4)?,
                })
            })?
            .collect()
        })
    }
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
