//! One host of a job: connect, read every fact its steps need in one batch, then for
//! each step let it decide and run the operations it asked for (with the reads of what
//! they changed in the same batch).  Every output line is scrubbed of the
//! job's secrets before it becomes an event or a reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deploy_wire::{Event, EventKind, HostStatus, StepStatus};

use super::exec::Executed;
use super::facts::{Fact, Facts};
use super::ops::{Decision, Report};
use super::plan::Plan;
use super::steps::{self, HostState, View};
use super::transport::{Connector, Transport};
use super::{CancelFlag, EngineConfig, EventSink, HostResult, cancelled, ms};
use crate::commands::{self as cmd, AppPaths};
use crate::playbook::Step;
use crate::share::{EnvShare, Ticket};

/// A host being worked on: its connection, its facts and what earlier steps decided.
pub(super) struct HostRun<'a> {
    pub plan: &'a Plan,
    pub index: usize,
    pub cfg: &'a EngineConfig,
    pub conn: &'a dyn Transport,
    pub sink: Arc<dyn EventSink>,
    pub(super) paths: AppPaths,
    pub(super) facts: Facts,
    pub state: HostState,
    pub(super) secrets: Vec<String>,
    pub(super) step: &'static str,
    /// The job's shared environments, and this host's duty to them if it builds one.
    pub(super) share: &'a EnvShare,
    pub(super) ticket: Option<Ticket>,
}

impl<'a> HostRun<'a> {
    pub fn new(
        plan: &'a Plan,
        index: usize,
        cfg: &'a EngineConfig,
        conn: &'a dyn Transport,
        sink: Arc<dyn EventSink>,
        share: &'a EnvShare,
    ) -> Self {
        // The index's credentials, and the app's environment values (hooks print what
        // they like): values of 6 characters or more, so `1` or `true` stay readable.
        let mut secrets: Vec<String> = plan
            .index
            .secrets()
            .into_iter()
            .map(|s| s.expose().to_string())
            .filter(|s| s.len() >= 4)
            .collect();
        let env_values = plan.app.env.values().chain(plan.env.env.values());
        secrets.extend(env_values.filter(|v| v.len() >= 6).cloned());
        HostRun {
            plan,
            index,
            cfg,
            conn,
            sink,
            paths: AppPaths::new(&plan.app.name),
            facts: Facts::default(),
            state: HostState::default(),
            secrets,
            step: "",
            share,
            ticket: None,
        }
    }

    pub(super) fn host(&self) -> &'a crate::inventory::Host {
        &self.plan.hosts[self.index].0
    }

    pub(super) fn view(&self) -> View<'_> {
        view(self.plan, self.index, self.cfg, &self.paths)
    }

    /// After a failure: stops every slot that is not live (best effort; said as output).
    pub async fn tidy(&mut self) {
        self.step = "tidy";
        for f in [Fact::Live, Fact::Slots] {
            self.facts.forget(f);
        }
        if self.read_facts(&[Fact::Live, Fact::Slots]).await.is_err() {
            return;
        }
        let v = view(self.plan, self.index, self.cfg, &self.paths);
        let line = match steps::tidy::decide(&v, &self.facts) {
            Decision::Act { actions, report } => match self.execute(&actions, &[]).await {
                Ok(_) => report.reason,
                Err(e) => format!("could not stop a slot that is not live: {e}"),
            },
            _ => return,
        };
        self.sink.emit(Event::now(EventKind::Output {
            host: self.host().name.clone(),
            step: "tidy".into(),
            stream: deploy_wire::Stream::Stderr,
            line,
        }));
    }

    /// Runs one step to its report.  A step decides at most a few times (`Again`).
    /// The first step reads the facts every step needs (the snapshot: one round trip);
    /// a step that changes the host reads, in the same batch as its operations, the
    /// facts it changed that it or a later step needs.
    pub async fn step(&mut self, step: Step) -> Report {
        self.step = step.name();
        for _round in 0..4 {
            let needs = steps::needs(step, &self.view());
            if let Err(e) = self.learn(&needs, step).await {
                return Report::failed(e);
            }
            let v = view(self.plan, self.index, self.cfg, &self.paths);
            let decision = steps::decide(step, &v, &self.facts, &mut self.state);
            let (actions, report) = match decision {
                Decision::Done(r) => return r,
                Decision::Act { actions, report } => (actions, Some(report)),
                Decision::Again(actions) => (actions, None),
            };
            if self.plan.spec.check {
                return Report::failed(format!(
                    "internal error: step {} tried to act in check mode",
                    step.name()
                ));
            }
            // Only operations that change what facts describe make them stale (a
            // health check that passes, or shipping uv, changes none).
            let mutates = actions.iter().any(|a| super::reads::changes_facts(&a.op));
            let after = if mutates {
                self.read_after(step, report.is_none())
            } else {
                vec![]
            };
            let reads: Vec<cmd::RemoteCmd> = after.iter().flat_map(|(_, c)| c.clone()).collect();
            let result = self.execute(&actions, &reads).await;
            if mutates {
                for f in steps::touches(step) {
                    self.facts.forget(*f);
                }
            }
            let probes = match result {
                Err(e) => return Report::failed(e),
                Ok(Executed::Ended(r)) => return r,
                Ok(Executed::Done(probes, outs)) => {
                    // The reads ride only in a batch; else they wait for the next step
                    // that needs them.
                    if let Some(outs) = outs
                        && let Err(e) = self.store_reads(&after, &outs)
                    {
                        return Report::failed(e);
                    }
                    probes
                }
            };
            match report {
                Some(mut r) => {
                    if let Some(how) = probes.first() {
                        r.reason = r.reason.replace("{probe}", how);
                    }
                    return r;
                }
                None => continue,
            }
        }
        Report::failed(format!(
            "internal error: step {} did not settle",
            step.name()
        ))
    }
}

fn view<'b>(plan: &'b Plan, index: usize, cfg: &'b EngineConfig, paths: &'b AppPaths) -> View<'b> {
    View {
        plan,
        host: &plan.hosts[index].0,
        rendered: &plan.hosts[index].1,
        paths,
        pm: plan.pm.as_ref(),
        uv: cfg.uv.as_ref(),
    }
}

/// Connects to one host and runs the playbook's steps there, stopping at the first
/// failure or (outside a switch) at a cancel; after a failure past `start`, stops any
/// slot that is not live.
pub(super) async fn run_host(
    plan: &Plan,
    index: usize,
    cfg: &EngineConfig,
    connector: &dyn Connector,
    sink: Arc<dyn EventSink>,
    cancel: &CancelFlag,
    share: &EnvShare,
) -> HostResult {
    let host = &plan.hosts[index].0;
    let started = Instant::now();
    sink.emit(Event::now(EventKind::HostStarted {
        host: host.name.clone(),
    }));
    let mut result = HostResult::untouched(&host.name, HostStatus::Ok, None, Duration::ZERO);
    if cancelled(cancel) {
        let why = format!(
            "{}: cancelled before it started; nothing changed",
            host.name
        );
        return finish(&sink, result, HostStatus::Cancelled, Some(why), started);
    }
    let conn = match connector.connect(host).await {
        Ok(c) => c,
        Err(e) => {
            let why = format!("{}: {e}", host.name);
            return finish(&sink, result, HostStatus::Unreachable, Some(why), started);
        }
    };
    result.connections = 1;
    sink.emit(Event::now(EventKind::Connected {
        host: host.name.clone(),
        fingerprint: conn.fingerprint(),
        elapsed_ms: ms(started.elapsed()),
    }));
    let counted = super::round_trips::Counted::new(conn.as_ref());
    let mut run = HostRun::new(plan, index, cfg, &counted, sink.clone(), share);
    let (changed, ending) = run_steps(&mut run, cancel).await;
    if matches!(ending, Ending::Failed(_)) && run.state.target.is_some() && !plan.spec.check {
        run.tidy().await;
    }
    result.changed = changed;
    result.previous = run.state.previous.clone();
    result.serving = run.state.serving.clone();
    result.env_sha256 = run.state.env_sha256.clone();
    drop(run);
    result.round_trips = counted.round_trips();
    result.channels = conn.channels_opened();
    conn.close().await;
    let (status, error) = match ending {
        Ending::Failed(err) => (HostStatus::Failed, Some(err)),
        Ending::Cancelled(step) => (
            HostStatus::Cancelled,
            Some(format!(
                "{}: cancelled before step {step} ({changed} step(s) had changed something)",
                host.name
            )),
        ),
        Ending::Finished if changed > 0 => (HostStatus::Changed, None),
        Ending::Finished => (HostStatus::Ok, None),
    };
    finish(&sink, result, status, error, started)
}

/// The host's last word: its `host_finished` event and result.
pub(super) fn finish(
    sink: &Arc<dyn EventSink>,
    mut r: HostResult,
    status: HostStatus,
    error: Option<String>,
    started: Instant,
) -> HostResult {
    r.status = status;
    r.error = error;
    r.elapsed = started.elapsed();
    sink.emit(Event::now(EventKind::HostFinished {
        host: r.host.clone(),
        status,
        changed: r.changed,
        elapsed_ms: ms(r.elapsed),
        error: r.error.clone(),
        round_trips: r.round_trips,
    }));
    r
}

enum Ending {
    Finished,
    Failed(String),
    Cancelled(&'static str),
}

async fn run_steps(run: &mut HostRun<'_>, cancel: &CancelFlag) -> (u32, Ending) {
    let name = run.host().name.clone();
    let mut changed = 0;
    // Once `switch` has changed `current`, the host must get to a consistent state
    // (nginx, health) before a cancel is honoured.
    let mut switching = false;
    for step in &run.plan.playbook.steps {
        if cancelled(cancel) && !switching {
            return (changed, Ending::Cancelled(step.name()));
        }
        let step_started = Instant::now();
        run.sink.emit(Event::now(EventKind::StepStarted {
            host: name.clone(),
            step: step.name().into(),
        }));
        let report = run.step(*step).await;
        run.sink.emit(Event::now(EventKind::StepFinished {
            host: name.clone(),
            step: step.name().into(),
            status: report.status,
            reason: report.reason.clone(),
            diff: report.diff.clone(),
            elapsed_ms: ms(step_started.elapsed()),
        }));
        switching = match step {
            Step::Switch => report.status == StepStatus::Changed,
            Step::Health => false,
            _ => switching,
        };
        match report.status {
            StepStatus::Changed => changed += 1,
            StepStatus::Failed => {
                let err = format!("{name}: step {} failed: {}", step.name(), report.reason);
                return (changed, Ending::Failed(err));
            }
            _ => {}
        }
    }
    (changed, Ending::Finished)
}

#[cfg(test)]
#[path = "converge_tests.rs"]
mod converge_tests;
