//! Planning: everything that can be checked without a server is checked here (names,
//! application, environment, playbook, artifact access, templates rendered for every
//! host and both slots).  Bad input fails before any connection is opened.

use std::sync::Arc;

use deploy_wire::names;

use super::phases::JobPhase;
use super::{EngineConfig, IndexAccess, JobSpec};
use crate::error::InputError;
use crate::index::ServerIndex;
use crate::inventory::HookScope;
use crate::inventory::{App, Delivery, Environment, Host, Inventory};
use crate::playbook::{Playbook, Step};
use crate::procman::{self, ProcessManager};
use crate::render::{self, Context, Templates};

/// Files rendered for one host.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The process manager's program file per slot (index into [`render::SLOTS`]).
    pub slots: [String; 2],
    /// The nginx site: the same whatever the slot (it proxies to the live pointer).
    pub nginx: String,
    /// Holds secrets: never put into an event (see [`render::redact_env_file`]).
    pub env_file: String,
    /// The program file of each of the app's other processes, in the inventory's order.
    pub processes: Vec<String>,
}

/// A validated job, ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spec: JobSpec,
    pub app: App,
    pub env: Environment,
    pub playbook: Playbook,
    pub hosts: Vec<(Host, Rendered)>,
    /// Resolved from `spec.index` or the inventory.
    pub index: IndexAccess,
    /// The environment's process manager.
    pub pm: Arc<dyn ProcessManager>,
    /// Phases that run once per job, before or after the hosts (empty: hosts only).
    pub phases: Vec<Arc<dyn JobPhase>>,
}

fn request_error(field: &str, e: impl std::fmt::Display) -> InputError {
    InputError::new(
        std::path::Path::new("<request>"),
        None,
        field,
        e.to_string(),
    )
}

impl Plan {
    /// The job runs hooks once per environment (on its first host).  A rollback runs
    /// no hooks.
    pub fn has_once_hooks(&self) -> bool {
        let h = &self.app.runtime.hooks;
        let rollback = self.spec.no_install && !self.spec.restart;
        !rollback
            && h.before_switch
                .iter()
                .chain(&h.after_switch)
                .any(|x| x.scope == HookScope::Once)
    }
}

/// An application with hooks or processes needs a playbook with the steps that run
/// them (else they would silently never run).
fn check_steps(inv: &Inventory, app: &App, playbook: &Playbook) -> Result<(), InputError> {
    let r = &app.runtime;
    let needs = [
        (
            !r.hooks.before_switch.is_empty(),
            Step::BeforeSwitch,
            "hooks.before_switch",
        ),
        (
            !r.hooks.after_switch.is_empty(),
            Step::AfterSwitch,
            "hooks.after_switch",
        ),
        (!r.processes.is_empty(), Step::Processes, "processes"),
    ];
    for (has, step, field) in needs {
        if has && !playbook.steps.contains(&step) {
            return Err(InputError::new(
                &inv.path,
                None,
                format!("applications.{}.{field}", app.name),
                format!(
                    "playbook `{}` has no `{}` step, so these would never run; add the step",
                    playbook.name,
                    step.name()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks a request against the inventory and renders everything, touching no server.
pub fn plan(inv: &Inventory, cfg: &EngineConfig, spec: &JobSpec) -> Result<Plan, InputError> {
    names::check_ident("application name", &spec.app).map_err(|e| request_error("app", e))?;
    names::check_ident("environment name", &spec.env).map_err(|e| request_error("env", e))?;
    names::check_version(&spec.version).map_err(|e| request_error("version", e))?;
    let app = inv.app(&spec.app)?;
    let (env, hosts) = inv.hosts_for(app, &spec.env)?;
    let playbook = Playbook::load(&cfg.playbooks_dir, &app.playbook)?;
    check_steps(inv, app, &playbook)?;
    let index = index_access(inv, app, env, spec)?;
    let pm = procman::for_kind(env.process_manager);
    let templates = Templates::load(&cfg.templates_dir, pm.as_ref())?;
    let mut rendered = Vec::new();
    for h in hosts {
        rendered.push((
            h.clone(),
            render_host(&templates, pm.as_ref(), app, env, h, &spec.version)?,
        ));
    }
    Ok(Plan {
        spec: spec.clone(),
        app: app.clone(),
        env: env.clone(),
        playbook,
        hosts: rendered,
        index,
        pm,
        phases: Vec::new(),
    })
}

fn index_access(
    inv: &Inventory,
    app: &App,
    env: &Environment,
    spec: &JobSpec,
) -> Result<IndexAccess, InputError> {
    match (&spec.index, &app.index_url) {
        (Some(i), _) => Ok(i.clone()),
        (None, _) if env.delivery == Delivery::Relay => Err(InputError::new(
            &inv.path,
            None,
            format!(
                "applications.{}.environments.{}.delivery",
                app.name, env.name
            ),
            "`delivery: relay` needs the gateway's relay (deploy through `deploy-gateway serve`); `apply` installs directly from index_url",
        )),
        (None, Some(url)) => Ok(IndexAccess::Direct(ServerIndex {
            url: url.clone(),
            credentials: None,
        })),
        (None, None) => Err(InputError::new(
            &inv.path,
            None,
            format!("applications.{}.index_url", app.name),
            "no artifact source: give the application an index_url (or a source in the gateway's config)",
        )),
    }
}

fn render_host(
    t: &Templates,
    pm: &dyn ProcessManager,
    app: &App,
    env: &Environment,
    h: &Host,
    version: &str,
) -> Result<Rendered, InputError> {
    let ctx = |slot| Context::new(pm, app, env, &h.user, slot, version);
    let mut vars = app.env.clone();
    vars.extend(env.env.clone());
    Ok(Rendered {
        slots: [
            t.render(pm.template(), &ctx(0))?,
            t.render(pm.template(), &ctx(1))?,
        ],
        nginx: t.render(render::NGINX_TEMPLATE, &ctx(0))?,
        env_file: render::env_file(&vars),
        processes: app
            .runtime
            .processes
            .iter()
            .map(|p| {
                let pctx = render::ProcessContext::new(pm, app, env, p, version);
                t.render(pm.process_template(), &pctx)
            })
            .collect::<Result<_, _>>()?,
    })
}

/// The same plan for another release of the same application (a halt rollback): host
/// files rendered for `version`, nothing installed.
pub fn for_rollback(plan: &Plan, cfg: &EngineConfig, version: &str) -> Result<Plan, InputError> {
    let templates = Templates::load(&cfg.templates_dir, plan.pm.as_ref())?;
    let mut out = plan.clone();
    out.spec.version = version.to_string();
    out.spec.no_install = true;
    out.phases.clear();
    for (h, r) in out.hosts.iter_mut() {
        *r = render_host(
            &templates,
            plan.pm.as_ref(),
            &plan.app,
            &plan.env,
            h,
            version,
        )?;
    }
    Ok(out)
}
