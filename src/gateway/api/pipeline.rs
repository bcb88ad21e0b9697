//! Pipeline routes: start a build, what a release changes, promote one environment's
//! release to another, and compare two environments.  Thin: parse, call the job service.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use deploy_wire::api::JobInfo;
use deploy_wire::pipeline::{
    BuildRequest, BuildResponse, ChangesResponse, DiffResponse, PromoteRequest,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiErr, AppJson, AppPath, AppQuery, AppState};
use crate::gateway::auth::Principal;

/// `POST /v1/builds`: 202 with the job when a build starts, 200 with the build on
/// record when the commit was built already.
#[utoipa::path(post, path = "/v1/builds", tag = "pipeline", request_body = BuildRequest,
    responses((status = 200, description = "a build of that commit is recorded: nothing started", body = BuildResponse),
        (status = 202, description = "the build job, started", body = BuildResponse)))]
pub async fn build(
    State(st): State<AppState>,
    p: Principal,
    AppJson(req): AppJson<BuildRequest>,
) -> Result<(StatusCode, Json<BuildResponse>), ApiErr> {
    let r = st.svc.build(&p, req).await?;
    let status = if r.job.is_some() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(r)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// The environment whose running release is the start.
    #[param(example = "staging")]
    env: String,
    /// The candidate version (default: the newest).
    version: Option<String>,
    /// The candidate as a git ref instead of a version.
    #[serde(rename = "ref")]
    reference: Option<String>,
}

/// `GET /v1/apps/{app}/changes?env=E[&version=V|&ref=R]`.
#[utoipa::path(get, path = "/v1/apps/{app}/changes", tag = "pipeline", params(("app" = String, Path, description = "the application's name", example = "hello"), ChangesQuery),
    responses((status = 200, description = "what the candidate changes against what runs", body = ChangesResponse)))]
pub async fn changes(
    State(st): State<AppState>,
    p: Principal,
    AppPath(app): AppPath<String>,
    AppQuery(q): AppQuery<ChangesQuery>,
) -> Result<Json<ChangesResponse>, ApiErr> {
    Ok(Json(
        st.svc
            .changes(&p, &app, &q.env, q.version, q.reference)
            .await?,
    ))
}

/// `POST /v1/promotions`.
#[utoipa::path(post, path = "/v1/promotions", tag = "pipeline", request_body = PromoteRequest,
    responses((status = 202, description = "the deploy job, started", body = JobInfo)))]
pub async fn promote(
    State(st): State<AppState>,
    p: Principal,
    AppJson(req): AppJson<PromoteRequest>,
) -> Result<(StatusCode, Json<JobInfo>), ApiErr> {
    Ok((StatusCode::ACCEPTED, Json(st.svc.promote(&p, req).await?)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// One environment.
    a: String,
    /// The other.
    b: String,
}

/// `GET /v1/apps/{app}/diff?a=E1&b=E2`.
#[utoipa::path(get, path = "/v1/apps/{app}/diff", tag = "pipeline", params(("app" = String, Path, description = "the application's name", example = "hello"), DiffQuery),
    responses((status = 200, description = "what runs in each environment", body = DiffResponse)))]
pub async fn diff(
    State(st): State<AppState>,
    p: Principal,
    AppPath(app): AppPath<String>,
    AppQuery(q): AppQuery<DiffQuery>,
) -> Result<Json<DiffResponse>, ApiErr> {
    Ok(Json(st.svc.diff(&p, &app, &q.a, &q.b).await?))
}
