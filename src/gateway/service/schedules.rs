//! Scheduled rollouts in the gateway: a schedule is a request to deploy (an exact
//! version, `latest`, a specifier, or `promote:ENV`) at one time (`at`) or on a cron
//! line, in an IANA zone.  It is stored, survives restarts, runs with the rights of the
//! token that made it (checked again at each run: a revoked token stops it) and is
//! audited.  Each slot of time runs at most once: a run row per (schedule, slot) is
//! claimed before anything starts.  The ticking itself is `gateway/scheduler.rs`.

use deploy_wire::api::{JobInfo, JobKind};
use deploy_wire::pipeline::PromoteRequest;
use deploy_wire::schedule::{ScheduleInfo, ScheduleRequest, ScheduleRun};

use super::{JobService, Order, Result, ServiceError, Wanted};
use crate::gateway::auth::Principal;
use crate::gateway::store::{ScheduleRow, now_ms};
use crate::schedule::{Cron, check_tz, format_local, parse_at};

/// Defaults: how long a run waits for a lock, and how late a missed slot still runs.
const LOCK_WAIT_SECS: u64 = 600;
const GRACE_SECS: u64 = 900;
/// The most either may be: a day (more would be a schedule of another kind; the
/// scheduler's arithmetic in milliseconds stays far from overflowing).
pub const MAX_WAIT_SECS: u64 = 86_400;
/// How many runs `schedule show` lists.
const RUNS_SHOWN: u32 = 20;

/// The next slot of a schedule after `after_ms` (a one-shot has none after its time).
pub fn next_slot(row: &ScheduleRow, after_ms: u64) -> Option<u64> {
    match (&row.cron, row.at_ms) {
        (Some(expr), _) => Cron::parse(expr, &row.tz).ok()?.next_after(after_ms),
        (None, Some(at)) => (at > after_ms).then_some(at),
        (None, None) => None,
    }
}

fn info(row: &ScheduleRow, runs: Vec<ScheduleRun>) -> ScheduleInfo {
    let mut next_local = Vec::new();
    let mut at = row.next_ms.filter(|_| !row.paused);
    while let Some(t) = at.filter(|_| next_local.len() < 3) {
        next_local.push(format_local(t, &row.tz));
        at = next_slot(row, t);
    }
    ScheduleInfo {
        id: row.id.clone(),
        app: row.app.clone(),
        env: row.env.clone(),
        what: row.what.clone(),
        at_ms: row.at_ms,
        cron: row.cron.clone(),
        tz: row.tz.clone(),
        lock_wait_secs: row.lock_wait_secs,
        grace_secs: row.grace_secs,
        user: row.user.clone(),
        paused: row.paused,
        created_ms: row.created_ms,
        next_ms: row.next_ms,
        next_local,
        runs,
    }
}

/// `what`: an exact version, `latest`, a specifier, or `promote:ENV`; the version
/// request is checked as `release` checks it (`input.rs`).
fn check_what(what: &str) -> Result<()> {
    if let Some(env) = what.strip_prefix("promote:") {
        return deploy_wire::names::check_ident("environment", env)
            .map_err(|e| ServiceError::Invalid(format!("what: {e}")));
    }
    super::input::what_to_deploy("what", what)
}

impl JobService {
    pub async fn add_schedule(&self, p: &Principal, req: ScheduleRequest) -> Result<ScheduleInfo> {
        let target = format!("{}/{} {}", req.app, req.env, req.what);
        check_what(&req.what)?;
        self.env_to_act_on(p, "schedule", &req.app, &req.env, &target)
            .await?;
        if let Some(from) = req.what.strip_prefix("promote:") {
            self.visible_env(p, &req.app, from, &target).await?;
        }
        let token_id = p.token.clone().ok_or_else(|| {
            ServiceError::Invalid(
                "a schedule is made with a token (its runs act with its rights)".into(),
            )
        })?;
        let tz = req.tz.unwrap_or_else(|| "UTC".into());
        check_tz(&tz).map_err(ServiceError::Invalid)?;
        for (field, secs) in [
            ("lock_wait_secs", req.lock_wait_secs),
            ("grace_secs", req.grace_secs),
        ] {
            if secs.is_some_and(|s| s > MAX_WAIT_SECS) {
                return Err(ServiceError::Invalid(format!(
                    "{field} is at most {MAX_WAIT_SECS} (a day)"
                )));
            }
        }
        let now = now_ms();
        let (at_ms, cron) = match (&req.at, &req.cron) {
            (Some(at), None) => {
                let t =
                    parse_at(at, &tz).map_err(|e| ServiceError::Invalid(format!("--at: {e}")))?;
                if t <= now {
                    return Err(ServiceError::Invalid(format!(
                        "--at {at} ({tz}) is in the past"
                    )));
                }
                (Some(t), None)
            }
            (None, Some(expr)) => {
                Cron::parse(expr, &tz)
                    .map_err(|e| ServiceError::Invalid(format!("--cron: {e}")))?;
                (None, Some(expr.clone()))
            }
            _ => return Err(ServiceError::Invalid("give either --at or --cron".into())),
        };
        let mut row = ScheduleRow {
            // Random, not the clock: gateways sharing a database create schedules too.
            id: format!(
                "s{}",
                crate::gateway::auth::new_token()
                    .map_err(|e| ServiceError::Internal(e.to_string()))?
                    .0
            ),
            app: req.app,
            env: req.env,
            what: req.what,
            at_ms,
            cron,
            tz,
            lock_wait_secs: req.lock_wait_secs.unwrap_or(LOCK_WAIT_SECS),
            grace_secs: req.grace_secs.unwrap_or(GRACE_SECS),
            user: p.user.clone(),
            token_id,
            paused: false,
            created_ms: now,
            next_ms: None,
        };
        row.next_ms = next_slot(&row, now);
        let stored = row.clone();
        self.db().call(move |s| s.add_schedule(&stored)).await?;
        self.audit(
            &p.user,
            "schedule",
            &format!("{target} ({})", row.id),
            "accepted",
        )
        .await;
        Ok(info(&row, Vec::new()))
    }

    /// Schedules of the environments the principal may read.
    pub async fn schedules_for(&self, p: &Principal) -> Result<Vec<ScheduleInfo>> {
        let rows = self.db().call(|s| s.schedules(None)).await?;
        Ok(rows
            .iter()
            .filter(|r| p.may_read(&r.env))
            .map(|r| info(r, Vec::new()))
            .collect())
    }

    /// One schedule, with its recent runs.
    pub async fn schedule_for(&self, p: &Principal, id: &str) -> Result<ScheduleInfo> {
        let row = self.schedule_row(id).await?;
        self.readable(p, &row.env, &format!("schedule {id}"))
            .await?;
        let sid = id.to_string();
        let runs = self
            .db()
            .call(move |s| s.schedule_runs(&sid, RUNS_SHOWN))
            .await?;
        Ok(info(&row, runs))
    }

    async fn schedule_row(&self, id: &str) -> Result<ScheduleRow> {
        let sid = id.to_string();
        let rows = self.db().call(move |s| s.schedules(Some(&sid))).await?;
        rows.into_iter()
            .next()
            .ok_or_else(|| ServiceError::NotFound(format!("no schedule {id}")))
    }

    /// `pause`, `resume` or `rm`, by someone who may act on its environment.
    pub async fn change_schedule(&self, p: &Principal, id: &str, change: &str) -> Result<()> {
        let row = self.schedule_row(id).await?;
        self.authorise(p, &format!("schedule {change}"), &row.env, id)
            .await?;
        let sid = id.to_string();
        let now = now_ms();
        let done = match change {
            "pause" => {
                self.db()
                    .call(move |s| s.set_schedule_paused(&sid, true))
                    .await?
            }
            "resume" => {
                // A recurring schedule goes on from now, not from the slots it slept through.
                let next = if row.cron.is_some() {
                    next_slot(&row, now)
                } else {
                    row.next_ms
                };
                self.db()
                    .call(move |s| {
                        Ok(s.set_schedule_paused(&sid, false)?
                            && s.set_schedule_next(&sid, next)?)
                    })
                    .await?
            }
            _ => {
                self.db()
                    .call(move |s| s.remove_schedule(&sid, now))
                    .await?
            }
        };
        if !done {
            return Err(ServiceError::NotFound(format!("no schedule {id}")));
        }
        self.audit(&p.user, &format!("schedule {change}"), id, "accepted")
            .await;
        Ok(())
    }

    /// Submits one run of a schedule with its author's token's rights, as now.
    pub async fn submit_scheduled(&self, row: &ScheduleRow) -> Result<JobInfo> {
        let source = format!("schedule {}", row.id);
        let p = self.token_principal(&row.token_id, &source).await?;
        if let Some(from) = row.what.strip_prefix("promote:") {
            let req = PromoteRequest {
                app: row.app.clone(),
                from: from.to_string(),
                to: row.env.clone(),
                check: false,
                batch: None,
            };
            return self.promote_as(&p, req, Some(source)).await;
        }
        let order = Order {
            kind: JobKind::Deploy,
            app: row.app.clone(),
            env: row.env.clone(),
            wanted: Wanted::Version {
                request: row.what.clone(),
                pre: false,
            },
            batch: None,
            force: None,
            triggered_by: Some(source),
            if_newer: false,
        };
        self.submit(&p, order).await
    }
}
