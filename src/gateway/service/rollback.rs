//! Which release a rollback without `--to` goes to: the one deployed before the current
//! one, chosen from the history of deploy jobs that succeeded (never from rollbacks, so
//! rolling back twice walks further back and never returns to the release left).
//!
//! "Current" is what the environment serves by the gateway's record (the newest live row
//! of its hosts, written on each switch; the ledger for hosts switched before that record
//! existed).  Rolling back again from there goes one more step back: after deploys of 1,
//! 2 and 3, the first rollback goes to 2 and the second to 1.
//!
//! **Only a release still complete on every host** of the environment is a target (prune
//! may have removed an older one: after 1, 2, 3 and a rollback to 2, `keep_releases: 2`
//! keeps 2 and 3 only).  The hosts are asked (`engine::observe`, which lists each
//! host's complete releases) once the history has a candidate; a release pruned or
//! left partial on any host that answered is skipped for the next one back.  When none
//! is left, the rollback is refused (409, exit 2) naming the releases that are complete
//! everywhere.  A rollback `--to VERSION` is refused the same way when VERSION is not
//! complete on every host that answers.  Decision: a host that cannot be reached is not counted (the job fails
//! on it anyway, as any job does); when none answers, the history alone decides.

use std::collections::BTreeSet;
use std::sync::Arc;

use deploy_wire::api::RollbackTarget;

use super::{JobService, Result, ServiceError};
use crate::gateway::auth::Principal;

/// How far back the history is read.
const HISTORY: u32 = 1000;

/// The release deployed before `current`: `history` holds the versions of the deploys
/// that succeeded, newest first.  Without a current release, the newest deploy counts as
/// current.  None: nothing earlier.
pub fn rollback_target(history: &[String], current: Option<&str>) -> Option<String> {
    let current = current.or(history.first().map(String::as_str))?;
    let start = history.iter().position(|v| v == current)?;
    history[start + 1..]
        .iter()
        .find(|v| v.as_str() != current)
        .cloned()
}

/// [`rollback_target`], skipping releases not in `complete` (those complete on every
/// host; None: unknown, the history alone decides).  Err: every candidate was skipped
/// (or there was none), with the ones skipped, newest first.
pub fn complete_target(
    history: &[String],
    current: Option<&str>,
    complete: Option<&BTreeSet<String>>,
) -> std::result::Result<String, Vec<String>> {
    let Some(current) = current.or(history.first().map(String::as_str)) else {
        return Err(Vec::new());
    };
    let Some(start) = history.iter().position(|v| v == current) else {
        return Err(Vec::new());
    };
    let mut skipped: Vec<String> = Vec::new();
    for v in &history[start + 1..] {
        if v == current || skipped.contains(v) {
            continue;
        }
        if complete.is_none_or(|c| c.contains(v)) {
            return Ok(v.clone());
        }
        skipped.push(v.clone());
    }
    Err(skipped)
}

impl JobService {
    /// What `env` serves by the gateway's record: the newest record among its hosts.
    pub async fn current_release(&self, app: &str, env: &str) -> Result<Option<String>> {
        let inv = self.jobs.inventory()?;
        let a = inv
            .app(app)
            .map_err(|e| ServiceError::NotFound(e.message))?;
        let (_, hosts) = inv.hosts_for(a, env)?;
        let hosts: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
        let (app, env) = (app.to_string(), env.to_string());
        let newest = self
            .db()
            .call(move |s| {
                let mut best: Option<(u64, String)> = None;
                for h in &hosts {
                    let rec = match s.live_row(&app, &env, h)? {
                        Some(r) => Some((r.ts_ms, r.version)),
                        None => s.live(&app, &env, h)?.map(|l| (l.ts_ms, l.version)),
                    };
                    if rec.as_ref().map(|r| r.0) > best.as_ref().map(|b| b.0) {
                        best = rec;
                    }
                }
                Ok(best.map(|b| b.1))
            })
            .await?;
        Ok(newest)
    }

    /// The release before the current one on `env`, or a conflict naming why none.
    pub(super) async fn previous_release(&self, app: &str, env: &str) -> Result<String> {
        Ok(self.plan_rollback(app, env).await?.target)
    }

    async fn plan_rollback(&self, app: &str, env: &str) -> Result<RollbackTarget> {
        let current = self.current_release(app, env).await?;
        let (a, e) = (app.to_string(), env.to_string());
        let history = self
            .db()
            .call(move |s| s.deploy_history(&a, &e, HISTORY))
            .await?;
        let now = current.as_deref().unwrap_or("nothing recorded");
        if rollback_target(&history, current.as_deref()).is_none() {
            return Err(ServiceError::Conflict(format!(
                "no release of {app} was deployed on {env} before the current one ({now}); use --to VERSION"
            )));
        }
        let complete = self.complete_everywhere(app, env).await?;
        match complete_target(&history, current.as_deref(), complete.as_ref()) {
            Ok(target) => Ok(RollbackTarget {
                app: app.to_string(),
                env: env.to_string(),
                current,
                target,
            }),
            Err(skipped) => {
                let possible = possible_targets(complete.unwrap_or_default(), current.as_deref());
                Err(ServiceError::Conflict(format!(
                    "no release deployed on {env} before {now} is still complete on every host \
                     ({} pruned or incomplete on some); possible targets: {possible}; use --to VERSION",
                    skipped.join(", ")
                )))
            }
        }
    }

    /// A rollback `--to VERSION`: refused (409, exit 2) when VERSION is not complete on
    /// every host that answers (pruned, or never installed there), naming those that are,
    /// before anything starts; the hosts would refuse it one by one otherwise.
    pub(super) async fn check_rollback_to(
        &self,
        app: &str,
        env: &str,
        version: &str,
    ) -> Result<()> {
        let Some(complete) = self.complete_everywhere(app, env).await? else {
            return Ok(());
        };
        if complete.contains(version) {
            return Ok(());
        }
        let current = self.current_release(app, env).await?;
        let possible = possible_targets(complete, current.as_deref());
        Err(ServiceError::Conflict(format!(
            "{app} {version} is not complete on every host of {env} (pruned, or never installed there); possible targets: {possible}"
        )))
    }

    /// The releases complete on every host of `env` that answered (None: none did).
    async fn complete_everywhere(&self, app: &str, env: &str) -> Result<Option<BTreeSet<String>>> {
        let inv = self.jobs.inventory()?;
        let cfg = Arc::new(self.jobs.engine_config()?);
        let seen = crate::gateway::sites::observe::observe(&self.jobs, &inv, cfg, app, env).await?;
        let mut all: Option<BTreeSet<String>> = None;
        for view in seen.iter().filter_map(|o| o.view.as_ref().ok()) {
            let here: BTreeSet<String> = view.releases.iter().cloned().collect();
            all = Some(match all {
                None => here,
                Some(a) => a.intersection(&here).cloned().collect(),
            });
        }
        Ok(all)
    }

    /// What a rollback without a target would choose (nothing starts).
    pub async fn rollback_preview(
        &self,
        p: &Principal,
        app: &str,
        env: &str,
    ) -> Result<RollbackTarget> {
        self.visible_env(p, app, env, &format!("{app}/{env} rollback target"))
            .await?;
        self.plan_rollback(app, env).await
    }
}

/// The releases a rollback may go to, newest first, for a refusal's message: those
/// complete on every host, less the one running (`none` when nothing is left).
fn possible_targets(complete: BTreeSet<String>, current: Option<&str>) -> String {
    let mut possible: Vec<String> = (complete.into_iter())
        .filter(|v| Some(v.as_str()) != current)
        .collect();
    crate::versions::sort(&mut possible);
    possible.reverse();
    if possible.is_empty() {
        "none".to_string()
    } else {
        possible.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rolling_back_twice_walks_back_and_never_returns_to_the_release_left() {
        // Deploys of 1.0, 2.0, 3.0 succeeded (newest first); 3.0 is broken.
        let history = h(&["3.0", "2.0", "1.0"]);
        let first = rollback_target(&history, Some("3.0"));
        assert_eq!(first.as_deref(), Some("2.0"));
        // The rollback job is not in the history; the record now says 2.0.
        let second = rollback_target(&history, first.as_deref());
        assert_eq!(second.as_deref(), Some("1.0"), "back one more, never 3.0");
        assert_eq!(rollback_target(&history, Some("1.0")), None);
    }

    #[test]
    fn a_redeployed_release_counts_once_and_no_record_means_the_newest_deploy() {
        assert_eq!(
            rollback_target(&h(&["2.0", "2.0", "1.0"]), Some("2.0")).as_deref(),
            Some("1.0")
        );
        assert_eq!(
            rollback_target(&h(&["1.0", "2.0", "1.0"]), None).as_deref(),
            Some("2.0")
        );
        assert_eq!(rollback_target(&[], None), None);
        // A release that no deploy put there (a rollback --to of an old one): nothing known before it.
        assert_eq!(rollback_target(&h(&["2.0", "1.0"]), Some("0.9")), None);
    }

    #[test]
    fn a_release_pruned_on_some_host_is_skipped_for_the_next_one_back_or_refused() {
        let complete = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        // Deploys of 1, 2, 3 (newest first); rolled back to 2; prune kept 2 and 3.
        let history = h(&["3.0", "2.0", "1.0"]);
        assert_eq!(
            complete_target(&history, Some("2.0"), Some(&complete(&["2.0", "3.0"]))),
            Err(h(&["1.0"])),
            "1.0 was pruned: no target, and it says which was skipped"
        );
        // 2.0 pruned on one host but 1.0 complete everywhere: one further back.
        assert_eq!(
            complete_target(&history, Some("3.0"), Some(&complete(&["1.0", "3.0"]))),
            Ok("1.0".to_string())
        );
        // Hosts not asked (none answered): the history alone.
        assert_eq!(
            complete_target(&history, Some("3.0"), None),
            Ok("2.0".to_string())
        );
    }
}
