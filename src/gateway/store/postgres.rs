//! The PostgreSQL backend (the synchronous `postgres` client): a small pool of
//! connections, the schema and its migrations (the same steps as SQLite's, in
//! PostgreSQL's types), [`Conn`] over a connection, and `LISTEN`/`NOTIFY` so that a
//! follower on one gateway wakes when another gateway stores its job's events.  The
//! only file that names the `postgres` crate.
//!
//! Decisions: the client runs its own small runtime per connection, which may not be
//! started on a thread that drives async tasks; so work called from such a thread runs
//! on a scoped thread of its own (a few microseconds beside a round trip).  No TLS: the
//! gateways reach their database over a private network or loopback (ARCHITECTURE.md).
//! A password in the URL is refused: it comes from `database_password_env`/`_file`.
//! A database that cannot be reached, or a connection that broke, is
//! [`SqlError::Unavailable`] (the API's 503 `store_unavailable`), never a refusal; a
//! pooled connection that a restart broke is replaced and its first round trip tried
//! once more (`run_here`), so a database restart costs no request after it.

use std::collections::HashMap;
use std::error::Error;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, Config, GenericClient, NoTls, Statement};

use super::sql::{Backend, Conn, Row, SqlError, SqlResult, Value};
use super::{Result, StoreError};

/// The channel followers are woken on; the payload is a job id.
const CHANNEL: &str = "deploy_events";
/// Connections per gateway (the writer, followers, the API and the scheduler share them).
const POOL: usize = 6;

const SCHEMA: &[&str] = &[
    // version 1
    "CREATE TABLE jobs (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, app TEXT NOT NULL, env TEXT NOT NULL,
        version TEXT NOT NULL, check_mode BIGINT NOT NULL, \"user\" TEXT NOT NULL,
        state TEXT NOT NULL, created_ms BIGINT NOT NULL, finished_ms BIGINT, error TEXT);
     CREATE TABLE events (
        job_id TEXT NOT NULL, seq BIGINT NOT NULL, ts_ms BIGINT NOT NULL, data TEXT NOT NULL,
        PRIMARY KEY (job_id, seq));
     CREATE TABLE locks (
        app TEXT NOT NULL, env TEXT NOT NULL, job_id TEXT NOT NULL, holder TEXT NOT NULL,
        since_ms BIGINT NOT NULL, PRIMARY KEY (app, env));
     CREATE TABLE tokens (
        id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, \"user\" TEXT NOT NULL,
        envs TEXT NOT NULL, admin BIGINT NOT NULL, created_ms BIGINT NOT NULL,
        revoked_ms BIGINT);
     CREATE TABLE ledger (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, job_id TEXT NOT NULL,
        app TEXT NOT NULL, env TEXT NOT NULL, host TEXT NOT NULL, version TEXT NOT NULL,
        from_version TEXT, result TEXT NOT NULL, \"user\" TEXT NOT NULL, ts_ms BIGINT NOT NULL);
     CREATE TABLE audit (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ts_ms BIGINT NOT NULL,
        \"user\" TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,
        outcome TEXT NOT NULL);",
    // version 2
    "ALTER TABLE tokens ADD COLUMN read_envs TEXT NOT NULL DEFAULT '';
     ALTER TABLE tokens ADD COLUMN expires_ms BIGINT;
     ALTER TABLE tokens ADD COLUMN last_used_ms BIGINT;
     CREATE TABLE live (
        app TEXT NOT NULL, env TEXT NOT NULL, host TEXT NOT NULL, version TEXT NOT NULL,
        slot TEXT NOT NULL, job_id TEXT NOT NULL, \"user\" TEXT NOT NULL, ts_ms BIGINT NOT NULL,
        PRIMARY KEY (app, env, host));
     CREATE TABLE deploys (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, app TEXT NOT NULL,
        env TEXT NOT NULL, version TEXT NOT NULL, job_id TEXT NOT NULL, ts_ms BIGINT NOT NULL);
     CREATE INDEX deploys_target ON deploys (app, env, id);
     CREATE INDEX jobs_finished ON jobs (finished_ms);
     CREATE INDEX audit_ts ON audit (ts_ms);",
    // version 3
    "ALTER TABLE tokens ADD COLUMN run BIGINT NOT NULL DEFAULT 0;",
    // version 4
    "CREATE TABLE builds (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, app TEXT NOT NULL,
        commit_id TEXT NOT NULL, number TEXT NOT NULL, url TEXT NOT NULL,
        version TEXT NOT NULL, file TEXT NOT NULL, sha256 TEXT NOT NULL,
        job_id TEXT NOT NULL, ts_ms BIGINT NOT NULL);
     CREATE INDEX builds_commit ON builds (app, commit_id);
     CREATE INDEX builds_version ON builds (app, version);
     CREATE TABLE job_artifacts (
        job_id TEXT PRIMARY KEY, file TEXT NOT NULL, sha256 TEXT NOT NULL);",
    // version 5
    "ALTER TABLE jobs ADD COLUMN triggered_by TEXT;
     CREATE TABLE schedules (
        id TEXT PRIMARY KEY, app TEXT NOT NULL, env TEXT NOT NULL, what TEXT NOT NULL,
        at_ms BIGINT, cron TEXT, tz TEXT NOT NULL, lock_wait_secs BIGINT NOT NULL,
        grace_secs BIGINT NOT NULL, \"user\" TEXT NOT NULL, token_id TEXT NOT NULL,
        paused BIGINT NOT NULL DEFAULT 0, created_ms BIGINT NOT NULL, next_ms BIGINT,
        removed_ms BIGINT);
     CREATE TABLE schedule_runs (
        schedule_id TEXT NOT NULL, slot_ms BIGINT NOT NULL, state TEXT NOT NULL,
        job_id TEXT, reason TEXT NOT NULL, ts_ms BIGINT NOT NULL,
        PRIMARY KEY (schedule_id, slot_ms));
     CREATE TABLE freezes (
        env TEXT PRIMARY KEY, until_ms BIGINT NOT NULL, reason TEXT NOT NULL,
        \"user\" TEXT NOT NULL, created_ms BIGINT NOT NULL);",
    // version 6: leases
    "ALTER TABLE jobs ADD COLUMN owner TEXT;
     ALTER TABLE jobs ADD COLUMN lease_until BIGINT;
     ALTER TABLE jobs ADD COLUMN cancel_requested BIGINT NOT NULL DEFAULT 0;
     ALTER TABLE schedule_runs ADD COLUMN owner TEXT;
     ALTER TABLE schedule_runs ADD COLUMN lease_until BIGINT;
     CREATE INDEX jobs_state ON jobs (state);",
    // version 7: fencing epochs
    "ALTER TABLE jobs ADD COLUMN epoch BIGINT;
     CREATE TABLE epochs (id BIGINT PRIMARY KEY, value BIGINT NOT NULL);
     INSERT INTO epochs (id, value) VALUES (1, 0);",
    // version 8: the CI builds jobs follow (so that any gateway follows one again after
    // a restart, and a build nobody followed to its end is adopted, not rebuilt).
    "CREATE TABLE build_follows (
        job_id TEXT PRIMARY KEY, app TEXT NOT NULL, commit_id TEXT NOT NULL,
        builder_id TEXT NOT NULL, number TEXT, url TEXT, console_offset BIGINT NOT NULL,
        queued_ms BIGINT NOT NULL, ended BIGINT NOT NULL DEFAULT 0);
     CREATE INDEX build_follows_commit ON build_follows (app, commit_id);",
    // version 9: the notification outbox and dashboard sessions
    "CREATE TABLE outbox (
        id TEXT PRIMARY KEY, job_id TEXT NOT NULL, notice TEXT NOT NULL, route TEXT NOT NULL,
        payload TEXT NOT NULL, state TEXT NOT NULL, attempts BIGINT NOT NULL,
        next_ms BIGINT NOT NULL, claimed_by TEXT, last_error TEXT,
        created_ms BIGINT NOT NULL, done_ms BIGINT);
     CREATE INDEX outbox_due ON outbox (state, next_ms);
     CREATE INDEX outbox_job ON outbox (job_id);
     CREATE TABLE sessions (
        hash TEXT PRIMARY KEY, token_id TEXT NOT NULL, expires_ms BIGINT NOT NULL,
        created_ms BIGINT NOT NULL);
     CREATE INDEX sessions_expiry ON sessions (expires_ms);",
    // version 10: each ledger row's environment hash
    "ALTER TABLE ledger ADD COLUMN env_sha256 TEXT",
    // version 11: the parts of jobs handed to the runners of other sites (network
    // segments): one row per host (or a host's rollback), claimed under a lease, and
    // the events its runner wrote, which the job's process relays; and the questions
    // (`status --live`, a rollback's targets, a reconcile) a site's runner answers for
    // its hosts.
    "CREATE TABLE site_parts (
        id TEXT PRIMARY KEY, job_id TEXT NOT NULL, host TEXT NOT NULL, site TEXT NOT NULL,
        rollback_to TEXT, wheel TEXT, epoch BIGINT NOT NULL, state TEXT NOT NULL,
        owner TEXT, lease_until BIGINT, cancel BIGINT NOT NULL DEFAULT 0, result TEXT,
        created_ms BIGINT NOT NULL, ended_ms BIGINT);
     CREATE INDEX site_parts_queue ON site_parts (site, state);
     CREATE INDEX site_parts_job ON site_parts (job_id);
     CREATE TABLE site_events (
        part_id TEXT NOT NULL, seq BIGINT NOT NULL, event TEXT NOT NULL,
        PRIMARY KEY (part_id, seq));
     CREATE TABLE site_asks (
        id TEXT PRIMARY KEY, site TEXT NOT NULL, app TEXT NOT NULL, env TEXT NOT NULL,
        state TEXT NOT NULL, owner TEXT, answer TEXT, created_ms BIGINT NOT NULL);
     CREATE INDEX site_asks_queue ON site_asks (site, state);",
];

/// A connection and the statements prepared on it.
struct Slot {
    client: Client,
    stmts: HashMap<String, Statement>,
}

pub struct Postgres {
    config: Config,
    /// The URL without its password, for messages.
    shown: String,
    slots: Vec<Mutex<Option<Slot>>>,
    next: AtomicUsize,
    /// The session that holds this gateway's id (an advisory lock) while it lives.
    identity: Mutex<Option<Client>>,
}

impl Postgres {
    /// Connects, and creates or migrates the schema (one gateway at a time, under an
    /// advisory lock, so gateways that start together migrate once).
    pub fn open(url: &str, password: Option<&str>) -> Result<Postgres> {
        let shown = super::redact(url);
        let fail = |m: String| StoreError::Open {
            path: shown.clone(),
            message: m,
        };
        let mut config = Config::from_str(url).map_err(|e| fail(e.to_string()))?;
        if config.get_password().is_some() {
            return Err(fail(
                "the URL holds a password: give it with database_password_env or database_password_file instead".into(),
            ));
        }
        if let Some(p) = password {
            config.password(p);
        }
        config
            .connect_timeout(Duration::from_secs(10))
            .application_name("deploy-gateway");
        let pg = Postgres {
            config,
            shown: shown.clone(),
            slots: (0..POOL).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            identity: Mutex::new(None),
        };
        pg.run(true, |c| migrate(c))
            .map_err(|e| fail(e.to_string()))?;
        Ok(pg)
    }

    fn connect(&self) -> SqlResult<Client> {
        self.config.connect(NoTls).map_err(|e| {
            let m = format!("cannot connect to {}: {}", self.shown, message(&e));
            if unavailable(&e) {
                SqlError::Unavailable(m)
            } else {
                SqlError::Db(m)
            }
        })
    }

    /// A slot on a new connection (no statement prepared on it yet).
    fn fresh(&self) -> SqlResult<Slot> {
        Ok(Slot {
            client: self.connect()?,
            stmts: HashMap::new(),
        })
    }

    /// A free connection slot, else waits for one.
    fn slot(&self) -> MutexGuard<'_, Option<Slot>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..POOL {
            if let Ok(g) = self.slots[(start + i) % POOL].try_lock() {
                return g;
            }
        }
        self.slots[start % POOL]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on a pooled connection (in a transaction when `tx`; without one, the
    /// store only reads).  A connection that sat in the pool may have been broken
    /// meanwhile (the database restarted): its first round trip (`BEGIN`, or a read's
    /// first statement) then fails before anything ran, so it is replaced by a fresh
    /// connection and that round trip is tried once more.  A failure after that, or on a
    /// fresh connection, is returned as it is ([`SqlError::Unavailable`] when the
    /// database is away): a transaction's closure runs once, never twice.
    fn run_here<T>(&self, tx: bool, f: impl FnOnce(&mut dyn Conn) -> SqlResult<T>) -> SqlResult<T> {
        let mut guard = self.slot();
        let pooled = guard.as_ref().is_some_and(|s| !s.client.is_closed());
        if !pooled {
            *guard = Some(self.fresh()?);
        }
        let slot = guard.as_mut().expect("connected above");
        let out = if tx {
            self.in_transaction(slot, pooled, f)
        } else {
            f(&mut FirstTry {
                pg: self,
                slot,
                retry: pooled,
            })
        };
        if guard.as_ref().is_some_and(|s| s.client.is_closed()) {
            *guard = None; // reconnect on the next call
        }
        out
    }

    fn in_transaction<T>(
        &self,
        slot: &mut Slot,
        pooled: bool,
        f: impl FnOnce(&mut dyn Conn) -> SqlResult<T>,
    ) -> SqlResult<T> {
        let broken = match slot.client.transaction() {
            Ok(t) => return commit_after(t, &mut slot.stmts, f),
            Err(e) if pooled && unavailable(&e) => e,
            Err(e) => return Err(sql_error(&e)),
        };
        tracing::debug!(
            "a pooled connection was broken ({}); reconnecting",
            message(&broken)
        );
        *slot = self.fresh()?;
        let t = slot.client.transaction().map_err(|e| sql_error(&e))?;
        commit_after(t, &mut slot.stmts, f)
    }
}

/// Runs `f` in the transaction `t` and commits it; an error rolls it back (dropping `t`).
fn commit_after<T>(
    mut t: postgres::Transaction<'_>,
    stmts: &mut HashMap<String, Statement>,
    f: impl FnOnce(&mut dyn Conn) -> SqlResult<T>,
) -> SqlResult<T> {
    let v = f(&mut PgConn { c: &mut t, stmts })?;
    t.commit().map_err(|e| sql_error(&e))?;
    Ok(v)
}

/// A connection outside a transaction, taken from the pool: its first statement, when it
/// fails because the connection is broken, is tried once more on a fresh connection
/// (nothing ran before it, so nothing was committed); later statements are not.
struct FirstTry<'a> {
    pg: &'a Postgres,
    slot: &'a mut Slot,
    retry: bool,
}

impl FirstTry<'_> {
    fn again<R>(&mut self, mut op: impl FnMut(&mut dyn Conn) -> SqlResult<R>) -> SqlResult<R> {
        let retry = std::mem::take(&mut self.retry);
        let first = op(&mut PgConn {
            c: &mut self.slot.client,
            stmts: &mut self.slot.stmts,
        });
        match first {
            Err(SqlError::Unavailable(_)) if retry => {
                *self.slot = self.pg.fresh()?;
                op(&mut PgConn {
                    c: &mut self.slot.client,
                    stmts: &mut self.slot.stmts,
                })
            }
            other => other,
        }
    }
}

impl Conn for FirstTry<'_> {
    fn exec(&mut self, sql: &str, values: &[Value]) -> SqlResult<u64> {
        self.again(|c| c.exec(sql, values))
    }

    fn query(&mut self, sql: &str, values: &[Value]) -> SqlResult<Vec<Row>> {
        self.again(|c| c.query(sql, values))
    }

    fn notify(&mut self, job: &str) -> SqlResult<()> {
        self.again(|c| c.notify(job))
    }
}

/// Creates the empty database `name` on the server of `base_url` (for tests).
#[cfg(test)]
pub fn create_database(base_url: &str, password: &str, name: &str) -> SqlResult<()> {
    let mut config = Config::from_str(&format!("{base_url}/postgres"))
        .map_err(|e| SqlError::Db(e.to_string()))?;
    config.password(password);
    let mut c = config
        .connect(NoTls)
        .map_err(|e| SqlError::Db(message(&e)))?;
    c.batch_execute(&format!("CREATE DATABASE {name}"))
        .map_err(|e| SqlError::Db(message(&e)))
}

impl Drop for Postgres {
    /// A client closes its connection by blocking on its runtime, which may not happen
    /// on a thread that drives async tasks: the pool is dropped on a thread of its own.
    fn drop(&mut self) {
        let slots = std::mem::take(&mut self.slots);
        let identity = self.identity.get_mut().map(Option::take).unwrap_or(None);
        std::thread::scope(|s| {
            s.spawn(move || drop((slots, identity)));
        });
    }
}

/// Listens on one connection of its own, on a thread of its own; after a reconnect it
/// wakes every follower (`""`), as news may have been missed.
fn watch(pg: &Postgres, wake: Box<dyn Fn(&str) + Send + Sync>) {
    let (config, shown) = (pg.config.clone(), pg.shown.clone());
    let spawned = std::thread::Builder::new()
        .name("pg-listen".into())
        .spawn(move || {
            loop {
                if let Err(e) = listen(&config, wake.as_ref()) {
                    tracing::warn!("listening for events on {shown}: {e}; again in 1 s");
                }
                wake("");
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the event listener: {e}; followers poll");
    }
}

/// One listening connection, until it fails.
fn listen(config: &Config, wake: &(dyn Fn(&str) + Send + Sync)) -> std::result::Result<(), String> {
    let mut client = config.connect(NoTls).map_err(|e| message(&e))?;
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .map_err(|e| message(&e))?;
    wake("");
    let mut news = client.notifications();
    let mut it = news.blocking_iter();
    loop {
        match postgres::fallible_iterator::FallibleIterator::next(&mut it) {
            Ok(Some(n)) => wake(n.payload()),
            Ok(None) => return Err("the connection closed".into()),
            Err(e) => return Err(message(&e)),
        }
    }
}

fn migrate(c: &mut dyn Conn) -> SqlResult<()> {
    c.exec("SELECT pg_advisory_xact_lock(7316)", &[])?;
    c.exec(
        "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
        &[],
    )?;
    let version = match c.first("SELECT version FROM schema_version", &[])? {
        Some(r) => r.int(0)? as usize,
        None => {
            c.exec("INSERT INTO schema_version (version) VALUES (0)", &[])?;
            0
        }
    };
    if version > SCHEMA.len() {
        return Err(SqlError::Db(format!(
            "the database's schema is version {version}, newer than this gateway's {}: upgrade this gateway",
            SCHEMA.len()
        )));
    }
    for (i, ddl) in SCHEMA.iter().enumerate().skip(version) {
        for statement in ddl.split(';').filter(|s| !s.trim().is_empty()) {
            c.exec(statement, &[])?;
        }
        c.exec(
            "UPDATE schema_version SET version = $1",
            &[Value::Int(i as i64 + 1)],
        )?;
    }
    Ok(())
}

impl Backend for Postgres {
    fn run<T: Send>(
        &self,
        tx: bool,
        f: impl FnOnce(&mut dyn Conn) -> SqlResult<T> + Send,
    ) -> SqlResult<T> {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.run_here(tx, f);
        }
        off_runtime(|| self.run_here(tx, f))
    }

    fn shared(&self) -> bool {
        true
    }

    /// A session-level advisory lock on the id's hash, on a connection of its own: the
    /// server frees it when the process dies and its connection closes.
    fn hold_identity(&self, owner: &str) -> SqlResult<bool> {
        let hold = || {
            let mut c = self.connect()?;
            let got: bool = c
                .query_one("SELECT pg_try_advisory_lock(7317, hashtext($1))", &[&owner])
                .and_then(|r| r.try_get(0))
                .map_err(|e| SqlError::Db(message(&e)))?;
            if got {
                *self.identity.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
            }
            Ok(got)
        };
        off_runtime(hold)
    }

    /// The identity's connection answers, or a new one takes the lock again (after the
    /// server restarted, the old session and its lock are gone).
    fn check_identity(&self, owner: &str) -> SqlResult<bool> {
        let alive = || {
            let mut held = self.identity.lock().unwrap_or_else(|p| p.into_inner());
            Ok(match held.as_mut() {
                Some(c) => !c.is_closed() && c.simple_query("SELECT 1").is_ok(),
                None => false,
            })
        };
        if off_runtime(alive)? {
            return Ok(true);
        }
        tracing::warn!("the session that held this gateway's id is gone; taking the id again");
        self.hold_identity(owner)
    }

    fn skip_locked(&self) -> &'static str {
        "FOR UPDATE OF o SKIP LOCKED"
    }

    fn clock_query(&self) -> Option<&'static str> {
        Some("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
    }

    fn watch(&self, wake: Box<dyn Fn(&str) + Send + Sync>) {
        watch(self, wake)
    }
}

/// Runs `f` on a scoped thread of its own: the client's runtime may not block a
/// thread that drives async tasks.
fn off_runtime<T: Send>(f: impl FnOnce() -> SqlResult<T> + Send) -> SqlResult<T> {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|_| Err(SqlError::Db("a database call panicked".into())))
    })
}

/// A client's error as the store's: [`SqlError::Unavailable`] when the database could
/// not be reached or the connection broke, else a refusal.
fn sql_error(e: &postgres::Error) -> SqlError {
    if unavailable(e) {
        SqlError::Unavailable(message(e))
    } else {
        SqlError::Db(message(e))
    }
}

/// Whether a failure is the database's absence rather than its answer: a closed
/// connection, an I/O error (refused, reset, timed out, broken pipe), or the server
/// saying so itself (SQLSTATE class 08, connection exception; 57P01-57P03: shut down by
/// an administrator, crashed, cannot connect now while it starts or stops).  A refused
/// login or statement is not: asking again gets the same answer.
fn unavailable(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    let mut cause = e.source();
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// An error's own words (and the server's detail), never the connection's secrets.
fn message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => match e.source() {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

struct PgConn<'a, C: GenericClient> {
    c: &'a mut C,
    stmts: &'a mut HashMap<String, Statement>,
}

impl<C: GenericClient> PgConn<'_, C> {
    fn statement(&mut self, sql: &str) -> SqlResult<Statement> {
        if let Some(st) = self.stmts.get(sql) {
            return Ok(st.clone());
        }
        let st = self.c.prepare(sql).map_err(|e| sql_error(&e))?;
        self.stmts.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

fn params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl<C: GenericClient> Conn for PgConn<'_, C> {
    fn exec(&mut self, sql: &str, values: &[Value]) -> SqlResult<u64> {
        let st = self.statement(sql)?;
        self.c
            .execute(&st, &params(values))
            .map_err(|e| sql_error(&e))
    }

    fn query(&mut self, sql: &str, values: &[Value]) -> SqlResult<Vec<Row>> {
        let st = self.statement(sql)?;
        let rows = self
            .c
            .query(&st, &params(values))
            .map_err(|e| sql_error(&e))?;
        rows.iter().map(row).collect()
    }

    fn notify(&mut self, job: &str) -> SqlResult<()> {
        let sql = format!("SELECT pg_notify('{CHANNEL}', $1)");
        self.query(&sql, &[Value::from(job)]).map(|_| ())
    }
}

fn row(r: &postgres::Row) -> SqlResult<Row> {
    let bad = |i: usize, e: &dyn std::fmt::Display| SqlError::Corrupt(format!("column {i}: {e}"));
    let mut out = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int)),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|v| Value::Int(v.into()))),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)
                .map(|v| v.map(|v| Value::Int(v.into()))),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)
                .map(|v| v.map(|v| Value::Int(v.into()))),
            Type::VOID => Ok(None),
            _ => r
                .try_get::<_, Option<String>>(i)
                .map(|v| v.map(Value::Text)),
        }
        .map_err(|e| bad(i, &e))?;
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_that_refuses_connections_is_unavailable_not_a_refusal() {
        let Err(refused) = Config::from_str("postgres://deploy@127.0.0.1:1/none")
            .unwrap()
            .connect(NoTls)
        else {
            panic!("port 1 took a connection");
        };
        assert!(unavailable(&refused), "{refused}");
        assert!(matches!(sql_error(&refused), SqlError::Unavailable(_)));
    }

    /// A fresh database on the tests' server (`DEPLOY_TEST_PG_URL`), if they have one.
    fn database() -> Option<(String, String)> {
        let base = std::env::var("DEPLOY_TEST_PG_URL").ok()?;
        let password = std::env::var("DEPLOY_TEST_PG_PASSWORD").unwrap_or_default();
        let name = format!("deploy_t_unit_pool_{}", crate::random::hex(5));
        create_database(&base, &password, &name).unwrap();
        Some((format!("{base}/{name}"), password))
    }

    /// Ends every other session on the database, as a restart of the server does.
    fn terminate_others(pg: &Postgres) {
        let mut c = pg.connect().unwrap();
        c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    }

    #[test]
    fn pooled_connections_the_database_ended_are_replaced_before_anything_runs() {
        let Some((url, password)) = database() else {
            return; // SQLite only: no PostgreSQL server named (ci/test.sh's pass 2 has one)
        };
        let pg = Postgres::open(&url, Some(&password)).unwrap();
        let read = |pg: &Postgres| pg.run(false, |c| c.first("SELECT 1", &[]).map(|_| ()));
        let write = |pg: &Postgres| {
            pg.run(true, |c| {
                c.exec("UPDATE schema_version SET version = version", &[])
                    .map(|_| ())
            })
        };
        for _ in 0..POOL {
            read(&pg).unwrap(); // every slot holds a connection
        }
        terminate_others(&pg);
        for i in 0..POOL {
            read(&pg).unwrap_or_else(|e| panic!("read {i} after the sessions ended: {e}"));
        }
        terminate_others(&pg);
        for i in 0..POOL {
            write(&pg).unwrap_or_else(|e| panic!("write {i} after the sessions ended: {e}"));
        }
    }
}
