//! What runs now: asks each host of an environment which slot is live, which release it
//! serves, the state of the application's processes and whether the live slot answers
//! its health check, from the host itself (the same facts a deploy reads), for `deploy
//! status --live`, the dashboard's "Check the hosts" and the gateway's reconcile.
//!
//! Two round trips per host: one batch (the live pointer, the slots' program files,
//! one look at the process manager, and one health check of the live slot through the
//! live pointer, the socket nginx connects to), then the release each running process
//! really runs (its own `DEPLOY_RELEASE`, which needs the pids).  The health check is the
//! deploy's (same path, Host and expected status; [`cmd::http_probe`]) tried once,
//! without retries: a look, not a gate.
//!
//! The batch first gives a slot that is still starting its settle time (at most
//! `settle_secs` + 2 s; [`ProcessManager::settled`]): a host that just booted answers SSH
//! while its live slot comes up, and what it says then (the slot stopped, the health
//! check unanswered) would be a moment of its boot, not what it serves.  Decision: wait
//! on the host, in the same round trip, only while a slot says it is starting (a slot
//! that crashed or was stopped is reported at once).
//!
//! The same batch reads each complete release's marker, which says the SHA-256 of the
//! wheel a pinned install verified (`commands::install`): the live release's is the
//! host's `wheel_sha256`, which the gateway compares with its ledger.
//!
//! [`HostView::problems`] says what needs a look on a host: a slot that runs but is not
//! live (an interrupted job left it; the next job that reaches the host stops it), and a
//! live slot that fails its health check (stopped by hand, crashed: nginx answers 502).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::EngineConfig;
use super::facts::{Fact, Facts, Reader};
use super::transport::{Connector, Output, SshConnector, Transport};
use crate::commands::batch::Batch;
use crate::commands::{self as cmd, AppPaths, RemoteCmd};
use crate::error::{BackendError, InputError};
use crate::inventory::{App, Host, Inventory};
use crate::procman::{self, ProcessManager};
use crate::render::SLOTS;

/// One process of the application on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// The process manager's program name (`hello-blue`), or a process copy's
    /// (`hello-worker-0`).
    pub name: String,
    /// `running` or `stopped`.
    pub state: String,
    pub pid: Option<u32>,
    /// The release it runs, from its own environment (`DEPLOY_RELEASE`).
    pub release: Option<String>,
    /// The slot (`blue`/`green`) when this is a web slot's program; None for a copy of
    /// another process.
    pub slot: Option<String>,
    /// A program of this app the inventory does not name (removed from it; the next
    /// deploy stops it and removes its file).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unknown: bool,
}

/// The live slot's health check, tried once through the live pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// It answered the expected status.
    pub ok: bool,
    /// What it answered, in the deploy's words (`GET /healthz answered 502, expected
    /// 200`, `GET /healthz: no answer (within 5s)`).
    pub said: String,
}

/// What a host says it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostView {
    /// `blue` or `green`; None before the first deploy.
    pub live_slot: Option<String>,
    /// The release the live slot runs.
    pub version: Option<String>,
    pub processes: Vec<Process>,
    /// None when nothing is live, or on a host from before the socket switch (no live
    /// pointer to probe through).
    pub health: Option<Health>,
    /// The releases complete on the host (marker written, not marked failed), oldest
    /// first: what a rollback may go to.
    pub releases: Vec<String>,
    /// The SHA-256 of the wheel the live release installed, as its marker records it
    /// (checked by the installer against the ledger's at install); None: unknown (a
    /// release installed before pins, or nothing live).
    pub wheel_sha256: Option<String>,
    /// The live release's environment hash, as its marker records it (`share.rs`);
    /// None: unknown (built before hosts kept it, or nothing live).
    pub env_sha256: Option<String>,
}

impl HostView {
    /// What needs a look on this host, one sentence each: every slot that runs but is
    /// not live, a live slot that fails its health check, and each program of the app
    /// that the inventory does not name.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in self.processes.iter().filter(|p| p.unknown) {
            out.push(format!(
                "{} ({}) is not in the inventory: the next deploy stops it and removes its program",
                p.name, p.state
            ));
        }
        for p in &self.processes {
            let Some(slot) = &p.slot else { continue };
            if p.pid.is_none() || Some(slot) == self.live_slot.as_ref() {
                continue;
            }
            let release = p
                .release
                .as_deref()
                .map(|r| format!(" {r}"))
                .unwrap_or_default();
            let pid = p.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
            out.push(format!(
                "slot {slot} runs{release}{pid} but is not live: left running by an interrupted job; \
                 the next deploy, rollback or restart stops it"
            ));
        }
        if let (Some(h), Some(slot)) = (&self.health, &self.live_slot)
            && !h.ok
        {
            let release = self
                .version
                .as_deref()
                .map(|v| format!(" ({v})"))
                .unwrap_or_default();
            out.push(format!(
                "the live slot {slot}{release} fails its health check: {}",
                h.said
            ));
        }
        out
    }
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

/// [`observe`] of the hosts `keep` names only (those of one site: the gateway's `sites`).
pub async fn observe_some(
    inv: &Inventory,
    cfg: Arc<EngineConfig>,
    app: &str,
    env: &str,
    keep: &(dyn Fn(&Host) -> bool + Sync),
) -> Result<Vec<Observed>, InputError> {
    let connector = SshConnector {
        key: cfg.key.clone(),
        pins: cfg.pins.clone(),
        opts: cfg.ssh.clone(),
    };
    observe_hosts(inv, &cfg, &connector, app, env, keep).await
}

/// [`observe`] through any [`Connector`].
pub async fn observe_with(
    inv: &Inventory,
    cfg: &EngineConfig,
    connector: &dyn Connector,
    app: &str,
    env: &str,
) -> Result<Vec<Observed>, InputError> {
    observe_hosts(inv, cfg, connector, app, env, &|_| true).await
}

async fn observe_hosts(
    inv: &Inventory,
    cfg: &EngineConfig,
    connector: &dyn Connector,
    app: &str,
    env: &str,
    keep: &(dyn Fn(&Host) -> bool + Sync),
) -> Result<Vec<Observed>, InputError> {
    let a = inv.app(app)?;
    let (e, hosts) = inv.hosts_for(a, env)?;
    let pm = procman::for_kind(e.process_manager);
    let asks = hosts.iter().filter(|h| keep(h)).map(|h| {
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

/// One host's view over `conn` (two round trips, see the module's docs).
pub(crate) async fn ask(
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
    let facts = [Fact::Live, Fact::Slots];
    // First, a slot still starting (a host that just booted) is given its settle time:
    // what it runs and its health are then what it serves, not a moment of its boot.
    let slots: Vec<String> = SLOTS.iter().map(|s| pm.program(&app.name, s)).collect();
    let settle = pm.settled(&slots, app.settle_secs + 2);
    let mut cmds: Vec<RemoteCmd> = std::iter::once(settle)
        .chain(facts.iter().flat_map(|f| reader.commands(*f)))
        .collect();
    let all_status = cmds.len() - 1;
    cmds.push(health_probe(app, &paths));
    cmds.push(pm.app_programs(&app.name));
    cmds.push(cmd::list_releases(&paths));
    cmds.push(cmd::release_wheels(&paths));
    let outs = read_batch(conn, cfg, &cmds).await?;
    let (programs, releases) = (&outs[all_status + 2], &outs[all_status + 3]);
    let wheels = &outs[all_status + 4].stdout;
    let mut known = Facts::default();
    let mut at = 1;
    for f in facts {
        let n = reader.commands(f).len();
        reader
            .store(&mut known, f, &outs[at..at + n])
            .map_err(BackendError::permanent)?;
        at += n;
    }
    let live = known.live().map_err(BackendError::permanent)?;
    let mut processes: Vec<Process> = (0..SLOTS.len())
        .map(|i| Process {
            slot: Some(SLOTS[i].to_string()),
            ..process(
                pm.program(&app.name, SLOTS[i]),
                known.slot(i).ok().and_then(|s| s.pid),
            )
        })
        .collect();
    let mut named: Vec<String> = SLOTS.iter().map(|s| pm.program(&app.name, s)).collect();
    for p in &app.runtime.processes {
        let program = pm.program(&app.name, &p.name);
        processes.extend(copies(pm, &program, &outs[all_status].stdout));
        named.push(program);
    }
    for program in pm.parse_app_programs(&programs.stdout) {
        if !named.contains(&program) {
            let unknown = copies(pm, &program, &outs[all_status].stdout);
            processes.extend(unknown.into_iter().map(|p| Process { unknown: true, ..p }));
        }
    }
    add_releases(conn, cfg, &app.runtime.run_as, &mut processes).await?;
    let health = (live.slot.is_some() && !live.legacy).then(|| health(app, &outs[at]));
    Ok(HostView {
        live_slot: live.slot.map(|s| SLOTS[s].to_string()),
        version: live.version.clone(),
        processes,
        health,
        releases: complete_releases(&releases.stdout),
        wheel_sha256: live
            .version
            .as_deref()
            .and_then(|v| cmd::release_wheel(wheels, v)),
        env_sha256: live
            .version
            .as_deref()
            .and_then(|v| cmd::release_env(wheels, v)),
    })
}

/// The complete releases in [`cmd::list_releases`]'s answer (`<mtime> <name>
/// complete|partial|failed` lines), oldest first.
pub fn complete_releases(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [_, name, "complete"] => Some(name.to_string()),
            _ => None,
        })
        .collect()
}

/// The deploy's health check (its path, Host, expected status and timeout) through the
/// live pointer, tried once.
fn health_probe(app: &App, paths: &AppPaths) -> RemoteCmd {
    let h = &app.health;
    let host = cmd::health_host(&app.server_names[0]);
    let one = cmd::http_probe(Some(&paths.live_socket()), &host, &h.path, h.timeout_secs);
    cmd::http_probe_until(&one, h.expect_status, 1, 0)
}

/// The probe's answer (`<status> <attempt>`, see [`cmd::http_probe_until`]).
fn health(app: &App, out: &Output) -> Health {
    let h = &app.health;
    let code = out.stdout.split_whitespace().next().unwrap_or_default();
    let ok = out.ok() && code == h.expect_status.to_string();
    let said = if ok {
        format!("GET {} answered {code}", h.path)
    } else if code.is_empty() || code == "000" {
        // Refused at once (nothing listens on the socket) or silent for the timeout.
        format!("GET {}: no answer (within {}s)", h.path, h.timeout_secs)
    } else {
        format!(
            "GET {} answered {code}, expected {}",
            h.path, h.expect_status
        )
    };
    Health { ok, said }
}

/// Read-only commands as one batch: each one's output, in order; a part that did not
/// run (the batch was cut short) is the host's answer.
async fn read_batch(
    conn: &dyn Transport,
    cfg: &EngineConfig,
    cmds: &[RemoteCmd],
) -> Result<Vec<Output>, BackendError> {
    let batch = Batch::new(cmds, false);
    let out = conn
        .exec(&batch.cmd, cfg.command_timeout, &mut |_, _| {})
        .await?;
    batch
        .split(&out.stdout, &out.stderr)
        .into_iter()
        .map(|p| match p {
            Some(p) => Ok(Output {
                status: p.status,
                stdout: p.stdout,
                stderr: p.stderr,
            }),
            None => Err(BackendError::permanent(format!(
                "reading the host failed (exit {}): {}",
                out.status,
                out.tail()
            ))),
        })
        .collect()
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
        slot: None,
        unknown: false,
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
