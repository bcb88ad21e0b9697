//! The loops of a process's leases: the renewer (the gateway id checked, leases extended
//! by the database's clock, a job no longer held cancelled and its gate closed) and the
//! look, every second, for expired leases of others (adopted or taken over) and for
//! cancel requests left by other processes.

use std::time::{Duration, Instant};

use super::clock;
use super::{Jobs, adopt};
use crate::gateway::store::{Adopt, Lease, StoreError};

/// Between looks for expired leases and for cancel requests.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Renews this process's leases, reads cancel requests for its jobs and, when `reap`,
/// takes over expired leases, until the process ends.
pub fn spawn(jobs: Jobs, reap: bool) {
    let renew_every = jobs.lease_time() / 3;
    let renewer = jobs.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(renew_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut said = Said::default();
        loop {
            every.tick().await;
            said.outcome("renewing leases", renew(&renewer).await);
        }
    });
    tokio::spawn(async move {
        let mut every = tokio::time::interval(LOOK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reaper = clock::Reaper::new(jobs.lease_time());
        let (mut taking, mut reading) = (Said::default(), Said::default());
        loop {
            every.tick().await;
            if reap {
                let taken = take_over(&jobs, &mut reaper).await;
                if taken.is_err() {
                    reaper.failed();
                }
                taking.outcome("taking over expired leases", taken.map(|_| ()));
            }
            reading.outcome("reading cancel requests", cancels(&jobs).await);
        }
    });
}

/// What a loop said about its failures: the first of a run is logged, then one a minute
/// while the database stays away (not one a second), and the end of the run.
#[derive(Default)]
struct Said {
    failing_since: Option<Instant>,
    last: Option<Instant>,
}

impl Said {
    fn outcome(&mut self, doing: &str, r: Result<(), StoreError>) {
        match r {
            Ok(()) => {
                if let Some(since) = self.failing_since.take() {
                    self.last = None;
                    let secs = since.elapsed().as_secs();
                    tracing::info!("{doing}: the database answers again (after {secs} s)");
                }
            }
            Err(e) => {
                let now = Instant::now();
                self.failing_since.get_or_insert(now);
                if self.last.is_none_or(|l| now - l >= Duration::from_secs(60)) {
                    tracing::error!("{doing}: {e}");
                    self.last = Some(now);
                }
            }
        }
    }
}

/// Cancels this process's jobs that someone asked another process to cancel.
pub async fn cancels(jobs: &Jobs) -> Result<(), StoreError> {
    if jobs.running_here().is_empty() {
        return Ok(());
    }
    let owner = jobs.owner().to_string();
    for id in jobs.db.call(move |s| s.cancel_requests(&owner)).await? {
        if !jobs.is_cancelled(&id) && jobs.cancel(&id) {
            tracing::info!("job {id}: cancel requested through another process");
        }
    }
    Ok(())
}

/// Holds the gateway's id still, then extends this process's leases (by the database's
/// clock); cancels and fences off its jobs whose lease another gateway took.
pub async fn renew(jobs: &Jobs) -> Result<(), StoreError> {
    let (owner, lease) = (jobs.owner().to_string(), jobs.lease_time());
    let started = Instant::now();
    let renewed = jobs
        .db
        .call(move |s| {
            if s.shared() && !s.check_identity(&owner)? {
                return Ok(None);
            }
            let until_ms = s.clock_ms()? + lease.as_millis() as u64;
            s.renew_leases(&Lease { owner, until_ms }).map(Some)
        })
        .await?;
    let Some(held) = renewed else {
        identity_lost(jobs);
        return Ok(());
    };
    jobs.clock.renewed(started);
    for id in jobs.running_here() {
        if !held.contains(&id) && jobs.clock.claimed_before(&id, started) {
            jobs.clock.lost(&id);
            if jobs.cancel(&id) {
                tracing::error!(
                    "job {id}: this gateway's lease on it expired and another gateway marked it interrupted; it sends nothing more"
                );
            }
        }
    }
    Ok(())
}

/// Another process took this gateway's id (after the database lost this one's
/// session): nothing here may act again.  Every job's gate closes now and the process
/// ends in two seconds (a supervisor restarts it, and it then finds the id taken).
fn identity_lost(jobs: &Jobs) {
    jobs.clock.identity_lost();
    for id in jobs.running_here() {
        jobs.cancel(&id);
    }
    tracing::error!(
        "another gateway process holds this gateway's id ({}): this one stops acting and exits",
        jobs.owner()
    );
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        std::process::exit(3);
    });
}

/// Takes over the jobs of expired leases (final events written by the store), then
/// reads their hosts.
pub async fn take_over(jobs: &Jobs, reaper: &mut clock::Reaper) -> Result<Vec<String>, StoreError> {
    let db_now = jobs.db.call(|s| s.clock_ms()).await?;
    let Some(before) = reaper.look(db_now) else {
        return Ok(Vec::new());
    };
    adopt(jobs, Adopt::Expired(before)).await?;
    let taken = jobs.db.call(move |s| s.expire_leases(before)).await?;
    if taken.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = taken.iter().map(|(id, _)| id.clone()).collect();
    crate::gateway::metrics::get().takeovers(ids.len());
    for (id, owner) in &taken {
        tracing::warn!(
            "job {id}: the lease of gateway {owner} expired; marked interrupted, lock released"
        );
    }
    jobs.events.wake_all();
    jobs.notify_interrupted(&ids).await;
    crate::gateway::reconcile::spawn(jobs.clone(), ids.clone());
    Ok(ids)
}
