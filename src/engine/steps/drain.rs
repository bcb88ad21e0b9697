//! `drain`: the slot that served before this job is stopped after `drain_secs` (its
//! in-flight requests finish: nginx sends it nothing new since the switch); any other
//! slot that is not live is stopped now (`start` has stopped those an interrupted job
//! left running; this is the last look, for a playbook that has no `start`).

use std::time::Duration;

use super::{Decided, HostState, View};
use crate::facts::Facts;
use crate::ops::{Decision, Op, Report};

pub fn decide(v: &View, f: &Facts, st: &HostState) -> Decided {
    // What is live once this job is done: the slot `start` chose (in check mode the
    // pointer has not moved yet), else the pointer.
    let live = st.target.or(f.live()?.slot);
    // In check mode the facts are the snapshot: a leftover `start` said it would stop
    // is not said twice.
    let said = |s: &usize| v.check() && st.leftovers.contains(s);
    let strays: Vec<usize> = (0..2)
        .filter(|s| Some(*s) != live && f.slot(*s).is_ok_and(|x| x.pid.is_some()) && !said(s))
        .collect();
    if strays.is_empty() {
        return Ok(Decision::Done(Report::ok("no slot but the live one runs")));
    }
    let names: Vec<String> = strays.iter().map(|s| v.program(*s)).collect();
    let names = names.join(", ");
    let secs = v.plan.app.drain_secs;
    let draining = st.old_slot.is_some_and(|o| strays.contains(&o));
    if v.check() {
        return Ok(Decision::Done(Report::changed(format!(
            "would stop {names}{}",
            if draining {
                format!(" after {secs}s")
            } else {
                String::new()
            }
        ))));
    }
    let mut actions = Vec::new();
    if draining {
        actions.push(Op::Sleep(Duration::from_secs(secs as u64)).into());
    }
    for s in &strays {
        actions.push(
            Op::run(
                v.pm.stop(&v.program(*s)),
                "stopping a slot that is not live",
            )
            .into(),
        );
    }
    let why = if draining {
        format!("after a {secs}s drain")
    } else {
        "(not live)".to_string()
    };
    Ok(Decision::act(
        actions,
        Report::changed(format!("stopped {names} {why}")),
    ))
}
