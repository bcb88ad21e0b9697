//! `processes`: the application's other processes (workers, schedulers) run the release
//! that is live after this job, under the process manager, as the app user.  A process
//! whose program file changed (a new release, a new command) is reloaded: its copies
//! stop gracefully (TERM, then its `stop_secs`) and start on the new file; copies that
//! stopped are started; a restart job restarts them all.  A rollback renders the
//! previous release's files, so the workers go back with the web slots.
//!
//! **Watched**: every process this step (re)starts must stay up the app's `settle_secs`
//! (the program file's own measure of a start, supervisord's `startsecs`); one that
//! exits sooner fails the step, with its state and the last lines of its logs as the
//! step's output, so the host fails after its switch and the rollout halts (and, with
//! `on_halt: rollback`, goes back) as for a failed health check.
//!
//! **Removed**: a program of this app that is neither a slot nor a process of the
//! inventory (one the inventory no longer names) is stopped and its file removed,
//! reported `changed`.

use super::{Decided, View};
use crate::facts::Facts;
use crate::ops::{Action, Decision, Op, Report};
use crate::render::diff;

pub fn decide(v: &View, f: &Facts) -> Decided {
    let procs = &v.plan.app.runtime.processes;
    let strays = f.stray_programs()?;
    if procs.is_empty() && strays.is_empty() {
        return Ok(Decision::Done(Report::skipped("no processes besides web")));
    }
    let app = &v.plan.app.name;
    let (mut actions, mut said, mut diffs) = (Vec::new(), Vec::new(), Vec::new());
    for program in strays {
        actions.push(Op::run(v.pm.remove(program), format!("removing {program}")).into());
        said.push(format!("{program} removed (not in the inventory)"));
    }
    for (i, p) in procs.iter().enumerate() {
        let have = f.process(i)?;
        let program = v.pm.program(app, &p.name);
        let conf_path = v.pm.conf_path(app, &p.name);
        let want = &v.rendered.processes[i];
        let d = diff(&conf_path, have.conf.as_deref(), want);
        let start = if let Some(d) = &d {
            diffs.push(d.clone());
            let write = v.pm.write_file(&conf_path, want.clone().into_bytes());
            actions.push(Op::run(write, format!("writing {program}'s config")).into());
            said.push(format!("{} ({}x) now on {}", p.name, p.count, v.version()));
            v.pm.apply(&program, p.count, true)
        } else if v.plan.spec.restart {
            said.push(format!("{} ({}x) restarted", p.name, p.count));
            v.pm.restart_all(&program, p.count)
        } else if have.running < p.count {
            said.push(format!(
                "{} started ({} of {} were running)",
                p.name, have.running, p.count
            ));
            v.pm.apply(&program, p.count, false)
        } else {
            continue;
        };
        actions.push(Op::run(start, format!("starting {program}")).into());
        actions.push(watch(v, &program, p.count));
    }
    let d = (!diffs.is_empty()).then(|| diffs.concat());
    if said.is_empty() {
        let all: Vec<String> = procs
            .iter()
            .map(|p| format!("{} ({}x)", p.name, p.count))
            .collect();
        return Ok(Decision::Done(Report::ok(format!(
            "{} run {}",
            all.join(", "),
            v.version()
        ))));
    }
    if v.check() {
        return Ok(Decision::Done(
            Report::changed(format!("would: {}", said.join("; "))).with_diff(d),
        ));
    }
    Ok(Decision::act(
        actions,
        Report::changed(said.join("; ")).with_diff(d),
    ))
}

/// Every copy of `program` must run once the settle time has passed: its output (the
/// copies that do not, their logs' last lines) streamed into the job.
fn watch(v: &View, program: &str, count: u32) -> Action {
    let settle = v.plan.app.settle_secs;
    Op::Run {
        cmd: v.pm.watch(&v.paths.logs(), program, count, settle),
        what: format!("watching {program} for {settle}s"),
        stream: true,
    }
    .into()
}
