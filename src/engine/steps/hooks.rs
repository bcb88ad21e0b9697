//! `before_switch` and `after_switch`: the application's release hooks, as the app user
//! with the release's virtualenv and environment, their output streamed as events.
//! `once` hooks run on the rollout's first host only (the rollout starts with that host
//! alone, and halts if it fails); `every_host` hooks on each host.  A hook that ran for
//! this release (its marker in the release) is not run again, and a rollback runs none.
//! With static files, the release's static directory is the app user's while the hooks
//! run (collectstatic) and is handed back to the deploy user after, even on failure.

use super::{Decided, HostState, View};
use crate::commands::app as app_cmd;
use crate::facts::Facts;
use crate::inventory::{Hook, HookScope};
use crate::ops::{Decision, Op, Recovery, Report};
use crate::render::app_env;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum When {
    BeforeSwitch,
    AfterSwitch,
}

/// The hooks of `when` that belong on this host.
pub fn for_host<'a>(v: &'a View, when: When) -> Vec<&'a Hook> {
    let hooks = &v.plan.app.runtime.hooks;
    let list = match when {
        When::BeforeSwitch => &hooks.before_switch,
        When::AfterSwitch => &hooks.after_switch,
    };
    let first = v.plan.hosts.first().map(|(h, _)| h.name.as_str()) == Some(&v.host.name);
    list.iter()
        .filter(|h| h.scope == HookScope::EveryHost || first)
        .collect()
}

/// A rollback goes back to a release that ran before: it runs no hooks.
pub fn is_rollback(v: &View) -> bool {
    v.plan.spec.no_install && !v.plan.spec.restart
}

pub fn decide(v: &View, f: &Facts, st: &HostState, when: When) -> Decided {
    let hooks = for_host(v, when);
    if hooks.is_empty() {
        return Ok(Decision::Done(Report::skipped("no hooks for this host")));
    }
    if is_rollback(v) {
        return Ok(Decision::Done(Report::skipped("a rollback runs no hooks")));
    }
    let mut todo = Vec::new();
    for h in hooks {
        if st.would_build || !f.hook_ran(&h.name)? {
            todo.push(h);
        }
    }
    let names = |hs: &[&Hook]| {
        hs.iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let version = v.version();
    if todo.is_empty() {
        return Ok(Decision::Done(Report::ok(format!(
            "{} already ran for {version}",
            names(&for_host(v, when))
        ))));
    }
    if v.check() {
        return Ok(Decision::Done(Report::changed(format!(
            "would run {} for {version}",
            names(&todo)
        ))));
    }
    let env = app_env(&v.plan.app, version);
    let static_dir = env
        .static_root
        .clone()
        .filter(|_| when == When::BeforeSwitch);
    let seal = static_dir.as_ref().map(|d| {
        Op::run(
            app_cmd::static_seal(d, &v.host.user, env.run_as),
            "sealing the static files",
        )
    });
    let mut actions = Vec::new();
    if let Some(d) = &static_dir {
        actions.push(
            Op::run(
                app_cmd::static_open(d, env.run_as),
                "opening the static directory",
            )
            .into(),
        );
    }
    for h in &todo {
        let run = Op::Run {
            cmd: app_cmd::hook(v.paths, &env, &h.command, h.timeout_secs),
            what: format!("hook {}", h.name),
            stream: true,
        };
        actions.push(run.or_else(Recovery {
            always: seal.clone().into_iter().collect(),
            ..Default::default()
        }));
        let mark = app_cmd::mark_hook(v.paths, version, &h.name);
        actions.push(Op::run(mark, "recording the hook").into());
    }
    actions.extend(seal.map(Into::into));
    Ok(Decision::act(
        actions,
        Report::changed(format!("ran {} for {version}", names(&todo))),
    ))
}
