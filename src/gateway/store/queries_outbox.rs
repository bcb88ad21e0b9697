//! The store's queries of version 9 of the schema: the notification outbox and
//! dashboard sessions.  Part of `queries.rs`'s `Store` impl.
//!
//! A claim is one statement, `UPDATE ... WHERE id IN (due rows) AND <still due> RETURNING`: it moves
//! each row's `next_ms` to the claim's end and counts an attempt, so a gateway that
//! races for the same rows finds them no longer due and skips them (on PostgreSQL the
//! due rows are picked `FOR UPDATE SKIP LOCKED`, and the `WHERE` is checked again on a
//! row another transaction just changed), and a row whose claimer died is due again
//! when its claim ends.  An outcome is recorded only while the
//! row is still pending with the attempt count of its claim (a newer claim wins).  A job
//! that runs on another process is left to that process: only the runner of a job
//! numbers its events, and each attempt becomes one of them.

use super::outbox::{Attempted, Delivery, DeliveryState, NewDelivery, SessionRow};
use super::queries::SqlStore;
use super::sql::{Backend, Row, SqlResult, Value, vals};
use super::{Result, now_ms};

const COLS: &str = "id, job_id, notice, route, payload, state, attempts, next_ms, claimed_by, last_error, created_ms, done_ms";

fn delivery_from_row(r: &Row) -> SqlResult<Delivery> {
    Ok(Delivery {
        id: r.text(0)?,
        job_id: r.text(1)?,
        notice: r.text(2)?,
        route: r.text(3)?,
        payload: r.text(4)?,
        state: r.word(5)?,
        attempts: r.u64(6)? as u32,
        next_ms: r.u64(7)?,
        claimed_by: r.opt_text(8)?,
        last_error: r.opt_text(9)?,
        created_ms: r.u64(10)?,
        done_ms: r.opt_u64(11)?,
    })
}

pub(super) fn add<B: Backend>(s: &SqlStore<B>, rows: &[NewDelivery]) -> Result<u64> {
    s.write("writing notifications to the outbox", |c| {
        let mut added = 0;
        for d in rows {
            added += c.exec(
                "INSERT INTO outbox (id, job_id, notice, route, payload, state, attempts, next_ms, created_ms)
                 VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7) ON CONFLICT (id) DO NOTHING",
                vals![&d.id, &d.job_id, &d.notice, &d.route, &d.payload, d.due_ms, now_ms()],
            )?;
        }
        Ok(added)
    })
}

pub(super) fn claim<B: Backend>(
    s: &SqlStore<B>,
    owner: &str,
    routes: &[String],
    now_ms: u64,
    until_ms: u64,
    limit: u32,
) -> Result<Vec<Delivery>> {
    if routes.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (0..routes.len()).map(|i| format!("${}", i + 5)).collect();
    // The due rows are picked once (a materialized CTE: a subquery in the `WHERE` may
    // be run again per row, and its `LIMIT` with it).
    let sql = format!(
        "WITH picked AS MATERIALIZED (
            SELECT o.id FROM outbox o
            WHERE o.state = 'pending' AND o.next_ms <= $1 AND o.route IN ({})
              AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = o.job_id
                              AND j.state = 'running' AND COALESCE(j.owner, '') <> $3)
            ORDER BY o.next_ms, o.id LIMIT $4 {})
         UPDATE outbox SET attempts = attempts + 1, next_ms = $2, claimed_by = $3
         WHERE id IN (SELECT id FROM picked) AND state = 'pending' AND next_ms <= $1
         RETURNING {COLS}",
        marks.join(", "),
        s.backend().skip_locked()
    );
    let mut params = vals![now_ms, until_ms, owner, limit].to_vec();
    params.extend(routes.iter().map(Value::from));
    let mut claimed = s.write("claiming due notifications", |c| {
        c.query(&sql, &params)?
            .iter()
            .map(delivery_from_row)
            .collect::<SqlResult<Vec<_>>>()
    })?;
    claimed.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
    Ok(claimed)
}

pub(super) fn record<B: Backend>(
    s: &SqlStore<B>,
    id: &str,
    attempt: u32,
    outcome: &Attempted,
    payload: Option<&str>,
) -> Result<bool> {
    let now = now_ms();
    let (state, next, error, done) = match outcome {
        Attempted::Delivered => (DeliveryState::Delivered, now, None, Some(now)),
        Attempted::Retry { at_ms, error } => (DeliveryState::Pending, *at_ms, Some(error), None),
        Attempted::Failed { error } => (DeliveryState::Failed, now, Some(error), Some(now)),
        Attempted::Skipped => (DeliveryState::Skipped, now, None, Some(now)),
    };
    s.write("recording a notification's attempt", |c| {
        c.exec(
            "UPDATE outbox SET state = $3, next_ms = $4, last_error = COALESCE($5, last_error), done_ms = $6,
                claimed_by = NULL, payload = COALESCE($7, payload)
             WHERE id = $1 AND attempts = $2 AND state = 'pending' AND claimed_by IS NOT NULL",
            vals![id, attempt, state.as_str(), next, error, done, payload],
        )
        .map(|n| n == 1)
    })
}

pub(super) fn of_job<B: Backend>(s: &SqlStore<B>, job_id: &str) -> Result<Vec<Delivery>> {
    s.read("reading a job's notifications", |c| {
        c.query(
            &format!("SELECT {COLS} FROM outbox WHERE job_id = $1 ORDER BY created_ms, id"),
            vals![job_id],
        )?
        .iter()
        .map(delivery_from_row)
        .collect()
    })
}

pub(super) fn create_session<B: Backend>(
    s: &SqlStore<B>,
    hash: &str,
    row: &SessionRow,
    max: u32,
) -> Result<()> {
    s.write("storing a dashboard session", |c| {
        c.exec(
            "DELETE FROM sessions WHERE expires_ms <= $1",
            vals![row.created_ms],
        )?;
        c.exec(
            "INSERT INTO sessions (hash, token_id, expires_ms, created_ms) VALUES ($1, $2, $3, $4)",
            vals![hash, &row.token_id, row.expires_ms, row.created_ms],
        )?;
        let count = match c.first("SELECT COUNT(*) FROM sessions", &[])? {
            Some(r) => r.u64(0)?,
            None => 0,
        };
        if count > u64::from(max) {
            // The bound: the sessions that end first go (this one never: it is counted
            // among the newest unless every other one outlives it).
            c.exec(
                "DELETE FROM sessions WHERE hash IN (SELECT hash FROM sessions WHERE hash <> $1
                    ORDER BY expires_ms, created_ms LIMIT $2)",
                vals![hash, count - u64::from(max)],
            )?;
        }
        Ok(())
    })
}

pub(super) fn session<B: Backend>(
    s: &SqlStore<B>,
    hash: &str,
    now_ms: u64,
) -> Result<Option<SessionRow>> {
    s.read("reading a dashboard session", |c| {
        let Some(r) = c.first(
            "SELECT token_id, expires_ms, created_ms FROM sessions WHERE hash = $1 AND expires_ms > $2",
            vals![hash, now_ms],
        )?
        else {
            return Ok(None);
        };
        Ok(Some(SessionRow {
            token_id: r.text(0)?,
            expires_ms: r.u64(1)?,
            created_ms: r.u64(2)?,
        }))
    })
}

pub(super) fn end_session<B: Backend>(s: &SqlStore<B>, hash: &str) -> Result<bool> {
    s.write("ending a dashboard session", |c| {
        c.exec("DELETE FROM sessions WHERE hash = $1", vals![hash])
            .map(|n| n == 1)
    })
}

pub(super) fn prune_sessions<B: Backend>(s: &SqlStore<B>, now_ms: u64) -> Result<u64> {
    s.write("pruning expired dashboard sessions", |c| {
        c.exec("DELETE FROM sessions WHERE expires_ms <= $1", vals![now_ms])
    })
}
