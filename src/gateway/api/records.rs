//! The records: the release ledger (`/v1/ledger`) and the audit trail (`/v1/audit`,
//! admin tokens only).

use axum::Json;
use axum::extract::State;
use deploy_wire::api::{AuditEntry, LedgerEntry};
use serde::Deserialize;

use super::{ApiErr, AppQuery, AppState};
use crate::gateway::auth::Principal;
use crate::gateway::service::ServiceError;

#[derive(Deserialize)]
pub struct Filter {
    limit: Option<u32>,
    app: Option<String>,
}

pub async fn ledger(
    State(st): State<AppState>,
    _: Principal,
    AppQuery(q): AppQuery<Filter>,
) -> Result<Json<Vec<LedgerEntry>>, ApiErr> {
    let limit = q.limit.unwrap_or(100).min(10_000);
    let rows = st
        .svc
        .db()
        .call(move |s| s.ledger(q.app.as_deref(), limit))
        .await?;
    Ok(Json(rows))
}

pub async fn audit(
    State(st): State<AppState>,
    p: Principal,
    AppQuery(q): AppQuery<Filter>,
) -> Result<Json<Vec<AuditEntry>>, ApiErr> {
    if !p.admin {
        let message = "the audit trail needs an admin token";
        return Err(ServiceError::Forbidden(message.into()).into());
    }
    let limit = q.limit.unwrap_or(100).min(10_000);
    Ok(Json(st.svc.db().call(move |s| s.audit_log(limit)).await?))
}
