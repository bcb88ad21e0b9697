//! The built-in steps.  Each is a pure function from what the host has ([`Facts`]) and
//! what earlier steps of this job decided ([`HostState`]) to a [`Decision`]: ok, or the
//! operations that make the host as wanted, reported `changed`; in check mode, what it
//! *would* change (with a diff for rendered files) and no operation at all.  The engine
//! reads the facts and runs the operations; no step touches a connection.

pub mod drain;
mod env_file;
mod health;
pub mod hooks;
mod install;
mod layout;
mod processes;
mod prune;
mod start;
mod switch;
pub mod tidy;
mod venv;

use crate::commands::{AppPaths, Tool};
use crate::inventory::Host;
use crate::playbook::Step;
use crate::procman::ProcessManager;
use crate::render::SLOTS;

use super::UvTool;
use super::facts::{Fact, Facts};
use super::ops::{Decision, Report};
use super::plan::{Plan, Rendered};

pub use prune::prune_plan;

/// What a step may look at: the job and this host's files, rendered at plan time.
pub struct View<'a> {
    pub plan: &'a Plan,
    pub host: &'a Host,
    pub rendered: &'a Rendered,
    pub paths: &'a AppPaths,
    pub pm: &'a dyn ProcessManager,
    /// The uv binary the engine may ship (None: pip only).
    pub uv: Option<&'a UvTool>,
}

impl View<'_> {
    pub fn check(&self) -> bool {
        self.plan.spec.check
    }
    pub fn version(&self) -> &str {
        &self.plan.spec.version
    }
    pub fn program(&self, slot: usize) -> String {
        self.pm.program(&self.plan.app.name, SLOTS[slot])
    }
    pub fn conf_path(&self, slot: usize) -> String {
        self.pm.conf_path(&self.plan.app.name, SLOTS[slot])
    }
}

/// What earlier steps of this job decided on this host.
#[derive(Debug, Clone, Default)]
pub struct HostState {
    /// In check mode: the release would be built (so facts about it are stale).
    pub would_build: bool,
    pub env_changed: bool,
    /// The slot that runs (or will run) the release, once `start` decided.
    pub target: Option<usize>,
    /// The slot that was live before, if this job moves traffic away from it.
    pub old_slot: Option<usize>,
    /// Slots that were not live yet ran when `start` decided: left running by an
    /// interrupted job.  `start` stops them (in check mode: says it would, and `drain`
    /// does not say it again).
    pub leftovers: Vec<usize>,
    /// The release that was live before this job.
    pub previous: Option<String>,
    /// What the host serves now, as far as this job knows (set by each switch).
    pub serving: Option<String>,
    /// The nginx site as it was before `switch` replaced it (to put it back with a
    /// switch back), when `switch` replaced it.
    pub nginx_before: Option<Option<String>>,
    /// The installer the `venv` step chose.
    pub tool: Option<Tool>,
    /// What shipping uv gave: the uploaded version, or why it failed.
    pub uv_shipped: Option<Result<String, String>>,
    /// This host's turn in the job's shared environments, once taken (`share.rs`).
    pub share: Option<crate::share::Turn>,
    /// The release's environment hash, once known (its marker, a build, an unpack).
    pub env_sha256: Option<String>,
}

/// The facts a step decides from.
pub fn needs(step: Step, v: &View) -> Vec<Fact> {
    match step {
        Step::Layout => vec![Fact::Layout],
        Step::Venv if venv::wants_uv(v) => vec![Fact::Release, Fact::Uv],
        Step::Venv | Step::Install => vec![Fact::Release],
        Step::EnvFile => vec![Fact::EnvFile],
        Step::Start => vec![Fact::Live, Fact::Slots],
        Step::Switch => vec![Fact::Live, Fact::Nginx],
        Step::Health => vec![],
        Step::Drain => vec![Fact::Live, Fact::Slots],
        Step::Prune => vec![Fact::Live, Fact::Releases],
        // Nothing to read for an app without hooks or other processes.
        Step::BeforeSwitch if hooks::for_host(v, hooks::When::BeforeSwitch).is_empty() => vec![],
        Step::AfterSwitch if hooks::for_host(v, hooks::When::AfterSwitch).is_empty() => vec![],
        Step::BeforeSwitch | Step::AfterSwitch => vec![Fact::Hooks],
        // Always: a process the inventory no longer names is found there and removed.
        Step::Processes => vec![Fact::Processes],
    }
}

/// The facts a step's operations may change (forgotten after it acts).
pub fn touches(step: Step) -> &'static [Fact] {
    match step {
        Step::Layout => &[Fact::Layout],
        Step::Venv => &[Fact::Release, Fact::Uv, Fact::Releases],
        Step::Install => &[Fact::Release, Fact::Releases],
        Step::EnvFile => &[Fact::EnvFile],
        Step::Start => &[Fact::Slots, Fact::Releases],
        Step::Switch => &[Fact::Live, Fact::Nginx],
        Step::Health => &[Fact::Live, Fact::Nginx, Fact::Slots, Fact::Releases],
        Step::Drain => &[Fact::Slots],
        Step::Prune => &[Fact::Releases],
        Step::BeforeSwitch | Step::AfterSwitch => &[Fact::Hooks],
        Step::Processes => &[Fact::Processes],
    }
}

/// Decides one step.  Never panics: a problem is a `failed` report.
pub fn decide(step: Step, v: &View, f: &Facts, st: &mut HostState) -> Decision {
    let d = match step {
        Step::Layout => layout::decide(v, f),
        Step::Venv => venv::decide(v, f, st),
        Step::Install => install::decide(v, f, st),
        Step::EnvFile => env_file::decide(v, f, st),
        Step::Start => start::decide(v, f, st),
        Step::Switch => switch::decide(v, f, st),
        Step::Health => health::decide(v, st),
        Step::Drain => drain::decide(v, f, st),
        Step::Prune => prune::decide(v, f),
        Step::BeforeSwitch => hooks::decide(v, f, st, hooks::When::BeforeSwitch),
        Step::AfterSwitch => hooks::decide(v, f, st, hooks::When::AfterSwitch),
        Step::Processes => processes::decide(v, f),
    };
    d.unwrap_or_else(|e| Decision::Done(Report::failed(e)))
}

/// Replaces every secret in `text` with `***`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

type Decided = Result<Decision, String>;

#[cfg(test)]
mod tests;
