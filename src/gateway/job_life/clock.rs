//! Time for leases: what this process may believe about its own leases (the
//! [`LeaseClock`], on its monotonic clock: a stalled process wakes up believing
//! nothing), the gate a job's commands pass ([`JobGate`]), and when a lease of another
//! process counts as expired ([`Reaper`], on the database's clock).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use crate::engine::fence::LeaseGate;

/// What this process knows of its leases: until when they are surely held (the last
/// renewal's start plus the lease, less a margin), which jobs were taken from it, and
/// whether it still holds its gateway id.
pub struct LeaseClock {
    lease: Duration,
    state: Mutex<State>,
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    /// From the last renewal of all of this process's leases.
    held_until: Option<Instant>,
    /// When each job's claim started (a claim vouches for its own job only: another job
    /// of this process may have been taken over since the last renewal).
    claimed: HashMap<String, Instant>,
    lost: HashSet<String>,
    identity_lost: bool,
}

impl LeaseClock {
    pub fn new(lease: Duration) -> Arc<LeaseClock> {
        Arc::new(LeaseClock {
            lease,
            state: Mutex::default(),
            changed: tokio::sync::Notify::new(),
        })
    }

    /// How long before the stored end of a lease this process stops trusting it: a
    /// fifth of the lease (clocks run at slightly different rates; a renewal's answer
    /// takes time).
    fn margin(&self) -> Duration {
        self.lease / 5
    }

    /// Job `id` was claimed by a call that started at `at`.
    pub fn claimed(&self, id: &str, at: Instant) {
        self.state
            .lock()
            .unwrap()
            .claimed
            .insert(id.to_string(), at);
        self.changed.notify_waiters();
    }

    /// Whether job `id` was claimed before `at` (a renewal that started at `at` and did
    /// not hold it means it was taken over; one claimed later was not yet seen by it).
    pub fn claimed_before(&self, id: &str, at: Instant) -> bool {
        (self.state.lock().unwrap().claimed.get(id)).is_none_or(|c| *c < at)
    }

    /// A renewal of every lease of this process, started at `at`, succeeded (the jobs it
    /// did not hold any more are [`Self::lost`] by the caller).
    pub fn renewed(&self, at: Instant) {
        let until = at + self.lease - self.margin();
        let mut s = self.state.lock().unwrap();
        s.held_until = Some(s.held_until.map_or(until, |u| u.max(until)));
        drop(s);
        self.changed.notify_waiters();
    }

    /// Job `id` is no longer this process's: every command of it is refused from now.
    pub fn lost(&self, id: &str) {
        self.state.lock().unwrap().lost.insert(id.to_string());
        self.changed.notify_waiters();
    }

    /// Another process holds this gateway's id: nothing of this process may act.
    pub fn identity_lost(&self) {
        self.state.lock().unwrap().identity_lost = true;
        self.changed.notify_waiters();
    }

    /// A job ended: forget it.
    pub fn forget(&self, id: &str) {
        let mut s = self.state.lock().unwrap();
        s.lost.remove(id);
        s.claimed.remove(id);
    }

    /// Ok when job `id`'s lease is held now; Err when it never will be again; None:
    /// wait for a renewal.
    fn check(&self, id: &str, now: Instant) -> Option<Result<(), String>> {
        let s = self.state.lock().unwrap();
        if s.identity_lost {
            return Some(Err("another gateway process holds this gateway's id".into()));
        }
        if s.lost.contains(id) {
            return Some(Err(
                "this gateway's lease on the job expired and another gateway took it over".into(),
            ));
        }
        let claimed = (s.claimed.get(id)).map(|at| *at + self.lease - self.margin());
        let until = s.held_until.max(claimed);
        until.filter(|u| now < *u).map(|_| Ok(()))
    }

    /// The gate of job `id`'s commands.
    pub fn gate(self: &Arc<Self>, id: &str) -> Arc<dyn LeaseGate> {
        Arc::new(JobGate {
            clock: self.clone(),
            job: id.to_string(),
        })
    }
}

/// A job's commands wait here until its lease is held (after a stall or during a
/// database outage: until a renewal succeeds), and fail once it is lost.
struct JobGate {
    clock: Arc<LeaseClock>,
    job: String,
}

impl LeaseGate for JobGate {
    fn held(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let mut said = false;
            loop {
                let changed = self.clock.changed.notified();
                if let Some(answer) = self.clock.check(&self.job, Instant::now()) {
                    if said && answer.is_ok() {
                        tracing::info!(job = %self.job, "lease renewed; the job goes on");
                    }
                    return answer;
                }
                if !said {
                    tracing::warn!(job = %self.job, "lease not renewed in time; the job waits before its next command");
                    said = true;
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), changed).await;
            }
        })
    }
}

/// Decides, look after look, from when other processes' leases may be taken over.
///
/// A lease is over when the database's clock passes its end *and* this reaper has been
/// looking without a break for a whole lease time: after a gap in its looks (the
/// database, or the way to it, was down), every owner gets a full lease to renew again
/// before anything of theirs is taken, since nobody could renew while it was down.
pub struct Reaper {
    lease: u64,
    /// Database time of the first look of the current unbroken run of looks.
    since: Option<u64>,
    last: Option<u64>,
}

/// Looks further apart than this (database time) break the run.
const GAP_MS: u64 = 3_000;

impl Reaper {
    pub fn new(lease: Duration) -> Reaper {
        Reaper {
            lease: lease.as_millis() as u64,
            since: None,
            last: None,
        }
    }

    /// A look that read the database's clock as `db_now`: the instant before which
    /// ended leases may be taken over now, or None (not yet).
    pub fn look(&mut self, db_now: u64) -> Option<u64> {
        let broken = self.last.is_none_or(|l| db_now < l || db_now - l > GAP_MS);
        if broken {
            self.since = Some(db_now);
        }
        self.last = Some(db_now);
        let since = self.since.unwrap_or(db_now);
        (db_now.saturating_sub(since) >= self.lease).then_some(db_now)
    }

    /// A look that could not read the database.
    pub fn failed(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reaper_that_looked_for_a_lease_time_takes_over_ended_leases_at_once() {
        let mut r = Reaper::new(Duration::from_secs(9));
        assert_eq!(r.look(100_000), None, "the first look starts a run");
        for t in (101_000..109_000).step_by(1000) {
            assert_eq!(r.look(t), None, "{t}");
        }
        assert_eq!(r.look(109_000), Some(109_000));
        assert_eq!(r.look(110_000), Some(110_000));
    }

    #[test]
    fn after_a_database_outage_owners_get_a_whole_lease_to_renew() {
        let mut r = Reaper::new(Duration::from_secs(9));
        for t in (0..20_000).step_by(1000) {
            r.look(t);
        }
        assert_eq!(r.look(20_000), Some(20_000));
        // 20 s without an answer: every lease ended meanwhile, by the database's clock.
        for _ in 0..20 {
            r.failed();
        }
        assert_eq!(r.look(40_000), None, "the owners could not renew");
        // Still looking once a second: a whole lease after the database came back.
        for t in (41_000..49_000).step_by(1000) {
            r.look(t);
        }
        assert_eq!(r.look(49_000), Some(49_000));
    }

    #[test]
    fn a_slow_look_breaks_the_run_like_a_failed_one() {
        let mut r = Reaper::new(Duration::from_secs(2));
        for t in (0..3_000).step_by(1000) {
            r.look(t);
        }
        assert_eq!(r.look(3_000), Some(3_000));
        assert_eq!(
            r.look(10_000),
            None,
            "7 s between looks: this reaper stalled"
        );
        assert_eq!(r.look(12_000), Some(12_000));
    }

    #[tokio::test]
    async fn a_gate_waits_for_a_renewal_and_fails_once_the_job_is_lost() {
        let clock = LeaseClock::new(Duration::from_secs(10));
        let gate = clock.gate("j1");
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.held().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "no lease yet");
        clock.renewed(Instant::now());
        assert_eq!(waiting.await.unwrap(), Ok(()));
        let (other, t0) = (LeaseClock::new(Duration::from_secs(10)), Instant::now());
        other.claimed("j9", t0);
        assert_eq!(other.check("j9", t0), Some(Ok(())));
        assert_eq!(
            other.check("j1", t0),
            None,
            "a claim vouches for its own job only"
        );
        assert_eq!(gate.held().await, Ok(()));
        clock.lost("j1");
        assert!(gate.held().await.unwrap_err().contains("took it over"));
        assert_eq!(clock.gate("j2").held().await, Ok(()), "another job's lease");
        clock.identity_lost();
        assert!(clock.gate("j2").held().await.is_err());
    }

    #[test]
    fn a_lease_is_trusted_until_its_end_less_a_fifth() {
        let clock = LeaseClock::new(Duration::from_secs(10));
        let t0 = Instant::now();
        clock.renewed(t0);
        assert_eq!(clock.check("j", t0 + Duration::from_secs(7)), Some(Ok(())));
        assert_eq!(clock.check("j", t0 + Duration::from_secs(8)), None);
    }
}
