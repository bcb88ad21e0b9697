//! `drain`: after `drain_secs`, the slot that served before this job is stopped.

use std::time::Duration;

use super::{Decided, HostState, View};
use crate::engine::ops::{Decision, Op, Report};

pub fn decide(v: &View, st: &HostState) -> Decided {
    let Some(old) = st.old_slot else {
        return Ok(Decision::Done(Report::ok("no previous slot to stop")));
    };
    let program = v.program(old);
    let secs = v.plan.app.drain_secs;
    if v.check() {
        return Ok(Decision::Done(Report::changed(format!(
            "would stop {program} after {secs}s"
        ))));
    }
    Ok(Decision::act(
        vec![
            Op::Sleep(Duration::from_secs(secs as u64)).into(),
            Op::run(v.pm.stop(&program), "stopping the previous slot").into(),
        ],
        Report::changed(format!("stopped {program} after a {secs}s drain")),
    ))
}
