//! Operations and reads as one remote command: consecutive operations of a step that
//! are plain commands (runs, the health check, the switch) go to the host as one
//! [`Batch`] (one round trip), stopping at the first that fails; the reads that follow
//! ride in the same batch.  Each part is then settled in order exactly as if it had run
//! alone: the same errors, the same recovery, the same events (streamed lines included).

use deploy_wire::{Event, EventKind, Stream};

use super::exec::Outcome;
use super::host::HostRun;
use super::ops::{Action, Op};
use super::steps::scrub;
use super::transport::Output;
use crate::commands::batch::{Batch, Demux, PartOutput};
use crate::commands::{self as cmd, RemoteCmd};
use crate::failure::CommandFailure;

/// How an action list's batch ends.
pub(super) enum GroupEnd {
    /// Every operation succeeded: the probes' descriptions, and the reads' outputs.
    Done(Vec<String>, Vec<Output>),
    Ended(super::ops::Report),
}

/// How many of `actions`, from the first, can go as one batch (0: the first cannot).
/// An operation that may end the step (`RunOrEnd`) closes its batch.
pub(super) fn batchable_run(actions: &[Action]) -> usize {
    let mut n = 0;
    for a in actions {
        match a.op {
            Op::Run { .. } | Op::Probe { .. } | Op::SetLive { .. } => n += 1,
            Op::RunOrEnd { .. } => return n + 1,
            // Their own commands (an archive on stdin or stdout), or none at all.
            Op::Sleep(_)
            | Op::Install { .. }
            | Op::ShipUv
            | Op::JoinShare
            | Op::PackEnv
            | Op::UnpackEnv => break,
        }
    }
    n
}

/// Whether an operation's output lines become events.
pub(super) fn streams(op: &Op) -> bool {
    match op {
        Op::Run { stream, .. } => *stream,
        Op::RunOrEnd { .. } => true,
        _ => false,
    }
}

fn part_output(p: PartOutput) -> Output {
    Output {
        status: p.status,
        stdout: p.stdout,
        stderr: p.stderr,
    }
}

impl HostRun<'_> {
    /// The command a batchable operation runs.
    pub(super) fn op_cmd(&self, op: &Op) -> RemoteCmd {
        match op {
            Op::Run { cmd, .. } | Op::RunOrEnd { cmd, .. } => cmd.clone(),
            Op::Probe { socket } => {
                let h = &self.plan.app.health;
                let name = cmd::health_host(&self.plan.app.server_names[0]);
                let one = cmd::http_probe(socket.as_deref(), &name, &h.path, h.timeout_secs);
                cmd::http_probe_until(&one, h.expect_status, h.retries, h.interval_ms)
            }
            Op::SetLive { slot, version } => {
                cmd::set_live(&self.paths, crate::render::SLOTS[*slot], version)
            }
            Op::Sleep(_)
            | Op::Install { .. }
            | Op::ShipUv
            | Op::JoinShare
            | Op::PackEnv
            | Op::UnpackEnv => RemoteCmd::new("false # not a command operation"),
        }
    }

    /// What an operation's command result means: its outcome, or why it failed.
    pub(super) fn settle(&mut self, op: &Op, out: Output) -> Result<Option<Outcome>, String> {
        // A full disk is said plainly, whatever the command (see `failure.rs`).
        let failed = |what: &str, out: &Output| {
            CommandFailure::of(what, &format!("running {what}"), out).to_string()
        };
        match op {
            Op::Run { what, .. } if !out.ok() => Err(failed(what, &out)),
            Op::RunOrEnd { what, .. } if !out.ok() => Err(failed(what, &out)),
            Op::RunOrEnd { marker, then, .. } => {
                Ok((out.stdout.trim() == *marker).then(|| Outcome::End(then.clone())))
            }
            Op::Probe { socket } => self.probe_result(socket.as_deref(), &out).map(Some),
            Op::SetLive { .. } if !out.ok() => Err(failed("switching the live socket", &out)),
            Op::SetLive { slot, version } => {
                // What a host serves is recorded the moment it changes.
                let slot_name = crate::render::SLOTS[*slot];
                self.state.serving = Some(version.clone());
                self.sink.emit(Event::now(EventKind::Switched {
                    host: self.host().name.clone(),
                    version: version.clone(),
                    slot: slot_name.to_string(),
                }));
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// The health check's answer (`<status> <attempt>`, see [`cmd::http_probe_until`]).
    fn probe_result(&self, socket: Option<&str>, out: &Output) -> Result<Outcome, String> {
        let h = &self.plan.app.health;
        let mut words = out.stdout.split_whitespace();
        let code = words.next().unwrap_or_default();
        let attempt = words.next().unwrap_or("1");
        if out.ok() && code == h.expect_status.to_string() {
            return Ok(Outcome::Probe(format!(
                "GET {} answered {code} (attempt {attempt})",
                h.path
            )));
        }
        let last = if code == "000" || code.is_empty() {
            format!("no answer within {}s", h.timeout_secs)
        } else {
            format!("answered {code}, expected {}", h.expect_status)
        };
        let name = cmd::health_host(&self.plan.app.server_names[0]);
        let via = socket.map_or_else(|| "nginx".into(), |s| format!("socket {s}"));
        Err(format!(
            "health check GET {} (Host: {name}) via {via}: {last} after {} attempts",
            h.path, h.retries
        ))
    }

    /// Runs `actions` (all batchable) and then `reads` as one command, and settles
    /// each action in order; a failure runs that action's recovery.
    pub(super) async fn run_group(
        &mut self,
        actions: &[Action],
        reads: &[RemoteCmd],
    ) -> Result<GroupEnd, String> {
        if actions.len() == 1 && reads.is_empty() {
            return match self.op(&actions[0].op).await {
                Ok(Some(Outcome::Probe(how))) => Ok(GroupEnd::Done(vec![how], vec![])),
                Ok(Some(Outcome::End(r))) => Ok(GroupEnd::Ended(r)),
                Ok(None) => Ok(GroupEnd::Done(vec![], vec![])),
                Err(e) => Err(self.recover(&actions[0], e).await),
            };
        }
        let mut parts: Vec<RemoteCmd> = actions.iter().map(|a| self.op_cmd(&a.op)).collect();
        parts.extend(reads.iter().cloned());
        let stream: Vec<bool> = actions.iter().map(|a| streams(&a.op)).collect();
        let batch = Batch::new(&parts, true);
        // A lost connection loses the answer, not what ran: the parts whose end had
        // arrived are settled as usual (a switch that happened is reported).
        let (out, lost) = match self.run_batch(&batch, &stream).await {
            Ok(out) => (out, None),
            Err((e, partial)) => (partial, Some(e)),
        };
        let mut results = batch.split(&out.stdout, &out.stderr).into_iter();
        let mut probes = Vec::new();
        for a in actions {
            let settled = match results.next().flatten() {
                Some(p) => {
                    let mut o = part_output(p);
                    o.stdout = scrub(&o.stdout, &self.secrets);
                    o.stderr = scrub(&o.stderr, &self.secrets);
                    self.settle(&a.op, o)
                }
                None => Err(lost.clone().unwrap_or_else(|| {
                    format!(
                        "a batch of commands ended early (exit {}): {}",
                        out.status,
                        scrub(&out.tail(), &self.secrets)
                    )
                })),
            };
            match settled {
                Ok(Some(Outcome::Probe(how))) => probes.push(how),
                Ok(Some(Outcome::End(r))) => return Ok(GroupEnd::Ended(r)),
                Ok(None) => {}
                Err(e) => return Err(self.recover(a, e).await),
            }
        }
        let outs = results
            .map(|p| {
                let p = p.ok_or("reading the host's state after its changes did not finish")?;
                Ok(self.scrub_read(part_output(p)))
            })
            .collect::<Result<Vec<Output>, String>>()?;
        Ok(GroupEnd::Done(probes, outs))
    }

    /// Runs a batch; the lines of the parts marked in `stream` become events as they
    /// come.  If the connection is lost, the error and what had arrived.
    async fn run_batch(&self, batch: &Batch, stream: &[bool]) -> Result<Output, (String, Output)> {
        let (sink, host, step) = (self.sink.clone(), self.host().name.clone(), self.step);
        let secrets = &self.secrets;
        let mut demux = Demux::new(batch);
        let mut seen = [String::new(), String::new()];
        let mut on_line = |s: Stream, line: &str| {
            let k = if s == Stream::Stdout { 0 } else { 1 };
            seen[k].push_str(line);
            seen[k].push('\n');
            for (part, line) in demux.line(k, line) {
                if stream.get(part).copied().unwrap_or(false) {
                    sink.emit(Event::now(EventKind::Output {
                        host: host.clone(),
                        step: step.to_string(),
                        stream: s,
                        line: scrub(&line, secrets),
                    }));
                }
            }
        };
        let r = self
            .conn
            .exec(&batch.cmd, self.cfg.command_timeout, &mut on_line)
            .await;
        let [stdout, stderr] = seen;
        r.map_err(|e| {
            let partial = Output {
                status: 255,
                stdout,
                stderr,
            };
            (scrub(&e.to_string(), secrets), partial)
        })
    }

    /// Read-only commands, as one batch (identical ones run once), each output as
    /// [`Self::read`] gives it.
    pub(super) async fn read_all(&self, reads: &[RemoteCmd]) -> Result<Vec<Output>, String> {
        match reads {
            [] => return Ok(vec![]),
            [one] => return Ok(vec![self.read(one).await?]),
            _ => {}
        }
        let mut unique: Vec<RemoteCmd> = Vec::new();
        let index: Vec<usize> = reads
            .iter()
            .map(|r| match unique.iter().position(|u| u == r) {
                Some(i) => i,
                None => {
                    unique.push(r.clone());
                    unique.len() - 1
                }
            })
            .collect();
        let batch = Batch::new(&unique, false);
        let out = self.run_batch(&batch, &[]).await.map_err(|(e, _)| e)?;
        let parts = batch.split(&out.stdout, &out.stderr);
        index
            .iter()
            .map(|i| match &parts[*i] {
                Some(p) => Ok(self.scrub_read(part_output(p.clone()))),
                None => Err(format!(
                    "reading the host's state failed (exit {}): {}",
                    out.status,
                    scrub(&out.tail(), &self.secrets)
                )),
            })
            .collect()
    }

    /// A read's output: stderr scrubbed, stdout kept unless the read failed (see
    /// [`Self::read`]).
    pub(super) fn scrub_read(&self, mut out: Output) -> Output {
        out.stderr = scrub(&out.stderr, &self.secrets);
        if !out.ok() {
            out.stdout = scrub(&out.stdout, &self.secrets);
        }
        out
    }
}
