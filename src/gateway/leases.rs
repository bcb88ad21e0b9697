//! Leases: how gateways sharing a database agree on who runs what.  Each running job
//! (and each schedule run still waiting to start its job) is held by one gateway
//! process until its lease ends; that gateway renews its leases every third of the
//! lease time.  Every gateway looks for expired leases every second: the first to see
//! one marks its job interrupted with a final event and frees its lock (exactly once:
//! the store's update only changes a job still running), then reads the job's hosts
//! to record what they serve.
//!
//! A gateway that finds a lease of its own gone (it stalled past the lease, and another
//! gateway took its job over) cancels that job: it must not go on changing hosts under
//! a lock it no longer holds.
//!
//! With SQLite (one gateway per file) start-up recovery frees what a previous life left
//! at once; leases run too and change nothing there unless an `apply` run died.

use std::time::Duration;

use super::jobs::Jobs;
use super::store::now_ms;

/// Between looks for expired leases.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// Renews this process's leases (and, when `reap`, takes over expired ones) until the
/// process ends.
pub fn spawn(jobs: Jobs, reap: bool) {
    let renew_every = jobs.lease_time() / 3;
    let renewer = jobs.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(renew_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = renew(&renewer).await {
                tracing::error!("renewing leases: {e}");
            }
        }
    });
    if reap {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(REAP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = take_over(&jobs).await {
                    tracing::error!("taking over expired leases: {e}");
                }
            }
        });
    }
}

/// Extends this gateway's leases; cancels its jobs whose lease another gateway took.
pub async fn renew(jobs: &Jobs) -> Result<(), super::store::StoreError> {
    let lease = jobs.lease();
    let held = jobs.db.call(move |s| s.renew_leases(&lease)).await?;
    for id in jobs.running_here() {
        if !held.contains(&id) && jobs.cancel(&id) {
            tracing::error!(
                "job {id}: this gateway's lease on it expired and another gateway marked it interrupted; cancelling it here"
            );
        }
    }
    Ok(())
}

/// Takes over the jobs of expired leases: final events, then their hosts read.
pub async fn take_over(jobs: &Jobs) -> Result<Vec<String>, super::store::StoreError> {
    let now = now_ms();
    let taken = jobs.db.call(move |s| s.expire_leases(now)).await?;
    if taken.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = taken.iter().map(|(id, _)| id.clone()).collect();
    jobs.final_events(ids.clone()).await?;
    for (id, owner) in &taken {
        tracing::warn!(
            "job {id}: the lease of gateway {owner} expired; marked interrupted, lock released"
        );
    }
    jobs.events.wake_all();
    super::reconcile::spawn(jobs.clone(), ids.clone());
    Ok(ids)
}
