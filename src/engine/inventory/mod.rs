//! The inventory: hosts, applications and their environments, parsed from one YAML file
//! and validated before anything touches a server.
//!
//! Parsing is strict: unknown fields are errors (a typo must not be silently ignored),
//! and every name that reaches a server path or command is checked by
//! [`deploy_wire::names`].  Errors name the file, the line and the field.
//!
//! Environments select hosts by **group**, so a host in no group could never be deployed
//! to; that is reported as an error rather than ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use deploy_wire::names;
use serde::Deserialize;

use crate::error::{InputError, from_yaml};

mod check;
mod raw;
mod runtime;

use check::Check;
use raw::RawInventory;

/// The process managers an application or an environment may name
/// (`process_manager: supervisord | systemd`); the seam (`procman::for_kind`) turns one
/// into its implementation.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProcessManagerKind {
    #[default]
    Supervisord,
    Systemd,
}
pub use runtime::{Hook, HookScope, Hooks, Process, Runtime, StaticFiles};

/// A server the gateway can SSH to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub groups: Vec<String>,
    /// The network segment the host is in: only a gateway or runner of that site (its
    /// `site` setting) reaches it; None: the segment of gateways with no site.
    pub site: Option<String>,
}

/// How the engine decides that a release is healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// HTTP path requested through nginx on the server (with the first server name as Host).
    pub path: String,
    /// The status code that counts as healthy.
    pub expect_status: u16,
    /// Timeout of one request, in seconds.
    pub timeout_secs: u32,
    /// How many attempts before the check fails.
    pub retries: u32,
    /// Pause between attempts, in milliseconds.
    pub interval_ms: u32,
}

/// A named set of hosts for one application, with its own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    pub groups: Vec<String>,
    /// How many hosts the engine works on at once.
    pub parallel: usize,
    /// Extra environment variables, merged over the application's.
    pub env: BTreeMap<String, String>,
    /// The CLI asks for confirmation before deploying here (default: names starting
    /// with `prod`).
    pub confirm: bool,
    pub rollout: Rollout,
    /// How this environment's servers get the release's artifacts.
    pub delivery: Delivery,
    /// When deploys, restarts and scheduled runs may start (none: any time).
    pub windows: Vec<crate::schedule::Window>,
    /// What keeps the slots and processes running on its hosts: its own
    /// `process_manager:`, else the application's.
    pub process_manager: ProcessManagerKind,
    /// Its line in the inventory file (0: unknown): listings keep the file's order
    /// ([`App::environments_in_order`]).
    pub line: u64,
}

/// How servers reach the artifact repository (per environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// The server's installer uses the index itself (credentials, if any, only in the
    /// SSH session's environment).
    #[default]
    Direct,
    /// The server has no route to the repository: the gateway offers the index through
    /// the SSH connection (a reverse port forward to its relay).
    Relay,
}

/// Which installer builds a release's virtualenv (per application).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Installer {
    /// `python3 -m venv` and pip.
    #[default]
    Pip,
    /// `uv venv` and `uv pip install`, with a pinned uv binary the engine ships to the
    /// server; falls back to pip where the engine has no uv binary or the server cannot
    /// run it.
    Uv,
}

/// How a release rolls across an environment's hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// Hosts per batch after the canary.
    pub batch: BatchSize,
    /// Deploy to one host first, alone.
    pub canary: bool,
    /// Pause between batches, in seconds.
    pub pause_secs: u32,
    /// Failed hosts tolerated before the rollout halts.
    pub max_failed: u32,
    /// What happens to hosts already upgraded when the rollout halts.
    pub on_halt: OnHalt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Count(u32),
    Percent(u32),
}

impl BatchSize {
    /// Parses `3` or `25%`.
    pub fn parse(s: &str) -> Result<BatchSize, String> {
        let s = s.trim();
        let (num, pct) = match s.strip_suffix('%') {
            Some(n) => (n, true),
            None => (s, false),
        };
        match num.parse::<u32>() {
            Ok(n) if n >= 1 && (!pct || n <= 100) => Ok(if pct {
                BatchSize::Percent(n)
            } else {
                BatchSize::Count(n)
            }),
            _ => Err(format!(
                "expected a host count (3) or a percentage (25%), got {s:?}"
            )),
        }
    }
    /// Hosts per batch out of `total`.
    pub fn of(self, total: usize) -> usize {
        match self {
            BatchSize::Count(n) => n as usize,
            BatchSize::Percent(p) => (total * p as usize).div_ceil(100),
        }
        .max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnHalt {
    /// Hosts already upgraded go back to their previous release (the default), so the
    /// environment runs one release.
    Rollback,
    /// Hosts already upgraded stay upgraded.
    Keep,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            batch: BatchSize::Percent(100),
            canary: true,
            pause_secs: 0,
            max_failed: 0,
            on_halt: OnHalt::Rollback,
        }
    }
}

/// A Python web application and how it runs.
/// A process must stay up this long after it started (`settle_secs`) unless the
/// inventory says otherwise: long enough for a worker that fails on import or on its
/// first connection to show it, short enough not to slow a deploy much.
pub const DEFAULT_SETTLE_SECS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: String,
    /// Distribution name on the package index.
    pub package: String,
    /// The PyPI simple index the servers install from (direct delivery), when the
    /// gateway's config names no artifact source for this application.
    pub index_url: Option<String>,
    pub installer: Installer,
    /// What keeps the slots running (`process_manager:`, default supervisord): the
    /// default of its environments, which may each name another
    /// ([`Environment::process_manager`], what the engine uses).
    pub process_manager: ProcessManagerKind,
    /// Name of the playbook under `playbooks/` (without `.yml`).
    pub playbook: String,
    /// WSGI entry point gunicorn serves, `module:callable`.
    pub wsgi: String,
    /// Loopback port gunicorn listens on; nginx proxies to it.
    pub port: u16,
    pub workers: u32,
    pub server_names: Vec<String>,
    pub health: Health,
    /// Environment variables of the process.  Treated as secrets: written to the server
    /// through stdin, never shown in events, diffs or errors.
    pub env: BTreeMap<String, String>,
    /// How many complete releases to keep on disk (at least 1; the live one is always kept).
    pub keep_releases: u32,
    /// Seconds the old slot keeps running after nginx switched away from it.
    pub drain_secs: u32,
    /// Seconds a web slot or a copy of a process must stay running after it started
    /// before its host counts as ok (the process manager's own measure: supervisord's
    /// `startsecs`); a process that exits sooner fails the host, as a failed health
    /// check does.  Default [`DEFAULT_SETTLE_SECS`]; 1 to 300.
    pub settle_secs: u32,
    pub environments: BTreeMap<String, Environment>,
    /// How its processes run: user, web server options, other processes, hooks, static
    /// files.
    pub runtime: Runtime,
}

impl App {
    /// Its environments in the inventory file's order (the map is by name).
    pub fn environments_in_order(&self) -> Vec<&Environment> {
        let mut envs: Vec<&Environment> = self.environments.values().collect();
        envs.sort_by_key(|e| e.line);
        envs
    }
}

#[derive(Debug, Clone)]
pub struct Inventory {
    pub path: PathBuf,
    pub hosts: BTreeMap<String, Host>,
    pub apps: BTreeMap<String, App>,
}

// ---- loading and validation -----------------------------------------------------------

impl Inventory {
    /// Reads and validates an inventory file.
    pub fn load(path: &Path) -> Result<Inventory, InputError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            InputError::new(path, None, "", format!("cannot read the inventory: {e}"))
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates inventory text; `path` is used in error messages only.
    pub fn parse(path: &Path, text: &str) -> Result<Inventory, InputError> {
        let raw: RawInventory =
            serde_saphyr::from_str(text).map_err(|e| from_yaml(path, text, e))?;
        let c = Check { path };
        let mut hosts = BTreeMap::new();
        let mut groups: BTreeSet<String> = BTreeSet::new();
        for (name, h) in raw.hosts {
            let host = c.host(name, h)?;
            groups.extend(host.groups.iter().cloned());
            hosts.insert(host.name.clone(), host);
        }
        let mut apps = BTreeMap::new();
        for (name, a) in raw.applications {
            let app = c.app(name, a, &groups, &hosts)?;
            apps.insert(app.name.clone(), app);
        }
        Ok(Inventory {
            path: path.to_path_buf(),
            hosts,
            apps,
        })
    }

    pub fn app(&self, name: &str) -> Result<&App, InputError> {
        self.apps.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.apps.keys().map(String::as_str).collect();
            InputError::new(
                &self.path,
                None,
                "applications",
                format!("no application `{name}`; known: {}", known.join(", ")),
            )
        })
    }

    /// The hosts of an application's environment, in name order.
    pub fn hosts_for<'a>(
        &'a self,
        app: &'a App,
        env: &str,
    ) -> Result<(&'a Environment, Vec<&'a Host>), InputError> {
        let e = app.environments.get(env).ok_or_else(|| {
            let known: Vec<&str> = app.environments.keys().map(String::as_str).collect();
            InputError::new(
                &self.path,
                None,
                format!("applications.{}.environments", app.name),
                format!("no environment `{env}`; known: {}", known.join(", ")),
            )
        })?;
        let hosts = self
            .hosts
            .values()
            .filter(|h| h.groups.iter().any(|g| e.groups.contains(g)))
            .collect();
        Ok((e, hosts))
    }
}

pub fn check_index_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r)
            if !r.is_empty()
                && r.chars().all(|c| c.is_ascii_graphic())
                && !r.contains(['\'', '"', '`', '\\', '$']) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "expected an http(s) URL of a PyPI simple index, got {url:?}"
        )),
    }
}

fn check_env(env: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in env {
        names::check_env_key(k).map_err(|e| e.to_string())?;
        if v.contains(['\n', '\r', '\0']) {
            // The value itself is never shown: it may be a secret.
            return Err(format!(
                "the value of {k} contains a line break or NUL byte"
            ));
        }
    }
    Ok(())
}

/// The `host` part of an index URL (for pip's `--trusted-host` on plain-http indexes).
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let authority = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    Some(authority.split(':').next().unwrap_or(authority)).filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests;
