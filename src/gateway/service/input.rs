//! One validation per kind of input, shared by every command that takes it: what to
//! deploy (release, rollback `--to`, a schedule's `what`), and an application's
//! environment (release, rollback, restart, run, schedules, promote, status, logs,
//! changes, diff).
//!
//! Decision: an environment that does not exist and one the token may not read get the
//! same answer, 404 `unknown_environment` with the same words (exit 2 in the CLI, the
//! README's "unknown app/env" row), so a token learns nothing of environments it cannot
//! read.  A token that may read an environment but not act on it still gets 403 (exit 4):
//! it knows the environment exists.

use super::{JobService, Result, ServiceError};
use crate::gateway::auth::Principal;

/// What a user asked to deploy: `latest`, an exact version or a specifier set
/// (`crate::versions::check_request`), under the field name the command gives it.
pub(super) fn what_to_deploy(field: &str, what: &str) -> Result<()> {
    crate::versions::check_request(what)
        .map_err(|e| ServiceError::Invalid(format!("{field}: {e}")))
}

/// The one answer for an environment of `app` that does not exist or that `p` may not
/// read.
fn unknown(app: &str, env: &str) -> ServiceError {
    ServiceError::UnknownEnvironment(format!(
        "application {app} has no environment {env} that this token may read"
    ))
}

impl JobService {
    /// `env` of `app`, if it exists and the principal may read it; otherwise the one
    /// answer of [`unknown`] (a refusal of an existing environment is audited, with the
    /// rate limit of read refusals).  An unknown application is 404 `not_found`.
    pub(super) async fn visible_env(
        &self,
        p: &Principal,
        app: &str,
        env: &str,
        what: &str,
    ) -> Result<()> {
        let inv = self.jobs.inventory()?;
        let a = inv
            .app(app)
            .map_err(|e| ServiceError::NotFound(e.message))?;
        if !a.environments.contains_key(env) {
            return Err(unknown(app, env));
        }
        if self.readable(p, env, what).await.is_err() {
            return Err(unknown(app, env));
        }
        Ok(())
    }

    /// An environment of any application (freezes are per environment), with the same
    /// answer as [`Self::visible_env`] when none has it or the principal may not read it.
    pub(super) async fn visible_env_anywhere(
        &self,
        p: &Principal,
        env: &str,
        what: &str,
    ) -> Result<()> {
        let inv = self.jobs.inventory()?;
        let exists = inv.apps.values().any(|a| a.environments.contains_key(env));
        if !exists || self.readable(p, env, what).await.is_err() {
            return Err(ServiceError::UnknownEnvironment(format!(
                "no application has an environment {env} that this token may read"
            )));
        }
        Ok(())
    }
}
