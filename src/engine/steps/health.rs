//! `health`: the application answers its health check through nginx; if not, the live
//! pointer goes back to the previous slot, which still runs (it has not been drained).

use super::{HostState, View};
use crate::commands as cmd;
use crate::ops::{Decision, Op, Recovery, Report};

pub fn decide(v: &View, st: &HostState) -> super::Decided {
    if v.check() {
        return Ok(Decision::Done(Report::skipped(
            "check mode: nothing was started",
        )));
    }
    let probe = Op::Probe { socket: None };
    let action = match (st.old_slot, st.previous.clone()) {
        (Some(old), Some(prev)) => {
            let target = st.target.unwrap_or(1 - old);
            let mut back = Vec::new();
            // A switch that also replaced the nginx site puts the old one back first.
            if let Some(Some(site)) = &st.nginx_before {
                back.extend(
                    super::switch::install_site(v, site)
                        .into_iter()
                        .map(|a| a.op),
                );
            }
            back.push(Op::SetLive {
                slot: old,
                version: prev.clone(),
            });
            // The new slot is stopped whether the switch back worked or not: the old
            // one is what a reboot should bring back either way.
            let mut always = vec![
                Op::run(v.pm.stop(&v.program(target)), "stopping"),
                Op::run(
                    cmd::mark_failed(v.paths, v.version()),
                    "marking the release failed",
                ),
            ];
            always.extend(super::switch::at_boot(v, old));
            probe.or_else(Recovery {
                attempt: back,
                always,
                note_ok: format!("; switched back to {prev} in {}", v.program(old)),
                note_failed: format!("; switching back to {prev} failed too: "),
            })
        }
        _ => probe.into(),
    };
    Ok(Decision::act(vec![action], Report::ok("{probe}")))
}
