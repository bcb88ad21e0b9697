//! `deploy schedule add|list|show|pause|resume|rm` (rollouts the gateway runs at a time
//! or on a cron line) and `deploy freeze|unfreeze|freezes` (an environment's door).

use deploy_wire::schedule::{FreezeInfo, FreezeRequest, ScheduleInfo, ScheduleRequest};

use crate::client::{Client, Result};
use crate::{exit, print_json, urls};

#[derive(clap::Subcommand)]
pub enum ScheduleCmd {
    /// A rollout at a time (--at 2026-12-01T02:00) or on a cron line (--cron "0 2 * * 1-5").
    /// WHAT: a version, `latest`, a specifier (~=1.4), or promote:ENV.
    Add {
        /// The application (as the inventory names it).
        app: String,
        /// A version, `latest`, a specifier (~=1.4), or promote:ENV.
        what: String,
        /// The environment to deploy to.
        #[arg(long, short = 'e')]
        env: String,
        /// Once, at this local time in --tz (2026-12-01T02:00).
        #[arg(long, conflicts_with = "cron", required_unless_present = "cron")]
        at: Option<String>,
        /// On a cron line, in --tz ("0 2 * * 1-5").
        #[arg(long)]
        cron: Option<String>,
        /// IANA time zone of --at and --cron (default UTC).
        #[arg(long)]
        tz: Option<String>,
        /// How long a run waits for a running job (default 10m).
        #[arg(long, value_name = "DURATION")]
        lock_wait: Option<String>,
        /// A slot missed while the gateway was down still runs this late (default 15m).
        #[arg(long, value_name = "DURATION")]
        grace: Option<String>,
    },
    /// Schedules, with their next run times.
    List,
    /// One schedule and its recent runs.
    Show {
        /// The schedule's id (`deploy schedule list`).
        id: String,
    },
    /// Stop a schedule's runs until `resume`.
    Pause {
        /// The schedule's id.
        id: String,
    },
    /// Let a paused schedule run again.
    Resume {
        /// The schedule's id.
        id: String,
    },
    /// Delete a schedule.
    Rm {
        /// The schedule's id.
        id: String,
    },
}

fn secs(v: &Option<String>) -> Result<Option<u64>> {
    v.as_deref()
        .map(|t| {
            crate::cron::parse_duration(t)
                .map(|d| d.as_secs())
                .map_err(|e| crate::client::CliError::new(exit::USAGE, e))
        })
        .transpose()
}

fn print(s: &ScheduleInfo) {
    println!("{}", schedule_line(s));
}

/// One schedule, one line.  A one-shot says its time whether it is to come, paused or
/// done; `(done)` only once it ran (its time has passed and it is not paused).
fn schedule_line(s: &ScheduleInfo) -> String {
    let at = |ms: u64| format!("at {}", crate::display::timestamp(ms));
    let when = match (&s.cron, s.next_local.first(), s.at_ms) {
        (Some(c), _, _) => format!("cron {c:?} {}", s.tz),
        (None, Some(t), _) => format!("at {t}"),
        (None, None, Some(ms)) if s.paused => at(ms),
        (None, None, Some(ms)) => format!("{} (done)", at(ms)),
        (None, None, None) => "at (done)".into(),
    };
    let state = if s.paused { " (paused)" } else { "" };
    let next = if s.next_local.is_empty() {
        "-".into()
    } else {
        s.next_local.join(", ")
    };
    format!(
        "{}  {} to {} {}: {when}{state}; by {}; next: {next}",
        s.id, s.app, s.env, s.what, s.user
    )
}

pub async fn run(c: &Client, cmd: &ScheduleCmd, json: bool) -> Result<u8> {
    let info: ScheduleInfo = match cmd {
        ScheduleCmd::Add {
            app,
            what,
            env,
            at,
            cron,
            tz,
            lock_wait,
            grace,
        } => {
            let req = ScheduleRequest {
                app: urls::app(app)?.into(),
                env: urls::env(env)?.into(),
                what: what.clone(),
                at: at.clone(),
                cron: cron.clone(),
                tz: tz.clone(),
                lock_wait_secs: secs(lock_wait)?,
                grace_secs: secs(grace)?,
            };
            c.post("/v1/schedules", &req).await?
        }
        ScheduleCmd::List => {
            let all: Vec<ScheduleInfo> = c.get("/v1/schedules").await?;
            if json {
                print_json(&all);
            }
            if !json && all.is_empty() {
                eprintln!("no schedules (add one with `deploy schedule add`)");
            }
            all.iter().filter(|_| !json).for_each(print);
            return Ok(exit::OK);
        }
        ScheduleCmd::Show { id } => c.get(&urls::path(&["/v1/schedules/", id])).await?,
        ScheduleCmd::Pause { id } => {
            c.post(
                &urls::path(&["/v1/schedules/", id, "/pause"]),
                &serde_json::json!({}),
            )
            .await?
        }
        ScheduleCmd::Resume { id } => {
            c.post(
                &urls::path(&["/v1/schedules/", id, "/resume"]),
                &serde_json::json!({}),
            )
            .await?
        }
        ScheduleCmd::Rm { id } => {
            c.delete(&urls::path(&["/v1/schedules/", id])).await?;
            eprintln!("schedule {id} removed");
            return Ok(exit::OK);
        }
    };
    if json {
        print_json(&info);
        return Ok(exit::OK);
    }
    print(&info);
    for r in &info.runs {
        let job = r
            .job_id
            .as_deref()
            .map(|j| format!(" job {j}"))
            .unwrap_or_default();
        let slot = crate::display::timestamp(r.slot_ms);
        println!("  {slot}  {:<8}{job}  {}", r.state, r.reason);
    }
    Ok(exit::OK)
}

pub async fn freeze(
    c: &Client,
    env: &str,
    until: &str,
    tz: Option<String>,
    reason: &str,
    json: bool,
) -> Result<u8> {
    let req = FreezeRequest {
        env: urls::env(env)?.into(),
        until: until.into(),
        tz,
        reason: reason.into(),
    };
    let f: FreezeInfo = c.post("/v1/freezes", &req).await?;
    if json {
        print_json(&f);
    } else {
        eprintln!(
            "{} is frozen until {} (UTC): {}",
            f.env,
            crate::display::timestamp(f.until_ms),
            f.reason
        );
    }
    Ok(exit::OK)
}

pub async fn unfreeze(c: &Client, env: &str) -> Result<u8> {
    c.delete(&urls::path(&["/v1/freezes/", urls::env(env)?]))
        .await?;
    eprintln!("{env} is open again");
    Ok(exit::OK)
}

pub async fn freezes(c: &Client, json: bool) -> Result<u8> {
    let all: Vec<FreezeInfo> = c.get("/v1/freezes").await?;
    if json {
        print_json(&all);
    } else if all.is_empty() {
        eprintln!("no freezes: every environment is open (outside its deploy windows, if any)");
    }
    for f in all.iter().filter(|_| !json) {
        println!(
            "{}  until {}  by {}: {}",
            f.env,
            crate::display::timestamp(f.until_ms),
            f.user,
            f.reason
        );
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_shot(paused: bool, next: &[&str]) -> ScheduleInfo {
        serde_json::from_value(serde_json::json!({
            "id": "s1", "app": "hello", "env": "staging", "what": "1.1.0",
            "at_ms": 1_795_000_000_000u64, "tz": "UTC", "lock_wait_secs": 600,
            "grace_secs": 900, "user": "ann", "paused": paused, "created_ms": 0,
            "next_local": next,
        }))
        .unwrap()
    }

    #[test]
    fn a_paused_one_shot_says_its_time_not_done() {
        let paused = schedule_line(&one_shot(true, &[]));
        assert!(
            paused.contains("at 2026-11-18T11:06:40Z (paused)"),
            "{paused}"
        );
        assert!(!paused.contains("done"), "{paused}");
        let ran = schedule_line(&one_shot(false, &[]));
        assert!(ran.contains("(done)"), "{ran}");
        let to_come = schedule_line(&one_shot(false, &["2026-11-18 11:06 UTC"]));
        assert!(to_come.contains("at 2026-11-18 11:06 UTC;"), "{to_come}");
    }
}
