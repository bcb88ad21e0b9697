//! Schedule and freeze routes: thin handlers over the job service.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use deploy_wire::schedule::{FreezeInfo, FreezeRequest, ScheduleInfo, ScheduleRequest};

use super::{ApiErr, AppJson, AppPath, AppState};
use crate::gateway::auth::Principal;

#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", request_body = ScheduleRequest,
    responses((status = 201, description = "the schedule", body = ScheduleInfo)))]
pub async fn add(
    State(st): State<AppState>,
    p: Principal,
    AppJson(req): AppJson<ScheduleRequest>,
) -> Result<(StatusCode, Json<ScheduleInfo>), ApiErr> {
    Ok((
        StatusCode::CREATED,
        Json(st.svc.add_schedule(&p, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/schedules", tag = "schedules",
    responses((status = 200, description = "the schedules the token may read", body = Vec<ScheduleInfo>)))]
pub async fn list(
    State(st): State<AppState>,
    p: Principal,
) -> Result<Json<Vec<ScheduleInfo>>, ApiErr> {
    Ok(Json(st.svc.schedules_for(&p).await?))
}

#[utoipa::path(get, path = "/v1/schedules/{id}", tag = "schedules", params(("id" = String, Path, description = "the schedule's id")),
    responses((status = 200, description = "the schedule", body = ScheduleInfo)))]
pub async fn show(
    State(st): State<AppState>,
    p: Principal,
    AppPath(id): AppPath<String>,
) -> Result<Json<ScheduleInfo>, ApiErr> {
    Ok(Json(st.svc.schedule_for(&p, &id).await?))
}

async fn change(
    st: AppState,
    p: Principal,
    id: String,
    what: &str,
) -> Result<Json<ScheduleInfo>, ApiErr> {
    st.svc.change_schedule(&p, &id, what).await?;
    Ok(Json(st.svc.schedule_for(&p, &id).await?))
}

#[utoipa::path(post, path = "/v1/schedules/{id}/pause", tag = "schedules", params(("id" = String, Path, description = "the schedule's id")),
    responses((status = 200, description = "the schedule, paused", body = ScheduleInfo)))]
pub async fn pause(
    State(st): State<AppState>,
    p: Principal,
    AppPath(id): AppPath<String>,
) -> Result<Json<ScheduleInfo>, ApiErr> {
    change(st, p, id, "pause").await
}

#[utoipa::path(post, path = "/v1/schedules/{id}/resume", tag = "schedules", params(("id" = String, Path, description = "the schedule's id")),
    responses((status = 200, description = "the schedule, resumed", body = ScheduleInfo)))]
pub async fn resume(
    State(st): State<AppState>,
    p: Principal,
    AppPath(id): AppPath<String>,
) -> Result<Json<ScheduleInfo>, ApiErr> {
    change(st, p, id, "resume").await
}

#[utoipa::path(delete, path = "/v1/schedules/{id}", tag = "schedules", params(("id" = String, Path, description = "the schedule's id")),
    responses((status = 204, description = "removed")))]
pub async fn remove(
    State(st): State<AppState>,
    p: Principal,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiErr> {
    st.svc.change_schedule(&p, &id, "rm").await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/freezes", tag = "schedules", request_body = FreezeRequest,
    responses((status = 201, description = "the freeze", body = FreezeInfo)))]
pub async fn freeze(
    State(st): State<AppState>,
    p: Principal,
    AppJson(req): AppJson<FreezeRequest>,
) -> Result<(StatusCode, Json<FreezeInfo>), ApiErr> {
    Ok((StatusCode::CREATED, Json(st.svc.freeze(&p, req).await?)))
}

#[utoipa::path(get, path = "/v1/freezes", tag = "schedules",
    responses((status = 200, description = "the freezes in force that the token may read", body = Vec<FreezeInfo>)))]
pub async fn freezes(
    State(st): State<AppState>,
    p: Principal,
) -> Result<Json<Vec<FreezeInfo>>, ApiErr> {
    Ok(Json(st.svc.freezes_for(&p).await?))
}

#[utoipa::path(delete, path = "/v1/freezes/{id}", tag = "schedules",
    params(("id" = String, Path, description = "the frozen environment")),
    responses((status = 204, description = "the freeze is lifted")))]
pub async fn unfreeze(
    State(st): State<AppState>,
    p: Principal,
    AppPath(env): AppPath<String>,
) -> Result<StatusCode, ApiErr> {
    st.svc.unfreeze(&p, &env).await?;
    Ok(StatusCode::NO_CONTENT)
}
