//! `processes`: the application's other processes (workers, schedulers) run the release
//! that is live after this job, under the process manager, as the app user.  A process
//! whose program file changed (a new release, a new command) is reloaded: its copies
//! stop gracefully (TERM, then its `stop_secs`) and start on the new file; copies that
//! stopped are started; a restart job restarts them all.  A rollback renders the
//! previous release's files, so the workers go back with the web slots.

use super::{Decided, View};
use crate::commands as cmd;
use crate::facts::Facts;
use crate::ops::{Decision, Op, Report};
use crate::render::diff;

pub fn decide(v: &View, f: &Facts) -> Decided {
    let procs = &v.plan.app.runtime.processes;
    if procs.is_empty() {
        return Ok(Decision::Done(Report::skipped("no processes besides web")));
    }
    let app = &v.plan.app.name;
    let (mut actions, mut said, mut diffs) = (Vec::new(), Vec::new(), Vec::new());
    for (i, p) in procs.iter().enumerate() {
        let have = f.process(i)?;
        let program = v.pm.program(app, &p.name);
        let conf_path = v.pm.conf_path(app, &p.name);
        let want = &v.rendered.processes[i];
        let d = diff(&conf_path, have.conf.as_deref(), want);
        if let Some(d) = &d {
            diffs.push(d.clone());
            let write = cmd::write_file(&conf_path, "0644", true, want.clone().into_bytes());
            actions.push(Op::run(write, format!("writing {program}'s config")).into());
            actions.push(Op::run(v.pm.apply(&program), format!("reloading {program}")).into());
            said.push(format!("{} ({}x) now on {}", p.name, p.count, v.version()));
        } else if v.plan.spec.restart {
            actions
                .push(Op::run(v.pm.restart_all(&program), format!("restarting {program}")).into());
            said.push(format!("{} ({}x) restarted", p.name, p.count));
        } else if have.running < p.count {
            actions.push(Op::run(v.pm.apply(&program), format!("starting {program}")).into());
            said.push(format!(
                "{} started ({} of {} were running)",
                p.name, have.running, p.count
            ));
        }
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
