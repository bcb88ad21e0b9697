//! The gateway's state in one SQLite file: jobs and their ordered events, the release
//! ledger, locks, token hashes and the audit trail.  Created and migrated on open.
//!
//! Decision: rusqlite (bundled SQLite) behind this one type, called from async code via
//! `spawn_blocking`.  One connection behind a mutex is plenty for a bastion's load and
//! keeps writes serial (SQLite allows one writer anyway).  A PostgreSQL backend would be
//! a second implementation of the same methods.

use std::path::Path;
use std::sync::{Arc, Mutex};

use deploy_wire::api::{AuditEntry, JobInfo, LedgerEntry};
use rusqlite::{Connection, OptionalExtension, params};

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

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
];

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: String,
    pub user: String,
    pub envs: Vec<String>,
    pub admin: bool,
    pub created_ms: u64,
    pub revoked: bool,
}

pub type Result<T> = std::result::Result<T, rusqlite::Error>;

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobInfo> {
    Ok(JobInfo {
        id: r.get(0)?,
        kind: r.get(1)?,
        app: r.get(2)?,
        env: r.get(3)?,
        version: r.get(4)?,
        check: r.get::<_, i64>(5)? != 0,
        user: r.get(6)?,
        state: r.get(7)?,
        created_ms: r.get::<_, i64>(8)? as u64,
        finished_ms: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        error: r.get(10)?,
    })
}

fn ledger_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerEntry> {
    Ok(LedgerEntry {
        job_id: r.get(0)?,
        app: r.get(1)?,
        env: r.get(2)?,
        host: r.get(3)?,
        version: r.get(4)?,
        from_version: r.get(5)?,
        result: r.get(6)?,
        user: r.get(7)?,
        ts_ms: r.get::<_, i64>(8)? as u64,
    })
}

const JOB_COLS: &str =
    "id, kind, app, env, version, check_mode, user, state, created_ms, finished_ms, error";

impl Store {
    /// Opens (creating and migrating) the state file.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, ddl) in SCHEMA.iter().enumerate().skip(version as usize) {
            conn.execute_batch(&format!(
                "BEGIN; {ddl}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))?;
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c)
    }

    /// Runs `f` on a blocking thread (for async callers).
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let s = self.clone();
        tokio::task::spawn_blocking(move || f(&s))
            .await
            .expect("store task panicked")
    }

    // ---- start-up recovery ----

    /// Jobs that were running when the gateway stopped: marked interrupted, their locks
    /// freed.  Returns their ids.
    pub fn recover(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let tx = c.transaction()?;
            let ids: Vec<String> = {
                let mut st = tx.prepare("SELECT id FROM jobs WHERE state IN ('queued','running')")?;
                st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
            };
            tx.execute(
                "UPDATE jobs SET state='interrupted', finished_ms=?1, error='the gateway stopped while this job ran' WHERE state IN ('queued','running')",
                params![now_ms() as i64],
            )?;
            tx.execute("DELETE FROM locks", [])?;
            tx.commit()?;
            Ok(ids)
        })
    }

    // ---- jobs and locks ----

    /// Creates a running job and takes the (app, env) lock in one transaction.  Err(holder,
    /// job) if someone holds it.
    pub fn start_job(&self, job: &JobInfo) -> Result<std::result::Result<(), (String, String)>> {
        self.with(|c| {
            let tx = c.transaction()?;
            let held: Option<(String, String)> = tx
                .query_row("SELECT holder, job_id FROM locks WHERE app=?1 AND env=?2", params![job.app, job.env], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            if let Some(h) = held {
                return Ok(Err(h));
            }
            tx.execute(
                "INSERT INTO locks (app, env, job_id, holder, since_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![job.app, job.env, job.id, job.user, now_ms() as i64],
            )?;
            tx.execute(
                &format!("INSERT INTO jobs ({JOB_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, NULL)"),
                params![job.id, job.kind, job.app, job.env, job.version, job.check as i64, job.user, job.state, job.created_ms as i64],
            )?;
            tx.commit()?;
            Ok(Ok(()))
        })
    }

    /// Marks a job finished and frees its lock.
    pub fn finish_job(&self, id: &str, state: &str, error: Option<&str>) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE jobs SET state=?2, finished_ms=?3, error=?4 WHERE id=?1",
                params![id, state, now_ms() as i64, error],
            )?;
            tx.execute("DELETE FROM locks WHERE job_id=?1", params![id])?;
            tx.commit()
        })
    }

    pub fn job(&self, id: &str) -> Result<Option<JobInfo>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE id=?1"),
                params![id],
                job_from_row,
            )
            .optional()
        })
    }

    pub fn jobs(&self, limit: u32) -> Result<Vec<JobInfo>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {JOB_COLS} FROM jobs ORDER BY created_ms DESC, id DESC LIMIT ?1"
            ))?;
            st.query_map(params![limit], job_from_row)?.collect()
        })
    }

    // ---- events ----

    pub fn append_event(&self, job: &str, seq: u64, ts_ms: u64, data: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO events (job_id, seq, ts_ms, data) VALUES (?1, ?2, ?3, ?4)",
                params![job, seq as i64, ts_ms as i64, data],
            )
            .map(|_| ())
        })
    }

    pub fn last_seq(&self, job: &str) -> Result<u64> {
        self.with(|c| {
            c.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE job_id=?1",
                params![job],
                |r| r.get::<_, i64>(0),
            )
            .map(|v| v as u64)
        })
    }

    /// Events with `seq > after`, in order: (seq, json).
    pub fn events_after(&self, job: &str, after: u64, limit: u32) -> Result<Vec<(u64, String)>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT seq, data FROM events WHERE job_id=?1 AND seq>?2 ORDER BY seq LIMIT ?3",
            )?;
            st.query_map(params![job, after as i64, limit], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
            })?
            .collect()
        })
    }

    // ---- ledger ----

    pub fn add_ledger(&self, e: &LedgerEntry) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO ledger (job_id, app, env, host, version, from_version, result, user, ts_ms) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                params![e.job_id, e.app, e.env, e.host, e.version, e.from_version, e.result, e.user, e.ts_ms as i64],
            )
            .map(|_| ())
        })
    }

    pub fn ledger(&self, app: Option<&str>, limit: u32) -> Result<Vec<LedgerEntry>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT job_id, app, env, host, version, from_version, result, user, ts_ms FROM ledger
                 WHERE (?1 IS NULL OR app=?1) ORDER BY id DESC LIMIT ?2",
            )?;
            st.query_map(params![app, limit], ledger_from_row)?.collect()
        })
    }

    /// The last successful deploy of an application to one host of an environment.
    pub fn live(&self, app: &str, env: &str, host: &str) -> Result<Option<LedgerEntry>> {
        self.with(|c| {
            c.query_row(
                "SELECT job_id, app, env, host, version, from_version, result, user, ts_ms FROM ledger
                 WHERE app=?1 AND env=?2 AND host=?3 AND result IN ('changed', 'ok') ORDER BY id DESC LIMIT 1",
                params![app, env, host],
                ledger_from_row,
            )
            .optional()
        })
    }

    // ---- tokens ----

    pub fn add_token(
        &self,
        id: &str,
        hash: &str,
        user: &str,
        envs: &[String],
        admin: bool,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO tokens (id, hash, user, envs, admin, created_ms) VALUES (?1,?2,?3,?4,?5,?6)",
                params![id, hash, user, envs.join(","), admin as i64, now_ms() as i64],
            )
            .map(|_| ())
        })
    }

    fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
        let envs: String = r.get(2)?;
        Ok(TokenRow {
            id: r.get(0)?,
            user: r.get(1)?,
            envs: envs
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            admin: r.get::<_, i64>(3)? != 0,
            created_ms: r.get::<_, i64>(4)? as u64,
            revoked: r.get::<_, Option<i64>>(5)?.is_some(),
        })
    }

    pub fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>> {
        self.with(|c| {
            c.query_row(
                "SELECT id, user, envs, admin, created_ms, revoked_ms FROM tokens WHERE hash=?1 AND revoked_ms IS NULL",
                params![hash],
                Self::token_from_row,
            )
            .optional()
        })
    }

    pub fn tokens(&self) -> Result<Vec<TokenRow>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT id, user, envs, admin, created_ms, revoked_ms FROM tokens ORDER BY created_ms")?;
            st.query_map([], Self::token_from_row)?.collect()
        })
    }

    pub fn revoke_token(&self, id: &str) -> Result<bool> {
        self.with(|c| {
            c.execute(
                "UPDATE tokens SET revoked_ms=?2 WHERE id=?1 AND revoked_ms IS NULL",
                params![id, now_ms() as i64],
            )
            .map(|n| n > 0)
        })
    }

    // ---- audit ----

    pub fn audit(&self, user: &str, action: &str, target: &str, outcome: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO audit (ts_ms, user, action, target, outcome) VALUES (?1,?2,?3,?4,?5)",
                params![now_ms() as i64, user, action, target, outcome],
            )
            .map(|_| ())
        })
    }

    pub fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        self.with(|c| {
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
mod tests {
    use super::*;

    fn job(id: &str) -> JobInfo {
        JobInfo {
            id: id.into(),
            kind: "deploy".into(),
            app: "hello".into(),
            env: "staging".into(),
            version: "1.0.0".into(),
            check: false,
            user: "ann".into(),
            state: "running".into(),
            created_ms: now_ms(),
            finished_ms: None,
            error: None,
        }
    }

    #[test]
    fn one_job_per_app_and_env_and_recovery_frees_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let s = Store::open(&path).unwrap();
        assert_eq!(s.start_job(&job("j1")).unwrap(), Ok(()));
        assert_eq!(
            s.start_job(&job("j2")).unwrap(),
            Err(("ann".to_string(), "j1".to_string()))
        );
        drop(s);
        // A restart: the running job is interrupted and the lock is free.
        let s = Store::open(&path).unwrap();
        assert_eq!(s.recover().unwrap(), ["j1"]);
        assert_eq!(s.job("j1").unwrap().unwrap().state, "interrupted");
        assert_eq!(s.start_job(&job("j3")).unwrap(), Ok(()));
        s.finish_job("j3", "succeeded", None).unwrap();
        assert_eq!(s.start_job(&job("j4")).unwrap(), Ok(()));
    }

    #[test]
    fn events_come_back_in_order_after_a_sequence_number() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        for i in 1..=5 {
            s.append_event("j", i, 0, &format!("e{i}")).unwrap();
        }
        let got: Vec<u64> = s
            .events_after("j", 2, 100)
            .unwrap()
            .into_iter()
            .map(|(q, _)| q)
            .collect();
        assert_eq!(got, [3, 4, 5]);
        assert_eq!(s.last_seq("j").unwrap(), 5);
    }
}
