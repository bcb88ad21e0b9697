//! The gateway's side of notifications: a job's start and end become a [`Notice`] (with
//! the commits its release adds, from the ledger's builds and the application's git
//! host), sent by the dispatcher to the `[[notify]]` routes; every delivery attempt is
//! recorded in the job's events (`notified`), also after the job's end.
//!
//! Decision: deploys, rollbacks, restarts and builds are notified; checks and one-off
//! commands are not (they change no release).  A notice is built and sent in a task of
//! its own: nothing here can delay, block or fail a job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use deploy_wire::api::{JobInfo, JobKind, JobState};
use deploy_wire::{Event, EventKind};

use super::events::Events;
use super::pipeline_config::Pipeline;
use super::store::{Db, now_ms};
use crate::githost::Commit;
use crate::notify::{DeliveryOutcome, Dispatcher, Notice, NoticeKind};

pub struct Notices {
    dispatcher: Dispatcher,
    pipeline: Pipeline,
    db: Db,
    events: Events,
    /// The release each running job's environment ran when it started.
    before: Mutex<HashMap<String, Option<String>>>,
}

impl Notices {
    /// None when no route is configured.
    pub fn new(pipeline: &Pipeline, db: Db, events: Events) -> Option<Arc<Notices>> {
        if pipeline.notify.is_empty() {
            return None;
        }
        Some(Arc::new(Notices {
            dispatcher: Dispatcher::new(pipeline.notify.clone()),
            pipeline: pipeline.clone(),
            db,
            events,
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
        let (this, job) = (self.clone(), job.clone());
        tokio::spawn(async move {
            let before = this.running_before(&job).await;
            this.before
                .lock()
                .unwrap()
                .insert(job.id.clone(), before.clone());
            this.send(&job, NoticeKind::Started, before).await;
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
        let (this, job) = (self.clone(), job.clone());
        tokio::spawn(async move {
            let before = this.before.lock().unwrap().remove(&job.id).flatten();
            this.send(&job, kind, before).await;
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

    async fn send(&self, job: &JobInfo, event: NoticeKind, before: Option<String>) {
        let commits = self.commits(job, before).await;
        let notice = Notice {
            event,
            job_id: job.id.clone(),
            job_kind: job.kind.as_str().to_string(),
            app: job.app.clone(),
            env: job.env.clone(),
            version: job.version.clone(),
            user: job.user.clone(),
            commits,
            started_ms: job.created_ms,
            ts_ms: now_ms(),
            delivery: String::new(),
        };
        let sink = self.events.sink(&job.id);
        let report: crate::notify::Report = Arc::new(move |o: DeliveryOutcome| {
            sink.emit(Event::now(EventKind::Notified {
                notifier: o.notifier,
                event: o.event.event().to_string(),
                attempt: o.attempt,
                ok: o.ok,
                error: o.error,
            }));
        });
        self.dispatcher.dispatch(notice, report);
    }

    /// The commits the job's release adds to what ran before, when the gateway built
    /// both (none otherwise; a git host that fails is logged, never fatal).
    async fn commits(&self, job: &JobInfo, before: Option<String>) -> Vec<Commit> {
        if job.kind == JobKind::Build {
            return Vec::new();
        }
        let Ok((git, repo)) = self.pipeline.git_for(&job.app) else {
            return Vec::new();
        };
        let commit_of = |v: Option<String>| {
            let (db, app) = (self.db.clone(), job.app.clone());
            async move {
                let v = v?;
                let b = db
                    .call(move |s| s.build_of_version(&app, &v))
                    .await
                    .ok()??;
                Some(b.commit)
            }
        };
        let Some(to) = commit_of(Some(job.version.clone())).await else {
            return Vec::new();
        };
        let listed = match commit_of(before).await {
            Some(from) if from == to => Ok(Vec::new()),
            Some(from) => git.commits_between(&repo, &from, &to).await,
            None => git.resolve(&repo, &to).await.map(|c| vec![c]),
        };
        listed.unwrap_or_else(|e| {
            tracing::warn!("no commits for the notices of job {}: {e}", job.id);
            Vec::new()
        })
    }
}
