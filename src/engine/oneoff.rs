//! `deploy run`: one command on one host, as the application's user, in the environment of
//! the release that host serves (its live pointer says which), with no TTY and no stdin.
//! Its output lines become `output` events (scrubbed of the app's env values), and its
//! exit status a `command_exited` event just before `job_finished`.
//!
//! A job of its own (locked, audited, its events stored) but not a rollout: no plan, no
//! steps, one connection, one command.  Cancel closes the connection (the command is
//! left to the server, like a command whose client went away).

use std::sync::Arc;
use std::time::{Duration, Instant};

use deploy_wire::{Event, EventKind, HostStatus, JobStatus, StepStatus, Stream};

use super::steps::scrub;
use super::transport::{Connector, SshConnector, Transport};
use super::{CancelFlag, EngineConfig, EventSink, HostResult, JobResult, cancelled, ms};
use crate::commands::{self as cmd, AppPaths};
use crate::error::BackendError;
use crate::inventory::{App, Environment, Host};

/// The step name of a one-off command in events.
pub const STEP: &str = "run";

/// One command to run.
#[derive(Debug, Clone)]
pub struct OneOff {
    pub app: App,
    pub env: Environment,
    pub host: Host,
    /// A shell command line: the user's argv, each word quoted ([`crate::shell::join`]).
    pub command: String,
    /// What the gateway's record says the host serves (for `job_started`; the host's
    /// live pointer decides).
    pub recorded: String,
}

/// How a one-off command ended.
#[derive(Debug, Clone)]
pub struct Ran {
    pub result: JobResult,
    /// None: it did not run to an exit status (unreachable, nothing live, lost, timeout).
    pub exit_code: Option<u32>,
}

/// Runs it over SSH.
pub async fn run(
    o: OneOff,
    cfg: Arc<EngineConfig>,
    sink: Arc<dyn EventSink>,
    cancel: CancelFlag,
) -> Ran {
    let connector = Arc::new(SshConnector {
        key: cfg.key.clone(),
        pins: cfg.pins.clone(),
        opts: cfg.ssh.clone(),
    });
    let connector = crate::fence::connector(connector, cfg.fence.as_ref());
    run_with(o, &cfg, connector.as_ref(), sink, cancel).await
}

/// [`run`] through any [`Connector`].
pub async fn run_with(
    o: OneOff,
    cfg: &EngineConfig,
    connector: &dyn Connector,
    sink: Arc<dyn EventSink>,
    cancel: CancelFlag,
) -> Ran {
    let started = Instant::now();
    let host = o.host.name.clone();
    sink.emit(Event::now(EventKind::JobStarted {
        app: o.app.name.clone(),
        env: o.env.name.clone(),
        version: o.recorded.clone(),
        hosts: vec![host.clone()],
        check: false,
        steps: vec![STEP.to_string()],
    }));
    sink.emit(Event::now(EventKind::HostStarted { host: host.clone() }));
    let ended = match connector.connect(&o.host).await {
        Err(e) => Ended::failed(HostStatus::Unreachable, e.to_string()),
        Ok(conn) => {
            sink.emit(Event::now(EventKind::Connected {
                host: host.clone(),
                fingerprint: conn.fingerprint(),
                elapsed_ms: ms(started.elapsed()),
            }));
            let ended = on_host(&o, cfg, conn.as_ref(), &sink, &cancel).await;
            conn.close().await;
            ended
        }
    };
    finish(&host, started, ended, &sink)
}

/// The events and result of the end.
fn finish(host: &str, started: Instant, ended: Ended, sink: &Arc<dyn EventSink>) -> Ran {
    let Ended {
        status,
        exit_code,
        error,
        ..
    } = ended;
    let elapsed = started.elapsed();
    if let Some(code) = exit_code {
        sink.emit(Event::now(EventKind::CommandExited {
            host: host.to_string(),
            exit_code: code,
        }));
    }
    sink.emit(Event::now(EventKind::HostFinished {
        host: host.to_string(),
        status,
        changed: 0,
        elapsed_ms: ms(elapsed),
        error: error.clone(),
        round_trips: 0,
    }));
    let job_status = match status {
        HostStatus::Ok => JobStatus::Succeeded,
        HostStatus::Cancelled => JobStatus::Cancelled,
        _ => JobStatus::Failed,
    };
    let good = u32::from(status == HostStatus::Ok);
    sink.emit(Event::now(EventKind::JobFinished {
        status: job_status,
        elapsed_ms: ms(elapsed),
        hosts_ok: good,
        hosts_changed: 0,
        hosts_failed: 1 - good,
        hosts_unreachable: u32::from(status == HostStatus::Unreachable),
        hosts_cancelled: u32::from(status == HostStatus::Cancelled),
    }));
    let host = HostResult {
        host: host.to_string(),
        status,
        changed: 0,
        elapsed,
        error,
        connections: u32::from(status != HostStatus::Unreachable),
        channels: 0,
        round_trips: 0,
        previous: None,
        serving: None,
        env_sha256: None,
    };
    Ran {
        result: JobResult {
            status: job_status,
            hosts: vec![host],
            elapsed,
            error: None,
        },
        exit_code,
    }
}

/// How the host ended: its status, the command's exit code, the error for the job's
/// record, and the step's status and reason.
struct Ended {
    status: HostStatus,
    exit_code: Option<u32>,
    error: Option<String>,
    step: StepStatus,
    reason: String,
}

impl Ended {
    fn failed(status: HostStatus, e: String) -> Ended {
        Ended {
            status,
            exit_code: None,
            error: Some(e.clone()),
            step: StepStatus::Failed,
            reason: e,
        }
    }
}

/// The live pointer, then the command, as the step `run`.
async fn on_host(
    o: &OneOff,
    cfg: &EngineConfig,
    conn: &dyn Transport,
    sink: &Arc<dyn EventSink>,
    cancel: &CancelFlag,
) -> Ended {
    let host = o.host.name.clone();
    let started = Instant::now();
    sink.emit(Event::now(EventKind::StepStarted {
        host: host.clone(),
        step: STEP.into(),
    }));
    let ended = match live_release(conn, &o.app.name, cfg.command_timeout).await {
        Ok(Some((_, version))) => command(o, cfg, conn, sink, cancel, &version).await,
        Ok(None) => {
            let e = format!("nothing is live on {host}: deploy {} first", o.app.name);
            Ended::failed(HostStatus::Failed, e)
        }
        Err(e) => Ended::failed(HostStatus::Failed, e.to_string()),
    };
    sink.emit(Event::now(EventKind::StepFinished {
        host,
        step: STEP.into(),
        status: ended.step,
        reason: ended.reason.clone(),
        diff: None,
        elapsed_ms: ms(started.elapsed()),
    }));
    ended
}

/// The command as the app user in `version`'s environment, its lines streamed.
async fn command(
    o: &OneOff,
    cfg: &EngineConfig,
    conn: &dyn Transport,
    sink: &Arc<dyn EventSink>,
    cancel: &CancelFlag,
    version: &str,
) -> Ended {
    let secrets = secrets(o);
    let c = cmd::run_as_app(
        &AppPaths::new(&o.app.name),
        &crate::render::app_env(&o.app, version),
        &o.command,
    );
    let mut on_line = |stream: Stream, line: &str| {
        sink.emit(Event::now(EventKind::Output {
            host: o.host.name.clone(),
            step: STEP.into(),
            stream,
            line: scrub(line, &secrets),
        }));
    };
    let ran = tokio::select! {
        r = conn.exec(&c, cfg.command_timeout, &mut on_line) => Some(r),
        _ = until(cancel) => None,
    };
    let out = match ran {
        None => {
            let e = "cancelled: the connection was closed while the command ran";
            return Ended::failed(HostStatus::Cancelled, e.into());
        }
        Some(Err(e)) => return Ended::failed(HostStatus::Failed, scrub(&e.to_string(), &secrets)),
        Some(Ok(out)) => out,
    };
    let as_user = &o.app.runtime.run_as;
    let reason = format!("exited {} (release {version}, as {as_user})", out.status);
    let (status, step, error) = match out.status {
        0 => (HostStatus::Ok, StepStatus::Ok, None),
        n => (
            HostStatus::Failed,
            StepStatus::Failed,
            Some(format!("the command exited {n}")),
        ),
    };
    Ended {
        status,
        exit_code: Some(out.status),
        error,
        step,
        reason,
    }
}

/// Resolves once `cancel` is set.
async fn until(cancel: &CancelFlag) {
    while !cancelled(cancel) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Values scrubbed from the output: the app's and the environment's env values of 6
/// characters or more (as the engine does for hooks).
fn secrets(o: &OneOff) -> Vec<String> {
    let values = o.app.env.values().chain(o.env.env.values());
    values.filter(|v| v.len() >= 6).cloned().collect()
}

/// The host's live slot and release, from its live pointer; None: nothing is live.  A
/// read that exits non-zero is a permanent failure (the transport's own are as it says).
pub async fn live_release(
    conn: &dyn Transport,
    app: &str,
    timeout: Duration,
) -> Result<Option<(String, String)>, BackendError> {
    let p = AppPaths::new(app);
    let mut outs = Vec::new();
    for c in [cmd::read_live(&p), cmd::read_current(&p)] {
        let out = conn.exec(&c, timeout, &mut |_, _| {}).await?;
        if !out.ok() {
            return Err(BackendError::permanent(format!(
                "reading the live pointer failed (exit {}): {}",
                out.status,
                out.tail()
            )));
        }
        outs.push(out.stdout);
    }
    let live = super::facts::parse_live(&outs[0], &outs[1]);
    Ok(match (live.slot, live.version) {
        (Some(slot), Some(v)) => Some((crate::render::SLOTS[slot].to_string(), v)),
        _ => None,
    })
}
