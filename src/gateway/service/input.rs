//! One validation per kind of input, shared by every command that takes it: what to
//! deploy (release, rollback `--to`, a schedule's `what`), and an application's
//! environment (release, rollback, restart, run, schedules, promote, status, logs,
//! changes, diff).
//!
//! Decision: an environment that does not exist and one the token may not read get the
//! same answer, 404 `unknown_environment` with the same words (exit 2 in the CLI, the
//! README's "unknown app/env" row), so a token learns nothing of environments it cannot
//! read.  A token that may read an environment but not act on it still gets 403 (exit 4):
//! it knows the environment exists.  An unknown application gets that answer too.

use super::{JobService, Result, ServiceError};
use crate::gateway::auth::Principal;

/// What a user asked to deploy: `latest`, an exact version or a specifier set
/// (`crate::versions::check_request`), under the field name the command gives it.
pub(super) fn what_to_deploy(field: &str, what: &str) -> Result<()> {
    crate::versions::check_request(what).map_err(|e| ServiceError::Invalid(format!("{field}: {e}")))
}

/// The one answer for an environment of `app` that does not exist or that `p` may not
/// read: the same words either way, naming only the environments `p` may read.
fn unknown(p: &Principal, app: &str, inv: &crate::inventory::Inventory, env: &str) -> ServiceError {
    let readable: Vec<&str> = inv
        .apps
        .get(app)
        .into_iter()
        .flat_map(|a| a.environments.keys())
        .filter(|e| p.may_read(e))
        .map(String::as_str)
        .collect();
    let known = match readable.as_slice() {
        [] => String::new(),
        list => format!(" (yours: {})", list.join(", ")),
    };
    ServiceError::UnknownEnvironment(format!(
        "application {app} has no environment {env} that this token may read{known}"
    ))
}

fn has_env(inv: &crate::inventory::Inventory, app: &str, env: &str) -> bool {
    inv.apps
        .get(app)
        .is_some_and(|a| a.environments.contains_key(env))
}

/// Application and environment names, as every command checks them first.
fn check_names(app: &str, env: &str) -> Result<()> {
    let invalid = |e: deploy_wire::names::NameError| ServiceError::Invalid(e.to_string());
    deploy_wire::names::check_ident("application name", app).map_err(invalid)?;
    deploy_wire::names::check_ident("environment name", env).map_err(invalid)
}

impl JobService {
    /// Reads: `env` of `app`, if it exists and the principal may read it; otherwise the
    /// one answer of [`unknown`] (a refusal of an existing environment is audited, with
    /// the rate limit of read refusals).  An unknown application gets the same answer (the
    /// inventory's own error would list every application).
    pub(super) async fn visible_env(
        &self,
        p: &Principal,
        app: &str,
        env: &str,
        what: &str,
    ) -> Result<()> {
        check_names(app, env)?;
        let inv = self.jobs.inventory()?;
        if !has_env(&inv, app, env) || self.readable(p, env, what).await.is_err() {
            return Err(unknown(p, app, &inv, env));
        }
        Ok(())
    }

    /// Writes (`action` on `target`): `env` of `app` as [`Self::visible_env`] answers it,
    /// each refusal audited (one row each, as every refused write), then the right to act
    /// on it (403 for a token that may only read it: it knows the environment exists).
    pub(super) async fn env_to_act_on(
        &self,
        p: &Principal,
        action: &str,
        app: &str,
        env: &str,
        target: &str,
    ) -> Result<()> {
        check_names(app, env)?;
        let inv = self.jobs.inventory()?;
        if !has_env(&inv, app, env) || !p.may_read(env) {
            self.audit(&p.user, action, target, "refused: unknown environment")
                .await;
            return Err(unknown(p, app, &inv, env));
        }
        self.authorise(p, action, env, target).await
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
