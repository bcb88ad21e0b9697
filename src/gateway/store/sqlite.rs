//! The SQLite backend (rusqlite, bundled): one file, its schema and migrations by
//! `user_version`, and [`Conn`] over a connection.  The only file that names rusqlite.
//!
//! One connection behind a mutex is plenty for a bastion's load and keeps writes serial
//! (SQLite allows one writer anyway); WAL lets readers go on while it writes.  Only one
//! gateway uses a SQLite file (`lockfile.rs`), so `notify` is the default no-op.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;
use rusqlite::types::{ToSqlOutput, Value as Lite, ValueRef};

use super::sql::{Backend, Conn, Row, SqlError, SqlResult, Value};
use super::{Result, StoreError};

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
    // version 6: leases: a running job, and a schedule's run until it started its job,
    // belong to one gateway (`owner`) until `lease_until`, which that gateway renews;
    // a cancel asked of another process than the job's is left for it in the row.
    "ALTER TABLE jobs ADD COLUMN owner TEXT;
     ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
     ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE schedule_runs ADD COLUMN owner TEXT;
     ALTER TABLE schedule_runs ADD COLUMN lease_until INTEGER;
     CREATE INDEX jobs_state ON jobs (state);",
    // version 7: fencing epochs: one counter that only grows, and the epoch each job
    // was claimed with (its commands carry it to the hosts).
    "ALTER TABLE jobs ADD COLUMN epoch INTEGER;
     CREATE TABLE epochs (id INTEGER PRIMARY KEY, value INTEGER NOT NULL);
     INSERT INTO epochs (id, value) VALUES (1, 0);",
    // version 8: the CI builds jobs follow (so that any gateway follows one again after
    // a restart, and a build nobody followed to its end is adopted, not rebuilt).
    "CREATE TABLE build_follows (
        job_id TEXT PRIMARY KEY, app TEXT NOT NULL, commit_id TEXT NOT NULL,
        builder_id TEXT NOT NULL, number TEXT, url TEXT, console_offset INTEGER NOT NULL,
        queued_ms INTEGER NOT NULL, ended INTEGER NOT NULL DEFAULT 0);
     CREATE INDEX build_follows_commit ON build_follows (app, commit_id);",
    // version 9: the notification outbox (one row per notice and route, keyed by its
    // idempotency key) and dashboard sessions (under the hash of their id).
    "CREATE TABLE outbox (
        id TEXT PRIMARY KEY, job_id TEXT NOT NULL, notice TEXT NOT NULL, route TEXT NOT NULL,
        payload TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL,
        next_ms INTEGER NOT NULL, claimed_by TEXT, last_error TEXT,
        created_ms INTEGER NOT NULL, done_ms INTEGER);
     CREATE INDEX outbox_due ON outbox (state, next_ms);
     CREATE INDEX outbox_job ON outbox (job_id);
     CREATE TABLE sessions (
        hash TEXT PRIMARY KEY, token_id TEXT NOT NULL, expires_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL);
     CREATE INDEX sessions_expiry ON sessions (expires_ms);",
    // version 10: each ledger row's environment hash (the release's site-packages on
    // that host, read from it: engine `share.rs`).
    "ALTER TABLE ledger ADD COLUMN env_sha256 TEXT",
    // version 11: the parts of jobs handed to the runners of other sites (network
    // segments): one row per host (or a host's rollback), claimed under a lease, and
    // the events its runner wrote, which the job's process relays; and the questions
    // (`status --live`, a rollback's targets, a reconcile) a site's runner answers for
    // its hosts.
    "CREATE TABLE site_parts (
        id TEXT PRIMARY KEY, job_id TEXT NOT NULL, host TEXT NOT NULL, site TEXT NOT NULL,
        rollback_to TEXT, wheel TEXT, epoch INTEGER NOT NULL, state TEXT NOT NULL,
        owner TEXT, lease_until INTEGER, cancel INTEGER NOT NULL DEFAULT 0, result TEXT,
        created_ms INTEGER NOT NULL, ended_ms INTEGER);
     CREATE INDEX site_parts_queue ON site_parts (site, state);
     CREATE INDEX site_parts_job ON site_parts (job_id);
     CREATE TABLE site_events (
        part_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
        PRIMARY KEY (part_id, seq));
     CREATE TABLE site_asks (
        id TEXT PRIMARY KEY, site TEXT NOT NULL, app TEXT NOT NULL, env TEXT NOT NULL,
        state TEXT NOT NULL, owner TEXT, answer TEXT, created_ms INTEGER NOT NULL);
     CREATE INDEX site_asks_queue ON site_asks (site, state);",
];

pub struct Sqlite {
    conn: Mutex<Connection>,
}

impl Sqlite {
    /// Opens (creating and migrating) the state file.
    pub fn open(path: &Path) -> Result<Sqlite> {
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
        migrate(conn).map_err(|e| fail(&e))
    }

    /// A database in memory, gone with the process.
    pub fn in_memory() -> Result<Sqlite> {
        let fail = |e: rusqlite::Error| StoreError::Open {
            path: ":memory:".into(),
            message: e.to_string(),
        };
        migrate(Connection::open_in_memory().map_err(fail)?).map_err(fail)
    }
}

fn migrate(conn: Connection) -> rusqlite::Result<Sqlite> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, ddl) in SCHEMA.iter().enumerate().skip(version as usize) {
        conn.execute_batch(&format!(
            "BEGIN; {ddl}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(Sqlite {
        conn: Mutex::new(conn),
    })
}

impl Backend for Sqlite {
    fn run<T: Send>(
        &self,
        tx: bool,
        f: impl FnOnce(&mut dyn Conn) -> SqlResult<T> + Send,
    ) -> SqlResult<T> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if !tx {
            return f(&mut Lite3(&c));
        }
        // IMMEDIATE: a transaction that reads, then writes, waits for another writer
        // (`busy_timeout`) instead of failing on the upgrade (an `apply` run and the
        // gateway write one file).
        let t = c
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let out = f(&mut Lite3(&t));
        match out {
            Ok(v) => t.commit().map(|_| v).map_err(db),
            Err(e) => Err(e), // dropping `t` rolls back
        }
    }
}

fn db(e: rusqlite::Error) -> SqlError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(_, _, m) => SqlError::Corrupt(m.to_string()),
        e => SqlError::Db(e.to_string()),
    }
}

/// `$1` placeholders as SQLite's `?1`.
fn placeholders(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Owned(Lite::Null),
            Value::Int(v) => ToSqlOutput::Owned(Lite::Integer(*v)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// A connection (or a transaction, which derefs to one) as a [`Conn`].
struct Lite3<'a>(&'a Connection);

impl Conn for Lite3<'_> {
    fn exec(&mut self, sql: &str, params: &[Value]) -> SqlResult<u64> {
        let mut st = self.0.prepare_cached(&placeholders(sql)).map_err(db)?;
        st.execute(rusqlite::params_from_iter(params))
            .map(|n| n as u64)
            .map_err(db)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> SqlResult<Vec<Row>> {
        let mut st = self.0.prepare_cached(&placeholders(sql)).map_err(db)?;
        let n = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(params)).map_err(db)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db)? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i).map_err(db)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Real(v) => Value::Int(v as i64),
                    ValueRef::Blob(_) => {
                        return Err(SqlError::Corrupt(format!("column {i}: a blob")));
                    }
                });
            }
            out.push(Row(row));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_placeholders_become_question_marks_and_nothing_else_changes() {
        assert_eq!(
            placeholders("SELECT '$x', a FROM t WHERE b=$1 AND c=$12"),
            "SELECT '$x', a FROM t WHERE b=?1 AND c=?12"
        );
        assert!(matches!(placeholders("SELECT 1"), Cow::Borrowed(_)));
    }
}
