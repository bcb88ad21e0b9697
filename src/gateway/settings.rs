//! What running jobs needs ([`Settings`]: files, the key, limits, the artifact sources)
//! and a job's plan from it ([`Settings::plan`]: every input check and rendering, and how
//! the servers reach the artifacts), with no database and no connection: the job
//! runner's path, which `deploy-gateway check-config` takes too.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::config::GatewayConfig;
use crate::artifacts::ArtifactSource;
use crate::engine::{self, EngineConfig, IndexAccess, JobSpec, Plan, UvTool};
use crate::error::InputError;
use crate::inventory::{Delivery, Inventory};
use crate::pins::HostKeyPins;
use crate::ssh::{SshKey, SshOptions};

/// Where the servers of a job get the application's artifacts from.
pub enum Artifacts {
    /// The gateway's sources (`gateway.toml`): directly or through the relay, as each
    /// environment's `delivery` says.
    Gateway(Arc<GatewayConfig>),
    /// The inventory's `index_url` only, reached by the servers themselves (`apply`
    /// without a gateway config: the engine decides, and refuses `delivery: relay`).
    Inventory,
}

/// What running jobs needs: files, the key, limits and the artifact sources.
pub struct Settings {
    pub inventory: PathBuf,
    pub known_hosts: PathBuf,
    pub playbooks: PathBuf,
    pub templates: PathBuf,
    pub command_timeout: Duration,
    pub ssh: SshOptions,
    pub key: Arc<SshKey>,
    pub uv: Option<UvTool>,
    pub artifacts: Artifacts,
    /// How long this process's claim on a running job lasts unless renewed.
    pub lease: Duration,
    /// The owner of this process's leases: a gateway's id (the same across its
    /// restarts), or a fresh one per `apply` run (`jobs::one_off_owner`).
    pub owner: String,
    /// The site whose hosts this process runs (None: hosts with no site); every other
    /// host goes to its site's runners (`gateway::sites`).
    pub site: Option<String>,
    /// How long a host handed to another site waits for one of its runners.
    pub site_wait: Duration,
}

/// The lease time when the config names none.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

impl Settings {
    /// The gateway's settings, from its config.
    pub fn gateway(cfg: Arc<GatewayConfig>, key: SshKey, uv: Option<UvTool>) -> Settings {
        Settings {
            inventory: cfg.inventory.clone(),
            known_hosts: cfg.known_hosts.clone(),
            playbooks: cfg.playbooks.clone(),
            templates: cfg.templates.clone(),
            command_timeout: Duration::from_secs(cfg.command_timeout_secs),
            ssh: SshOptions::default(),
            key: Arc::new(key),
            uv,
            lease: Duration::from_secs(cfg.lease_secs),
            owner: cfg.gateway_id.clone(),
            site: cfg.site.clone(),
            site_wait: Duration::from_secs(cfg.site_wait_secs),
            artifacts: Artifacts::Gateway(cfg),
        }
    }

    /// The engine's configuration (files, key, pins, limits), for jobs and `observe`.
    pub fn engine_config(&self) -> Result<EngineConfig, InputError> {
        Ok(EngineConfig {
            playbooks_dir: self.playbooks.clone(),
            templates_dir: self.templates.clone(),
            key: self.key.clone(),
            pins: HostKeyPins::load(&self.known_hosts)?,
            ssh: self.ssh.clone(),
            command_timeout: self.command_timeout,
            uv: self.uv.clone(),
            fence: None,
            elsewhere: None,
        })
    }

    /// Every input check and rendering of `spec` (its `index` is set here), before any
    /// connection: the application, environment, playbook, artifact access and every
    /// template for every host (`engine::plan`).  `relay` makes the relay that serves
    /// a source to the servers of an environment with `delivery: relay` (None: direct).
    pub fn plan(
        &self,
        inv: &Inventory,
        mut spec: JobSpec,
        relay: impl FnOnce(Arc<dyn ArtifactSource>) -> Option<IndexAccess>,
    ) -> Result<(Plan, EngineConfig), InputError> {
        let engine = self.engine_config()?;
        spec.index = self.index_access(inv, &spec, relay)?;
        let plan = engine::plan(inv, &engine, &spec)?;
        Ok((plan, engine))
    }

    /// How the servers of the job's environment reach the artifacts; None: the
    /// engine's default.
    fn index_access(
        &self,
        inv: &Inventory,
        spec: &JobSpec,
        relay: impl FnOnce(Arc<dyn ArtifactSource>) -> Option<IndexAccess>,
    ) -> Result<Option<IndexAccess>, InputError> {
        let Artifacts::Gateway(cfg) = &self.artifacts else {
            return Ok(None);
        };
        let Some((app, env)) = inv
            .app(&spec.app)
            .ok()
            .and_then(|a| Some((a, a.environments.get(&spec.env)?)))
        else {
            return Ok(None); // engine::plan reports it
        };
        let bad = |m: String| {
            InputError::new(
                &cfg.path,
                None,
                format!("applications.{}.source", app.name),
                m,
            )
        };
        let source = cfg.source_for(app).map_err(bad)?;
        let relayed = if env.delivery == Delivery::Relay {
            relay(source.clone())
        } else {
            None
        };
        Ok(Some(match relayed {
            Some(access) => access,
            None => IndexAccess::Direct(source.servers_index().map_err(|e| bad(e.to_string()))?),
        }))
    }
}
