//! The store's queries of version 5 of the schema: schedules, their runs (one row per
//! schedule and slot of time, so a slot is claimed at most once, across restarts and
//! gateways) and freezes.  Part of `queries.rs`'s `Store` impl.

use deploy_wire::schedule::{FreezeInfo, ScheduleRun};

use super::queries::SqlStore;
use super::sql::{Backend, Row, SqlResult, vals};
use super::{Lease, Result, ScheduleRow};

const COLS: &str = "id, app, env, what, at_ms, cron, tz, lock_wait_secs, grace_secs, \"user\", token_id, paused, created_ms, next_ms";

fn row(r: &Row) -> SqlResult<ScheduleRow> {
    Ok(ScheduleRow {
        id: r.text(0)?,
        app: r.text(1)?,
        env: r.text(2)?,
        what: r.text(3)?,
        at_ms: r.opt_u64(4)?,
        cron: r.opt_text(5)?,
        tz: r.text(6)?,
        lock_wait_secs: r.u64(7)?,
        grace_secs: r.u64(8)?,
        user: r.text(9)?,
        token_id: r.text(10)?,
        paused: r.flag(11)?,
        created_ms: r.u64(12)?,
        next_ms: r.opt_u64(13)?,
    })
}

pub(super) fn add<B: Backend>(s: &SqlStore<B>, x: &ScheduleRow) -> Result<()> {
    s.write("adding a schedule", |c| {
        c.exec(
            &format!("INSERT INTO schedules ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"),
            vals![
                &x.id, &x.app, &x.env, &x.what, x.at_ms, &x.cron, &x.tz, x.lock_wait_secs,
                x.grace_secs, &x.user, &x.token_id, x.paused, x.created_ms, x.next_ms
            ],
        )
        .map(|_| ())
    })
}

/// The schedules not removed (all, or one).
pub(super) fn list<B: Backend>(s: &SqlStore<B>, id: Option<&str>) -> Result<Vec<ScheduleRow>> {
    s.read("reading schedules", |c| {
        c.query(
            &format!("SELECT {COLS} FROM schedules WHERE removed_ms IS NULL AND (CAST($1 AS TEXT) IS NULL OR id = $1) ORDER BY created_ms"),
            vals![id],
        )?
        .iter()
        .map(row)
        .collect()
    })
}

/// Sets `column` (next_ms, paused or removed_ms) of a schedule; false if there is none.
pub(super) fn set<B: Backend>(
    s: &SqlStore<B>,
    id: &str,
    column: &'static str,
    value: Option<i64>,
) -> Result<bool> {
    s.write("changing a schedule", |c| {
        c.exec(
            &format!("UPDATE schedules SET {column} = $2 WHERE id = $1 AND removed_ms IS NULL"),
            vals![id, value],
        )
        .map(|n| n == 1)
    })
}

/// Inserts a run for a slot unless one exists: true if this call made it.  A `running`
/// run belongs to `lease`'s gateway until it starts its job.
pub(super) fn claim<B: Backend>(
    s: &SqlStore<B>,
    id: &str,
    run: &ScheduleRun,
    lease: Option<&Lease>,
) -> Result<bool> {
    s.write("claiming a schedule's slot", |c| {
        c.exec(
            "INSERT INTO schedule_runs (schedule_id, slot_ms, state, job_id, reason, ts_ms, owner, lease_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (schedule_id, slot_ms) DO NOTHING",
            vals![
                id,
                run.slot_ms,
                &run.state,
                &run.job_id,
                &run.reason,
                run.ts_ms,
                lease.map(|l| l.owner.as_str()),
                lease.map(|l| l.until_ms)
            ],
        )
        .map(|n| n == 1)
    })
}

pub(super) fn update_run<B: Backend>(s: &SqlStore<B>, id: &str, run: &ScheduleRun) -> Result<()> {
    s.write("recording a schedule's run", |c| {
        c.exec(
            "UPDATE schedule_runs SET state = $3, job_id = $4, reason = $5, ts_ms = $6
             WHERE schedule_id = $1 AND slot_ms = $2",
            vals![
                id,
                run.slot_ms,
                &run.state,
                &run.job_id,
                &run.reason,
                run.ts_ms
            ],
        )
        .map(|_| ())
    })
}

pub(super) fn runs<B: Backend>(s: &SqlStore<B>, id: &str, limit: u32) -> Result<Vec<ScheduleRun>> {
    s.read("reading a schedule's runs", |c| {
        c.query(
            "SELECT slot_ms, state, job_id, reason, ts_ms FROM schedule_runs
             WHERE schedule_id = $1 ORDER BY slot_ms DESC LIMIT $2",
            vals![id, limit],
        )?
        .iter()
        .map(|r| {
            Ok(ScheduleRun {
                slot_ms: r.u64(0)?,
                state: r.text(1)?,
                job_id: r.opt_text(2)?,
                reason: r.text(3)?,
                ts_ms: r.u64(4)?,
            })
        })
        .collect()
    })
}

/// Marks the runs still `running` failed: all of them, or those `owner` claimed.
pub(super) fn interrupt_runs<B: Backend>(
    s: &SqlStore<B>,
    reason: &str,
    at_ms: u64,
    owner: Option<&str>,
) -> Result<usize> {
    s.write("marking interrupted schedule runs", |c| {
        c.exec(
            "UPDATE schedule_runs SET state = 'failed', reason = $1, ts_ms = $2
             WHERE state = 'running' AND (CAST($3 AS TEXT) IS NULL OR owner = $3)",
            vals![reason, at_ms, owner],
        )
        .map(|n| n as usize)
    })
}

pub(super) fn set_freeze<B: Backend>(s: &SqlStore<B>, f: &FreezeInfo) -> Result<()> {
    s.write("freezing an environment", |c| {
        c.exec(
            "INSERT INTO freezes (env, until_ms, reason, \"user\", created_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (env) DO UPDATE SET until_ms = $2, reason = $3, \"user\" = $4, created_ms = $5",
            vals![&f.env, f.until_ms, &f.reason, &f.user, f.created_ms],
        )
        .map(|_| ())
    })
}

pub(super) fn lift_freeze<B: Backend>(s: &SqlStore<B>, env: &str) -> Result<bool> {
    s.write("lifting a freeze", |c| {
        c.exec("DELETE FROM freezes WHERE env = $1", vals![env])
            .map(|n| n == 1)
    })
}

pub(super) fn freezes<B: Backend>(s: &SqlStore<B>) -> Result<Vec<FreezeInfo>> {
    s.read("reading freezes", |c| {
        c.query(
            "SELECT env, until_ms, reason, \"user\", created_ms FROM freezes ORDER BY env",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(FreezeInfo {
                env: r.text(0)?,
                until_ms: r.u64(1)?,
                reason: r.text(2)?,
                user: r.text(3)?,
                created_ms: r.u64(4)?,
            })
        })
        .collect()
    })
}
