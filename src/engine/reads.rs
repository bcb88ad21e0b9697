//! Which facts a host's steps read, and when: everything at the first step (the
//! snapshot), what a step changed in the same batch as its operations, and whatever a
//! later step needs whenever the host is asked something anyway.  Reading is cheap; a
//! round trip is not.

use super::EngineConfig;
use super::facts::{Fact, Reader};
use super::host::HostRun;
use super::plan::Plan;
use super::steps;
use crate::commands::{self as cmd, AppPaths};
use crate::playbook::Step;

impl HostRun<'_> {
    /// The facts the steps after `step` need (any of them may be read along whenever
    /// the host is asked something anyway: reading is cheap, a round trip is not).
    pub(super) fn later_needs(&self, step: Step) -> Vec<Fact> {
        let v = self.view();
        let steps = &self.plan.playbook.steps;
        let from = steps
            .iter()
            .position(|s| *s == step)
            .map_or(steps.len(), |i| i + 1);
        steps[from..]
            .iter()
            .flat_map(|s| steps::needs(*s, &v))
            .collect()
    }

    /// The facts `step` changes that are needed next (by itself deciding again, or by a
    /// later step), with the commands that read them.
    pub(super) fn read_after(&self, step: Step, again: bool) -> Vec<(Fact, Vec<cmd::RemoteCmd>)> {
        let wanted = if again {
            steps::needs(step, &self.view())
        } else {
            self.later_needs(step)
        };
        let reader = reader(self.plan, self.index, self.cfg, &self.paths);
        steps::touches(step)
            .iter()
            .filter(|f| wanted.contains(f))
            .map(|f| (*f, reader.commands(*f)))
            .collect()
    }

    /// Keeps what [`Self::read_after`]'s commands printed as facts.
    pub(super) fn store_reads(
        &mut self,
        reads: &[(Fact, Vec<cmd::RemoteCmd>)],
        outs: &[super::transport::Output],
    ) -> Result<(), String> {
        let reader = reader(self.plan, self.index, self.cfg, &self.paths);
        let mut at = 0;
        for (f, cs) in reads {
            let mine = outs.get(at..at + cs.len()).unwrap_or_default();
            reader.store(&mut self.facts, *f, mine)?;
            at += cs.len();
        }
        Ok(())
    }

    /// Reads the facts in `needs` that are not known yet, as one batch, with every
    /// other fact the steps after `step` need and nobody knows (on a host's first step:
    /// everything, the snapshot).
    pub(super) async fn learn(&mut self, needs: &[Fact], step: Step) -> Result<(), String> {
        if needs.iter().all(|f| self.facts.has(*f)) {
            return Ok(());
        }
        let mut missing: Vec<Fact> = Vec::new();
        for f in needs.iter().copied().chain(self.later_needs(step)) {
            if !self.facts.has(f) && !missing.contains(&f) {
                missing.push(f);
            }
        }
        self.read_facts(&missing).await
    }

    pub(super) async fn read_facts(&mut self, facts: &[Fact]) -> Result<(), String> {
        let reader = reader(self.plan, self.index, self.cfg, &self.paths);
        let reads: Vec<(Fact, Vec<cmd::RemoteCmd>)> =
            facts.iter().map(|f| (*f, reader.commands(*f))).collect();
        let all: Vec<cmd::RemoteCmd> = reads.iter().flat_map(|(_, c)| c.clone()).collect();
        let outs = self.read_all(&all).await?;
        self.store_reads(&reads, &outs)
    }
}

/// Whether an operation can change what a fact describes.
pub(super) fn changes_facts(op: &super::ops::Op) -> bool {
    use super::ops::Op;
    !matches!(
        op,
        Op::Probe { .. } | Op::Sleep(_) | Op::ShipUv | Op::JoinShare | Op::PackEnv
    )
}

pub(super) fn reader<'b>(
    plan: &'b Plan,
    index: usize,
    cfg: &'b EngineConfig,
    paths: &'b AppPaths,
) -> Reader<'b> {
    let app = &plan.app;
    Reader {
        paths,
        user: &plan.hosts[index].0.user,
        run_as: &app.runtime.run_as,
        processes: &app.runtime.processes,
        version: &plan.spec.version,
        pm: plan.pm.as_ref(),
        uv_sha256: cfg.uv.as_ref().map(|u| u.sha256.as_str()),
    }
}
