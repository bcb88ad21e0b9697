//! What the fake server understands: each command line this crate builds (the health
//! check's loop, supervisord, nginx, releases, files, hooks, the live pointer), turned
//! into a change of its [`State`] and an answer (systemd's: `fake_systemd.rs`).

use super::{Rel, State};
use crate::error::BackendError;
use crate::transport::Output;

pub(super) fn out(status: u32, stdout: impl Into<String>) -> Result<Output, BackendError> {
    Ok(Output {
        status,
        stdout: stdout.into(),
        stderr: String::new(),
    })
}

/// The word after `marker` up to a space, quote, slash or semicolon.
pub(super) fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest.find([' ', '\'', '/', ';', '"']).unwrap_or(rest.len());
    Some(&rest[..end])
}

pub(super) fn version_of(release_dir: &str) -> String {
    after(release_dir, "/releases/")
        .unwrap_or_default()
        .to_string()
}

impl State {
    pub(super) fn interpret(&mut self, l: &str, stdin: String) -> Result<Output, BackendError> {
        if let Some(r) = self.systemd(l, &stdin) {
            return r;
        }
        let rel = after(l, "/releases/").map(str::to_string);
        if l.contains("while :; do") && l.contains("curl") {
            // The health check with its retries, on the server.
            let code = self.probe(after(l, "--unix-socket /srv/apps/hello/run/"));
            let retries = after(l, "-ge ").unwrap_or("1");
            if code == "200" {
                out(0, format!("{code} 1\n"))
            } else {
                out(1, format!("{code} {retries}\n"))
            }
        } else if l.contains("supervisor.getProcessInfo") {
            // Waiting for starting slots: the fake's programs start at once.
            out(0, "")
        } else if l.contains("getAllProcessInfo") {
            // Answered as the fallback (`supervisorctl status`) would.
            let lines: String = self
                .running
                .iter()
                .map(|(p, (pid, _))| {
                    let conf = self.files.get(&format!("/etc/supervisor/conf.d/{p}.conf"));
                    let copies = conf
                        .and_then(|c| c.lines().find_map(|l| l.strip_prefix("numprocs=")))
                        .and_then(|n| n.trim().parse::<u32>().ok());
                    match copies {
                        Some(n) => (0..n)
                            .map(|i| {
                                format!("{p}:{p}-{i} RUNNING pid {}, uptime 0:00:01\n", pid + i)
                            })
                            .collect(),
                        None => format!("{p} RUNNING pid {pid}, uptime 0:00:01\n"),
                    }
                })
                .collect();
            out(0, lines)
        } else if l.contains("while :; do s=$(supervisorctl status") {
            // Watching a process's copies: they run, unless their program file names a
            // release that crashes.
            let crashed = self.files.iter().find(|(path, text)| {
                path.strip_prefix("/etc/supervisor/conf.d/")
                    .and_then(|n| n.strip_suffix(".conf"))
                    .is_some_and(|p| l.contains(&format!("{p}:*")))
                    && self
                        .crashing
                        .iter()
                        .any(|v| text.contains(&format!("/releases/{v}/")))
            });
            match crashed {
                Some((path, _)) => Ok(Output {
                    status: 1,
                    stdout: String::new(),
                    stderr: format!("last lines of log:\nboom\nnot running: {path} BACKOFF\n"),
                }),
                None => out(0, ""),
            }
        } else if l.starts_with("for f in /etc/supervisor/conf.d/") {
            // The app's programs: its files with deploy's header.
            let app = after(l, "conf.d/").unwrap_or_default();
            let app = app.strip_suffix("-*.conf").unwrap_or(app);
            let names: String = self
                .files
                .iter()
                .filter_map(|(path, text)| {
                    let name = path.strip_prefix("/etc/supervisor/conf.d/")?;
                    let first = text.lines().next().unwrap_or_default();
                    (name.starts_with(&format!("{app}-"))
                        && first.contains(&format!("Managed by deploy for {app} (")))
                    .then(|| format!("{}\n", name.trim_end_matches(".conf")))
                })
                .collect();
            out(0, names)
        } else if l.contains("/^autostart=.*$/autostart=") {
            // A slot's boot flag, rewritten in its file (if it has one).
            self.set_autostart(l);
            out(0, "")
        } else if l.contains("supervisorctl remove ") {
            let p = after(l, "supervisorctl remove ")
                .unwrap_or_default()
                .to_string();
            self.running.remove(&p);
            self.files
                .remove(&format!("/etc/supervisor/conf.d/{p}.conf"));
            out(0, "")
        } else if l.contains("stat -c %U") {
            out(0, if self.layout { "yes\n" } else { "no\n" })
        } else if l.contains("useradd") {
            self.layout = true;
            out(0, "")
        } else if l.starts_with("ls -1A") && l.contains(".deploy-hooks") {
            let v = rel.unwrap_or_default();
            let done: String = self
                .hooks
                .iter()
                .filter(|(r, _)| *r == v)
                .map(|(_, h)| format!("{h}\n"))
                .collect();
            out(0, done)
        } else if l.starts_with("mkdir -p") && l.contains(".deploy-hooks") {
            let name = l.rsplit('/').next().unwrap_or_default().to_string();
            self.hooks.insert((rel.unwrap_or_default(), name));
            out(0, "")
        } else if l.contains("/proc/$p/environ") {
            // Which release each pid runs: the one its program file names.
            let pids = l.rsplit("' sh ").next().unwrap_or_default();
            debug_assert!(
                l.starts_with("sudo -n -u app-"),
                "read as the app user: {l}"
            );
            let rows: String = pids
                .split_whitespace()
                .map(|pid| {
                    let release = self
                        .running
                        .values()
                        .find(|(p, _)| p.to_string() == pid)
                        .map(|(_, dir)| version_of(dir))
                        .unwrap_or_default();
                    format!("{pid} {release}\n")
                })
                .collect();
            out(0, rows)
        } else if l.starts_with("sudo -n -u ") {
            // A command as the app user (a hook): it succeeds and says so; one that asks
            // prints the env file (as a careless hook might).
            let env = self.files.get("/srv/apps/hello/shared/env").cloned();
            match env.filter(|_| l.contains("print-env")) {
                Some(text) => out(0, text),
                None => out(0, "hook ran\n"),
            }
        } else if l.contains("supervisorctl update") && l.contains(":*") {
            let p = after(l, "supervisorctl update ").unwrap_or_default();
            self.running
                .insert(p.to_string(), (1000 + self.clock as u32, String::new()));
            out(0, format!("{p}: updated process group\n"))
        } else if l.contains("supervisorctl restart")
            || l.starts_with("rm -f ")
            || l.contains("static") && l.starts_with("sudo -n sh -c")
        {
            out(0, "")
        } else if l.contains("then echo complete;") {
            let v = rel.unwrap_or_default();
            let state = match self.releases.get(&v).map(|r| r.1) {
                Some(Rel::Complete) | Some(Rel::Failed) => "complete",
                Some(Rel::Partial) => "partial",
                None => "absent",
            };
            let platform = self.platform.as_deref().unwrap_or(super::FAKE_PLATFORM);
            match state {
                "complete" => out(0, format!("complete\n{}\n", self.marker(&v))),
                _ => out(0, format!("{state}\nplatform {platform}\n")),
            }
        } else if l.contains("comm -13") && l.contains("sha256sum") {
            self.pack_delta(l)
        } else if l.contains("cp -al") {
            self.unpack_delta(l, &stdin)
        } else if l.contains("--exclude=./.deploy-release .") {
            self.pack(&rel.unwrap_or_default())
        } else if l.contains("-xzpf -") {
            self.unpack(&rel.unwrap_or_default(), &stdin)
        } else if l.contains("uname -m") {
            out(0, "absent\n")
        } else if l.contains("-m venv") || l.contains(" venv --quiet") {
            let v = rel.unwrap_or_default();
            if self.releases.get(&v).is_some_and(|r| r.1 == Rel::Complete) {
                return out(0, "already-complete\n");
            }
            self.releases.insert(v, (self.clock, Rel::Partial));
            out(0, "")
        } else if l.contains("read -r PIP_INDEX_URL") || l.contains("read -r UV_DEFAULT_INDEX") {
            self.install(&rel.unwrap_or_default(), after(l, "--hash=sha256:"))
        } else if l.contains("head -n 1") && l.contains("for d in */") {
            let text: String = self
                .releases
                .iter()
                .filter(|(_, (_, s))| *s == Rel::Complete)
                .map(|(v, _)| match self.wheels.get(v) {
                    Some(sha) => format!("{v} hello-app {v} sha256={sha}\n"),
                    None => format!("{v} hello-app {v}\n"),
                })
                .collect();
            out(0, text)
        } else if l.starts_with("if [ -f ") && l.contains("echo present; cat") {
            let path = l[8..].split(' ').next().unwrap_or_default();
            match self.files.get(path) {
                Some(c) => out(0, format!("present\n{c}")),
                None => out(0, "absent\n"),
            }
        } else if l.contains("nginx -t") {
            self.files
                .insert("/etc/nginx/sites-enabled/hello.conf".into(), stdin);
            if l.contains("nginx -s reload") {
                self.reloads += 1;
            }
            out(0, "")
        } else if l.contains(".deploy-new") && l.contains("cat >") {
            let words: Vec<&str> = l.split_whitespace().collect();
            let path = words[words.len().saturating_sub(2)].to_string();
            self.files.insert(path, stdin);
            out(0, "")
        } else if l.starts_with("readlink") && l.contains("live.sock") {
            out(0, format!("{}\n\n", self.live.clone().unwrap_or_default()))
        } else if l.starts_with("readlink") {
            out(
                0,
                self.current
                    .as_ref()
                    .map(|v| format!("releases/{v}\n"))
                    .unwrap_or_default(),
            )
        } else if l.contains("live.sock.deploy-new") {
            self.set_live(l)
        } else if l.contains("supervisorctl update") && l.contains("startProcess") {
            self.start(after(l, "supervisorctl update ").unwrap_or_default())
        } else if l.contains("supervisorctl status") {
            let p = after(l, "supervisorctl status ").unwrap_or_default();
            match self.running.get(p) {
                Some((pid, _)) => out(0, format!("{p} RUNNING pid {pid}, uptime 0:00:01\n")),
                None => out(0, format!("{p} STOPPED\n")),
            }
        } else if l.contains("supervisorctl stop") {
            self.running
                .remove(after(l, "supervisorctl stop ").unwrap_or_default());
            out(0, "")
        } else if l.contains("nginx -s reload") {
            self.reloads += 1;
            out(0, "")
        } else if l.contains(".deploy-failed") && l.starts_with("touch") {
            if let Some(r) = rel.and_then(|v| self.releases.get_mut(&v)) {
                r.1 = Rel::Failed;
            }
            out(0, "")
        } else if l.contains("for d in */") {
            let mut rows: Vec<_> = self
                .releases
                .iter()
                .map(|(n, (t, s))| (*t, n.clone(), *s))
                .collect();
            rows.sort();
            let text: String = rows
                .iter()
                .map(|(t, n, s)| {
                    format!(
                        "{t} {n} {}\n",
                        match s {
                            Rel::Complete => "complete",
                            Rel::Partial => "partial",
                            Rel::Failed => "failed",
                        }
                    )
                })
                .collect();
            out(0, text)
        } else if l.contains("] || rm -rf -- ") {
            // A failed build's release, removed unless complete.
            let v = rel.unwrap_or_default();
            if self.releases.get(&v).is_some_and(|r| r.1 == Rel::Partial) {
                self.releases.remove(&v);
            }
            out(0, "")
        } else if let Some(dirs) = l.strip_prefix("rm -rf -- ") {
            for d in dirs.split_whitespace() {
                self.releases.remove(&version_of(&format!("{d}/")));
            }
            out(0, "")
        } else {
            Ok(Output {
                status: 127,
                stdout: String::new(),
                stderr: format!("fake: unknown command: {l}"),
            })
        }
    }

    /// A complete release's marker line.
    fn marker(&self, v: &str) -> String {
        let env = super::fake_env(v);
        match self.wheels.get(v) {
            Some(sha) => format!("hello-app {v} sha256={sha} env={env}"),
            None => format!("hello-app {v} env={env}"),
        }
    }

    /// A complete release "packed": a line the fake's unpack reads back; the marker
    /// on stderr, as the real command prints it.
    fn pack(&mut self, v: &str) -> Result<Output, BackendError> {
        if self.releases.get(v).is_none_or(|r| r.1 != Rel::Complete) {
            return Ok(Output {
                status: 2,
                stdout: String::new(),
                stderr: format!("head: cannot open '{v}/.deploy-release' for reading"),
            });
        }
        let pin = self.wheels.get(v).cloned().unwrap_or_default();
        Ok(Output {
            status: 0,
            stdout: format!("fake-archive {v} {pin}"),
            stderr: format!("{}\n", self.marker(v)),
        })
    }

    /// The two releases a delta command names (`releases/<v>`, in order).
    fn two_releases(l: &str) -> (String, String) {
        let mut vs = l.split("/releases/").skip(1).map(|r| {
            let end = r.find(['\'', '/', ' ', ';', '"']).unwrap_or(r.len());
            r[..end].to_string()
        });
        let first = vs.next().unwrap_or_default();
        let second = vs.find(|v| *v != first).unwrap_or_default();
        (first, second)
    }

    /// A release "packed" as changes over another (both must be complete).
    fn pack_delta(&mut self, l: &str) -> Result<Output, BackendError> {
        let (v, base) = Self::two_releases(l);
        let complete = |r: &str| self.releases.get(r).is_some_and(|x| x.1 == Rel::Complete);
        if !complete(&v) || !complete(&base) {
            return Ok(Output {
                status: 1,
                stdout: String::new(),
                stderr: "head: cannot open the marker".into(),
            });
        }
        let pin = self.wheels.get(&v).cloned().unwrap_or_default();
        Ok(Output {
            status: 0,
            stdout: format!("fake-delta {v} {pin}"),
            stderr: format!("{}\n{}\n", self.marker(&v), self.marker(&base)),
        })
    }

    /// Builds a release from a delta over a complete base of the hash it names (exit
    /// 42 without one, changing nothing).
    fn unpack_delta(&mut self, l: &str, delta: &str) -> Result<Output, BackendError> {
        let (v, base) = Self::two_releases(l);
        if self.releases.get(&v).is_some_and(|r| r.1 == Rel::Complete) {
            return out(0, "already-complete\n");
        }
        let has_base = self
            .releases
            .get(&base)
            .is_some_and(|r| r.1 == Rel::Complete)
            && l.contains(&format!(" env={}", super::fake_env(&base)));
        if !has_base {
            return Ok(Output {
                status: crate::commands::env_ship::NO_BASE,
                stdout: String::new(),
                stderr: String::new(),
            });
        }
        match delta.split_whitespace().nth(2) {
            Some(pin) => self.wheels.insert(v.clone(), pin.to_string()),
            None => self.wheels.remove(&v),
        };
        self.releases.insert(v.clone(), (self.clock, Rel::Complete));
        self.linked.insert(v.clone());
        out(0, format!("deploy-env {}\n", super::fake_env(&v)))
    }

    /// Unpacks what [`Self::pack`] made, unless the release is complete already.
    fn unpack(&mut self, v: &str, archive: &str) -> Result<Output, BackendError> {
        if self.releases.get(v).is_some_and(|r| r.1 == Rel::Complete) {
            return out(0, "already-complete\n");
        }
        let mut words = archive.split_whitespace().skip(1);
        if words.next() != Some(v) {
            return Ok(Output {
                status: 2,
                stdout: String::new(),
                stderr: "gzip: stdin: not in gzip format".into(),
            });
        }
        match words.next() {
            Some(pin) => self.wheels.insert(v.to_string(), pin.to_string()),
            None => self.wheels.remove(v),
        };
        self.releases
            .insert(v.to_string(), (self.clock, Rel::Complete));
        self.unpacked.insert(v.to_string());
        out(0, format!("deploy-env {}\n", super::fake_env(v)))
    }

    /// An install (pinned to `pin` or not): a pin the index's file does not match is
    /// refused as the installer's hash check refuses it, and no marker is written.
    fn install(&mut self, v: &str, pin: Option<&str>) -> Result<Output, BackendError> {
        if self.disk_full {
            return Ok(Output {
                status: 2,
                stdout: String::new(),
                stderr: format!(
                    "Resolved 2 packages in 3ms\n\
                     error: Failed to install: gunicorn-27.0.1-py3-none-any.whl (gunicorn==27.0.1)\n  \
                     Caused by: failed to write to file `/srv/apps/hello/releases/{v}/lib/python3.11/site-packages/gunicorn/arbiter.py`: \
                     No space left on device (os error 28)\ndeploy-space: /srv has 0 KiB free\n"
                ),
            });
        }
        if let (Some(pin), Some(served)) = (pin, self.index_serves.get(v))
            && pin != served
        {
            return Ok(Output {
                status: 1,
                stdout: String::new(),
                stderr: format!(
                    "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.\n\
                     install: the index did not serve hello-app {v} with the SHA-256 the gateway recorded ({pin}): refused"
                ),
            });
        }
        self.releases
            .insert(v.to_string(), (self.clock, Rel::Complete));
        match pin {
            Some(pin) => self.wheels.insert(v.to_string(), pin.to_string()),
            None => self.wheels.remove(v),
        };
        out(0, format!("deploy-env {}\n", super::fake_env(v)))
    }

    /// `f=<file>; [ ! -f "$f" ] || sed -i 's/^autostart=.*$/autostart=<on>/' "$f"`.
    fn set_autostart(&mut self, l: &str) {
        let path = l
            .split_once("f=")
            .and_then(|(_, r)| r.split_once(';'))
            .map(|(p, _)| p.trim_matches('\''))
            .unwrap_or_default();
        let on = l.contains("/autostart=true/");
        if let Some(text) = self.files.get_mut(path) {
            *text = text
                .split_inclusive('\n')
                .map(|x| match x.starts_with("autostart=") {
                    true => format!("autostart={on}{}", &x[x.trim_end().len()..]),
                    false => x.to_string(),
                })
                .collect();
        }
    }

    fn set_live(&mut self, l: &str) -> Result<Output, BackendError> {
        let target = after(l, "ln -sfn ").unwrap_or_default().to_string();
        let v = after(l, "releases/").unwrap_or_default().to_string();
        if self.releases.get(&v).is_none_or(|r| r.1 == Rel::Partial) {
            return Ok(Output {
                status: 1,
                stdout: String::new(),
                stderr: format!("release {v} is not complete"),
            });
        }
        self.live = Some(target);
        self.current = Some(v);
        out(0, "")
    }

    /// A slot's program started on the release its file names (supervisord's or
    /// systemd's).
    pub(super) fn start(&mut self, program: &str) -> Result<Output, BackendError> {
        let conf = self
            .files
            .get(&format!("/etc/supervisor/conf.d/{program}.conf"))
            .or_else(|| {
                self.files
                    .get(&format!("/etc/systemd/system/{program}.service"))
            })
            .cloned()
            .unwrap_or_default();
        let Some(i) = conf.find("/releases/") else {
            return Ok(Output {
                status: 1,
                stdout: String::new(),
                stderr: format!("{program}: ERROR (no such process)"),
            });
        };
        let dir = conf[i..]
            .split("/bin/")
            .next()
            .unwrap_or_default()
            .to_string();
        let pid = 1000 + self.clock as u32;
        self.running.insert(program.to_string(), (pid, dir));
        out(0, format!("{program}: started\n"))
    }

    /// A probe of a slot's socket (`Some(<slot>@<v>.sock>)`), of the live pointer
    /// (`Some(live.sock)`) or through nginx (None): nginx connects through the live
    /// pointer.
    fn probe(&self, socket: Option<&str>) -> String {
        let target = match socket {
            Some("live.sock") | None => self.live.clone(),
            Some(s) => Some(s.to_string()),
        };
        let Some((slot, _)) = target
            .as_deref()
            .and_then(crate::commands::parse_slot_socket)
        else {
            return "502".into();
        };
        match self.slot_running(&slot) {
            Some((_, dir)) if self.broken.contains(&version_of(dir)) => "500".into(),
            Some(_) => "200".into(),
            None => "502".into(),
        }
    }
}
