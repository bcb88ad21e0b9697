//! Running a step's operations on a host: commands (output scrubbed of the job's
//! secrets, streamed as events when asked), consecutive ones batched by
//! [`super::group`], installs (through the relay's forward when the job uses it),
//! shipping uv, and the recovery of a failed action.

use deploy_wire::{Event, EventKind, Stream};

use super::IndexAccess;
use super::host::HostRun;
use super::ops::{Action, Op, Report};
use super::steps::scrub;
use super::transport::Output;
use crate::commands as cmd;
use crate::failure::CommandFailure;
use crate::index::ServerIndex;

pub(super) enum Executed {
    /// Every action succeeded; the probes' descriptions, in order, and the outputs of the
    /// reads asked for after them (`None`: they could not ride in a batch, not read).
    Done(Vec<String>, Option<Vec<Output>>),
    /// An action ended the step early with this report.
    Ended(Report),
}

pub(super) enum Outcome {
    Probe(String),
    End(Report),
}

impl HostRun<'_> {
    /// Runs actions in order, consecutive batchable ones as one command (see
    /// [`super::group`]), then `reads` (read-only commands) in the last batch when the
    /// last action is batchable (never as a round trip of their own); the first failure
    /// runs that action's recovery and ends.
    pub(super) async fn execute(
        &mut self,
        actions: &[Action],
        reads: &[cmd::RemoteCmd],
    ) -> Result<Executed, String> {
        let mut probes = Vec::new();
        let mut read_outs = None;
        let mut i = 0;
        while i < actions.len() {
            let n = super::group::batchable_run(&actions[i..]);
            if n == 0 {
                match self.op(&actions[i].op).await {
                    Ok(Some(Outcome::Probe(how))) => probes.push(how),
                    Ok(Some(Outcome::End(r))) => return Ok(Executed::Ended(r)),
                    Ok(None) => {}
                    Err(e) => return Err(self.recover(&actions[i], e).await),
                }
                i += 1;
                continue;
            }
            let last = i + n == actions.len();
            let with_reads = if last { reads } else { &[] };
            match self.run_group(&actions[i..i + n], with_reads).await? {
                super::group::GroupEnd::Done(mut p, outs) => {
                    probes.append(&mut p);
                    if last {
                        read_outs = Some(outs);
                    }
                }
                super::group::GroupEnd::Ended(r) => return Ok(Executed::Ended(r)),
            }
            i += n;
        }
        Ok(Executed::Done(probes, read_outs))
    }

    pub(super) async fn recover(&mut self, a: &Action, err: String) -> String {
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

    pub(super) async fn op(&mut self, op: &Op) -> Result<Option<Outcome>, String> {
        match op {
            Op::Sleep(d) => {
                tokio::time::sleep(*d).await;
                Ok(None)
            }
            Op::Install { tool } => self.install(tool).await.map(|_| None),
            Op::ShipUv => {
                self.state.uv_shipped = Some(self.ship_uv().await);
                Ok(None)
            }
            Op::JoinShare => {
                self.join_share().await;
                Ok(None)
            }
            Op::PackEnv => {
                self.pack_env().await;
                Ok(None)
            }
            Op::UnpackEnv => self.unpack_env().await,
            _ => {
                let c = self.op_cmd(op);
                let stream = super::group::streams(op);
                let out = self.run(&c, stream).await?;
                self.settle(op, out)
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
            .map_err(|e| scrub(&e.to_string(), secrets))?;
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
        let out = self
            .conn
            .exec(c, self.cfg.command_timeout, &mut |_, _| {})
            .await
            .map_err(|e| scrub(&e.to_string(), &self.secrets))?;
        Ok(self.scrub_read(out))
    }

    /// Runs a command that must succeed; its failure is typed ([`CommandFailure`]: a
    /// full disk is said plainly, "while" `doing`).
    pub(super) async fn must(
        &self,
        c: &cmd::RemoteCmd,
        stream: bool,
        what: &str,
        doing: &str,
    ) -> Result<Output, String> {
        let out = self.run(c, stream).await?;
        if out.ok() {
            Ok(out)
        } else {
            Err(CommandFailure::of(what, doing, &out).to_string())
        }
    }

    /// Installs the release; with the relay, through a remote forward open for this
    /// command only.
    async fn install(&mut self, tool: &cmd::Tool) -> Result<(), String> {
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
                    .await
                    .map_err(|e| e.to_string())?;
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
            self.plan.spec.wheel.as_ref(),
        );
        let doing = format!("installing {}=={}", app.package, self.plan.spec.version);
        let r = self.must(&c, true, what, &doing).await;
        if let Some(port) = forward {
            self.conn.cancel_remote_forward(port).await;
        }
        let out = r?;
        self.state.env_sha256 = super::exec_share::printed_env(&out.stdout);
        Ok(())
    }

    /// Ships the pinned uv: Ok(what it printed, e.g. `uv 0.9.5`) or why it failed.
    async fn ship_uv(&self) -> Result<String, String> {
        let uv = self.cfg.uv.as_ref().ok_or("no uv binary configured")?;
        let up = self
            .run(&cmd::uv_upload(&uv.sha256, uv.bytes.clone()), false)
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
