//! The store's queries, written once for every backend ([`SqlStore`] over a
//! [`Backend`]): jobs and their locks, events, the ledger and the audit trail here; the
//! rest in `queries_*.rs`.  Atomic claims (`start_job`, `claim_run`, `expire_leases`)
//! are single statements or one transaction, so they hold with several gateways.

use deploy_wire::api::{AuditEntry, JobInfo, LedgerEntry};
use deploy_wire::pipeline::{ArtifactRef, BuildRecord};
use deploy_wire::schedule::{FreezeInfo, ScheduleRun};

use super::queries_access as access;
use super::queries_builds as builds;
use super::queries_leases as leases;
use super::queries_outbox as outbox;
use super::queries_pipeline as pipeline;
use super::queries_schedules as schedules;
use super::queries_sites as sites;
use super::sql::{Backend, Conn, Row, SqlError, SqlResult, in_scope, vals};
use super::{
    APPLY_USER_PREFIX, Adopt, BuildFollow, JobEnd, Lease, LiveRow, LockHolder, NewEvent, NewToken,
    Orphans, Pruned, Result, Scope, Store, StoreError, TokenRow, now_ms,
};

pub(super) const JOB_COLS: &str = "id, kind, app, env, version, check_mode, \"user\", state, created_ms, finished_ms, error, triggered_by";
const LEDGER_COLS: &str =
    "job_id, app, env, host, version, from_version, result, \"user\", ts_ms, env_sha256";

/// The queries over one backend.
pub struct SqlStore<B> {
    b: B,
}

pub(super) fn job_from_row(r: &Row) -> SqlResult<JobInfo> {
    Ok(JobInfo {
        id: r.text(0)?,
        kind: r.word(1)?,
        app: r.text(2)?,
        env: r.text(3)?,
        version: r.text(4)?,
        check: r.flag(5)?,
        user: r.text(6)?,
        state: r.word(7)?,
        created_ms: r.u64(8)?,
        finished_ms: r.opt_u64(9)?,
        error: r.opt_text(10)?,
        triggered_by: r.opt_text(11)?,
    })
}

fn ledger_from_row(r: &Row) -> SqlResult<LedgerEntry> {
    Ok(LedgerEntry {
        job_id: r.text(0)?,
        app: r.text(1)?,
        env: r.text(2)?,
        host: r.text(3)?,
        version: r.text(4)?,
        from_version: r.opt_text(5)?,
        result: r.word(6)?,
        user: r.text(7)?,
        ts_ms: r.u64(8)?,
        artifact: None,
        env_sha256: r.opt_text(9)?,
    })
}

/// A build job whose CI build is still followed: recovery leaves it to be adopted.
pub(super) const ADOPTABLE: &str =
    "(kind = 'build' AND id IN (SELECT job_id FROM build_follows WHERE ended = 0))";

/// The SQL condition selecting the running jobs of `which`.
pub(super) fn orphans_sql(which: Orphans) -> String {
    let apply = format!(
        "substr(\"user\", 1, {}) = '{APPLY_USER_PREFIX}'",
        APPLY_USER_PREFIX.len()
    );
    match which {
        Orphans::All => "state = 'running'".into(),
        Orphans::Gateway => format!("state = 'running' AND NOT {apply}"),
        Orphans::Apply => format!("state = 'running' AND {apply}"),
    }
}

/// Marks the running jobs `ids` interrupted with `error`, stores each one's final event
/// (how long it ran and how its hosts ended, from its stored events) and frees their
/// locks, in the caller's transaction; the ones this call changed (another gateway may
/// have been first).
pub(super) fn interrupt(c: &mut dyn Conn, ids: &[String], error: &str) -> SqlResult<Vec<String>> {
    let mut done = Vec::new();
    for id in ids {
        let n = c.exec(
            "UPDATE jobs SET state = 'interrupted', finished_ms = $2, error = $3 WHERE id = $1 AND state = 'running'",
            vals![id, now_ms(), error],
        )?;
        if n == 1 {
            let started = match c.first("SELECT created_ms FROM jobs WHERE id = $1", vals![id])? {
                Some(r) => r.u64(0)?,
                None => now_ms(),
            };
            let stored: Vec<(u64, String)> = c
                .query(
                    "SELECT seq, data FROM events WHERE job_id = $1 ORDER BY seq",
                    vals![id],
                )?
                .iter()
                .map(|r| Ok((r.u64(0)?, r.text(1)?)))
                .collect::<SqlResult<_>>()?;
            let event =
                deploy_wire::Event::now(crate::gateway::job_life::interrupted(started, &stored));
            store_final(c, id, &event)?;
            c.exec("DELETE FROM locks WHERE job_id = $1", vals![id])?;
            c.notify(id)?;
            done.push(id.clone());
        }
    }
    Ok(done)
}

/// The next fencing epoch: one counter for every job, so it only grows per target, and
/// never below the time in ms, so that a new database (or an `apply` run on a private
/// one) still outranks every job the hosts saw before it.
pub(super) fn next_epoch(c: &mut dyn Conn) -> SqlResult<u64> {
    c.first(
        "UPDATE epochs SET value = CASE WHEN value + 1 > $1 THEN value + 1 ELSE $1 END
         WHERE id = 1 RETURNING value",
        vals![now_ms()],
    )?
    .ok_or_else(|| SqlError::Corrupt("the epochs table has no row".into()))?
    .u64(0)
}

/// Stores a job's final event (`job_finished`) as the job's next number.  A note stored
/// at the same moment (a notification's delivery, numbered by another writer) may take
/// that number first: the final event then takes the one after it, never failing the
/// end's transaction.
fn store_final(c: &mut dyn Conn, id: &str, event: &deploy_wire::Event) -> SqlResult<()> {
    let data = serde_json::to_string(event).map_err(|e| SqlError::Corrupt(e.to_string()))?;
    for _ in 0..50 {
        let last = c
            .first(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE job_id = $1",
                vals![id],
            )?
            .map(|r| r.u64(0))
            .transpose()?
            .unwrap_or(0);
        let stored = c.exec(
            "INSERT INTO events (job_id, seq, ts_ms, data) VALUES ($1, $2, $3, $4)
             ON CONFLICT (job_id, seq) DO NOTHING",
            vals![id, last + 1, event.ts_ms, &data],
        )?;
        if stored == 1 {
            return Ok(());
        }
    }
    Err(SqlError::Db(format!(
        "no free number for job {id}'s final event"
    )))
}

impl<B: Backend> SqlStore<B> {
    pub fn new(b: B) -> SqlStore<B> {
        SqlStore { b }
    }

    /// The backend (for the few words of SQL it spells its own way).
    pub(super) fn backend(&self) -> &B {
        &self.b
    }

    /// Runs `f` statement by statement; `doing` names the operation in errors.
    pub(super) fn read<T: Send>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&mut dyn Conn) -> SqlResult<T> + Send,
    ) -> Result<T> {
        self.b.run(false, f).map_err(|e| error(doing, e))
    }

    /// Runs `f` in one transaction.
    pub(super) fn write<T: Send>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&mut dyn Conn) -> SqlResult<T> + Send,
    ) -> Result<T> {
        self.b.run(true, f).map_err(|e| error(doing, e))
    }
}

fn error(doing: &'static str, e: SqlError) -> StoreError {
    match e {
        SqlError::Corrupt(message) => StoreError::Corrupt { doing, message },
        SqlError::Db(message) => StoreError::Query { doing, message },
        SqlError::Unavailable(message) => StoreError::Unavailable { doing, message },
    }
}

impl<B: Backend> Store for SqlStore<B> {
    fn shared(&self) -> bool {
        self.b.shared()
    }

    fn watch(&self, wake: Box<dyn Fn(&str) + Send + Sync>) {
        self.b.watch(wake)
    }

    fn interrupt_running(&self, which: Orphans) -> Result<Vec<String>> {
        let cond = format!("{} AND NOT {ADOPTABLE}", orphans_sql(which));
        self.write("interrupting the jobs of a stopped runner", |c| {
            let ids = c.texts(&format!("SELECT id FROM jobs WHERE {cond}"), &[])?;
            interrupt(c, &ids, "the gateway stopped while this job ran")
        })
    }

    fn start_job(&self, job: &JobInfo, lease: &Lease) -> Result<Result<u64, LockHolder>> {
        self.write("starting a job", |c| {
            // One statement takes the lock or finds it taken, whoever else tries now.
            let took = c.exec(
                "INSERT INTO locks (app, env, job_id, holder, since_ms) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (app, env) DO NOTHING",
                vals![&job.app, &job.env, &job.id, &job.user, now_ms()],
            )?;
            if took == 0 {
                let held = c.first(
                    "SELECT holder, job_id FROM locks WHERE app = $1 AND env = $2",
                    vals![&job.app, &job.env],
                )?;
                let holder = match held {
                    Some(r) => LockHolder {
                        holder: r.text(0)?,
                        job_id: r.text(1)?,
                    },
                    // Freed between the two statements: say so rather than retry.
                    None => LockHolder {
                        holder: "a job that just ended".into(),
                        job_id: String::new(),
                    },
                };
                return Ok(Err(holder));
            }
            let epoch = next_epoch(c)?;
            c.exec(
                &format!("INSERT INTO jobs ({JOB_COLS}, owner, lease_until, epoch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, $10, $11, $12, $13)"),
                vals![&job.id, job.kind.as_str(), &job.app, &job.env, &job.version, job.check, &job.user, job.state.as_str(), job.created_ms, &job.triggered_by, &lease.owner, lease.until_ms, epoch],
            )?;
            Ok(Ok(epoch))
        })
    }

    fn finish_job(&self, id: &str, end: &JobEnd) -> Result<bool> {
        self.write("finishing a job", |c| {
            // A job whose lease another gateway took over stays as that one marked it.
            let n = c.exec(
                "UPDATE jobs SET state = $2, finished_ms = $3, error = $4 WHERE id = $1 AND state = 'running'",
                vals![id, end.state.as_str(), now_ms(), &end.error],
            )?;
            if n == 1 {
                store_final(c, id, &end.event)?;
                c.exec("DELETE FROM locks WHERE job_id = $1", vals![id])?;
            }
            c.notify(id)?;
            Ok(n == 1)
        })
    }

    fn job(&self, id: &str) -> Result<Option<JobInfo>> {
        self.read("reading a job", |c| {
            c.first(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"),
                vals![id],
            )?
            .as_ref()
            .map(job_from_row)
            .transpose()
        })
    }

    fn jobs(&self, limit: u32, scope: &Scope) -> Result<Vec<JobInfo>> {
        let (cond, mut params) = in_scope(scope, 2);
        params.insert(0, limit.into());
        self.read("listing jobs", |c| {
            c.query(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE {cond} ORDER BY created_ms DESC, id DESC LIMIT $1"),
                &params,
            )?
            .iter()
            .map(job_from_row)
            .collect()
        })
    }

    fn append_events(&self, events: &[NewEvent]) -> Result<u64> {
        self.write("storing events", |c| {
            let mut jobs: Vec<&str> = Vec::new();
            let mut refused = 0;
            for e in events {
                // Only a running job gets events (its final one ended its story), but for
                // notes about it (a notification's delivery).  A number already taken
                // must not lose the batch's other events.
                let n = c.exec(
                    "INSERT INTO events (job_id, seq, ts_ms, data)
                     SELECT $1, $2, $3, $4 WHERE $5 = 1 OR EXISTS
                        (SELECT 1 FROM jobs WHERE id = $1 AND state = 'running')
                     ON CONFLICT (job_id, seq) DO NOTHING",
                    vals![&e.job, e.seq, e.ts_ms, &e.data, e.note as i64],
                )?;
                if n == 0 {
                    refused += 1;
                } else if !jobs.contains(&e.job.as_str()) {
                    jobs.push(&e.job);
                }
            }
            for job in jobs {
                c.notify(job)?;
            }
            Ok(refused)
        })
    }

    fn last_seq(&self, job: &str) -> Result<u64> {
        self.read("reading the last event number", |c| {
            match c.first(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE job_id = $1",
                vals![job],
            )? {
                Some(r) => r.u64(0),
                None => Ok(0),
            }
        })
    }

    fn events_after(&self, job: &str, after: u64, limit: u32) -> Result<Vec<(u64, String)>> {
        self.read("reading events", |c| {
            c.query(
                "SELECT seq, data FROM events WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                vals![job, after, limit],
            )?
            .iter()
            .map(|r| Ok((r.u64(0)?, r.text(1)?)))
            .collect()
        })
    }

    fn add_ledger(&self, e: &LedgerEntry) -> Result<()> {
        self.write("adding a ledger entry", |c| {
            c.exec(
                &format!(
                    "INSERT INTO ledger ({LEDGER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ),
                vals![
                    &e.job_id,
                    &e.app,
                    &e.env,
                    &e.host,
                    &e.version,
                    &e.from_version,
                    e.result.as_str(),
                    &e.user,
                    e.ts_ms,
                    &e.env_sha256
                ],
            )
            .map(|_| ())
        })
    }

    fn ledger(&self, app: Option<&str>, limit: u32, scope: &Scope) -> Result<Vec<LedgerEntry>> {
        let (cond, scoped) = in_scope(scope, 3);
        let mut params = vals![app, limit].to_vec();
        params.extend(scoped);
        let rows = self.read("reading the ledger", |c| {
            c.query(
                &format!("SELECT {LEDGER_COLS} FROM ledger WHERE (CAST($1 AS TEXT) IS NULL OR app = $1) AND {cond} ORDER BY id DESC LIMIT $2"),
                &params,
            )?
            .iter()
            .map(ledger_from_row)
            .collect::<SqlResult<Vec<_>>>()
        })?;
        // Each row with the file its job installed (few rows: one query each).
        rows.into_iter()
            .map(|mut e| {
                e.artifact = pipeline::job_artifact(self, &e.job_id)?;
                Ok(e)
            })
            .collect()
    }

    fn live(&self, app: &str, env: &str, host: &str) -> Result<Option<LedgerEntry>> {
        self.read("reading the live release", |c| {
            c.first(
                &format!("SELECT {LEDGER_COLS} FROM ledger WHERE app = $1 AND env = $2 AND host = $3 AND result IN ('changed', 'ok') ORDER BY id DESC LIMIT 1"),
                vals![app, env, host],
            )?
            .as_ref()
            .map(ledger_from_row)
            .transpose()
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
        access::tokens(self)
    }

    fn revoke_token(&self, id: &str) -> Result<bool> {
        access::revoke_token(self, id)
    }

    fn set_build_follow(&self, f: &BuildFollow) -> Result<()> {
        builds::set(self, f)
    }

    fn build_follow(&self, job_id: &str) -> Result<Option<BuildFollow>> {
        builds::get(self, job_id)
    }

    fn end_build_follow(&self, job_id: &str) -> Result<()> {
        builds::end(self, job_id)
    }

    fn unfollowed_build(&self, app: &str, commit: &str) -> Result<Option<BuildFollow>> {
        builds::unfollowed(self, app, commit)
    }

    fn adopt_builds(&self, lease: &Lease, from: &Adopt) -> Result<Vec<(JobInfo, u64)>> {
        builds::adopt(self, lease, from)
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

    fn claim_run(&self, id: &str, run: &ScheduleRun, lease: Option<&Lease>) -> Result<bool> {
        schedules::claim(self, id, run, lease)
    }

    fn update_run(&self, id: &str, run: &ScheduleRun) -> Result<()> {
        schedules::update_run(self, id, run)
    }

    fn schedule_runs(&self, id: &str, limit: u32) -> Result<Vec<ScheduleRun>> {
        schedules::runs(self, id, limit)
    }

    fn interrupt_runs(&self, reason: &str, at_ms: u64, owner: Option<&str>) -> Result<usize> {
        schedules::interrupt_runs(self, reason, at_ms, owner)
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

    fn renew_leases(&self, lease: &Lease) -> Result<Vec<String>> {
        leases::renew(self, lease)
    }

    fn expire_leases(&self, now_ms: u64) -> Result<Vec<(String, String)>> {
        leases::expire(self, now_ms)
    }

    fn check_identity(&self, owner: &str) -> Result<bool> {
        self.b
            .check_identity(owner)
            .map_err(|e| error("checking this gateway's id", e))
    }

    fn clock_ms(&self) -> Result<u64> {
        let Some(q) = self.b.clock_query() else {
            return Ok(now_ms());
        };
        self.read("reading the database's clock", |c| {
            match c.first(q, &[])? {
                Some(r) => r.u64(0),
                None => Err(SqlError::Corrupt("no clock".into())),
            }
        })
    }

    fn job_epoch(&self, id: &str) -> Result<Option<u64>> {
        self.read("reading a job's epoch", |c| {
            match c.first("SELECT epoch FROM jobs WHERE id = $1", vals![id])? {
                Some(r) => r.opt_u64(0),
                None => Ok(None),
            }
        })
    }

    fn hold_identity(&self, owner: &str) -> Result<bool> {
        self.b
            .hold_identity(owner)
            .map_err(|e| error("holding this gateway's id", e))
    }

    fn interrupt_owned(&self, owner: &str) -> Result<Vec<String>> {
        leases::interrupt_owned(self, owner)
    }

    fn request_cancel(&self, id: &str) -> Result<bool> {
        leases::request_cancel(self, id)
    }

    fn cancel_requests(&self, owner: &str) -> Result<Vec<String>> {
        leases::cancel_requests(self, owner)
    }

    fn add_part(&self, part: &super::NewPart) -> Result<()> {
        sites::add(self, part)
    }

    fn claim_parts(&self, site: &str, lease: &Lease, limit: u32) -> Result<Vec<super::Part>> {
        sites::claim(self, site, lease, limit)
    }

    fn part(&self, id: &str) -> Result<Option<super::Part>> {
        sites::get(self, id)
    }

    fn add_part_events(&self, id: &str, events: &[(u64, String)]) -> Result<()> {
        sites::add_events(self, id, events)
    }

    fn part_events_after(&self, id: &str, after: u64) -> Result<Vec<(u64, String)>> {
        sites::events_after(self, id, after)
    }

    fn set_part_state(
        &self,
        id: &str,
        from: super::PartState,
        to: super::PartState,
        owner: Option<&str>,
        result: Option<&str>,
    ) -> Result<bool> {
        sites::set_state(self, id, from, to, owner, result)
    }

    fn cancel_part(&self, id: &str) -> Result<()> {
        sites::request_cancel(self, id)
    }

    fn lose_parts_of(&self, owner: &str) -> Result<Vec<String>> {
        sites::lose_owned(self, owner)
    }

    fn parts_running(&self, job: &str) -> Result<u64> {
        sites::running(self, job)
    }

    fn add_ask(&self, id: &str, site: &str, app: &str, env: &str) -> Result<()> {
        sites::add_ask(self, id, site, app, env)
    }

    fn claim_asks(
        &self,
        site: &str,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<(String, String, String)>> {
        sites::claim_asks(self, site, owner, limit)
    }

    fn answer_ask(&self, id: &str, answer: &str) -> Result<()> {
        sites::answer_ask(self, id, answer)
    }

    fn ask_answer(&self, id: &str) -> Result<Option<String>> {
        sites::ask_answer(self, id)
    }

    fn drop_ask(&self, id: &str) -> Result<()> {
        sites::drop_ask(self, id)
    }

    fn add_deliveries(&self, rows: &[super::NewDelivery]) -> Result<u64> {
        outbox::add(self, rows)
    }

    fn claim_deliveries(
        &self,
        owner: &str,
        routes: &[String],
        now_ms: u64,
        until_ms: u64,
        limit: u32,
    ) -> Result<Vec<super::Delivery>> {
        outbox::claim(self, owner, routes, now_ms, until_ms, limit)
    }

    fn record_delivery(
        &self,
        id: &str,
        attempt: u32,
        outcome: &super::Attempted,
        payload: Option<&str>,
    ) -> Result<bool> {
        outbox::record(self, id, attempt, outcome, payload)
    }

    fn deliveries(&self, job_id: &str) -> Result<Vec<super::Delivery>> {
        outbox::of_job(self, job_id)
    }

    fn create_session(&self, hash: &str, row: &super::SessionRow, max: u32) -> Result<()> {
        outbox::create_session(self, hash, row, max)
    }

    fn session(&self, hash: &str, now_ms: u64) -> Result<Option<super::SessionRow>> {
        outbox::session(self, hash, now_ms)
    }

    fn end_session(&self, hash: &str) -> Result<bool> {
        outbox::end_session(self, hash)
    }

    fn prune_sessions(&self, now_ms: u64) -> Result<u64> {
        outbox::prune_sessions(self, now_ms)
    }

    fn audit(&self, user: &str, action: &str, target: &str, outcome: &str) -> Result<()> {
        self.write("writing the audit trail", |c| {
            c.exec(
                "INSERT INTO audit (ts_ms, \"user\", action, target, outcome) VALUES ($1, $2, $3, $4, $5)",
                vals![now_ms(), user, action, target, outcome],
            )
            .map(|_| ())
        })
    }

    fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        self.read("reading the audit trail", |c| {
            c.query(
                "SELECT ts_ms, \"user\", action, target, outcome FROM audit ORDER BY id DESC LIMIT $1",
                vals![limit],
            )?
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    ts_ms: r.u64(0)?,
                    user: r.text(1)?,
                    action: r.text(2)?,
                    target: r.text(3)?,
                    outcome: r.text(4)?,
                })
            })
            .collect()
        })
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
#[cfg(test)]
#[path = "store_tests_access.rs"]
mod tests_access;
#[cfg(test)]
#[path = "store_tests_leases.rs"]
mod tests_leases;
#[cfg(test)]
#[path = "store_tests_outbox.rs"]
mod tests_outbox;
#[cfg(test)]
#[path = "store_tests_pipeline.rs"]
mod tests_pipeline;
#[cfg(test)]
#[path = "store_tests_schedules.rs"]
mod tests_schedules;
#[cfg(test)]
#[path = "store_tests_sites.rs"]
mod tests_sites;
