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

use super::{ApiErr, AppJson, AppPath, AppQuery, AppState};
use crate::gateway::auth::Principal;

/// `POST /v1/builds`: 202 with the job when a build starts, 200 with the build on
/// record when the commit was built already.
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

#[derive(Deserialize)]
pub struct ChangesQuery {
    env: String,
    version: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
}

/// `GET /v1/apps/{app}/changes?env=E[&version=V|&ref=R]`.
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
pub async fn promote(
    State(st): State<AppState>,
    p: Principal,
    AppJson(req): AppJson<PromoteRequest>,
) -> Result<(StatusCode, Json<JobInfo>), ApiErr> {
    Ok((StatusCode::ACCEPTED, Json(st.svc.promote(&p, req).await?)))
}

#[derive(Deserialize)]
pub struct DiffQuery {
    a: String,
    b: String,
}

/// `GET /v1/apps/{app}/diff?a=E1&b=E2`.
pub async fn diff(
    State(st): State<AppState>,
    p: Principal,
    AppPath(app): AppPath<String>,
    AppQuery(q): AppQuery<DiffQuery>,
) -> Result<Json<DiffResponse>, ApiErr> {
    Ok(Json(st.svc.diff(&p, &app, &q.a, &q.b).await?))
}
