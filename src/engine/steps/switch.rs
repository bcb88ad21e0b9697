//! `switch`: nginx points at the slot `start` chose (validated with `nginx -t`, graceful
//! reload), and `live-slot` and `current` record it.

use super::{Decided, HostState, View};
use crate::commands as cmd;
use crate::engine::facts::Facts;
use crate::engine::ops::{Decision, Op, Report};
use crate::render::{SLOTS, diff};

pub fn decide(v: &View, f: &Facts, st: &HostState) -> Decided {
    let target = st.target.ok_or("the start step must run before switch")?;
    let program = v.program(target);
    let live = f.live()?;
    let nginx = f.nginx()?;
    let want = &v.rendered.nginx[target];
    if st.old_slot.is_none()
        && nginx == Some(want.as_str())
        && live.current.as_deref() == Some(v.version())
        && live.slot == Some(target)
    {
        return Ok(Decision::Done(Report::ok(format!(
            "nginx -> {program}; current -> releases/{}",
            v.version()
        ))));
    }
    let d = diff(&v.paths.nginx_conf(), nginx, want);
    let from = live.current.clone().unwrap_or_else(|| "(none)".into());
    if v.check() {
        return Ok(Decision::Done(
            Report::changed(format!(
                "would point nginx at {program} and current at releases/{} (from {from})",
                v.version()
            ))
            .with_diff(d),
        ));
    }
    Ok(Decision::act(
        make_live(v, target, v.version(), nginx),
        Report::changed(format!(
            "nginx -> {program} (graceful reload); current: {from} -> {}",
            v.version()
        ))
        .with_diff(d),
    ))
}

/// Points nginx at `slot` (only if its site differs from `nginx_now`: `nginx -t`, then a
/// graceful reload) and records `slot` and `version` as live.
pub fn make_live(
    v: &View,
    slot: usize,
    version: &str,
    nginx_now: Option<&str>,
) -> Vec<crate::engine::ops::Action> {
    let want = &v.rendered.nginx[slot];
    let mut ops = Vec::new();
    if nginx_now != Some(want.as_str()) {
        let install =
            cmd::nginx_install_validated(&v.paths.nginx_conf(), want.clone().into_bytes());
        ops.push(Op::run(install, "installing the nginx site (nginx -t)").into());
        ops.push(Op::run(cmd::nginx_reload(), "nginx reload").into());
    }
    let record = cmd::set_live(v.paths, SLOTS[slot], version);
    ops.push(Op::run(record, "recording the live slot").into());
    ops
}
