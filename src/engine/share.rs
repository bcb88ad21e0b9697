//! Build once, ship everywhere: the job's shared environments.  The first host of a job
//! that needs the release's virtualenv builds it (as before: venv, then the installer
//! from the job's index); the engine then packs it (a tar.gz of the release directory,
//! streamed to the gateway) and every other host whose platform matches unpacks that
//! archive instead of running an installer.  Hosts that differ build their own.
//!
//! Decisions, and why:
//! - **What is shipped**: the built release directory itself, not a wheelhouse.  Every
//!   host of an application has the same release path (`/srv/apps/<app>/releases/<v>`),
//!   so the virtualenv's absolute paths (script shebangs, `pyvenv.cfg`) hold on every
//!   host, and unpacking is a copy: no resolver, no download, no wheel unpacking.
//! - **When hosts may share** ([`Platform`]): same machine architecture, same C library
//!   and version, and the same Python interpreter (its resolved path and its binary's
//!   SHA-256).  The line is read with the release's state (one command), only while the
//!   release is not complete, so a no-op deploy reads nothing more.
//! - **What proves it**: the environment's hash, the SHA-256 of the sorted `sha256sum`
//!   list of every file under `site-packages` but bytecode caches (pip writes their
//!   timestamps).  The builder computes it after installing; every receiver computes it
//!   again after unpacking and refuses a difference.  Each host's marker records it
//!   (`env=<hex>`), the host's result carries it, and the gateway's ledger stores it.
//! - **Where the archive lives**: in the gateway's memory, once per job and platform
//!   (`bytes::Bytes`, shared by every host's upload), at most [`MAX_BUNDLE`]; a bigger
//!   one is not shipped and every host builds its own, as the job says.
//! - **Upgrades reuse what did not change**: the builder's installer takes unchanged
//!   packages from its cache (uv copies them from it); the other hosts get, beside the
//!   whole release, its changes over the builder's previous release (the files whose
//!   bytes differ, and the list of every path), and a host whose previous release has
//!   that release's hash builds the new one from hard links to it plus those changes.
//!   Hard links are safe because no release's file is ever written in place (a build
//!   makes a new directory; removal unlinks); the hash check after it is the same.
//! - **What waiting costs**: a host that finds the build under way waits for it (its
//!   batch slot stays taken).  A builder that fails, or stops without finishing,
//!   releases its waiters to build by themselves, which the job says too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The largest archive kept for shipping (compressed).
pub const MAX_BUNDLE: usize = 512 << 20;

/// An archive's size as the job's lines say it: `840 kB` below a megabyte (at least
/// `1 kB`), else `12.3 MB`.
pub fn size(bytes: usize) -> String {
    if bytes < 1_000_000 {
        format!("{} kB", bytes.div_ceil(1000).max(1))
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// What makes two hosts' builds of one release interchangeable: one line, read on the
/// host by [`crate::commands::release_state`] (`<arch> <libc> <python path> <sha256>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform(pub String);

/// A built environment, ready to ship.
pub struct Bundle {
    /// The host that built it.
    pub by: String,
    /// The release directory as a tar.gz (the completion marker excluded).
    pub archive: bytes::Bytes,
    /// The environment's hash (see the module's docs).
    pub env_sha256: String,
    /// The same release as changes over the builder's previous release, for hosts that
    /// have that release with the same hash (`commands::env_ship::pack_delta`).
    pub delta: Option<Delta>,
}

/// A release as the files that changed since a base release (the rest is linked from
/// the base on each host).
pub struct Delta {
    pub base: String,
    /// The base release's environment hash (a host's base must have it).
    pub base_env: String,
    pub archive: bytes::Bytes,
}

impl std::fmt::Debug for Bundle {
    // Never the archive's bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("by", &self.by)
            .field("archive", &format!("<{} bytes>", self.archive.len()))
            .field("env_sha256", &self.env_sha256)
            .field(
                "delta",
                &self.delta.as_ref().map(|d| {
                    format!(
                        "<{} bytes over {} ({})>",
                        d.archive.len(),
                        d.base,
                        d.base_env
                    )
                }),
            )
            .finish()
    }
}

/// Where a build of one platform stands.
#[derive(Debug, Clone)]
enum Stage {
    Building {
        by: String,
    },
    Ready(Arc<Bundle>),
    /// Hosts build their own (why, said in their reports).
    Off(String),
}

/// What a host is to do about its release's environment.
#[derive(Debug, Clone)]
pub enum Turn {
    /// Build it here, then pack it for the others (the host holds the [`Ticket`]);
    /// `differs_from`: a host of another platform that builds its own too.
    Build { differs_from: Option<String> },
    /// Unpack this one.
    Ship(Arc<Bundle>),
    /// Build it here, for this reason (said in the step's report).
    Alone(String),
}

/// The job's shared environments, by platform.
#[derive(Default)]
pub struct EnvShare {
    stages: Mutex<HashMap<Platform, watch::Sender<Stage>>>,
}

/// The builder's duty: whatever happens, its waiters are released.  Dropped without
/// [`Ticket::ready`] or [`Ticket::off`], the build counts as stopped.
pub struct Ticket {
    tx: watch::Sender<Stage>,
    by: String,
    done: bool,
}

impl Ticket {
    pub fn ready(mut self, bundle: Bundle) {
        self.done = true;
        self.tx.send_replace(Stage::Ready(Arc::new(bundle)));
    }
    pub fn off(mut self, why: String) {
        self.done = true;
        self.tx.send_replace(Stage::Off(why));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            let why = format!("{} stopped before its build could be shipped", self.by);
            self.tx.send_replace(Stage::Off(why));
        }
    }
}

impl EnvShare {
    /// `host`'s turn for `platform`: the first host builds (and gets the ticket); the
    /// others wait for that build, then unpack it (or build alone if it was not
    /// shipped).  A platform no other host of the job had is built here too, saying
    /// whose differed.
    pub async fn turn(&self, platform: &Platform, host: &str) -> (Turn, Option<Ticket>) {
        let mut rx = {
            let mut stages = self.stages.lock().unwrap();
            match stages.get(platform) {
                Some(tx) => tx.subscribe(),
                None => {
                    let differs_from = stages.values().find_map(|tx| match &*tx.borrow() {
                        Stage::Building { by } => Some(by.clone()),
                        Stage::Ready(b) => Some(b.by.clone()),
                        Stage::Off(_) => None,
                    });
                    let (tx, _) = watch::channel(Stage::Building { by: host.into() });
                    stages.insert(platform.clone(), tx.clone());
                    let ticket = Ticket {
                        tx,
                        by: host.into(),
                        done: false,
                    };
                    return (Turn::Build { differs_from }, Some(ticket));
                }
            }
        };
        let stage = match rx.wait_for(|s| !matches!(s, Stage::Building { .. })).await {
            Ok(s) => s.clone(),
            // Unreachable while the map holds the sender; said plainly all the same.
            Err(_) => Stage::Off("the build it waited for vanished".into()),
        };
        match stage {
            Stage::Ready(b) => (Turn::Ship(b), None),
            Stage::Off(why) => (Turn::Alone(why), None),
            Stage::Building { .. } => unreachable!("waited until it was not building"),
        }
    }

    /// Who builds for `platform`, if a host took it already (without waiting).
    pub fn builder(&self, platform: &Platform) -> Option<String> {
        let stages = self.stages.lock().unwrap();
        match &*stages.get(platform)?.borrow() {
            Stage::Building { by } => Some(by.clone()),
            Stage::Ready(b) => Some(b.by.clone()),
            Stage::Off(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(by: &str) -> Bundle {
        Bundle {
            by: by.into(),
            archive: bytes::Bytes::from_static(b"tar"),
            env_sha256: "ab".repeat(32),
            delta: None,
        }
    }

    #[test]
    fn sizes_read_as_kilobytes_below_a_megabyte() {
        assert_eq!(size(0), "1 kB");
        assert_eq!(size(1_001), "2 kB");
        assert_eq!(size(999_999), "1000 kB");
        assert_eq!(size(12_345_678), "12.3 MB");
    }

    #[tokio::test]
    async fn the_first_host_builds_and_the_others_unpack_its_build() {
        let share = Arc::new(EnvShare::default());
        let p = Platform("x86_64 glibc-2.36 /usr/bin/python3.11 00".into());
        let (turn, ticket) = share.turn(&p, "web1").await;
        assert!(matches!(turn, Turn::Build { differs_from: None }));
        let waiter = tokio::spawn({
            let (share, p) = (share.clone(), p.clone());
            async move { share.turn(&p, "web2").await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "web2 waits for web1's build");
        assert_eq!(share.builder(&p).as_deref(), Some("web1"));
        ticket.unwrap().ready(bundle("web1"));
        let (turn, ticket) = waiter.await.unwrap();
        assert!(ticket.is_none());
        assert!(matches!(turn, Turn::Ship(b) if b.by == "web1"));
        // A later host finds it ready at once.
        let (turn, _) = share.turn(&p, "web3").await;
        assert!(matches!(turn, Turn::Ship(_)));
    }

    #[tokio::test]
    async fn a_builder_that_stops_releases_its_waiters_to_build_alone() {
        let share = Arc::new(EnvShare::default());
        let p = Platform("x".into());
        let (_, ticket) = share.turn(&p, "web1").await;
        let waiter = tokio::spawn({
            let share = share.clone();
            let p = p.clone();
            async move { share.turn(&p, "web2").await }
        });
        tokio::task::yield_now().await;
        drop(ticket);
        let (turn, ticket) = waiter.await.unwrap();
        assert!(ticket.is_none());
        match turn {
            Turn::Alone(why) => assert_eq!(why, "web1 stopped before its build could be shipped"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn another_platform_gets_its_own_builder() {
        let share = EnvShare::default();
        let (a, b) = (Platform("a".into()), Platform("b".into()));
        let (_t1, ticket1) = share.turn(&a, "web1").await;
        let (t2, ticket2) = share.turn(&b, "arm1").await;
        assert!(ticket1.is_some() && ticket2.is_some());
        assert!(matches!(t2, Turn::Build { differs_from: Some(ref w) } if w == "web1"));
        ticket2.unwrap().off("too big".into());
        let (t3, _) = share.turn(&b, "arm2").await;
        assert!(matches!(t3, Turn::Alone(why) if why == "too big"));
    }
}
