//! `health`: the application answers its health check through nginx; if not, the host
//! is switched back to the previous slot, which still runs (it has not been drained).

use super::{Decided, HostState, View};
use crate::commands as cmd;
use crate::engine::facts::Facts;
use crate::engine::ops::{Decision, Op, Recovery, Report};

pub fn decide(v: &View, f: &Facts, st: &HostState) -> Decided {
    if v.check() {
        return Ok(Decision::Done(Report::skipped(
            "check mode: nothing was started",
        )));
    }
    let probe = Op::Probe { port: None };
    let action = match (st.old_slot, st.previous.clone()) {
        (Some(old), Some(prev)) => {
            let target = st.target.unwrap_or(1 - old);
            let back = super::switch::make_live(v, old, &prev, f.nginx()?);
            probe.or_else(Recovery {
                attempt: back.into_iter().map(|a| a.op).collect(),
                always: vec![
                    Op::run(v.pm.stop(&v.program(target)), "stopping"),
                    Op::run(
                        cmd::mark_failed(v.paths, v.version()),
                        "marking the release failed",
                    ),
                ],
                note_ok: format!("; switched back to {prev} in {}", v.program(old)),
                note_failed: format!("; switching back to {prev} failed too: "),
            })
        }
        _ => probe.into(),
    };
    Ok(Decision::act(vec![action], Report::ok("{probe}")))
}
