//! A build job (`deploy build`, and the first half of `deploy release --ref`): the
//! application's CI builder builds one commit, its console streamed as the job's output;
//! then the wheel it archived is found on the application's index and recorded with the
//! commit, the build number and the index's SHA-256: the ledger's link from a commit to
//! a file.  A build touches no host.
//!
//! The build is followed through the store (`build_follows`): its builder id at once,
//! its number and page once it leaves the queue, how far its console was read.  So a
//! gateway that adopts the job after its follower stopped (`job_life`) follows the same
//! build on from there, and a build of a commit whose build nobody followed to its end
//! adopts that build (its wheel, if it made one) instead of building again.
//!
//! Decisions: polls that fail retryably (the CI server restarting, a network blip) are
//! tried again with backoff for up to [`OUTAGE`]; a build that waits in the queue longer
//! than the config's `build_queue_timeout_secs` fails its job and its queue item is
//! cancelled; a cancelled job cancels the queue item or stops the build.

mod follow;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deploy_wire::api::JobInfo;
use deploy_wire::pipeline::BuildRecord;
use deploy_wire::{Event, EventKind, JobStatus, StepStatus, Stream};

use super::jobs::JobWork;
use super::store::{BuildFollow, Db, now_ms};
use crate::artifacts::ArtifactSource;
use crate::builder::{BuildRef, BuildRequest, Builder};
use crate::engine::{CancelFlag, EventSink, JobResult};
use crate::githost::{BuildStatus, GitHost};
#[cfg(test)]
use follow::Ended;
use follow::{Ctx, run};

/// What a build job needs, decided by the job service.
pub struct BuildOrder {
    pub builder: Arc<dyn Builder>,
    pub source: Arc<dyn ArtifactSource>,
    /// The application's package on the index.
    pub package: String,
    pub request: BuildRequest,
    /// Between polls of the builder.
    pub interval: Duration,
    pub http: reqwest::Client,
    /// Where the build's status is shown beside its commit (Bitbucket), with the repo.
    pub git: Option<(Arc<dyn GitHost>, String)>,
    /// How long the build may wait in the builder's queue.
    pub queue_limit: Duration,
    /// How long polls may fail retryably in a row ([`OUTAGE`]).
    pub outage: Duration,
}

/// The order of a build of `commit` of `app`, from the gateway's config and inventory
/// (for a new build job, and for a job adopted after its follower stopped).
pub fn order_for(
    jobs: &super::jobs::Jobs,
    app: &str,
    commit: &str,
    http: reqwest::Client,
    interval: Duration,
) -> Result<BuildOrder, String> {
    let pipeline = jobs
        .pipeline()
        .ok_or("this gateway has no pipeline config")?;
    let builder = pipeline.builder_for(app)?;
    let (git, repo) = pipeline.git_for(app)?;
    let inv = jobs.inventory().map_err(|e| e.to_string())?;
    let a = inv.app(app).map_err(|e| e.message)?;
    Ok(BuildOrder {
        builder,
        source: jobs.source_for(a)?,
        package: a.package.clone(),
        request: BuildRequest {
            app: app.to_string(),
            commit: commit.to_string(),
        },
        interval,
        http,
        git: Some((git, repo)),
        queue_limit: jobs.build_queue_limit(),
        outage: OUTAGE,
    })
}

/// Console lines kept for the failure message.
pub(super) const LAST_LINES: usize = 8;
/// Between polls of a CI builder.
pub const BUILD_POLL: Duration = Duration::from_millis(500);
/// How long polls may fail retryably in a row before the build is given up (a permanent
/// failure gives it up at once).
const OUTAGE: Duration = Duration::from_secs(5 * 60);
/// The longest wait between polls that failed.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The job's work; `resumed`: the build an earlier follower of this job left.
pub fn work(
    order: BuildOrder,
    job: JobInfo,
    db: Db,
    sink: Arc<dyn EventSink>,
    cancel: CancelFlag,
    resumed: Option<BuildFollow>,
) -> JobWork {
    Box::pin(async move {
        let started = Instant::now();
        let commit = order.request.commit.clone();
        if resumed.is_none() {
            sink.emit(Event::now(EventKind::JobStarted {
                app: job.app.clone(),
                env: job.env.clone(),
                version: commit.clone(),
                hosts: Vec::new(),
                check: false,
                steps: vec!["build".into()],
            }));
            sink.emit(Event::now(EventKind::PhaseStarted {
                phase: "build".into(),
                host: None,
            }));
        }
        let ctx = Ctx {
            order: &order,
            job: &job,
            db: &db,
            sink: sink.as_ref(),
            cancel: &cancel,
        };
        let ended = run(&ctx, resumed).await;
        let id = job.id.clone();
        if let Err(e) = db.call(move |s| s.end_build_follow(&id)).await {
            tracing::warn!("marking the followed build ended: {e}");
        }
        let outcome = match ended {
            Ok((build, file, id)) => {
                let url = build.url.clone();
                let rec = record(&order, &db, &job, build, file, &id).await;
                let state = if rec.is_ok() { "SUCCESSFUL" } else { "FAILED" };
                report(&order, &job, sink.as_ref(), state, &url).await;
                rec
            }
            Err((e, url)) => {
                report(&order, &job, sink.as_ref(), "FAILED", &url).await;
                Err(e)
            }
        };
        let (status, reason, error) = match &outcome {
            Ok(r) => (
                StepStatus::Changed,
                format!("built {} ({})", r.version, r.file),
                None,
            ),
            Err(why) => (StepStatus::Failed, why.clone(), Some(why.clone())),
        };
        sink.emit(Event::now(EventKind::PhaseFinished {
            phase: "build".into(),
            host: None,
            status,
            reason,
            elapsed_ms: started.elapsed().as_millis() as u64,
        }));
        if let Ok(r) = &outcome {
            sink.emit(Event::now(EventKind::Built {
                commit: r.commit.clone(),
                number: r.number.clone(),
                url: r.url.clone(),
                version: r.version.clone(),
                file: r.file.clone(),
                sha256: r.sha256.clone(),
            }));
        }
        let status = match (&outcome, cancel.load(Ordering::SeqCst)) {
            (Ok(_), _) => JobStatus::Succeeded,
            (Err(_), true) => JobStatus::Cancelled,
            (Err(_), false) => JobStatus::Failed,
        };
        sink.emit(Event::now(EventKind::JobFinished {
            status,
            elapsed_ms: started.elapsed().as_millis() as u64,
            hosts_ok: 0,
            hosts_changed: 0,
            hosts_failed: 0,
            hosts_unreachable: 0,
            hosts_cancelled: 0,
        }));
        JobResult {
            status,
            hosts: Vec::new(),
            elapsed: started.elapsed(),
            error,
        }
    })
}

/// Shows the build's state beside its commit on the git host (when it has such a thing);
/// a failure is an output line, never the build's.  A build without a page (one that
/// could not start) shows nothing: Bitbucket Server refuses a status without a URL.
pub(super) async fn report(
    order: &BuildOrder,
    job: &JobInfo,
    sink: &dyn EventSink,
    state: &'static str,
    url: &str,
) {
    let Some((git, repo)) = &order.git else {
        return;
    };
    if url.is_empty() {
        return;
    }
    let status = BuildStatus {
        state,
        key: format!("deploy-{}", job.id),
        name: format!("deploy: {} build", job.app),
        url: url.to_string(),
    };
    if let Err(e) = git.report_build(repo, &order.request.commit, &status).await {
        let msg = format!(
            "(the build status was not shown on {}: {e})",
            git.describe()
        );
        line(sink, &msg);
    }
}

pub(super) fn line(sink: &dyn EventSink, text: &str) {
    sink.emit(Event::now(EventKind::Output {
        host: String::new(),
        step: "build".into(),
        stream: Stream::Stdout,
        line: text.to_string(),
    }));
}

/// Finds the wheel on the index (a few tries: an index may list a new file late, or be
/// briefly unreachable), checks that it is the very file the build archived (by
/// SHA-256, read from the builder) and records the build.
async fn record(
    order: &BuildOrder,
    db: &Db,
    job: &JobInfo,
    build: BuildRef,
    file: String,
    id: &str,
) -> Result<BuildRecord, String> {
    let pkg = &order.package;
    let version = crate::artifacts::version_of(&file, pkg)
        .ok_or_else(|| format!("the build archived {file}, which is not a file of {pkg}"))?;
    let mut tries = 0;
    let sha256 = loop {
        let listed = crate::artifacts::list_files(&order.http, order.source.as_ref(), pkg).await;
        let files = match listed {
            Ok(files) => files,
            Err(e) if e.is_retryable() && tries < 5 => {
                tracing::warn!("listing {pkg} for build {}: {e}", build.number);
                tries += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        match files.into_iter().find(|f| f.filename == file) {
            Some(f) => {
                break f.sha256.ok_or_else(|| {
                    format!("{} lists {file} without a SHA-256", order.source.describe())
                })?;
            }
            None if tries < 5 => {
                tries += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            None => {
                return Err(format!(
                    "the build made {file}, but {} does not list it",
                    order.source.describe()
                ));
            }
        }
    };
    same_file(order, id, &file, &version, &sha256).await?;
    let rec = BuildRecord {
        app: job.app.clone(),
        commit: order.request.commit.clone(),
        number: build.number,
        url: build.url,
        version,
        file,
        sha256,
        job_id: job.id.clone(),
        ts_ms: now_ms(),
    };
    let stored = rec.clone();
    db.call(move |s| s.add_build(&stored))
        .await
        .map_err(|e| e.to_string())?;
    Ok(rec)
}

/// Refuses a build whose archived `file` is not the file the index serves under that
/// name (`indexed`): a commit that did not bump the version, whose upload the CI job
/// skipped (or the index refused) because the version was there already.
async fn same_file(
    order: &BuildOrder,
    id: &str,
    file: &str,
    version: &str,
    indexed: &str,
) -> Result<(), String> {
    let archived = order
        .builder
        .artifact_sha256(id, file)
        .await
        .map_err(|e| format!("cannot read back the wheel the build archived ({file}): {e}"))?;
    if archived.eq_ignore_ascii_case(indexed) {
        return Ok(());
    }
    tracing::warn!(
        "build of {} archived {file} sha256 {archived}, the index serves sha256 {indexed}",
        order.request.commit
    );
    Err(format!(
        "the index already holds {version} with different contents: bump the version \
         (the build archived {file} sha256 {archived}; the index serves sha256 {indexed}); \
         nothing was recorded"
    ))
}

#[cfg(test)]
mod tests;
