//! `start`: the release runs in a slot: the live one if it already runs it unchanged,
//! else the idle slot, started and health-checked on its own socket.  Users see no change
//! yet; a failure stops the new slot and leaves the live one alone.

use super::{Decided, HostState, View};
use crate::commands as cmd;
use crate::facts::Facts;
use crate::ops::{Decision, Op, Recovery, Report};
use crate::render::{SLOTS, diff};

pub fn decide(v: &View, f: &Facts, st: &mut HostState) -> Decided {
    let live = f.live()?;
    st.previous = live.version.clone();
    st.serving.clone_from(&live.version);
    // Already live and unchanged: nothing to start, nothing to restart.
    if let Some(l) = live.slot {
        let slot = f.slot(l)?;
        if slot.conf.as_deref() == Some(v.rendered.slots[l].as_str())
            && live.version.as_deref() == Some(v.version())
            && !st.env_changed
            && !st.would_build
            && !v.plan.spec.restart
            && let Some(pid) = slot.pid
        {
            st.target = Some(l);
            return Ok(Decision::Done(Report::ok(format!(
                "{} runs {} (pid {pid}); nothing it depends on changed",
                v.program(l),
                v.version()
            ))));
        }
    }
    let target = live.slot.map_or(0, |l| 1 - l);
    st.target = Some(target);
    st.old_slot = live.slot.filter(|l| *l != target);
    let program = v.program(target);
    let conf_path = v.conf_path(target);
    let want = &v.rendered.slots[target];
    let d = diff(&conf_path, f.slot(target)?.conf.as_deref(), want);
    let socket = v.paths.slot_socket(SLOTS[target], v.version());
    if v.check() {
        return Ok(Decision::Done(
            Report::changed(format!(
                "would start {} in {program} and check its health on its socket",
                v.version()
            ))
            .with_diff(d),
        ));
    }
    let mut actions = Vec::new();
    if d.is_some() {
        let write = cmd::write_file(&conf_path, "0644", true, want.clone().into_bytes());
        actions.push(Op::run(write, "writing the slot config").into());
    }
    let stop = v.pm.stop(&program);
    // A stale socket of this slot (another user's, from before the app had its own)
    // would keep the new server from binding: the deploy user owns `run/`.
    let stale = cmd::RemoteCmd::new(format!("rm -f {}", crate::shell::quote(&socket)));
    actions.push(Op::run(stale, "removing a stale socket").into());
    actions.push(
        Op::run(v.pm.start_fresh(&program), format!("starting {program}")).or_else(Recovery {
            always: vec![Op::run(stop.clone(), "stopping")],
            ..Default::default()
        }),
    );
    actions.push(
        Op::Probe {
            socket: Some(socket),
        }
        .or_else(Recovery {
            always: vec![
                Op::run(stop, "stopping"),
                Op::run(
                    cmd::mark_failed(v.paths, v.version()),
                    "marking the release failed",
                ),
            ],
            note_ok: format!("; stopped {program}, traffic still goes to the previous release"),
            ..Default::default()
        }),
    );
    Ok(Decision::act(
        actions,
        Report::changed(format!(
            "{} {} in {program}; {{probe}}",
            if v.plan.spec.restart {
                "restarted"
            } else {
                "started"
            },
            v.version()
        ))
        .with_diff(d),
    ))
}
