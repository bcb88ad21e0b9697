//! Which release a rollback without `--to` goes to: the one deployed before the current
//! one, chosen from the history of deploy jobs that succeeded (never from rollbacks, so
//! rolling back twice walks further back and never returns to the release left).
//!
//! "Current" is what the environment serves by the gateway's record (the newest live row
//! of its hosts, written on each switch; the ledger for hosts switched before that record
//! existed).  Rolling back again from there goes one more step back: after deploys of 1,
//! 2 and 3, the first rollback goes to 2 and the second to 1.

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
        let Some(target) = rollback_target(&history, current.as_deref()) else {
            let now = current.as_deref().unwrap_or("nothing recorded");
            return Err(ServiceError::Conflict(format!(
                "no release of {app} was deployed on {env} before the current one ({now}); use --to VERSION"
            )));
        };
        Ok(RollbackTarget {
            app: app.to_string(),
            env: env.to_string(),
            current,
            target,
        })
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
}
