//! Jobs: start a deploy or rollback (through the job service), list and show jobs,
//! cancel one, and read its events: stored (`/log`) or as Server-Sent Events
//! (`/events`, resumable with `Last-Event-ID`; a keep-alive comment every
//! [`KEEP_ALIVE`], well under the CLI's read timeout).  Reads need the job's environment
//! in the token's read scope.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use deploy_wire::api::{DeployRequest, JobInfo, RollbackRequest, StoredEvent};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiErr, AppJson, AppPath, AppQuery, AppState};
use crate::gateway::auth::Principal;
use crate::gateway::events::Tail;
use crate::gateway::service::ServiceError;

type Accepted = Result<(StatusCode, Json<JobInfo>), ApiErr>;

/// How often an idle event stream sends a comment (the CLI gives up on a stream after
/// 60 s without a byte).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[utoipa::path(post, path = "/v1/deployments", tag = "jobs", request_body = DeployRequest,
    responses((status = 202, description = "the job, started", body = JobInfo)))]
pub async fn deploy(
    State(st): State<AppState>,
    p: Principal,
    AppJson(req): AppJson<DeployRequest>,
) -> Accepted {
    let job = st.svc.deploy(&p, req).await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

#[utoipa::path(post, path = "/v1/rollbacks", tag = "jobs", request_body = RollbackRequest,
    responses((status = 202, description = "the job, started", body = JobInfo)))]
pub async fn rollback(
    State(st): State<AppState>,
    p: Principal,
    AppJson(req): AppJson<RollbackRequest>,
) -> Accepted {
    let job = st.svc.rollback(&p, req).await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Limit {
    /// At most this many (default 20).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(Limit),
    responses((status = 200, description = "the newest jobs the token may read, newest first", body = Vec<JobInfo>)))]
pub async fn list(
    State(st): State<AppState>,
    p: Principal,
    AppQuery(q): AppQuery<Limit>,
) -> Result<Json<Vec<JobInfo>>, ApiErr> {
    let limit = super::limit(q.limit, 20, 1000)?;
    Ok(Json(st.svc.jobs_for(&p, limit).await?))
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "the job's id")),
    responses((status = 200, description = "the job", body = JobInfo)))]
pub async fn show(
    State(st): State<AppState>,
    p: Principal,
    AppPath(id): AppPath<String>,
) -> Result<Json<JobInfo>, ApiErr> {
    Ok(Json(st.svc.job_for(&p, &id).await?))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path, description = "the job's id")),
    responses((status = 200, description = "the job, as it is after the cancel request", body = JobInfo)))]
pub async fn cancel(
    State(st): State<AppState>,
    p: Principal,
    AppPath(id): AppPath<String>,
) -> Result<Json<JobInfo>, ApiErr> {
    Ok(Json(st.svc.cancel(&p, &id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct After {
    /// Only events after this sequence number (a `Last-Event-ID` header wins).
    #[param(maximum = 9223372036854775807_u64)]
    after: Option<u64>,
}

/// SSE: every stored event with `seq > Last-Event-ID` (or `?after=`), then live ones, each
/// with `id: seq`; ends with an `end` event once the job is finished and all is sent.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs", params(("id" = String, Path, description = "the job's id"), After),
    responses((status = 200, content_type = "text/event-stream", body = super::SseFrame,
        description = "Server-Sent Events: `event` frames (id: the sequence number; data: an Event), then one `end` frame (data: the job's state)")))]
pub async fn events(
    State(st): State<AppState>,
    p: Principal,
    AppPath(id): AppPath<String>,
    AppQuery(q): AppQuery<After>,
    headers: HeaderMap,
) -> Result<Response, ApiErr> {
    st.svc.job_for(&p, &id).await?;
    let tail = st
        .svc
        .follow_events(id, resume_after(&headers, seq(q.after)?))?;
    let stream = futures_util::stream::unfold(tail, |mut rx| async move {
        let event = match rx.recv().await? {
            Tail::Event { seq, data } => SseEvent::default()
                .id(seq.to_string())
                .event("event")
                .data(data),
            Tail::End(state) => SseEvent::default().event("end").data(state.as_str()),
        };
        Some((Ok::<_, Infallible>(event), rx))
    });
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// An `after` sequence number: the store's are signed 64-bit, so larger ones are
/// refused (400), as the document says.
fn seq(after: Option<u64>) -> Result<Option<u64>, ApiErr> {
    match after {
        Some(n) if n > i64::MAX as u64 => Err(ServiceError::Invalid(format!(
            "bad query: `after` is at most {} (got {n})",
            i64::MAX
        ))
        .into()),
        ok => Ok(ok),
    }
}

/// Where a resumed event stream starts: after `Last-Event-ID` (what a browser's
/// EventSource sends on a reconnect), else after `?after=`, else from the start.
pub fn resume_after(headers: &HeaderMap, after: Option<u64>) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(after)
        .unwrap_or(0)
}

/// The stored events of a job, as JSON (no streaming).
#[utoipa::path(get, path = "/v1/jobs/{id}/log", tag = "jobs", params(("id" = String, Path, description = "the job's id"), After),
    responses((status = 200, description = "the job's stored events", body = Vec<StoredEvent>)))]
pub async fn log(
    State(st): State<AppState>,
    p: Principal,
    AppPath(id): AppPath<String>,
    AppQuery(q): AppQuery<After>,
) -> Result<Json<Vec<StoredEvent>>, ApiErr> {
    st.svc.job_for(&p, &id).await?;
    let after = seq(q.after)?.unwrap_or(0);
    let rows = st
        .svc
        .db()
        .call(move |s| s.events_after(&id, after, 1_000_000))
        .await?;
    let parse = |(seq, data): (u64, String)| {
        serde_json::from_str(&data)
            .ok()
            .map(|event| StoredEvent { seq, event })
    };
    Ok(Json(rows.into_iter().filter_map(parse).collect()))
}
