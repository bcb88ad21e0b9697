//! Running a step's operations on a host: commands (output scrubbed of the job's
//! secrets, streamed as events when asked), health probes, installs (through the relay's
//! forward when the job uses it), shipping uv, and the recovery of a failed action.

use std::time::Duration;

use deploy_wire::{Event, EventKind, Stream};

use super::IndexAccess;
use super::host::HostRun;
use super::ops::{Action, Op, Report};
use super::steps::scrub;
use super::transport::Output;
use crate::artifacts::ServerIndex;
use crate::commands as cmd;

pub(super) enum Executed {
    /// Every action succeeded; the probes' descriptions, in order.
    Done(Vec<String>),
    /// An action ended the step early with this report.
    Ended(Report),
}

pub(super) enum Outcome {
    Probe(String),
    End(Report),
}

impl HostRun<'_> {
    /// Runs actions in order; the first failure runs that action's recovery and ends.
    pub(super) async fn execute(&mut self, actions: &[Action]) -> Result<Executed, String> {
        let mut probes = Vec::new();
        for a in actions {
            match self.op(&a.op).await {
                Ok(Some(Outcome::Probe(how))) => probes.push(how),
                Ok(Some(Outcome::End(r))) => return Ok(Executed::Ended(r)),
                Ok(None) => {}
                Err(e) => return Err(self.recover(a, e).await),
            }
        }
        Ok(Executed::Done(probes))
    }

    async fn recover(&mut self, a: &Action, err: String) -> String {
        let Some(rec) = &a.on_fail else {
            return err;
        };
        let mut attempt = Ok(());
        for op in &rec.attempt {
            if let Err(e) = self.op(op).await {
                attempt = Err(e);
                break;
            }
        }
        for op in &rec.always {
            let _ = self.op(op).await;
        }
        match attempt {
            Ok(()) => format!("{err}{}", rec.note_ok),
            Err(e) => format!("{err}{}{e}", rec.note_failed),
        }
    }

    async fn op(&mut self, op: &Op) -> Result<Option<Outcome>, String> {
        match op {
            Op::Run { cmd, what, stream } => self.must(cmd, *stream, what).await.map(|_| None),
            Op::RunOrEnd {
                cmd,
                what,
                marker,
                then,
            } => {
                let out = self.must(cmd, true, what).await?;
                Ok((out.stdout.trim() == *marker).then(|| Outcome::End(then.clone())))
            }
            Op::Probe { socket } => self
                .probe(socket.as_deref())
                .await
                .map(|how| Some(Outcome::Probe(how))),
            Op::SetLive { slot, version } => self.set_live(*slot, version).await.map(|_| None),
            Op::Sleep(d) => {
                tokio::time::sleep(*d).await;
                Ok(None)
            }
            Op::Install { tool } => self.install(tool).await.map(|_| None),
            Op::ShipUv => {
                self.state.uv_shipped = Some(self.ship_uv().await);
                Ok(None)
            }
        }
    }

    /// Runs a command; its lines become events only with `stream` (long commands).
    pub(super) async fn run(&self, c: &cmd::RemoteCmd, stream: bool) -> Result<Output, String> {
        let (sink, host, step) = (self.sink.clone(), self.host().name.clone(), self.step);
        let secrets = &self.secrets;
        let mut on_line = |s: Stream, line: &str| {
            if stream {
                sink.emit(Event::now(EventKind::Output {
                    host: host.clone(),
                    step: step.to_string(),
                    stream: s,
                    line: scrub(line, secrets),
                }));
            }
        };
        let mut out = self
            .conn
            .exec(c, self.cfg.command_timeout, &mut on_line)
            .await
            .map_err(|e| scrub(&e, secrets))?;
        if !secrets.is_empty() {
            out.stdout = scrub(&out.stdout, secrets);
            out.stderr = scrub(&out.stderr, secrets);
        }
        Ok(out)
    }

    /// Runs a read-only command whose stdout is a fact: kept as the host has it (the env
    /// file is compared with the rendered one; facts never become events but through
    /// redacted diffs), stderr and errors scrubbed.
    pub(super) async fn read(&self, c: &cmd::RemoteCmd) -> Result<Output, String> {
        let secrets = &self.secrets;
        let mut out = self
            .conn
            .exec(c, self.cfg.command_timeout, &mut |_, _| {})
            .await
            .map_err(|e| scrub(&e, secrets))?;
        out.stderr = scrub(&out.stderr, secrets);
        if !out.ok() {
            // A failed read's output may end up in an error message.
            out.stdout = scrub(&out.stdout, secrets);
        }
        Ok(out)
    }

    async fn must(&self, c: &cmd::RemoteCmd, stream: bool, what: &str) -> Result<Output, String> {
        let out = self.run(c, stream).await?;
        if out.ok() {
            Ok(out)
        } else {
            Err(format!(
                "{what} failed (exit {}): {}",
                out.status,
                out.tail()
            ))
        }
    }

    /// Moves the live pointer, then tells the world: what a host serves is recorded the
    /// moment it changes.
    async fn set_live(&mut self, slot: usize, version: &str) -> Result<(), String> {
        let slot_name = crate::render::SLOTS[slot];
        let c = cmd::set_live(&self.paths, slot_name, version);
        self.must(&c, false, "switching the live socket").await?;
        self.state.serving = Some(version.to_string());
        self.sink.emit(Event::now(EventKind::Switched {
            host: self.host().name.clone(),
            version: version.to_string(),
            slot: slot_name.to_string(),
        }));
        Ok(())
    }

    /// The health check on a slot's socket, or through nginx (None), until it answers as
    /// expected or runs out of retries.
    async fn probe(&self, socket: Option<&str>) -> Result<String, String> {
        let h = &self.plan.app.health;
        let name = cmd::health_host(&self.plan.app.server_names[0]);
        let c = cmd::http_probe(socket, &name, &h.path, h.timeout_secs);
        let mut last = String::new();
        for attempt in 1..=h.retries {
            let out = self.run(&c, false).await?;
            let code = out.stdout.trim();
            if code == h.expect_status.to_string() {
                return Ok(format!(
                    "GET {} answered {code} (attempt {attempt})",
                    h.path
                ));
            }
            last = if code == "000" || code.is_empty() {
                format!("no answer within {}s", h.timeout_secs)
            } else {
                format!("answered {code}, expected {}", h.expect_status)
            };
            tokio::time::sleep(Duration::from_millis(h.interval_ms as u64)).await;
        }
        let via = socket.map_or_else(|| "nginx".into(), |s| format!("socket {s}"));
        Err(format!(
            "health check GET {} (Host: {name}) via {via}: {last} after {} attempts",
            h.path, h.retries
        ))
    }

    /// Installs the release; with the relay, through a remote forward open for this
    /// command only.
    async fn install(&self, tool: &cmd::Tool) -> Result<(), String> {
        let what = match tool {
            cmd::Tool::Pip => "pip install",
            cmd::Tool::Uv { .. } => "uv pip install",
        };
        let (index, forward) = match &self.plan.index {
            IndexAccess::Direct(index) => (index.clone(), None),
            IndexAccess::Relay(relay) => {
                let port = self
                    .conn
                    .remote_forward(relay.acceptor(&self.host().name))
                    .await?;
                let url = format!("http://127.0.0.1:{port}{}", relay.index_path());
                (
                    ServerIndex {
                        url,
                        credentials: None,
                    },
                    Some(port),
                )
            }
        };
        let app = &self.plan.app;
        let c = cmd::install(
            &self.paths,
            tool,
            &index,
            &app.package,
            &self.plan.spec.version,
        );
        let r = self.must(&c, true, what).await;
        if let Some(port) = forward {
            self.conn.cancel_remote_forward(port).await;
        }
        r.map(|_| ())
    }

    /// Ships the pinned uv: Ok(what it printed, e.g. `uv 0.9.5`) or why it failed.
    async fn ship_uv(&self) -> Result<String, String> {
        let uv = self.cfg.uv.as_ref().ok_or("no uv binary configured")?;
        let up = self
            .run(&cmd::uv_upload(&uv.sha256, uv.bytes.to_vec()), false)
            .await?;
        if !up.ok() {
            return Err(up.tail());
        }
        Ok(up
            .stdout
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "))
    }
}
