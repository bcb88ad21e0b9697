//! Applications and hosts: `/v1/apps`, `/v1/hosts`, an application's status (which
//! release runs where, from the gateway's record; with `?live=true` also from the hosts),
//! its versions (from its artifact source) and what a rollback would choose.  Who sees
//! what is the job service's decision.

use axum::Json;
use axum::extract::State;
use deploy_wire::api::{AppInfo, HostInfo, HostRelease, RollbackTarget, VersionInfo};
use serde::Deserialize;

use super::{ApiErr, AppPath, AppQuery, AppState};
use crate::gateway::auth::Principal;
use crate::gateway::service::ServiceError;

type ApiResult<T> = Result<Json<T>, ApiErr>;

pub async fn apps(State(st): State<AppState>, p: Principal) -> ApiResult<Vec<AppInfo>> {
    Ok(Json(st.svc.apps(&p)?))
}

pub async fn hosts(State(st): State<AppState>, p: Principal) -> ApiResult<Vec<HostInfo>> {
    Ok(Json(st.svc.hosts(&p)?))
}

#[derive(Deserialize)]
pub struct StatusQuery {
    env: Option<String>,
    /// Also ask the hosts themselves.
    #[serde(default)]
    live: bool,
}

pub async fn status(
    State(st): State<AppState>,
    p: Principal,
    AppPath(name): AppPath<String>,
    AppQuery(q): AppQuery<StatusQuery>,
) -> ApiResult<Vec<HostRelease>> {
    let rows = st.svc.status(&p, &name, q.env.as_deref(), q.live).await?;
    Ok(Json(rows))
}

pub async fn versions(
    State(st): State<AppState>,
    p: Principal,
    AppPath(name): AppPath<String>,
) -> ApiResult<Vec<VersionInfo>> {
    Ok(Json(st.svc.versions(&p, &name).await?))
}

#[derive(Deserialize)]
pub struct EnvQuery {
    env: Option<String>,
}

/// What `deploy rollback` without `--to` would choose; nothing starts.
pub async fn rollback_target(
    State(st): State<AppState>,
    p: Principal,
    AppPath(name): AppPath<String>,
    AppQuery(q): AppQuery<EnvQuery>,
) -> ApiResult<RollbackTarget> {
    let Some(env) = q.env else {
        return Err(ServiceError::Invalid("bad query: `env` is needed".into()).into());
    };
    Ok(Json(st.svc.rollback_preview(&p, &name, &env).await?))
}
