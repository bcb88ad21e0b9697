//! The engine's side of the job's shared environments (`share.rs`): taking a host's
//! turn, packing the release it built for the others, unpacking another's build.

use deploy_wire::{Event, EventKind, Stream};

use super::exec::Outcome;
use super::host::HostRun;
use super::ops::Report;
use super::share::{Bundle, Delta, MAX_BUNDLE, Turn, size};
use super::steps::scrub;
use crate::commands::{self as cmd, env_ship};

/// The hash an install printed last (`deploy-env <hash>`), if it did.
pub(super) fn printed_env(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(env_ship::ENV_LINE))
        .and_then(|h| env_ship::marker_env(&format!("env={h}")))
}

impl HostRun<'_> {
    /// Takes this host's turn for its platform (waiting for another host's build if
    /// one is under way).  A host that did not tell its platform builds its own.
    pub(super) async fn join_share(&mut self) {
        let Some(platform) = self.facts.release_detail.platform.clone() else {
            self.state.share = Some(Turn::Alone("the host did not tell its platform".into()));
            return;
        };
        let name = self.host().name.clone();
        if let Some(by) = self.share.builder(&platform).filter(|b| *b != name) {
            self.say(
                Stream::Stdout,
                format!("waiting for {by}'s build of the environment"),
            );
        }
        let (turn, ticket) = self.share.turn(&platform, &name).await;
        self.ticket = ticket;
        self.state.share = Some(turn);
    }

    /// Packs the release this host built (whole, and as changes over the release it
    /// served before, when it has one) and hands it to the job's other hosts of its
    /// platform; a failure (said as output) sends them to build their own.
    pub(super) async fn pack_env(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let name = self.host().name.clone();
        match self.pack_whole().await {
            Ok(mut b) => {
                b.delta = self.pack_changes().await;
                let changes = match &b.delta {
                    Some(d) => format!("; {} as changes over {}", size(d.archive.len()), d.base),
                    None => String::new(),
                };
                self.say(
                    Stream::Stdout,
                    format!(
                        "packed the environment ({}{changes}; env sha256 {}) for the job's other hosts",
                        size(b.archive.len()),
                        b.env_sha256
                    ),
                );
                self.state.env_sha256 = Some(b.env_sha256.clone());
                ticket.ready(b);
            }
            Err(why) => {
                let why = scrub(
                    &format!("packing {name}'s build failed{why}"),
                    &self.secrets,
                );
                self.say(Stream::Stderr, format!("{why}: each host builds its own"));
                ticket.off(why);
            }
        }
    }

    /// The whole release as a bundle; Err: why not (after "packing failed").
    async fn pack_whole(&self) -> Result<Bundle, String> {
        let version = &self.plan.spec.version;
        let c = env_ship::pack(&self.paths, version);
        let (bytes, stderr) = self.download(&c).await?;
        let Some(env) = env_ship::marker_env(stderr.lines().next().unwrap_or("")) else {
            return Err(": the build recorded no environment hash".into());
        };
        Ok(Bundle {
            by: self.host().name.clone(),
            archive: bytes,
            env_sha256: env,
            delta: None,
        })
    }

    /// The release as changes over the one this host served before (from the
    /// snapshot), if it has one with a recorded hash; None otherwise or if packing them
    /// failed (the whole release still ships).
    async fn pack_changes(&self) -> Option<Delta> {
        let version = &self.plan.spec.version;
        let base = self.facts.live.as_ref()?.version.clone()?;
        if base == *version {
            return None;
        }
        let c = env_ship::pack_delta(&self.paths, version, &base);
        let (bytes, stderr) = self.download(&c).await.ok()?;
        let base_env = env_ship::marker_env(stderr.lines().nth(1)?)?;
        Some(Delta {
            base,
            base_env,
            archive: bytes,
        })
    }

    /// A pack command's stdout and stderr; Err: why it failed (": ...").
    async fn download(&self, c: &cmd::RemoteCmd) -> Result<(bytes::Bytes, String), String> {
        let timeout = self.cfg.command_timeout;
        match self.conn.download(c, timeout, MAX_BUNDLE).await {
            Err(e) => Err(format!(": {e}")),
            Ok(d) if d.over_limit => Err(format!(
                ": it is over {} MiB packed, too big to ship",
                MAX_BUNDLE >> 20
            )),
            Ok(d) if d.status != 0 => Err(format!(" (exit {}): {}", d.status, d.stderr.trim())),
            Ok(d) => Ok((d.bytes, d.stderr)),
        }
    }

    /// Unpacks the build this host's turn gave it: as changes over this host's release
    /// of the same base when it has one, else whole; its hash is checked on the host
    /// before the marker is written.  Ends the step with what it did.
    pub(super) async fn unpack_env(&mut self) -> Result<Option<Outcome>, String> {
        let Some(Turn::Ship(b)) = self.state.share.clone() else {
            return Err("internal error: no shipped environment to unpack".into());
        };
        let app = &self.plan.app;
        let version = &self.plan.spec.version;
        let stamp = cmd::marker_stamp(&app.package, version, self.plan.spec.wheel.as_ref());
        let short = &b.env_sha256[..12.min(b.env_sha256.len())];
        let tail = format!("env sha256 {short}… verified here): no installer ran on this host");
        let mut whole_because = String::new();
        if let Some(d) = &b.delta {
            let base = (d.base.as_str(), d.base_env.as_str());
            let c = env_ship::unpack_delta(
                &self.paths,
                version,
                &stamp,
                &b.env_sha256,
                base,
                d.archive.clone(),
            );
            let out = self.run(&c, false).await?;
            if out.stdout.trim() == "already-complete" {
                return Ok(Some(completed(version)));
            }
            if out.ok() {
                self.state.env_sha256 = Some(b.env_sha256.clone());
                return Ok(Some(Outcome::End(Report::changed(format!(
                    "unpacked the environment {} built, as {} of changes over release {} (its unchanged files linked; {tail}",
                    b.by,
                    size(d.archive.len()),
                    d.base
                )))));
            }
            whole_because = if out.status == env_ship::NO_BASE {
                format!(
                    "; this host has no release {} with {}'s hash to build on",
                    d.base, b.by
                )
            } else {
                format!("; building on release {} failed: {}", d.base, out.tail())
            };
        }
        let c = env_ship::unpack(
            &self.paths,
            version,
            &stamp,
            &b.env_sha256,
            b.archive.clone(),
        );
        let doing = format!("unpacking {}'s build of {}=={version}", b.by, app.package);
        let out = self.must(&c, false, "unpacking", &doing).await?;
        if out.stdout.trim() == "already-complete" {
            return Ok(Some(completed(version)));
        }
        self.state.env_sha256 = Some(b.env_sha256.clone());
        Ok(Some(Outcome::End(Report::changed(format!(
            "unpacked the environment {} built ({}{whole_because}; {tail}",
            b.by,
            size(b.archive.len()),
        )))))
    }

    /// One line of the step's story, as an `output` event.
    fn say(&self, stream: Stream, line: String) {
        self.sink.emit(Event::now(EventKind::Output {
            host: self.host().name.clone(),
            step: self.step.to_string(),
            stream,
            line,
        }));
    }
}

fn completed(version: &str) -> Outcome {
    Outcome::End(Report::ok(format!(
        "release {version} was completed by an earlier build"
    )))
}
