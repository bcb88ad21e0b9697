//! The HTTP API under `/v1`: routes, auth, the version handshake, JSON errors with stable
//! codes, and Server-Sent Events for a job's events (resumable with `Last-Event-ID`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, request::Parts};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deploy_wire::api::*;
use serde::Deserialize;

use super::auth::{self, Principal};
use super::config::GatewayConfig;
use super::jobs::{Jobs, SubmitError};

#[derive(Clone)]
pub struct AppState {
    cfg: Arc<GatewayConfig>,
    jobs: Jobs,
    /// For listings (bounded by a total timeout); the relay has its own client, because a
    /// large download must not be cut at 20 s.
    http: reqwest::Client,
}

impl AppState {
    pub fn new(cfg: Arc<GatewayConfig>, jobs: Jobs) -> AppState {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("http client");
        AppState { cfg, jobs, http }
    }
}

/// An error response: status + `{code, message, ...}`.
pub struct ApiErr(StatusCode, ApiError);

impl ApiErr {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiErr {
        ApiErr(
            status,
            ApiError {
                code: code.into(),
                message: message.into(),
                upgrade_command: None,
                holder: None,
                job_id: None,
            },
        )
    }
    fn internal(e: impl std::fmt::Display) -> ApiErr {
        eprintln!("deploy-gateway: internal error: {e}");
        ApiErr::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            "internal error; see the gateway's log",
        )
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiErr>;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/apps", get(apps))
        .route("/v1/hosts", get(hosts))
        .route("/v1/apps/{app}/status", get(status))
        .route("/v1/apps/{app}/versions", get(versions))
        .route("/v1/deployments", post(deploy))
        .route("/v1/rollbacks", post(rollback))
        .route("/v1/jobs", get(jobs))
        .route("/v1/jobs/{id}", get(job))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/events", get(events))
        .route("/v1/jobs/{id}/log", get(log))
        .route("/v1/ledger", get(ledger))
        .route("/v1/audit", get(audit))
        .route(
            "/v1/health",
            get(|| async { Json(serde_json::json!({"ok": true})) }),
        );
    api.layer(middleware::from_fn_with_state(
        state.clone(),
        handshake_and_log,
    ))
    .with_state(state)
}

/// Adds the supported CLI range to every response; refuses a too-old CLI with 426.
/// Requests without the header (curl, scripts) are served: the handshake is the CLI's.
async fn handshake_and_log(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let client = req
        .headers()
        .get(CLIENT_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let cli = &st.cfg.cli;
    let mut resp = match client
        .as_deref()
        .map(|c| (c, handshake(c, &cli.oldest, &cli.newest)))
    {
        Some((c, Handshake::TooOld | Handshake::Unparseable)) => {
            let mut e = ApiErr::new(
                StatusCode::UPGRADE_REQUIRED,
                codes::CLI_TOO_OLD,
                format!(
                    "this gateway needs deploy {} or newer (you have {c})",
                    cli.oldest
                ),
            );
            e.1.upgrade_command = Some(st.cfg.upgrade_command());
            e.into_response()
        }
        _ => next.run(req).await,
    };
    let h = resp.headers_mut();
    let upgrade = st.cfg.upgrade_command();
    for (name, value) in [
        (CLI_NEWEST_HEADER, &cli.newest),
        (CLI_OLDEST_HEADER, &cli.oldest),
        (CLI_UPGRADE_HEADER, &upgrade),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    // One log line per request; never headers (they hold tokens).
    eprintln!(
        "deploy-gateway: {method} {path} -> {}",
        resp.status().as_u16()
    );
    resp
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Principal, ApiErr> {
        let header = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let path = parts.uri.path().to_string();
        let Some(token) = auth::bearer(header) else {
            let _ = st
                .jobs
                .store
                .call(move |s| s.audit("anonymous", "request", &path, "refused: no token"))
                .await;
            return Err(ApiErr::new(
                StatusCode::UNAUTHORIZED,
                codes::UNAUTHENTICATED,
                "a token is needed: run `deploy login URL` or set DEPLOY_TOKEN",
            ));
        };
        let hash = auth::hash(token);
        let row = st
            .jobs
            .store
            .call(move |s| s.token_by_hash(&hash))
            .await
            .map_err(ApiErr::internal)?;
        match row {
            Some(t) => Ok(Principal {
                user: t.user,
                envs: t.envs,
                admin: t.admin,
            }),
            None => {
                let _ = st
                    .jobs
                    .store
                    .call(move |s| {
                        s.audit(
                            "anonymous",
                            "request",
                            &path,
                            "refused: unknown or revoked token",
                        )
                    })
                    .await;
                Err(ApiErr::new(
                    StatusCode::UNAUTHORIZED,
                    codes::UNAUTHENTICATED,
                    "unknown or revoked token",
                ))
            }
        }
    }
}

fn input_err(e: impl std::fmt::Display) -> ApiErr {
    ApiErr::new(StatusCode::BAD_REQUEST, codes::INVALID, e.to_string())
}

async fn apps(State(st): State<AppState>, _p: Principal) -> ApiResult<Vec<AppInfo>> {
    let inv = st.jobs.inventory().map_err(input_err)?;
    Ok(Json(
        inv.apps
            .values()
            .map(|a| AppInfo {
                name: a.name.clone(),
                package: a.package.clone(),
                environments: a
                    .environments
                    .values()
                    .map(|e| EnvironmentInfo {
                        name: e.name.clone(),
                        hosts: inv
                            .hosts_for(a, &e.name)
                            .map(|(_, h)| h.iter().map(|h| h.name.clone()).collect())
                            .unwrap_or_default(),
                        confirm: e.confirm,
                    })
                    .collect(),
            })
            .collect(),
    ))
}

async fn hosts(State(st): State<AppState>, _p: Principal) -> ApiResult<Vec<HostInfo>> {
    let inv = st.jobs.inventory().map_err(input_err)?;
    let pins = crate::pins::HostKeyPins::load(&st.cfg.known_hosts).map_err(input_err)?;
    Ok(Json(
        inv.hosts
            .values()
            .map(|h| HostInfo {
                name: h.name.clone(),
                address: h.address.clone(),
                port: h.port,
                user: h.user.clone(),
                groups: h.groups.clone(),
                pinned: pins.get(&h.address, h.port).is_some(),
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
struct EnvQuery {
    env: Option<String>,
}

async fn status(
    State(st): State<AppState>,
    _p: Principal,
    Path(app): Path<String>,
    Query(q): Query<EnvQuery>,
) -> ApiResult<Vec<HostRelease>> {
    let inv = st.jobs.inventory().map_err(input_err)?;
    let a = inv.app(&app).cloned().map_err(not_found)?;
    if let Some(env) = &q.env
        && !a.environments.contains_key(env)
    {
        return Err(ApiErr::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("application {app} has no environment {env}"),
        ));
    }
    let mut pairs = Vec::new();
    for e in a
        .environments
        .values()
        .filter(|e| q.env.as_deref().is_none_or(|w| w == e.name))
    {
        let (_, hosts) = inv.hosts_for(&a, &e.name).map_err(input_err)?;
        pairs.extend(hosts.iter().map(|h| (e.name.clone(), h.name.clone())));
    }
    let rows = st
        .jobs
        .store
        .call(move |s| {
            pairs
                .into_iter()
                .map(|(env, host)| {
                    let live = s.live(&app, &env, &host)?;
                    Ok(HostRelease {
                        env,
                        host,
                        version: live.as_ref().map(|l| l.version.clone()),
                        deployed_by: live.as_ref().map(|l| l.user.clone()),
                        deployed_at_ms: live.as_ref().map(|l| l.ts_ms),
                        job_id: live.map(|l| l.job_id),
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await
        .map_err(ApiErr::internal)?;
    Ok(Json(rows))
}

/// An unknown application or environment: 404 with the inventory's message.
fn not_found(e: crate::error::InputError) -> ApiErr {
    ApiErr::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, e.message)
}

/// The application's versions in its artifact source, oldest first.
async fn available_versions(
    st: &AppState,
    a: &crate::inventory::App,
) -> Result<Vec<String>, ApiErr> {
    let src = st
        .cfg
        .source_for(a)
        .map_err(|e| ApiErr::new(StatusCode::BAD_REQUEST, codes::INVALID, e))?;
    crate::artifacts::list_versions(&st.http, src.as_ref(), &a.package)
        .await
        .map_err(|e| ApiErr::new(StatusCode::BAD_GATEWAY, codes::UPSTREAM, e))
}

async fn versions(
    State(st): State<AppState>,
    _p: Principal,
    Path(app): Path<String>,
) -> ApiResult<Vec<VersionInfo>> {
    let inv = st.jobs.inventory().map_err(input_err)?;
    let a = inv.app(&app).cloned().map_err(not_found)?;
    let versions = available_versions(&st, &a).await?;
    let mut hosts = Vec::new();
    for e in a.environments.values() {
        for h in inv.hosts_for(&a, &e.name).map_err(input_err)?.1 {
            hosts.push((e.name.clone(), h.name.clone()));
        }
    }
    let live = st
        .jobs
        .store
        .call(move |s| {
            hosts
                .into_iter()
                .map(|(e, h)| Ok((format!("{e}/{h}"), s.live(&app, &e, &h)?.map(|l| l.version))))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await
        .map_err(ApiErr::internal)?;
    Ok(Json(
        versions
            .into_iter()
            .map(|v| VersionInfo {
                running_on: live
                    .iter()
                    .filter(|(_, lv)| lv.as_deref() == Some(v.as_str()))
                    .map(|(n, _)| n.clone())
                    .collect(),
                version: v,
            })
            .collect(),
    ))
}

/// Rollback: to `to`, or to the release that ran on the environment before the live one
/// (from the ledger).  Runs as a deploy that installs nothing.
async fn rollback(
    State(st): State<AppState>,
    p: Principal,
    Json(req): Json<RollbackRequest>,
) -> Result<(StatusCode, Json<JobInfo>), ApiErr> {
    let version = match req.to.clone() {
        Some(v) => v,
        None => {
            let (app, env) = (req.app.clone(), req.env.clone());
            let history = st
                .jobs
                .store
                .call(move |s| s.ledger(Some(&app), 10_000))
                .await
                .map_err(ApiErr::internal)?;
            let good: Vec<String> = history
                .iter()
                .filter(|e| e.env == env && (e.result == "changed" || e.result == "ok"))
                .map(|e| e.version.clone())
                .collect();
            let live = good.first().cloned();
            good.into_iter()
                .find(|v| Some(v) != live.as_ref())
                .ok_or_else(|| {
                    ApiErr::new(
                        StatusCode::CONFLICT,
                        codes::CONFLICT,
                        format!(
                            "no earlier release of {} on {} to roll back to; use --to VERSION",
                            req.app, req.env
                        ),
                    )
                })?
        }
    };
    let dreq = DeployRequest {
        app: req.app,
        env: req.env,
        version,
        check: false,
        batch: req.batch,
        pre: false,
    };
    submit(st, p, dreq, true).await
}

async fn deploy(
    State(st): State<AppState>,
    p: Principal,
    Json(req): Json<DeployRequest>,
) -> Result<(StatusCode, Json<JobInfo>), ApiErr> {
    submit(st, p, req, false).await
}

async fn submit(
    st: AppState,
    p: Principal,
    mut req: DeployRequest,
    rollback: bool,
) -> Result<(StatusCode, Json<JobInfo>), ApiErr> {
    // `latest` and specifiers resolve here, on the gateway; the job records the exact version.
    if crate::versions::is_request(&req.version) {
        let inv = st.jobs.inventory().map_err(input_err)?;
        let available = available_versions(&st, inv.app(&req.app).map_err(not_found)?).await?;
        req.version =
            crate::versions::resolve(&req.version, &available, req.pre).map_err(input_err)?;
    }
    let target = format!("{}/{} {}", req.app, req.env, req.version);
    let action = if req.check {
        "check"
    } else if rollback {
        "rollback"
    } else {
        "deploy"
    };
    if !p.may_act_on(&req.env) {
        let (user, t) = (p.user.clone(), target.clone());
        st.jobs
            .store
            .call(move |s| s.audit(&user, action, &t, "refused: environment not allowed"))
            .await
            .map_err(ApiErr::internal)?;
        return Err(ApiErr::new(
            StatusCode::FORBIDDEN,
            codes::FORBIDDEN,
            format!(
                "user {} may not act on environment {} (allowed: {})",
                p.user,
                req.env,
                p.envs.join(", ")
            ),
        ));
    }
    match st.jobs.submit(&p.user, req, rollback).await {
        Ok(job) => {
            let (user, t) = (p.user.clone(), format!("{target} ({})", job.id));
            st.jobs
                .store
                .call(move |s| s.audit(&user, action, &t, "accepted"))
                .await
                .map_err(ApiErr::internal)?;
            Ok((StatusCode::ACCEPTED, Json(job)))
        }
        Err(SubmitError::Invalid(e)) => Err(input_err(e)),
        Err(SubmitError::Locked { holder, job_id }) => {
            let (user, t) = (p.user.clone(), target.clone());
            let _ = st
                .jobs
                .store
                .call(move |s| s.audit(&user, action, &t, "refused: locked"))
                .await;
            let mut e = ApiErr::new(
                StatusCode::CONFLICT,
                codes::LOCKED,
                format!(
                    "{target}: a job of {holder} is running on this application and environment ({job_id})"
                ),
            );
            e.1.holder = Some(holder);
            e.1.job_id = Some(job_id);
            Err(e)
        }
        Err(SubmitError::Internal(e)) => Err(ApiErr::internal(e)),
    }
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<u32>,
    app: Option<String>,
}

async fn jobs(
    State(st): State<AppState>,
    _p: Principal,
    Query(q): Query<Limit>,
) -> ApiResult<Vec<JobInfo>> {
    let limit = q.limit.unwrap_or(20).min(1000);
    Ok(Json(
        st.jobs
            .store
            .call(move |s| s.jobs(limit))
            .await
            .map_err(ApiErr::internal)?,
    ))
}

async fn find_job(st: &AppState, id: String) -> Result<JobInfo, ApiErr> {
    let msg = format!("no job {id}");
    st.jobs
        .store
        .call(move |s| s.job(&id))
        .await
        .map_err(ApiErr::internal)?
        .ok_or_else(|| ApiErr::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, msg))
}

async fn job(
    State(st): State<AppState>,
    _p: Principal,
    Path(id): Path<String>,
) -> ApiResult<JobInfo> {
    Ok(Json(find_job(&st, id).await?))
}

async fn cancel(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<JobInfo> {
    let job = find_job(&st, id.clone()).await?;
    if !p.may_act_on(&job.env) {
        let user = p.user.clone();
        let _ = st
            .jobs
            .store
            .call(move |s| s.audit(&user, "cancel", &id, "refused: environment not allowed"))
            .await;
        return Err(ApiErr::new(
            StatusCode::FORBIDDEN,
            codes::FORBIDDEN,
            format!("user {} may not act on environment {}", p.user, job.env),
        ));
    }
    if job.is_finished() || !st.jobs.cancel(&job.id) {
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            codes::CONFLICT,
            format!("job {} is not running (it is {})", job.id, job.state),
        ));
    }
    let (user, jid) = (p.user.clone(), job.id.clone());
    st.jobs
        .store
        .call(move |s| s.audit(&user, "cancel", &jid, "accepted"))
        .await
        .map_err(ApiErr::internal)?;
    Ok(Json(job))
}

#[derive(Deserialize)]
struct After {
    after: Option<u64>,
}

/// SSE: every stored event with `seq > Last-Event-ID` (or `?after=`), then live ones, each
/// with `id: seq`; ends with an `end` event once the job is finished and all is sent.
async fn events(
    State(st): State<AppState>,
    _p: Principal,
    Path(id): Path<String>,
    Query(q): Query<After>,
    headers: HeaderMap,
) -> Result<Response, ApiErr> {
    find_job(&st, id.clone()).await?;
    let mut after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(q.after)
        .unwrap_or(0);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(256);
    let mut wake = st.jobs.subscribe();
    let store = st.jobs.store.clone();
    tokio::spawn(async move {
        loop {
            let jid = id.clone();
            let Ok((rows, job)) = store
                .call(move |s| Ok((s.events_after(&jid, after, 500)?, s.job(&jid)?)))
                .await
            else {
                return;
            };
            let finished = job.as_ref().is_none_or(|j| j.is_finished());
            let empty = rows.is_empty();
            for (seq, data) in rows {
                after = seq;
                if tx
                    .send(Ok(SseEvent::default()
                        .id(seq.to_string())
                        .event("event")
                        .data(data)))
                    .await
                    .is_err()
                {
                    return; // the client went away; the job goes on
                }
            }
            if empty && finished {
                let state = job.map(|j| j.state).unwrap_or_default();
                let _ = tx
                    .send(Ok(SseEvent::default().event("end").data(state)))
                    .await;
                return;
            }
            if empty {
                // Wait for news of this job (or poll every second, in case of a lag).
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    loop {
                        match wake.recv().await {
                            // Lagged or closed: re-read the store.
                            Ok(j) if j == id || j.is_empty() => break,
                            Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                })
                .await;
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// The stored events of a job, as JSON (no streaming).
async fn log(
    State(st): State<AppState>,
    _p: Principal,
    Path(id): Path<String>,
    Query(q): Query<After>,
) -> ApiResult<Vec<StoredEvent>> {
    find_job(&st, id.clone()).await?;
    let rows = st
        .jobs
        .store
        .call(move |s| s.events_after(&id, q.after.unwrap_or(0), 1_000_000))
        .await
        .map_err(ApiErr::internal)?;
    let events = rows
        .into_iter()
        .filter_map(|(seq, data)| {
            serde_json::from_str(&data)
                .ok()
                .map(|event| StoredEvent { seq, event })
        })
        .collect();
    Ok(Json(events))
}

async fn ledger(
    State(st): State<AppState>,
    _p: Principal,
    Query(q): Query<Limit>,
) -> ApiResult<Vec<LedgerEntry>> {
    let limit = q.limit.unwrap_or(100).min(10_000);
    Ok(Json(
        st.jobs
            .store
            .call(move |s| s.ledger(q.app.as_deref(), limit))
            .await
            .map_err(ApiErr::internal)?,
    ))
}

async fn audit(
    State(st): State<AppState>,
    p: Principal,
    Query(q): Query<Limit>,
) -> ApiResult<Vec<AuditEntry>> {
    if !p.admin {
        return Err(ApiErr::new(
            StatusCode::FORBIDDEN,
            codes::FORBIDDEN,
            "the audit trail needs an admin token",
        ));
    }
    let limit = q.limit.unwrap_or(100).min(10_000);
    Ok(Json(
        st.jobs
            .store
            .call(move |s| s.audit_log(limit))
            .await
            .map_err(ApiErr::internal)?,
    ))
}
