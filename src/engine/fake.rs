//! A scripted fake of a server, for tests that need no Docker: it understands the
//! commands this crate builds (layout, releases, files, supervisord, nginx, curl probes)
//! and keeps the state they change, so the engine's batches, canary, halt, rollback,
//! cancel and prune run against it in milliseconds.  It models only what the commands
//! say; it is no substitute for the container tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::transport::{Connector, OnLine, Output, Transport};
use crate::commands::{RemoteCmd, batch};
use crate::inventory::Host;
use crate::ssh::Acceptor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rel {
    Partial,
    Complete,
    Failed,
}

/// What a fake server has.  Slots index `blue`, `green`; `base_port` is the app's port.
#[derive(Debug, Default)]
pub struct State {
    pub layout: bool,
    /// name -> (creation order, state)
    pub releases: BTreeMap<String, (u64, Rel)>,
    pub files: BTreeMap<String, String>,
    /// The live pointer's target (`green@1.1.0.sock`).
    pub live: Option<String>,
    pub current: Option<String>,
    /// program -> (pid, release dir it runs)
    pub running: BTreeMap<String, (u32, String)>,
    /// Versions whose health check answers 500.
    pub broken: BTreeSet<String>,
    /// The host cannot be reached.
    pub down: bool,
    /// Commands containing this fail with exit 1.
    pub fail_when: Option<String>,
    /// After a command containing this has run, the host stops answering (its network
    /// is cut): later commands fail and connecting is refused.
    pub die_after: Option<String>,
    pub reloads: u32,
    /// (release, hook) markers.
    pub hooks: BTreeSet<(String, String)>,
    pub log: Vec<String>,
    clock: u64,
}

/// One fake server.
#[derive(Debug, Default)]
pub struct Server(pub Mutex<State>);

impl Server {
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
    /// The version nginx sends traffic to, if any.
    pub fn serving(&self) -> Option<String> {
        let s = self.state();
        let (slot, _) = crate::commands::parse_slot_socket(s.live.as_deref()?)?;
        s.running
            .get(&format!("hello-{slot}"))
            .map(|(_, dir)| version_of(dir))
    }
    /// How many slots run.
    pub fn running(&self) -> usize {
        self.state().running.len()
    }
}

/// A set of fake servers by host name; connects to them as a [`Connector`].
#[derive(Default)]
pub struct Fleet {
    pub servers: Mutex<HashMap<String, Arc<Server>>>,
    /// Host names in the order they were connected to.
    pub connects: Mutex<Vec<String>>,
}

impl Fleet {
    pub fn server(&self, host: &str) -> Arc<Server> {
        self.servers
            .lock()
            .unwrap()
            .entry(host.to_string())
            .or_default()
            .clone()
    }
}

impl Connector for Fleet {
    fn connect<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, Result<Box<dyn Transport>, String>> {
        Box::pin(async move {
            let server = self.server(&host.name);
            self.connects.lock().unwrap().push(host.name.clone());
            if server.state().down {
                return Err(format!(
                    "cannot connect to {}:{}: connection refused",
                    host.address, host.port
                ));
            }
            Ok(Box::new(Conn {
                server,
                channels: Default::default(),
            }) as Box<dyn Transport>)
        })
    }
}

struct Conn {
    server: Arc<Server>,
    channels: Mutex<u64>,
}

impl Transport for Conn {
    fn exec<'a>(
        &'a self,
        cmd: &'a RemoteCmd,
        _t: Duration,
        on_line: OnLine<'a>,
    ) -> BoxFuture<'a, Result<Output, String>> {
        *self.channels.lock().unwrap() += 1;
        let (out, arrived) = self.server.state().run(cmd);
        let printed = match &out {
            Ok(o) => o.stdout.as_str(),
            Err(_) => arrived.as_str(),
        };
        for line in printed.lines() {
            on_line(deploy_wire::Stream::Stdout, line);
        }
        Box::pin(async move {
            tokio::task::yield_now().await;
            out
        })
    }
    fn remote_forward(&self, _a: Acceptor) -> BoxFuture<'_, Result<u16, String>> {
        Box::pin(async { Err("the fake has no forwards".to_string()) })
    }
    fn cancel_remote_forward(&self, _port: u16) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn fingerprint(&self) -> String {
        "SHA256:fake".into()
    }
    fn channels_opened(&self) -> u64 {
        *self.channels.lock().unwrap()
    }
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

fn out(status: u32, stdout: impl Into<String>) -> Result<Output, String> {
    Ok(Output {
        status,
        stdout: stdout.into(),
        stderr: String::new(),
    })
}

/// The word after `marker` up to a space, quote, slash or semicolon.
fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest.find([' ', '\'', '/', ';', '"']).unwrap_or(rest.len());
    Some(&rest[..end])
}

fn version_of(release_dir: &str) -> String {
    after(release_dir, "/releases/")
        .unwrap_or_default()
        .to_string()
}

impl State {
    /// Runs a command (a batch: its parts); on a lost connection, also what it had
    /// printed before (a batch's finished parts).
    fn run(&mut self, cmd: &RemoteCmd) -> (Result<Output, String>, String) {
        if cmd.line == "sh -s"
            && let Some((nonce, stop, parts)) = cmd.stdin.as_deref().and_then(batch::parse_script)
        {
            return self.exec_batch(&nonce, stop, &parts);
        }
        (self.exec(cmd), String::new())
    }

    fn exec(&mut self, cmd: &RemoteCmd) -> Result<Output, String> {
        let l = cmd.line.as_str();
        self.log.push(l.to_string());
        if self.down {
            return Err("the connection was lost".into());
        }
        if self.fail_when.as_deref().is_some_and(|f| l.contains(f)) {
            return Ok(Output {
                status: 1,
                stdout: String::new(),
                stderr: "injected failure".into(),
            });
        }
        let stdin = cmd
            .stdin
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).to_string())
            .unwrap_or_default();
        self.clock += 1;
        let result = self.interpret(l, stdin);
        if self.die_after.as_deref().is_some_and(|d| l.contains(d)) {
            self.down = true;
        }
        result
    }

    /// A batch: its parts one by one, answered in the shell's frames; a lost connection
    /// loses the whole answer (what ran before it stays done).
    fn exec_batch(
        &mut self,
        nonce: &str,
        stop: bool,
        parts: &[RemoteCmd],
    ) -> (Result<Output, String>, String) {
        let (mut stdout, mut stderr) = (String::new(), String::new());
        for (i, p) in parts.iter().enumerate() {
            let o = match self.exec(p) {
                Ok(o) => o,
                Err(e) => return (Err(e), stdout),
            };
            let part = batch::PartOutput {
                status: o.status,
                stdout: o.stdout,
                stderr: o.stderr,
            };
            let (so, se) = batch::frame(nonce, i, &part);
            stdout.push_str(&so);
            stderr.push_str(&se);
            if stop && part.status != 0 {
                break;
            }
        }
        (
            out(0, stdout).map(|o| Output { stderr, ..o }),
            String::new(),
        )
    }

    fn interpret(&mut self, l: &str, stdin: String) -> Result<Output, String> {
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
        } else if l.contains("supervisorctl restart") {
            out(0, "")
        } else if l.contains("supervisorctl status '") {
            let p = after(l, "supervisorctl status '").unwrap_or_default();
            let p = p.trim_end_matches(":*");
            let conf = self.files.get(&format!("/etc/supervisor/conf.d/{p}.conf"));
            let copies: u32 = conf
                .and_then(|c| c.lines().find_map(|l| l.strip_prefix("numprocs=")))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(1);
            match self.running.get(p) {
                Some((pid, _)) => out(
                    0,
                    (0..copies)
                        .map(|i| format!("{p}:{p}-{i} RUNNING pid {}, uptime 0:00:01\n", pid + i))
                        .collect::<String>(),
                ),
                None => out(0, String::new()),
            }
        } else if l.starts_with("rm -f ") || l.contains("static") && l.starts_with("sudo -n sh -c")
        {
            out(0, "")
        } else if l.contains("then echo complete; elif") {
            let state = match rel.and_then(|v| self.releases.get(&v).map(|r| r.1)) {
                Some(Rel::Complete) | Some(Rel::Failed) => "complete",
                Some(Rel::Partial) => "partial",
                None => "absent",
            };
            out(0, format!("{state}\n"))
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
            let v = rel.unwrap_or_default();
            self.releases.insert(v, (self.clock, Rel::Complete));
            out(0, "")
        } else if l.starts_with("if [ -f ") && l.contains("echo present; cat") {
            let path = l[8..].split(' ').next().unwrap_or_default();
            match self.files.get(path) {
                Some(c) => out(0, format!("present\n{c}")),
                None => out(0, "absent\n"),
            }
        } else if l.contains("nginx -t") {
            self.files
                .insert("/etc/nginx/sites-enabled/hello.conf".into(), stdin);
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

    fn set_live(&mut self, l: &str) -> Result<Output, String> {
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

    fn start(&mut self, program: &str) -> Result<Output, String> {
        let conf = self
            .files
            .get(&format!("/etc/supervisor/conf.d/{program}.conf"))
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

    /// A probe of a slot's socket (`Some(<slot>@<v>.sock>)`) or through nginx (None):
    /// nginx connects through the live pointer.
    fn probe(&self, socket: Option<&str>) -> String {
        let target = match socket {
            Some(s) => Some(s.to_string()),
            None => self.live.clone(),
        };
        let Some((slot, _)) = target
            .as_deref()
            .and_then(crate::commands::parse_slot_socket)
        else {
            return "502".into();
        };
        match self.running.get(&format!("hello-{slot}")) {
            Some((_, dir)) if self.broken.contains(&version_of(dir)) => "500".into(),
            Some(_) => "200".into(),
            None => "502".into(),
        }
    }
}
