//! The day-two commands: `restart` (a job, shown and confirmed like a release), `run` (a
//! one-off command whose output is printed plainly and whose exit code becomes the
//! CLI's) and `app-logs` (a process's log streamed from the servers through the gateway).

use std::io::IsTerminal;

use deploy_wire::api::{JobInfo, LogLine, RestartRequest, RunRequest};
use deploy_wire::{Event, EventKind, Stream};

use crate::client::{CliError, Client, Result, Seen};
use crate::display::Mode;
use crate::{exit, urls};

#[derive(clap::Args)]
pub struct RestartArgs {
    /// The application (as the inventory names it).
    app: String,
    /// The environment (staging, production, ...).
    #[arg(long, short = 'e')]
    env: String,
    /// Do not ask for confirmation (environments that ask: production).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Hosts per batch, overriding the environment's: a count (2) or a percentage (25%).
    #[arg(long)]
    batch: Option<String>,
    /// Restart during a freeze or outside the windows (admins only); audited.
    #[arg(long, value_name = "REASON")]
    force: Option<String>,
    #[command(flatten)]
    pub cron: crate::cron::CronArgs,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The application (as the inventory names it).
    app: String,
    /// The environment (staging, production, ...).
    #[arg(long, short = 'e')]
    env: String,
    /// The host (default: the environment's first by name).
    #[arg(long)]
    host: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(clap::Args)]
pub struct LogsArgs {
    /// The application (as the inventory names it).
    app: String,
    /// The environment (staging, production, ...).
    #[arg(long, short = 'e')]
    env: String,
    /// One host only.
    #[arg(long)]
    host: Option<String>,
    /// `web` (default: the live slot's log) or one of the application's processes.
    #[arg(long)]
    process: Option<String>,
    /// Lines from the end to start with.
    #[arg(long, short = 'n', default_value_t = 50)]
    lines: u32,
    /// Go on with new lines until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
}

/// `deploy restart`: confirmation where the environment wants it, then the job followed
/// like a release (same display, same exit codes).
pub async fn restart(c: &Client, a: &RestartArgs, mode: Mode) -> Result<u8> {
    let (app, env) = (urls::app(&a.app)?, urls::env(&a.env)?);
    let question = format!("Restart {app} on {env}?");
    crate::confirm(c, app, env, &question, a.yes).await?;
    let req = RestartRequest {
        app: app.to_string(),
        env: env.to_string(),
        batch: a.batch.clone(),
        force: a.force.clone(),
    };
    let what = format!("restart of {app} on {env}");
    crate::cron::run_job(c, &a.cron, &what, "/v1/restarts", &req, mode).await
}

/// What a one-off command's events said.
#[derive(Default)]
struct Ran {
    exit_code: Option<u32>,
    error: Option<String>,
}

impl Ran {
    /// Prints a command's output as it comes (stdout lines to stdout, stderr to stderr).
    fn event(&mut self, data: &str, json: bool) {
        if json {
            println!("{data}");
        }
        let Ok(ev) = serde_json::from_str::<Event>(data) else {
            return;
        };
        match ev.kind {
            EventKind::Output { stream, line, .. } if !json => match stream {
                Stream::Stdout => println!("{}", crate::output::shown(&line)),
                Stream::Stderr => eprintln!("{}", crate::output::shown(&line)),
            },
            EventKind::CommandExited { exit_code, .. } => self.exit_code = Some(exit_code),
            EventKind::HostFinished { error, .. } => self.error = error,
            _ => {}
        }
    }
}

/// `deploy run`: the command's output, then its exit code (0-255) as the CLI's; without
/// one (unreachable, nothing live, cancelled) 1.  Ctrl-C detaches (130).
pub async fn run(c: &Client, a: &RunArgs, json: bool) -> Result<u8> {
    urls::app(&a.app)?;
    urls::env(&a.env)?;
    if let Some(h) = &a.host {
        check("host", h)?;
    }
    let req = RunRequest {
        app: a.app.clone(),
        env: a.env.clone(),
        host: a.host.clone(),
        command: a.command.clone(),
    };
    let job: JobInfo = c.post("/v1/runs", &req).await?;
    if !json && std::io::stderr().is_terminal() {
        eprintln!(
            "deploy: job {} (`deploy logs {}` shows it again)",
            job.id, job.id
        );
    }
    let mut ran = Ran::default();
    let outcome = {
        let mut seen = |s: Seen| match s {
            Seen::Event { data, .. } => ran.event(data, json),
            Seen::Note(text) => eprintln!("deploy: {text}"),
        };
        tokio::select! {
            r = c.follow(&job.id, 0, &mut seen) => Some(r),
            _ = crate::interrupt::pressed() => None,
        }
    };
    let Some(state) = outcome else {
        eprintln!(
            "\ndetached; job {} goes on. Re-attach with:\n    deploy logs {} --follow",
            job.id, job.id
        );
        return Ok(exit::DETACHED);
    };
    let state = state?;
    if let Some(code) = ran.exit_code {
        return Ok(code.min(255) as u8);
    }
    if state == "succeeded" {
        return Ok(exit::OK);
    }
    let why = ran.error.unwrap_or_else(|| format!("job {}", state));
    Err(CliError::new(exit::FAILED, why))
}

/// `deploy app-logs`: `HOST | line` (`HOST[n]` for copy n of a process with several) on
/// stdout, the gateway's notices about hosts on stderr.  Exit 1 when a host could not be
/// read in full (a notice), 0 otherwise.
pub async fn app_logs(c: &Client, a: &LogsArgs, json: bool) -> Result<u8> {
    urls::app(&a.app)?;
    urls::env(&a.env)?;
    for (what, v) in [("host", &a.host), ("process", &a.process)] {
        if let Some(v) = v {
            check(what, v)?;
        }
    }
    let lines = a.lines.to_string();
    let q = urls::query(&[
        ("env", Some(&a.env)),
        ("host", a.host.as_deref()),
        ("process", a.process.as_deref()),
        ("lines", Some(&lines)),
        ("follow", a.follow.then_some("true")),
    ]);
    let path = urls::path(&["/v1/apps/", &a.app, &format!("/logs{q}")]);
    let mut notices = 0u32;
    let mut on_frame = |kind: &str, data: &str| {
        let Ok(l) = serde_json::from_str::<LogLine>(data) else {
            return;
        };
        notices += u32::from(kind == "line" && l.notice);
        if json {
            println!("{data}");
            return;
        }
        let who = match l.copy {
            Some(n) => format!("{}[{n}]", l.host),
            None => l.host,
        };
        if l.notice {
            eprintln!("deploy: {who}: {}", crate::output::shown(&l.line));
        } else {
            println!("{who} | {}", crate::output::shown(&l.line));
        }
    };
    if !c.stream(&path, &mut on_frame).await? {
        let m = "the log stream broke off before its end";
        return Err(CliError::new(exit::UNREACHABLE, m));
    }
    Ok(if notices > 0 { exit::FAILED } else { exit::OK })
}

fn check(what: &'static str, v: &str) -> Result<()> {
    deploy_wire::names::check_ident(what, v).map_err(|e| CliError::new(exit::USAGE, e.to_string()))
}
