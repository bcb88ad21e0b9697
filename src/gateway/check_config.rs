//! `deploy-gateway check-config`: everything `serve` would load, checked by the code that
//! loads it, and every (application, environment) planned as a job would be, without
//! starting anything: no listener, no connection, no database opened.
//!
//! Decisions:
//! - One loader per input, the gateway's own: `GatewayConfig::load` (the config and its
//!   secrets' files and variables), `ssh::load_key`, `HostKeyPins::load`, `UvTool::load`,
//!   `Inventory::load`, then `Settings::plan` (the job runner's path: application,
//!   environment, playbook, artifact access, every template rendered for every host) for
//!   a placeholder version.  Only the file modes are checked here alone: the SSH key
//!   must be its owner's only (as OpenSSH demands), the pinned host keys writable by
//!   their owner only (whoever may write them may pin a key).
//! - Every problem found is reported, not just the first; but planning needs the key,
//!   the pins and the inventory, so when one of them fails it waits for the next run.
//! - The pinned host keys must exist (an empty file is fine): a gateway with none
//!   reaches no server.  A host of the inventory without a pin is a note, not a
//!   problem (`trust-host` may come later).
//! - The database is not opened (a SQLite file is created by `serve`; a PostgreSQL
//!   server may be down now and up at start).
//! - Problems are printed redacted (`InputError::redacted`): under systemd they land in
//!   the journal.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::GatewayConfig;
use super::relay::{Relay, RelayCache};
use super::settings::Settings;
use crate::engine::{Collect, IndexAccess, JobSpec, UvTool};
use crate::error::InputError;
use crate::inventory::Inventory;
use crate::pins::HostKeyPins;

/// The version every environment is planned with (templates render for any).
const PLACEHOLDER_VERSION: &str = "0.0.0";

/// What a valid config serves.
#[derive(Debug)]
pub struct Summary {
    pub config: PathBuf,
    pub applications: usize,
    pub environments: usize,
    pub hosts: usize,
    /// What works but needs a look (hosts without a pinned key).
    pub notes: Vec<String>,
}

impl Summary {
    /// The `ok:` line.
    pub fn line(&self) -> String {
        let n =
            |k: usize, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
        format!(
            "ok: {}: {}, {}, {}",
            self.config.display(),
            n(self.applications, "application", "applications"),
            n(self.environments, "environment", "environments"),
            n(self.hosts, "host", "hosts"),
        )
    }
}

/// The config's line that sets `key` (`key = ...` at the start of a line), if any.
fn line_of(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i as u64 + 1)
}

/// The mode bits of `path` that must be clear: `bad` (e.g. 0o077), with `fix` as advice.
fn check_mode(path: &Path, bad: u32, what: &str, fix: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & bad != 0 {
        return Err(format!(
            "{} is {what} (mode {mode:04o}): `chmod {fix} {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// Checks the config at `path` and everything it names; every problem, or a summary.
pub fn check(path: &Path) -> Result<Summary, Vec<InputError>> {
    let cfg = GatewayConfig::load(path).map_err(|e| vec![e])?;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut problems = Vec::new();
    let in_config = |key: &str, m: String| InputError::new(path, line_of(&text, key), key, m);

    let key = check_mode(&cfg.ssh_key, 0o077, "readable or writable by others", "600")
        .and_then(|()| crate::ssh::load_key(&cfg.ssh_key))
        .map_err(|m| problems.push(in_config("ssh_key", m)))
        .ok();
    let pins = check_mode(
        &cfg.known_hosts,
        0o022,
        "writable by others, who could pin any key",
        "go-w",
    )
    .map_err(|m| {
        let m = match cfg.known_hosts.exists() {
            true => m,
            false => format!("{m}: pin each server's key with `deploy-gateway trust-host HOST`"),
        };
        in_config("known_hosts", m)
    })
    .and_then(|()| HostKeyPins::load(&cfg.known_hosts))
    .map_err(|e| problems.push(e))
    .ok();
    let uv = match &cfg.uv {
        Some(u) => UvTool::load(&u.binary, Some(&u.sha256))
            .map(Some)
            .map_err(|m| problems.push(InputError::new(path, line_of(&text, "binary"), "uv", m)))
            .unwrap_or(None),
        None => None,
    };
    let inv = Inventory::load(&cfg.inventory)
        .map_err(|e| problems.push(e))
        .ok();

    let (Some(key), Some(pins), Some(inv)) = (key, pins, inv) else {
        return Err(problems);
    };
    let relay_cache = Arc::new(RelayCache::new(
        cfg.relay_cache.clone(),
        cfg.relay_cache_max_mb.saturating_mul(1 << 20),
    ));
    let settings = Settings::gateway(Arc::new(cfg.clone()), key, uv);
    problems.extend(plan_all(&settings, &inv, &relay_cache));
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(summarize(&cfg, &inv, &pins))
}

/// `deploy-gateway check-config`: the `ok:` line and notes on stdout, exit 0; or each
/// problem (redacted) on stderr, exit 2.
pub fn run(path: &Path) -> u8 {
    match check(path) {
        Ok(summary) => {
            println!("{}", summary.line());
            for note in &summary.notes {
                println!("note: {note}");
            }
            0
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{}", p.redacted());
            }
            eprintln!(
                "deploy-gateway: {} problem(s) in {} and the files it names; nothing was started",
                problems.len(),
                path.display()
            );
            2
        }
    }
}

/// Plans every environment of every application as a job of `PLACEHOLDER_VERSION`.
fn plan_all(settings: &Settings, inv: &Inventory, cache: &Arc<RelayCache>) -> Vec<InputError> {
    let mut problems = Vec::new();
    for app in inv.apps.values() {
        for env in app.environments.keys() {
            let spec = JobSpec {
                app: app.name.clone(),
                env: env.clone(),
                version: PLACEHOLDER_VERSION.into(),
                check: true,
                no_install: false,
                restart: false,
                batch: None,
                index: None,
                wheel: None,
            };
            // A relay as a job's, with nobody listening to its events: nothing is
            // fetched while planning.
            let relay = |source| {
                Some(IndexAccess::Relay(Arc::new(Relay::new(
                    source,
                    reqwest::Client::new(),
                    cache.clone(),
                    Arc::new(Collect::default()),
                ))))
            };
            if let Err(e) = settings.plan(inv, spec, relay) {
                problems.push(e);
            }
        }
    }
    problems
}

fn summarize(cfg: &GatewayConfig, inv: &Inventory, pins: &HostKeyPins) -> Summary {
    let notes = inv
        .hosts
        .values()
        .filter(|h| pins.get(&h.address, h.port).is_none())
        .map(|h| {
            format!(
                "host {} ({}:{}) has no pinned key in {}: `deploy-gateway trust-host {}` before deploying to it",
                h.name,
                h.address,
                h.port,
                cfg.known_hosts.display(),
                h.name
            )
        })
        .collect();
    Summary {
        config: cfg.path.clone(),
        applications: inv.apps.len(),
        environments: inv.apps.values().map(|a| a.environments.len()).sum(),
        hosts: inv.hosts.len(),
        notes,
    }
}

#[cfg(test)]
#[path = "check_config_tests.rs"]
mod tests;
