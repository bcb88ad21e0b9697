//! The store's queries of version 6 of the schema: leases.  A gateway renews the leases
//! of its running jobs and of its schedule runs that have not started their job yet;
//! any gateway takes over what an expired lease held.  Part of `queries.rs`'s `Store`
//! impl.

use super::queries::{ADOPTABLE, SqlStore, interrupt};
use super::sql::{Backend, vals};
use super::{Lease, Result, now_ms};

/// Extends every lease `lease.owner` holds to `lease.until_ms`; the running jobs (and
/// parts of jobs, `queries_sites.rs`) it still holds (a job missing here was taken over: its gateway must stop it).
pub(super) fn renew<B: Backend>(s: &SqlStore<B>, lease: &Lease) -> Result<Vec<String>> {
    s.write("renewing leases", |c| {
        c.exec(
            "UPDATE schedule_runs SET lease_until = $2 WHERE owner = $1 AND state = 'running'",
            vals![&lease.owner, lease.until_ms],
        )?;
        let mut held = c.texts(
            "UPDATE jobs SET lease_until = $2 WHERE owner = $1 AND state = 'running' RETURNING id",
            vals![&lease.owner, lease.until_ms],
        )?;
        held.extend(super::queries_sites::renew(c, lease)?);
        Ok(held)
    })
}

/// Marks the running jobs whose lease ended before `now_ms` interrupted (freeing their
/// locks) and their gateway's claimed schedule runs failed.  Returns the jobs this call
/// took over, each with the gateway that held it: each job is returned once, to one
/// caller, however many gateways ask at the same time.
pub(super) fn expire<B: Backend>(s: &SqlStore<B>, at_ms: u64) -> Result<Vec<(String, String)>> {
    s.write("taking over expired leases", |c| {
        let rows = c.query(
            "SELECT id, owner FROM jobs WHERE state = 'running' AND lease_until < $1",
            vals![at_ms],
        )?;
        let mut taken = Vec::new();
        for r in rows {
            let (id, owner) = (r.text(0)?, r.opt_text(1)?.unwrap_or_default());
            let why = format!("its gateway ({owner}) stopped renewing its lease while it ran");
            if !interrupt(c, std::slice::from_ref(&id), &why)?.is_empty() {
                taken.push((id, owner));
            }
        }
        c.exec(
            "UPDATE schedule_runs SET state = 'failed', ts_ms = $2,
                reason = 'the gateway that claimed this run stopped before it started its job'
             WHERE state = 'running' AND lease_until < $1",
            vals![at_ms, now_ms()],
        )?;
        Ok(taken)
    })
}

/// Asks the process that runs `id` to cancel it; false if it is not running.
pub(super) fn request_cancel<B: Backend>(s: &SqlStore<B>, id: &str) -> Result<bool> {
    s.write("asking for a cancel", |c| {
        c.exec(
            "UPDATE jobs SET cancel_requested = 1 WHERE id = $1 AND state = 'running'",
            vals![id],
        )
        .map(|n| n == 1)
    })
}

/// The running jobs of `owner` that someone asked to cancel.
pub(super) fn cancel_requests<B: Backend>(s: &SqlStore<B>, owner: &str) -> Result<Vec<String>> {
    s.read("reading cancel requests", |c| {
        let mut ids = c.texts(
            "SELECT id FROM jobs WHERE owner = $1 AND state = 'running' AND cancel_requested = 1",
            vals![owner],
        )?;
        ids.extend(super::queries_sites::cancel_requests(c, owner)?);
        Ok(ids)
    })
}

/// Marks the running jobs of `owner` (a gateway's previous life) interrupted and frees
/// their locks; their ids.
pub(super) fn interrupt_owned<B: Backend>(s: &SqlStore<B>, owner: &str) -> Result<Vec<String>> {
    s.write(
        "interrupting the jobs of this gateway's previous life",
        |c| {
            let ids = c.texts(
                &format!(
                    "SELECT id FROM jobs WHERE owner = $1 AND state = 'running' AND NOT {ADOPTABLE}"
                ),
                vals![owner],
            )?;
            interrupt(c, &ids, "the gateway stopped while this job ran")
        },
    )
}
