//! Fast tests of the day-two work ([`super::oneoff`], [`super::app_logs`]) against a
//! scripted host that answers the live pointer, a command as the app user and `tail`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deploy_wire::{Event, EventKind, HostStatus, JobStatus, Stream};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::app_logs::{self, Demux, LogEvent, Source, TailSpec};
use super::oneoff::{self, OneOff};
use super::transport::{Connector, OnLine, Output, Transport};
use super::{CancelFlag, Collect};
use crate::commands::RemoteCmd;
use crate::error::BackendError;
use crate::inventory::Host;
use crate::procman::Supervisord;
use crate::testbed::bed_with;

const SECRET: &str = "sekrit-api-key-42";

/// What one scripted host has and says.
#[derive(Default)]
struct Script {
    /// The live pointer's target (`blue@1.0.0.sock`).
    live: Option<String>,
    down: bool,
    /// Lines a command as the app user or `tail` prints, then its exit status.
    lines: Vec<(Stream, String)>,
    exit: u32,
    /// The command never ends (a followed log, a long command).
    hang: bool,
    ran: Vec<String>,
    closed: bool,
}

#[derive(Default)]
struct Hosts(Mutex<HashMap<String, Arc<Mutex<Script>>>>);

impl Hosts {
    fn get(&self, name: &str) -> Arc<Mutex<Script>> {
        self.0
            .lock()
            .unwrap()
            .entry(name.into())
            .or_default()
            .clone()
    }
}

impl Connector for Hosts {
    fn connect<'a>(
        &'a self,
        host: &'a Host,
    ) -> BoxFuture<'a, Result<Box<dyn Transport>, BackendError>> {
        let s = self.get(&host.name);
        Box::pin(async move {
            if s.lock().unwrap().down {
                return Err(BackendError::retryable(format!(
                    "cannot connect to {}: connection refused",
                    host.address
                )));
            }
            Ok(Box::new(Conn(s)) as Box<dyn Transport>)
        })
    }
}

struct Conn(Arc<Mutex<Script>>);

impl Transport for Conn {
    fn exec<'a>(
        &'a self,
        cmd: &'a RemoteCmd,
        _t: Duration,
        on_line: OnLine<'a>,
    ) -> BoxFuture<'a, Result<Output, BackendError>> {
        Box::pin(async move {
            let l = cmd.line.clone();
            let (reply, lines, hang, exit) = {
                let mut s = self.0.lock().unwrap();
                s.ran.push(l.clone());
                let live = s.live.clone().unwrap_or_default();
                match () {
                    _ if l.starts_with("readlink") && l.contains("live.sock") => {
                        (format!("{live}\n\n"), vec![], false, 0)
                    }
                    _ if l.starts_with("readlink") => (String::new(), vec![], false, 0),
                    _ => (String::new(), s.lines.clone(), s.hang, s.exit),
                }
            };
            for (stream, line) in &lines {
                on_line(*stream, line);
            }
            if hang {
                futures_util::future::pending::<()>().await;
            }
            Ok(Output {
                status: exit,
                stdout: reply,
                stderr: String::new(),
            })
        })
    }
    fn download<'a>(
        &'a self,
        _: &'a RemoteCmd,
        _: Duration,
        _: usize,
    ) -> BoxFuture<'a, Result<crate::ssh::Download, BackendError>> {
        Box::pin(async { Err(BackendError::permanent("no downloads here")) })
    }
    fn remote_forward(&self, _a: crate::ssh::Acceptor) -> BoxFuture<'_, Result<u16, BackendError>> {
        Box::pin(async { Err(BackendError::permanent("no forwards")) })
    }
    fn cancel_remote_forward(&self, _p: u16) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn fingerprint(&self) -> String {
        "SHA256:scripted".into()
    }
    fn channels_opened(&self) -> u64 {
        0
    }
    fn is_closed(&self) -> bool {
        false
    }
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        self.0.lock().unwrap().closed = true;
        Box::pin(async {})
    }
}

fn out(lines: &[&str]) -> Vec<(Stream, String)> {
    lines
        .iter()
        .map(|l| (Stream::Stdout, l.to_string()))
        .collect()
}

/// A one-off on web1 of the test bed (its app has an env value to scrub).
async fn run_on(hosts: &Hosts, argv: &[&str], cancel: CancelFlag) -> (oneoff::Ran, Vec<Event>) {
    let b = bed_with("{}", &format!("    env:\n      API_KEY: {SECRET}\n"));
    let app = b.inv.app("hello").unwrap().clone();
    let (env, h) = b.inv.hosts_for(&app, "production").unwrap();
    let o = OneOff {
        env: env.clone(),
        host: h[0].clone(),
        command: crate::shell::join(argv),
        recorded: "1.0.0".into(),
        app,
    };
    let sink = Arc::new(Collect::default());
    let ran = oneoff::run_with(o, &b.cfg, hosts, sink.clone(), cancel).await;
    let events = sink.0.lock().unwrap().clone();
    (ran, events)
}

#[tokio::test]
async fn a_one_off_runs_as_the_app_user_streams_scrubbed_lines_and_says_its_exit_code() {
    let hosts = Hosts::default();
    {
        let s = hosts.get("web1");
        let mut s = s.lock().unwrap();
        s.live = Some("green@1.0.0.sock".into());
        s.lines = out(&["out", &format!("key={SECRET}")]);
        s.exit = 3;
    }
    let argv = ["sh", "-c", "echo out; exit 3"];
    let (ran, events) = run_on(&hosts, &argv, CancelFlag::default()).await;
    assert_eq!(ran.exit_code, Some(3));
    assert_eq!(ran.result.status, JobStatus::Failed);
    let ran_cmds = hosts.get("web1").lock().unwrap().ran.clone();
    let c = ran_cmds
        .iter()
        .find(|l| l.starts_with("sudo -n -u"))
        .unwrap();
    assert!(c.starts_with("sudo -n -u app-hello -- /bin/sh -c "), "{c}");
    assert!(c.contains("/srv/apps/hello/releases/1.0.0/bin:"), "{c}");
    let lines: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Output { line, .. } => Some(line.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(lines, ["out", "key=***"]);
    let kinds: Vec<&str> = events.iter().map(kind).collect();
    let n = kinds.len();
    assert_eq!(
        kinds[n - 3..],
        ["command_exited", "host_finished", "job_finished"]
    );
    assert!(matches!(
        events[n - 3].kind,
        EventKind::CommandExited { exit_code: 3, .. }
    ));
    assert!(
        hosts.get("web1").lock().unwrap().closed,
        "connection closed"
    );
}

#[tokio::test]
async fn a_one_off_refuses_a_host_where_nothing_is_live_and_names_an_unreachable_one() {
    let hosts = Hosts::default();
    let (ran, _) = run_on(&hosts, &["id", "-un"], CancelFlag::default()).await;
    assert_eq!(ran.exit_code, None);
    let err = ran.result.hosts[0].error.clone().unwrap();
    assert!(err.starts_with("nothing is live on web1"), "{err}");
    let ran_cmds = hosts.get("web1").lock().unwrap().ran.clone();
    assert!(
        !ran_cmds.iter().any(|l| l.starts_with("sudo")),
        "{ran_cmds:?}"
    );
    hosts.get("web1").lock().unwrap().down = true;
    let (ran, _) = run_on(&hosts, &["id"], CancelFlag::default()).await;
    assert_eq!(ran.result.hosts[0].status, HostStatus::Unreachable);
}

#[tokio::test]
async fn a_cancelled_one_off_closes_its_connection() {
    let hosts = Hosts::default();
    {
        let s = hosts.get("web1");
        let mut s = s.lock().unwrap();
        s.live = Some("blue@1.0.0.sock".into());
        s.hang = true;
    }
    let cancel = CancelFlag::default();
    let flag = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let run = run_on(&hosts, &["sleep", "1000"], cancel);
    let (ran, _) = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("cancel ends the command");
    assert_eq!(ran.result.status, JobStatus::Cancelled);
    assert!(hosts.get("web1").lock().unwrap().closed);
}

fn kind(e: &Event) -> &'static str {
    match &e.kind {
        EventKind::CommandExited { .. } => "command_exited",
        EventKind::HostFinished { .. } => "host_finished",
        EventKind::JobFinished { .. } => "job_finished",
        _ => "other",
    }
}

// ---- app-logs -----------------------------------------------------------------------

#[test]
fn tail_commands_quote_every_file_name() {
    let files = vec![
        "/var/log/supervisor/hello-blue.log".to_string(),
        "/var/log/it's $(id).log".to_string(),
    ];
    let c = app_logs::tail_lines(&files, 50);
    assert_eq!(
        c.line,
        "sudo -n tail -n 50 -- /var/log/supervisor/hello-blue.log '/var/log/it'\\''s $(id).log'"
    );
    let f = app_logs::tail_follow(&files, 7);
    assert!(f.line.starts_with("sudo -n tail -n 7 -F -- "), "{}", f.line);
    for c in [&c, &f] {
        // A real shell gives every file name back whole, and runs nothing in it.
        let echo = c.line.replacen("sudo -n tail", "printf '%s|'", 1);
        let out = std::process::Command::new("sh")
            .args(["-c", &echo])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.ends_with("|--|/var/log/supervisor/hello-blue.log|/var/log/it's $(id).log|"),
            "{text}"
        );
    }
}

#[test]
fn lines_of_several_copies_are_told_apart_by_tails_headers() {
    let files: Vec<String> = (0..2).map(|i| format!("/l/w-{i}.log")).collect();
    let mut d = Demux::new(&files);
    let mut got = Vec::new();
    for l in [
        "==> /l/w-0.log <==",
        "a",
        "",
        "b",
        "",
        "==> /l/w-1.log <==",
        "c",
        "==> /l/other <==",
    ] {
        got.extend(d.feed(l));
    }
    let want = [
        (Some(0), "a"),
        (Some(0), ""),
        (Some(0), "b"),
        (Some(1), "c"),
        (Some(1), "==> /l/other <=="),
    ];
    let want: Vec<(Option<u32>, String)> = want.iter().map(|(c, l)| (*c, l.to_string())).collect();
    assert_eq!(got, want);
    assert_eq!(
        Demux::new(&files[..1]).feed(""),
        vec![(None, String::new())]
    );
}

fn spec(follow: bool) -> TailSpec {
    TailSpec {
        app: "hello".into(),
        source: Source::Web,
        lines: 20,
        follow,
    }
}

#[tokio::test]
async fn logs_come_from_each_live_slot_and_a_dead_host_is_a_line_not_a_failure() {
    let b = bed_with("{}", "");
    let app = b.inv.app("hello").unwrap();
    let (_, hosts) = b.inv.hosts_for(app, "production").unwrap();
    let hosts: Vec<Host> = hosts.into_iter().cloned().collect();
    let fleet = Hosts::default();
    {
        let s = fleet.get("web1");
        let mut s = s.lock().unwrap();
        s.live = Some("green@1.0.0.sock".into());
        s.lines = out(&["GET / 200"]);
        s.lines.push((Stream::Stderr, "tail: a warning".into()));
    }
    fleet.get("web2").lock().unwrap().down = true;
    let (tx, mut rx) = mpsc::channel(64);
    app_logs::tail_with(&b.cfg, &fleet, &hosts, &Supervisord, &spec(false), &tx).await;
    drop(tx);
    let mut got = Vec::new();
    while let Some(e) = rx.recv().await {
        got.push(e);
    }
    let line = |host: &str, l: &str, notice: bool| LogEvent {
        host: host.into(),
        copy: None,
        line: l.into(),
        notice,
    };
    assert!(got.contains(&line("web1", "GET / 200", false)), "{got:?}");
    assert!(
        got.contains(&line("web1", "tail: a warning", true)),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|e| e.host == "web2" && e.notice && e.line.starts_with("unreachable: ")),
        "{got:?}"
    );
    assert!(
        got.contains(&line("web3", "nothing is live on web3", true)),
        "{got:?}"
    );
    let ran = fleet.get("web1").lock().unwrap().ran.clone();
    assert!(
        ran.contains(&"sudo -n tail -n 20 -- /srv/apps/hello/logs/hello-green.log".to_string()),
        "{ran:?}"
    );
}

#[tokio::test]
async fn a_followed_log_closes_its_connections_when_the_client_goes_away() {
    let b = bed_with("{}", "");
    let app = b.inv.app("hello").unwrap();
    let (_, hosts) = b.inv.hosts_for(app, "production").unwrap();
    let hosts: Vec<Host> = hosts.into_iter().take(2).cloned().collect();
    let fleet = Hosts::default();
    for h in ["web1", "web2"] {
        let s = fleet.get(h);
        let mut s = s.lock().unwrap();
        s.live = Some("blue@1.0.0.sock".into());
        s.lines = out(&["first"]);
        s.hang = true;
    }
    let (tx, mut rx) = mpsc::channel(64);
    let client = async move {
        let first = rx.recv().await;
        drop(rx); // the client goes away
        first
    };
    let follow = spec(true);
    let tails = app_logs::tail_with(&b.cfg, &fleet, &hosts, &Supervisord, &follow, &tx);
    let (first, ended) = tokio::join!(client, tokio::time::timeout(Duration::from_secs(5), tails));
    assert_eq!(first.unwrap().line, "first");
    assert!(ended.is_ok(), "every tail ended with its client");
    for h in ["web1", "web2"] {
        let s = fleet.get(h);
        let s = s.lock().unwrap();
        assert!(s.closed, "{h}: connection closed");
        assert!(s.ran.iter().any(|l| l.contains(" -F -- ")), "{:?}", s.ran);
    }
}
