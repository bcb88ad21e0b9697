//! Applications and hosts: `/v1/apps`, `/v1/hosts`, an application's status (which
//! release runs where, from the gateway's record; with `?live=true` also from the hosts),
//! its versions (from its artifact source) and what a rollback would choose.  Who sees
//! what is the job service's decision.

use axum::Json;
use axum::extract::State;
use deploy_wire::api::{AppInfo, HostInfo, HostRelease, RollbackTarget, VersionInfo};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiErr, AppPath, AppQuery, AppState};
use crate::gateway::auth::Principal;

type ApiResult<T> = Result<Json<T>, ApiErr>;

#[utoipa::path(get, path = "/v1/apps", tag = "apps",
    responses((status = 200, description = "the applications the token may read", body = Vec<AppInfo>)))]
pub async fn apps(State(st): State<AppState>, p: Principal) -> ApiResult<Vec<AppInfo>> {
    Ok(Json(st.svc.apps(&p)?))
}

#[utoipa::path(get, path = "/v1/hosts", tag = "apps",
    responses((status = 200, description = "the inventory's hosts the token may read", body = Vec<HostInfo>)))]
pub async fn hosts(State(st): State<AppState>, p: Principal) -> ApiResult<Vec<HostInfo>> {
    Ok(Json(st.svc.hosts(&p)?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// Only this environment.
    #[param(example = "staging")]
    env: Option<String>,
    /// Also ask the hosts themselves.
    #[serde(default)]
    live: bool,
}

#[utoipa::path(get, path = "/v1/apps/{app}/status", tag = "apps", params(("app" = String, Path, description = "the application's name", example = "hello"), StatusQuery),
    responses((status = 200, description = "which release runs on which host", body = Vec<HostRelease>)))]
pub async fn status(
    State(st): State<AppState>,
    p: Principal,
    AppPath(name): AppPath<String>,
    AppQuery(q): AppQuery<StatusQuery>,
) -> ApiResult<Vec<HostRelease>> {
    let rows = st.svc.status(&p, &name, q.env.as_deref(), q.live).await?;
    Ok(Json(rows))
}

#[utoipa::path(get, path = "/v1/apps/{app}/versions", tag = "apps", params(("app" = String, Path, description = "the application's name", example = "hello")),
    responses((status = 200, description = "the versions its artifact source has, newest first", body = Vec<VersionInfo>)))]
pub async fn versions(
    State(st): State<AppState>,
    p: Principal,
    AppPath(name): AppPath<String>,
) -> ApiResult<Vec<VersionInfo>> {
    Ok(Json(st.svc.versions(&p, &name).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EnvQuery {
    /// The environment.
    #[param(example = "staging")]
    env: String,
}

/// What `deploy rollback` without `--to` would choose; nothing starts.
#[utoipa::path(get, path = "/v1/apps/{app}/rollback", tag = "apps", params(("app" = String, Path, description = "the application's name", example = "hello"), EnvQuery),
    responses((status = 200, description = "what a rollback without `to` would choose", body = RollbackTarget)))]
pub async fn rollback_target(
    State(st): State<AppState>,
    p: Principal,
    AppPath(name): AppPath<String>,
    AppQuery(q): AppQuery<EnvQuery>,
) -> ApiResult<RollbackTarget> {
    Ok(Json(st.svc.rollback_preview(&p, &name, &q.env).await?))
}
