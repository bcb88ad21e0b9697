//! The SQLite queries of version 5 of the schema: schedules, their runs (one row per
//! schedule and slot of time, so a slot is claimed at most once, across restarts too)
//! and freezes.  Part of `sqlite.rs`'s `Store` impl.

use deploy_wire::schedule::{FreezeInfo, ScheduleRun};
use rusqlite::{Row, params};

use super::sqlite::SqliteStore;
use super::{Result, ScheduleRow};

const COLS: &str = "id, app, env, what, at_ms, cron, tz, lock_wait_secs, grace_secs, user, token_id, paused, created_ms, next_ms";

fn opt_u64(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<u64>> {
    Ok(r.get::<_, Option<i64>>(i)?.map(|v| v as u64))
}

fn row(r: &Row<'_>) -> rusqlite::Result<ScheduleRow> {
    Ok(ScheduleRow {
        id: r.get(0)?,
        app: r.get(1)?,
        env: r.get(2)?,
        what: r.get(3)?,
        at_ms: opt_u64(r, 4)?,
        cron: r.get(5)?,
        tz: r.get(6)?,
        lock_wait_secs: r.get::<_, i64>(7)? as u64,
        grace_secs: r.get::<_, i64>(8)? as u64,
        user: r.get(9)?,
        token_id: r.get(10)?,
        paused: r.get::<_, i64>(11)? != 0,
        created_ms: r.get::<_, i64>(12)? as u64,
        next_ms: opt_u64(r, 13)?,
    })
}

pub(super) fn add(s: &SqliteStore, x: &ScheduleRow) -> Result<()> {
    s.with("adding a schedule", |c| {
        c.execute(
            &format!("INSERT INTO schedules ({COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)"),
            params![
                x.id, x.app, x.env, x.what, x.at_ms.map(|v| v as i64), x.cron, x.tz,
                x.lock_wait_secs as i64, x.grace_secs as i64, x.user, x.token_id,
                x.paused as i64, x.created_ms as i64, x.next_ms.map(|v| v as i64)
            ],
        )
        .map(|_| ())
    })
}

/// The schedules not removed (all, or one).
pub(super) fn list(s: &SqliteStore, id: Option<&str>) -> Result<Vec<ScheduleRow>> {
    s.with("reading schedules", |c| {
        let mut st = c.prepare(&format!(
            "SELECT {COLS} FROM schedules WHERE removed_ms IS NULL AND (?1 IS NULL OR id = ?1) ORDER BY created_ms"
        ))?;
        st.query_map(params![id], row)?.collect()
    })
}

/// Sets `column` (next_ms, paused or removed_ms) of a schedule; false if there is none.
pub(super) fn set(
    s: &SqliteStore,
    id: &str,
    column: &'static str,
    value: Option<i64>,
) -> Result<bool> {
    s.with("changing a schedule", |c| {
        c.execute(
            &format!("UPDATE schedules SET {column} = ?2 WHERE id = ?1 AND removed_ms IS NULL"),
            params![id, value],
        )
        .map(|n| n == 1)
    })
}

/// Inserts a run for a slot unless one exists: true if this call made it.
pub(super) fn claim(s: &SqliteStore, id: &str, run: &ScheduleRun) -> Result<bool> {
    s.with("claiming a schedule's slot", |c| {
        c.execute(
            "INSERT OR IGNORE INTO schedule_runs (schedule_id, slot_ms, state, job_id, reason, ts_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, run.slot_ms as i64, run.state, run.job_id, run.reason, run.ts_ms as i64],
        )
        .map(|n| n == 1)
    })
}

pub(super) fn update_run(s: &SqliteStore, id: &str, run: &ScheduleRun) -> Result<()> {
    s.with("recording a schedule's run", |c| {
        c.execute(
            "UPDATE schedule_runs SET state = ?3, job_id = ?4, reason = ?5, ts_ms = ?6
             WHERE schedule_id = ?1 AND slot_ms = ?2",
            params![
                id,
                run.slot_ms as i64,
                run.state,
                run.job_id,
                run.reason,
                run.ts_ms as i64
            ],
        )
        .map(|_| ())
    })
}

pub(super) fn runs(s: &SqliteStore, id: &str, limit: u32) -> Result<Vec<ScheduleRun>> {
    s.with("reading a schedule's runs", |c| {
        let mut st = c.prepare(
            "SELECT slot_ms, state, job_id, reason, ts_ms FROM schedule_runs
             WHERE schedule_id = ?1 ORDER BY slot_ms DESC LIMIT ?2",
        )?;
        st.query_map(params![id, limit], |r| {
            Ok(ScheduleRun {
                slot_ms: r.get::<_, i64>(0)? as u64,
                state: r.get(1)?,
                job_id: r.get(2)?,
                reason: r.get(3)?,
                ts_ms: r.get::<_, i64>(4)? as u64,
            })
        })?
        .collect()
    })
}

pub(super) fn interrupt_runs(s: &SqliteStore, reason: &str, at_ms: u64) -> Result<usize> {
    s.with("marking interrupted schedule runs", |c| {
        c.execute(
            "UPDATE schedule_runs SET state = 'failed', reason = ?1, ts_ms = ?2 WHERE state = 'running'",
            params![reason, at_ms as i64],
        )
    })
}

pub(super) fn set_freeze(s: &SqliteStore, f: &FreezeInfo) -> Result<()> {
    s.with("freezing an environment", |c| {
        c.execute(
            "INSERT INTO freezes (env, until_ms, reason, user, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (env) DO UPDATE SET until_ms = ?2, reason = ?3, user = ?4, created_ms = ?5",
            params![f.env, f.until_ms as i64, f.reason, f.user, f.created_ms as i64],
        )
        .map(|_| ())
    })
}

pub(super) fn lift_freeze(s: &SqliteStore, env: &str) -> Result<bool> {
    s.with("lifting a freeze", |c| {
        c.execute("DELETE FROM freezes WHERE env = ?1", params![env])
            .map(|n| n == 1)
    })
}

pub(super) fn freezes(s: &SqliteStore) -> Result<Vec<FreezeInfo>> {
    s.with("reading freezes", |c| {
        let mut st =
            c.prepare("SELECT env, until_ms, reason, user, created_ms FROM freezes ORDER BY env")?;
        st.query_map([], |r| {
            Ok(FreezeInfo {
                env: r.get(0)?,
                until_ms: r.get::<_, i64>(1)? as u64,
                reason: r.get(2)?,
                user: r.get(3)?,
                created_ms: r.get::<_, i64>(4)? as u64,
            })
        })?
        .collect()
    })
}
