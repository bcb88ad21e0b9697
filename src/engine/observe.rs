//! What runs now: asks each host of an environment which slot is live, which release it
//! serves and the state of the application's processes, from the host itself (the same
//! facts a deploy reads), for `deploy status --live`.

use std::sync::Arc;

use serde::Serialize;

use super::EngineConfig;
use crate::error::InputError;
use crate::inventory::Inventory;

/// One process of the application on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    /// The process manager's program name (`hello-blue`).
    pub name: String,
    /// `running` or `stopped`.
    pub state: String,
    pub pid: Option<u32>,
}

/// What a host says it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostView {
    /// `blue` or `green`; None before the first deploy.
    pub live_slot: Option<String>,
    /// The release the live slot runs.
    pub version: Option<String>,
    pub processes: Vec<Process>,
}

/// One host's answer, or why there was none (unreachable, refused, timed out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub host: String,
    pub view: Result<HostView, String>,
}

/// Asks every host of `app` in `env`, concurrently.  Err: the app or environment is
/// unknown (nothing was contacted).
pub async fn observe(
    inv: &Inventory,
    cfg: Arc<EngineConfig>,
    app: &str,
    env: &str,
) -> Result<Vec<Observed>, InputError> {
    let a = inv.app(app)?;
    let (_, hosts) = inv.hosts_for(a, env)?;
    let _ = cfg;
    Ok(hosts
        .into_iter()
        .map(|h| Observed {
            host: h.name.clone(),
            view: Err("not implemented yet".into()),
        })
        .collect())
}
