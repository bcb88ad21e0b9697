//! The notification outbox's sender: on every gateway (and `apply` run), a loop that
//! claims due deliveries from the store, sends each in a task of its own through
//! `notify::deliver::attempt`, and records how it went; every attempt is also reported
//! (the gateway makes it a `notified` event of the job, stored as a note).
//!
//! At least once: a delivery is claimed (one attempt counted, the row held until the
//! longest attempt could have ended, by the database's clock), sent, then recorded; a
//! gateway that dies in between leaves the row to be claimed again when its claim ends,
//! by itself after a restart or by any gateway on a shared database, and the receiver
//! gets it again with the same idempotency key.  A retryable failure is due again after
//! the route's backoff; a permanent one, or the last attempt allowed, ends the row
//! (`failed`, with the notifier's scrubbed line).  A notice whose notifier does not want
//! it (JIRA without an issue key) ends `skipped`, nothing sent.
//!
//! Decisions: only rows of routes this gateway knows are claimed (a route changed in
//! one gateway's config is not sent by another's old one; a removed route's rows stay
//! pending until retention prunes their job); a job that runs in another process is left
//! to that process (its events are numbered there).  The loop polls every
//! [`POLL`] and is woken at once when this process writes a notice; at most
//! [`IN_FLIGHT`] deliveries are sent at once.

use std::sync::Arc;
use std::time::Duration;

use deploy_wire::{Event, EventKind};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::events::Events;
use super::notices::{Payload, PayloadCommit};
use super::pipeline_config::Pipeline;
use super::store::{Attempted, Db, Delivery, StoreError};
use crate::githost::Commit;
use crate::notify::{DeliveryOutcome, Report, Route, deliver};

/// How often the loop looks for due deliveries.
pub const POLL: Duration = Duration::from_secs(1);
/// Deliveries sent at once, at most.
pub const IN_FLIGHT: usize = 16;
/// A claim outlives the longest attempt by this much.
const CLAIM_MARGIN: Duration = Duration::from_secs(30);

/// What an attempt decided: an end, or a retry after a wait (dated by the database's
/// clock when it is recorded).
#[derive(Debug, Clone)]
enum Next {
    Ended(Attempted),
    RetryIn(Duration, String),
}

pub struct Outbox {
    db: Db,
    routes: Vec<Route>,
    /// Claims are made, and jobs recognised as this process's, under this name.
    owner: String,
    report: Report,
    /// Where a release's commits are looked up (none in tests of the notifiers).
    pipeline: Option<Pipeline>,
    wake: Notify,
    slots: Arc<Semaphore>,
}

impl Outbox {
    pub fn new(db: Db, routes: Vec<Route>, owner: &str, report: Report) -> Outbox {
        Outbox {
            db,
            routes,
            owner: owner.to_string(),
            report,
            pipeline: None,
            wake: Notify::new(),
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
        }
    }

    /// The gateway's outbox: `[[notify]]`'s routes, commits from the pipeline's git
    /// hosts, each attempt a `notified` event of its job (a note).
    pub fn gateway(db: Db, pipeline: &Pipeline, owner: &str, events: Events) -> Outbox {
        let report: Report = Arc::new(move |o: DeliveryOutcome| {
            events.sink(&o.job_id).emit(Event::now(EventKind::Notified {
                notifier: o.notifier,
                event: o.event.event().to_string(),
                attempt: o.attempt,
                ok: o.ok,
                error: o.error,
            }));
        });
        let mut outbox = Outbox::new(db, pipeline.notify.clone(), owner, report);
        outbox.pipeline = Some(pipeline.clone());
        outbox
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Looks for due deliveries now (a notice was just written).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs the loop for the process's life.
    pub fn spawn(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                match this.pass().await {
                    Ok(_) if failing => {
                        tracing::info!("notifications: the database answers again");
                        failing = false;
                    }
                    Ok(_) => {}
                    Err(e) if !failing => {
                        tracing::warn!("notifications wait: {e}");
                        failing = true;
                    }
                    Err(_) => {}
                }
                tokio::select! {
                    _ = this.wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        });
    }

    /// Claims what is due (as many as may be sent now) and sends each in a task of its
    /// own; their handles (the loop lets them run, tests wait for them).
    pub async fn pass(self: &Arc<Self>) -> Result<Vec<JoinHandle<()>>, StoreError> {
        let free = self.slots.available_permits() as u32;
        if free == 0 || self.routes.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = self.routes.iter().map(|r| r.id.clone()).collect();
        let longest = (self.routes.iter().map(|r| r.retry.timeout).max()).unwrap_or_default();
        let hold = (longest + CLAIM_MARGIN).as_millis() as u64;
        let owner = self.owner.clone();
        let claimed = self
            .db
            .call(move |s| {
                let now = s.clock_ms()?;
                s.claim_deliveries(&owner, &ids, now, now + hold, free)
            })
            .await?;
        let mut sends = Vec::new();
        for d in claimed {
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                break;
            };
            sends.push(tokio::spawn(self.clone().send(d, permit)));
        }
        Ok(sends)
    }

    /// One attempt of one claimed delivery, reported and recorded.
    async fn send(self: Arc<Self>, d: Delivery, _permit: OwnedSemaphorePermit) {
        let Some(route) = self.routes.iter().find(|r| r.id == d.route) else {
            return; // claimed for a route this gateway knows: not reached
        };
        let mut payload: Payload = match serde_json::from_str(&d.payload) {
            Ok(p) => p,
            Err(e) => {
                let error = format!("unreadable notice: {e}");
                return self
                    .record(&d, Next::Ended(Attempted::Failed { error }), None)
                    .await;
            }
        };
        let mut filled = None;
        if payload.commits.is_none() {
            let commits = self.commits(&payload).await;
            payload.commits = Some(commits.into_iter().map(to_payload).collect());
            filled = serde_json::to_string(&payload).ok();
        }
        let Some(notice) = payload.notice(&d.id) else {
            let error = format!("unknown notice {:?}", payload.event);
            return self
                .record(&d, Next::Ended(Attempted::Failed { error }), filled)
                .await;
        };
        if !route.notifier.wants(&notice) {
            return self
                .record(&d, Next::Ended(Attempted::Skipped), filled)
                .await;
        }
        let result = deliver::attempt(route.notifier.as_ref(), &notice, route.retry.timeout).await;
        let retry_in = route.retry.next(d.attempts, &result);
        let error = result.err().map(|e| e.to_string());
        let name = route.notifier.describe();
        if let Some(e) = &error {
            tracing::warn!(notifier = %name, attempt = d.attempts, delivery = %d.id, "notification failed: {e}");
        }
        (self.report)(DeliveryOutcome {
            notifier: name,
            event: notice.event,
            job_id: notice.job_id.clone(),
            delivery: d.id.clone(),
            attempt: d.attempts,
            attempts: route.retry.attempts,
            ok: error.is_none(),
            error: error.clone(),
            retry_in,
        });
        let next = match (error, retry_in) {
            (None, _) => Next::Ended(Attempted::Delivered),
            (Some(error), Some(wait)) => Next::RetryIn(wait, error),
            (Some(error), None) => Next::Ended(Attempted::Failed { error }),
        };
        self.record(&d, next, filled).await;
        if let Some(wait) = retry_in.filter(|w| *w < POLL) {
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                this.wake();
            });
        }
    }

    /// Records an attempt's outcome, trying again a few times while the database is
    /// away; if it cannot, the claim lapses and the delivery is made again (at least
    /// once).
    async fn record(&self, d: &Delivery, next: Next, payload: Option<String>) {
        let (id, attempt) = (d.id.clone(), d.attempts);
        for wait in [100, 500, 2000, 5000] {
            let (key, next, payload) = (id.clone(), next.clone(), payload.clone());
            let done = self
                .db
                .call(move |s| {
                    let outcome = match next {
                        Next::Ended(o) => o,
                        Next::RetryIn(wait, error) => Attempted::Retry {
                            at_ms: s.clock_ms()? + wait.as_millis() as u64,
                            error,
                        },
                    };
                    s.record_delivery(&key, attempt, &outcome, payload.as_deref())
                })
                .await;
            match done {
                Ok(true) => return,
                Ok(false) => {
                    tracing::warn!(delivery = %id, attempt, "a notification's outcome came after its claim ended; it is sent again");
                    return;
                }
                Err(e) if e.is_unavailable() => {
                    tracing::warn!(delivery = %id, "cannot record a notification's attempt yet: {e}");
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                Err(e) => {
                    tracing::error!(delivery = %id, "cannot record a notification's attempt: {e}");
                    return;
                }
            }
        }
    }

    /// The commits the job's release adds to what ran before, when the gateway built
    /// both (none otherwise; a git host that fails is logged, never fatal).
    async fn commits(&self, p: &Payload) -> Vec<Commit> {
        let Some(pipeline) = &self.pipeline else {
            return Vec::new();
        };
        if p.job_kind == "build" {
            return Vec::new();
        }
        let Ok((git, repo)) = pipeline.git_for(&p.app) else {
            return Vec::new();
        };
        let commit_of = |v: Option<String>| {
            let (db, app) = (self.db.clone(), p.app.clone());
            async move {
                let v = v?;
                let b = db
                    .call(move |s| s.build_of_version(&app, &v))
                    .await
                    .ok()??;
                Some(b.commit)
            }
        };
        let Some(to) = commit_of(Some(p.version.clone())).await else {
            return Vec::new();
        };
        let listed = match commit_of(p.before.clone()).await {
            Some(from) if from == to => Ok(Vec::new()),
            Some(from) => git.commits_between(&repo, &from, &to).await,
            None => git.resolve(&repo, &to).await.map(|c| vec![c]),
        };
        listed.unwrap_or_else(|e| {
            tracing::warn!("no commits for the notices of job {}: {e}", p.job_id);
            Vec::new()
        })
    }
}

fn to_payload(c: Commit) -> PayloadCommit {
    PayloadCommit {
        id: c.id,
        author: c.author,
        subject: c.subject,
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
