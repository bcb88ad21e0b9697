//! Fencing: every remote command of a job carries the job's *epoch* (a number the
//! gateway's store hands out, only ever growing), and the host refuses a command whose
//! epoch is older than one it has already seen for that application and environment.
//! Before each command (and each new connection) the job also waits until its owner
//! holds its lease ([`LeaseGate`]): a gateway that stalled past its lease sends nothing
//! more until it has renewed it, and a job whose lease was taken over stops.
//!
//! On the host (decision: no agent, plain POSIX shell and `flock(1)` from util-linux,
//! which every Debian-like server has), the SSH user keeps one file per (application,
//! environment) under `~/.deploy/fence/`: the highest epoch seen, and a lock file.  The
//! guard that wraps each command takes the lock exclusively, compares and raises the
//! epoch, then holds the lock *shared* while the command runs (so commands of one job
//! may overlap, while a newer job's first command waits for an older job's command in
//! flight to end, and from then on the older one is refused).  The command itself runs
//! with the lock's descriptor closed, so a daemon it starts never holds the lock.
//!
//! Epochs come from the gateway's store: one counter that only grows and never falls
//! below the claim's time in ms, so a new database (or `apply` on a private one) still
//! outranks every job a host saw before it.
//!
//! A refused command exits with [`REFUSED`] and changes nothing; the transport turns it
//! into a permanent [`BackendError`] that fails the host.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::commands::RemoteCmd;
use crate::error::BackendError;
use crate::inventory::Host;
use crate::shell::quote;
use crate::ssh::Acceptor;
use crate::transport::{Connector, Download, OnLine, Output, Transport};

/// The exit status of a command the host refused (an older epoch).
pub const REFUSED: u32 = 97;
/// The first line of a fenced command (the fake server recognises it).
pub const HEADER: &str = "# deploy fence ";

/// Whether this process may still act for the job: `Ok` once its lease is held (maybe
/// after waiting for a renewal), `Err(why)` when the job is no longer its own.
pub trait LeaseGate: Send + Sync {
    fn held(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// A job's fence: the (application, environment) its epoch is kept for on the hosts.
#[derive(Clone)]
pub struct Fence {
    pub app: String,
    pub env: String,
    pub epoch: u64,
    pub gate: Arc<dyn LeaseGate>,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fence({}/{} epoch {})", self.app, self.env, self.epoch)
    }
}

/// The name of the (application, environment)'s files under `~/.deploy/fence/`
/// (names are validated by the inventory: no slash, no space).
fn key(app: &str, env: &str) -> String {
    format!("{app}.{env}")
}

/// `line` wrapped in the guard for `epoch` (pure; see the module's doc).
pub fn guard(app: &str, env: &str, epoch: u64, line: &str) -> String {
    let k = key(app, env);
    let file = quote(&k);
    format!(
        "{HEADER}{k} {epoch}\n\
         deploy_o=$PWD; deploy_d=\"$HOME/.deploy/fence\"\n\
         mkdir -p \"$deploy_d\" && cd \"$deploy_d\" && exec 9>>{file}.lock && flock -x 9 || {{ echo \"deploy: cannot lock $deploy_d/{k}.lock (the fence needs a writable home and flock from util-linux)\" >&2; exit 96; }}\n\
         deploy_s=$(cat {file} 2>/dev/null); deploy_s=${{deploy_s:-0}}\n\
         if [ \"$deploy_s\" -gt {epoch} ]; then echo \"deploy: refused: this host has seen job epoch $deploy_s, newer than this job's {epoch}\" >&2; exit {REFUSED}; fi\n\
         if [ \"$deploy_s\" -lt {epoch} ]; then echo {epoch} > {file}.new && mv {file}.new {file} || exit 96; fi\n\
         flock -s 9 && [ \"$(cat {file})\" = {epoch} ] || {{ echo \"deploy: refused: a newer job claimed this host\" >&2; exit {REFUSED}; }}\n\
         cd \"$deploy_o\" && unset deploy_o deploy_d deploy_s && (\n{line}\n) 9>&-"
    )
}

/// A fenced line taken apart: (key, epoch, the command inside); None if not fenced.
pub fn parse(line: &str) -> Option<(String, u64, String)> {
    let rest = line.strip_prefix(HEADER)?;
    let (head, body) = rest.split_once('\n')?;
    let (k, epoch) = head.split_once(' ')?;
    let inner = body
        .split_once("deploy_s && (\n")?
        .1
        .strip_suffix("\n) 9>&-")?;
    Some((k.to_string(), epoch.parse().ok()?, inner.to_string()))
}

/// `inner`, fenced when the job has a fence.
pub fn connector(inner: Arc<dyn Connector>, fence: Option<&Fence>) -> Arc<dyn Connector> {
    match fence {
        Some(f) => Arc::new(Fenced {
            inner,
            fence: f.clone(),
        }),
        None => inner,
    }
}

struct Fenced {
    inner: Arc<dyn Connector>,
    fence: Fence,
}

impl Connector for Fenced {
    fn connect<'a>(
        &'a self,
        host: &'a Host,
    ) -> BoxFuture<'a, Result<Box<dyn Transport>, BackendError>> {
        Box::pin(async move {
            self.fence.gate.held().await.map_err(lost)?;
            let conn = self.inner.connect(host).await?;
            Ok(Box::new(FencedTransport {
                conn,
                fence: self.fence.clone(),
            }) as Box<dyn Transport>)
        })
    }
}

fn lost(why: String) -> BackendError {
    BackendError::permanent(format!("not sent: {why}"))
}

struct FencedTransport {
    conn: Box<dyn Transport>,
    fence: Fence,
}

impl FencedTransport {
    /// `cmd` behind the guard, once the job's lease is known to be held.
    async fn fenced(&self, cmd: &RemoteCmd) -> Result<RemoteCmd, BackendError> {
        self.fence.gate.held().await.map_err(lost)?;
        let f = &self.fence;
        Ok(RemoteCmd {
            line: guard(&f.app, &f.env, f.epoch, &cmd.line),
            stdin: cmd.stdin.clone(),
        })
    }
}

/// The guard's refusal (a newer job's epoch on the host), as a permanent error.
fn refused(status: u32, stderr: &str) -> Result<(), BackendError> {
    if status == REFUSED && stderr.contains("deploy: refused") {
        let why = stderr.lines().find(|l| l.contains("deploy: refused"));
        return Err(BackendError::permanent(
            why.unwrap_or("deploy: refused")
                .trim_start_matches("deploy: "),
        ));
    }
    Ok(())
}

impl Transport for FencedTransport {
    fn exec<'a>(
        &'a self,
        cmd: &'a RemoteCmd,
        timeout: Duration,
        on_line: OnLine<'a>,
    ) -> BoxFuture<'a, Result<Output, BackendError>> {
        Box::pin(async move {
            let fenced = self.fenced(cmd).await?;
            let out = self.conn.exec(&fenced, timeout, on_line).await?;
            refused(out.status, &out.stderr)?;
            Ok(out)
        })
    }
    fn download<'a>(
        &'a self,
        cmd: &'a RemoteCmd,
        timeout: Duration,
        limit: usize,
    ) -> BoxFuture<'a, Result<Download, BackendError>> {
        Box::pin(async move {
            let fenced = self.fenced(cmd).await?;
            let out = self.conn.download(&fenced, timeout, limit).await?;
            refused(out.status, &out.stderr)?;
            Ok(out)
        })
    }
    fn remote_forward(&self, acceptor: Acceptor) -> BoxFuture<'_, Result<u16, BackendError>> {
        self.conn.remote_forward(acceptor)
    }
    fn cancel_remote_forward(&self, port: u16) -> BoxFuture<'_, ()> {
        self.conn.cancel_remote_forward(port)
    }
    fn fingerprint(&self) -> String {
        self.conn.fingerprint()
    }
    fn channels_opened(&self) -> u64 {
        self.conn.channels_opened()
    }
    fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        self.conn.close()
    }
}

/// A gate that is always open (tests, and `apply` runs that hold no lease).
pub struct Open;

impl LeaseGate for Open {
    fn held(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guarded_line_parses_back_to_its_key_epoch_and_command() {
        let g = guard("hello", "staging", 42, "sh -s");
        assert!(g.starts_with("# deploy fence hello.staging 42\n"), "{g}");
        assert_eq!(
            parse(&g),
            Some(("hello.staging".into(), 42, "sh -s".into()))
        );
        assert_eq!(parse("sh -s"), None);
    }

    #[test]
    fn the_guard_refuses_older_epochs_and_closes_the_lock_for_the_command() {
        let g = guard("hello", "staging", 7, "echo hi");
        assert!(g.contains("-gt 7 ]"), "{g}");
        assert!(g.contains(&format!("exit {REFUSED}")), "{g}");
        assert!(g.contains("flock -x 9") && g.contains("flock -s 9"), "{g}");
        assert!(g.ends_with("(\necho hi\n) 9>&-"), "{g}");
    }

    /// The guard run by a real `sh` (with `flock` from util-linux, as on the servers):
    /// a newer epoch is taken, an older one refused and its command never runs.
    #[test]
    fn a_real_shell_runs_newer_epochs_and_refuses_older_ones() {
        if std::process::Command::new("flock")
            .arg("-V")
            .output()
            .is_err()
        {
            panic!("flock(1) (util-linux) is needed by this test");
        }
        let home = tempfile::tempdir().unwrap();
        let run = |epoch: u64, marker: &str| {
            let line = format!(
                "touch {}",
                quote(&home.path().join(marker).to_string_lossy())
            );
            std::process::Command::new("sh")
                .arg("-c")
                .arg(guard("hello", "staging", epoch, &line))
                .env("HOME", home.path())
                .output()
                .unwrap()
        };
        assert_eq!(run(5, "a").status.code(), Some(0));
        assert_eq!(run(5, "b").status.code(), Some(0));
        assert_eq!(run(6, "c").status.code(), Some(0));
        let old = run(5, "d");
        assert_eq!(old.status.code(), Some(REFUSED as i32));
        assert!(String::from_utf8_lossy(&old.stderr).contains("seen job epoch 6"));
        for (m, there) in [("a", true), ("b", true), ("c", true), ("d", false)] {
            assert_eq!(home.path().join(m).exists(), there, "{m}");
        }
        let seen = std::fs::read_to_string(home.path().join(".deploy/fence/hello.staging"));
        assert_eq!(seen.unwrap().trim(), "6");
    }

    struct Lost;
    impl LeaseGate for Lost {
        fn held(&self) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(async { Err("the lease on this job was taken over".to_string()) })
        }
    }

    fn fenced_bed(epoch: u64, gate: Arc<dyn LeaseGate>) -> crate::testbed::Bed {
        let mut b = crate::testbed::bed("{canary: false}");
        Arc::get_mut(&mut b.cfg).unwrap().fence = Some(Fence {
            app: "hello".into(),
            env: "production".into(),
            epoch,
            gate,
        });
        b
    }

    #[tokio::test]
    async fn a_job_with_an_older_epoch_changes_nothing_on_a_host_that_saw_a_newer_one() {
        let b = fenced_bed(5, Arc::new(Open));
        let (r, _) = b.run(crate::testbed::spec("1.0.0")).await;
        assert_eq!(r.status, deploy_wire::JobStatus::Succeeded, "{r:?}");
        let web1 = b.fleet.server("web1");
        assert_eq!(web1.state().fences.get("hello.production"), Some(&5));
        // A newer job (epoch 9) reached web1 while this process stalled.
        web1.state().fences.insert("hello.production".into(), 9);
        let snapshot = || {
            let s = web1.state();
            (s.releases.clone(), s.running.clone())
        };
        let before = snapshot();
        let (r, _) = b.run(crate::testbed::spec("2.0.0")).await;
        let h1 = r.hosts.iter().find(|h| h.host == "web1").unwrap();
        assert_eq!(h1.status, deploy_wire::HostStatus::Failed, "{h1:?}");
        assert!(
            h1.error.as_deref().unwrap_or("").contains("epoch 9"),
            "{h1:?}"
        );
        assert_eq!(before, snapshot(), "web1 changed under an older epoch");
        assert_eq!(b.serving("web1").as_deref(), Some("1.0.0"));
    }

    #[tokio::test]
    async fn a_job_whose_lease_is_lost_opens_no_connection_and_sends_nothing() {
        let b = fenced_bed(5, Arc::new(Lost));
        let (r, _) = b.run(crate::testbed::spec("1.0.0")).await;
        assert_ne!(r.status, deploy_wire::JobStatus::Succeeded, "{r:?}");
        assert!(b.connects().is_empty());
        for h in ["web1", "web2", "web3"] {
            assert!(b.fleet.server(h).state().log.is_empty(), "{h}");
        }
    }
}
