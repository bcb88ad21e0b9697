//! The inventory file's YAML shape, as parsed (serde-saphyr, with spans for line
//! numbers; unknown fields rejected) before [`super::check`] validates it.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::runtime::{RawHooks, RawProcess, RawStatic};
use super::{Delivery, Installer, OnHalt};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRollout {
    #[serde(default)]
    pub(super) batch: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) canary: Option<bool>,
    #[serde(default)]
    pub(super) pause_secs: Option<u32>,
    #[serde(default)]
    pub(super) max_failed: Option<u32>,
    #[serde(default)]
    pub(super) on_halt: Option<OnHalt>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInventory {
    #[serde(default)]
    pub(super) hosts: BTreeMap<String, Spanned<RawHost>>,
    #[serde(default)]
    pub(super) applications: BTreeMap<String, Spanned<RawApp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub(super) address: Spanned<String>,
    #[serde(default = "default_ssh_port")]
    pub(super) port: u16,
    #[serde(default = "default_user")]
    pub(super) user: Spanned<String>,
    #[serde(default = "sp_default")]
    pub(super) groups: Spanned<Vec<String>>,
    /// The network segment the host is in (`site`): only a runner of that site reaches it.
    #[serde(default)]
    pub(super) site: Option<Spanned<String>>,
}

pub(super) fn sp<T>(value: T) -> Spanned<T> {
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}
fn sp_default<T: Default>() -> Spanned<T> {
    sp(T::default())
}
fn default_ssh_port() -> u16 {
    22
}
fn default_user() -> Spanned<String> {
    sp("deploy".into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    pub(super) package: Spanned<String>,
    #[serde(default)]
    pub(super) index_url: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) installer: Installer,
    #[serde(default)]
    pub(super) process_manager: super::ProcessManagerKind,
    #[serde(default = "default_playbook")]
    pub(super) playbook: Spanned<String>,
    pub(super) wsgi: Spanned<String>,
    pub(super) port: u16,
    #[serde(default = "default_workers")]
    pub(super) workers: u32,
    pub(super) server_names: Spanned<Vec<String>>,
    #[serde(default)]
    pub(super) health: RawHealth,
    #[serde(default = "sp_default")]
    pub(super) env: Spanned<BTreeMap<String, String>>,
    #[serde(default = "default_keep")]
    pub(super) keep_releases: Spanned<u32>,
    #[serde(default = "default_drain")]
    pub(super) drain_secs: u32,
    #[serde(default = "default_settle")]
    pub(super) settle_secs: Spanned<u32>,
    pub(super) environments: BTreeMap<String, Spanned<RawEnvironment>>,
    // How it runs (validated in `runtime.rs`).
    #[serde(default)]
    pub(super) run_as: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) worker_class: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) timeout_secs: Option<u32>,
    #[serde(default)]
    pub(super) server_args: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) processes: BTreeMap<String, Spanned<RawProcess>>,
    #[serde(default)]
    pub(super) hooks: Option<Spanned<RawHooks>>,
    #[serde(default, rename = "static")]
    pub(super) static_files: Option<Spanned<RawStatic>>,
}

fn default_playbook() -> Spanned<String> {
    sp("python-web".into())
}
fn default_workers() -> u32 {
    2
}
fn default_drain() -> u32 {
    2
}
fn default_settle() -> Spanned<u32> {
    sp(crate::inventory::DEFAULT_SETTLE_SECS)
}
fn default_keep() -> Spanned<u32> {
    sp(3)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHealth {
    pub(super) path: Spanned<String>,
    pub(super) expect_status: u16,
    pub(super) timeout_secs: u32,
    pub(super) retries: u32,
    pub(super) interval_ms: u32,
}

impl Default for RawHealth {
    fn default() -> Self {
        RawHealth {
            path: sp("/healthz".into()),
            expect_status: 200,
            timeout_secs: 5,
            retries: 30,
            interval_ms: 500,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnvironment {
    pub(super) groups: Spanned<Vec<String>>,
    #[serde(default = "default_parallel")]
    pub(super) parallel: usize,
    #[serde(default = "sp_default")]
    pub(super) env: Spanned<BTreeMap<String, String>>,
    #[serde(default)]
    pub(super) confirm: Option<bool>,
    #[serde(default)]
    pub(super) rollout: Option<RawRollout>,
    #[serde(default)]
    pub(super) delivery: Delivery,
    /// Overrides the application's `process_manager` for this environment's hosts.
    #[serde(default)]
    pub(super) process_manager: Option<super::ProcessManagerKind>,
    /// Deploy windows: `Mon-Fri 09:00-16:00 Europe/Amsterdam`.
    #[serde(default)]
    pub(super) windows: Option<Spanned<Vec<String>>>,
}

fn default_parallel() -> usize {
    10
}
