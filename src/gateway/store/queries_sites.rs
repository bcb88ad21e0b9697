//! The store's queries of version 11 of the schema: a job's parts for other sites.  The
//! process that runs a job hands each host of another network segment to that site's
//! runners as a *part* (`site_parts`): queued, claimed by one runner under a lease
//! (renewed with its jobs' leases), its events written beside it (`site_events`) for the
//! job's process to relay, and its result.  Part of `queries.rs`'s `Store` impl.

use super::queries::SqlStore;
use super::sql::{Backend, Row, SqlResult, vals};
use super::{Lease, NewPart, Part, PartState, Result, now_ms};

const COLS: &str =
    "id, job_id, host, site, rollback_to, wheel, epoch, state, owner, lease_until, cancel, result";

fn part_from_row(r: &Row) -> SqlResult<Part> {
    Ok(Part {
        id: r.text(0)?,
        job_id: r.text(1)?,
        host: r.text(2)?,
        site: r.text(3)?,
        rollback_to: r.opt_text(4)?,
        wheel: r.opt_text(5)?,
        epoch: r.u64(6)?,
        state: PartState::parse(&r.text(7)?),
        owner: r.opt_text(8)?,
        lease_until: r.opt_int(9)?.map(|v| v.max(0) as u64),
        cancel: r.int(10)? != 0,
        result: r.opt_text(11)?,
    })
}

pub(super) fn add<B: Backend>(s: &SqlStore<B>, p: &NewPart) -> Result<()> {
    s.write("handing a host to its site", |c| {
        c.exec(
            "INSERT INTO site_parts (id, job_id, host, site, rollback_to, wheel, epoch, state,
                cancel, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, $8)",
            vals![
                &p.id,
                &p.job_id,
                &p.host,
                &p.site,
                &p.rollback_to,
                &p.wheel,
                p.epoch,
                now_ms()
            ],
        )
        .map(|_| ())
    })
}

/// Claims up to `limit` queued parts of `site` for `lease.owner`, oldest first, each
/// for one caller only; parts of jobs no longer running are left.
pub(super) fn claim<B: Backend>(
    s: &SqlStore<B>,
    site: &str,
    lease: &Lease,
    limit: u32,
) -> Result<Vec<Part>> {
    let sql = format!(
        "WITH picked AS MATERIALIZED (
            SELECT o.id FROM site_parts o
            WHERE o.site = $1 AND o.state = 'queued'
              AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = o.job_id AND j.state = 'running')
            ORDER BY o.created_ms, o.id LIMIT $4 {})
         UPDATE site_parts SET state = 'running', owner = $2, lease_until = $3
         WHERE id IN (SELECT id FROM picked) AND state = 'queued'
         RETURNING {COLS}",
        s.backend().skip_locked()
    );
    s.write("claiming parts of jobs", |c| {
        c.query(&sql, vals![site, &lease.owner, lease.until_ms, limit])?
            .iter()
            .map(part_from_row)
            .collect()
    })
}

pub(super) fn get<B: Backend>(s: &SqlStore<B>, id: &str) -> Result<Option<Part>> {
    s.read("reading a part of a job", |c| {
        let sql = format!("SELECT {COLS} FROM site_parts WHERE id = $1");
        c.query(&sql, vals![id])?
            .first()
            .map(part_from_row)
            .transpose()
    })
}

pub(super) fn add_events<B: Backend>(
    s: &SqlStore<B>,
    id: &str,
    events: &[(u64, String)],
) -> Result<()> {
    s.write("storing a part's events", |c| {
        for (seq, text) in events {
            c.exec(
                "INSERT INTO site_events (part_id, seq, event) VALUES ($1, $2, $3)",
                vals![id, *seq, text],
            )?;
        }
        Ok(())
    })
}

pub(super) fn events_after<B: Backend>(
    s: &SqlStore<B>,
    id: &str,
    after: u64,
) -> Result<Vec<(u64, String)>> {
    s.read("reading a part's events", |c| {
        c.query(
            "SELECT seq, event FROM site_events WHERE part_id = $1 AND seq > $2 ORDER BY seq",
            vals![id, after],
        )?
        .iter()
        .map(|r| Ok((r.u64(0)?, r.text(1)?)))
        .collect()
    })
}

/// Moves a part from `from` to `to` (with its result, when given); false if it was not
/// in `from` (or, with `owner`, not that runner's).
pub(super) fn set_state<B: Backend>(
    s: &SqlStore<B>,
    id: &str,
    from: PartState,
    to: PartState,
    owner: Option<&str>,
    result: Option<&str>,
) -> Result<bool> {
    s.write("ending a part of a job", |c| {
        c.exec(
            "UPDATE site_parts SET state = $3, result = COALESCE($5, result), ended_ms = $6
             WHERE id = $1 AND state = $2 AND ($4 = '' OR owner = $4)",
            vals![
                id,
                from.as_str(),
                to.as_str(),
                owner.unwrap_or(""),
                result,
                now_ms()
            ],
        )
        .map(|n| n == 1)
    })
}

pub(super) fn request_cancel<B: Backend>(s: &SqlStore<B>, id: &str) -> Result<()> {
    s.write("asking a part to stop", |c| {
        c.exec("UPDATE site_parts SET cancel = 1 WHERE id = $1", vals![id])
            .map(|_| ())
    })
}

/// Extends the leases of `lease.owner`'s running parts whose job still runs; their ids.
pub(super) fn renew(c: &mut dyn super::sql::Conn, lease: &Lease) -> SqlResult<Vec<String>> {
    c.texts(
        "UPDATE site_parts SET lease_until = $2
         WHERE owner = $1 AND state = 'running'
           AND job_id IN (SELECT id FROM jobs WHERE state = 'running')
         RETURNING id",
        vals![&lease.owner, lease.until_ms],
    )
}

/// The running parts of `owner` that their job's process asked to stop.
pub(super) fn cancel_requests(c: &mut dyn super::sql::Conn, owner: &str) -> SqlResult<Vec<String>> {
    c.texts(
        "SELECT id FROM site_parts WHERE owner = $1 AND state = 'running' AND cancel = 1",
        vals![owner],
    )
}

/// Marks the running parts of `owner` (a runner's previous life) lost; their ids.
pub(super) fn lose_owned<B: Backend>(s: &SqlStore<B>, owner: &str) -> Result<Vec<String>> {
    s.write("marking a runner's previous parts lost", |c| {
        c.texts(
            "UPDATE site_parts SET state = 'lost', ended_ms = $2
             WHERE owner = $1 AND state = 'running' RETURNING id",
            vals![owner, now_ms()],
        )
    })
}

pub(super) fn add_ask<B: Backend>(
    s: &SqlStore<B>,
    id: &str,
    site: &str,
    app: &str,
    env: &str,
) -> Result<()> {
    s.write("asking a site's runner", |c| {
        c.exec(
            "INSERT INTO site_asks (id, site, app, env, state, created_ms)
             VALUES ($1, $2, $3, $4, 'queued', $5)",
            vals![id, site, app, env, now_ms()],
        )
        .map(|_| ())
    })
}

/// Claims up to `limit` queued asks of `site` for `owner`: (id, app, env) each.
pub(super) fn claim_asks<B: Backend>(
    s: &SqlStore<B>,
    site: &str,
    owner: &str,
    limit: u32,
) -> Result<Vec<(String, String, String)>> {
    let sql = format!(
        "WITH picked AS MATERIALIZED (
            SELECT o.id FROM site_asks o WHERE o.site = $1 AND o.state = 'queued'
            ORDER BY o.created_ms, o.id LIMIT $3 {})
         UPDATE site_asks SET state = 'running', owner = $2
         WHERE id IN (SELECT id FROM picked) AND state = 'queued'
         RETURNING id, app, env",
        s.backend().skip_locked()
    );
    s.write("claiming asks", |c| {
        c.query(&sql, vals![site, owner, limit])?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?, r.text(2)?)))
            .collect()
    })
}

pub(super) fn answer_ask<B: Backend>(s: &SqlStore<B>, id: &str, answer: &str) -> Result<()> {
    s.write("answering an ask", |c| {
        c.exec(
            "UPDATE site_asks SET state = 'done', answer = $2 WHERE id = $1",
            vals![id, answer],
        )
        .map(|_| ())
    })
}

/// An ask's answer, once given.
pub(super) fn ask_answer<B: Backend>(s: &SqlStore<B>, id: &str) -> Result<Option<String>> {
    s.read("reading an ask's answer", |c| {
        Ok(c.query(
            "SELECT answer FROM site_asks WHERE id = $1 AND state = 'done'",
            vals![id],
        )?
        .first()
        .map(|r| r.opt_text(0))
        .transpose()?
        .flatten())
    })
}

/// Forgets an ask (its asker read the answer or stopped waiting), and asks older than an
/// hour that nobody forgot.
pub(super) fn drop_ask<B: Backend>(s: &SqlStore<B>, id: &str) -> Result<()> {
    s.write("forgetting an ask", |c| {
        c.exec(
            "DELETE FROM site_asks WHERE id = $1 OR created_ms < $2",
            vals![id, now_ms().saturating_sub(3_600_000)],
        )
        .map(|_| ())
    })
}

pub(super) fn running<B: Backend>(s: &SqlStore<B>, job: &str) -> Result<u64> {
    s.read("counting a job's running parts", |c| {
        let rows = c.query(
            "SELECT COUNT(*) FROM site_parts WHERE job_id = $1 AND state = 'running'",
            vals![job],
        )?;
        rows.first().map_or(Ok(0), |r| r.u64(0))
    })
}
