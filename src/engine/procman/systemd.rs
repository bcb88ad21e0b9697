//! systemd: one unit per slot and one templated unit per process, in
//! `/etc/systemd/system/`, driven with plain `sudo -n systemctl ...` (the rights
//! `docs/sudoers-systemd` lists), logs in the journal, status from `systemctl show`.
//!
//! **Names.** Every unit deploy writes is `deploy-<app>-...`:
//! - a slot: `deploy-<app>-<slot>.service` (program `deploy-<app>-blue`);
//! - a process: the template `deploy-<app>-<process>@.service` and its instances
//!   `deploy-<app>-<process>@0.service` .. `@<count-1>` (program
//!   `deploy-<app>-worker`, copies `deploy-<app>-worker@0`, ...).
//!
//! Decision: the `deploy-` prefix keeps deploy's units apart from everything else on the
//! host (an app `systemd` with a process `journald` would otherwise write
//! `systemd-journald@.service`) and lets one sudoers file name them with one wildcard.
//! A template with numbered instances is systemd's own way of running `count` copies of
//! one command (supervisord's `numprocs`): one file, one diff, and `%i` names the copy
//! in the journal (`SyslogIdentifier=deploy-<app>-<process>-%i`).
//!
//! **Settle time.** A unit counts as started once it stayed up `settle_secs`: right
//! after `systemctl restart` (which returns once the command was executed,
//! `Type=exec`) a script polls `systemctl show` once a second, as the deploy user; a
//! unit that is not `active`/`running`, or whose `MainPID` or `NRestarts` changed (it
//! exited and systemd restarted it), fails the start at once with its state and the
//! journal's last lines.  Decision: not an `ExecStartPost=sleep`, which would hold every
//! automatic restart in `activating` too and leave a crash-looping start job waiting;
//! watching from outside is what supervisord's `startsecs` does.
//!
//! **Boot.** A slot unit is enabled only while it is live ([`ProcessManager::at_boot`]);
//! a process's instances are enabled while the inventory names them (`apply`).  Enabling
//! uses `--no-reload`: nothing changes now, the next boot reads the links.
//!
//! **Sudo.** Every privileged command is `sudo -n systemctl <verb> [--no-reload
//! --quiet] <deploy's units>`, `sudo -n journalctl --no-pager -o short-iso -n N [-f] -u
//! ...`, `sudo -n tee <unit file>` (a unit file's contents on stdin) or `sudo -n rm -f
//! <unit file>`; reads (`systemctl show`, `is-enabled`) need no root.
//! `sudoers_tests.rs` runs every command this file builds against stubs and checks each
//! `sudo` call against `docs/sudoers-systemd`.

use super::{CopyMarks, LogRead, ProcessManager, ProgramState, ProgramStatus};
use crate::commands::RemoteCmd;
use crate::render::SLOTS;
use crate::shell::{join, quote};

/// The template (in `templates/`) of a web slot's unit.
pub const SLOT_TEMPLATE: &str = "systemd-slot.service.j2";
/// The template of a process's templated unit (`<program>@.service`).
pub const PROCESS_TEMPLATE: &str = "systemd-process.service.j2";

/// Where deploy installs its units (the administrator's directory, read at boot).
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// The prefix of every unit deploy writes.
pub const PREFIX: &str = "deploy-";

/// How many lines of a unit's journal a failed start or watch shows.
const LAST_LINES: u32 = 20;

#[derive(Debug, Clone, Copy, Default)]
pub struct Systemd;

impl Systemd {
    /// A slot's unit (`deploy-hello-blue.service`).
    pub fn unit(program: &str) -> String {
        format!("{program}.service")
    }
    /// Copy `i` of a process (`deploy-hello-worker@0.service`).
    pub fn instance(program: &str, i: u32) -> String {
        format!("{program}@{i}.service")
    }
    fn instances(program: &str, copies: u32) -> Vec<String> {
        (0..copies).map(|i| Self::instance(program, i)).collect()
    }
    /// The journal's identifier of copy `i` (the process template's `SyslogIdentifier`).
    fn ident(program: &str, i: u32) -> String {
        format!("{program}-{i}")
    }
    fn path(unit: &str) -> String {
        format!("{UNIT_DIR}/{unit}")
    }
}

/// `sudo -n systemctl <args> <units>`.
fn systemctl(args: &str, units: &[String]) -> String {
    format!("sudo -n systemctl {args} {}", join(units))
}

/// The settle check (see the module's docs), as the deploy user: `$1` seconds, then the
/// units.  Prints the units that do not run and their journal's last lines (stderr),
/// exit 1; exit 0 when all stayed up.
const SETTLE: &str = r#"n=$1; shift
snap() { systemctl show -p Id -p ActiveState -p SubState -p MainPID -p NRestarts -- "$@" | awk -F= '
  /^$/ { if (id != "") print id, a, s, p, r; id = ""; next }
  $1 == "Id" { id = $2 } $1 == "ActiveState" { a = $2 } $1 == "SubState" { s = $2 }
  $1 == "MainPID" { p = $2 } $1 == "NRestarts" { r = $2 }
  END { if (id != "") print id, a, s, p, r }'; }
first=$(snap "$@"); now=$first; i=0
while [ "$i" -lt "$n" ] && [ "$now" = "$first" ]; do sleep 1; i=$((i+1)); now=$(snap "$@"); done
bad=$({ printf '%s\n' "$first" | sed 's/^/0 /'; printf '%s\n' "$now" | sed 's/^/1 /'; } | awk '
  $1 == 0 { was[$2] = $5 " " $6; next }
  $3 != "active" || $4 != "running" || was[$2] != $5 " " $6 {
    print $2, $3 "/" $4 (was[$2] != $5 " " $6 ? " (exited and restarted)" : "") }')
[ -z "$bad" ] && exit 0
for u in $(printf '%s\n' "$bad" | cut -d' ' -f1); do
  echo "last lines of $u:"; sudo -n journalctl --no-pager -o short-iso -n LAST -u "$u"
done >&2
printf '%s\n' "$bad" | sed 's/^/not running: /' >&2
exit 1"#;

/// [`ProcessManager::settled`]'s loop: `$1` quarter seconds at most, `$2` the settle
/// time in seconds, then the units (patterns allowed).  Never fails.
const SETTLED: &str = r#"tries=$1 settle=$2; shift 2; n=0
busy() {
  case "$(systemctl is-system-running 2>/dev/null)" in initializing|starting) return 0;; esac
  now=$(awk '{ printf "%d", $1 * 1000000 }' /proc/uptime)
  systemctl show -p ActiveState -p ActiveEnterTimestampMonotonic -- "$@" 2>/dev/null | awk -F= -v now="$now" -v s="$settle" '
    $1 == "ActiveState" && ($2 == "activating" || $2 == "deactivating" || $2 == "reloading") { b = 1 }
    $1 == "ActiveState" { a = $2 }
    $1 == "ActiveEnterTimestampMonotonic" && a == "active" && $2 > 0 && now - $2 < s * 1000000 { b = 1 }
    END { exit !b }'
}
while busy "$@"; do n=$((n+1)); [ "$n" -ge "$tries" ] && break; sleep 0.25; done
true"#;

fn settle(units: &[String], secs: u32) -> String {
    let script = SETTLE.replace("LAST", &LAST_LINES.to_string());
    format!("sh -c {} sh {secs} {}", quote(&script), join(units))
}

/// Turns a unit's boot link on or off when it is not so already; nothing for a unit
/// without a file (`is-enabled` prints neither word).
fn boot_link(unit: &str, on: bool) -> String {
    let (from, verb) = if on {
        ("disabled", "enable")
    } else {
        ("enabled", "disable")
    };
    format!(
        "case \"$(systemctl is-enabled {u} 2>/dev/null)\" in {from}) {cmd};; esac",
        u = quote(unit),
        cmd = systemctl(&format!("{verb} --no-reload --quiet"), &[unit.to_string()])
    )
}

/// The instances of `program` that are loaded or linked at boot, numbered `copies` or
/// more: stopped and unlinked.
fn drop_extra_copies(program: &str, copies: u32) -> String {
    let pattern = quote(&format!("{program}@*.service"));
    let links = format!("{UNIT_DIR}/*.wants/{program}@*.service");
    format!(
        "for u in $({{ systemctl show -p Id --value -- {pattern} 2>/dev/null; \
         for l in {links}; do [ -L \"$l\" ] && basename \"$l\"; done; }} | sort -u); do \
         i=${{u#*@}}; i=${{i%.service}}; case \"$i\" in ''|*[!0-9]*) continue;; esac; \
         [ \"$i\" -ge {copies} ] || continue; \
         sudo -n systemctl stop \"$u\" && sudo -n systemctl disable --no-reload --quiet \"$u\" || exit 1; done"
    )
}

impl ProcessManager for Systemd {
    fn name(&self) -> &'static str {
        "systemd"
    }

    fn template(&self) -> &'static str {
        SLOT_TEMPLATE
    }

    fn process_template(&self) -> &'static str {
        PROCESS_TEMPLATE
    }

    fn program(&self, app: &str, slot: &str) -> String {
        format!("{PREFIX}{app}-{slot}")
    }

    /// A slot's unit file, or a process's template (`...@.service`): process names are
    /// never a slot's (the inventory refuses `blue` and `green`).
    fn conf_path(&self, app: &str, slot: &str) -> String {
        let program = self.program(app, slot);
        if SLOTS.contains(&slot) {
            Self::path(&Self::unit(&program))
        } else {
            Self::path(&format!("{program}@.service"))
        }
    }

    /// `journalctl` of the slot's unit or of every copy's instance: the last `lines` of
    /// them together (one journal, in time order: not `lines` per copy as with files),
    /// each line `<time> <host> <ident>[<pid>]: <message>`.
    fn read_log(
        &self,
        _log_dir: &str,
        program: &str,
        copies: Option<u32>,
        lines: u32,
        follow: bool,
    ) -> LogRead {
        let (units, marks) = match copies {
            None => (vec![Self::unit(program)], CopyMarks::None),
            Some(n) => (
                Self::instances(program, n),
                CopyMarks::Idents((0..n).map(|i| Self::ident(program, i)).collect()),
            ),
        };
        LogRead {
            cmd: journal(&units, lines, follow),
            copies: marks,
        }
    }

    /// `sudo -n tee <file>`: systemd reads a unit file at `daemon-reload` only, which
    /// the command that starts it runs after this one.
    fn write_file(&self, path: &str, contents: Vec<u8>) -> RemoteCmd {
        RemoteCmd::with_stdin(format!("sudo -n tee {} >/dev/null", quote(path)), contents)
    }

    /// `ExecStart=/bin/sh -c "<script>"`: systemd splits the line itself (double quotes,
    /// C escapes inside them), expands `%` specifiers (`%%` is a `%`) and `$VAR` (`$$`
    /// is a `$`).
    fn command_line(&self, script: &str) -> String {
        let mut out = String::from("/bin/sh -c \"");
        for c in script.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '%' => out.push_str("%%"),
                '$' => out.push_str("$$"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// `daemon-reload` (its file may be new), `restart`, then the settle check.
    fn start_fresh(&self, program: &str, settle_secs: u32) -> RemoteCmd {
        let unit = vec![Self::unit(program)];
        RemoteCmd::new(format!(
            "sudo -n systemctl daemon-reload && {} && {}",
            systemctl("restart", &unit),
            settle(&unit, settle_secs)
        ))
    }

    /// `systemctl stop` waits for the unit's `TimeoutStopSec` (TERM, then KILL).  Never
    /// fails: a unit that is not loaded is stopped.
    fn stop(&self, program: &str) -> RemoteCmd {
        RemoteCmd::new(format!(
            "{} 2>/dev/null || true",
            systemctl("stop", &[Self::unit(program)])
        ))
    }

    fn at_boot(&self, program: &str, on: bool) -> RemoteCmd {
        RemoteCmd::new(boot_link(&Self::unit(program), on))
    }

    /// `daemon-reload`; the copies beyond `copies` stopped and unlinked; the others
    /// linked at boot, then restarted when the file `changed` (every copy runs one
    /// file: all of them, as supervisord's `update` restarts a changed group) or
    /// started (those that run are left alone).
    fn apply(&self, program: &str, copies: u32, changed: bool) -> RemoteCmd {
        let units = Self::instances(program, copies);
        RemoteCmd::new(format!(
            "sudo -n systemctl daemon-reload && {{ {drop}; }} && {enable} && {run}",
            drop = drop_extra_copies(program, copies),
            enable = systemctl("enable --no-reload --quiet", &units),
            run = systemctl(if changed { "restart" } else { "start" }, &units),
        ))
    }

    fn restart_all(&self, program: &str, copies: u32) -> RemoteCmd {
        RemoteCmd::new(systemctl("restart", &Self::instances(program, copies)))
    }

    fn watch(&self, _log_dir: &str, program: &str, copies: u32, settle_secs: u32) -> RemoteCmd {
        RemoteCmd::new(settle(&Self::instances(program, copies), settle_secs))
    }

    /// The unit files `deploy-<app>-*.service` whose first line is deploy's header for
    /// `app`, as programs (`deploy-hello-blue`, `deploy-hello-worker`).
    fn app_programs(&self, app: &str) -> RemoteCmd {
        RemoteCmd::new(format!(
            "for f in {UNIT_DIR}/{PREFIX}{q}-*.service; do [ -f \"$f\" ] || continue; \
             head -n 1 \"$f\" | grep -qF {header} && {{ n=$(basename \"$f\" .service); echo \"${{n%@}}\"; }}; done; true",
            q = quote(app),
            header = quote(&format!("Managed by deploy for {app} (")),
        ))
    }

    fn parse_app_programs(&self, output: &str) -> Vec<String> {
        output
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .map(str::to_string)
            .collect()
    }

    /// Every copy (and a slot's unit of that name) stopped and unlinked, the files
    /// removed, systemd reloaded.  Idempotent.
    fn remove(&self, program: &str) -> RemoteCmd {
        let (unit, template) = (Self::unit(program), format!("{program}@.service"));
        RemoteCmd::new(format!(
            "{drop} && {unlink} && sudo -n rm -f {files} && sudo -n systemctl daemon-reload",
            drop = drop_extra_copies(program, 0),
            unlink = boot_link(&unit, false),
            files = join(&[Self::path(&unit), Self::path(&template)]),
        ))
    }

    /// Waits (as the deploy user, no root), a quarter second at a time and at most
    /// `limit_secs`, while the boot is not done (`is-system-running`: `initializing` or
    /// `starting`: a boot's start jobs are still queued, ssh answers before the live slot
    /// is up), while a unit of `programs` (a slot's, or any copy of a process's) is
    /// `activating`, `deactivating` or `reloading`, or while one became active less than
    /// the settle time ago (`Type=exec` is active once exec'd, before gunicorn listens).
    /// The settle time is `limit_secs - 2`: observe passes `settle_secs + 2`, and a unit
    /// file does not carry it.
    fn settled(&self, programs: &[String], limit_secs: u32) -> RemoteCmd {
        let units: Vec<String> = programs
            .iter()
            .flat_map(|p| [Self::unit(p), format!("{p}@*.service")])
            .collect();
        RemoteCmd::new(format!(
            "sh -c {} sh {} {} {}",
            quote(SETTLED),
            limit_secs.max(1) * 4,
            limit_secs.saturating_sub(2),
            join(&units)
        ))
    }

    /// `systemctl show` of every loaded unit of deploy's (one call, no root): a unit
    /// that is not loaded is stopped.
    fn status_all(&self) -> RemoteCmd {
        RemoteCmd::new(format!(
            "systemctl show -p Id -p ActiveState -p SubState -p MainPID -- {} 2>/dev/null || true",
            quote(&format!("{PREFIX}*.service"))
        ))
    }

    /// `Key=value` blocks, one per unit, separated by blank lines, in systemd's own
    /// order (a hash's: on a VM `@1` came before `@0`): sorted by program, then copy
    /// number.
    fn parse_status(&self, output: &str) -> Vec<ProgramStatus> {
        let mut all: Vec<ProgramStatus> = output
            .split("\n\n")
            .filter_map(|block| {
                let get = |k: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                        .unwrap_or_default()
                };
                unit_status(
                    get("Id"),
                    get("ActiveState"),
                    get("SubState"),
                    get("MainPID"),
                )
            })
            .collect();
        all.sort_by_key(|s| {
            let n = s.copy.as_deref().and_then(|c| c.rsplit_once('@'));
            let n = n.and_then(|(_, i)| i.parse::<u32>().ok());
            (s.program.clone(), n)
        });
        all
    }
}

/// `sudo -n journalctl --no-pager -o short-iso -n N [-f] -u UNIT ...`.
fn journal(units: &[String], lines: u32, follow: bool) -> RemoteCmd {
    let mut line = format!("sudo -n journalctl --no-pager -o short-iso -n {lines}");
    if follow {
        line.push_str(" -f");
    }
    for u in units {
        line.push_str(&format!(" -u {}", quote(u)));
    }
    RemoteCmd::new(line)
}

/// One unit's status; None for what is not deploy's service.
fn unit_status(id: &str, active: &str, sub: &str, pid: &str) -> Option<ProgramStatus> {
    let name = id.strip_suffix(".service")?;
    if !name.starts_with(PREFIX) {
        return None;
    }
    let (program, copy) = match name.split_once('@') {
        Some((p, _)) => (p, Some(name.to_string())),
        None => (name, None),
    };
    let state = state(active, sub);
    let pid = pid
        .parse()
        .ok()
        .filter(|p| *p > 0 && state == ProgramState::Running);
    Some(ProgramStatus {
        program: program.to_string(),
        copy,
        state,
        pid,
    })
}

/// systemd's `ActiveState`/`SubState` in supervisord's vocabulary.
fn state(active: &str, sub: &str) -> ProgramState {
    match (active, sub) {
        ("active", "running") => ProgramState::Running,
        ("active", "exited") => ProgramState::Exited,
        ("activating", "auto-restart") => ProgramState::Backoff,
        ("activating", _) | ("reloading", _) => ProgramState::Starting,
        ("deactivating", _) => ProgramState::Stopping,
        ("inactive", _) => ProgramState::Stopped,
        ("failed", _) => ProgramState::Fatal,
        (a, s) => ProgramState::Unknown(format!("{a}/{s}")),
    }
}

#[cfg(test)]
#[path = "systemd_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "systemd_sudoers_tests.rs"]
mod sudoers_tests;
