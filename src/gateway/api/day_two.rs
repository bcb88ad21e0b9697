//! Day-two routes: start a restart or a one-off command (jobs, through the job service),
//! and stream a process's log from the servers as Server-Sent Events (`line` events
//! carrying a [`LogLine`], then `end` once every host's `tail` ended; a keep-alive
//! comment every [`LOG_KEEP_ALIVE`], so a client that went away is noticed soon and the
//! remote `tail` ends).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use deploy_wire::api::{JobInfo, LogLine, RestartRequest, RunRequest};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiErr, AppJson, AppPath, AppQuery, AppState};
use crate::gateway::auth::Principal;
use crate::gateway::service::{LogStream, LogsRequest};

/// How often an idle log stream sends a comment: writing to a client that went away
/// fails, which drops the stream and closes the hosts' connections.
pub const LOG_KEEP_ALIVE: Duration = Duration::from_secs(2);

type Accepted = Result<(StatusCode, Json<JobInfo>), ApiErr>;

#[utoipa::path(post, path = "/v1/restarts", tag = "day two", request_body = RestartRequest,
    responses((status = 202, description = "the job, started", body = JobInfo)))]
pub async fn restart(
    State(st): State<AppState>,
    p: Principal,
    AppJson(req): AppJson<RestartRequest>,
) -> Accepted {
    let job = st.svc.restart(&p, req).await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

#[utoipa::path(post, path = "/v1/runs", tag = "day two", request_body = RunRequest,
    responses((status = 202, description = "the job, started", body = JobInfo)))]
pub async fn run(
    State(st): State<AppState>,
    p: Principal,
    AppJson(req): AppJson<RunRequest>,
) -> Accepted {
    let job = st.svc.run_command(&p, req).await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// The environment.
    #[param(example = "staging")]
    env: String,
    /// One host (default: every host of the environment).
    host: Option<String>,
    /// One process (default: the web slot).
    process: Option<String>,
    /// How many lines back to start.
    lines: Option<u32>,
    /// Keep following new lines.
    #[serde(default)]
    follow: bool,
}

/// `GET /v1/apps/{app}/logs?env=E[&host=H][&process=P][&lines=N][&follow=true]`.
#[utoipa::path(get, path = "/v1/apps/{app}/logs", tag = "day two", params(("app" = String, Path, description = "the application's name", example = "hello"), LogsQuery),
    responses((status = 200, content_type = "text/event-stream", body = super::SseFrame,
        description = "Server-Sent Events: `line` frames (data: a LogLine), then one `end` frame")))]
pub async fn logs(
    State(st): State<AppState>,
    p: Principal,
    AppPath(app): AppPath<String>,
    AppQuery(q): AppQuery<LogsQuery>,
) -> Result<Response, ApiErr> {
    let req = LogsRequest {
        env: q.env,
        host: q.host,
        process: q.process,
        lines: q.lines,
        follow: q.follow,
    };
    let lines = st.svc.app_logs(&p, &app, req).await?;
    let stream = futures_util::stream::unfold(Some(lines), |s| async move {
        let mut s: LogStream = s?;
        let event = match s.next().await {
            Some(line) => (frame(&line), Some(s)),
            None => (SseEvent::default().event("end").data("done"), None),
        };
        Some((Ok::<_, Infallible>(event.0), event.1))
    });
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(LOG_KEEP_ALIVE))
        .into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

fn frame(line: &LogLine) -> SseEvent {
    let data = serde_json::to_string(line).expect("log lines serialize");
    SseEvent::default().event("line").data(data)
}
