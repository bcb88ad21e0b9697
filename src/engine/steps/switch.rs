//! `switch`: the live pointer (`run/live.sock`) goes to the slot `start` chose, with one
//! rename: nginx connects through it for every request, so nothing is reloaded and no
//! client connection is closed.  The nginx site itself is installed only when it differs
//! (a first deploy, a changed server name), validated with `nginx -t`, then reloaded.
//! With the pointer, the boot flags move: only the live slot starts at boot.

use super::{Decided, HostState, View};
use crate::commands as cmd;
use crate::facts::Facts;
use crate::ops::{Action, Decision, Op, Report};
use crate::render::diff;

pub fn decide(v: &View, f: &Facts, st: &mut HostState) -> Decided {
    let target = st.target.ok_or("the start step must run before switch")?;
    let program = v.program(target);
    let live = f.live()?;
    let nginx = f.nginx()?;
    let want = &v.rendered.nginx;
    if st.old_slot.is_none()
        && nginx == Some(want.as_str())
        && live.version.as_deref() == Some(v.version())
        && live.slot == Some(target)
    {
        return Ok(Decision::Done(Report::ok(format!(
            "live -> {program} ({})",
            v.version()
        ))));
    }
    let d = diff(&v.paths.nginx_conf(), nginx, want);
    let from = live.version.clone().unwrap_or_else(|| "(none)".into());
    if v.check() {
        let pointer_stays =
            live.slot == Some(target) && live.version.as_deref() == Some(v.version());
        let what = if pointer_stays {
            format!(
                "would install the nginx site (nginx -t) and reload; live stays on {program} ({})",
                v.version()
            )
        } else {
            format!(
                "would point the live socket at {program} ({} -> {})",
                from,
                v.version()
            )
        };
        return Ok(Decision::Done(Report::changed(what).with_diff(d)));
    }
    let mut actions = Vec::new();
    let reload = nginx != Some(want.as_str());
    if reload {
        st.nginx_before = Some(nginx.map(str::to_string));
        actions.extend(install_site(v, want));
    }
    actions.push(
        Op::SetLive {
            slot: target,
            version: v.version().to_string(),
        }
        .into(),
    );
    actions.extend(at_boot(v, target).into_iter().map(Action::from));
    let how = if reload {
        "nginx site installed and reloaded"
    } else {
        "no reload"
    };
    Ok(Decision::act(
        actions,
        Report::changed(format!(
            "live -> {program}: {from} -> {} ({how})",
            v.version()
        ))
        .with_diff(d),
    ))
}

/// Only `live` starts at boot: its program on, the other slot's off (the process
/// manager's [`crate::procman::ProcessManager::at_boot`]; neither program is touched
/// now).  After the pointer moved, in the same batch: a host that reboots later brings
/// back the slot nginx sends traffic to, and only that one.
pub fn at_boot(v: &View, live: usize) -> Vec<Op> {
    let (on, off) = (v.program(live), v.program(1 - live));
    vec![
        Op::run(v.pm.at_boot(&on, true), format!("starting {on} at boot")),
        Op::run(
            v.pm.at_boot(&off, false),
            format!("not starting {off} at boot"),
        ),
    ]
}

/// Installs `site` if the whole nginx configuration passes `nginx -t` with it, then
/// reloads (gracefully), in one command a dropped connection cannot split.
pub fn install_site(v: &View, site: &str) -> Vec<Action> {
    let install = cmd::nginx_install_and_reload(&v.paths.nginx_conf(), site.as_bytes().to_vec());
    vec![
        Op::run(
            install,
            "installing the nginx site (nginx -t) and reloading",
        )
        .into(),
    ]
}
