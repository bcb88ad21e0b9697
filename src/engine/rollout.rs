//! The rollout: job-level phases before the hosts, then the hosts in batches (a first-host
//! canary if asked, then batches of the environment's size, each host of a batch in
//! parallel up to `parallel`, a pause between batches), halting when more than
//! `max_failed` hosts failed (hosts not reached are not touched; upgraded ones go back to
//! their previous release with `on_halt: rollback`), then the `after` phases.  While a
//! batch works, the next batch's connections are opened ahead (`prefetch.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use deploy_wire::{Event, EventKind, HostStatus, JobStatus, StepStatus};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::elsewhere::is_elsewhere;
use super::host::run_host;
use super::phases::{JobPhase, PhaseCtx, Place, When};
use super::plan::{self, Plan};
use super::prefetch::Prefetch;
use super::share::EnvShare;
use super::transport::Connector;
use super::{CancelFlag, EngineConfig, EventSink, HostResult, JobResult, cancelled, ms};
use crate::inventory::{BatchSize, OnHalt};

/// Host indexes per batch: the canary alone first (if asked), then batches of `size`.
pub fn batches(n: usize, canary: bool, size: BatchSize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut rest: Vec<usize> = (0..n).collect();
    if canary && n > 1 {
        out.push(vec![rest.remove(0)]);
    }
    let per = size.of(n);
    for chunk in rest.chunks(per) {
        out.push(chunk.to_vec());
    }
    out
}

/// Everything a run shares between its hosts.
#[derive(Clone)]
pub(super) struct Run {
    pub plan: Arc<Plan>,
    pub cfg: Arc<EngineConfig>,
    pub connector: Arc<dyn Connector>,
    pub sink: Arc<dyn EventSink>,
    pub cancel: CancelFlag,
    /// The job's release environments, built once per platform (`share.rs`).
    pub share: Arc<EnvShare>,
}

pub(super) async fn run(mut r: Run) -> JobResult {
    let started = Instant::now();
    let prefetch = Prefetch::new(r.connector.clone());
    r.connector = prefetch.clone();
    let plan = r.plan.clone();
    r.sink.emit(Event::now(EventKind::JobStarted {
        app: plan.app.name.clone(),
        env: plan.env.name.clone(),
        version: plan.spec.version.clone(),
        hosts: plan.hosts.iter().map(|(h, _)| h.name.clone()).collect(),
        check: plan.spec.check,
        steps: plan
            .playbook
            .steps
            .iter()
            .map(|s| s.name().to_string())
            .collect(),
    }));
    let mut hosts = Vec::new();
    let before = run_phases(&r, When::BeforeHosts).await;
    match &before {
        Err(why) => {
            for i in 0..plan.hosts.len() {
                hosts.push(not_started(&r, i, why));
            }
        }
        Ok(()) => {
            hosts = run_batches(&r, &prefetch).await;
            if hosts.iter().all(|h| !h.status.is_failure())
                && let Err(why) = run_phases(&r, When::AfterHosts).await
            {
                // The hosts are done; the job still failed.
                hosts.iter_mut().for_each(|h| {
                    h.error.get_or_insert_with(|| why.clone());
                });
                return finish(&r, hosts, started, Some(why));
            }
        }
    }
    finish(&r, hosts, started, before.err())
}

fn finish(
    r: &Run,
    mut hosts: Vec<HostResult>,
    started: Instant,
    failed: Option<String>,
) -> JobResult {
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    let n_failed = hosts.iter().filter(|h| h.status.is_failure()).count() as u32;
    let count = |s: HostStatus| hosts.iter().filter(|h| h.status == s).count() as u32;
    let status = if cancelled(&r.cancel) && hosts.iter().any(|h| h.status == HostStatus::Cancelled)
    {
        JobStatus::Cancelled
    } else if n_failed == 0 && failed.is_none() {
        JobStatus::Succeeded
    } else {
        JobStatus::Failed
    };
    let elapsed = started.elapsed();
    r.sink.emit(Event::now(EventKind::JobFinished {
        status,
        elapsed_ms: ms(elapsed),
        hosts_ok: count(HostStatus::Ok),
        hosts_changed: count(HostStatus::Changed),
        hosts_failed: n_failed,
        hosts_unreachable: count(HostStatus::Unreachable),
        hosts_cancelled: count(HostStatus::Cancelled),
    }));
    JobResult {
        status,
        hosts,
        elapsed,
        error: failed,
    }
}

/// A host the rollout never reached.
fn not_started(r: &Run, i: usize, why: &str) -> HostResult {
    let name = r.plan.hosts[i].0.name.clone();
    let error = Some(format!("{name}: not started: {why}"));
    r.sink.emit(Event::now(EventKind::HostFinished {
        host: name.clone(),
        status: HostStatus::Cancelled,
        changed: 0,
        elapsed_ms: 0,
        error: error.clone(),
        round_trips: 0,
    }));
    HostResult::untouched(&name, HostStatus::Cancelled, error, Duration::ZERO)
}

async fn run_batches(r: &Run, prefetch: &Arc<Prefetch>) -> Vec<HostResult> {
    let plan = &r.plan;
    let rollout = &plan.env.rollout;
    // `once` hooks (migrations) run on the first host: it goes alone, and its failure
    // halts the rollout whatever `max_failed` says (the others would switch to a
    // release whose migration did not run).
    let gate = plan.has_once_hooks();
    let batches = batches(
        plan.hosts.len(),
        rollout.canary || gate,
        plan.spec.batch.unwrap_or(rollout.batch),
    );
    let nb = batches.len();
    let mut hosts: Vec<HostResult> = Vec::new();
    let mut failed_so_far = 0u32;
    let mut halted: Option<String> = None;
    for (bi, batch) in batches.iter().enumerate() {
        if let Some(why) = &halted {
            hosts.extend(batch.iter().map(|&i| not_started(r, i, why)));
            continue;
        }
        // The next batch's first wave (its first `parallel` hosts) handshakes while this
        // batch works; within a batch, each host that starts opens the connection of
        // the host that will take its place (run_batch).
        if let Some(next) = batches.get(bi + 1) {
            let wave = next.iter().take(plan.env.parallel.max(1));
            let here = wave.map(|&i| &plan.hosts[i].0);
            prefetch.warm(here.filter(|h| !is_elsewhere(&r.cfg, h)));
        }
        let results = run_batch(r, batch, prefetch).await;
        failed_so_far += results
            .iter()
            .filter(|h| matches!(h.status, HostStatus::Failed | HostStatus::Unreachable))
            .count() as u32;
        let gate_failed = gate && bi == 0 && results.iter().any(|h| h.status.is_failure());
        hosts.extend(results);
        if gate_failed && !plan.spec.check {
            halted = Some(format!(
                "the rollout halted: {}, which runs the once hooks, failed",
                plan.hosts[0].0.name
            ));
        } else if failed_so_far > rollout.max_failed && !plan.spec.check {
            halted = Some(format!(
                "the rollout halted after batch {}/{nb}: {failed_so_far} host(s) failed (max_failed {})",
                bi + 1,
                rollout.max_failed
            ));
        } else if cancelled(&r.cancel) {
            halted = Some("the job was cancelled".into());
        } else if bi + 1 < nb && rollout.pause_secs > 0 && !plan.spec.check {
            tokio::time::sleep(Duration::from_secs(rollout.pause_secs as u64)).await;
        }
    }
    // Hosts not run (a halt, a cancel) keep nothing opened ahead.
    prefetch.forget();
    if let Some(why) = &halted
        && rollout.on_halt == OnHalt::Rollback
        && !plan.spec.check
        && !cancelled(&r.cancel)
    {
        roll_back_upgraded(r, &mut hosts, why).await;
    }
    hosts
}

async fn run_batch(r: &Run, batch: &[usize], prefetch: &Arc<Prefetch>) -> Vec<HostResult> {
    let parallel = r.plan.env.parallel.max(1);
    let limit = Arc::new(Semaphore::new(parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for (k, &i) in batch.iter().enumerate() {
        let (r, limit, prefetch) = (r.clone(), limit.clone(), prefetch.clone());
        let span = tracing::info_span!("host", host = %r.plan.hosts[i].0.name);
        // The host that will take this one's place (permits are taken in order).
        let follower = batch.get(k + parallel).copied();
        let work = async move {
            let _permit = limit.acquire_owned().await.expect("semaphore never closed");
            if let Some(f) = follower.map(|f| &r.plan.hosts[f].0)
                && !is_elsewhere(&r.cfg, f)
            {
                prefetch.warm([f]);
            }
            let (plan, conn) = (&r.plan, r.connector.as_ref());
            let host = &plan.hosts[i].0;
            match r.cfg.elsewhere.as_ref().filter(|e| e.elsewhere(host)) {
                Some(other) => other.run(host, None, &r.cancel).await,
                None => run_host(plan, i, &r.cfg, conn, r.sink.clone(), &r.cancel, &r.share).await,
            }
        };
        tasks.spawn(work.instrument(span));
    }
    let mut out = Vec::new();
    while let Some(res) = tasks.join_next().await {
        out.push(res.unwrap_or_else(|e| {
            let error = Some(format!("internal error: {e}"));
            HostResult::untouched("?", HostStatus::Failed, error, Duration::ZERO)
        }));
    }
    out
}

/// A halted rollout puts every host that serves the new release back on its previous
/// one (those that succeeded and those that failed after their switch), through the
/// same health-gated path, installing nothing.  Each gets a last `host_finished` that
/// says how it ended; one that cannot be reached is reported as still serving the new
/// release (the next deploy brings it back).
async fn roll_back_upgraded(r: &Run, hosts: &mut [HostResult], why: &str) {
    let plan = &r.plan;
    let version = &plan.spec.version;
    let upgraded: Vec<(usize, String)> = hosts
        .iter()
        .filter(|h| h.serving.as_ref() == Some(version))
        .filter_map(|h| {
            let prev = h.previous.clone().filter(|p| p != version)?;
            let i = plan.hosts.iter().position(|(x, _)| x.name == h.host)?;
            Some((i, prev))
        })
        .collect();
    for (i, prev) in upgraded {
        let name = plan.hosts[i].0.name.clone();
        r.sink.emit(Event::now(EventKind::Output {
            host: name.clone(),
            step: "rollback".into(),
            stream: deploy_wire::Stream::Stderr,
            line: format!("{why}: rolling {name} back to {prev}"),
        }));
        let started = Instant::now();
        let host = &plan.hosts[i].0;
        let other = r.cfg.elsewhere.as_ref().filter(|e| e.elsewhere(host));
        let res = match (plan::for_rollback(plan, &r.cfg, &prev), other) {
            // Another site's host: its runner plans the same rollback there.
            (Ok(_), Some(other)) => other.run(host, Some(&prev), &CancelFlag::default()).await,
            (Ok(back), None) => {
                let (conn, sink) = (r.connector.as_ref(), r.sink.clone());
                let none = EnvShare::default(); // a rollback builds nothing
                run_host(&back, i, &r.cfg, conn, sink, &CancelFlag::default(), &none).await
            }
            (Err(e), _) => {
                tracing::error!(host = %name, "cannot plan the rollback: {e}");
                continue;
            }
        };
        let Some(h) = hosts.iter_mut().find(|h| h.host == name) else {
            continue;
        };
        // What the host serves now is what the rollback run last switched it to.
        if res.serving.is_some() {
            h.serving = res.serving.clone();
        }
        let error = match (res.status, h.serving.as_ref() == Some(&prev)) {
            (HostStatus::Ok | HostStatus::Changed, _) => {
                format!("{name}: rolled back to {prev} because {why}")
            }
            (_, true) => format!(
                "{name}: rolled back to {prev} because {why}; then: {}",
                res.error.unwrap_or_default()
            ),
            (_, false) => format!(
                "{name}: still serves {}; rolling back to {prev} failed ({}); the next deploy brings it back",
                h.serving.as_deref().unwrap_or("?"),
                res.error.unwrap_or_default()
            ),
        };
        *h = super::host::finish(&r.sink, h.clone(), HostStatus::Failed, Some(error), started);
    }
}

/// Runs the phases of one `when`, in order; the first failure stops them.
async fn run_phases(r: &Run, when: When) -> Result<(), String> {
    let phases: Vec<Arc<dyn JobPhase>> = r
        .plan
        .phases
        .iter()
        .filter(|p| p.when() == when)
        .cloned()
        .collect();
    for phase in phases {
        let report = run_phase(r, phase.as_ref()).await;
        if report.status == StepStatus::Failed {
            return Err(format!("phase {} failed: {}", phase.name(), report.reason));
        }
    }
    Ok(())
}

async fn run_phase(r: &Run, phase: &dyn JobPhase) -> super::ops::Report {
    let started = Instant::now();
    let plan = &r.plan;
    let host = match phase.place() {
        Place::Gateway => None,
        Place::FirstHost => plan.hosts.first().map(|(h, _)| h),
    };
    let on = host.map(|h| h.name.clone());
    r.sink.emit(Event::now(EventKind::PhaseStarted {
        phase: phase.name().to_string(),
        host: on.clone(),
    }));
    let report = match (phase.place(), host) {
        (Place::Gateway, _) => {
            phase
                .run(PhaseCtx::new(plan, None, r.sink.clone(), phase.name()))
                .await
        }
        (Place::FirstHost, None) => super::ops::Report::failed("the environment has no host"),
        (Place::FirstHost, Some(h)) if is_elsewhere(&r.cfg, h) => {
            super::ops::Report::failed(format!(
                "{}: its site ({}) is not this process's: a job phase runs on the first host only when that host runs here",
                h.name,
                h.site.as_deref().unwrap_or("none")
            ))
        }
        (Place::FirstHost, Some(h)) => match r.connector.connect(h).await {
            Err(e) => super::ops::Report::failed(format!("{}: {e}", h.name)),
            Ok(conn) => {
                let ctx =
                    PhaseCtx::new(plan, Some((h, conn.as_ref())), r.sink.clone(), phase.name());
                let report = phase.run(ctx).await;
                conn.close().await;
                report
            }
        },
    };
    r.sink.emit(Event::now(EventKind::PhaseFinished {
        phase: phase.name().to_string(),
        host: on,
        status: report.status,
        reason: report.reason.clone(),
        elapsed_ms: ms(started.elapsed()),
    }));
    report
}
