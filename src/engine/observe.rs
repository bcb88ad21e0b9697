//! What runs now: asks each host of an environment which slot is live, which release it
//! serves and the state of the application's processes, from the host itself (the same
//! facts a deploy reads), for `deploy status --live`.

use std::sync::Arc;

use serde::Serialize;

use super::EngineConfig;
use super::facts::{Fact, Facts, Reader};
use super::transport::{Connector, SshConnector, Transport};
use crate::commands::AppPaths;
use crate::error::InputError;
use crate::inventory::Inventory;
use crate::procman::{self, ProcessManager};
use crate::render::SLOTS;

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

/// Asks every host of `app` in `env`, concurrently, over SSH.  Err: the app or
/// environment is unknown (nothing was contacted).
pub async fn observe(
    inv: &Inventory,
    cfg: Arc<EngineConfig>,
    app: &str,
    env: &str,
) -> Result<Vec<Observed>, InputError> {
    let connector = SshConnector {
        key: cfg.key.clone(),
        pins: cfg.pins.clone(),
        opts: cfg.ssh.clone(),
    };
    observe_with(inv, &cfg, &connector, app, env).await
}

/// [`observe`] through any [`Connector`].
pub async fn observe_with(
    inv: &Inventory,
    cfg: &EngineConfig,
    connector: &dyn Connector,
    app: &str,
    env: &str,
) -> Result<Vec<Observed>, InputError> {
    let a = inv.app(app)?;
    let (_, hosts) = inv.hosts_for(a, env)?;
    let pm = procman::for_kind(a.process_manager);
    let asks = hosts.iter().map(|h| {
        let pm = pm.clone();
        async move {
            let view = match connector.connect(h).await {
                Err(e) => Err(format!("unreachable: {e}")),
                Ok(conn) => {
                    let v = ask(conn.as_ref(), cfg, &a.name, &h.user, pm.as_ref()).await;
                    conn.close().await;
                    v
                }
            };
            Observed {
                host: h.name.clone(),
                view,
            }
        }
    });
    Ok(futures_util::future::join_all(asks).await)
}

async fn ask(
    conn: &dyn Transport,
    cfg: &EngineConfig,
    app: &str,
    user: &str,
    pm: &dyn ProcessManager,
) -> Result<HostView, String> {
    let paths = AppPaths::new(app);
    let reader = Reader {
        paths: &paths,
        user,
        run_as: "",
        processes: &[],
        version: "",
        pm,
        uv_sha256: None,
    };
    let mut facts = Facts::default();
    for f in [Fact::Live, Fact::Slots] {
        let mut outs = Vec::new();
        for c in reader.commands(f) {
            outs.push(conn.exec(&c, cfg.command_timeout, &mut |_, _| {}).await?);
        }
        reader.store(&mut facts, f, &outs)?;
    }
    let live = facts.live()?;
    let processes = (0..SLOTS.len())
        .map(|i| {
            let pid = facts.slot(i).ok().and_then(|s| s.pid);
            Process {
                name: pm.program(app, SLOTS[i]),
                state: if pid.is_some() { "running" } else { "stopped" }.into(),
                pid,
            }
        })
        .collect();
    Ok(HostView {
        live_slot: live.slot.map(|s| SLOTS[s].to_string()),
        version: live.version.clone(),
        processes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::{bed, spec};

    #[tokio::test]
    async fn hosts_say_what_they_serve_and_a_dead_one_is_named() {
        let b = bed("{}");
        let plan = crate::engine::plan(&b.inv, &b.cfg, &spec("1.0.0")).unwrap();
        let sink = Arc::new(crate::engine::Collect::default());
        crate::engine::run_with(
            plan,
            b.cfg.clone(),
            b.fleet.clone(),
            sink,
            Default::default(),
        )
        .await;
        b.fleet.server("web3").state().down = true;
        let seen = observe_with(&b.inv, &b.cfg, b.fleet.as_ref(), "hello", "production")
            .await
            .unwrap();
        let web1 = seen[0].view.clone().unwrap();
        assert_eq!(web1.live_slot.as_deref(), Some("blue"));
        assert_eq!(web1.version.as_deref(), Some("1.0.0"));
        assert_eq!(web1.processes[0].state, "running");
        assert_eq!(web1.processes[1].state, "stopped");
        assert!(
            seen[2]
                .view
                .clone()
                .unwrap_err()
                .starts_with("unreachable: ")
        );
        assert!(
            observe_with(&b.inv, &b.cfg, b.fleet.as_ref(), "nope", "production")
                .await
                .is_err()
        );
    }
}
