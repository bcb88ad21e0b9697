//! The gateway's own configuration (`gateway.toml`): where it listens, its state file,
//! the inventory, playbooks and templates, its SSH key and pinned host keys, and which CLI
//! versions it accepts.  Relative paths are relative to the config file's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::InputError;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub path: PathBuf,
    pub listen: String,
    pub database: PathBuf,
    pub inventory: PathBuf,
    pub known_hosts: PathBuf,
    pub ssh_key: PathBuf,
    pub playbooks: PathBuf,
    pub templates: PathBuf,
    pub command_timeout_secs: u64,
    pub cli: CliVersions,
    /// Per application: the index URL the *gateway* uses to list versions, when it
    /// differs from the one the servers use (the inventory's `index_url`).
    pub index_urls: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliVersions {
    /// Older CLIs are refused with 426 Upgrade Required.
    pub oldest: String,
    /// Older CLIs (but not older than `oldest`) get a one-line notice.
    pub newest: String,
    /// Printed by a refused CLI; `{version}` becomes `newest`.
    pub upgrade_command: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default = "default_listen")]
    listen: String,
    database: PathBuf,
    inventory: PathBuf,
    known_hosts: PathBuf,
    ssh_key: PathBuf,
    #[serde(default = "default_playbooks")]
    playbooks: PathBuf,
    #[serde(default = "default_templates")]
    templates: PathBuf,
    #[serde(default = "default_timeout")]
    command_timeout_secs: u64,
    cli: CliVersions,
    #[serde(default)]
    index_urls: BTreeMap<String, String>,
}

fn default_listen() -> String {
    "127.0.0.1:8700".into()
}
fn default_playbooks() -> PathBuf {
    "playbooks".into()
}
fn default_templates() -> PathBuf {
    "templates".into()
}
fn default_timeout() -> u64 {
    900
}

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<GatewayConfig, InputError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            InputError::new(
                path,
                None,
                "",
                format!("cannot read the gateway config: {e}"),
            )
        })?;
        let raw: Raw = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start].lines().count().max(1) as u64);
            InputError::new(path, line, "", e.message().to_string())
        })?;
        for (field, v) in [
            ("cli.oldest", &raw.cli.oldest),
            ("cli.newest", &raw.cli.newest),
        ] {
            if !deploy_wire::api::is_semver(v) {
                return Err(InputError::new(
                    path,
                    None,
                    field,
                    format!("expected a semver version, got {v:?}"),
                ));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        Ok(GatewayConfig {
            path: path.to_path_buf(),
            listen: raw.listen,
            database: abs(raw.database),
            inventory: abs(raw.inventory),
            known_hosts: abs(raw.known_hosts),
            ssh_key: abs(raw.ssh_key),
            playbooks: abs(raw.playbooks),
            templates: abs(raw.templates),
            command_timeout_secs: raw.command_timeout_secs,
            cli: raw.cli,
            index_urls: raw.index_urls,
        })
    }

    pub fn upgrade_command(&self) -> String {
        self.cli
            .upgrade_command
            .replace("{version}", &self.cli.newest)
    }
}
