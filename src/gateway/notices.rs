//! The gateway's side of notifications, where they are decided: a job's start and end
//! become a notice ([`Payload`]: the job, the release and the one that ran before it),
//! written to the store's outbox as one delivery per `[[notify]]` route that takes it,
//! keyed by its idempotency key `<job>.<notice>.<route>`; the outbox (`outbox.rs`) sends
//! them.  The start's deliveries are written as the job starts, the end's right after
//! its end is recorded (`jobs.rs` calls [`Notices::ended`] after `job_life::finish`).
//!
//! Decisions: deploys, rollbacks, restarts and builds are notified; checks and one-off
//! commands are not (they change no release).  A notice is written in a task of its
//! own: nothing here can delay, block or fail a job.  The release's commits are not
//! looked up here (a git host may be slow or down) but by the first attempt, which
//! stores them in the row, so every attempt sends the same notice.  What is lost: a
//! notice whose row could not be written (the database away for 10 minutes, or the
//! gateway dying in the instant between a job's end and its row).  A job interrupted by
//! a restart or a take-over gets its end notice from the process that marks it so
//! (`job_life`'s recovery and take-over call [`Notices::ended`] through
//! `Jobs::notify_interrupted`), as `failed`: its work did not get done, and routes that
//! filter on `failed` are the ones that want to hear it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deploy_wire::api::{JobInfo, JobKind, JobState};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::outbox::Outbox;
use super::store::{Db, NewDelivery};
use crate::githost::Commit;
use crate::notify::{Notice, NoticeKind, Route};

/// How long a notice waits for the database to write its deliveries, at most.
const WRITE_FOR: Duration = Duration::from_secs(600);

/// A notice as the outbox keeps it (a row's payload, JSON): no secret, no URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// The notice's name: `started`, `succeeded`, `failed` or `cancelled`.
    pub event: String,
    pub job_id: String,
    pub job_kind: String,
    pub app: String,
    pub env: String,
    pub version: String,
    pub user: String,
    pub started_ms: u64,
    /// When it happened (the same on every attempt).
    pub ts_ms: u64,
    /// The release that ran before the job: its commits are those `version` adds.
    pub before: Option<String>,
    /// The commits, once the first attempt looked them up.
    pub commits: Option<Vec<PayloadCommit>>,
}

/// A commit in a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadCommit {
    pub id: String,
    pub author: String,
    pub subject: String,
}

impl Payload {
    pub fn new(job: &JobInfo, event: NoticeKind, before: Option<String>, ts_ms: u64) -> Payload {
        Payload {
            event: event.name().to_string(),
            job_id: job.id.clone(),
            job_kind: job.kind.as_str().to_string(),
            app: job.app.clone(),
            env: job.env.clone(),
            version: job.version.clone(),
            user: job.user.clone(),
            started_ms: job.created_ms,
            ts_ms,
            before,
            commits: None,
        }
    }

    /// The idempotency key of this notice's delivery to `route`.
    pub fn key(&self, route: &str) -> String {
        format!("{}.{}.{route}", self.job_id, self.event)
    }

    /// The notice to send as delivery `key`; None if the event is not one this gateway
    /// knows (a newer gateway's row).
    pub fn notice(&self, key: &str) -> Option<Notice> {
        let commits = self.commits.iter().flatten();
        Some(Notice {
            event: NoticeKind::from_name(&self.event)?,
            job_id: self.job_id.clone(),
            job_kind: self.job_kind.clone(),
            app: self.app.clone(),
            env: self.env.clone(),
            version: self.version.clone(),
            user: self.user.clone(),
            commits: commits
                .map(|c| Commit {
                    id: c.id.clone(),
                    author: c.author.clone(),
                    subject: c.subject.clone(),
                })
                .collect(),
            started_ms: self.started_ms,
            ts_ms: self.ts_ms,
            delivery: key.to_string(),
        })
    }
}

pub struct Notices {
    routes: Vec<Route>,
    db: Db,
    outbox: Arc<Outbox>,
    /// The release each running job's environment ran when it started, looked up once
    /// (the end waits for the start's lookup).
    before: Mutex<HashMap<String, Arc<OnceCell<Option<String>>>>>,
}

impl Notices {
    /// None when the outbox has no route.
    pub fn new(db: Db, outbox: Arc<Outbox>) -> Option<Arc<Notices>> {
        if outbox.routes().is_empty() {
            return None;
        }
        Some(Arc::new(Notices {
            routes: outbox.routes().to_vec(),
            db,
            outbox,
            before: Mutex::default(),
        }))
    }

    fn notified(job: &JobInfo) -> bool {
        !job.check
            && matches!(
                job.kind,
                JobKind::Deploy | JobKind::Rollback | JobKind::Restart | JobKind::Build
            )
    }

    pub fn started(self: &Arc<Self>, job: &JobInfo) {
        if !Self::notified(job) {
            return;
        }
        let cell = Arc::new(OnceCell::new());
        (self.before.lock().unwrap_or_else(|p| p.into_inner()))
            .insert(job.id.clone(), cell.clone());
        let (this, job, ts) = (self.clone(), job.clone(), super::store::now_ms());
        tokio::spawn(async move {
            let before = cell.get_or_init(|| this.running_before(&job)).await;
            let payload = Payload::new(&job, NoticeKind::Started, before.clone(), ts);
            this.write(payload).await;
        });
    }

    pub fn ended(self: &Arc<Self>, job: &JobInfo, state: JobState) {
        if !Self::notified(job) {
            return;
        }
        let kind = match state {
            JobState::Succeeded => NoticeKind::Succeeded,
            JobState::Cancelled => NoticeKind::Cancelled,
            _ => NoticeKind::Failed,
        };
        let cell = (self.before.lock().unwrap_or_else(|p| p.into_inner()))
            .remove(&job.id)
            .unwrap_or_default();
        let (this, job, ts) = (self.clone(), job.clone(), super::store::now_ms());
        tokio::spawn(async move {
            let before = cell.get_or_init(|| this.running_before(&job)).await;
            this.write(Payload::new(&job, kind, before.clone(), ts))
                .await;
        });
    }

    /// The last release that succeeded on the job's environment.
    async fn running_before(&self, job: &JobInfo) -> Option<String> {
        if job.kind == JobKind::Build {
            return None;
        }
        let (a, e) = (job.app.clone(), job.env.clone());
        let history = self.db.call(move |s| s.deploy_history(&a, &e, 1)).await;
        history.ok().and_then(|h| h.into_iter().next())
    }

    /// Writes the notice's deliveries (one per route whose filter takes it), due now by
    /// the database's clock, then wakes the outbox.  A database that is away is waited
    /// for (up to [`WRITE_FOR`]).
    async fn write(&self, payload: Payload) {
        let Some(notice) = payload.notice("") else {
            return;
        };
        let Ok(text) = serde_json::to_string(&payload) else {
            return;
        };
        let rows: Vec<NewDelivery> = (self.routes.iter())
            .filter(|r| r.filter.matches(&notice))
            .map(|r| NewDelivery {
                id: payload.key(&r.id),
                job_id: payload.job_id.clone(),
                notice: payload.event.clone(),
                route: r.id.clone(),
                payload: text.clone(),
                due_ms: 0,
            })
            .collect();
        if rows.is_empty() {
            return;
        }
        let (start, mut wait) = (tokio::time::Instant::now(), Duration::from_millis(100));
        loop {
            let rows = rows.clone();
            let written = self
                .db
                .call(move |s| {
                    let now = s.clock_ms()?;
                    let due: Vec<_> = rows
                        .into_iter()
                        .map(|r| NewDelivery { due_ms: now, ..r })
                        .collect();
                    s.add_deliveries(&due)
                })
                .await;
            match written {
                Ok(_) => break,
                Err(e) if e.is_unavailable() && start.elapsed() < WRITE_FOR => {
                    tracing::warn!(job = %payload.job_id, "the {} notice waits for the database: {e}", payload.event);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(job = %payload.job_id, "the {} notice is lost: {e}", payload.event);
                    return;
                }
            }
        }
        self.outbox.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploy_wire::api::JobState;

    #[test]
    fn a_payload_reads_back_as_its_notice_under_its_key() {
        let job = JobInfo {
            id: "j1".into(),
            kind: JobKind::Deploy,
            app: "hello".into(),
            env: "staging".into(),
            version: "1.2.0".into(),
            check: false,
            user: "alice".into(),
            state: JobState::Running,
            created_ms: 5,
            finished_ms: None,
            error: None,
            triggered_by: None,
        };
        let mut p = Payload::new(&job, NoticeKind::Failed, Some("1.1.0".into()), 9);
        assert_eq!(p.key("webhook-abc"), "j1.failed.webhook-abc");
        let text = serde_json::to_string(&p).unwrap();
        assert!(!text.contains("http"), "{text}");
        let back: Payload = serde_json::from_str(&text).unwrap();
        assert_eq!(back, p);
        p.commits = Some(vec![PayloadCommit {
            id: "c1".into(),
            author: "Bob".into(),
            subject: "ACME-1 fix".into(),
        }]);
        let n = p.notice("j1.failed.webhook-abc").unwrap();
        assert_eq!(
            (n.event, n.delivery.as_str()),
            (NoticeKind::Failed, "j1.failed.webhook-abc")
        );
        assert_eq!(
            (n.started_ms, n.ts_ms, n.commits[0].subject.as_str()),
            (5, 9, "ACME-1 fix")
        );
        assert_eq!(
            n.line(),
            "deploy: hello 1.2.0 to staging by alice failed (job j1)"
        );
        p.event = "exploded".into();
        assert!(p.notice("k").is_none(), "a newer gateway's notice");
    }
}
