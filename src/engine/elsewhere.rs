//! Hosts another process runs: the seam through which a job's hosts of another network
//! segment (their inventory `site`) are run by that site's runner, while the rollout
//! here keeps the job's batches, canary, `max_failed`, halt and rollback across sites.
//!
//! The engine knows nothing of how the work travels (the gateway's `sites` module hands
//! it over through the shared database); it only asks, per host, whether it runs here,
//! and otherwise waits for the host's result, the host's events arriving in the job's
//! sink meanwhile.  The other side runs [`run_part`]: the same `run_host` a local host
//! gets, with its own connection and fence.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::host::run_host;
use super::plan::{self, Plan};
use super::share::EnvShare;
use super::transport::SshConnector;
use super::{CancelFlag, EngineConfig, EventSink, HostResult, fence};
use crate::inventory::Host;

/// Runs the hosts this process does not reach.
pub trait Elsewhere: Send + Sync {
    /// Whether `host` is run by another process (its site is not this process's).
    fn elsewhere(&self, host: &Host) -> bool;

    /// Runs the job on `host` in the process of its site and returns how it ended; with
    /// `rollback_to`, puts the host back on that release instead (installing nothing).
    /// The host's events go to the job's sink as they happen; `cancel` is passed on.
    fn run<'a>(
        &'a self,
        host: &'a Host,
        rollback_to: Option<&'a str>,
        cancel: &'a CancelFlag,
    ) -> BoxFuture<'a, HostResult>;
}

/// Whether the plan's host `i` runs in another process.
pub(super) fn is_elsewhere(cfg: &EngineConfig, host: &Host) -> bool {
    cfg.elsewhere.as_ref().is_some_and(|e| e.elsewhere(host))
}

/// The other side: runs one host of `plan` here, over SSH (with `cfg.fence`), or with
/// `rollback_to` puts it back on that release.  `share` is the job's environments on
/// this side (one per job and process, so a site builds once).
pub async fn run_part(
    plan: &Plan,
    host: &str,
    rollback_to: Option<&str>,
    cfg: Arc<EngineConfig>,
    sink: Arc<dyn EventSink>,
    cancel: &CancelFlag,
    share: &EnvShare,
) -> Result<HostResult, String> {
    let i = (plan.hosts.iter().position(|(h, _)| h.name == host))
        .ok_or_else(|| format!("host `{host}` is not in the job's environment"))?;
    let connector = fence::connector(
        Arc::new(SshConnector {
            key: cfg.key.clone(),
            pins: cfg.pins.clone(),
            opts: cfg.ssh.clone(),
        }),
        cfg.fence.as_ref(),
    );
    Ok(match rollback_to {
        None => run_host(plan, i, &cfg, connector.as_ref(), sink, cancel, share).await,
        Some(prev) => {
            let back = plan::for_rollback(plan, &cfg, prev).map_err(|e| e.to_string())?;
            let none = EnvShare::default(); // a rollback builds nothing
            run_host(&back, i, &cfg, connector.as_ref(), sink, cancel, &none).await
        }
    })
}
