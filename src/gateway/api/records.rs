//! The records: the release ledger (`/v1/ledger`, filtered to the environments the token
//! may read) and the audit trail (`/v1/audit`, admin tokens only).

use axum::Json;
use axum::extract::State;
use deploy_wire::api::{AuditEntry, LedgerEntry};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiErr, AppQuery, AppState};
use crate::gateway::auth::Principal;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Filter {
    /// At most this many rows (default 100).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// Only this application's rows (the ledger).
    app: Option<String>,
}

#[utoipa::path(get, path = "/v1/ledger", tag = "records", params(Filter),
    responses((status = 200, description = "one row per host per job, newest first", body = Vec<LedgerEntry>)))]
pub async fn ledger(
    State(st): State<AppState>,
    p: Principal,
    AppQuery(q): AppQuery<Filter>,
) -> Result<Json<Vec<LedgerEntry>>, ApiErr> {
    let limit = super::limit(q.limit, 100, 10_000)?;
    Ok(Json(st.svc.ledger_for(&p, q.app, limit).await?))
}

#[utoipa::path(get, path = "/v1/audit", tag = "records", params(Filter),
    responses((status = 200, description = "who did what, newest first (admins only)", body = Vec<AuditEntry>)))]
pub async fn audit(
    State(st): State<AppState>,
    p: Principal,
    AppQuery(q): AppQuery<Filter>,
) -> Result<Json<Vec<AuditEntry>>, ApiErr> {
    let limit = super::limit(q.limit, 100, 10_000)?;
    Ok(Json(st.svc.audit_for(&p, limit).await?))
}
