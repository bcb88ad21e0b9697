//! A job's life, in one place: the only code that changes a job's state.
//!
//! ```text
//!   claim ──> running ──> finishing ──> finished (succeeded, failed, cancelled)
//!                │                         ^
//!                └── lease taken over, ────┘ interrupted
//!                    or recovered at start
//! ```
//!
//! - **claim** ([`claim`]): one store transaction creates the job, takes its
//!   (application, environment) lock and gives it a lease (this process's, until the
//!   database's clock passes its end) and a fencing *epoch*, greater than any before.
//!   The API accepts a job and the same process claims it at once: a gateway is API and
//!   runner in one (a queue of accepted jobs that separate runners claim is the next
//!   step, for runners per network segment).
//! - **running**: the job's commands carry its epoch to the hosts and wait, before each
//!   one, until this process holds the lease ([`clock::JobGate`]; see
//!   `crate::engine::fence`).  The renewer ([`spawn`]) extends this process's leases every
//!   third of the lease time; a job missing from a renewal's answer was taken over, so
//!   it is cancelled and its gate refuses every further command.
//! - **finishing** ([`finish`]): every event the job emitted is stored first; then one
//!   transaction records the end: the state, the final event (`job_finished`) and the
//!   lock freed, only if the job is still running.  The store refuses any event of a job
//!   after that (but notes: a notification's delivery).
//! - **adopted** ([`adopt`]): a build job whose follower stopped (a restart, a lease
//!   taken over) while its CI build is still followed (`build_follows`) is not
//!   interrupted: the gateway that finds it claims it (a new lease and epoch) and
//!   follows the same build on, so the CI server's work is never lost or done twice.
//! - **interrupted**: a job whose owner stopped renewing (judged by the database's clock
//!   and the [`clock::Reaper`]), or that a gateway's previous life left running, is
//!   marked interrupted with its final event (how its hosts ended) in one transaction,
//!   then its hosts are read (`reconcile`).
//!
//! The gateway's id: on a shared database each check before a renewal makes sure this
//! process still holds it (taking it again after the database restarted); if another
//! process holds it, this one stops acting: every gate closes and the process exits.

pub mod clock;
mod leases;

pub use leases::{cancels, renew, spawn, take_over};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use deploy_wire::api::{JobInfo, JobKind, JobState, LedgerEntry, LedgerResult};
use deploy_wire::{Event, EventKind, HostStatus, JobStatus};

use super::build_job;
use super::jobs::{self, Jobs};
use super::store::{Adopt, JobEnd, Lease, LockHolder, Orphans, StoreError, now_ms};
use crate::engine;

/// What a claim gives the job: its fencing epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub epoch: u64,
}

/// Creates the job and takes its (application, environment) lock, unless held.
pub async fn claim(jobs: &Jobs, job: &JobInfo) -> Result<Result<Claim, LockHolder>, StoreError> {
    let (job, owner, lease) = (job.clone(), jobs.owner().to_string(), jobs.lease_time());
    let job_id = job.id.clone();
    let started = Instant::now();
    let claimed = jobs
        .db
        .call(move |s| {
            let until_ms = s.clock_ms()? + lease.as_millis() as u64;
            s.start_job(&job, &Lease { owner, until_ms })
        })
        .await?;
    Ok(claimed.map(|epoch| {
        jobs.clock.claimed(&job_id, started);
        Claim { epoch }
    }))
}

/// Records a job's end: its events stored, then its state and final event in one
/// transaction, then (if it was still this process's) its ledger rows, its place in the
/// deploy history and the audit trail.
pub async fn finish(jobs: &Jobs, job: &JobInfo, result: engine::JobResult, last: Option<Event>) {
    // Every event first, so a follower that sees the job ended has seen them all.
    jobs.events.close(&job.id).await;
    let state = jobs::job_state(result.status);
    let error =
        (result.hosts.iter().find_map(|h| h.error.clone())).or_else(|| result.error.clone());
    let event = last.unwrap_or_else(|| Event::now(final_kind(&result)));
    let end = JobEnd {
        state,
        error,
        event,
    };
    let job2 = job.clone();
    let recorded = jobs
        .db
        .call(move |s| {
            let job = job2;
            if !s.finish_job(&job.id, &end)? {
                return Ok(false);
            }
            // A one-off command changes no release: no ledger rows.
            if !job.check && job.kind != JobKind::Run {
                for h in &result.hosts {
                    let from = s.live(&job.app, &job.env, &h.host)?.map(|e| e.version);
                    s.add_ledger(&LedgerEntry {
                        job_id: job.id.clone(),
                        app: job.app.clone(),
                        env: job.env.clone(),
                        host: h.host.clone(),
                        version: job.version.clone(),
                        from_version: from,
                        result: ledger_result(h.status),
                        user: job.user.clone(),
                        ts_ms: now_ms(),
                        artifact: None,
                        env_sha256: h.env_sha256.clone(),
                    })?;
                }
            }
            if job.kind == JobKind::Deploy && state == JobState::Succeeded {
                s.add_deploy(&job.app, &job.env, &job.version, &job.id)?;
            }
            let target = format!("{}/{} {} ({})", job.app, job.env, job.version, job.id);
            s.audit(
                &job.user,
                &format!("{} finished", job.kind),
                &target,
                state.as_str(),
            )?;
            Ok(true)
        })
        .await;
    match recorded {
        Ok(true) => {
            let secs = now_ms().saturating_sub(job.created_ms) as f64 / 1000.0;
            crate::gateway::metrics::get().job_ended(job.kind.as_str(), state.as_str(), secs);
            tracing::info!("job {}", state)
        }
        Ok(false) => tracing::error!(
            "job {state} here, but another gateway had already marked it interrupted (this gateway's lease on it expired); nothing more is recorded"
        ),
        Err(e) => tracing::error!("cannot record the end of the job: {e}"),
    }
    jobs.clock.forget(&job.id);
    jobs.events.wake_all();
}

/// A final event from the engine's result, for work that emitted none.
fn final_kind(r: &engine::JobResult) -> EventKind {
    let count = |s: HostStatus| r.hosts.iter().filter(|h| h.status == s).count() as u32;
    let (ok, changed) = (count(HostStatus::Ok), count(HostStatus::Changed));
    EventKind::JobFinished {
        status: r.status,
        elapsed_ms: r.elapsed.as_millis() as u64,
        hosts_ok: ok,
        hosts_changed: changed,
        hosts_failed: r.hosts.len() as u32 - ok - changed,
        hosts_unreachable: count(HostStatus::Unreachable),
        hosts_cancelled: count(HostStatus::Cancelled),
    }
}

/// Marks the running jobs of stopped runners interrupted (each with its final event)
/// and frees their locks, but for build jobs, which are adopted; the interrupted ids.
pub async fn recover(jobs: &Jobs, which: Orphans) -> Result<Vec<String>, StoreError> {
    let ids = jobs.db.call(move |s| s.interrupt_running(which)).await?;
    jobs.notify_interrupted(&ids).await;
    adopt(jobs, Adopt::Orphans(which)).await?;
    Ok(ids)
}

/// Marks the running jobs of this gateway's previous life interrupted (a shared
/// database: other gateways' jobs are left to their leases), but for build jobs, which
/// are adopted; the interrupted ids.
pub async fn recover_own(jobs: &Jobs) -> Result<Vec<String>, StoreError> {
    let owner = jobs.owner().to_string();
    let o = owner.clone();
    let ids = jobs.db.call(move |s| s.interrupt_owned(&o)).await?;
    jobs.notify_interrupted(&ids).await;
    adopt(jobs, Adopt::Owner(owner)).await?;
    Ok(ids)
}

/// Claims the running build jobs `from` says whose CI build is still followed, and
/// follows each build on from where its follower stopped.  Their ids.
pub async fn adopt(jobs: &Jobs, from: Adopt) -> Result<Vec<String>, StoreError> {
    let (owner, lease) = (jobs.owner().to_string(), jobs.lease_time());
    let started = Instant::now();
    let adopted = jobs
        .db
        .call(move |s| {
            let until_ms = s.clock_ms()? + lease.as_millis() as u64;
            let mut found = Vec::new();
            for (job, _epoch) in s.adopt_builds(&Lease { owner, until_ms }, &from)? {
                let follow = s.build_follow(&job.id)?;
                found.push((job, follow));
            }
            Ok(found)
        })
        .await?;
    let http = crate::artifacts::client(reqwest::Client::builder())
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| StoreError::Query {
            doing: "adopting build jobs",
            message: e.to_string(),
        })?;
    let mut ids = Vec::new();
    for (job, follow) in adopted {
        jobs.clock.claimed(&job.id, started);
        let order = build_job::order_for(
            jobs,
            &job.app,
            &job.version,
            http.clone(),
            build_job::BUILD_POLL,
        );
        match order {
            Ok(order) => {
                tracing::warn!(
                    "job {}: its follower stopped; following its build on",
                    job.id
                );
                ids.push(job.id.clone());
                jobs.spawn_build(job, order, follow);
            }
            Err(why) => {
                // The config no longer builds this app: the job ends, saying why.
                tracing::error!("job {}: cannot follow its build on: {why}", job.id);
                let result = engine::JobResult {
                    status: JobStatus::Failed,
                    hosts: Vec::new(),
                    elapsed: Duration::ZERO,
                    error: Some(format!("its build could not be followed again: {why}")),
                };
                finish(jobs, &job, result, None).await;
                jobs.notify_end(&job, JobState::Failed);
            }
        }
    }
    Ok(ids)
}

/// The final event of a job found running after its owner stopped: its time from
/// `started` to now, and its hosts as their stored `host_finished` events say (a host
/// without one counts as failed: nobody knows where it stopped).  Pure; the store calls
/// it inside the transaction that marks the job interrupted.
pub fn interrupted(started_ms: u64, stored: &[(u64, String)]) -> EventKind {
    // Each host's last word (a halt rollback may finish a host twice).
    let mut last: BTreeMap<String, Option<HostStatus>> = BTreeMap::new();
    for (_, data) in stored {
        match serde_json::from_str::<Event>(data).map(|e| e.kind) {
            Ok(EventKind::JobStarted { hosts, .. }) => {
                last.extend(hosts.into_iter().map(|h| (h, None)));
            }
            Ok(EventKind::HostFinished { host, status, .. }) => {
                last.insert(host, Some(status));
            }
            _ => {}
        }
    }
    let count = |want: HostStatus| last.values().filter(|s| **s == Some(want)).count() as u32;
    let (ok, changed) = (count(HostStatus::Ok), count(HostStatus::Changed));
    EventKind::JobFinished {
        status: JobStatus::Interrupted,
        elapsed_ms: now_ms().saturating_sub(started_ms),
        hosts_ok: ok,
        hosts_changed: changed,
        hosts_failed: last.len() as u32 - ok - changed,
        hosts_unreachable: count(HostStatus::Unreachable),
        hosts_cancelled: count(HostStatus::Cancelled),
    }
}

fn ledger_result(status: HostStatus) -> LedgerResult {
    match status {
        HostStatus::Ok => LedgerResult::Ok,
        HostStatus::Changed => LedgerResult::Changed,
        HostStatus::Failed => LedgerResult::Failed,
        HostStatus::Unreachable => LedgerResult::Unreachable,
        HostStatus::Cancelled => LedgerResult::Cancelled,
    }
}

#[cfg(test)]
mod tests;
