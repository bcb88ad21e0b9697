//! Playbooks: an ordered list of built-in, idempotent steps (`playbooks/<name>.yml`).
//!
//! A playbook names steps; what each step does is code in [`crate::steps`].  An
//! unknown step is an error that lists the valid ones.  Steps guard their own
//! preconditions (for example `switch` refuses a release without its completion marker),
//! so an odd order can fail but never half-switch a server.

use std::path::Path;

use serde::Deserialize;

use crate::error::{InputError, from_yaml};

/// The built-in steps.  The YAML spelling is the snake_case name.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `/srv/apps/<app>/{releases,shared}` exist and belong to the SSH user.
    Layout,
    /// The release's virtualenv exists (rebuilt if a previous build did not finish).
    Venv,
    /// The release's package is installed from the index; the completion marker is
    /// written last.  (A rollback never installs: the release must be on disk.)
    Install,
    /// `shared/env` holds the application's environment variables (mode 0640).
    EnvFile,
    /// The application's `before_switch` hooks (migrations, collectstatic) run with the
    /// release's virtualenv and environment, as the app user: `once` hooks on the
    /// rollout's first host only, `every_host` hooks on each; a hook that ran for this
    /// release (its marker) is not run again.
    BeforeSwitch,
    /// The release runs in a slot: the live one if it already runs it unchanged, else the
    /// idle slot, started and health-checked on its own port.  Users see no change yet;
    /// a failure stops the new slot and leaves the live one alone.
    Start,
    /// The live pointer (`run/live.sock`, which nginx proxies through) is renamed to
    /// that slot's socket: no nginx reload, no client connection closed; `current`
    /// follows it.
    Switch,
    /// The application answers its health check through nginx; if not, the host is
    /// switched back to the previous slot, which still runs.
    Health,
    /// The application's other processes (workers) run the live release: restarted
    /// gracefully (TERM, then wait) when their release or config changed.
    Processes,
    /// The application's `after_switch` hooks, like `before_switch`.
    AfterSwitch,
    /// After the drain time, the previous slot is stopped.
    Drain,
    /// Releases beyond `keep_releases` are removed: never the live one nor the one a
    /// rollback would use; failed releases go first and do not count.
    Prune,
}

impl Step {
    pub const ALL: [Step; 12] = [
        Step::Layout,
        Step::Venv,
        Step::Install,
        Step::EnvFile,
        Step::BeforeSwitch,
        Step::Start,
        Step::Switch,
        Step::Health,
        Step::Processes,
        Step::AfterSwitch,
        Step::Drain,
        Step::Prune,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Layout => "layout",
            Step::Venv => "venv",
            Step::Install => "install",
            Step::EnvFile => "env_file",
            Step::BeforeSwitch => "before_switch",
            Step::Processes => "processes",
            Step::AfterSwitch => "after_switch",
            Step::Start => "start",
            Step::Switch => "switch",
            Step::Health => "health",
            Step::Drain => "drain",
            Step::Prune => "prune",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playbook {
    pub name: String,
    pub steps: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaybook {
    #[serde(default)]
    description: Option<String>,
    steps: Vec<Step>,
}

impl Playbook {
    /// Loads `dir/<name>.yml`.
    pub fn load(dir: &Path, name: &str) -> Result<Playbook, InputError> {
        deploy_wire::names::check_ident("playbook name", name)
            .map_err(|e| InputError::new(dir, None, "playbook", e.to_string()))?;
        let path = dir.join(format!("{name}.yml"));
        let text = std::fs::read_to_string(&path).map_err(|e| {
            InputError::new(
                &path,
                None,
                "",
                format!("cannot read playbook `{name}`: {e}"),
            )
        })?;
        Self::parse(&path, name, &text)
    }

    pub fn parse(path: &Path, name: &str, text: &str) -> Result<Playbook, InputError> {
        let raw: RawPlaybook =
            serde_saphyr::from_str(text).map_err(|e| from_yaml(path, text, e))?;
        let _ = raw.description;
        if raw.steps.is_empty() {
            return Err(InputError::new(
                path,
                None,
                "steps",
                "a playbook needs at least one step",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &raw.steps {
            if !seen.insert(*s) {
                return Err(InputError::new(
                    path,
                    None,
                    "steps",
                    format!("step `{}` appears twice", s.name()),
                ));
            }
        }
        Ok(Playbook {
            name: name.to_string(),
            steps: raw.steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_default_playbook_parses() {
        let dir = crate::repo_root().join("playbooks");
        let pb = Playbook::load(&dir, "python-web").unwrap();
        assert_eq!(pb.steps, Step::ALL.to_vec());
    }

    #[test]
    fn an_unknown_step_lists_the_valid_ones() {
        let err = Playbook::parse(
            Path::new("pb.yml"),
            "pb",
            "steps:\n  - layout\n  - instal\n",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.line, Some(3), "{msg}");
        assert!(msg.contains("instal"), "{msg}");
        for s in Step::ALL {
            assert!(msg.contains(s.name()), "{msg} should list {}", s.name());
        }
    }
}
