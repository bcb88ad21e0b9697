//! `start`: the release runs in a slot: the live one if it already runs it unchanged,
//! else the idle slot, started and health-checked on its own socket.  Users see no change
//! yet; a failure stops the new slot and leaves the live one alone.
//!
//! It also stops the *leftovers*: slots that are not live yet run when it decides.  Only
//! an interrupted job leaves one (a gateway killed, or a host cut off, after a switch and
//! before `drain`; or before a switch, after `start`): every job that ends stops them
//! (`drain`, or the engine's tidy after a failure).  No step before `start` starts or
//! stops a web slot, and `start` is the only step that starts one, so a slot running
//! when it decides ran when the job began: never this job's own new slot, and never
//! the live one (the pointer names it).  Decision: here rather than in `drain`, because
//! a leftover in the idle slot is the very slot this job starts its release in, and
//! because every job that reaches a host (deploy, rollback, restart) runs `start`; it is
//! stopped before the release starts and said in this step's line (check mode: "would
//! stop").  A leftover is named with the release its program file names.

use super::{Decided, HostState, View};
use crate::commands as cmd;
use crate::facts::Facts;
use crate::ops::{Action, Decision, Op, Recovery, Report};
use crate::render::{SLOTS, diff};

/// Slots that are not live yet run (see the module's docs).
pub fn leftovers(f: &Facts) -> Result<Vec<usize>, String> {
    let live = f.live()?.slot;
    let mut out = Vec::new();
    for s in 0..SLOTS.len() {
        if Some(s) != live && f.slot(s)?.pid.is_some() {
            out.push(s);
        }
    }
    Ok(out)
}

/// Stopping the leftovers: the operations, and the words (`stopped slot blue (1.2.0),
/// left running by an interrupted job`) after `stopped` or `would stop`.
fn stop_leftovers(v: &View, f: &Facts, slots: &[usize]) -> Result<(Vec<Action>, String), String> {
    let mut ops = Vec::new();
    let mut names = Vec::new();
    for s in slots {
        let program = v.program(*s);
        ops.push(
            Op::run(
                v.pm.stop(&program),
                format!("stopping {program} (not live)"),
            )
            .into(),
        );
        names.push(match f.slot(*s)?.release() {
            Some(r) => format!("slot {} ({r})", SLOTS[*s]),
            None => format!("slot {}", SLOTS[*s]),
        });
    }
    Ok((
        ops,
        format!(
            "{}, left running by an interrupted job",
            names.join(" and ")
        ),
    ))
}

pub fn decide(v: &View, f: &Facts, st: &mut HostState) -> Decided {
    let live = f.live()?;
    st.previous = live.version.clone();
    st.serving.clone_from(&live.version);
    st.leftovers = leftovers(f)?;
    let (stops, stopped) = stop_leftovers(v, f, &st.leftovers)?;
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
            let runs = format!(
                "{} runs {} (pid {pid}); nothing it depends on changed",
                v.program(l),
                v.version()
            );
            return Ok(if stops.is_empty() {
                Decision::Done(Report::ok(runs))
            } else if v.check() {
                Decision::Done(Report::changed(format!("would stop {stopped}; {runs}")))
            } else {
                Decision::act(stops, Report::changed(format!("stopped {stopped}; {runs}")))
            });
        }
    }
    // Said before what this step does with the release.
    let first = |done: &str| {
        if stops.is_empty() {
            String::new()
        } else {
            format!("{done} {stopped}; ")
        }
    };
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
                "{}would start {} in {program} and check its health on its socket",
                first("would stop"),
                v.version()
            ))
            .with_diff(d),
        ));
    }
    let said = first("stopped");
    let mut actions = stops;
    if d.is_some() {
        let write = v.pm.write_file(&conf_path, want.clone().into_bytes());
        actions.push(Op::run(write, "writing the slot config").into());
    }
    let stop = v.pm.stop(&program);
    // A stale socket of this slot (another user's, from before the app had its own)
    // would keep the new server from binding: the deploy user owns `run/`.
    let stale = cmd::RemoteCmd::new(format!("rm -f {}", crate::shell::quote(&socket)));
    actions.push(Op::run(stale, "removing a stale socket").into());
    actions.push(
        Op::run(
            v.pm.start_fresh(&program, v.plan.app.settle_secs),
            format!("starting {program}"),
        )
        .or_else(Recovery {
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
            "{said}{} {} in {program}; {{probe}}",
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
