//! What runs now: asks each host of an environment which slot is live, which release it
//! serves and the state of the application's processes, from the host itself (the same
//! facts a deploy reads), for `deploy status --live`.

use std::sync::Arc;

use serde::Serialize;

use super::EngineConfig;
use super::facts::{Fact, Facts, Reader};
use super::transport::{Connector, SshConnector, Transport};
use crate::commands::{self as cmd, AppPaths, RemoteCmd};
use crate::error::{BackendError, InputError};
use crate::inventory::{App, Inventory};
use crate::procman::{self, ProcessManager};
use crate::render::SLOTS;

/// One process of the application on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    /// The process manager's program name (`hello-blue`), or a process copy's
    /// (`hello-worker-0`).
    pub name: String,
    /// `running` or `stopped`.
    pub state: String,
    pub pid: Option<u32>,
    /// The release it runs, from its own environment (`DEPLOY_RELEASE`).
    pub release: Option<String>,
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

/// One host's answer, or why there was none (unreachable, refused, timed out: retryable
/// as the transport says; a read that failed on the host: permanent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub host: String,
    pub view: Result<HostView, BackendError>,
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
                Err(e) => Err(e.map_message(|m| format!("unreachable: {m}"))),
                Ok(conn) => {
                    let v = ask(conn.as_ref(), cfg, a, &h.user, pm.as_ref()).await;
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
    app: &App,
    user: &str,
    pm: &dyn ProcessManager,
) -> Result<HostView, BackendError> {
    let paths = AppPaths::new(&app.name);
    let reader = Reader {
        paths: &paths,
        user,
        run_as: &app.runtime.run_as,
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
        reader
            .store(&mut facts, f, &outs)
            .map_err(BackendError::permanent)?;
    }
    let live = facts.live().map_err(BackendError::permanent)?;
    let mut processes: Vec<Process> = (0..SLOTS.len())
        .map(|i| {
            process(
                pm.program(&app.name, SLOTS[i]),
                facts.slot(i).ok().and_then(|s| s.pid),
            )
        })
        .collect();
    for p in &app.runtime.processes {
        let program = pm.program(&app.name, &p.name);
        let out = read(conn, cfg, pm.group_status(&program)).await?;
        processes.extend(copies(pm, &program, &out));
    }
    add_releases(conn, cfg, &app.runtime.run_as, &mut processes).await?;
    Ok(HostView {
        live_slot: live.slot.map(|s| SLOTS[s].to_string()),
        version: live.version.clone(),
        processes,
    })
}

/// The output of a read-only command; a failure is the host's answer.
async fn read(
    conn: &dyn Transport,
    cfg: &EngineConfig,
    c: RemoteCmd,
) -> Result<String, BackendError> {
    let out = conn.exec(&c, cfg.command_timeout, &mut |_, _| {}).await?;
    if out.ok() {
        Ok(out.stdout)
    } else {
        Err(BackendError::permanent(format!(
            "reading the host failed (exit {}): {}",
            out.status,
            out.tail()
        )))
    }
}

/// The copies of a process's `program` in its status (`out`); the program itself,
/// stopped, when the process manager knows no copy of it.
fn copies(pm: &dyn ProcessManager, program: &str, out: &str) -> Vec<Process> {
    let all = pm.parse_status(out);
    let copies: Vec<Process> = procman::status_of(&all, program)
        .map(|s| process(s.name().to_string(), s.pid.filter(|_| s.running())))
        .collect();
    if copies.is_empty() {
        vec![process(program.to_string(), None)]
    } else {
        copies
    }
}

/// Each running process's release, from its own environment (`DEPLOY_RELEASE`).
async fn add_releases(
    conn: &dyn Transport,
    cfg: &EngineConfig,
    run_as: &str,
    processes: &mut [Process],
) -> Result<(), BackendError> {
    let pids: Vec<u32> = processes.iter().filter_map(|p| p.pid).collect();
    if pids.is_empty() {
        return Ok(());
    }
    let out = read(conn, cfg, cmd::app::process_releases(run_as, &pids)).await?;
    for line in out.lines() {
        let Some((pid, release)) = line.split_once(' ') else {
            continue;
        };
        let release = release.trim();
        if let Some(p) = processes
            .iter_mut()
            .find(|p| p.pid.map(|x| x.to_string()).as_deref() == Some(pid))
        {
            p.release = (!release.is_empty()).then(|| release.to_string());
        }
    }
    Ok(())
}

fn process(name: String, pid: Option<u32>) -> Process {
    Process {
        name,
        state: if pid.is_some() { "running" } else { "stopped" }.into(),
        pid,
        release: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procman::Supervisord;
    use crate::testbed::{bed, spec};

    #[test]
    fn a_process_the_process_manager_does_not_know_is_itself_stopped() {
        let stopped = vec![process("hello-worker".into(), None)];
        for out in [
            "",
            "hello-worker: ERROR (no such group)\n",
            "unix:///var/run/supervisor.sock no such file\n",
        ] {
            assert_eq!(copies(&Supervisord, "hello-worker", out), stopped, "{out}");
        }
        let out = "hello-worker:hello-worker-0       RUNNING    pid 12, uptime 0:01:00\n\
                   hello-worker:hello-worker-1       FATAL      Exited too quickly (process log may have details)\n";
        let seen = copies(&Supervisord, "hello-worker", out);
        assert_eq!(
            seen.iter()
                .map(|p| (p.name.as_str(), p.state.as_str(), p.pid))
                .collect::<Vec<_>>(),
            [
                ("hello-worker-0", "running", Some(12)),
                ("hello-worker-1", "stopped", None)
            ]
        );
    }

    #[tokio::test]
    async fn hosts_say_what_they_serve_and_a_dead_one_is_named() {
        let b = bed("{}");
        let plan = crate::plan(&b.inv, &b.cfg, &spec("1.0.0")).unwrap();
        let sink = Arc::new(crate::Collect::default());
        crate::run_with(
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
        assert_eq!(web1.processes[0].release.as_deref(), Some("1.0.0"));
        assert_eq!(web1.processes[1].state, "stopped");
        assert!(
            seen[2]
                .view
                .clone()
                .unwrap_err()
                .to_string()
                .starts_with("unreachable: ")
        );
        assert!(
            seen[2].view.as_ref().unwrap_err().is_retryable(),
            "a host that refused the connection may answer later"
        );
        assert!(
            observe_with(&b.inv, &b.cfg, b.fleet.as_ref(), "nope", "production")
                .await
                .is_err()
        );
    }
}
