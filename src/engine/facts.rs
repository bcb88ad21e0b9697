//! Facts: a typed snapshot of what one host has, read by the engine before a step
//! decides.  Steps never run a command to look at a host; they declare the facts they
//! need ([`super::steps::needs`]) and the engine reads those not yet known, all at once
//! (concurrently, on the host's one connection).  After a step acts, the facts it
//! touched are forgotten and read again when next needed.
//!
//! Each [`Fact`] is one or more read-only commands plus a parser.  The engine reads
//! every fact the host's steps need in one batch when it starts on a host (the
//! snapshot), and a step that acts reads what it changed, for the steps after it, in
//! the same batch as its operations (see [`super::host`]).

use crate::commands::{self as cmd, AppPaths, RemoteCmd};
use crate::inventory::Process;
use crate::procman::{self, ProcessManager};
use crate::render::SLOTS;

use super::transport::Output;

/// A group of facts read together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fact {
    /// `/srv/apps/<app>/{releases,shared}` exist and belong to the SSH user.
    Layout,
    /// The state of the job's release directory.
    Release,
    /// Whether the pinned uv is on the host.
    Uv,
    /// The env file's contents.
    EnvFile,
    /// The live pointer (slot and release) and the release `current` points at.
    Live,
    /// Each slot's program file and pid.
    Slots,
    /// The nginx site's contents.
    Nginx,
    /// Every release directory with its state, oldest first.
    Releases,
    /// The hooks that ran for the job's release (their markers).
    Hooks,
    /// Each of the app's other processes: its program file and running copies.
    Processes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseState {
    Absent,
    /// The directory exists without its completion marker (an unfinished build).
    Partial,
    Complete,
}

/// What the release's state command printed beside the state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleaseDetail {
    /// While the release is not complete: the host's platform (`share.rs`).
    pub platform: Option<crate::share::Platform>,
    /// A complete release's environment hash, from its marker (`env=`), if recorded.
    pub env_sha256: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UvState {
    Present,
    Absent,
    /// The host cannot run the shipped build (its architecture).
    Unsupported(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// Index into [`SLOTS`]: the slot nginx sends traffic to.
    pub slot: Option<usize>,
    /// The release that slot serves.
    pub version: Option<String>,
    /// The release `current` points at (normally the same; it follows the pointer).
    pub current: Option<String>,
    /// Read from a server deployed before the socket switch (`live-slot`, TCP slots): the
    /// next switch installs the socket site (with a reload, once).
    pub legacy: bool,
}

/// One of the app's other processes on the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcState {
    pub conf: Option<String>,
    /// Copies running now.
    pub running: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub conf: Option<String>,
    pub pid: Option<u32>,
}

impl Slot {
    /// The release its program file names (see [`cmd::app::release_in_program`]).
    pub fn release(&self) -> Option<String> {
        cmd::app::release_in_program(self.conf.as_deref()?)
    }
}

/// What the engine knows about a host now.  `None`: not read (or forgotten since).
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub layout: Option<bool>,
    pub release: Option<ReleaseState>,
    /// Read with `release`.
    pub release_detail: ReleaseDetail,
    pub uv: Option<UvState>,
    pub env_file: Option<Option<String>>,
    pub live: Option<Live>,
    pub slots: Option<[Slot; 2]>,
    pub nginx: Option<Option<String>>,
    /// `<mtime> <name> complete|partial|failed` per line, oldest first.
    pub releases: Option<String>,
    pub hooks: Option<std::collections::BTreeSet<String>>,
    /// In the inventory's order of processes.
    pub processes: Option<Vec<ProcState>>,
    /// Read with `processes`: programs of this app on the host that are neither a slot
    /// nor a process of the inventory (one it no longer names).
    pub stray_programs: Option<Vec<String>>,
}

fn known<'a, T>(v: &'a Option<T>, what: &str) -> Result<&'a T, String> {
    v.as_ref()
        .ok_or_else(|| format!("internal error: the {what} fact was not read"))
}

impl Facts {
    pub fn layout(&self) -> Result<bool, String> {
        known(&self.layout, "layout").copied()
    }
    pub fn release(&self) -> Result<ReleaseState, String> {
        known(&self.release, "release").copied()
    }
    pub fn uv(&self) -> Result<&UvState, String> {
        known(&self.uv, "uv")
    }
    pub fn env_file(&self) -> Result<Option<&str>, String> {
        Ok(known(&self.env_file, "env file")?.as_deref())
    }
    pub fn live(&self) -> Result<&Live, String> {
        known(&self.live, "live slot")
    }
    pub fn slot(&self, i: usize) -> Result<&Slot, String> {
        Ok(&known(&self.slots, "slots")?[i])
    }
    pub fn nginx(&self) -> Result<Option<&str>, String> {
        Ok(known(&self.nginx, "nginx site")?.as_deref())
    }
    pub fn releases(&self) -> Result<&str, String> {
        known(&self.releases, "releases").map(String::as_str)
    }
    pub fn hook_ran(&self, name: &str) -> Result<bool, String> {
        Ok(known(&self.hooks, "hooks")?.contains(name))
    }
    pub fn stray_programs(&self) -> Result<&[String], String> {
        known(&self.stray_programs, "the app's programs").map(Vec::as_slice)
    }
    pub fn process(&self, i: usize) -> Result<&ProcState, String> {
        known(&self.processes, "processes")?
            .get(i)
            .ok_or_else(|| format!("internal error: no fact for process {i}"))
    }

    pub fn has(&self, f: Fact) -> bool {
        match f {
            Fact::Layout => self.layout.is_some(),
            Fact::Release => self.release.is_some(),
            Fact::Uv => self.uv.is_some(),
            Fact::EnvFile => self.env_file.is_some(),
            Fact::Live => self.live.is_some(),
            Fact::Slots => self.slots.is_some(),
            Fact::Nginx => self.nginx.is_some(),
            Fact::Releases => self.releases.is_some(),
            Fact::Hooks => self.hooks.is_some(),
            Fact::Processes => self.processes.is_some(),
        }
    }

    /// Forgets a fact (a step changed what it describes).
    pub fn forget(&mut self, f: Fact) {
        match f {
            Fact::Layout => self.layout = None,
            Fact::Release => {
                self.release = None;
                self.release_detail = ReleaseDetail::default();
            }
            Fact::Uv => self.uv = None,
            Fact::EnvFile => self.env_file = None,
            Fact::Live => self.live = None,
            Fact::Slots => self.slots = None,
            Fact::Nginx => self.nginx = None,
            Fact::Releases => self.releases = None,
            Fact::Hooks => self.hooks = None,
            Fact::Processes => {
                self.processes = None;
                self.stray_programs = None;
            }
        }
    }
}

/// What reading facts depends on: the application's paths and names on this host.
pub struct Reader<'a> {
    pub paths: &'a AppPaths,
    pub user: &'a str,
    /// The app's own user.
    pub run_as: &'a str,
    /// The app's other processes.
    pub processes: &'a [Process],
    pub version: &'a str,
    pub pm: &'a dyn ProcessManager,
    /// The pinned uv's SHA-256, if the application may use it.
    pub uv_sha256: Option<&'a str>,
}

impl Reader<'_> {
    /// The read-only commands of a fact.
    pub fn commands(&self, f: Fact) -> Vec<RemoteCmd> {
        let p = self.paths;
        match f {
            Fact::Layout => vec![cmd::app::layout_check(p, self.user, self.run_as)],
            Fact::Release => vec![cmd::release_state(p, self.version)],
            Fact::Uv => match self.uv_sha256 {
                Some(sha) => vec![cmd::uv_probe(sha)],
                None => vec![],
            },
            Fact::EnvFile => vec![cmd::read_file(&p.env_file())],
            Fact::Live => vec![cmd::read_live(p), cmd::read_current(p)],
            // One look at the process manager for every program (deduplicated when
            // slots and processes are read together).
            Fact::Slots => SLOTS
                .iter()
                .map(|s| cmd::read_file(&self.pm.conf_path(&p.app, s)))
                .chain([self.pm.status_all()])
                .collect(),
            Fact::Nginx => vec![cmd::read_file(&p.nginx_conf())],
            Fact::Releases => vec![cmd::list_releases(p)],
            Fact::Hooks => vec![cmd::app::hook_markers(p, self.version)],
            Fact::Processes => self
                .processes
                .iter()
                .map(|x| cmd::read_file(&self.pm.conf_path(&p.app, &x.name)))
                .chain([self.pm.status_all(), self.pm.app_programs(&p.app)])
                .collect(),
        }
    }

    /// Parses the outputs of [`Self::commands`] (same order) into `facts`.
    pub fn store(&self, facts: &mut Facts, f: Fact, outs: &[Output]) -> Result<(), String> {
        let out = |i: usize| -> Result<&str, String> {
            let o = outs
                .get(i)
                .ok_or_else(|| format!("internal error: no output for fact {f:?}"))?;
            if o.ok() {
                Ok(o.stdout.as_str())
            } else {
                Err(format!(
                    "reading the host's state ({f:?}) failed (exit {}): {}",
                    o.status,
                    o.tail()
                ))
            }
        };
        match f {
            Fact::Layout => facts.layout = Some(out(0)?.trim() == "yes"),
            Fact::Release => {
                let (state, detail) = parse_release(out(0)?);
                facts.release = Some(state);
                facts.release_detail = detail;
            }
            Fact::Uv => {
                facts.uv = Some(match self.uv_sha256 {
                    None => UvState::Absent,
                    Some(_) => parse_uv(out(0)?),
                })
            }
            Fact::EnvFile => facts.env_file = Some(parse_file(out(0)?)),
            Fact::Live => facts.live = Some(parse_live(out(0)?, out(1)?)),
            Fact::Slots => facts.slots = Some(self.slots(&out)?),
            Fact::Nginx => facts.nginx = Some(parse_file(out(0)?)),
            Fact::Releases => facts.releases = Some(out(0)?.to_string()),
            Fact::Hooks => {
                facts.hooks = Some(out(0)?.split_whitespace().map(str::to_string).collect())
            }
            Fact::Processes => {
                facts.processes = Some(self.procs(&out)?);
                facts.stray_programs = Some(self.strays(out(self.processes.len() + 1)?));
            }
        }
        Ok(())
    }

    /// Each slot's program file and pid: the outputs of [`Fact::Slots`]'s commands.
    fn slots<'o>(
        &self,
        out: &dyn Fn(usize) -> Result<&'o str, String>,
    ) -> Result<[Slot; 2], String> {
        let all = self.pm.parse_status(out(SLOTS.len())?);
        let slot = |i: usize| -> Result<Slot, String> {
            let program = self.pm.program(&self.paths.app, SLOTS[i]);
            let status = procman::status_of(&all, &program).next();
            Ok(Slot {
                conf: parse_file(out(i)?).map(|c| self.pm.slot_file_as_rendered(c)),
                pid: status.filter(|s| s.running()).and_then(|s| s.pid),
            })
        };
        Ok([slot(0)?, slot(1)?])
    }

    /// The app's programs (see [`ProcessManager::app_programs`]) that are neither a
    /// slot nor one of the inventory's processes.
    fn strays(&self, out: &str) -> Vec<String> {
        let app = &self.paths.app;
        let known: Vec<String> = SLOTS
            .iter()
            .map(|s| self.pm.program(app, s))
            .chain(self.processes.iter().map(|x| self.pm.program(app, &x.name)))
            .collect();
        self.pm
            .parse_app_programs(out)
            .into_iter()
            .filter(|p| !known.contains(p))
            .collect()
    }

    /// Each process's program file and running copies: the outputs of
    /// [`Fact::Processes`]'s commands.
    fn procs<'o>(
        &self,
        out: &dyn Fn(usize) -> Result<&'o str, String>,
    ) -> Result<Vec<ProcState>, String> {
        let all = self.pm.parse_status(out(self.processes.len())?);
        self.processes
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let program = self.pm.program(&self.paths.app, &x.name);
                let copies = procman::status_of(&all, &program);
                Ok(ProcState {
                    conf: parse_file(out(i)?),
                    running: copies.filter(|s| s.running()).count() as u32,
                })
            })
            .collect()
    }
}

/// `present\n<bytes>` or `absent` (see [`cmd::read_file`]).
pub fn parse_file(stdout: &str) -> Option<String> {
    match stdout.split_once('\n') {
        Some(("present", rest)) => Some(rest.to_string()),
        _ if stdout.trim() == "present" => Some(String::new()),
        _ => None,
    }
}

/// The release's state (first line), then a complete one's marker line or another's
/// platform line (see [`cmd::release_state`]).
pub fn parse_release(stdout: &str) -> (ReleaseState, ReleaseDetail) {
    let mut lines = stdout.lines();
    let state = match lines.next().unwrap_or("").trim() {
        "complete" => ReleaseState::Complete,
        "partial" => ReleaseState::Partial,
        _ => ReleaseState::Absent,
    };
    let second = lines.next().unwrap_or("").trim();
    let detail = match state {
        ReleaseState::Complete => ReleaseDetail {
            platform: None,
            env_sha256: cmd::env_ship::marker_env(second),
        },
        _ => ReleaseDetail {
            platform: second
                .strip_prefix(cmd::env_ship::PLATFORM_LINE)
                .filter(|p| !p.trim().is_empty())
                .map(|p| crate::share::Platform(p.trim().to_string())),
            env_sha256: None,
        },
    };
    (state, detail)
}

pub fn parse_uv(stdout: &str) -> UvState {
    let s = stdout.trim();
    if s == "present" {
        UvState::Present
    } else if let Some(arch) = s.strip_prefix("unsupported ") {
        UvState::Unsupported(arch.to_string())
    } else {
        UvState::Absent
    }
}

/// The live pointer and `current` (see [`cmd::read_live`]); a server deployed before
/// the socket switch has only `live-slot` and `current`.
pub fn parse_live(live: &str, current: &str) -> Live {
    let mut lines = live.lines();
    let pointer = lines.next().unwrap_or_default();
    let legacy = lines
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim();
    let current = parse_current(current);
    let slot_of = |name: &str| SLOTS.iter().position(|s| *s == name);
    match cmd::parse_slot_socket(pointer) {
        Some((slot, version)) => Live {
            slot: slot_of(&slot),
            version: Some(version),
            current,
            legacy: false,
        },
        None => Live {
            slot: slot_of(legacy),
            version: slot_of(legacy).and(current.clone()),
            current,
            legacy: slot_of(legacy).is_some(),
        },
    }
}

/// The version `current` points at, from `readlink` (`releases/<v>`).
pub fn parse_current(stdout: &str) -> Option<String> {
    let t = stdout.trim();
    if t.is_empty() {
        None
    } else {
        t.rsplit('/').next().map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_files_releases_uv_and_current() {
        assert_eq!(parse_file("present\na=1\n").as_deref(), Some("a=1\n"));
        assert_eq!(parse_file("present\n").as_deref(), Some(""));
        assert_eq!(parse_file("absent\n"), None);
        assert_eq!(parse_release("partial\n").0, ReleaseState::Partial);
        let (state, d) =
            parse_release("absent\nplatform x86_64 glibc-2.36 /usr/bin/python3.11 ab\n");
        assert_eq!(state, ReleaseState::Absent);
        assert_eq!(
            d.platform.unwrap().0,
            "x86_64 glibc-2.36 /usr/bin/python3.11 ab"
        );
        let env = "e5".repeat(32);
        let (state, d) = parse_release(&format!("complete\nhello 1.0 env={env}\n"));
        assert_eq!((state, d.env_sha256), (ReleaseState::Complete, Some(env)));
        assert_eq!(
            parse_uv("unsupported aarch64\n"),
            UvState::Unsupported("aarch64".into())
        );
        assert_eq!(parse_current("releases/1.2.0\n").as_deref(), Some("1.2.0"));
        assert_eq!(parse_current("\n"), None);
    }

    #[test]
    fn the_live_pointer_names_slot_and_release() {
        let l = parse_live("green@1.1.0.sock\n\n", "releases/1.0.0\n");
        assert_eq!(
            (l.slot, l.version.as_deref(), l.legacy),
            (Some(1), Some("1.1.0"), false)
        );
        assert_eq!(l.current.as_deref(), Some("1.0.0"));
        // A server from before the socket switch.
        let l = parse_live("\nblue\n", "releases/0.9\n");
        assert_eq!(
            (l.slot, l.version.as_deref(), l.legacy),
            (Some(0), Some("0.9"), true)
        );
        // Nothing deployed yet.
        assert_eq!(parse_live("\n\n", ""), Live::default());
    }

    #[test]
    fn a_fact_not_read_is_an_error_not_a_guess() {
        let f = Facts::default();
        assert!(f.live().unwrap_err().contains("live slot"));
    }
}
