//! `deploy-gateway apply`: one job from the bastion's shell, through the job service
//! (so under the gateway's (application, environment) lock and in its audit trail when
//! given its database), with its events printed as they are stored; Ctrl-C cancels it.
//! What it prints (events on stdout, notices on stderr) is the command's interface, not
//! a log.

use deploy_wire::api::{DeployRequest, JobState};
use deploy_wire::{Event, present};

use super::auth::Principal;
use super::events::Tail;
use super::jobs::{Jobs, Settings};
use super::lockfile::{ApplyAlive, LockError, NoApplyAlive};
use super::service::{JobService, ServiceError};
use super::store::{APPLY_USER_PREFIX, Db, Location, Orphans};

/// Which database the job is recorded in.
pub enum Database {
    /// The gateway's: its locks and audit trail.
    Shared(Location),
    /// A private one in memory: no lock against the gateway.
    Private,
}

/// How events are printed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// The user an `apply` run acts as: `apply:$USER`.
pub fn user() -> String {
    let name = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("{APPLY_USER_PREFIX}{name}")
}

/// Runs one job to its end and returns how it ended.
pub async fn run(
    settings: Settings,
    database: Database,
    req: DeployRequest,
    output: Output,
) -> Result<JobState, ServiceError> {
    let (db, _alive) = open(&database).await?;
    let svc = JobService::new(Jobs::new(db, settings));
    // Its job's lease, renewed while it runs (gateways sharing the database see it alive).
    super::job_life::spawn(svc.jobs().clone(), false);
    // Its job's notices, while it runs (a gateway on the same database sends what is
    // left when it ends).
    if let Some(outbox) = svc.jobs().outbox() {
        outbox.spawn();
    }
    let p = Principal {
        user: user(),
        envs: vec!["*".into()],
        admin: true,
        source: "local".into(),
        ..Principal::default()
    };
    let job = svc.deploy(&p, req).await?;
    if let Database::Private = database {
        eprintln!(
            "deploy-gateway: no --config or --database: job {} runs without the gateway's lock and audit trail",
            job.id
        );
    }
    let mut tail = svc
        .jobs()
        .events
        .follow(job.id.clone(), 0)
        .map_err(|_| ServiceError::Unavailable("too many followers of jobs".into()))?;
    let mut cancelled = false;
    loop {
        tokio::select! {
            t = tail.recv() => match t {
                Some(Tail::Event { data, .. }) => print(&data, output),
                Some(Tail::End(state)) => return Ok(state),
                None => return Err(ServiceError::Internal(format!("lost the events of job {}", job.id))),
            },
            _ = tokio::signal::ctrl_c() => {
                if cancelled {
                    return Err(ServiceError::Internal(format!(
                        "stopped by a second Ctrl-C; job {} stays marked running (and its lock held) until the next `apply` or gateway start",
                        job.id
                    )));
                }
                cancelled = svc.jobs().cancel(&job.id);
                eprintln!("deploy-gateway: cancelling job {}: hosts stop after their current step (Ctrl-C again to stop at once)", job.id);
            }
        }
    }
}

/// The database and, for the gateway's SQLite file, this run's share of the apply lock
/// (after interrupting the jobs of dead `apply` runs, when no other one is alive).  On
/// PostgreSQL, leases free what a dead run held.
async fn open(database: &Database) -> Result<(Db, Option<ApplyAlive>), ServiceError> {
    let at = match database {
        Database::Private => return Ok((Db::in_memory()?, None)),
        Database::Shared(at) => at,
    };
    let db = Db::open(at)?;
    let Some(path) = at.file() else {
        return Ok((db, None));
    };
    let internal = |e: LockError| ServiceError::Internal(e.to_string());
    let alive = match NoApplyAlive::check(path).map_err(internal)? {
        Some(alone) => {
            let ids = db.call(|s| s.interrupt_running(Orphans::Apply)).await?;
            for id in ids {
                eprintln!(
                    "deploy-gateway: job {id} of an earlier apply was interrupted; its lock is released"
                );
            }
            alone.share()
        }
        None => ApplyAlive::acquire(path),
    };
    Ok((db, Some(alive.map_err(internal)?)))
}

fn print(data: &str, output: Output) {
    if output == Output::Json {
        println!("{data}");
    } else if let Ok(ev) = serde_json::from_str::<Event>(data) {
        for line in text_lines(&ev) {
            println!("{line}");
        }
    }
}

/// An event as plain lines, in the words of [`deploy_wire::present`] (as the CLI prints
/// them without a terminal, less the timestamp); progress-only events print nothing.
fn text_lines(ev: &Event) -> Vec<String> {
    let line = present::line(&ev.kind);
    if line.tone == present::Tone::Progress {
        return vec![];
    }
    let who = line.subject().to_string();
    std::iter::once(format!("{who}: {}", line.text))
        .chain(line.detail.iter().map(|d| format!("{who}:     {d}")))
        .collect()
}
