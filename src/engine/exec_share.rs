//! The engine's side of the job's shared environments (`share.rs`): taking a host's
//! turn, packing the release it built for the others, unpacking another's build.

use deploy_wire::{Event, EventKind, Stream};

use super::exec::Outcome;
use super::host::HostRun;
use super::ops::Report;
use super::share::{Bundle, MAX_BUNDLE, Turn};
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

    /// Packs the release this host built and hands it to the job's other hosts of its
    /// platform; a failure (said as output) sends them to build their own.
    pub(super) async fn pack_env(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let name = self.host().name.clone();
        let version = self.plan.spec.version.clone();
        let c = env_ship::pack(&self.paths, &version);
        let timeout = self.cfg.command_timeout;
        let got = self.conn.download(&c, timeout, MAX_BUNDLE).await;
        let packed = match got {
            Err(e) => Err(format!("packing {name}'s build failed: {e}")),
            Ok(d) if d.over_limit => Err(format!(
                "{name}'s build is over {} MiB packed, too big to ship",
                MAX_BUNDLE >> 20
            )),
            Ok(d) if d.status != 0 => Err(format!(
                "packing {name}'s build failed (exit {}): {}",
                d.status,
                d.stderr.trim()
            )),
            Ok(d) => match env_ship::marker_env(d.stderr.lines().next().unwrap_or("")) {
                None => Err(format!("{name}'s build recorded no environment hash")),
                Some(env) => Ok(Bundle {
                    by: name.clone(),
                    archive: d.bytes,
                    env_sha256: env,
                }),
            },
        };
        match packed {
            Ok(b) => {
                self.say(
                    Stream::Stdout,
                    format!(
                        "packed the environment ({:.1} MB, env sha256 {}) for the job's other hosts",
                        b.archive.len() as f64 / 1e6,
                        b.env_sha256
                    ),
                );
                self.state.env_sha256 = Some(b.env_sha256.clone());
                ticket.ready(b);
            }
            Err(why) => {
                let why = scrub(&why, &self.secrets);
                self.say(Stream::Stderr, format!("{why}: each host builds its own"));
                ticket.off(why);
            }
        }
    }

    /// Unpacks the build this host's turn gave it; its hash is checked on the host
    /// before the marker is written.
    pub(super) async fn unpack_env(&mut self) -> Result<Option<Outcome>, String> {
        let Some(Turn::Ship(b)) = self.state.share.clone() else {
            return Err("internal error: no shipped environment to unpack".into());
        };
        let app = &self.plan.app;
        let version = &self.plan.spec.version;
        let stamp = cmd::marker_stamp(&app.package, version, self.plan.spec.wheel.as_ref());
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
            return Ok(Some(Outcome::End(Report::ok(format!(
                "release {version} was completed by an earlier build"
            )))));
        }
        self.state.env_sha256 = Some(b.env_sha256.clone());
        Ok(None)
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
