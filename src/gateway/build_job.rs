//! A build job (`deploy build`, and the first half of `deploy release --ref`): the
//! application's CI builder builds one commit, its console streamed as the job's output;
//! then the wheel it archived is found on the application's index and recorded with the
//! commit, the build number and the index's SHA-256: the ledger's link from a commit to
//! a file.  A build touches no host.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deploy_wire::api::JobInfo;
use deploy_wire::pipeline::BuildRecord;
use deploy_wire::{Event, EventKind, JobStatus, StepStatus, Stream};

use super::jobs::JobWork;
use super::store::{Db, now_ms};
use crate::artifacts::ArtifactSource;
use crate::builder::{BuildRef, BuildRequest, BuildState, Builder};
use crate::engine::{CancelFlag, EventSink, JobResult};
use crate::githost::{BuildStatus, GitHost};

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
}

/// Console lines kept for the failure message.
const LAST_LINES: usize = 8;
/// Consecutive failed polls before the build is given up (a permanent failure gives it
/// up at once).
const POLL_ERRORS: u32 = 5;

pub fn work(
    order: BuildOrder,
    job: JobInfo,
    db: Db,
    sink: Arc<dyn EventSink>,
    cancel: CancelFlag,
) -> JobWork {
    Box::pin(async move {
        let started = Instant::now();
        let commit = order.request.commit.clone();
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
        let outcome = match run(&order, &job, sink.as_ref(), &cancel).await {
            Ok((build, file)) => {
                let url = build.url.clone();
                let rec = record(&order, &db, &job, build, file).await;
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
/// a failure is an output line, never the build's.
async fn report(
    order: &BuildOrder,
    job: &JobInfo,
    sink: &dyn EventSink,
    state: &'static str,
    url: &str,
) {
    let Some((git, repo)) = &order.git else {
        return;
    };
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

/// A build's end: the build and its wheel, or why not and the build's page.
type Ended = Result<(BuildRef, String), (String, String)>;

/// What the poll loop keeps: the build once known and the console's last lines.
struct Followed {
    id: String,
    build: Option<BuildRef>,
    last: VecDeque<String>,
}

impl Followed {
    fn number(&self) -> String {
        self.build
            .as_ref()
            .map(|r| r.number.clone())
            .unwrap_or_else(|| self.id.clone())
    }
    fn fail(&self, why: String) -> Ended {
        Err((
            why,
            self.build
                .as_ref()
                .map(|r| r.url.clone())
                .unwrap_or_default(),
        ))
    }
    /// The build's end, if this poll saw it.
    fn ended(&mut self, state: BuildState, artifacts: &[String]) -> Option<Ended> {
        match state {
            BuildState::Succeeded => {
                let Some(wheel) = artifacts.iter().find(|f| f.ends_with(".whl")).cloned() else {
                    let n = self.number();
                    return Some(self.fail(format!(
                        "build {n} succeeded but archived no wheel (artifacts: {artifacts:?})"
                    )));
                };
                let url = self
                    .build
                    .as_ref()
                    .map(|r| r.url.clone())
                    .unwrap_or_default();
                Some(Ok((
                    BuildRef {
                        number: self.number(),
                        url,
                    },
                    wheel,
                )))
            }
            BuildState::Failed(why) => {
                let tail: Vec<String> = self.last.iter().cloned().collect();
                let n = self.number();
                Some(self.fail(format!(
                    "build {n} failed: {why}; its console ended with:\n{}",
                    tail.join("\n")
                )))
            }
            BuildState::Queued | BuildState::Running => None,
        }
    }
}

/// Starts the build and follows it to its end.
async fn run(
    order: &BuildOrder,
    job: &JobInfo,
    sink: &dyn EventSink,
    cancel: &CancelFlag,
) -> Ended {
    let b = &order.builder;
    let id = b.start(&order.request).await.map_err(|e| {
        (
            format!("cannot start the build on {}: {e}", b.describe()),
            String::new(),
        )
    })?;
    let mut f = Followed {
        id,
        build: None,
        last: VecDeque::new(),
    };
    let (mut offset, mut errors) = (0, 0);
    loop {
        if cancel.load(Ordering::SeqCst) {
            return f.fail(format!(
                "cancelled while building (the build itself goes on on {})",
                b.describe()
            ));
        }
        let p = match b.poll(&f.id, offset).await {
            Ok(p) => p,
            Err(e) if e.is_retryable() && errors + 1 < POLL_ERRORS => {
                errors += 1;
                tracing::warn!("polling build {}: {e}", f.id);
                tokio::time::sleep(order.interval).await;
                continue;
            }
            Err(e) => return f.fail(format!("lost the build on {}: {e}", b.describe())),
        };
        errors = 0;
        if let (None, Some(r)) = (&f.build, &p.build) {
            line(sink, &format!("build {} started: {}", r.number, r.url));
            report(order, job, sink, "INPROGRESS", &r.url).await;
            f.build = p.build.clone();
        }
        for l in p.console.lines() {
            line(sink, l);
            f.last.push_back(l.to_string());
            if f.last.len() > LAST_LINES {
                f.last.pop_front();
            }
        }
        offset = p.next_offset;
        if let Some(end) = f.ended(p.state, &p.artifacts) {
            return end;
        }
        tokio::time::sleep(order.interval).await;
    }
}

fn line(sink: &dyn EventSink, text: &str) {
    sink.emit(Event::now(EventKind::Output {
        host: String::new(),
        step: "build".into(),
        stream: Stream::Stdout,
        line: text.to_string(),
    }));
}

/// Finds the wheel on the index (a few tries: an index may list a new file late, or be
/// briefly unreachable) and records the build.
async fn record(
    order: &BuildOrder,
    db: &Db,
    job: &JobInfo,
    build: BuildRef,
    file: String,
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

#[cfg(test)]
#[path = "build_job_tests.rs"]
mod tests;
