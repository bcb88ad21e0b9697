//! `deploy`: the command users install.  It talks HTTP to the gateway only and never
//! links SSH code (tests/boundaries.rs checks its dependency graph).
//!
//! Exit codes (also in README.md): 0 success (also: `--if-newer` found the version
//! running everywhere); 1 the job failed, was cancelled or
//! interrupted; 2 usage or configuration error; 3 this CLI is too old for the gateway;
//! 4 not authorised; 5 gateway unreachable; 6 locked (another job runs on that
//! application and environment); 7 closed (a freeze, or outside the environment's
//! deploy windows); 8 the followed job no longer exists on the gateway; 130 detached
//! with Ctrl-C (the job goes on).  `deploy run` exits with its command's exit code once
//! the command ran (see `day_two.rs`).  Following a job re-attaches across gateway and
//! database restarts (`follow.rs`): exit 5 only after 15 minutes without contact.

mod client;
mod cron;
mod day_two;
mod display;
#[cfg(test)]
mod help_tests;
mod interrupt;
mod output;
mod pipeline;
mod schedule;
mod settings;
mod status;
mod urls;

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use client::{CliError, Client, Result};
use deploy_wire::api::*;
use display::{Display, Mode};

pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const TOO_OLD: u8 = 3;
    pub const UNAUTHORISED: u8 = 4;
    pub const UNREACHABLE: u8 = 5;
    pub const LOCKED: u8 = 6;
    pub const CLOSED: u8 = 7;
    /// The job being followed is gone from the gateway (404): pruned, or another store.
    pub const GONE: u8 = 8;
    /// `status --live` flagged a host (`!!`).
    pub const FLAGGED: u8 = 9;
    pub const DETACHED: u8 = 130;
}

#[derive(Parser)]
#[command(
    name = "deploy",
    version,
    about = "Ship Python web applications through the deploy gateway"
)]
struct Cli {
    /// Gateway URL (default: DEPLOY_GATEWAY, then the one saved by `deploy login`).
    // (DEPLOY_GATEWAY is read in `client`, not by clap: clap would print a set variable
    // as a required `--gateway` in the usage line of an unrelated error.)
    #[arg(long, global = true)]
    gateway: Option<String>,
    /// Machine-readable output: JSON (one event per line for jobs).
    #[arg(long, global = true)]
    json: bool,
    /// Read the token from this file (default: DEPLOY_TOKEN_FILE; before DEPLOY_TOKEN and
    /// the saved login).
    #[arg(long, global = true, value_name = "PATH")]
    token_file: Option<std::path::PathBuf>,
    /// Show each changed file's diff under its step (a --check always shows them;
    /// otherwise a changed step says how many lines changed).
    #[arg(long, global = true)]
    diff: bool,
    /// Print servers' output as it came: control characters included (default: shown
    /// escaped, as \x1b).
    #[arg(long, global = true)]
    raw: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Save the gateway URL and a token (read from a prompt, or from stdin when piped).
    Login {
        /// The gateway's URL (https://deploy.example.com).
        url: String,
    },
    /// Applications and their environments.
    Apps,
    /// Hosts the gateway knows.
    Hosts,
    /// Which release runs on which host (the gateway's record of each switch).
    Status {
        /// The application (as the inventory names it).
        app: String,
        /// Only this environment (default: every one the token may read).
        #[arg(long, short = 'e')]
        env: Option<String>,
        /// Also ask each host what it serves (slot, version, processes, the live slot's
        /// health); `!!` marks what needs a look (the record and the host disagree, a
        /// slot runs that is not live, the live slot fails its health check): exit 9.
        #[arg(long)]
        live: bool,
    },
    /// Versions available on the index, marking where each runs.
    Versions {
        /// The application (as the inventory names it).
        app: String,
    },
    /// Deploy a release (or, with --check, show what would change).  VERSION is exact
    /// (1.4.2), `latest`, or a PEP 440 specifier (`~=1.4`); the gateway resolves it.
    Release {
        /// The application (as the inventory names it).
        app: String,
        /// Not with --ref.
        #[arg(required_unless_present = "reference", conflicts_with = "reference")]
        version: Option<String>,
        /// Build this branch, tag or commit (unless it was built already), then deploy
        /// the version the build made.
        #[arg(long = "ref", value_name = "REF")]
        reference: Option<String>,
        /// The environment (staging, production, ...).
        #[arg(long, short = 'e')]
        env: String,
        /// Report what would change, with diffs; change nothing.
        #[arg(long)]
        check: bool,
        /// Do not ask for confirmation (environments that ask: production).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Hosts per batch, overriding the environment's: a count (2) or a percentage (25%).
        #[arg(long)]
        batch: Option<String>,
        /// With `latest` or a specifier such as `~=1.4`: let pre-releases count.
        #[arg(long)]
        pre: bool,
        /// Deploy during a freeze or outside the environment's windows (admins only);
        /// the reason is audited.
        #[arg(long, value_name = "REASON")]
        force: Option<String>,
        /// Start nothing (exit 0) when the version (as the gateway resolves it) already
        /// runs on every host of the environment.
        #[arg(long, conflicts_with = "reference")]
        if_newer: bool,
        #[command(flatten)]
        cron: cron::CronArgs,
    },
    /// Build a branch, tag or commit on the application's CI builder (the console is
    /// followed live); nothing is built when that commit's wheel is on record.
    Build {
        /// The application (as the inventory names it).
        app: String,
        /// The branch, tag or commit to build.
        #[arg(long = "ref", value_name = "REF")]
        reference: String,
    },
    /// The commits between what an environment runs and a candidate (VERSION, --ref,
    /// or the newest build).
    Changes {
        /// The application (as the inventory names it).
        app: String,
        /// The environment whose running release is the base.
        #[arg(long, short = 'e')]
        env: String,
        /// The candidate version (default: the newest build).
        version: Option<String>,
        /// The candidate as a branch, tag or commit.
        #[arg(long = "ref", value_name = "REF", conflicts_with = "version")]
        reference: Option<String>,
        /// Then run `release --check` of the candidate: the config diffs beneath.
        #[arg(long)]
        check: bool,
    },
    /// Deploy to one environment exactly the file (by SHA-256) another runs; refused
    /// while the source's hosts disagree or one of them failed.
    Promote {
        /// The application (as the inventory names it).
        app: String,
        /// The environment whose file is promoted.
        #[arg(long)]
        from: String,
        /// The environment to deploy it to.
        #[arg(long)]
        to: String,
        /// Report what would change, with diffs; change nothing.
        #[arg(long)]
        check: bool,
        /// Do not ask for confirmation (environments that ask: production).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Hosts per batch, overriding the environment's: a count (2) or a percentage (25%).
        #[arg(long)]
        batch: Option<String>,
    },
    /// Rollouts the gateway runs at a time or on a cron line.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCmd),
    /// Refuse deploys, restarts and scheduled runs on an environment until a time
    /// (rollbacks stay allowed; an admin may `release --force REASON`).
    Freeze {
        /// The environment to freeze.
        env: String,
        /// Local time in --tz (default UTC): 2026-12-27T00:00.
        #[arg(long)]
        until: String,
        /// IANA time zone of --until (Europe/Paris; default UTC).
        #[arg(long)]
        tz: Option<String>,
        /// Why (shown with the freeze and audited).
        #[arg(long)]
        reason: String,
    },
    /// Lift an environment's freeze.
    Unfreeze {
        /// The frozen environment.
        env: String,
    },
    /// The freezes in force.
    Freezes,
    /// What two environments run, and the commits the first has that the second lacks.
    Diff {
        /// The application (as the inventory names it).
        app: String,
        /// The first environment.
        a: String,
        /// The second environment.
        b: String,
    },
    /// Switch back to a release still on disk; installs nothing.  Without --to: the
    /// release deployed before the current one (rollbacks do not count, so a second
    /// rollback goes one further back).
    Rollback {
        /// The application (as the inventory names it).
        app: String,
        /// The environment (staging, production, ...).
        #[arg(long, short = 'e')]
        env: String,
        /// The release to go back to (complete on every host).
        #[arg(long)]
        to: Option<String>,
        /// Do not ask for confirmation (environments that ask: production).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Hosts per batch, overriding the environment's: a count (2) or a percentage (25%).
        #[arg(long)]
        batch: Option<String>,
        #[command(flatten)]
        cron: cron::CronArgs,
    },
    /// Restart the release an environment runs (rolling, health-gated, installs nothing).
    Restart(day_two::RestartArgs),
    /// Run a one-off command as the app user in the live release on one host; exits with its code.
    Run(day_two::RunArgs),
    /// Show a process's log from the servers (default: web, the live slot); -f follows it.
    AppLogs(day_two::LogsArgs),
    /// Recent jobs.
    Jobs {
        /// How many, newest first (at most 1000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// A job's events; with --follow, live until it ends.
    Logs {
        /// The job's id (`deploy jobs` lists them).
        job: String,
        /// Go on with new events until the job ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell).
    ///
    /// bash: `deploy completions bash > ~/.local/share/bash-completion/completions/deploy`
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (deploy.1 and one per command, deploy-release.1, ...) into DIR.
    Manpages {
        /// The directory (created if missing).
        dir: std::path::PathBuf,
    },
    /// Stop a job after the steps in flight.
    Cancel {
        /// The job's id.
        job: String,
    },
}

impl Cmd {
    /// `--quiet`: nothing on success (not even a newer CLI's notice).
    fn quiet(&self) -> bool {
        match self {
            Cmd::Release { cron, .. } | Cmd::Rollback { cron, .. } => cron.quiet,
            Cmd::Restart(a) => a.cron.quiet,
            _ => false,
        }
    }
}

fn main() -> ExitCode {
    output::quiet_on_broken_pipe();
    let cli = Cli::parse();
    output::set(cli.raw, cli.diff);
    match &cli.cmd {
        Cmd::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "deploy", &mut script);
            // A closed reader (`| head`) is the reader's choice; the panic hook ends quietly.
            print!("{}", String::from_utf8_lossy(&script));
            return ExitCode::SUCCESS;
        }
        Cmd::Manpages { dir } => return manpages(dir),
        _ => {}
    }
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(async {
        interrupt::install();
        run(cli).await
    }) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("deploy: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// `deploy manpages DIR`: one page per command, from the same definitions as `--help`.
fn manpages(dir: &std::path::Path) -> ExitCode {
    let written =
        std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(Cli::command(), dir));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "deploy: cannot write the man pages into {}: {e}",
                dir.display()
            );
            ExitCode::from(exit::USAGE)
        }
    }
}

/// A variable's value, unless unset or empty.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn client(cli: &Cli) -> Result<Client> {
    let saved = settings::load();
    let gateway = cli.gateway.clone().or_else(|| env_var("DEPLOY_GATEWAY"));
    let gateway = gateway.or(saved.gateway).ok_or_else(|| {
        CliError::new(
            exit::USAGE,
            "no gateway: run `deploy login URL`, or set DEPLOY_GATEWAY or --gateway",
        )
    })?;
    let file = cli
        .token_file
        .clone()
        .or_else(|| env_var("DEPLOY_TOKEN_FILE").map(Into::into))
        .filter(|p| !p.as_os_str().is_empty());
    let token = match file {
        Some(path) => Some(cron::token_from_file(&path)?),
        None => std::env::var("DEPLOY_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or(saved.token),
    };
    Ok(Client::new(urls::gateway(&gateway)?, token))
}

fn mode(cli: &Cli) -> Mode {
    if cli.json {
        Mode::Json
    } else if std::io::stderr().is_terminal() && std::io::stdout().is_terminal() {
        Mode::Tty
    } else {
        Mode::Plain
    }
}

fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializes"));
}

fn when(ms: Option<u64>) -> String {
    ms.map(display::timestamp).unwrap_or_else(|| "-".into())
}

async fn run(cli: Cli) -> Result<u8> {
    if cli.cmd.quiet() {
        client::no_notices();
    }
    match &cli.cmd {
        Cmd::Login { url } => login(url).await,
        Cmd::Apps => {
            let apps: Vec<AppInfo> = client(&cli)?.get("/v1/apps").await?;
            if cli.json {
                print_json(&apps);
            } else {
                status::print_apps(&apps);
            }
            Ok(exit::OK)
        }
        Cmd::Hosts => {
            let hosts: Vec<HostInfo> = client(&cli)?.get("/v1/hosts").await?;
            if cli.json {
                print_json(&hosts);
            } else {
                status::print_hosts(&hosts);
            }
            Ok(exit::OK)
        }
        Cmd::Status { app, env, live } => {
            let q = urls::query(&[
                ("env", env.as_deref().map(urls::env).transpose()?),
                ("live", live.then_some("true")),
            ]);
            let path = urls::path(&["/v1/apps/", urls::app(app)?, &format!("/status{q}")]);
            let rows: Vec<HostRelease> = client(&cli)?.get(&path).await?;
            if cli.json {
                print_json(&rows);
            } else {
                status::print_status(&rows, *live, when);
            }
            Ok(if *live && rows.iter().any(status::flagged) {
                exit::FLAGGED
            } else {
                exit::OK
            })
        }
        Cmd::Versions { app } => {
            let path = urls::path(&["/v1/apps/", urls::app(app)?, "/versions"]);
            let vs: Vec<VersionInfo> = client(&cli)?.get(&path).await?;
            if cli.json {
                print_json(&vs);
            } else {
                status::print_versions(&vs);
            }
            Ok(exit::OK)
        }
        Cmd::Release {
            app,
            version,
            reference,
            env,
            check,
            yes,
            batch,
            pre,
            force,
            if_newer,
            cron,
        } => {
            urls::app(app)?;
            urls::env(env)?;
            let c = client(&cli)?;
            let Some(version) = version else {
                if cron.quiet || cron.lock_wait.is_some() {
                    let m = "--quiet and --lock-wait work with a VERSION, not with --ref";
                    return Err(CliError::new(exit::USAGE, m));
                }
                let r = pipeline::ReleaseRef {
                    app,
                    env,
                    reference: reference.as_deref().unwrap_or_default(),
                    check: *check,
                    yes: *yes,
                    batch: batch.clone(),
                };
                return pipeline::release_ref(&c, r, mode(&cli)).await;
            };
            if !check {
                let q = format!("Deploy {app} {version} to {env}?");
                confirm(&c, app, env, &q, *yes).await?;
            }
            let req = DeployRequest {
                app: app.clone(),
                env: env.clone(),
                version: version.clone(),
                check: *check,
                batch: batch.clone(),
                pre: *pre,
                force: force.clone(),
                if_newer: *if_newer,
            };
            let what = format!("release {app} {version} to {env}");
            cron::run_job(&c, cron, &what, "/v1/deployments", &req, mode(&cli)).await
        }
        Cmd::Rollback {
            app,
            env,
            to,
            yes,
            batch,
            cron,
        } => {
            urls::app(app)?;
            urls::env(env)?;
            let c = client(&cli)?;
            let target = match to {
                Some(v) => v.clone(),
                None => rollback_target(&c, app, env, cli.json || cron.quiet).await?,
            };
            let q = format!("Roll {app} on {env} back to {target}?");
            confirm(&c, app, env, &q, *yes).await?;
            let what = format!("rollback of {app} on {env} to {target}");
            let req = RollbackRequest {
                app: app.clone(),
                env: env.clone(),
                // The release named above, even if another deploy ends in between.
                to: Some(target),
                batch: batch.clone(),
            };
            cron::run_job(&c, cron, &what, "/v1/rollbacks", &req, mode(&cli)).await
        }
        Cmd::Build { app, reference } => {
            pipeline::build(&client(&cli)?, app, reference, mode(&cli)).await
        }
        Cmd::Changes {
            app,
            env,
            version,
            reference,
            check,
        } => {
            let (v, r) = (version.as_deref(), reference.as_deref());
            let c = client(&cli)?;
            let candidate = pipeline::changes(&c, app, env, v, r, cli.json).await?;
            match (check, candidate) {
                (true, Some(version)) => pipeline::check(&c, app, env, version, mode(&cli)).await,
                (true, None) => Err(CliError::new(
                    exit::FAILED,
                    "the candidate has no build on record: nothing to check",
                )),
                (false, _) => Ok(exit::OK),
            }
        }
        Cmd::Promote {
            app,
            from,
            to,
            check,
            yes,
            batch,
        } => {
            let p = pipeline::Promote {
                app,
                from,
                to,
                check: *check,
                yes: *yes,
                batch: batch.clone(),
            };
            pipeline::promote(&client(&cli)?, p, mode(&cli)).await
        }
        Cmd::Schedule(s) => schedule::run(&client(&cli)?, s, cli.json).await,
        Cmd::Freeze {
            env,
            until,
            tz,
            reason,
        } => schedule::freeze(&client(&cli)?, env, until, tz.clone(), reason, cli.json).await,
        Cmd::Unfreeze { env } => schedule::unfreeze(&client(&cli)?, env).await,
        Cmd::Freezes => schedule::freezes(&client(&cli)?, cli.json).await,
        Cmd::Diff { app, a, b } => pipeline::diff(&client(&cli)?, app, a, b, cli.json).await,
        Cmd::Restart(a) => day_two::restart(&client(&cli)?, a, mode(&cli)).await,
        Cmd::Run(a) => day_two::run(&client(&cli)?, a, cli.json).await,
        Cmd::AppLogs(a) => day_two::app_logs(&client(&cli)?, a, cli.json).await,
        Cmd::Jobs { limit } => {
            let limit = limit.to_string();
            let q = urls::query(&[("limit", Some(&limit))]);
            let jobs: Vec<JobInfo> = client(&cli)?.get(&format!("/v1/jobs{q}")).await?;
            if cli.json {
                print_json(&jobs);
            } else {
                status::print_jobs(&jobs, when);
            }
            Ok(exit::OK)
        }
        Cmd::Logs { job, follow: live } => {
            let job = urls::job(job)?;
            let c = client(&cli)?;
            if *live {
                return follow(&c, job, mode(&cli)).await;
            }
            let events: Vec<StoredEvent> = c.get(&urls::path(&["/v1/jobs/", job, "/log"])).await?;
            let m = if cli.json { Mode::Json } else { Mode::Plain };
            let mut d = Display::new(m);
            for e in &events {
                d.event(e.seq, &serde_json::to_string(&e.event).expect("serializes"));
            }
            let info: JobInfo = c.get(&urls::path(&["/v1/jobs/", job])).await?;
            if !cli.json {
                println!("job {}", info.state);
            }
            Ok(job_exit(info.state.as_str()))
        }
        // Answered in `main`, before any gateway is needed.
        Cmd::Completions { .. } | Cmd::Manpages { .. } => Ok(exit::OK),
        Cmd::Cancel { job } => {
            let path = urls::path(&["/v1/jobs/", urls::job(job)?, "/cancel"]);
            let info: JobInfo = client(&cli)?.post(&path, &serde_json::json!({})).await?;
            eprintln!(
                "cancelling job {}: hosts stop after their current step; follow with `deploy logs {} --follow`",
                info.id, info.id
            );
            Ok(exit::OK)
        }
    }
}

/// The release a rollback without `--to` goes to, as the gateway chooses it; said
/// before anything starts.
async fn rollback_target(c: &Client, app: &str, env: &str, json: bool) -> Result<String> {
    let q = urls::query(&[("env", Some(env))]);
    let path = urls::path(&["/v1/apps/", app, &format!("/rollback{q}")]);
    let t: RollbackTarget = c.get(&path).await?;
    if !json {
        let from = t.current.as_deref().unwrap_or("nothing recorded");
        eprintln!(
            "rolling {app} on {env} back to {} (the release deployed before {from})",
            t.target
        );
    }
    Ok(t.target)
}

/// Asks before acting on an environment that wants confirmation (unless `--yes`).
async fn confirm(c: &Client, app: &str, env: &str, question: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let apps: Vec<AppInfo> = c.get("/v1/apps").await?;
    let ask = apps
        .iter()
        .filter(|a| a.name == app)
        .flat_map(|a| &a.environments)
        .any(|e| e.name == env && e.confirm);
    if !ask {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::new(
            exit::USAGE,
            format!("{env} asks for confirmation; not on a terminal, so pass --yes"),
        ));
    }
    eprint!("{question} Type the environment name to confirm: ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| CliError::new(exit::USAGE, e.to_string()))?;
    if answer.trim() != env {
        return Err(CliError::new(
            exit::USAGE,
            "not confirmed; nothing was started",
        ));
    }
    Ok(())
}

async fn start_following(c: &Client, job: &JobInfo, m: Mode) -> Result<u8> {
    if m != Mode::Json {
        eprintln!(
            "job {} started: {} {} {} to {}",
            job.id, job.kind, job.app, job.version, job.env
        );
    }
    follow(c, &job.id, m).await
}

fn job_exit(state: &str) -> u8 {
    if state == "succeeded" {
        exit::OK
    } else {
        exit::FAILED
    }
}

/// Shows a job live until it ends; Ctrl-C detaches (the job goes on).
async fn follow(c: &Client, job: &str, mode: Mode) -> Result<u8> {
    let mut display = Display::new(mode);
    let outcome = {
        let mut seen = |s: client::Seen| match s {
            client::Seen::Event { seq, data } => display.event(seq, data),
            client::Seen::Note(text) => display.note(text),
        };
        tokio::select! {
            r = c.follow(job, 0, &mut seen) => Some(r),
            _ = crate::interrupt::pressed() => None,
        }
    };
    match outcome {
        None => {
            display.summary("still running");
            eprintln!(
                "\ndetached; job {job} goes on. Re-attach with:\n    deploy logs {job} --follow"
            );
            Ok(exit::DETACHED)
        }
        Some(Err(e)) => Err(e),
        Some(Ok(state)) => {
            display.summary(&state);
            Ok(job_exit(&state))
        }
    }
}

async fn login(url: &str) -> Result<u8> {
    let token = if std::env::var("DEPLOY_TOKEN").is_ok_and(|t| !t.is_empty()) {
        std::env::var("DEPLOY_TOKEN").unwrap_or_default()
    } else if std::io::stdin().is_terminal() {
        eprint!("Token for {url} (input hidden): ");
        let _ = std::process::Command::new("stty")
            .arg("-echo")
            .stdin(std::process::Stdio::inherit())
            .status();
        let mut t = String::new();
        let r = std::io::stdin().read_line(&mut t);
        let _ = std::process::Command::new("stty")
            .arg("echo")
            .stdin(std::process::Stdio::inherit())
            .status();
        eprintln!();
        r.map_err(|e| CliError::new(exit::USAGE, e.to_string()))?;
        t
    } else {
        let mut t = String::new();
        std::io::stdin()
            .read_to_string(&mut t)
            .map_err(|e| CliError::new(exit::USAGE, e.to_string()))?;
        t
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(CliError::new(exit::USAGE, "no token given"));
    }
    // Check the token before saving it.
    let c = Client::new(urls::gateway(url)?, Some(token.clone()));
    let _: Vec<AppInfo> = c.get("/v1/apps").await?;
    let path = settings::save(&settings::Saved {
        gateway: Some(url.trim_end_matches('/').to_string()),
        token: Some(token),
    })
    .map_err(|e| CliError::new(exit::USAGE, format!("cannot save the login: {e}")))?;
    eprintln!(
        "logged in to {url}; saved in {} (mode 0600)",
        path.display()
    );
    Ok(exit::OK)
}
