//! The records: the release ledger (`/v1/ledger`, filtered to the environments the token
//! may read) and the audit trail (`/v1/audit`, admin tokens only).

use axum::Json;
use axum::extract::State;
use deploy_wire::api::{AuditEntry, LedgerEntry};
use serde::Deserialize;

use super::{ApiErr, AppQuery, AppState};
use crate::gateway::auth::Principal;

#[derive(Deserialize)]
pub struct Filter {
    limit: Option<u32>,
    app: Option<String>,
}

pub async fn ledger(
    State(st): State<AppState>,
    p: Principal,
    AppQuery(q): AppQuery<Filter>,
) -> Result<Json<Vec<LedgerEntry>>, ApiErr> {
    let limit = q.limit.unwrap_or(100).min(10_000);
    Ok(Json(st.svc.ledger_for(&p, q.app, limit).await?))
}

pub async fn audit(
    State(st): State<AppState>,
    p: Principal,
    AppQuery(q): AppQuery<Filter>,
) -> Result<Json<Vec<AuditEntry>>, ApiErr> {
    let limit = q.limit.unwrap_or(100).min(10_000);
    Ok(Json(st.svc.audit_for(&p, limit).await?))
}
