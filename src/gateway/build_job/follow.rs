//! Following a build job's CI build: which build (one this job's earlier follower
//! left, one of this commit nobody followed to its end, else a new one), stored as it
//! is followed, polled to its end through retryable failures, the queue's limit and
//! cancel.  Its console becomes whole lines: a line the CI server cut at a chunk's end
//! is kept until its newline (or the build's end), and the stored offset is where that
//! line starts, so a follower that takes over shows it whole too.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deploy_wire::api::JobInfo;

use super::{BuildOrder, LAST_LINES, MAX_BACKOFF, line, report};
use crate::builder::{BuildRef, BuildState};
use crate::engine::{CancelFlag, EventSink};
use crate::gateway::store::{BuildFollow, Db, now_ms};

/// A build's end: the build, its wheel and the builder's id for it, or why not and the
/// build's page.
pub(super) type Ended = Result<(BuildRef, String, String), (String, String)>;

/// What the poll loop keeps: the build once known and the console's last lines.
struct Followed {
    id: String,
    build: Option<BuildRef>,
    last: VecDeque<String>,
    /// The console's last line while it has no newline yet.
    partial: String,
}

impl Followed {
    /// Shows the whole lines of `text` (after what was kept of the last poll's), keeps
    /// an unfinished last line, and shows that too when the build `ends`.
    fn console(&mut self, sink: &dyn EventSink, text: &str, ends: bool) {
        self.partial.push_str(text);
        let whole = match self.partial.rfind('\n') {
            Some(i) if !ends => self.partial[..=i].to_string(),
            Some(_) | None if ends => std::mem::take(&mut self.partial),
            _ => return,
        };
        if !ends {
            self.partial.drain(..whole.len());
        }
        for l in whole.lines() {
            line(sink, l);
            self.last.push_back(l.to_string());
            if self.last.len() > LAST_LINES {
                self.last.pop_front();
            }
        }
    }

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
                    self.id.clone(),
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

/// What the follower works with.
pub(super) struct Ctx<'a> {
    pub(super) order: &'a BuildOrder,
    pub(super) job: &'a JobInfo,
    pub(super) db: &'a Db,
    pub(super) sink: &'a dyn EventSink,
    pub(super) cancel: &'a CancelFlag,
}

impl Ctx<'_> {
    /// Stores how far the build was followed (best effort: a failure is logged).
    async fn save(&self, f: &BuildFollow) {
        let f = f.clone();
        if let Err(e) = self.db.call(move |s| s.set_build_follow(&f)).await {
            tracing::warn!("recording the followed build: {e}");
        }
    }

    /// The build to follow: the one `resumed` names, else a build of this commit nobody
    /// followed to its end, else a new one.
    async fn begin(&self, resumed: Option<BuildFollow>) -> Result<BuildFollow, (String, String)> {
        let (b, req) = (&self.order.builder, &self.order.request);
        if let Some(f) = resumed {
            line(
                self.sink,
                "followed again: the gateway that followed this build stopped",
            );
            b.resume(&f.builder_id, build_ref(&f));
            return Ok(f);
        }
        let (app, commit) = (req.app.clone(), req.commit.clone());
        let orphan = self
            .db
            .call(move |s| s.unfollowed_build(&app, &commit))
            .await;
        let mut f = match orphan.ok().flatten() {
            Some(prev) => {
                let which = prev
                    .build
                    .as_ref()
                    .map_or("a queued build".to_string(), |(n, _)| format!("build {n}"));
                line(
                    self.sink,
                    &format!(
                        "adopting {which} of this commit, started by job {} (its follower stopped)",
                        prev.job_id
                    ),
                );
                b.resume(&prev.builder_id, build_ref(&prev));
                let id = prev.job_id.clone();
                let _ = self.db.call(move |s| s.end_build_follow(&id)).await;
                BuildFollow {
                    job_id: self.job.id.clone(),
                    offset: 0,
                    ..prev
                }
            }
            None => {
                let id = b
                    .start(req)
                    .await
                    .map_err(|e| (format!("cannot start the build: {e}"), String::new()))?;
                BuildFollow {
                    job_id: self.job.id.clone(),
                    app: req.app.clone(),
                    commit: req.commit.clone(),
                    builder_id: id,
                    build: None,
                    offset: 0,
                    queued_ms: now_ms(),
                }
            }
        };
        f.job_id = self.job.id.clone();
        self.save(&f).await;
        Ok(f)
    }

    /// Stops the build on the builder (best effort), saying what became of it.
    async fn stop(&self, f: &Followed, why: &str) -> Ended {
        let b = &self.order.builder;
        let what = match &f.build {
            Some(r) => format!("build {}", r.number),
            None => "its queue item".to_string(),
        };
        let done = match b.cancel(&f.id).await {
            Ok(()) => format!("{what} was cancelled on {}", b.describe()),
            Err(e) => format!("{what} could not be cancelled: {e}"),
        };
        f.fail(format!("{why}; {done}"))
    }
}

fn build_ref(f: &BuildFollow) -> Option<BuildRef> {
    f.build
        .clone()
        .map(|(number, url)| BuildRef { number, url })
}

/// Starts (or adopts) the build and follows it to its end.
pub(super) async fn run(ctx: &Ctx<'_>, resumed: Option<BuildFollow>) -> Ended {
    let (order, sink) = (ctx.order, ctx.sink);
    let b = &order.builder;
    let mut saved = ctx.begin(resumed).await?;
    let mut f = Followed {
        id: saved.builder_id.clone(),
        build: build_ref(&saved),
        last: VecDeque::new(),
        partial: String::new(),
    };
    let mut offset = saved.offset;
    let (mut failing_since, mut wait) = (None::<Instant>, order.interval);
    loop {
        if ctx.cancel.load(Ordering::SeqCst) {
            return ctx.stop(&f, "cancelled while building").await;
        }
        let p = match b.poll(&f.id, offset).await {
            Ok(p) => p,
            Err(e)
                if e.is_retryable() && failing_since.is_none_or(|t| t.elapsed() < order.outage) =>
            {
                failing_since.get_or_insert_with(Instant::now);
                tracing::warn!("polling build {}: {e}; again in {wait:?}", f.id);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(e) => return f.fail(format!("lost the build: {e}")),
        };
        (failing_since, wait) = (None, order.interval);
        if let (None, Some(r)) = (&f.build, &p.build) {
            line(sink, &format!("build {} started: {}", r.number, r.url));
            report(order, ctx.job, sink, "INPROGRESS", &r.url).await;
            f.build = p.build.clone();
        }
        let ends = !matches!(p.state, BuildState::Queued | BuildState::Running);
        f.console(sink, &p.console, ends);
        offset = p.next_offset;
        let now = BuildFollow {
            build: f.build.clone().map(|r| (r.number, r.url)),
            offset: offset.saturating_sub(f.partial.len() as u64),
            ..saved.clone()
        };
        if now != saved {
            ctx.save(&now).await;
            saved = now;
        }
        if let Some(end) = f.ended(p.state.clone(), &p.artifacts) {
            return end;
        }
        let queued_for = Duration::from_millis(now_ms().saturating_sub(saved.queued_ms));
        if p.state == BuildState::Queued && queued_for > order.queue_limit {
            let why = format!(
                "the build waited {} s in the queue of {} (limit: build_queue_timeout_secs = {})",
                queued_for.as_secs(),
                b.describe(),
                order.queue_limit.as_secs()
            );
            return ctx.stop(&f, &why).await;
        }
        tokio::time::sleep(order.interval).await;
    }
}
