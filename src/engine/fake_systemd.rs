//! What the fake server understands of systemd's commands (`procman/systemd.rs`): unit
//! files written with `tee`, slots restarted and stopped, boot links, a process's
//! instances applied, watched and removed, `systemctl show` and the journal.

use super::State;
use super::shell::out;
use crate::error::BackendError;
use crate::procman::systemd::UNIT_DIR;
use crate::transport::Output;

/// The unit named after `marker` up to `.service` (`deploy-hello-blue`, or
/// `deploy-hello-worker@0`).
fn unit_after<'a>(l: &'a str, marker: &str) -> &'a str {
    let rest = l.split_once(marker).map_or("", |(_, r)| r);
    rest.split(".service").next().unwrap_or_default()
}

/// A program's name from one of its units (`deploy-hello-worker@0` -> `deploy-hello-worker`).
fn program_of(unit: &str) -> &str {
    unit.split('@').next().unwrap_or(unit)
}

impl State {
    /// systemd's commands; None: not one of them.
    pub(super) fn systemd(&mut self, l: &str, stdin: &str) -> Option<Result<Output, BackendError>> {
        if let Some(path) = l
            .strip_prefix("sudo -n tee ")
            .and_then(|r| r.strip_suffix(" >/dev/null"))
        {
            self.files.insert(path.to_string(), stdin.to_string());
            return Some(out(0, ""));
        }
        let r = if l.starts_with("sudo -n systemctl daemon-reload && sudo -n systemctl restart ") {
            // A slot: restarted, then its settle check.
            let program = unit_after(l, "systemctl restart ").to_string();
            self.start_unit(&program)
        } else if l.starts_with("sudo -n systemctl stop ") && l.ends_with("|| true") {
            self.running.remove(unit_after(l, "systemctl stop "));
            out(0, "")
        } else if l.starts_with("case \"$(systemctl is-enabled ") {
            let unit = format!("{}.service", unit_after(l, "is-enabled "));
            if self.files.contains_key(&format!("{UNIT_DIR}/{unit}")) {
                if l.contains(" in disabled)") {
                    self.enabled.insert(unit);
                } else {
                    self.enabled.remove(&unit);
                }
            }
            out(0, "")
        } else if l.starts_with("sudo -n systemctl daemon-reload && {") {
            self.apply_units(l)
        } else if l.starts_with("sudo -n systemctl restart ") {
            out(0, "")
        } else if l.starts_with("sh -c ") && l.contains("ActiveEnterTimestampMonotonic") {
            // settled: the fake's units start at once, nothing to wait for.
            out(0, "")
        } else if l.starts_with("sh -c ") && l.contains("NRestarts") {
            self.settle_units(l)
        } else if l.starts_with(&format!("for f in {UNIT_DIR}/deploy-")) {
            let app = unit_after(l, "/deploy-");
            let app = app.strip_suffix("-*").unwrap_or(app);
            let header = format!("Managed by deploy for {app} (");
            let names: String = self
                .files
                .iter()
                .filter_map(|(path, text)| {
                    let name = path.strip_prefix(&format!("{UNIT_DIR}/deploy-{app}-"))?;
                    let first = text.lines().next().unwrap_or_default();
                    first.contains(&header).then(|| {
                        let unit = name.trim_end_matches(".service").trim_end_matches('@');
                        format!("deploy-{app}-{unit}\n")
                    })
                })
                .collect();
            out(0, names)
        } else if l.starts_with("for u in $({ systemctl show -p Id --value") {
            // remove: every copy stopped and unlinked, the files gone.
            let program = unit_after(l, "--value -- '").trim_end_matches("@*");
            self.running.remove(program);
            self.enabled.retain(|u| program_of(u) != program);
            for f in [".service", "@.service"] {
                self.files.remove(&format!("{UNIT_DIR}/{program}{f}"));
            }
            out(0, "")
        } else if l.starts_with("systemctl show -p Id -p ActiveState") {
            out(0, self.show_all())
        } else if l.starts_with("sudo -n journalctl ") {
            let units: Vec<&str> = l
                .split(" -u ")
                .skip(1)
                .map(|u| u.trim_end_matches(".service"))
                .collect();
            let lines: String = units
                .iter()
                .map(|u| {
                    let ident = u.replace('@', "-");
                    format!("2026-01-02T03:04:05+0000 fake {ident}[1000]: hello from {u}\n")
                })
                .collect();
            out(0, lines)
        } else {
            return None;
        };
        Some(r)
    }

    fn start_unit(&mut self, program: &str) -> Result<Output, BackendError> {
        let r = self.start(program)?;
        if r.status != 0 {
            return Ok(r);
        }
        out(0, "")
    }

    /// `daemon-reload; {drop extra copies}; enable @0..; restart|start @0..`.
    fn apply_units(&mut self, l: &str) -> Result<Output, BackendError> {
        let enable = l
            .split_once("enable --no-reload --quiet ")
            .map_or("", |(_, r)| r.split(" && ").next().unwrap_or_default());
        let units: Vec<String> = enable.split_whitespace().map(str::to_string).collect();
        let Some(program) = units.first().map(|u| program_of(u).to_string()) else {
            return out(1, "");
        };
        self.enabled.retain(|u| program_of(u) != program);
        self.enabled.extend(units.iter().cloned());
        self.copies.insert(program.clone(), units.len() as u32);
        self.running
            .insert(program, (1000 + self.clock as u32, String::new()));
        out(0, "")
    }

    /// The settle check of a process's copies: they run, unless their unit file names a
    /// release that crashes.
    fn settle_units(&mut self, l: &str) -> Result<Output, BackendError> {
        let program = program_of(unit_after(l, " deploy-")).to_string();
        let program = format!("deploy-{program}");
        let file = self
            .files
            .get(&format!("{UNIT_DIR}/{program}@.service"))
            .or_else(|| self.files.get(&format!("{UNIT_DIR}/{program}.service")));
        let crashed = file.is_some_and(|text| {
            self.crashing
                .iter()
                .any(|v| text.contains(&format!("/releases/{v}/")))
        });
        if crashed {
            return Ok(Output {
                status: 1,
                stdout: String::new(),
                stderr: format!(
                    "last lines of {program}@0.service:\nboom\nnot running: {program}@0.service activating/auto-restart (exited and restarted)\n"
                ),
            });
        }
        out(0, "")
    }

    /// `systemctl show` of every loaded unit of deploy's: the running ones.
    fn show_all(&self) -> String {
        let block = |id: &str, pid: u32| {
            format!("Id={id}.service\nActiveState=active\nSubState=running\nMainPID={pid}\n\n")
        };
        self.running
            .iter()
            .filter(|(p, _)| p.starts_with("deploy-"))
            .map(|(p, (pid, _))| match self.copies.get(p) {
                Some(n) => (0..*n)
                    .map(|i| block(&format!("{p}@{i}"), pid + i))
                    .collect(),
                None => block(p, *pid),
            })
            .collect()
    }
}
