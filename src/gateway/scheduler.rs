//! The gateway's scheduler: every second, each schedule whose next slot is due is
//! claimed (one run row per schedule and slot: at most once, across restarts and
//! gateways), then run through the job service like any request, as its author's
//! token.  A slot that passed while the gateway was down runs if it is still within
//! the schedule's grace, else it is recorded as missed; a run that finds the lock held
//! waits up to the schedule's `lock_wait`, then records a skip naming the job.
//!
//! Decision: the clock is a parameter of [`tick`] (tests pass their own instants); the
//! loop passes the wall clock.  A run claimed by a gateway that stopped before the run
//! ended (before its job started, or while it waited for a lock) is marked failed when
//! a gateway starts again ([`recover`]): it is never run twice, and never retried.

use std::time::Duration;

use deploy_wire::schedule::ScheduleRun;
use tokio::task::JoinHandle;

use super::service::{JobService, ServiceError, next_slot};
use super::store::{Lease, ScheduleRow, now_ms};

/// Between ticks.
pub const TICK: Duration = Duration::from_secs(1);
/// Between tries of a run that found the lock held.
const LOCK_RETRY: Duration = Duration::from_secs(2);
/// At most this many missed slots of one schedule are recorded one by one per tick.
const MISSED_ROWS: usize = 100;

/// Marks the runs a stopped gateway left `running` failed: on SQLite all of them (one
/// gateway per file: none is this one's); on a shared database those of this gateway's
/// previous life (other gateways' are left to their leases).
pub async fn recover(svc: &JobService) -> Result<usize, ServiceError> {
    let why = "the gateway stopped before this run started its job";
    let owner = (svc.db().shared()).then(|| svc.jobs().owner().to_string());
    let n = svc
        .db()
        .call(move |s| s.interrupt_runs(why, now_ms(), owner.as_deref()))
        .await?;
    if n > 0 {
        tracing::warn!("{n} schedule run(s) were interrupted by a gateway stop");
    }
    Ok(n)
}

/// Recovers, then ticks until the process ends.
pub fn spawn(svc: JobService) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = recover(&svc).await {
            tracing::error!("scheduler: {e}");
        }
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = tick(&svc, now_ms()).await {
                tracing::error!("scheduler: {e}");
            }
        }
    })
}

/// Handles every due slot as of `now`; the runs it started (for tests to await).
pub async fn tick(svc: &JobService, now: u64) -> Result<Vec<JoinHandle<()>>, ServiceError> {
    let rows = svc.db().call(|s| s.schedules(None)).await?;
    let mut started = Vec::new();
    for row in rows.into_iter().filter(|r| !r.paused) {
        let Some(mut slot) = row.next_ms.filter(|&t| t <= now) else {
            continue;
        };
        // Catch up: every due slot but the newest was missed; the newest may still run.
        let mut missed = 0;
        while let Some(next) = next_slot(&row, slot).filter(|&t| t <= now) {
            if missed < MISSED_ROWS {
                record(svc, &row, run(slot, "missed", None, "a newer slot was due")).await;
            }
            missed += 1;
            slot = next;
        }
        // Claim, then move on: a gateway that dies in between finds the slot claimed.
        let claim = run(slot, "running", None, "claimed");
        let (id, c) = (row.id.clone(), claim.clone());
        let (owner, lease) = (svc.jobs().owner().to_string(), svc.jobs().lease_time());
        let claimed = svc
            .db()
            .call(move |s| {
                // Leases end by the database's clock (`job_life`).
                let until_ms = s.clock_ms()? + lease.as_millis() as u64;
                s.claim_run(&id, &c, Some(&Lease { owner, until_ms }))
            })
            .await?;
        let (id, after) = (row.id.clone(), next_slot(&row, slot));
        svc.db()
            .call(move |s| s.set_schedule_next(&id, after))
            .await?;
        if !claimed {
            continue; // Already handled (by an earlier life of this gateway, or another).
        }
        if now.saturating_sub(slot) > row.grace_secs.saturating_mul(1000) {
            let late = (now - slot) / 1000;
            let why = format!(
                "the gateway was not running at the time ({late} s ago; grace {} s)",
                row.grace_secs
            );
            update(svc, &row, run(slot, "missed", None, &why)).await;
            continue;
        }
        let svc = svc.clone();
        started.push(tokio::spawn(
            async move { run_slot(&svc, &row, slot).await },
        ));
    }
    Ok(started)
}

/// One claimed slot: submit, waiting for the lock up to the schedule's `lock_wait`.
async fn run_slot(svc: &JobService, row: &ScheduleRow, slot: u64) {
    let deadline = now_ms().saturating_add(row.lock_wait_secs.saturating_mul(1000));
    let outcome = loop {
        match svc.submit_scheduled(row).await {
            Ok(job) => {
                break run(
                    slot,
                    "started",
                    Some(job.id.clone()),
                    &format!("{} {}", job.kind, job.version),
                );
            }
            Err(ServiceError::Locked { job_id, holder, .. }) => {
                if now_ms() + LOCK_RETRY.as_millis() as u64 > deadline {
                    let why = format!(
                        "locked by job {job_id} of {holder} (waited {} s)",
                        row.lock_wait_secs
                    );
                    break run(slot, "skipped", None, &why);
                }
                tokio::time::sleep(LOCK_RETRY).await;
            }
            Err(ServiceError::Closed(why)) => break run(slot, "skipped", None, &why),
            Err(e) => break run(slot, "failed", None, &e.to_string()),
        }
    };
    tracing::info!(
        "schedule {} slot {slot}: {} {}",
        row.id,
        outcome.state,
        outcome.reason
    );
    update(svc, row, outcome).await;
}

fn run(slot_ms: u64, state: &str, job_id: Option<String>, reason: &str) -> ScheduleRun {
    ScheduleRun {
        slot_ms,
        state: state.to_string(),
        job_id,
        reason: reason.to_string(),
        ts_ms: now_ms(),
    }
}

/// A new run row (a missed slot); a slot already recorded keeps its row.
async fn record(svc: &JobService, row: &ScheduleRow, r: ScheduleRun) {
    let id = row.id.clone();
    if let Err(e) = svc.db().call(move |s| s.claim_run(&id, &r, None)).await {
        tracing::error!("schedule {}: {e}", row.id);
    }
}

async fn update(svc: &JobService, row: &ScheduleRow, r: ScheduleRun) {
    let id = row.id.clone();
    if let Err(e) = svc.db().call(move |s| s.update_run(&id, &r)).await {
        tracing::error!("schedule {}: {e}", row.id);
    }
}
