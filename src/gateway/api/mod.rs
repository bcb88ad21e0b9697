//! The HTTP API under `/v1` (and the dashboard's pages under `/ui`, `dashboard/`): the route table (and which routes are public), the state,
//! the layers (version handshake and request log on everything; the token check on every
//! route not in [`PUBLIC_ROUTES`]) and the JSON fallback.  Handlers live in one file per
//! resource (`day_two.rs`: restart, run, app logs; `pipeline.rs`: builds, changes,
//! promotions, diff; `schedules.rs`: schedules and freezes) and stay thin: parse, call the job
//! service, map its error.

mod apps;
mod day_two;
mod error;
mod handshake;
mod jobs;
mod openapi;
mod pipeline;
mod records;
mod schedules;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use axum::{Json, Router};
use deploy_wire::api::codes;

pub use error::{ApiErr, AppJson, AppPath, AppQuery};
pub use jobs::{KEEP_ALIVE, resume_after};

use super::auth::{self, Principal};
use super::config::CliVersions;
use super::service::{JobService, ServiceError};

/// Routes anyone may call without a token.
pub const PUBLIC_ROUTES: &[&str] = &["/v1/health", "/v1/openapi.json"];

#[derive(Clone)]
pub struct AppState {
    pub svc: JobService,
    cli: Arc<Handshake>,
    /// The dashboard's signed-in browsers (in the store).
    pub sessions: Arc<super::dashboard::Sessions>,
}

/// The CLI versions this gateway accepts, and how to upgrade.
struct Handshake {
    oldest: String,
    newest: String,
    upgrade_command: String,
}

impl AppState {
    pub fn new(svc: JobService, cli: &CliVersions) -> AppState {
        let upgrade_command = cli.upgrade_command.replace("{version}", &cli.newest);
        let cli = Arc::new(Handshake {
            oldest: cli.oldest.clone(),
            newest: cli.newest.clone(),
            upgrade_command,
        });
        let sessions = Arc::new(super::dashboard::Sessions::new(svc.db().clone()));
        AppState { svc, cli, sessions }
    }
}

/// The routes, split by whether they need a token, and their list (for tests and docs).
#[derive(Default)]
struct Table {
    public: Router<AppState>,
    protected: Router<AppState>,
    routes: Vec<(Method, &'static str)>,
}

impl Table {
    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Table
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a routable method");
        let route = on(filter, handler);
        if PUBLIC_ROUTES.contains(&path) {
            self.public = self.public.route(path, route);
        } else {
            self.protected = self.protected.route(path, route);
        }
        self.routes.push((method, path));
        self
    }
}

fn table() -> Table {
    Table::default()
        .add(Method::GET, "/v1/health", health)
        .add(Method::GET, "/v1/openapi.json", openapi::document)
        .add(Method::GET, "/metrics", metrics)
        .add(Method::GET, "/v1/apps", apps::apps)
        .add(Method::GET, "/v1/hosts", apps::hosts)
        .add(Method::GET, "/v1/apps/{app}/status", apps::status)
        .add(Method::GET, "/v1/apps/{app}/versions", apps::versions)
        .add(
            Method::GET,
            "/v1/apps/{app}/rollback",
            apps::rollback_target,
        )
        .add(Method::POST, "/v1/deployments", jobs::deploy)
        .add(Method::POST, "/v1/rollbacks", jobs::rollback)
        .add(Method::POST, "/v1/restarts", day_two::restart)
        .add(Method::POST, "/v1/runs", day_two::run)
        .add(Method::GET, "/v1/apps/{app}/logs", day_two::logs)
        .add(Method::GET, "/v1/jobs", jobs::list)
        .add(Method::GET, "/v1/jobs/{id}", jobs::show)
        .add(Method::POST, "/v1/jobs/{id}/cancel", jobs::cancel)
        .add(Method::GET, "/v1/jobs/{id}/events", jobs::events)
        .add(Method::GET, "/v1/jobs/{id}/log", jobs::log)
        .add(Method::POST, "/v1/builds", pipeline::build)
        .add(Method::GET, "/v1/apps/{app}/changes", pipeline::changes)
        .add(Method::POST, "/v1/promotions", pipeline::promote)
        .add(Method::GET, "/v1/apps/{app}/diff", pipeline::diff)
        .add(Method::POST, "/v1/schedules", schedules::add)
        .add(Method::GET, "/v1/schedules", schedules::list)
        .add(Method::GET, "/v1/schedules/{id}", schedules::show)
        .add(Method::DELETE, "/v1/schedules/{id}", schedules::remove)
        .add(Method::POST, "/v1/schedules/{id}/pause", schedules::pause)
        .add(Method::POST, "/v1/schedules/{id}/resume", schedules::resume)
        .add(Method::POST, "/v1/freezes", schedules::freeze)
        .add(Method::GET, "/v1/freezes", schedules::freezes)
        .add(Method::DELETE, "/v1/freezes/{id}", schedules::unfreeze)
        .add(Method::GET, "/v1/ledger", records::ledger)
        .add(Method::GET, "/v1/audit", records::audit)
}

/// Every route of the API: (method, path pattern).
pub fn routes() -> Vec<(Method, &'static str)> {
    table().routes
}

pub fn router(state: AppState) -> Router {
    let t = table();
    let protected = t
        .protected
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    t.public
        .merge(protected)
        .merge(super::dashboard::routes())
        .fallback(error::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            handshake::handshake_and_log,
        ))
        .with_state(state)
}

/// `GET /v1/health`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always true: the gateway answers.
    ok: bool,
    /// Event streams (followers) alive now.
    followers: u64,
}

/// Liveness, and the gateway's gauges: event streams (followers) alive now.
#[utoipa::path(get, path = "/v1/health", tag = "gateway",
    responses((status = 200, description = "the gateway answers", body = Health)))]
async fn health(State(st): State<AppState>) -> Json<Health> {
    let followers = st.svc.jobs().events.followers() as u64;
    Json(Health {
        ok: true,
        followers,
    })
}

/// `GET /metrics`: Prometheus' text format, for any valid token (`super::metrics`).
#[utoipa::path(get, path = "/metrics", tag = "gateway",
    responses((status = 200, description = "Prometheus' text format (OpenMetrics)",
        content_type = "application/openmetrics-text", body = String)))]
async fn metrics(State(st): State<AppState>, _who: Principal) -> Response {
    let m = super::metrics::get();
    m.set_followers(st.svc.jobs().events.followers());
    let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(axum::http::header::CONTENT_TYPE, kind)], m.render()).into_response()
}

/// A `limit` query parameter: `default` when absent, refused (400) outside 1..=`max`
/// (as the document says).
fn limit(asked: Option<u32>, default: u32, max: u32) -> Result<u32, ApiErr> {
    match asked.unwrap_or(default) {
        n @ 1.. if n <= max => Ok(n),
        n => Err(
            ServiceError::Invalid(format!("bad query: `limit` must be 1 to {max} (got {n})"))
                .into(),
        ),
    }
}

/// One frame of a `text/event-stream` answer, as OpenAPI 3.1 tools (schemathesis) read
/// it: its `event` name, its `data` (JSON for `event` and `line` frames) and, on a job's
/// events, its `id` (the sequence number, for `Last-Event-ID`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // only its schema is used
pub struct SseFrame {
    event: String,
    data: String,
    id: Option<String>,
}

async fn method_not_allowed(req: Request) -> ApiErr {
    let (method, path) = (req.method(), req.uri().path());
    let message = format!("{path} does not answer {method}");
    ApiErr::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        message,
    )
}

/// The token check: finds the principal of `Authorization: Bearer` (or refuses with 401)
/// and hands it to the handler.
async fn require_token(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let token = auth::bearer(header).map(str::to_string);
    let path = req.uri().path().to_string();
    // The peer's address (absent in in-process tests: "unknown").
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    match st.svc.authenticate(token.as_deref(), &path, &source).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => ApiErr::from(e).into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Principal, ApiErr> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            let path = parts.uri.path();
            ServiceError::Internal(format!(
                "{path} has no principal: it is not behind the token check"
            ))
            .into()
        })
    }
}
